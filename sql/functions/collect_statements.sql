CREATE OR REPLACE FUNCTION perfmon.collect_statements(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
-- pg_stat_statements lives in public (pgperfmon install checks that).
SET search_path = pg_catalog, public, pg_temp
-- Every entry is joined with its dictionary row and state: hash joins. The planner,
-- which cannot see into pg_stat_statements(), otherwise picks a nested loop.
SET enable_nestloop = off
AS $$
-- pg_stat_statements: per-statement deltas since the previous sample.
--  * Only statements that ran (calls or plans changed) get a row; the top
--    collection.statement_top_n by execution time are stored by name, the rest
--    summed into stmt_id 0, so totals stay true.
--  * After pg_stat_statements_reset() (stats_reset moved), or with no previous
--    state, this sample is a baseline: state is refreshed, nothing is stored. When
--    an earlier sample existed (a reset, or a crash that emptied the state) it is a gap.
--  * A statement whose counters went backwards was reset or evicted and made again
--    since the previous sample: its counters are its delta (never a negative one), and
--    the work done before the reset is lost: a gap.
--  * A statement first seen since the previous sample is new work: its counters
--    are its delta. Entries evicted since then (dealloc) are counted as gaps.
--  * A statement whose text pg_stat_statements returns as NULL (its query file
--    unreadable, or a failed garbage collection of that file) is stored with the text
--    '<query text unavailable>', filled in by a later sample that can read it.
--  * pgperfmon never resets pg_stat_statements.
DECLARE
    info record;
    src record;
    baseline boolean;
    new_keys bigint;
    missing_texts bigint;
    -- Stored for a statement whose text pg_stat_statements could not give (NULL),
    -- replaced by the text at a later sample that can read it.
    no_text constant text := '<query text unavailable>';
    evicted bigint := 0;
    lost bigint := 0;
    top_n int := perfmon.setting('collection.statement_top_n')::int;
    result perfmon.collect_result;
BEGIN
    SELECT i.dealloc, i.stats_reset INTO info FROM pg_stat_statements_info() AS i;
    SELECT * INTO src FROM perfmon.state_sources WHERE server_id = 1 AND source = 'statements';
    baseline := NOT FOUND OR src.reset_at IS DISTINCT FROM info.stats_reset;
    IF baseline THEN
        -- A reset, or state emptied by a crash, after an earlier sample: the deltas since
        -- it are lost, a gap per statement whose state is dropped (at least one).
        DELETE FROM perfmon.state_statements;
        GET DIAGNOSTICS lost = ROW_COUNT;
        IF lost = 0 AND perfmon.sampled_before(sample_ts) THEN
            lost := 1;
        END IF;
    ELSE
        evicted := greatest(info.dealloc - coalesce((src.extra ->> 'dealloc')::bigint, 0), 0);
    END IF;

    -- Texts are read (an expensive pass over the query file) only when there are new keys,
    -- or statements stored while their text was unavailable (the file unreadable, or
    -- pg_stat_statements' garbage collection of it failed: every text is NULL then) that
    -- are still there to ask again.
    SELECT count(*) FILTER (WHERE d.stmt_id IS NULL),
           count(*) FILTER (WHERE d.query = no_text)
      INTO new_keys, missing_texts
      FROM pg_stat_statements(false) AS s
      LEFT JOIN perfmon.statements AS d
        ON d.server_id = 1 AND d.userid = s.userid AND d.dbid = s.dbid
       AND d.queryid = s.queryid AND d.toplevel = s.toplevel
     WHERE s.queryid IS NOT NULL;
    IF new_keys > 0 THEN
        INSERT INTO perfmon.statements (server_id, userid, dbid, queryid, toplevel, query)
        SELECT 1, s.userid, s.dbid, s.queryid, s.toplevel,
               coalesce(perfmon.redact_secrets(s.query), no_text)
          FROM pg_stat_statements(true) AS s
         WHERE s.queryid IS NOT NULL
           AND NOT EXISTS (SELECT FROM perfmon.statements AS d
                           WHERE d.server_id = 1 AND d.userid = s.userid AND d.dbid = s.dbid
                             AND d.queryid = s.queryid AND d.toplevel = s.toplevel)
        ON CONFLICT DO NOTHING;
        IF new_keys > 100 THEN
            ANALYZE perfmon.statements;  -- or the joins below plan for a tiny dictionary
        END IF;
    END IF;
    IF missing_texts > 0 THEN
        UPDATE perfmon.statements AS d SET query = perfmon.redact_secrets(s.query)
          FROM pg_stat_statements(true) AS s
         WHERE d.server_id = 1 AND d.userid = s.userid AND d.dbid = s.dbid
           AND d.queryid = s.queryid AND d.toplevel = s.toplevel
           AND d.query = no_text AND s.query IS NOT NULL;
    END IF;

    WITH cur AS (
        SELECT d.stmt_id, s.calls, s.plans, s.total_exec_time, s.total_plan_time,
               s.min_exec_time, s.max_exec_time, s.mean_exec_time, s.rows,
               s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
               s.local_blks_hit, s.local_blks_read, s.local_blks_dirtied, s.local_blks_written,
               s.temp_blks_read, s.temp_blks_written, s.blk_read_time, s.blk_write_time,
               s.wal_records, s.wal_fpi, s.wal_bytes
        FROM pg_stat_statements(false) AS s
        JOIN perfmon.statements AS d
          ON d.server_id = 1 AND d.userid = s.userid AND d.dbid = s.dbid
         AND d.queryid = s.queryid AND d.toplevel = s.toplevel
    ),
    cmp AS (
        SELECT c.*,
               p.stmt_id IS NOT NULL AS known,
               p.stmt_id IS NOT NULL AND b.stmt_id IS NULL AS went_back,
               b.stmt_id IS NULL OR c.calls <> b.calls OR c.plans <> b.plans AS changed,
               c.calls - coalesce(b.calls, 0) AS d_calls,
               c.plans - coalesce(b.plans, 0) AS d_plans,
               c.total_exec_time - coalesce(b.total_exec_time, 0) AS d_exec,
               c.total_plan_time - coalesce(b.total_plan_time, 0) AS d_plan,
               c.rows - coalesce(b.rows, 0) AS d_rows,
               c.shared_blks_hit - coalesce(b.shared_blks_hit, 0) AS d_shared_hit,
               c.shared_blks_read - coalesce(b.shared_blks_read, 0) AS d_shared_read,
               c.shared_blks_dirtied - coalesce(b.shared_blks_dirtied, 0) AS d_shared_dirtied,
               c.shared_blks_written - coalesce(b.shared_blks_written, 0) AS d_shared_written,
               c.local_blks_hit - coalesce(b.local_blks_hit, 0) AS d_local_hit,
               c.local_blks_read - coalesce(b.local_blks_read, 0) AS d_local_read,
               c.local_blks_dirtied - coalesce(b.local_blks_dirtied, 0) AS d_local_dirtied,
               c.local_blks_written - coalesce(b.local_blks_written, 0) AS d_local_written,
               c.temp_blks_read - coalesce(b.temp_blks_read, 0) AS d_temp_read,
               c.temp_blks_written - coalesce(b.temp_blks_written, 0) AS d_temp_written,
               c.blk_read_time - coalesce(b.blk_read_time, 0) AS d_blk_read_time,
               c.blk_write_time - coalesce(b.blk_write_time, 0) AS d_blk_write_time,
               c.wal_records - coalesce(b.wal_records, 0) AS d_wal_records,
               c.wal_fpi - coalesce(b.wal_fpi, 0) AS d_wal_fpi,
               c.wal_bytes - coalesce(b.wal_bytes, 0) AS d_wal_bytes
        FROM cur AS c
        LEFT JOIN perfmon.state_statements AS p ON p.stmt_id = c.stmt_id
        -- b: the same state row, which the deltas are taken from, unless a counter is lower
        -- than it, or the maximum time lower or the minimum higher. Then the entry was
        -- removed (pg_stat_statements_reset() of this statement, or evicted) and made
        -- again since the previous sample: its counters are all work done since then, its
        -- delta (the work between that sample and the reset is lost: a gap). A reset of
        -- the whole of pg_stat_statements moves stats_reset instead (a baseline).
        LEFT JOIN perfmon.state_statements AS b
          ON b.stmt_id = c.stmt_id
         AND least(c.calls - b.calls, c.plans - b.plans, c.total_exec_time - b.total_exec_time,
                   c.total_plan_time - b.total_plan_time, c.rows - b.rows,
                   c.shared_blks_hit - b.shared_blks_hit, c.shared_blks_read - b.shared_blks_read,
                   c.shared_blks_dirtied - b.shared_blks_dirtied,
                   c.shared_blks_written - b.shared_blks_written,
                   c.local_blks_hit - b.local_blks_hit, c.local_blks_read - b.local_blks_read,
                   c.local_blks_dirtied - b.local_blks_dirtied,
                   c.local_blks_written - b.local_blks_written,
                   c.temp_blks_read - b.temp_blks_read, c.temp_blks_written - b.temp_blks_written,
                   c.blk_read_time - b.blk_read_time, c.blk_write_time - b.blk_write_time,
                   c.wal_records - b.wal_records, c.wal_fpi - b.wal_fpi,
                   c.wal_bytes - b.wal_bytes) >= 0
         AND (c.max_exec_time >= b.max_exec_time) IS NOT FALSE
         AND (c.min_exec_time <= b.min_exec_time) IS NOT FALSE
    ),
    saved AS (
        INSERT INTO perfmon.state_statements AS s
        SELECT stmt_id, calls, plans, total_exec_time, total_plan_time, min_exec_time,
               max_exec_time, mean_exec_time, rows, shared_blks_hit, shared_blks_read,
               shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read,
               local_blks_dirtied, local_blks_written, temp_blks_read, temp_blks_written,
               blk_read_time, blk_write_time, wal_records, wal_fpi, wal_bytes, sample_ts
        FROM cmp WHERE changed
        ON CONFLICT (stmt_id) DO UPDATE SET
            (calls, plans, total_exec_time, total_plan_time, min_exec_time, max_exec_time,
             mean_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied,
             shared_blks_written, local_blks_hit, local_blks_read, local_blks_dirtied,
             local_blks_written, temp_blks_read, temp_blks_written, blk_read_time,
             blk_write_time, wal_records, wal_fpi, wal_bytes, last_ts)
          = (EXCLUDED.calls, EXCLUDED.plans, EXCLUDED.total_exec_time, EXCLUDED.total_plan_time,
             EXCLUDED.min_exec_time, EXCLUDED.max_exec_time, EXCLUDED.mean_exec_time,
             EXCLUDED.rows, EXCLUDED.shared_blks_hit, EXCLUDED.shared_blks_read,
             EXCLUDED.shared_blks_dirtied, EXCLUDED.shared_blks_written, EXCLUDED.local_blks_hit,
             EXCLUDED.local_blks_read, EXCLUDED.local_blks_dirtied, EXCLUDED.local_blks_written,
             EXCLUDED.temp_blks_read, EXCLUDED.temp_blks_written, EXCLUDED.blk_read_time,
             EXCLUDED.blk_write_time, EXCLUDED.wal_records, EXCLUDED.wal_fpi,
             EXCLUDED.wal_bytes, EXCLUDED.last_ts)
    ),
    ranked AS (
        SELECT cmp.*, row_number() OVER (ORDER BY d_exec DESC, stmt_id) AS rank
        FROM cmp
        WHERE changed AND (d_calls <> 0 OR d_plans <> 0) AND (known OR NOT baseline)
    ),
    rows_out AS (
        SELECT stmt_id, d_calls, d_plans, d_exec, d_plan, d_rows, d_shared_hit, d_shared_read,
               d_shared_dirtied, d_shared_written, d_local_hit, d_local_read, d_local_dirtied,
               d_local_written, d_temp_read, d_temp_written, d_blk_read_time, d_blk_write_time,
               d_wal_records, d_wal_fpi, d_wal_bytes
        FROM ranked WHERE rank <= top_n
        UNION ALL
        SELECT 0, sum(d_calls), sum(d_plans), sum(d_exec), sum(d_plan), sum(d_rows),
               sum(d_shared_hit), sum(d_shared_read), sum(d_shared_dirtied), sum(d_shared_written),
               sum(d_local_hit), sum(d_local_read), sum(d_local_dirtied), sum(d_local_written),
               sum(d_temp_read), sum(d_temp_written), sum(d_blk_read_time), sum(d_blk_write_time),
               sum(d_wal_records), sum(d_wal_fpi), sum(d_wal_bytes)
        FROM ranked WHERE rank > top_n
        HAVING count(*) > 0
    ),
    stored AS (
        INSERT INTO perfmon.statement_history
        SELECT 1, sample_ts, stmt_id, nullif(d_calls, 0), nullif(d_plans, 0),
               nullif(d_exec, 0), nullif(d_plan, 0), nullif(d_rows, 0),
               nullif(d_shared_hit, 0), nullif(d_shared_read, 0), nullif(d_shared_dirtied, 0),
               nullif(d_shared_written, 0), nullif(d_local_hit, 0), nullif(d_local_read, 0),
               nullif(d_local_dirtied, 0), nullif(d_local_written, 0), nullif(d_temp_read, 0),
               nullif(d_temp_written, 0), nullif(d_blk_read_time, 0), nullif(d_blk_write_time, 0),
               nullif(d_wal_records, 0), nullif(d_wal_fpi, 0), nullif(d_wal_bytes, 0)
        FROM rows_out
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM cmp WHERE went_back) + evicted + lost
      INTO result.stored, result.gaps;

    IF baseline OR new_keys > 100 THEN
        ANALYZE perfmon.state_statements;
    END IF;
    INSERT INTO perfmon.state_sources AS s (server_id, source, last_ts, reset_at, extra)
    VALUES (1, 'statements', sample_ts, info.stats_reset, jsonb_build_object('dealloc', info.dealloc))
    ON CONFLICT (server_id, source) DO UPDATE
        SET last_ts = EXCLUDED.last_ts, reset_at = EXCLUDED.reset_at, extra = EXCLUDED.extra;

    result.details := jsonb_build_object('new_statements', new_keys, 'evicted', evicted,
                                         'baseline', baseline);
    RETURN result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_statements(timestamptz) IS
    'Collection stage: pg_stat_statements deltas into perfmon.statement_history.';
