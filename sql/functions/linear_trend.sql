CREATE OR REPLACE FUNCTION perfmon.linear_trend(n double precision, t_mean double precision,
                                               y_mean double precision, sxx double precision,
                                               sxy double precision, syy double precision,
                                               limit_value double precision, span_s double precision,
                                               OUT slope double precision, OUT slope_se double precision,
                                               OUT fitted_now double precision, OUT trend text,
                                               OUT eta_s double precision, OUT earliest_s double precision,
                                               OUT latest_s double precision)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The least-squares line through n observations, given by their moments (times t in
-- seconds with t = 0 at the last observation, so that every time returned is seconds
-- after it), and when it reaches limit_value, with a 95% interval:
--  * trend: growing / shrinking when the slope's 95% interval (Student t, n - 2 degrees
--    of freedom) excludes zero, else flat; 'not enough history' under 3 observations
--    or when they span less than 10 minutes (span_s: first to last, seconds);
--  * eta_s: where the fitted line crosses the limit, only for a growing trend;
--  * earliest_s, latest_s: the times at which the limit is inside the line's 95%
--    confidence band (Fieller's interval for the inverse of a regression, which
--    holds the uncertainty of the level as well as of the slope), from now on;
--    latest_s NULL = unbounded (the data cannot exclude that it never gets there),
--    earliest_s NULL = not reached at any plausible growth.
-- It assumes independent noise around a straight line; drifts that change course are
-- only followed as fast as the history window forgets.
DECLARE
    df double precision := n - 2;
    k double precision;      -- t quantile 0.975
    s2 double precision;     -- residual variance
    d double precision := limit_value - y_mean;   -- limit above the centroid
    u_now double precision := -t_mean;            -- now, measured from the centroid
    g double precision;
    h double precision;
    disc double precision;
    r1 double precision;
    r2 double precision;
    lo double precision;
    hi double precision;
BEGIN
    IF n IS NULL OR n < 3 OR sxx IS NULL OR sxx <= 0 OR span_s IS NULL OR span_s < 600 THEN
        trend := 'not enough history';
        RETURN;
    END IF;
    k := perfmon.student_t_975(df);
    slope := sxy / sxx;
    s2 := greatest(syy - slope * sxy, 0) / df;
    slope_se := sqrt(s2 / sxx);
    fitted_now := y_mean + slope * u_now;
    trend := CASE WHEN slope - k * slope_se > 0 THEN 'growing'
                  WHEN slope + k * slope_se < 0 THEN 'shrinking' ELSE 'flat' END;
    IF trend = 'growing' THEN
        eta_s := t_mean + d / slope;
    END IF;
    -- Fieller: u (from the centroid) is in the set when (slope u - d)^2 <= k^2 (s2/n + se^2 u^2),
    -- i.e. g u^2 - 2 slope d u + d^2 - h <= 0.
    g := slope ^ 2 - k ^ 2 * slope_se ^ 2;
    h := k ^ 2 * s2 / n;
    IF g > 0 THEN
        -- A bounded interval [r1, r2] (the discriminant is then positive).
        disc := sqrt(greatest(slope ^ 2 * d ^ 2 - g * (d ^ 2 - h), 0));
        r1 := (slope * d - disc) / g;
        r2 := (slope * d + disc) / g;
        IF r2 >= u_now THEN
            lo := greatest(r1, u_now);
            hi := r2;
        END IF;
    ELSIF g < 0 THEN
        -- The complement of an interval (or every time): reachable from r2 on, unbounded.
        disc := slope ^ 2 * d ^ 2 - g * (d ^ 2 - h);
        IF disc <= 0 THEN
            lo := u_now;
        ELSE
            r1 := (slope * d + sqrt(disc)) / g;   -- g < 0: the smaller root
            r2 := (slope * d - sqrt(disc)) / g;
            lo := CASE WHEN u_now <= r1 THEN u_now ELSE greatest(r2, u_now) END;
        END IF;
    ELSIF slope * d > 0 THEN
        lo := greatest((d ^ 2 - h) / (2 * slope * d), u_now);
    ELSIF d ^ 2 <= h THEN
        -- No slope at all and the limit inside the noise of the level: reachable now.
        lo := u_now;
    END IF;
    earliest_s := t_mean + lo;
    latest_s := t_mean + hi;
END
$$;
COMMENT ON FUNCTION perfmon.linear_trend(double precision, double precision, double precision, double precision,
                                         double precision, double precision, double precision, double precision) IS
    'Linear trend from the moments of n observations (t in seconds, 0 = the last one) spanning span_s '
    'seconds: slope (unit/s) and its standard error, fitted value at the last observation, trend '
    '(growing, flat, shrinking; not enough history under 3 observations or 10 minutes), '
    'and when the line reaches limit_value: eta_s (growing only), earliest_s and latest_s (95% '
    'Fieller interval; NULL latest = unbounded), in seconds after the last observation.';
