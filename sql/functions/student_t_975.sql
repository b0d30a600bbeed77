CREATE OR REPLACE FUNCTION perfmon.student_t_975(df double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The 97.5% quantile of Student's t (two-sided 95% intervals): the table up to
    -- 30 degrees of freedom, then the Cornish-Fisher expansion (within 1e-4).
    SELECT CASE WHEN df IS NULL OR df < 1 THEN NULL
                WHEN df <= 30 THEN (ARRAY[12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
                     2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080,
                     2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042])[floor(df)::int]::float8
                ELSE 1.959964 + (1.959964 ^ 3 + 1.959964) / (4 * df)
                     + (5 * 1.959964 ^ 5 + 16 * 1.959964 ^ 3 + 3 * 1.959964) / (96 * df ^ 2) END
$$;
COMMENT ON FUNCTION perfmon.student_t_975(double precision) IS
    'The 97.5% quantile of Student''s t with df degrees of freedom (the factor of a two-sided 95% '
    'interval); NULL under 1 degree of freedom.';
