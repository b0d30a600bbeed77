CREATE OR REPLACE FUNCTION perfmon.health_database(from_ts timestamptz, to_ts timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The database component of the health score (docs/health.md has the bands):
-- cache hit, slow-query share, connection headroom, blocking, replica lag, wraparound.
DECLARE
    thr jsonb := perfmon.settings_under('database.performance_thresholds');
    hit_min double precision := (thr ->> 'cache_hit_ratio_min_pct')::float8;
    slow_ms double precision := (thr ->> 'slow_query_ms')::float8;
    lag_warn double precision := (thr ->> 'replication_lag_seconds')::float8;
    conn_crit double precision := perfmon.setting('alerting.levels.critical')::float8;
    -- the server stops assigning IDs 3 million short of 2^31 (as perfmon.wraparound_risk)
    hard_limit double precision := 2147483647 - 3000000;
    warn_pct double precision := perfmon.setting('optimization.wraparound_warning_pct')::float8;
    no_samples text := 'no sample of the server''s statistics in the period: perfmon.collect() has '
                       'not run (pg_cron job collect)';
    s record;
    q record;
    r record;
    inputs jsonb := '{}';
    checks jsonb := '{}';
    missing jsonb := '[]';
BEGIN
    SELECT count(*) AS samples,
           sum(coalesce(h.blks_hit, 0)) AS hit,
           sum(coalesce(h.blks_hit, 0) + coalesce(h.blks_read, 0)) AS blocks,
           max(100.0 * h.sessions_total / nullif(h.max_connections, 0)) AS peak_conn_pct,
           100.0 * count(*) FILTER (WHERE h.blocked_sessions > 0) / nullif(count(*), 0) AS blocked_pct,
           max(h.max_xid_age)::float8 AS xid_age, max(h.max_mxid_age)::float8 AS mxid_age
      INTO s
      FROM perfmon.server_history AS h
     WHERE h.server_id = 1 AND h.ts >= from_ts AND h.ts < to_ts;
    inputs := inputs || jsonb_build_object('samples', s.samples);

    IF s.samples = 0 THEN
        missing := missing || jsonb_build_array(
            jsonb_build_object('check', 'cache_hit', 'why', no_samples),
            jsonb_build_object('check', 'connections', 'why', no_samples),
            jsonb_build_object('check', 'blocking', 'why', no_samples));
    ELSE
        IF s.blocks >= 1000 THEN
            inputs := inputs || jsonb_build_object('cache_hit_pct', round(100.0 * s.hit / s.blocks, 2),
                                                   'block_accesses', s.blocks);
            checks := checks || jsonb_build_object('cache_hit', perfmon.health_points(
                100.0 * s.hit / s.blocks, hit_min, hit_min - 15, hit_min - 45));
        ELSE
            inputs := inputs || jsonb_build_object('block_accesses', s.blocks);
            missing := missing || jsonb_build_object('check', 'cache_hit', 'why', format(
                'only %s block accesses in the period, fewer than the 1000 needed to judge the cache',
                s.blocks));
        END IF;
        inputs := inputs || jsonb_build_object('peak_connections_pct', round(s.peak_conn_pct, 2),
                                               'blocked_samples_pct', round(s.blocked_pct, 2));
        checks := checks || jsonb_build_object(
            'connections', perfmon.health_points(s.peak_conn_pct,
                (thr ->> 'connection_usage_pct')::float8, conn_crit, 100),
            'blocking', perfmon.health_points(s.blocked_pct, 0, 10, 50));
    END IF;

    -- Statements: calls of those whose mean time over the period is above the threshold.
    SELECT sum(t.calls) AS calls,
           sum(t.calls) FILTER (WHERE t.stmt_id <> 0 AND t.exec_ms / nullif(t.calls, 0) > slow_ms) AS slow_calls,
           count(*) FILTER (WHERE t.stmt_id <> 0 AND t.exec_ms / nullif(t.calls, 0) > slow_ms) AS slow_statements
      INTO q
      FROM perfmon.statement_totals(from_ts, to_ts) AS t;
    IF coalesce(q.calls, 0) = 0 THEN
        missing := missing || jsonb_build_object('check', 'slow_queries', 'why',
            'no statement execution sampled in the period (pg_stat_statements through perfmon.collect())');
    ELSE
        inputs := inputs || jsonb_build_object(
            'calls', q.calls, 'slow_calls', coalesce(q.slow_calls, 0),
            'slow_statements', q.slow_statements, 'slow_query_ms', slow_ms,
            'slow_calls_pct', round(100.0 * coalesce(q.slow_calls, 0) / q.calls, 2));
        checks := checks || jsonb_build_object('slow_queries', perfmon.health_points(
            100.0 * coalesce(q.slow_calls, 0) / q.calls, 1, 5, 25));
    END IF;

    -- Replicas: not applicable without any (a caught-up idle replica reports no lag: 0 s).
    SELECT count(DISTINCT h.name) AS replicas, coalesce(max(h.replay_lag_s), 0) AS max_lag
      INTO r
      FROM perfmon.replication_history AS h
     WHERE h.server_id = 1 AND h.kind = 'replica' AND h.ts >= from_ts AND h.ts < to_ts;
    inputs := inputs || jsonb_build_object('replicas', r.replicas);
    IF r.replicas > 0 THEN
        inputs := inputs || jsonb_build_object('max_replay_lag_s', round(r.max_lag::numeric, 3));
        checks := checks || jsonb_build_object('replication_lag', perfmon.health_points(
            r.max_lag, lag_warn, 2 * lag_warn, 10 * lag_warn));
    END IF;

    -- Wraparound: the oldest XID/MXID age the period's samples saw, as % of the limit.
    IF s.samples > 0 AND s.xid_age IS NOT NULL THEN
        inputs := inputs || jsonb_build_object(
            'max_xid_age', s.xid_age, 'max_mxid_age', s.mxid_age,
            'wraparound_pct_of_limit',
            round((100 * greatest(s.xid_age, coalesce(s.mxid_age, 0)) / hard_limit)::numeric, 3));
        checks := checks || jsonb_build_object('wraparound', least(
            perfmon.health_points(100 * s.xid_age / hard_limit,
                100 * current_setting('autovacuum_freeze_max_age')::float8 * warn_pct / 100 / hard_limit, 50, 100),
            perfmon.health_points(100 * coalesce(s.mxid_age, 0) / hard_limit,
                100 * current_setting('autovacuum_multixact_freeze_max_age')::float8 * warn_pct / 100 / hard_limit,
                50, 100)));
    ELSE
        missing := missing || jsonb_build_object('check', 'wraparound', 'why',
            CASE WHEN s.samples = 0 THEN no_samples ELSE 'the period''s samples carry no XID age' END);
    END IF;

    RETURN perfmon.health_component(inputs, checks, missing,
        'mean of the checks cache_hit, slow_queries, connections, blocking, replication_lag and '
        'wraparound, each 100 up to its warning bound, 50 at critical, 0 at worst (docs/health.md)',
        jsonb_build_object(
            'cache_hit', 'the cache misses often: see perfmon.cache_hit_ratio for the tables read from disk',
            'slow_queries', 'many calls are slow: see perfmon.slow_queries and perfmon.index_recommendations',
            'connections', 'connections near max_connections: see perfmon.connection_usage; use a pooler',
            'blocking', 'sessions are often blocked by locks: see perfmon.blocking_locks',
            'replication_lag', 'a replica lags: see perfmon.replication_status',
            'wraparound', 'transaction IDs near wraparound: see perfmon.wraparound_risk and VACUUM (FREEZE)'));
END
$$;
COMMENT ON FUNCTION perfmon.health_database(timestamptz, timestamptz) IS
    'Health component database between two times: checks cache_hit (%), slow_queries (% of calls), '
    'connections (peak % of max_connections), blocking (% of samples), replication_lag (s), '
    'wraparound (% of the limit), each scored 0-100; see docs/health.md.';
