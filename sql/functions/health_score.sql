CREATE OR REPLACE FUNCTION perfmon.health_score(period interval DEFAULT '1 hour',
                                               ending timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Owner's rights: readers (BI tools, dashboards) may call it but may not read the
-- history tables it reads. It only reads.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- The health score over the period ending at `ending` (docs/health.md): every enabled
-- component of perfmon.health_components, each in its own subtransaction (a failing
-- one is reported missing with its error); overall, technical and business are the
-- weighted means of the components that have a score, weights renormalised. Every
-- component reads its samples half-open, [from, judged_to), as perfmon.rollup() rolls
-- hours and perfmon.server_totals reads them: a sample at exactly the boundary of two
-- adjacent periods (yesterday, today) counts in the later one only, in every component.
DECLARE
    from_ts timestamptz := ending - period;
    -- What has not happened yet is not measured: the components judge the period up to
    -- now, so that the rest of it reads as nothing measured, never as a silent collector
    -- (downtime) or silent agents.
    judged_to timestamptz;
    -- The seconds the window really spans: '1 month' or '1 day' across a DST change is not
    -- extract(epoch FROM period) (30 days, 86400 s) but the calendar's length in the session's
    -- TimeZone (28-31 days, 23-25 h).
    span_s numeric;
    c record;
    part jsonb;
    comps jsonb := '{}';
    agg record;
    risk text;
    any_zero boolean;
    recs jsonb;
    biz jsonb := perfmon.settings_under('business');
    cur text := biz ->> 'currency';
    cost_h numeric := (biz ->> 'instance_cost_per_hour')::numeric;
    rev_h numeric := (biz ->> 'revenue_per_hour')::numeric;
    down_s numeric;
    impact jsonb;
BEGIN
    IF period IS NULL OR period <= interval '0' THEN
        RAISE EXCEPTION 'pgperfmon: health_score period must be a positive interval, got %', period
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. perfmon.health_score(''1 hour'')';
    END IF;
    IF ending IS NULL OR NOT isfinite(ending) THEN
        RAISE EXCEPTION 'pgperfmon: health_score ending must be a finite time, got %', coalesce(ending::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    span_s := extract(epoch FROM ending - from_ts);
    judged_to := greatest(least(ending, now()), from_ts);

    FOR c IN SELECT * FROM perfmon.health_components WHERE enabled ORDER BY ordinal, name LOOP
        BEGIN
            EXECUTE format('SELECT %s($1, $2)', c.function_name::regproc) INTO part USING from_ts, judged_to;
        EXCEPTION WHEN OTHERS THEN
            part := perfmon.health_component('{}', '{}', jsonb_build_array(jsonb_build_object(
                'check', c.name, 'why', format('the component failed: %s (SQLSTATE %s)', SQLERRM, SQLSTATE))),
                c.description);
        END;
        comps := comps || jsonb_build_object(c.name,
            part || jsonb_build_object('weight', c.weight, 'group', c.grp));
    END LOOP;

    SELECT round(sum(w * s) / nullif(sum(w) FILTER (WHERE s IS NOT NULL), 0), 1) AS overall,
           round(sum(w * s) FILTER (WHERE g = 'technical')
                 / nullif(sum(w) FILTER (WHERE g = 'technical' AND s IS NOT NULL), 0), 1) AS technical,
           round(sum(w * s) FILTER (WHERE g = 'business')
                 / nullif(sum(w) FILTER (WHERE g = 'business' AND s IS NOT NULL), 0), 1) AS business,
           round(100 * coalesce(sum(w) FILTER (WHERE s IS NOT NULL), 0) / nullif(sum(w), 0), 1) AS coverage
      INTO agg
      FROM (SELECT (e.value ->> 'weight')::numeric AS w, (e.value ->> 'score')::numeric AS s,
                   e.value ->> 'group' AS g
            FROM jsonb_each(comps) AS e) AS x;

    SELECT bool_or(ch.value::numeric = 0) INTO any_zero
      FROM jsonb_each(comps) AS e, jsonb_each_text(e.value -> 'checks') AS ch;
    risk := CASE WHEN agg.overall IS NULL THEN 'unknown'
                 WHEN agg.overall < 40 THEN 'critical'
                 WHEN agg.overall < 60 OR coalesce(any_zero, false) THEN 'high'
                 WHEN agg.overall < 80 THEN 'medium'
                 ELSE 'low' END;

    -- Top 5 things to do, worst first: advisor findings and alerts open in the period (not
    -- those open now: a score of last week lists last week's), then the checks of this score
    -- below 50. An alert episode runs from fired_at to resolved_at; the episodes before a
    -- reopening are kept in its 'reopened' events. The advisor's log keeps a finding's first
    -- sighting and its last status change only: a finding is known open in the period when
    -- it is open now and has been since before the period's end, or was first found in it.
    WITH episodes AS (
        SELECT l.alert_id, l.rule, l.target, l.level, l.value, l.fired_at, l.resolved_at
        FROM perfmon.alert_log AS l
        WHERE l.server_id = 1 AND l.fired_at IS NOT NULL
        UNION ALL
        SELECT l.alert_id, l.rule, l.target, e.details #>> '{previous,level}', NULL,
               (e.details #>> '{previous,fired_at}')::timestamptz,
               (e.details #>> '{previous,resolved_at}')::timestamptz
        FROM perfmon.alert_events AS e
        JOIN perfmon.alert_log AS l ON l.alert_id = e.alert_id
        WHERE l.server_id = 1 AND e.event = 'reopened' AND e.details #>> '{previous,fired_at}' IS NOT NULL
    ),
    items AS (
        SELECT array_position(ARRAY['critical', 'warning', 'info'], r.severity) AS sev, 1 AS src,
               r.benefit AS weight,
               jsonb_build_object('title', r.finding, 'severity', r.severity,
                                  'source', 'perfmon.recommendations',
                                  'component', CASE WHEN r.rule = 'storage_forecast' THEN 'system' ELSE 'database' END,
                                  'id', r.id, 'target', r.target, 'apply_sql', r.apply_sql,
                                  'first_seen', r.first_seen, 'status_now', r.status) AS item
        FROM perfmon.recommendation_log AS r
        WHERE r.server_id = 1 AND judged_to > from_ts
          AND ((r.status = 'open' AND r.status_changed < judged_to)
               OR (r.first_seen >= from_ts AND r.first_seen < judged_to))
        UNION ALL
        SELECT CASE WHEN a.level IN ('critical', 'emergency') THEN 1 WHEN a.level = 'warning' THEN 2 ELSE 3 END,
               2, a.value::numeric,
               jsonb_build_object('title', format('%s alert %s on %s: %s', a.level, a.rule, a.target,
                                                  coalesce(ru.recommended_actions, 'see perfmon.alerts'))
                                           || CASE WHEN a.resolved_at IS NOT NULL
                                                   THEN format(' (resolved at %s)', a.resolved_at) ELSE '' END,
                                  'severity', CASE WHEN a.level = 'emergency' THEN 'critical' ELSE a.level END,
                                  'source', 'perfmon.alerts',
                                  'component', CASE WHEN ru.metric LIKE 'host.%' THEN 'system'
                                                    WHEN ru.metric LIKE 'agent.%' THEN 'agents'
                                                    ELSE 'database' END,
                                  'id', a.alert_id, 'target', a.target,
                                  'fired_at', a.fired_at, 'resolved_at', a.resolved_at)
        FROM episodes AS a
        LEFT JOIN perfmon.alert_rules AS ru ON ru.name = a.rule
        WHERE a.fired_at < judged_to AND (a.resolved_at IS NULL OR a.resolved_at > from_ts)
        UNION ALL
        SELECT CASE WHEN ch.value::numeric = 0 THEN 1 ELSE 2 END, 3, 100 - ch.value::numeric,
               jsonb_build_object('title', format('%s %s scores %s/100: %s', e.key, ch.key, ch.value,
                                                  e.value -> 'advice' ->> ch.key),
                                  'severity', CASE WHEN ch.value::numeric = 0 THEN 'critical' ELSE 'warning' END,
                                  'source', 'perfmon.health_score', 'component', e.key,
                                  'check', ch.key)
        FROM jsonb_each(comps) AS e, jsonb_each_text(e.value -> 'checks') AS ch
        WHERE ch.value::numeric < 50
    )
    SELECT coalesce(jsonb_agg(i.item ORDER BY i.sev, i.src, i.weight DESC NULLS LAST), '[]')
      INTO recs
      FROM (SELECT * FROM items ORDER BY sev, src, weight DESC NULLS LAST LIMIT 5) AS i;

    down_s := (comps -> 'availability' -> 'inputs' ->> 'downtime_s')::numeric;
    impact := jsonb_build_object(
        'downtime_s', jsonb_build_object('value', down_s, 'unit', 's',
            'how', coalesce('measured by the availability component: ' || (comps -> 'availability' ->> 'how'),
                            'availability not measured')),
        'revenue_at_risk', jsonb_build_object(
            'value', round(rev_h * down_s / 3600, 2), 'unit', cur,
            'how', CASE WHEN rev_h IS NULL THEN 'business.revenue_per_hour is not configured'
                        WHEN down_s IS NULL THEN 'downtime not measured (see components.availability.missing)'
                        ELSE format('business.revenue_per_hour (%s) x measured downtime (%s s) / 3600', rev_h, down_s) END),
        'infrastructure_cost', jsonb_build_object(
            'value', round(cost_h * extract(epoch FROM judged_to - from_ts) / 3600, 2), 'unit', cur,
            'how', CASE WHEN cost_h IS NULL THEN 'business.instance_cost_per_hour is not configured'
                        ELSE format('business.instance_cost_per_hour (%s) x %s h', cost_h,
                                    round(extract(epoch FROM judged_to - from_ts) / 3600, 3))
                             || CASE WHEN judged_to < ending THEN ' (the period up to now)' ELSE '' END END),
        'transactions', jsonb_build_object(
            'value', (comps -> 'cost_efficiency' -> 'inputs' ->> 'commits')::numeric, 'unit', 'committed transactions',
            'how', 'sum of the xact_commit deltas of all databases sampled in the period, hourly rollups for the '
                   'hours rolled up (perfmon.server_totals)'),
        'cost_per_1k_transactions', jsonb_build_object(
            'value', (comps -> 'cost_efficiency' -> 'inputs' ->> 'cost_per_1k_transactions')::numeric, 'unit', cur,
            'how', coalesce(comps -> 'cost_efficiency' -> 'missing' ->> 0, comps -> 'cost_efficiency' ->> 'how')),
        'frustrated_pct', jsonb_build_object(
            'value', (comps -> 'user_satisfaction' -> 'inputs' ->> 'frustrated_pct')::numeric, 'unit', 'pct',
            'how', coalesce(comps -> 'user_satisfaction' -> 'missing' ->> 0,
                            'share of responses over 4 x business.apdex_target_ms (or errors), from '
                            || coalesce(comps -> 'user_satisfaction' -> 'inputs' ->> 'source', '?'))));

    RETURN jsonb_build_object(
        'ts', ending, 'from', from_ts, 'period_s', round(span_s)::bigint, 'judged_to', judged_to,
        'overall', agg.overall, 'technical', agg.technical, 'business', agg.business,
        'coverage_pct', agg.coverage, 'risk_level', risk,
        'components', comps, 'recommendations', recs,
        'recommendations_how', 'at most 5, worst first: advisor findings open in the period (open now and '
            'since before its end, or first found in it; perfmon.recommendation_log keeps a finding''s first '
            'sighting and last status change only, so one found before the period and no longer open is '
            'not listed), alert episodes firing in it (fired_at to resolved_at, their level now), and this '
            'score''s checks below 50',
        'business_impact', impact);
END
$$;
COMMENT ON FUNCTION perfmon.health_score(interval, timestamptz) IS
    'Health score 0-100 over the period ending at `ending` (default: the last hour; a period reaching '
    'past now is judged up to now, judged_to): overall, technical '
    'and business (weighted means of the components present), coverage_pct (% of the weights present), '
    'risk_level, each component (database, system, agents, availability, user_satisfaction, '
    'cost_efficiency) with score, weight, inputs (units in key names), checks, missing and how, the top 5 '
    'recommendations of the period (findings and alerts open in it, weak checks; recommendations_how), '
    'and business impact figures {value, unit, how}. Computes, stores nothing; see '
    'docs/health.md.';
