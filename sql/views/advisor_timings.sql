CREATE OR REPLACE VIEW perfmon.advisor_timings AS
SELECT a.ts, a.duration_ms, r.key AS rule, (r.value ->> 'ms')::real AS ms,
       (r.value ->> 'findings')::int AS findings, (r.value ->> 'resolved')::int AS resolved,
       r.value ->> 'error' AS error,
       r.value ->> 'unavailable' AS unavailable
FROM perfmon.advisor_runs AS a
CROSS JOIN LATERAL jsonb_each(a.rules) AS r
ORDER BY a.ts DESC, ms DESC;
COMMENT ON VIEW perfmon.advisor_timings IS
    'Each perfmon.refresh_recommendations() run (total ms) and each rule in it: ms, findings, '
    'findings resolved, error, or unavailable (why the rule cannot run on this server, e.g. '
    '''plpython3u not installed'': not run, not an error).';
