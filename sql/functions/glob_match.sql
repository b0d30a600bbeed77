CREATE OR REPLACE FUNCTION perfmon.glob_match(value text, patterns jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- * matches any run of characters; every other character stands for itself.
    SELECT coalesce(bool_or(glob_match.value LIKE replace(replace(replace(replace(p.pattern, '\', '\\'), '%', '\%'),
                                                       '_', '\_'), '*', '%')), false)
    FROM jsonb_array_elements_text(coalesce(patterns, '[]'::jsonb)) AS p(pattern)
$$;
COMMENT ON FUNCTION perfmon.glob_match(text, jsonb) IS
    'True when value matches one of the patterns of a jsonb array (* = any characters); '
    'an empty array matches nothing. Used by the recovery allowlists of roles and databases '
    '(tables: perfmon.table_pattern_match).';
