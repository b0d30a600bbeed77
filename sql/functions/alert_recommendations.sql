CREATE OR REPLACE FUNCTION perfmon.alert_recommendations()
RETURNS TABLE (target text, value double precision, level text, details jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    min_rank integer := perfmon.alert_level_rank(perfmon.setting('alerting.recommendation_min_level') #>> '{}');
BEGIN
    IF to_regclass('perfmon.recommendation_log') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT format('%s: %s', r.rule, r.target), r.benefit::double precision, r.severity,
               jsonb_build_object('recommendation_id', r.id, 'finding', r.finding,
                                  'business_impact', r.finding,
                                  'recommended_actions', coalesce(r.apply_sql, r.finding),
                                  'benefit_unit', r.benefit_unit, 'confidence', r.confidence)
        FROM perfmon.recommendation_log AS r
        WHERE r.server_id = 1 AND r.status = 'open' AND perfmon.alert_level_rank(r.severity) >= $1
    $q$ USING min_rank;
END
$$;
COMMENT ON FUNCTION perfmon.alert_recommendations() IS
    'Open recommendations (perfmon.recommendations) at or above alerting.recommendation_min_level, '
    'as alert breaches: rule: target, benefit, severity as level, finding and SQL as details.';
