CREATE OR REPLACE FUNCTION perfmon.recovery_plan_vacuum(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH t AS (
        SELECT s.schemaname, s.relname, s.n_dead_tup, s.n_live_tup,
               round(100.0 * s.n_dead_tup / greatest(s.n_live_tup + s.n_dead_tup, 1), 1) AS dead_pct,
               age(c.relfrozenxid) AS xid_age,
               current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
               greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum
        FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    ),
    d AS (
        SELECT t.*,
               t.xid_age >= (params ->> 'freeze_age_pct')::numeric / 100 * t.freeze_max_age AS needs_freeze,
               t.n_dead_tup >= (params ->> 'min_dead_tuples')::bigint
                   AND t.dead_pct >= (params ->> 'dead_tuple_pct')::numeric AS needs_vacuum
        FROM t
    )
    SELECT jsonb_build_object('key', format('table:%I.%I', d.schemaname, d.relname),
                              'schema', d.schemaname, 'table', d.relname, 'dead_tuples', d.n_dead_tup,
                              'dead_pct', d.dead_pct, 'xid_age', d.xid_age, 'freeze', d.needs_freeze,
                              'last_vacuum', d.last_vacuum),
           format(CASE WHEN d.needs_freeze THEN 'VACUUM (FREEZE) %I.%I' ELSE 'VACUUM (ANALYZE) %I.%I' END,
                  d.schemaname, d.relname),
           CASE WHEN NOT perfmon.table_pattern_match(d.schemaname, d.relname, params -> 'allow_tables')
                THEN format('table %I.%I is not in allow_tables', d.schemaname, d.relname) END,
           d.last_vacuum
    FROM d
    WHERE d.needs_freeze OR d.needs_vacuum
    ORDER BY d.needs_freeze DESC, d.n_dead_tup DESC
    LIMIT 100
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_vacuum(jsonb) IS
    'Tables of this database past params.dead_tuple_pct % dead tuples (and params.min_dead_tuples), '
    'or past params.freeze_age_pct % of autovacuum_freeze_max_age, with the VACUUM for each.';
