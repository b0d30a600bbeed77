CREATE OR REPLACE FUNCTION perfmon.rollup_query(r perfmon.rollups)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The INSERT of one perfmon.rollups row: the source rows of [$1, $2) summed into the target
-- per server, UTC bucket (ts = its start) and key columns. Names are quoted; the aggregates
-- are the registry's SQL, as perfmon.collectors' function names are run as they stand.
SELECT format('INSERT INTO perfmon.%I (server_id, ts%s, %s) '
              'SELECT server_id, date_trunc(%L, ts, ''UTC'')%s, %s FROM perfmon.%I '
              'WHERE ts >= $1 AND ts < $2 GROUP BY server_id, date_trunc(%L, ts, ''UTC'')%s',
              r.target_table, k.list, c.list, r.bucket, k.list, a.list, r.source_table, r.bucket, k.list)
FROM (SELECT coalesce(string_agg(', ' || quote_ident(key), '' ORDER BY n), '') AS list
        FROM unnest(r.key_columns) WITH ORDINALITY AS u(key, n)) AS k,
     (SELECT string_agg(quote_ident(col), ', ' ORDER BY n) AS list
        FROM unnest(r.columns) WITH ORDINALITY AS u(col, n)) AS c,
     (SELECT string_agg(agg, ', ' ORDER BY n) AS list
        FROM unnest(r.aggregates) WITH ORDINALITY AS u(agg, n)) AS a
$$;
COMMENT ON FUNCTION perfmon.rollup_query(perfmon.rollups) IS
    'The INSERT statement perfmon.rollup() runs for one perfmon.rollups row, with the bounds of the '
    'rows it reads as parameters $1 and $2.';
