CREATE OR REPLACE VIEW perfmon.cache_hit_ratio AS
WITH cfg AS (
    SELECT perfmon.setting('database.performance_thresholds.cache_hit_ratio_min_pct')::numeric AS min_pct,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           current_setting('block_size')::int AS bs
),
io AS (
    SELECT h.rel_id, sum(coalesce(h.heap_blks_hit, 0) + coalesce(h.toast_blks_hit, 0)) AS hit,
           sum(coalesce(h.heap_blks_read, 0) + coalesce(h.toast_blks_read, 0)) AS read
    FROM perfmon.table_history AS h, cfg
    WHERE h.ts > now() - make_interval(days => cfg.window_days)
    GROUP BY h.rel_id
    UNION ALL
    SELECT h.rel_id, sum(coalesce(h.idx_blks_hit, 0)), sum(coalesce(h.idx_blks_read, 0))
    FROM perfmon.index_history AS h, cfg
    WHERE h.ts > now() - make_interval(days => cfg.window_days)
    GROUP BY h.rel_id
),
r AS (
    SELECT CASE WHEN rel.kind = 'i' THEN 'index' ELSE 'table' END AS kind,
           rel.schema_name, rel.rel_name, io.hit, io.read,
           round(100.0 * io.hit / nullif(io.hit + io.read, 0), 2) AS hit_pct
    FROM io
    JOIN perfmon.relations AS rel ON rel.rel_id = io.rel_id
    WHERE rel.server_id = 1
      AND rel.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT r.kind, r.schema_name, r.rel_name AS name, r.hit AS blocks_hit, r.read AS blocks_read,
       r.hit_pct, r.read * cfg.bs AS read_bytes,
       format('%s %I.%I', r.kind, r.schema_name, r.rel_name) AS target,
       CASE WHEN r.hit_pct IS NULL OR r.hit_pct >= cfg.min_pct OR r.read < 1000 THEN 'ok'
            WHEN r.hit_pct < cfg.min_pct / 2 THEN 'warning' ELSE 'info' END AS severity,
       format('%s %s.%s found %s%% of its blocks in shared buffers (threshold %s%%): %s read from '
              'outside them in the last %s days; its working set does not fit: raise shared_buffers '
              'if RAM allows, or read less of it (an index, a narrower query)',
              r.kind, r.schema_name, r.rel_name, r.hit_pct, cfg.min_pct,
              pg_size_pretty(r.read * cfg.bs), cfg.window_days) AS finding,
       jsonb_build_object('blocks_hit', r.hit, 'blocks_read', r.read, 'hit_pct', r.hit_pct,
                          'shared_buffers', current_setting('shared_buffers')) AS evidence,
       NULL::text AS apply_sql,
       (r.read * cfg.bs)::numeric AS benefit,
       'bytes read from disk'::text AS benefit_unit,
       'medium'::text AS confidence
FROM r, cfg
ORDER BY r.read DESC;
COMMENT ON VIEW perfmon.cache_hit_ratio IS
    'Shared-buffer hit ratio (hit_pct, %) of each table and index over '
    'optimization.advice_window_days from the sampled history: blocks found in the cache, blocks '
    'read from outside it, and those reads in bytes. Findings: below '
    'database.performance_thresholds.cache_hit_ratio_min_pct with at least 1000 blocks read.';
