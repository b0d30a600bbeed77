-- perfmon.analyze() parts that failed in the last hour, or in the newest run, for
-- pgperfmon status: the latest error, when, how many of the last hour's runs failed,
-- and whether the newest run failed (failing = a problem).
WITH newest AS (
    SELECT r.ts, r.parts FROM perfmon.analyze_runs AS r
    WHERE r.server_id = 1
    ORDER BY r.ts DESC LIMIT 1
),
errors AS (
    SELECT r.ts, p.key AS name, p.value ->> 'error' AS error
    FROM perfmon.analyze_runs AS r
    CROSS JOIN LATERAL jsonb_each(r.parts) AS p
    WHERE r.server_id = 1 AND r.ts > now() - interval '1 hour' AND p.value ? 'error'
    UNION
    SELECT n.ts, p.key, p.value ->> 'error'
    FROM newest AS n
    CROSS JOIN LATERAL jsonb_each(n.parts) AS p
    WHERE p.value ? 'error'
)
SELECT NULL::text                                                     AS kind,
       e.name,
       (array_agg(e.error ORDER BY e.ts DESC))[1]                     AS error,
       max(e.ts)                                                      AS last_error_at,
       count(*) FILTER (WHERE e.ts > now() - interval '1 hour')       AS errors_last_hour,
       (SELECT count(*) FROM perfmon.analyze_runs AS r
         WHERE r.server_id = 1 AND r.ts > now() - interval '1 hour')  AS runs_last_hour,
       coalesce(bool_or(e.ts = (SELECT n.ts FROM newest AS n)), false) AS failing
FROM errors AS e
GROUP BY e.name
ORDER BY failing DESC, e.name
