CREATE OR REPLACE FUNCTION perfmon.alert_level_for(
    comparison text, value double precision, info double precision, warning double precision,
    critical double precision, emergency double precision,
    OUT level text, OUT threshold double precision)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The most severe level whose threshold the value crosses; none crossed = NULL. NaN
    -- compares greater than every number: it, and an infinity, cross nothing.
    SELECT t.level, t.threshold
    FROM (VALUES (3, 'emergency', emergency), (2, 'critical', critical),
                 (1, 'warning', warning), (0, 'info', info)) AS t(rank, level, threshold)
    WHERE t.threshold IS NOT NULL AND value IS NOT NULL AND value NOT IN ('NaN', 'Infinity', '-Infinity')
      AND CASE comparison WHEN '>' THEN value > t.threshold WHEN '>=' THEN value >= t.threshold
                          WHEN '<' THEN value < t.threshold WHEN '<=' THEN value <= t.threshold END
    ORDER BY t.rank DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION perfmon.alert_level_for(text, double precision, double precision, double precision,
                                            double precision, double precision) IS
    'The most severe level (and its threshold, in the rule''s unit) that value crosses with the '
    'comparison; NULL when it crosses none or is not a finite number (NaN, infinity).';
