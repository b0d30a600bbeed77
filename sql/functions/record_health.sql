CREATE OR REPLACE FUNCTION perfmon.record_health()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Called by perfmon.analyze() every interval: notes the server's start time (a
-- change is a restart, for the availability component), computes the health score
-- over the last hour and keeps it as one compact row of perfmon.health_history.
DECLARE
    h jsonb;
    ts timestamptz := now();
    part text := 'health_history_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    INSERT INTO perfmon.server_starts (server_id, started_at)
    VALUES (1, pg_postmaster_start_time())
    ON CONFLICT DO NOTHING;

    h := perfmon.health_score(interval '1 hour', ts);

    IF to_regclass(format('perfmon.%I', part)) IS NULL THEN
        PERFORM perfmon.maintain_partitions(ts);
    END IF;
    INSERT INTO perfmon.health_history
        (server_id, ts, period_s, overall, technical, business, database, system, agents,
         availability, user_satisfaction, cost_efficiency, coverage_pct, risk_level, missing, inputs)
    SELECT 1, ts, (h ->> 'period_s')::int, (h ->> 'overall')::real, (h ->> 'technical')::real,
           (h ->> 'business')::real,
           (h #>> '{components,database,score}')::real, (h #>> '{components,system,score}')::real,
           (h #>> '{components,agents,score}')::real, (h #>> '{components,availability,score}')::real,
           (h #>> '{components,user_satisfaction,score}')::real,
           (h #>> '{components,cost_efficiency,score}')::real,
           (h ->> 'coverage_pct')::real, h ->> 'risk_level',
           -- a component without a score by its name, else its checks not computed
           (SELECT array_agg(m ORDER BY m) FROM (
                SELECT e.key AS m FROM jsonb_each(h -> 'components') AS e
                 WHERE e.value -> 'score' = 'null'::jsonb
                UNION ALL
                SELECT e.key || '.' || mc.value FROM jsonb_each(h -> 'components') AS e,
                       jsonb_array_elements_text(e.value -> 'missing_checks') AS mc
                 WHERE e.value -> 'score' <> 'null'::jsonb) AS x),
           -- the value behind each check, flat (the names are unique): the rest of the
           -- inputs is in the history tables they were computed from
           (SELECT jsonb_object_agg(i.key, i.value)
              FROM jsonb_each(h -> 'components') AS e, jsonb_each(e.value -> 'inputs') AS i
             WHERE i.value <> 'null'::jsonb
               AND i.key = ANY (ARRAY['cache_hit_pct', 'slow_calls_pct', 'peak_connections_pct',
                                      'blocked_samples_pct', 'max_replay_lag_s', 'wraparound_pct_of_limit',
                                      'cpu_avg_pct', 'memory_avg_pct', 'disk_max_used_pct', 'up_pct',
                                      'error_rate_pct', 'p95_response_ms', 'uptime_pct', 'downtime_s',
                                      'apdex', 'cost_per_1k_transactions']));
    RETURN h;
END
$$;
COMMENT ON FUNCTION perfmon.record_health() IS
    'Computes perfmon.health_score() over the last hour and stores it in perfmon.health_history '
    '(read through perfmon.health); notes the server start time for restart detection. Called by '
    'perfmon.analyze() every interval. Returns the score.';
