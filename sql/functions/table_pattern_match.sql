CREATE OR REPLACE FUNCTION perfmon.table_pattern_match(schema_name text, table_name text, patterns jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A pattern is schema.table, each part matched against that name alone, as SQL reads a
    -- qualified name: "..." is one exact name ("" a quote; dots, spaces, upper case and *
    -- stand for themselves), an unquoted part is lower case without dots or spaces, * any
    -- characters within the part. "*" alone is every table. Matched as one string, the
    -- tables "a.b"."c" and "a"."b.c" were both a.b.c, and a pattern for one allowed the other.
    -- A malformed pattern (no dot, an unclosed quote, unquoted upper case: PostgreSQL would
    -- fold Orders to orders) matches nothing; the installer refuses it naming the pattern.
    SELECT coalesce(bool_or((SELECT bool_and(CASE WHEN starts_with(part.text, '"')
                                                  THEN part.name = replace(substr(part.text, 2, length(part.text) - 2),
                                                                           '""', '"')
                                                  ELSE perfmon.glob_match(part.name, jsonb_build_array(part.text)) END)
                             FROM unnest(ARRAY[table_pattern_match.schema_name, table_pattern_match.table_name],
                                         m.parts) AS part(name, text))), false)
    FROM jsonb_array_elements_text(coalesce(patterns, '[]'::jsonb)) AS p(pattern)
    CROSS JOIN LATERAL (SELECT CASE WHEN p.pattern = '*' THEN ARRAY['*', '*']
                                    ELSE regexp_match(p.pattern, '^("(?:[^"]|"")+"|[^." \t\n\r\f\vA-Z]+)'
                                                                 '\.("(?:[^"]|"")+"|[^." \t\n\r\f\vA-Z]+)$') END) AS m(parts)
    WHERE m.parts IS NOT NULL
$$;
COMMENT ON FUNCTION perfmon.table_pattern_match(text, text, jsonb) IS
    'True when the table schema_name.table_name matches one of the schema.table patterns of a jsonb '
    'array, each part matched against its own name: "..." an exact name (any characters), unquoted '
    'lower case with * = any characters; "*" alone = every table. Used by allow_tables.';
