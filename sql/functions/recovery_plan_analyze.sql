CREATE OR REPLACE FUNCTION perfmon.recovery_plan_analyze(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('key', format('table:%I.%I', s.schemaname, s.relname),
                              'schema', s.schemaname, 'table', s.relname,
                              'modified_rows', s.n_mod_since_analyze, 'live_rows', s.n_live_tup,
                              'last_analyze', greatest(s.last_analyze, s.last_autoanalyze)),
           format('ANALYZE %I.%I', s.schemaname, s.relname),
           CASE WHEN NOT perfmon.table_pattern_match(s.schemaname, s.relname, params -> 'allow_tables')
                THEN format('table %I.%I is not in allow_tables', s.schemaname, s.relname) END,
           greatest(s.last_analyze, s.last_autoanalyze)
    FROM pg_stat_user_tables AS s
    WHERE s.n_mod_since_analyze >= (params ->> 'min_rows')::bigint
      AND s.n_mod_since_analyze >= (params ->> 'modified_pct')::numeric / 100 * greatest(s.n_live_tup, 1)
    ORDER BY s.n_mod_since_analyze DESC
    LIMIT 100
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_analyze(jsonb) IS
    'Tables of this database whose rows changed since the last (auto)analyze by at least '
    'params.min_rows and params.modified_pct % of their live rows, with the ANALYZE for each.';
