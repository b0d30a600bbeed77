CREATE OR REPLACE VIEW perfmon.unused_indexes AS
-- A scan of any index is known from perfmon.index_scans_seen, which collect_indexes() keeps
-- for every index; perfmon.index_history holds only the busiest of each sample, so its sum
-- (scans_sampled) misses an index scanned now and then. Spans whose scans cannot be known
-- (perfmon.index_stats_gaps: a statistics reset or crash after a sample) are not observed time.
-- A foreign key's check on a parent DELETE or key UPDATE looks its rows up in the child: the
-- index serving it is scanned only when that happens, maybe once a year, and without it each
-- parent row deleted reads the whole child. One covering index per foreign key is kept.
WITH cfg AS (
    SELECT perfmon.setting('optimization.unused_index_min_days')::numeric AS min_days,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           now() - make_interval(days => perfmon.setting('collection.retention_days')::int) AS history_since
),
idx AS (
    SELECT r.rel_id, r.table_rel_id, i.oid AS index_oid, n.nspname AS schema_name, t.relname AS table_name,
           i.relname AS index_name, x.indisunique, x.indisprimary,
           EXISTS (SELECT FROM pg_constraint AS k WHERE k.conindid = x.indexrelid) AS backs_constraint,
           pg_relation_size(i.oid) AS index_size_bytes,
           pg_stat_get_numscans(i.oid) AS scans_since_stats_reset,
           u.last_scan_seen,
           round((greatest(extract(epoch FROM now() - r.first_seen) - blind.since_first_seen, 0)
                  / 86400)::numeric, 1) AS observed_days,
           round((greatest(extract(epoch FROM now() - greatest(r.first_seen, u.last_scan_seen))
                           - blind.since_scan, 0) / 86400)::numeric, 1) AS unscanned_days,
           (SELECT coalesce(sum(h.idx_scan), 0) FROM perfmon.index_history AS h
            WHERE h.rel_id = r.rel_id AND h.ts >= r.first_seen) AS scans_sampled,
           (SELECT coalesce(sum(coalesce(h.n_tup_ins, 0) + coalesce(h.n_tup_upd, 0)
                                - coalesce(h.n_tup_hot_upd, 0)), 0)
            FROM perfmon.table_history AS h, cfg
            WHERE h.rel_id = r.table_rel_id
              AND h.ts > now() - make_interval(days => cfg.window_days)) AS table_rows_written
    FROM perfmon.relations AS r
    JOIN pg_index AS x ON x.indexrelid = r.relid
    JOIN pg_class AS i ON i.oid = x.indexrelid
    JOIN pg_class AS t ON t.oid = x.indrelid
    JOIN pg_namespace AS n ON n.oid = t.relnamespace
    LEFT JOIN perfmon.index_scans_seen AS u ON u.rel_id = r.rel_id
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(extract(epoch FROM g.gap_to - greatest(g.gap_from, r.first_seen))), 0)
                   AS since_first_seen,
               coalesce(sum(extract(epoch FROM g.gap_to
                                                - greatest(g.gap_from, r.first_seen, u.last_scan_seen)))
                            FILTER (WHERE g.gap_to > greatest(r.first_seen, u.last_scan_seen)), 0)
                   AS since_scan
        FROM perfmon.index_stats_gaps AS g
        WHERE g.server_id = 1 AND g.gap_to > r.first_seen
    ) AS blind
    WHERE r.server_id = 1 AND r.kind = 'i' AND x.indisvalid
      AND NOT i.relispartition  -- a partition's index cannot be dropped alone
      AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
),
judged AS (
    SELECT idx.*,
           NOT (coalesce(idx.last_scan_seen >= cfg.history_since, false) OR idx.indisunique
                OR idx.indisprimary OR idx.backs_constraint OR idx.unscanned_days < cfg.min_days) AS unused
    FROM idx, cfg
),
fk_cover AS (
    -- each foreign key with each index whose leading key columns are its columns, in any
    -- order: what its check can use (no partial index, B-tree or hash)
    SELECT k.oid AS fk, k.conname::text AS conname, x.indexrelid
    FROM pg_constraint AS k
    JOIN pg_index AS x ON x.indrelid = k.conrelid AND x.indisvalid AND x.indpred IS NULL
    JOIN pg_class AS c ON c.oid = x.indexrelid
    JOIN pg_am AS am ON am.oid = c.relam
    WHERE k.contype = 'f' AND am.amname IN ('btree', 'hash')
      AND (SELECT array_agg(u.attnum ORDER BY u.attnum)
           FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS u(attnum, pos)
           WHERE u.pos <= least(cardinality(k.conkey), x.indnkeyatts))
          = (SELECT array_agg(a ORDER BY a) FROM unnest(k.conkey) AS a)
),
fk_kept AS (
    -- a foreign key all of whose covering indexes look unused keeps one: the smallest
    SELECT DISTINCT ON (f.fk) f.fk, f.conname, f.indexrelid
    FROM fk_cover AS f
    JOIN judged AS j ON j.index_oid = f.indexrelid
    WHERE NOT EXISTS (SELECT FROM fk_cover AS o
                      LEFT JOIN judged AS oj ON oj.index_oid = o.indexrelid
                      WHERE o.fk = f.fk AND NOT coalesce(oj.unused, false))
    ORDER BY f.fk, j.index_size_bytes, f.indexrelid
),
kept AS (
    SELECT j.*, (SELECT array_agg(k.conname ORDER BY k.conname) FROM fk_kept AS k
                 WHERE k.indexrelid = j.index_oid) AS kept_for_foreign_keys
    FROM judged AS j
)
SELECT idx.schema_name, idx.table_name, idx.index_name, idx.index_size_bytes,
       idx.scans_sampled, idx.scans_since_stats_reset, idx.observed_days,
       idx.table_rows_written, idx.indisunique AS is_unique, idx.backs_constraint,
       idx.last_scan_seen, idx.unscanned_days, idx.kept_for_foreign_keys,
       format('%I.%I', idx.schema_name, idx.index_name) AS target,
       CASE WHEN NOT idx.unused OR idx.kept_for_foreign_keys IS NOT NULL THEN 'ok'
            WHEN idx.index_size_bytes >= 100 * 1024 * 1024 THEN 'warning'
            ELSE 'info' END AS severity,
       format('index %s.%s on %s has not been scanned in %s days of observation%s; it takes %s '
              'and is updated on every write (%s rows written to its table in the last %s days)',
              idx.schema_name, idx.index_name, idx.table_name, idx.unscanned_days,
              CASE WHEN idx.last_scan_seen IS NOT NULL
                   THEN format(' (last scan seen %s)', to_char(idx.last_scan_seen, 'YYYY-MM-DD')) ELSE '' END,
              pg_size_pretty(idx.index_size_bytes), idx.table_rows_written, cfg.window_days) AS finding,
       jsonb_build_object('index_size_bytes', idx.index_size_bytes,
                          'scans_sampled', idx.scans_sampled,
                          'scans_since_stats_reset', idx.scans_since_stats_reset,
                          'observed_days', idx.observed_days,
                          'last_scan_seen', idx.last_scan_seen,
                          'unscanned_days', idx.unscanned_days,
                          'table_rows_written', idx.table_rows_written) AS evidence,
       format('DROP INDEX CONCURRENTLY %I.%I;', idx.schema_name, idx.index_name) AS apply_sql,
       idx.index_size_bytes::numeric AS benefit,
       'bytes reclaimable'::text AS benefit_unit,
       CASE WHEN idx.scans_since_stats_reset = 0 THEN 'high' ELSE 'medium' END AS confidence
FROM kept AS idx, cfg
ORDER BY idx.last_scan_seen NULLS FIRST, idx.scans_sampled, idx.index_size_bytes DESC;
COMMENT ON VIEW perfmon.unused_indexes IS
    'Indexes of this database with their size (bytes), scans in the stored samples (scans_sampled: '
    'only the busiest collection.relation_top_n indexes of each sample are stored) and since the '
    'statistics were reset, the days pgperfmon has observed their scans (observed_days; spans after a '
    'statistics reset or crash it cannot account for do not count), the last sample that saw a scan '
    '(last_scan_seen, to the hour, any index), the observed days since then or since first seen '
    '(unscanned_days), and the rows written to their table over optimization.advice_window_days. '
    'kept_for_foreign_keys: the foreign keys whose every covering index (leading columns = the '
    'key''s columns) looks unused, for which this one, the smallest, is kept (their checks on a '
    'parent DELETE or key UPDATE need it). A finding (severity <> ok) is a non-unique index not '
    'backing a constraint nor kept for a foreign key, with no scan seen for '
    'optimization.unused_index_min_days observed days nor within collection.retention_days.';
