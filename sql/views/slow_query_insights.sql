CREATE OR REPLACE VIEW perfmon.slow_query_insights AS
SELECT p.stmt_id, s.queryid, left(s.query, 300) AS query, p.problem, p.relation, p.detail,
       p.advice, p.explained_at,
       format('query %s: %s%s', s.queryid, p.problem,
              CASE WHEN p.relation <> '' THEN ' on ' || p.relation ELSE '' END) AS target,
       CASE p.problem WHEN 'seq_scan_large_table' THEN 'warning' ELSE 'info' END AS severity,
       format('slow query %s (%s): %s; %s', s.queryid, left(regexp_replace(s.query, '\s+', ' ', 'g'), 80),
              p.detail, p.advice) AS finding,
       p.evidence || jsonb_build_object('queryid', s.queryid) AS evidence,
       NULL::text AS apply_sql,
       NULL::numeric AS benefit,
       NULL::text AS benefit_unit,
       'medium'::text AS confidence
FROM perfmon.plan_insights AS p
JOIN perfmon.statements AS s USING (stmt_id)
ORDER BY p.stmt_id, p.problem;
COMMENT ON VIEW perfmon.slow_query_insights IS
    'For each slow query (perfmon.slow_queries), what its generic plan shows is wrong and the '
    'advice that follows: seq_scan_large_table (a sequential scan of a table of 100,000+ rows), '
    'row_misestimate (plan rows 10x off the rows measured per call), spill_to_disk (temporary '
    'files written per call, or sorts/hashes larger than work_mem). Kept by '
    'perfmon.explain_slow_queries().';
