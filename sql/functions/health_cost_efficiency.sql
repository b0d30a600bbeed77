CREATE OR REPLACE FUNCTION perfmon.health_cost_efficiency(from_ts timestamptz, to_ts timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The cost efficiency component: cost per 1000 committed transactions =
-- instance_cost_per_hour x hours the samples cover / (commits / 1000), the commits
-- being the xact_commit deltas of all databases (server_history) in the period, and the
-- hourly rollups for hours whose raw samples retention dropped (perfmon.server_totals).
DECLARE
    b jsonb := perfmon.settings_under('business');
    cost_h double precision := (b ->> 'instance_cost_per_hour')::float8;
    target double precision := (b ->> 'target_cost_per_1k_transactions')::float8;
    x record;
    cost double precision;
    per_1k double precision;
    inputs jsonb;
    missing jsonb := '[]';
    checks jsonb := '{}';
BEGIN
    -- raw samples, and hourly rollups where retention already dropped the raw days
    SELECT t.commits, t.rollbacks, t.covered_s
      INTO x
      FROM perfmon.server_totals(from_ts, to_ts) AS t;
    cost := cost_h * x.covered_s / 3600;
    per_1k := cost / nullif(x.commits / 1000.0, 0);
    inputs := jsonb_build_object('currency', b ->> 'currency', 'instance_cost_per_hour', cost_h,
                                 'covered_s', round(x.covered_s::numeric, 1), 'commits', x.commits,
                                 'rollbacks', x.rollbacks, 'cost', round(cost::numeric, 4),
                                 'cost_per_1k_transactions', round(per_1k::numeric, 6),
                                 'target_cost_per_1k_transactions', target);
    IF cost_h IS NULL THEN
        missing := missing || jsonb_build_object('check', 'cost', 'why',
            'business.instance_cost_per_hour is not configured: set it in performance_monitoring.yml '
            'and run pgperfmon install');
    ELSIF x.commits = 0 THEN
        missing := missing || jsonb_build_object('check', 'cost', 'why',
            'no committed transaction sampled in the period: the cost per transaction is undefined');
    ELSIF target IS NULL THEN
        missing := missing || jsonb_build_object('check', 'cost', 'why', format(
            'business.target_cost_per_1k_transactions is not configured (measured: %s %s per 1000 '
            'transactions): set it to score the cost', round(per_1k::numeric, 6), b ->> 'currency'));
    ELSE
        checks := jsonb_build_object('cost', perfmon.health_points(per_1k, target, 2 * target, 4 * target));
    END IF;
    RETURN perfmon.health_component(jsonb_strip_nulls(inputs), checks, missing,
        'cost per 1000 committed transactions (instance_cost_per_hour x hours covered by the samples / '
        'commits x 1000) against business.target_cost_per_1k_transactions: 100 up to the target, 50 at '
        'twice it, 0 at four times it',
        jsonb_build_object('cost', 'each transaction costs more than the target: the server is '
                                   'oversized for its load, or the load is inefficient (perfmon.top_queries)'));
END
$$;
COMMENT ON FUNCTION perfmon.health_cost_efficiency(timestamptz, timestamptz) IS
    'Health component cost_efficiency between two times: cost per 1000 committed transactions (in '
    'business.currency) from business.instance_cost_per_hour and the sampled xact_commit deltas, '
    'scored against business.target_cost_per_1k_transactions.';
