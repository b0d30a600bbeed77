CREATE OR REPLACE FUNCTION perfmon.advisor_unavailable_rules()
RETURNS TABLE (rule text, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A rule whose refresh function is not installed cannot run. Install skips exactly the
    -- functions whose source says `-- requires: plpython3u` where that language is missing
    -- (advise_indexes, explain_slow_queries, sample_host_capacity), so that is the reason.
    -- A refresh function missing while plpython3u is there is a broken install, not a
    -- degraded mode: it is left to perfmon.refresh_recommendations() to report as an error.
    SELECT r.name, 'plpython3u not installed'
    FROM perfmon.advisor_rules AS r
    WHERE r.refresh_function IS NOT NULL
      AND to_regproc(r.refresh_function) IS NULL
      AND NOT EXISTS (SELECT FROM pg_extension AS e WHERE e.extname = 'plpython3u')
    ORDER BY r.ordinal, r.name
$$;
COMMENT ON FUNCTION perfmon.advisor_unavailable_rules() IS
    'Advisor rules that cannot run on this server, and why (their refresh function is PL/Python '
    'and plpython3u is not installed). perfmon.refresh_recommendations() reports them as '
    'unavailable instead of running them; pgperfmon status lists them.';
