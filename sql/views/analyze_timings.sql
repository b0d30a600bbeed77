CREATE OR REPLACE VIEW perfmon.analyze_timings AS
SELECT r.ts,
       p.key                         AS part,
       (p.value ->> 'ms')::real      AS ms,
       p.value ->> 'error'           AS error,
       p.value ->> 'sqlstate'        AS sqlstate,
       p.value ->> 'skipped'         AS skipped,
       r.duration_ms                 AS run_ms
FROM perfmon.analyze_runs AS r
CROSS JOIN LATERAL jsonb_each(r.parts) AS p
WHERE r.server_id = 1;
COMMENT ON VIEW perfmon.analyze_timings IS
    'Each part of each perfmon.analyze() run (anomalies, alerts, recovery, health): duration (ms), '
    'error and its SQLSTATE, or why it was skipped, and the whole run''s ms. A failing part does '
    'not stop the others; pgperfmon status reports it.';
