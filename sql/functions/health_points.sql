CREATE OR REPLACE FUNCTION perfmon.health_points(value double precision, warning double precision,
                                                critical double precision, worst double precision)
RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- 100 up to warning, linearly down to 50 at critical and to 0 at worst, 0 beyond.
    -- When worst is below warning, lower values are worse (the same bands, mirrored).
    SELECT round(CASE
        WHEN value IS NULL THEN NULL
        WHEN b.sgn * value <= b.sgn * warning THEN 100
        WHEN b.sgn * value <= b.sgn * critical
            THEN 100 - 50 * (value - warning) / (critical - warning)
        WHEN b.sgn * value < b.sgn * worst
            THEN 50 - 50 * (value - critical) / (worst - critical)
        ELSE 0 END::numeric, 1)
    FROM (SELECT CASE WHEN worst >= warning THEN 1 ELSE -1 END AS sgn) AS b
$$;
COMMENT ON FUNCTION perfmon.health_points(double precision, double precision, double precision, double precision) IS
    'A health check''s score (0-100) for a measured value: 100 up to warning, falling linearly to 50 '
    'at critical and 0 at worst (mirrored when worst < warning, i.e. lower is worse). NULL for NULL.';
