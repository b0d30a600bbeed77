CREATE OR REPLACE VIEW perfmon.collect_timings AS
SELECT s.ts,
       s.kind,
       st.key                             AS stage,
       (st.value ->> 'ms')::real          AS ms,
       coalesce((st.value ->> 'stored')::int, 0) AS rows_stored,
       coalesce((st.value ->> 'gaps')::int, 0) AS gaps,
       st.value ->> 'error'               AS error,
       st.value ->> 'skipped'             AS skipped,
       s.duration_ms                      AS run_ms
FROM perfmon.samples AS s
CROSS JOIN LATERAL jsonb_each(s.stages) AS st;
COMMENT ON VIEW perfmon.collect_timings IS
    'Each collection stage of each run: duration (ms), rows stored, gaps (counters that went '
    'backwards or were evicted), error or reason it was skipped, and the whole run''s ms.';
