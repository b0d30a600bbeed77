-- Collection stages that failed in the last hour, or in the newest run of their kind,
-- for pgperfmon status: the latest error, when, how many of the last hour's runs
-- failed, and whether the newest run of the kind failed (failing = a problem).
WITH newest AS (
    SELECT k.kind, n.ts, n.stages
    FROM (VALUES ('sample'), ('sizes')) AS k(kind)
    CROSS JOIN LATERAL (
        SELECT s.ts, s.stages FROM perfmon.samples AS s
        WHERE s.server_id = 1 AND s.kind = k.kind
        ORDER BY s.ts DESC LIMIT 1
    ) AS n
),
errors AS (
    SELECT s.kind, st.key AS name, s.ts, st.value ->> 'error' AS error
    FROM perfmon.samples AS s
    CROSS JOIN LATERAL jsonb_each(s.stages) AS st
    WHERE s.server_id = 1 AND s.ts > now() - interval '1 hour' AND st.value ? 'error'
    UNION
    SELECT n.kind, st.key, n.ts, st.value ->> 'error'
    FROM newest AS n
    CROSS JOIN LATERAL jsonb_each(n.stages) AS st
    WHERE st.value ? 'error'
)
SELECT e.kind,
       e.name,
       (array_agg(e.error ORDER BY e.ts DESC))[1]                     AS error,
       max(e.ts)                                                      AS last_error_at,
       count(*) FILTER (WHERE e.ts > now() - interval '1 hour')       AS errors_last_hour,
       (SELECT count(*) FROM perfmon.samples AS s
         WHERE s.server_id = 1 AND s.kind = e.kind
           AND s.ts > now() - interval '1 hour')                      AS runs_last_hour,
       coalesce(bool_or(n.ts = e.ts), false)                          AS failing
FROM errors AS e
LEFT JOIN newest AS n ON n.kind = e.kind
GROUP BY e.kind, e.name
ORDER BY failing DESC, e.kind, e.name
