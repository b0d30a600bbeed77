CREATE OR REPLACE FUNCTION perfmon.run_collectors(kind text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- One collection run: every enabled perfmon.collectors stage of this kind, in
-- order, each in its own subtransaction so that one failing stage (a lock
-- timeout, a dropped view) costs only its own data. Guards:
--  * an advisory lock: a second concurrent run of the same kind skips at once;
--  * lock_timeout on every step (collection.lock_timeout_ms);
--  * a time budget (collection.statement_timeout_ms): stages left when it is
--    spent are skipped and say so. (pg_cron 1.4 runs jobs in background workers,
--    which do not enforce statement_timeout; measured, see README.)
-- The run is logged in perfmon.samples with each stage's time, rows and gaps
-- (perfmon.collect_timings shows them with the zeros filled in).
DECLARE
    -- The wall clock, not now(): inside perfmon.run_every_interval() a transaction
    -- may have begun before the slot it samples.
    started timestamptz := clock_timestamp();
    sample_ts timestamptz := started;
    budget_ms double precision := perfmon.setting('collection.statement_timeout_ms')::double precision;
    prev timestamptz;
    c record;
    res perfmon.collect_result;
    stage_start timestamptz;
    stage jsonb;
    stages jsonb := '{}';
    total_ms double precision;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('perfmon.run_collectors'), hashtext(kind)) THEN
        RETURN jsonb_build_object('kind', kind, 'skipped', 'another run of this kind is in progress');
    END IF;
    IF to_regclass(format('perfmon.%I', 'samples_p' || to_char(sample_ts AT TIME ZONE 'UTC', 'YYYYMMDD'))) IS NULL THEN
        PERFORM perfmon.maintain_partitions(sample_ts);
    END IF;
    -- perfmon.maintain_partitions()'s lock, shared, before the first row is written: a
    -- maintain_partitions() beside this run (a DBA's, the daily job's) waits for it to commit,
    -- or this run waits for it, instead of each holding a history table the other wants next
    -- (collect() writes them in the order of its stages, maintain_partitions() locks them in
    -- the order of their names) until one is cancelled and the sample loses that stage's rows.
    -- Taken once the partitions above are made, as maintain_partitions() takes it exclusive:
    -- collect() and collect_sizes() both holding it shared and then each wanting it exclusive
    -- would wait for each other. Without lock_timeout, so that the sample waits rather than
    -- being lost; the time budget starts once it is held.
    PERFORM pg_advisory_xact_lock_shared(hashtext('perfmon.maintain_partitions'));
    started := clock_timestamp();
    sample_ts := started;
    PERFORM set_config('lock_timeout', perfmon.setting('collection.lock_timeout_ms')::text, true);

    SELECT max(s.ts) INTO prev FROM perfmon.samples AS s
     WHERE s.server_id = 1 AND s.kind = run_collectors.kind AND s.ts > sample_ts - interval '2 days';

    FOR c IN
        SELECT * FROM perfmon.collectors AS col
        WHERE col.schedule = run_collectors.kind AND col.enabled
        ORDER BY col.ordinal
    LOOP
        stage_start := clock_timestamp();
        IF extract(epoch FROM stage_start - started) * 1000 > budget_ms THEN
            stages := stages || jsonb_build_object(c.name, jsonb_build_object(
                'skipped', 'the time budget (collection.statement_timeout_ms) was spent'));
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('SELECT * FROM %s($1)', c.function_name::regproc) INTO res USING sample_ts;
            stage := jsonb_build_object('stored', res.stored, 'gaps', res.gaps);
            IF res.details IS NOT NULL THEN
                stage := stage || res.details;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            stage := jsonb_build_object('error', SQLERRM, 'sqlstate', SQLSTATE);
        END;
        -- Zeros and false are left out: an idle sample's log stays small.
        SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO stage
          FROM jsonb_each(stage) AS e
         WHERE e.value NOT IN ('0'::jsonb, 'false'::jsonb);
        stages := stages || jsonb_build_object(c.name, stage || jsonb_build_object(
            'ms', round((extract(epoch FROM clock_timestamp() - stage_start) * 1000)::numeric, 2)));
    END LOOP;

    total_ms := extract(epoch FROM clock_timestamp() - started) * 1000;
    INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages, expected_interval_s)
    VALUES (1, sample_ts, kind, extract(epoch FROM sample_ts - prev), total_ms, stages,
            CASE WHEN kind = 'sample' THEN perfmon.setting('collection.interval_seconds')::real END);
    RETURN jsonb_build_object('ts', sample_ts, 'kind', kind,
                              'duration_ms', round(total_ms::numeric, 2), 'stages', stages);
END
$$;
COMMENT ON FUNCTION perfmon.run_collectors(text) IS
    'Runs every enabled collection stage of a kind (sample or sizes) once, logs the run in '
    'perfmon.samples and returns it as jsonb.';
