CREATE OR REPLACE FUNCTION perfmon.collect_tables(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Table statistics and I/O of this database (what pg_stat_user_tables and
-- pg_statio_user_tables show), less excluded schemas and pgperfmon's own. Tables whose
-- counters did not move cost nothing; of those that moved, the most active
-- collection.relation_top_n are stored. The first sample, and a sample after
-- pg_stat_reset() (the database's stats_reset moved), is a baseline.
DECLARE
    dbid oid := (SELECT oid FROM pg_database WHERE datname = current_database());
    reset_at timestamptz := (SELECT stats_reset FROM pg_stat_database WHERE datid = dbid);
    src record;
    baseline boolean;
    lost bigint := 0;
    added int;
    top_n int := perfmon.setting('collection.relation_top_n')::int;
    result perfmon.collect_result;
BEGIN
    SELECT * INTO src FROM perfmon.state_sources WHERE server_id = 1 AND source = 'tables';
    baseline := NOT FOUND OR src.reset_at IS DISTINCT FROM reset_at;
    IF baseline THEN
        -- A reset or a crash after an earlier sample: a gap per table whose state is
        -- dropped (at least one), as in collect_statements().
        DELETE FROM perfmon.state_tables;
        GET DIAGNOSTICS lost = ROW_COUNT;
        IF lost = 0 AND perfmon.sampled_before(sample_ts) THEN
            lost := 1;
        END IF;
    END IF;
    added := perfmon.sync_relations(ARRAY['r', 'p', 'm']::"char"[], with_renames => false);

    -- The pg_stat_get_* functions pg_stat_user_tables and pg_statio_user_tables are
    -- made of, called directly for the tables in the dictionary: the views join and
    -- group the whole catalog and cost four times as much on a large one. Index
    -- scans and I/O are sampled per index by collect_indexes().
    WITH cur AS (
        SELECT r.rel_id,
               pg_stat_get_numscans(c.oid) AS seq_scan,
               pg_stat_get_tuples_returned(c.oid) AS seq_tup_read,
               pg_stat_get_tuples_fetched(c.oid) AS idx_tup_fetch,
               pg_stat_get_tuples_inserted(c.oid) AS n_tup_ins,
               pg_stat_get_tuples_updated(c.oid) AS n_tup_upd,
               pg_stat_get_tuples_deleted(c.oid) AS n_tup_del,
               pg_stat_get_tuples_hot_updated(c.oid) AS n_tup_hot_upd,
               pg_stat_get_vacuum_count(c.oid) AS vacuum_count,
               pg_stat_get_autovacuum_count(c.oid) AS autovacuum_count,
               pg_stat_get_analyze_count(c.oid) AS analyze_count,
               pg_stat_get_autoanalyze_count(c.oid) AS autoanalyze_count,
               pg_stat_get_blocks_fetched(c.oid) - pg_stat_get_blocks_hit(c.oid) AS heap_blks_read,
               pg_stat_get_blocks_hit(c.oid) AS heap_blks_hit,
               coalesce(pg_stat_get_blocks_fetched(nullif(c.reltoastrelid, 0))
                        - pg_stat_get_blocks_hit(nullif(c.reltoastrelid, 0)), 0) AS toast_blks_read,
               coalesce(pg_stat_get_blocks_hit(nullif(c.reltoastrelid, 0)), 0) AS toast_blks_hit,
               pg_stat_get_live_tuples(c.oid) AS n_live_tup,
               pg_stat_get_dead_tuples(c.oid) AS n_dead_tup,
               pg_stat_get_mod_since_analyze(c.oid) AS n_mod_since_analyze,
               pg_stat_get_ins_since_vacuum(c.oid) AS n_ins_since_vacuum,
               pg_stat_get_last_vacuum_time(c.oid) AS last_vacuum,
               pg_stat_get_last_autovacuum_time(c.oid) AS last_autovacuum,
               pg_stat_get_last_analyze_time(c.oid) AS last_analyze,
               pg_stat_get_last_autoanalyze_time(c.oid) AS last_autoanalyze
        FROM perfmon.relations AS r
        JOIN pg_class AS c ON c.oid = r.relid
        WHERE r.server_id = 1 AND r.datid = dbid AND r.kind IN ('r', 'p', 'm')
    ),
    cmp AS (
        SELECT c.*,
               p.rel_id IS NOT NULL AS known,
               coalesce(least(c.seq_scan - p.seq_scan, c.seq_tup_read - p.seq_tup_read,
                              c.idx_tup_fetch - p.idx_tup_fetch, c.n_tup_ins - p.n_tup_ins,
                              c.n_tup_upd - p.n_tup_upd, c.n_tup_del - p.n_tup_del,
                              c.heap_blks_read - p.heap_blks_read,
                              c.heap_blks_hit - p.heap_blks_hit) < 0, false) AS went_back,
               (c.*) IS DISTINCT FROM (p.*) AS changed,
               c.seq_scan - coalesce(p.seq_scan, 0) AS d_seq_scan,
               c.seq_tup_read - coalesce(p.seq_tup_read, 0) AS d_seq_tup_read,
               c.idx_tup_fetch - coalesce(p.idx_tup_fetch, 0) AS d_idx_tup_fetch,
               c.n_tup_ins - coalesce(p.n_tup_ins, 0) AS d_n_tup_ins,
               c.n_tup_upd - coalesce(p.n_tup_upd, 0) AS d_n_tup_upd,
               c.n_tup_del - coalesce(p.n_tup_del, 0) AS d_n_tup_del,
               c.n_tup_hot_upd - coalesce(p.n_tup_hot_upd, 0) AS d_n_tup_hot_upd,
               c.vacuum_count - coalesce(p.vacuum_count, 0) AS d_vacuum_count,
               c.autovacuum_count - coalesce(p.autovacuum_count, 0) AS d_autovacuum_count,
               c.analyze_count - coalesce(p.analyze_count, 0) AS d_analyze_count,
               c.autoanalyze_count - coalesce(p.autoanalyze_count, 0) AS d_autoanalyze_count,
               c.heap_blks_read - coalesce(p.heap_blks_read, 0) AS d_heap_blks_read,
               c.heap_blks_hit - coalesce(p.heap_blks_hit, 0) AS d_heap_blks_hit,
               c.toast_blks_read - coalesce(p.toast_blks_read, 0) AS d_toast_blks_read,
               c.toast_blks_hit - coalesce(p.toast_blks_hit, 0) AS d_toast_blks_hit
        FROM cur AS c
        LEFT JOIN perfmon.state_tables AS p ON p.rel_id = c.rel_id
    ),
    saved AS (
        INSERT INTO perfmon.state_tables AS s
        SELECT rel_id, seq_scan, seq_tup_read, idx_tup_fetch, n_tup_ins, n_tup_upd,
               n_tup_del, n_tup_hot_upd, vacuum_count, autovacuum_count, analyze_count,
               autoanalyze_count, heap_blks_read, heap_blks_hit,
               toast_blks_read, toast_blks_hit, n_live_tup,
               n_dead_tup, n_mod_since_analyze, n_ins_since_vacuum, last_vacuum,
               last_autovacuum, last_analyze, last_autoanalyze
        FROM cmp WHERE changed
        ON CONFLICT (rel_id) DO UPDATE SET
            (seq_scan, seq_tup_read, idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del,
             n_tup_hot_upd, vacuum_count, autovacuum_count, analyze_count, autoanalyze_count,
             heap_blks_read, heap_blks_hit, toast_blks_read,
             toast_blks_hit, n_live_tup, n_dead_tup,
             n_mod_since_analyze, n_ins_since_vacuum, last_vacuum, last_autovacuum,
             last_analyze, last_autoanalyze)
          = (EXCLUDED.seq_scan, EXCLUDED.seq_tup_read, EXCLUDED.idx_tup_fetch,
             EXCLUDED.n_tup_ins, EXCLUDED.n_tup_upd, EXCLUDED.n_tup_del, EXCLUDED.n_tup_hot_upd,
             EXCLUDED.vacuum_count, EXCLUDED.autovacuum_count, EXCLUDED.analyze_count,
             EXCLUDED.autoanalyze_count, EXCLUDED.heap_blks_read, EXCLUDED.heap_blks_hit,
             EXCLUDED.toast_blks_read, EXCLUDED.toast_blks_hit,
             EXCLUDED.n_live_tup, EXCLUDED.n_dead_tup, EXCLUDED.n_mod_since_analyze,
             EXCLUDED.n_ins_since_vacuum, EXCLUDED.last_vacuum, EXCLUDED.last_autovacuum,
             EXCLUDED.last_analyze, EXCLUDED.last_autoanalyze)
    ),
    ranked AS (
        SELECT cmp.*,
               row_number() OVER (ORDER BY d_seq_tup_read + d_idx_tup_fetch + d_n_tup_ins
                                           + d_n_tup_upd + d_n_tup_del + d_heap_blks_read
                                           + d_heap_blks_hit DESC, rel_id) AS rank
        FROM cmp
        WHERE changed AND NOT went_back AND (known OR NOT baseline)
    ),
    stored AS (
        INSERT INTO perfmon.table_history
        SELECT 1, sample_ts, rel_id, nullif(d_seq_scan, 0), nullif(d_seq_tup_read, 0),
               nullif(d_idx_tup_fetch, 0), nullif(d_n_tup_ins, 0),
               nullif(d_n_tup_upd, 0), nullif(d_n_tup_del, 0), nullif(d_n_tup_hot_upd, 0),
               nullif(d_vacuum_count, 0), nullif(d_autovacuum_count, 0),
               nullif(d_analyze_count, 0), nullif(d_autoanalyze_count, 0),
               nullif(d_heap_blks_read, 0), nullif(d_heap_blks_hit, 0),
               nullif(d_toast_blks_read, 0), nullif(d_toast_blks_hit, 0),
               n_live_tup, n_dead_tup, n_mod_since_analyze, n_ins_since_vacuum
        FROM ranked WHERE rank <= top_n
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM cmp WHERE went_back) + lost
      INTO result.stored, result.gaps;

    IF baseline OR added > 100 THEN
        ANALYZE perfmon.state_tables;  -- it was (re)filled: let the next sample's joins plan with real sizes
    END IF;
    INSERT INTO perfmon.state_sources AS s (server_id, source, last_ts, reset_at)
    VALUES (1, 'tables', sample_ts, reset_at)
    ON CONFLICT (server_id, source) DO UPDATE
        SET last_ts = EXCLUDED.last_ts, reset_at = EXCLUDED.reset_at;
    result.details := jsonb_build_object('new_relations', added, 'baseline', baseline);
    RETURN result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_tables(timestamptz) IS
    'Collection stage: table statistics deltas into perfmon.table_history.';
