CREATE OR REPLACE VIEW perfmon.config_advice AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.advice_window_days')::int AS window_days,
           current_setting('block_size')::bigint AS bs
),
spill AS (
    -- Statements of this database that wrote temporary files: the largest spill per call.
    SELECT count(*) AS statements, sum(t.temp_written) * cfg.bs AS temp_bytes,
           max(t.temp_written::numeric * cfg.bs / nullif(t.calls, 0)) AS max_per_call_bytes
    FROM perfmon.statement_totals(now() - make_interval(days => (SELECT window_days FROM cfg)), now()) AS t
    JOIN perfmon.statements AS s USING (stmt_id), cfg
    WHERE t.temp_written > 0 AND t.stmt_id <> 0
      AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.query !~* '\mperfmon\.'  -- pgperfmon's own work is not the workload to tune
    GROUP BY cfg.bs
),
ckpt AS (
    SELECT sum(coalesce(h.checkpoints_timed, 0)) AS timed, sum(coalesce(h.checkpoints_req, 0)) AS requested
    FROM perfmon.server_history AS h, cfg
    WHERE h.server_id = 1 AND h.ts > now() - make_interval(days => cfg.window_days)
),
mem AS (
    SELECT hc.ram_bytes,
           (SELECT setting::bigint * cfg.bs FROM pg_settings WHERE name = 'shared_buffers') AS shared_buffers_bytes
    FROM cfg LEFT JOIN perfmon.host_capacity AS hc ON hc.server_id = 1
),
hot AS (
    -- The busiest tables by rows updated and deleted, still on the default scale factor.
    SELECT r.schema_name, r.rel_name, c.reltuples,
           sum(coalesce(h.n_tup_upd, 0) + coalesce(h.n_tup_del, 0)) AS churn_rows
    FROM perfmon.table_history AS h
    JOIN perfmon.relations AS r ON r.rel_id = h.rel_id
    JOIN pg_class AS c ON c.oid = r.relid, cfg
    WHERE r.server_id = 1 AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND h.ts > now() - make_interval(days => cfg.window_days)
      AND NOT EXISTS (SELECT FROM unnest(c.reloptions) AS o WHERE o LIKE 'autovacuum\_vacuum\_scale\_factor=%')
    GROUP BY r.schema_name, r.rel_name, c.reltuples
    HAVING c.reltuples >= 100000
       AND sum(coalesce(h.n_tup_upd, 0) + coalesce(h.n_tup_del, 0))
           >= current_setting('autovacuum_vacuum_scale_factor')::numeric * c.reltuples
    ORDER BY churn_rows DESC
    LIMIT 5
),
advice AS (
    SELECT 'work_mem'::text AS setting_name, current_setting('work_mem') AS current_value,
           format('%sMB', power(2, ceil(log(2, greatest(2 * spill.max_per_call_bytes / 1048576, 4)::numeric)))::bigint)
               AS suggested_value,
           'warning'::text AS severity,
           format('%s statement(s) wrote %s of temporary files in the last %s days, up to %s per '
                  'call: their sorts and hashes do not fit in work_mem (%s)', spill.statements,
                  pg_size_pretty(spill.temp_bytes::bigint), (SELECT window_days FROM cfg),
                  pg_size_pretty(spill.max_per_call_bytes::bigint), current_setting('work_mem')) AS finding,
           jsonb_build_object('statements', spill.statements, 'temp_bytes', spill.temp_bytes,
                              'max_temp_bytes_per_call', round(spill.max_per_call_bytes)) AS evidence,
           spill.temp_bytes::numeric AS benefit, 'temp bytes avoided'::text AS benefit_unit,
           'medium'::text AS confidence
    FROM spill
    UNION ALL
    SELECT 'shared_buffers', current_setting('shared_buffers'),
           pg_size_pretty(mem.ram_bytes / 4),
           CASE WHEN mem.shared_buffers_bytes > 0.4 * mem.ram_bytes THEN 'warning' ELSE 'info' END,
           format('shared_buffers is %s, %s%% of the host''s %s of RAM; about 25%% is the usual '
                  'starting point (the OS cache holds the rest)', current_setting('shared_buffers'),
                  round(100.0 * mem.shared_buffers_bytes / mem.ram_bytes, 1), pg_size_pretty(mem.ram_bytes)),
           jsonb_build_object('shared_buffers_bytes', mem.shared_buffers_bytes, 'ram_bytes', mem.ram_bytes),
           round(100.0 * mem.shared_buffers_bytes / mem.ram_bytes, 1), '% of RAM now', 'medium'
    FROM mem
    WHERE mem.ram_bytes > 0
      AND (mem.shared_buffers_bytes < 0.15 * mem.ram_bytes OR mem.shared_buffers_bytes > 0.4 * mem.ram_bytes)
    UNION ALL
    SELECT 'max_wal_size', current_setting('max_wal_size'),
           pg_size_pretty(2 * pg_size_bytes(current_setting('max_wal_size'))),
           'warning',
           format('%s of %s checkpoints in the last %s days were requested (WAL filled max_wal_size '
                  '%s) rather than timed: each forces full-page writes and I/O bursts',
                  ckpt.requested, ckpt.requested + ckpt.timed, (SELECT window_days FROM cfg),
                  current_setting('max_wal_size')),
           jsonb_build_object('checkpoints_requested', ckpt.requested, 'checkpoints_timed', ckpt.timed,
                              'checkpoint_timeout', current_setting('checkpoint_timeout')),
           round(100.0 * ckpt.requested / (ckpt.requested + ckpt.timed), 1), '% checkpoints requested',
           'medium'
    FROM ckpt
    WHERE ckpt.requested >= 3 AND ckpt.requested > 0.2 * (ckpt.requested + ckpt.timed)
    UNION ALL
    SELECT 'autovacuum', current_setting('autovacuum'), 'on', 'critical',
           'autovacuum is off: dead tuples pile up and only anti-wraparound vacuums will run',
           '{}'::jsonb, NULL::numeric, NULL::text, 'high'
    WHERE NOT current_setting('autovacuum')::boolean
    UNION ALL
    SELECT format('autovacuum_vacuum_scale_factor on %I.%I', hot.schema_name, hot.rel_name),
           current_setting('autovacuum_vacuum_scale_factor'), '0.02', 'info',
           format('table %s.%s (%s rows) had %s rows updated or deleted in the last %s days: with the '
                  'default scale factor autovacuum waits for %s dead rows; a lower one vacuums it '
                  'sooner and in smaller steps', hot.schema_name, hot.rel_name, hot.reltuples::bigint,
                  hot.churn_rows, (SELECT window_days FROM cfg),
                  round(current_setting('autovacuum_vacuum_scale_factor')::numeric * hot.reltuples)),
           jsonb_build_object('rows', hot.reltuples::bigint, 'churn_rows', hot.churn_rows),
           hot.churn_rows::numeric, 'rows changed in window', 'medium'
    FROM hot
)
SELECT a.setting_name, a.current_value, a.suggested_value,
       a.setting_name AS target, a.severity, a.finding, a.evidence,
       CASE WHEN a.setting_name LIKE 'autovacuum\_vacuum\_scale\_factor on %'
            THEN format('ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.02, '
                        'autovacuum_vacuum_threshold = 1000);', substring(a.setting_name FROM ' on (.*)$'))
            WHEN a.setting_name = 'work_mem'
            THEN format('ALTER SYSTEM SET work_mem = %L; SELECT pg_reload_conf();  -- or per role: '
                        'ALTER ROLE ... SET work_mem', a.suggested_value)
            WHEN a.setting_name = 'shared_buffers'
            THEN format('ALTER SYSTEM SET shared_buffers = %L;  -- takes effect after a restart',
                        replace(a.suggested_value, ' ', ''))
            ELSE format('ALTER SYSTEM SET %s = %L; SELECT pg_reload_conf();', a.setting_name,
                        replace(a.suggested_value, ' ', '')) END AS apply_sql,
       a.benefit, a.benefit_unit, a.confidence
FROM advice AS a;
COMMENT ON VIEW perfmon.config_advice IS
    'Configuration advice from the sampled history: work_mem from temporary files written per '
    'call, shared_buffers against the host''s RAM (perfmon.host_capacity), max_wal_size from '
    'requested vs timed checkpoints, autovacuum off, and a lower autovacuum scale factor for the '
    'tables of 100,000+ rows that change most. Each row: the setting, its current and suggested '
    'value, and the finding.';
