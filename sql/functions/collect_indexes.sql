CREATE OR REPLACE FUNCTION perfmon.collect_indexes(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Index statistics and I/O of this database; the same rules as collect_tables(). Beyond
-- the top N stored, every index whose idx_scan grew is noted in perfmon.index_scans_seen
-- (at most once an hour each), and a reset or crash after an earlier sample is noted in
-- perfmon.index_stats_gaps: perfmon.unused_indexes must know a scan of any index, not only
-- of the busiest.
DECLARE
    dbid oid := (SELECT oid FROM pg_database WHERE datname = current_database());
    reset_at timestamptz := (SELECT stats_reset FROM pg_stat_database WHERE datid = dbid);
    src record;
    baseline boolean;
    had_state boolean;
    restarted boolean := false;  -- the counters started again after an earlier sample
    prev_ts timestamptz;
    lost bigint := 0;
    added int;
    top_n int := perfmon.setting('collection.relation_top_n')::int;
    result perfmon.collect_result;
BEGIN
    SELECT * INTO src FROM perfmon.state_sources WHERE server_id = 1 AND source = 'indexes';
    had_state := FOUND;
    baseline := NOT had_state OR src.reset_at IS DISTINCT FROM reset_at;
    IF baseline THEN
        -- After an earlier sample the counters now count from the reset (or the restart
        -- after a crash, which empties the state): scans since then are known, those from
        -- that sample to the reset are not.
        prev_ts := CASE WHEN had_state THEN src.last_ts
                        ELSE (SELECT max(s.ts) FROM perfmon.samples AS s
                              WHERE s.server_id = 1 AND s.kind = 'sample' AND s.ts < sample_ts) END;
        restarted := prev_ts IS NOT NULL;
        IF restarted THEN
            INSERT INTO perfmon.index_stats_gaps (server_id, gap_from, gap_to)
            VALUES (1, prev_ts, CASE WHEN reset_at > prev_ts AND reset_at < sample_ts THEN reset_at
                                     ELSE sample_ts END)
            ON CONFLICT DO NOTHING;
        END IF;
        -- A reset or a crash after an earlier sample: a gap per table whose state is
        -- dropped (at least one), as in collect_statements().
        DELETE FROM perfmon.state_indexes;
        GET DIAGNOSTICS lost = ROW_COUNT;
        IF lost = 0 AND perfmon.sampled_before(sample_ts) THEN
            lost := 1;
        END IF;
    END IF;
    added := perfmon.sync_relations(ARRAY['i']::"char"[], with_renames => false);

    -- pg_stat_user_indexes and pg_statio_user_indexes, from their functions (see
    -- collect_tables for why).
    WITH cur AS (
        SELECT r.rel_id,
               pg_stat_get_numscans(c.oid) AS idx_scan,
               pg_stat_get_tuples_returned(c.oid) AS idx_tup_read,
               pg_stat_get_tuples_fetched(c.oid) AS idx_tup_fetch,
               pg_stat_get_blocks_fetched(c.oid) - pg_stat_get_blocks_hit(c.oid) AS idx_blks_read,
               pg_stat_get_blocks_hit(c.oid) AS idx_blks_hit
        FROM perfmon.relations AS r
        JOIN pg_class AS c ON c.oid = r.relid
        WHERE r.server_id = 1 AND r.datid = dbid AND r.kind = 'i'
    ),
    cmp AS (
        SELECT c.*,
               p.rel_id IS NOT NULL AS known,
               coalesce(least(c.idx_scan - p.idx_scan, c.idx_tup_read - p.idx_tup_read,
                              c.idx_blks_read - p.idx_blks_read,
                              c.idx_blks_hit - p.idx_blks_hit) < 0, false) AS went_back,
               (c.*) IS DISTINCT FROM (p.*) AS changed,
               c.idx_scan - coalesce(p.idx_scan, 0) AS d_idx_scan,
               c.idx_tup_read - coalesce(p.idx_tup_read, 0) AS d_idx_tup_read,
               c.idx_tup_fetch - coalesce(p.idx_tup_fetch, 0) AS d_idx_tup_fetch,
               c.idx_blks_read - coalesce(p.idx_blks_read, 0) AS d_idx_blks_read,
               c.idx_blks_hit - coalesce(p.idx_blks_hit, 0) AS d_idx_blks_hit
        FROM cur AS c
        LEFT JOIN perfmon.state_indexes AS p ON p.rel_id = c.rel_id
    ),
    saved AS (
        INSERT INTO perfmon.state_indexes AS s
        SELECT rel_id, idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit
        FROM cmp WHERE changed
        ON CONFLICT (rel_id) DO UPDATE SET
            (idx_scan, idx_tup_read, idx_tup_fetch, idx_blks_read, idx_blks_hit)
          = (EXCLUDED.idx_scan, EXCLUDED.idx_tup_read, EXCLUDED.idx_tup_fetch,
             EXCLUDED.idx_blks_read, EXCLUDED.idx_blks_hit)
    ),
    seen AS (
        -- a scan since the previous sample: the delta, or the whole counter where it
        -- started again since then
        INSERT INTO perfmon.index_scans_seen AS s (rel_id, last_scan_seen)
        SELECT cmp.rel_id, sample_ts
        FROM cmp
        LEFT JOIN perfmon.index_scans_seen AS o ON o.rel_id = cmp.rel_id
        WHERE CASE WHEN cmp.went_back THEN cmp.idx_scan > 0
                   WHEN baseline AND NOT cmp.known THEN restarted AND cmp.idx_scan > 0
                   ELSE cmp.d_idx_scan > 0 END
          AND (o.rel_id IS NULL OR o.last_scan_seen < sample_ts - interval '1 hour')
        ON CONFLICT (rel_id) DO UPDATE SET last_scan_seen = EXCLUDED.last_scan_seen
    ),
    ranked AS (
        SELECT cmp.*,
               row_number() OVER (ORDER BY d_idx_tup_read + d_idx_blks_read + d_idx_blks_hit DESC,
                                  rel_id) AS rank
        FROM cmp
        WHERE changed AND NOT went_back AND (known OR NOT baseline)
    ),
    stored AS (
        INSERT INTO perfmon.index_history
        SELECT 1, sample_ts, rel_id, nullif(d_idx_scan, 0), nullif(d_idx_tup_read, 0),
               nullif(d_idx_tup_fetch, 0), nullif(d_idx_blks_read, 0), nullif(d_idx_blks_hit, 0)
        FROM ranked WHERE rank <= top_n
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM cmp WHERE went_back) + lost
      INTO result.stored, result.gaps;

    IF baseline OR added > 100 THEN
        ANALYZE perfmon.state_indexes;  -- it was (re)filled: let the next sample's joins plan with real sizes
    END IF;
    INSERT INTO perfmon.state_sources AS s (server_id, source, last_ts, reset_at)
    VALUES (1, 'indexes', sample_ts, reset_at)
    ON CONFLICT (server_id, source) DO UPDATE
        SET last_ts = EXCLUDED.last_ts, reset_at = EXCLUDED.reset_at;
    result.details := jsonb_build_object('new_relations', added, 'baseline', baseline);
    RETURN result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_indexes(timestamptz) IS
    'Collection stage: index statistics deltas of the busiest collection.relation_top_n indexes '
    'into perfmon.index_history; the last scan seen of every index into perfmon.index_scans_seen.';
