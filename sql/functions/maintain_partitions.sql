CREATE OR REPLACE FUNCTION perfmon.maintain_partitions(at timestamptz DEFAULT now())
RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- For every table of perfmon.partitioned_tables: create partitions from the one
-- before `at` to collection.partitions_ahead_days after it, and drop whole
-- partitions whose newest possible row is older than the table's retention.
-- Before it drops a partition of a table a rollup reads (a source_table of perfmon.rollups,
-- the registry perfmon.rollup() runs), it rolls up what is not yet rolled up, so that a
-- rollup that fell behind (pg_cron off for days, retention shorter than that) does not
-- lose those days from the rollups as well.
-- Partitions are named <table>_pYYYYMMDD (day) or <table>_pYYYYMM (month), UTC.
DECLARE
    t record;
    p record;
    ahead int := perfmon.setting('collection.partitions_ahead_days')::int;
    keep_days int;
    utc_day date := (at AT TIME ZONE 'UTC')::date;
    step interval;
    first_start date;
    last_start date;
    start_day date;
    lower_ts timestamptz;
    upper_ts timestamptz;
    name text;
    rolled_up boolean := false;
BEGIN
    -- collect() and collect_sizes() both come here on a new UTC day: one at a time, so
    -- that the second finds the first's partitions rather than creating them again. A
    -- collection run and an analysis run hold this lock shared while they read and write
    -- (perfmon.run_collectors(), perfmon.analyze()): taken first, it orders them and this,
    -- where the tables' locks taken in different orders deadlocked.
    PERFORM pg_advisory_xact_lock(hashtext('perfmon.maintain_partitions'));
    -- And the rollup's lock before any table's: a drop below may roll up first, and a
    -- rollup job holding its lock must not wait for a partition this creates meanwhile.
    PERFORM pg_advisory_xact_lock(hashtext('perfmon.rollup'));
    FOR t IN SELECT * FROM perfmon.partitioned_tables ORDER BY table_name LOOP
        keep_days := perfmon.setting(t.retention_key)::int;
        IF t.granularity = 'day' THEN
            step := interval '1 day';
            first_start := utc_day - 1;
            last_start := utc_day + ahead;
        ELSE
            step := interval '1 month';
            first_start := date_trunc('month', utc_day)::date;
            last_start := date_trunc('month', utc_day + ahead)::date;
        END IF;

        start_day := first_start;
        WHILE start_day <= last_start LOOP
            name := t.table_name || '_p'
                || to_char(start_day, CASE t.granularity WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
            IF to_regclass(format('perfmon.%I', name)) IS NULL THEN
                lower_ts := start_day::timestamp AT TIME ZONE 'UTC';
                upper_ts := (start_day + step)::timestamp AT TIME ZONE 'UTC';
                BEGIN
                    EXECUTE format('CREATE TABLE perfmon.%I PARTITION OF perfmon.%I FOR VALUES FROM (%L) TO (%L)',
                                   name, t.table_name, lower_ts, upper_ts);
                    -- Whoever ran this (a DBA as superuser, or pg_cron as perfmon_admin),
                    -- the partition belongs to perfmon_admin so that retention can drop it.
                    EXECUTE format('ALTER TABLE perfmon.%I OWNER TO perfmon_admin', name);
                    action := 'created';
                    partition_name := name;
                    RETURN NEXT;
                EXCEPTION WHEN duplicate_table THEN
                    -- Created meanwhile (perfmon.ensure_day_partitions(), or a run that committed
                    -- while this one waited, its name still cached here as missing).
                    NULL;
                END;
            END IF;
            start_day := (start_day + step)::date;
        END LOOP;

        FOR p IN
            SELECT c.relname,
                   to_date(substring(c.relname FROM '_p([0-9]+)$'),
                           CASE t.granularity WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END) AS start_day
            FROM pg_inherits AS i
            JOIN pg_class AS c ON c.oid = i.inhrelid
            WHERE i.inhparent = format('perfmon.%I', t.table_name)::regclass
              AND c.relname ~ '_p[0-9]+$'
        LOOP
            upper_ts := (p.start_day + step)::timestamp AT TIME ZONE 'UTC';
            IF upper_ts <= at - make_interval(days => keep_days) THEN
                IF NOT rolled_up AND EXISTS (SELECT FROM perfmon.rollups AS r
                                             WHERE r.source_table = t.table_name) THEN
                    PERFORM perfmon.rollup(at);
                    rolled_up := true;
                END IF;
                EXECUTE format('DROP TABLE perfmon.%I', p.relname);
                action := 'dropped';
                partition_name := p.relname;
                RETURN NEXT;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.maintain_partitions(timestamptz) IS
    'Creates history partitions ahead and drops those past retention, rolling up first what the '
    'rollups have not read yet; returns what it did.';
