CREATE OR REPLACE FUNCTION perfmon.executive_report(period text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Owner's rights: readers (BI tools, the dashboards, pgperfmon report) may call it but
-- may not read the history tables it reads. It only reads.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- The last day, 7 days or 30 days ending now, for management (docs/health.md). Every
-- figure is {value, unit, how}; a figure that cannot be computed is null and its how
-- says what is missing. Savings come only from recommendations marked applied, measured
-- before and after; revenue at risk only from the configured revenue and measured downtime.
-- What happened in the period is read half-open, [from, to), as perfmon.health_score()
-- and perfmon.server_totals() read it: an alert fired or an anomaly seen exactly on the
-- boundary of two adjacent periods (yesterday's report and today's) is in the later one
-- only. The recorded health scores are read (from, to]: a row of perfmon.health at ts
-- scores the hour before ts, so the one at from scores the period before.
DECLARE
    days int := CASE period WHEN 'daily' THEN 1 WHEN 'weekly' THEN 7 WHEN 'monthly' THEN 30 END;
    to_ts timestamptz := now();
    from_ts timestamptz;
    trend_step interval;
    biz jsonb := perfmon.settings_under('business');
    cur text := biz ->> 'currency';
    cost_h numeric := (biz ->> 'instance_cost_per_hour')::numeric;
    rev_h numeric := (biz ->> 'revenue_per_hour')::numeric;
    avail jsonb;
    sat jsonb;
    costc jsonb;
    hl record;
    live jsonb;
    al record;
    tx record;
    st record;
    down_s numeric;
    summary jsonb;
    financial jsonb;
    technical jsonb;
    recs jsonb;
    savings jsonb;
    top jsonb;
    anomalies jsonb;
    alerts jsonb;
    trend jsonb;
    headline text;
    open_recs int;
BEGIN
    IF days IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: unknown report period %; expected one of daily, weekly, monthly',
            coalesce(quote_literal(period), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT perfmon.executive_report(''weekly'')';
    END IF;
    -- days x 24 hours, not calendar days: across a DST change '7 days' in the session's
    -- TimeZone is 167 or 169 h, and the report would depend on who asks for it.
    from_ts := to_ts - make_interval(hours => days * 24);
    trend_step := CASE WHEN days = 30 THEN interval '6 hours' ELSE interval '1 hour' END;

    -- ------------------------------------------------------------ executive summary
    SELECT (array_agg(h.overall_score ORDER BY h.ts DESC))[1] AS latest,
           (array_agg(h.risk_level ORDER BY h.ts DESC))[1] AS risk,
           max(h.ts) AS latest_ts, round(avg(h.overall_score), 1) AS average,
           min(h.overall_score) AS lowest, count(*) AS rows
      INTO hl
      FROM perfmon.health AS h
     WHERE h.ts > from_ts AND h.ts <= to_ts;
    live := perfmon.health_score(interval '1 hour', to_ts);

    avail := perfmon.health_availability(from_ts, to_ts);
    sat := perfmon.health_user_satisfaction(from_ts, to_ts);
    costc := perfmon.health_cost_efficiency(from_ts, to_ts);
    down_s := (avail -> 'inputs' ->> 'downtime_s')::numeric;

    SELECT count(*) AS fired,
           count(*) FILTER (WHERE a.level = 'emergency') AS emergency,
           count(*) FILTER (WHERE a.level = 'critical') AS critical,
           count(*) FILTER (WHERE a.level = 'warning') AS warning,
           count(*) FILTER (WHERE a.level = 'info') AS info,
           round(avg(a.duration_s) FILTER (WHERE a.state = 'resolved'), 1) AS mttr_s
      INTO al
      FROM perfmon.alerts AS a
     WHERE a.fired_at >= from_ts AND a.fired_at < to_ts;

    SELECT count(*) FILTER (WHERE r.status = 'open') INTO open_recs FROM perfmon.recommendations AS r;

    summary := jsonb_build_object(
        'health', jsonb_build_object(
            'latest', jsonb_build_object('value', hl.latest, 'unit', 'score 0-100', 'at', hl.latest_ts,
                'how', CASE WHEN hl.rows = 0 THEN 'no health score recorded in the period: perfmon.analyze() '
                                                  'records one every collection interval (pg_cron job analyze)'
                            WHEN hl.latest IS NULL THEN 'the latest recorded score had no component to compute'
                            ELSE 'overall_score of the newest row of perfmon.health in the period' END),
            'average', jsonb_build_object('value', hl.average, 'unit', 'score 0-100',
                'how', CASE WHEN hl.average IS NULL THEN 'no health score recorded in the period'
                            ELSE format('mean overall_score of the %s rows of perfmon.health in the period', hl.rows) END),
            'min', jsonb_build_object('value', hl.lowest, 'unit', 'score 0-100',
                'how', CASE WHEN hl.lowest IS NULL THEN 'no health score recorded in the period'
                            ELSE 'lowest overall_score of perfmon.health in the period' END),
            'risk_level', jsonb_build_object('value', hl.risk, 'unit', 'level',
                'how', CASE WHEN hl.risk IS NULL THEN 'no health score recorded in the period'
                            ELSE 'risk_level of the newest row of perfmon.health' END),
            'current', jsonb_build_object('value', live -> 'overall', 'unit', 'score 0-100',
                'risk_level', live -> 'risk_level', 'coverage_pct', live -> 'coverage_pct',
                'how', 'perfmon.health_score(''1 hour'') computed now')),
        'availability_pct', jsonb_build_object(
            'value', avail -> 'inputs' -> 'uptime_pct', 'unit', 'pct',
            'target_pct', avail -> 'inputs' -> 'target_pct',
            'how', coalesce(avail -> 'missing' ->> 0, format(
                'uptime over the %s s observed: %s s down in %s sample gap(s) and across %s restart(s) '
                '(perfmon.samples, perfmon.server_starts; rule in docs/health.md)',
                avail -> 'inputs' ->> 'observed_s', avail -> 'inputs' ->> 'downtime_s',
                avail -> 'inputs' ->> 'gaps', avail -> 'inputs' ->> 'restarts'))),
        'downtime_s', jsonb_build_object(
            'value', down_s, 'unit', 's',
            'how', coalesce(avail -> 'missing' ->> 0, 'sample gaps and restarts, merged (docs/health.md)')),
        'apdex', jsonb_build_object(
            'value', sat -> 'inputs' -> 'apdex', 'unit', 'Apdex 0-1',
            'source', sat -> 'inputs' -> 'source', 'target_ms', sat -> 'inputs' -> 'target_ms',
            'satisfied', sat -> 'inputs' -> 'satisfied', 'tolerating', sat -> 'inputs' -> 'tolerating',
            'frustrated', sat -> 'inputs' -> 'frustrated',
            'how', coalesce(sat -> 'missing' ->> 0, format(
                '(satisfied + tolerating / 2) / %s %s, T = %s ms (satisfied <= T, tolerating <= 4T)',
                sat -> 'inputs' ->> 'total',
                CASE sat -> 'inputs' ->> 'source'
                    WHEN 'agent_heartbeats' THEN 'response times reported by the agents (perfmon.agent_heartbeats)'
                    ELSE 'statement calls, each judged by its statement''s mean time in its sample interval '
                         '(no agent response times: an approximation, docs/health.md)' END,
                sat -> 'inputs' ->> 'target_ms'))),
        'incidents', jsonb_build_object(
            'total', jsonb_build_object('value', al.fired, 'unit', 'alerts',
                'how', 'alerts of perfmon.alerts that fired in the period'),
            'emergency', jsonb_build_object('value', al.emergency, 'unit', 'alerts',
                'how', 'alerts that fired in the period, level emergency'),
            'critical', jsonb_build_object('value', al.critical, 'unit', 'alerts',
                'how', 'alerts that fired in the period, level critical'),
            'warning', jsonb_build_object('value', al.warning, 'unit', 'alerts',
                'how', 'alerts that fired in the period, level warning'),
            'info', jsonb_build_object('value', al.info, 'unit', 'alerts',
                'how', 'alerts that fired in the period, level info')));

    -- ------------------------------------------------------------ financial impact
    WITH applied AS (
        SELECT r.id, r.target, r.finding, r.status, r.applied_at, r.evidence,
               to_ts - greatest(r.applied_at, from_ts) AS after_len
        FROM perfmon.recommendation_log AS r
        WHERE r.server_id = 1 AND r.applied_at IS NOT NULL AND r.applied_at < to_ts
    ),
    stmts AS (
        SELECT DISTINCT a.id, x.stmt_id
        FROM applied AS a
        CROSS JOIN LATERAL (
            SELECT (e ->> 'stmt_id')::int AS stmt_id
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a.evidence -> 'statements') = 'array'
                                           THEN a.evidence -> 'statements' ELSE '[]' END) AS e
            WHERE e ->> 'stmt_id' ~ '^[0-9]{1,9}$'
            UNION
            SELECT (a.evidence ->> 'stmt_id')::int WHERE a.evidence ->> 'stmt_id' ~ '^[0-9]{1,9}$'
            UNION
            SELECT s.stmt_id FROM perfmon.statements AS s
            WHERE s.server_id = 1 AND s.stmt_id <> 0 AND s.queryid::text = a.evidence ->> 'queryid'
        ) AS x
    ),
    measured AS (
        SELECT a.id, a.target, a.applied_at,
               (SELECT array_agg(s.stmt_id ORDER BY s.stmt_id) FROM stmts AS s WHERE s.id = a.id) AS stmt_ids,
               b.calls AS calls_before, b.ms AS ms_before, f.calls AS calls_after, f.ms AS ms_after
        FROM applied AS a
        CROSS JOIN LATERAL (
            SELECT sum(t.calls) AS calls, sum(t.exec_ms) AS ms
            FROM perfmon.statement_totals(a.applied_at - a.after_len, a.applied_at) AS t
            WHERE t.stmt_id IN (SELECT s.stmt_id FROM stmts AS s WHERE s.id = a.id)) AS b
        CROSS JOIN LATERAL (
            SELECT sum(t.calls) AS calls, sum(t.exec_ms) AS ms
            FROM perfmon.statement_totals(greatest(a.applied_at, from_ts), to_ts) AS t
            WHERE t.stmt_id IN (SELECT s.stmt_id FROM stmts AS s WHERE s.id = a.id)) AS f
    ),
    items AS (
        SELECT m.*,
               CASE WHEN m.calls_before > 0 AND m.calls_after > 0
                    THEN (m.ms_before / m.calls_before - m.ms_after / m.calls_after) * m.calls_after / 1000 END
                   AS saved_s,
               CASE WHEN m.stmt_ids IS NULL THEN 'its evidence names no statement to measure'
                    WHEN coalesce(m.calls_before, 0) = 0 THEN 'its statements ran no call before it was applied'
                    WHEN coalesce(m.calls_after, 0) = 0 THEN 'its statements ran no call after it was applied'
               END AS not_measured
        FROM measured AS m
    )
    SELECT jsonb_build_object(
               'value', CASE WHEN count(*) = 0 THEN 0 ELSE round(sum(i.saved_s)::numeric, 3) END,
               'unit', 's of statement execution time',
               'how', CASE
                   WHEN count(*) = 0 THEN 'no recommendation was marked applied (perfmon.mark_applied); '
                                          'savings are only counted for applied ones'
                   WHEN count(i.saved_s) = 0 THEN format('%s applied recommendation(s), none measurable: '
                                                        'no calls of their statements both before and after', count(*))
                   ELSE format('%s of %s applied recommendation(s) measured: for each, (mean ms of its statements '
                               'before - mean ms after) x calls after, the before window as long as the after '
                               'window and ending when it was applied (perfmon.statement_totals)',
                               count(i.saved_s), count(*)) END,
               'items', coalesce(jsonb_agg(jsonb_build_object(
                   'id', i.id, 'target', i.target, 'applied_at', i.applied_at, 'stmt_ids', i.stmt_ids,
                   'calls_before', i.calls_before,
                   'mean_ms_before', round((i.ms_before / nullif(i.calls_before, 0))::numeric, 3),
                   'calls_after', i.calls_after,
                   'mean_ms_after', round((i.ms_after / nullif(i.calls_after, 0))::numeric, 3),
                   'saved_s', round(i.saved_s::numeric, 3), 'not_measured', i.not_measured)
                   ORDER BY i.applied_at) FILTER (WHERE i.id IS NOT NULL), '[]'))
      INTO savings
      FROM items AS i;

    financial := jsonb_build_object(
        'infrastructure_cost', jsonb_build_object(
            'value', round(cost_h * days * 24, 2), 'unit', cur,
            'how', CASE WHEN cost_h IS NULL THEN 'business.instance_cost_per_hour is not configured'
                        ELSE format('business.instance_cost_per_hour (%s) x %s h', cost_h, days * 24) END),
        'cost_per_1k_transactions', jsonb_build_object(
            'value', costc -> 'inputs' -> 'cost_per_1k_transactions', 'unit', cur,
            'target', costc -> 'inputs' -> 'target_cost_per_1k_transactions',
            'how', CASE WHEN costc -> 'inputs' -> 'cost_per_1k_transactions' IS NULL
                        THEN costc -> 'missing' ->> 0
                        ELSE format('business.instance_cost_per_hour x %s h covered by samples / %s commits x 1000 '
                                    '(perfmon.server_totals)',
                                    round((costc -> 'inputs' ->> 'covered_s')::numeric / 3600, 2),
                                    costc -> 'inputs' ->> 'commits') END),
        'revenue_at_risk', jsonb_build_object(
            'value', round(rev_h * down_s / 3600, 2), 'unit', cur,
            'how', CASE WHEN rev_h IS NULL THEN 'business.revenue_per_hour is not configured'
                        WHEN down_s IS NULL THEN 'downtime not measured: ' || coalesce(avail -> 'missing' ->> 0, '')
                        ELSE format('business.revenue_per_hour (%s) x measured downtime (%s s) / 3600', rev_h, down_s) END),
        'savings_from_applied_recommendations', savings);

    -- ------------------------------------------------------------ technical performance
    -- the sums of perfmon.workload_trend's buckets: hourly rollups for the hours rolled up,
    -- raw samples after
    SELECT t.commits, t.rollbacks, t.covered_s::numeric AS covered_s, t.blks_hit AS hit,
           t.blks_hit + t.blks_read AS blocks, t.samples, t.rolled_up_hours,
           t.xact_covered_s::numeric AS xact_covered_s
      INTO tx
      FROM perfmon.server_totals(from_ts, to_ts) AS t;

    SELECT sum(t.calls) AS calls, sum(t.exec_ms) AS ms INTO st
      FROM perfmon.statement_totals(from_ts, to_ts) AS t;

    WITH t AS (SELECT * FROM perfmon.statement_totals(from_ts, to_ts)),
    g AS (SELECT nullif(sum(exec_ms), 0) AS ms FROM t)
    SELECT coalesce(jsonb_agg(q ORDER BY (q ->> 'rank')::int), '[]') INTO top
      FROM (SELECT jsonb_build_object(
                       'rank', rank() OVER (ORDER BY t.exec_ms DESC NULLS LAST), 'stmt_id', t.stmt_id,
                       'queryid', s.queryid, 'query', s.query, 'calls', t.calls,
                       'total_ms', round(t.exec_ms::numeric, 2),
                       'mean_ms', round((t.exec_ms / nullif(t.calls, 0))::numeric, 3),
                       'share_of_total_pct', round((100 * t.exec_ms / g.ms)::numeric, 2)) AS q
            FROM t CROSS JOIN g JOIN perfmon.statements AS s ON s.stmt_id = t.stmt_id
            ORDER BY t.exec_ms DESC NULLS LAST LIMIT 10) AS x;

    SELECT jsonb_build_object(
               'episodes', jsonb_build_object('value', count(*), 'unit', 'anomaly episodes',
                   'how', 'episodes of perfmon.anomalies active in the period'),
               'critical', jsonb_build_object('value', count(*) FILTER (WHERE a.severity = 'critical'),
                   'unit', 'anomaly episodes', 'how', 'of them, severity critical'),
               'warning', jsonb_build_object('value', count(*) FILTER (WHERE a.severity = 'warning'),
                   'unit', 'anomaly episodes', 'how', 'of them, severity warning'),
               'info', jsonb_build_object('value', count(*) FILTER (WHERE a.severity = 'info'),
                   'unit', 'anomaly episodes', 'how', 'of them, severity info'),
               'items', coalesce((jsonb_agg(jsonb_build_object(
                   'episode_id', a.episode_id, 'started_at', a.started_at, 'last_seen_at', a.last_seen_at,
                   'ongoing', a.ongoing, 'metrics', a.metrics, 'series', a.series, 'unit', a.unit,
                   'severity', a.severity, 'score', a.score, 'observed_value', a.observed_value,
                   'expected_low', a.expected_low, 'expected_high', a.expected_high,
                   'duration_s', a.duration_s, 'business_impact', a.business_impact)
                   ORDER BY a.score DESC, a.started_at DESC)), '[]'))
      INTO anomalies
      FROM perfmon.anomalies AS a
     WHERE a.started_at < to_ts AND a.last_seen_at >= from_ts;
    -- at most 10 items, the worst
    anomalies := jsonb_set(anomalies, '{items}', coalesce(
        (SELECT jsonb_agg(e) FROM (SELECT e FROM jsonb_array_elements(anomalies -> 'items') WITH ORDINALITY AS x(e, n)
                                   WHERE n <= 10 ORDER BY n) AS y), '[]'));

    SELECT jsonb_build_object(
               'fired', jsonb_build_object('value', al.fired, 'unit', 'alerts',
                   'how', 'alerts of perfmon.alerts that fired in the period'),
               'open_now', jsonb_build_object('value', (SELECT count(*) FROM perfmon.alerts AS o WHERE o.state = 'firing'),
                   'unit', 'alerts', 'how', 'alerts of perfmon.alerts firing now'),
               'mttr_s', jsonb_build_object('value', al.mttr_s, 'unit', 's',
                   'how', CASE WHEN al.mttr_s IS NULL THEN 'no alert fired in the period has resolved'
                               ELSE 'mean duration_s of the alerts that fired in the period and resolved' END),
               'items', coalesce(jsonb_agg(jsonb_build_object(
                   'alert_id', x.alert_id, 'ts', x.ts, 'state', x.state, 'level', x.level, 'rule', x.rule,
                   'target', x.target, 'summary', x.summary, 'duration_s', x.duration_s,
                   'business_impact', x.business_impact)
                   ORDER BY x.n), '[]'))
      INTO alerts
      FROM (SELECT a.*, row_number() OVER (
                       ORDER BY array_position(ARRAY['firing', 'pending', 'resolved'], a.state),
                                array_position(ARRAY['info', 'warning', 'critical', 'emergency'], a.level) DESC,
                                a.ts DESC) AS n
            FROM perfmon.alerts AS a
            WHERE a.fired_at >= from_ts AND a.fired_at < to_ts) AS x
     WHERE x.n <= 10;

    SELECT coalesce(jsonb_agg(jsonb_build_array(b.bucket, b.score) ORDER BY b.bucket), '[]') INTO trend
      FROM (SELECT date_bin(trend_step, h.ts, timestamptz '2000-01-01 00:00:00+00') AS bucket,
                   round(avg(h.overall_score), 1) AS score
            FROM perfmon.health AS h
            WHERE h.ts > from_ts AND h.ts <= to_ts
            GROUP BY 1) AS b;

    technical := jsonb_build_object(
        'transactions', jsonb_build_object('value', tx.commits, 'unit', 'committed transactions',
            'how', 'sum of the xact_commit deltas of all databases (perfmon.server_history, as perfmon.database_series'
                   || CASE WHEN tx.rolled_up_hours > 0
                           THEN format('; %s h from the hourly rollups, perfmon.database_rollup',
                                       tx.rolled_up_hours) ELSE '' END || ')'),
        'rollbacks', jsonb_build_object('value', tx.rollbacks, 'unit', 'transactions rolled back',
            'how', 'sum of the xact_rollback deltas of all databases (perfmon.server_history'
                   || CASE WHEN tx.rolled_up_hours > 0
                           THEN format('; %s h from perfmon.database_rollup', tx.rolled_up_hours) ELSE '' END
                   || ')'),
        'tps_avg', jsonb_build_object(
            'value', round((tx.commits + tx.rollbacks) / nullif(tx.xact_covered_s, 0), 3), 'unit', 'transactions/s',
            'how', CASE WHEN tx.samples = 0 THEN 'no sample in the period (perfmon.collect())'
                        ELSE format('(commits + rollbacks) / %s s their %s samples cover: the time-weighted mean '
                                    'of perfmon.workload_trend''s tps over the period (perfmon.server_totals)',
                                    round(tx.xact_covered_s, 1), tx.samples) END),
        'mean_query_ms', jsonb_build_object(
            'value', round((st.ms / nullif(st.calls, 0))::numeric, 3), 'unit', 'ms',
            'how', CASE WHEN coalesce(st.calls, 0) = 0 THEN 'no statement execution sampled in the period'
                        ELSE format('total execution ms / %s calls of all statements (perfmon.statement_totals, '
                                    'as perfmon.top_queries)', st.calls) END),
        'cache_hit_pct', jsonb_build_object(
            'value', round(100 * tx.hit / nullif(tx.blocks, 0), 2), 'unit', 'pct',
            'how', CASE WHEN coalesce(tx.blocks, 0) = 0 THEN 'no block access sampled in the period'
                        ELSE format('shared buffer hits / %s block accesses, all databases (perfmon.server_totals)',
                                    tx.blocks) END),
        'top_queries', top,
        'anomalies', anomalies,
        'alerts', alerts,
        'health_trend', trend,
        'health_trend_step_s', extract(epoch FROM trend_step)::int);

    -- ------------------------------------------------------------ recommendations
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', r.id, 'title', r.finding, 'severity', r.severity, 'kind', r.kind, 'rule', r.rule,
               'target', r.target, 'benefit', jsonb_build_object('value', r.benefit, 'unit', r.benefit_unit),
               'confidence', r.confidence, 'apply_sql', r.apply_sql, 'first_seen', r.first_seen)
               ORDER BY r.n), '[]')
      INTO recs
      FROM (SELECT v.*, row_number() OVER (
                       ORDER BY array_position(ARRAY['critical', 'warning', 'info'], v.severity),
                                v.benefit DESC NULLS LAST, v.id) AS n
            FROM perfmon.recommendations AS v WHERE v.status = 'open') AS r
     WHERE r.n <= 10;

    headline := format('%s: health %s (%s risk), availability %s, Apdex %s, %s incident(s) of which %s critical '
                       'or worse, %s open recommendation(s).',
                       initcap(period),
                       coalesce(round(hl.average)::text || '/100 on average', 'not recorded'),
                       coalesce(hl.risk, 'unknown'),
                       coalesce(round((avail -> 'inputs' ->> 'uptime_pct')::numeric, 3)::text || '%', 'not measured'),
                       coalesce(round((sat -> 'inputs' ->> 'apdex')::numeric, 2)::text, 'not measured'),
                       al.fired, al.critical + al.emergency, open_recs);
    summary := summary || jsonb_build_object('headline', headline);

    RETURN jsonb_build_object(
        'period', jsonb_build_object('name', period, 'from', from_ts, 'to', to_ts, 'days', days),
        'currency', cur,
        'executive_summary', summary,
        'financial_impact', financial,
        'technical_performance', technical,
        'recommendations', recs);
END
$$;
COMMENT ON FUNCTION perfmon.executive_report(text) IS
    'Executive report over the last day, 7 days or 30 days (period daily, weekly, monthly) as jsonb: '
    'executive_summary (health score 0-100, availability %, Apdex 0-1, incidents, headline), '
    'financial_impact (infrastructure cost and cost per 1000 transactions in business.currency, revenue '
    'at risk from measured downtime, seconds saved by applied recommendations), technical_performance '
    '(transactions, tps, mean query ms, cache hit %, top queries, anomalies, alerts, health trend) and '
    'open recommendations. Every figure is {value, unit, how}; see docs/health.md.';
