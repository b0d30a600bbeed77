CREATE OR REPLACE FUNCTION perfmon.health_user_satisfaction(from_ts timestamptz, to_ts timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The user satisfaction component: Apdex = (satisfied + tolerating / 2) / total against
-- T = business.apdex_target_ms (satisfied <= T, tolerating <= 4T). Response times: the
-- application agents' heartbeats (one response each; status error/down = frustrated);
-- without any, the statements' mean time per sample interval (per hour for hours
-- already rolled up) stands for each of its calls (an approximation: docs/health.md).
DECLARE
    t double precision := (perfmon.settings_under('business') ->> 'apdex_target_ms')::float8;
    source text := 'agent_heartbeats';
    satisfied numeric;
    tolerating numeric;
    total numeric;
    apdex double precision;
BEGIN
    SELECT count(*) FILTER (WHERE b.status NOT IN ('error', 'down') AND b.response_ms <= t),
           count(*) FILTER (WHERE b.status NOT IN ('error', 'down') AND b.response_ms > t
                              AND b.response_ms <= 4 * t),
           count(*)
      INTO satisfied, tolerating, total
      FROM perfmon.agent_heartbeats AS b
     WHERE b.ts >= from_ts AND b.ts < to_ts
       AND (b.response_ms IS NOT NULL OR b.status IN ('error', 'down'));
    IF total = 0 THEN
        source := 'statements';
        -- Hours already rolled up are judged by their hourly means (perfmon.statement_hourly,
        -- as perfmon.statement_totals reads them): a month of raw samples is a million rows.
        WITH rolled AS (
            SELECT coalesce((SELECT value::timestamptz FROM perfmon.meta
                             WHERE key = 'rollup_hourly_until'), '-infinity') AS until
        ),
        u AS (
            SELECT h.calls, coalesce(h.exec_ms, 0) AS ms
            FROM perfmon.statement_hourly AS h, rolled
            WHERE h.server_id = 1 AND h.ts >= from_ts AND h.ts < least(to_ts, rolled.until) AND h.calls > 0
            UNION ALL
            SELECT h.calls, coalesce(h.exec_ms, 0)
            FROM perfmon.statement_history AS h, rolled
            WHERE h.server_id = 1 AND h.ts >= greatest(from_ts, rolled.until) AND h.ts < to_ts
              AND h.calls > 0
        )
        SELECT coalesce(sum(u.calls) FILTER (WHERE u.ms <= t * u.calls), 0),
               coalesce(sum(u.calls) FILTER (WHERE u.ms > t * u.calls AND u.ms <= 4 * t * u.calls), 0),
               coalesce(sum(u.calls), 0)
          INTO satisfied, tolerating, total
          FROM u;
    END IF;
    IF total = 0 THEN
        RETURN perfmon.health_component(jsonb_build_object('target_ms', t), '{}',
            jsonb_build_array(jsonb_build_object('check', 'apdex', 'why',
                'no response time measured in the period: neither agent heartbeats with response_ms '
                '(perfmon.agent_heartbeat()) nor sampled statement executions')),
            'Apdex of response times');
    END IF;
    apdex := (satisfied + tolerating / 2.0) / total;
    RETURN perfmon.health_component(
        jsonb_build_object('source', source, 'target_ms', t, 'satisfied', satisfied,
                           'tolerating', tolerating, 'frustrated', total - satisfied - tolerating,
                           'total', total, 'apdex', round(apdex::numeric, 4),
                           'frustrated_pct', round(100.0 * (total - satisfied - tolerating) / total, 2)),
        jsonb_build_object('apdex', round((100 * apdex)::numeric, 1)),
        '[]',
        CASE source
            WHEN 'agent_heartbeats' THEN format(
                '100 x Apdex of the %s response times the agents reported (T = %s ms: satisfied <= T, '
                'tolerating <= 4T, errors frustrated)', total, t)
            ELSE format(
                '100 x Apdex of %s statement calls, each judged by its statement''s mean time in its '
                'sample interval, or hour once rolled up (no agent response times; T = %s ms)', total, t)
        END,
        jsonb_build_object('apdex', 'users wait too long: see perfmon.slow_queries and perfmon.agent_health'));
END
$$;
COMMENT ON FUNCTION perfmon.health_user_satisfaction(timestamptz, timestamptz) IS
    'Health component user_satisfaction between two times: 100 x Apdex (0-1) of the agents'' response '
    'times (ms), else of the statements'' per-interval mean times, against business.apdex_target_ms.';
