CREATE OR REPLACE FUNCTION perfmon.ensure_day_partitions(table_name text, from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Day partitions of a perfmon.partitioned_tables table for every UTC day from
-- from_ts to to_ts, named as perfmon.maintain_partitions() names them. The ingest
-- functions call it when a row falls outside the partitions made ahead (a bulk
-- load of older data); perfmon.maintain() drops them again once past retention.
-- Returns how many it created.
DECLARE
    day date := (from_ts AT TIME ZONE 'UTC')::date;
    last_day date := (to_ts AT TIME ZONE 'UTC')::date;
    name text;
    created int := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM perfmon.partitioned_tables AS t
                   WHERE t.table_name = ensure_day_partitions.table_name AND t.granularity = 'day') THEN
        RAISE EXCEPTION 'pgperfmon: % is not a table partitioned by day', quote_literal(table_name);
    END IF;
    IF last_day - day > 3660 THEN
        RAISE EXCEPTION 'pgperfmon: rows from % to % span more than ten years of day partitions',
            from_ts, to_ts USING HINT = 'load the data in smaller time ranges';
    END IF;
    WHILE day <= last_day LOOP
        name := table_name || '_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(format('perfmon.%I', name)) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE perfmon.%I PARTITION OF perfmon.%I FOR VALUES FROM (%L) TO (%L)',
                               name, table_name, day::timestamp AT TIME ZONE 'UTC',
                               (day + 1)::timestamp AT TIME ZONE 'UTC');
                EXECUTE format('ALTER TABLE perfmon.%I OWNER TO perfmon_admin', name);
                created := created + 1;
            EXCEPTION WHEN duplicate_table THEN
                NULL;  -- a concurrent ingest created it first
            END;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION perfmon.ensure_day_partitions(text, timestamptz, timestamptz) IS
    'Creates the missing UTC day partitions of a day-partitioned history table between two '
    'times; returns how many were created.';
