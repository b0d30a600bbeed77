CREATE OR REPLACE FUNCTION perfmon.analyze()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The per-interval analysis: anomaly scoring (when the anomaly detector is installed),
-- alert rules, the enabled in-database recovery actions, then the health score is
-- recorded (perfmon.record_health()). Each part runs in its own
-- subtransaction so that one failing does not stop the others.
-- pg_cron drops what this returns, so a failing part would be seen nowhere: each run
-- is logged in perfmon.analyze_runs (each part's ms, error and SQLSTATE), and a failing
-- part raises a WARNING naming it, which reaches the server log.
DECLARE
    result jsonb := '{}';
    parts jsonb := '{}';
    part text;
    answer jsonb;
    outcome jsonb;
    err text;
    part_start timestamptz;
    t0 timestamptz := clock_timestamp();
    total_ms double precision;
BEGIN
    -- The partitions this run writes (health_history's month, analyze_runs' day) first, if
    -- missing: perfmon.maintain_partitions() takes the lock below exclusive, and two runs
    -- (this and a collection run) holding it shared and then wanting it exclusive would wait
    -- for each other.
    IF to_regclass(format('perfmon.%I', 'analyze_runs_p' || to_char(t0 AT TIME ZONE 'UTC', 'YYYYMMDD'))) IS NULL
       OR to_regclass(format('perfmon.%I', 'health_history_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')))
          IS NULL THEN
        PERFORM perfmon.maintain_partitions(now());
    END IF;
    -- perfmon.maintain_partitions()'s lock, shared, before the first table is read, as
    -- perfmon.run_collectors() holds it: a maintain_partitions() beside this run (a DBA's, the
    -- daily job's) waits for it to commit, or this run waits for it. Without it, each held
    -- history tables the other wanted next (this run keeps those its parts read until it
    -- commits, maintain_partitions() locks them in the order of their names): a deadlock
    -- cost a part, or the whole run at its insert into analyze_runs, and against a
    -- maintain_partitions() left open the alert rules gave up at their lock timeout. No
    -- lock_timeout of its own, so that the run waits rather than being lost; its time starts
    -- once the lock is held.
    PERFORM pg_advisory_xact_lock_shared(hashtext('perfmon.maintain_partitions'));
    t0 := clock_timestamp();
    FOREACH part IN ARRAY ARRAY['anomalies', 'alerts', 'recovery', 'health'] LOOP
        part_start := clock_timestamp();
        IF part = 'anomalies' AND to_regprocedure('perfmon.score_anomalies()') IS NULL THEN
            parts := parts || jsonb_build_object(part, jsonb_build_object(
                'skipped', 'perfmon.score_anomalies() is not installed'));
            CONTINUE;
        END IF;
        BEGIN
            CASE part
                WHEN 'anomalies' THEN
                    EXECUTE 'SELECT to_jsonb(perfmon.score_anomalies())' INTO answer;
                WHEN 'alerts' THEN
                    answer := perfmon.evaluate_alerts();
                WHEN 'recovery' THEN
                    answer := perfmon.recover('analyze', NULL, fast_only => false, in_database_only => true);
                WHEN 'health' THEN
                    PERFORM perfmon.record_health();
                    answer := to_jsonb('recorded'::text);
            END CASE;
            result := result || jsonb_build_object(part, answer);
            outcome := '{}';
        EXCEPTION WHEN OTHERS THEN
            -- An error may quote a statement: masked like every query text pgperfmon keeps.
            err := perfmon.redact_secrets(SQLERRM);
            result := result || jsonb_build_object(part, jsonb_build_object('error', err));
            outcome := jsonb_build_object('error', err, 'sqlstate', SQLSTATE);
            RAISE WARNING 'pgperfmon: perfmon.analyze() part % failed: % (SQLSTATE %)', part, err, SQLSTATE
                USING HINT = 'The other parts ran. Each run''s parts are in perfmon.analyze_timings.';
        END;
        parts := parts || jsonb_build_object(part, outcome || jsonb_build_object(
            'ms', round((extract(epoch FROM clock_timestamp() - part_start) * 1000)::numeric, 2)));
    END LOOP;

    total_ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
    PERFORM perfmon.ensure_day_partitions('analyze_runs', t0, t0);
    INSERT INTO perfmon.analyze_runs (server_id, ts, duration_ms, parts) VALUES (1, t0, total_ms, parts);
    RETURN result || jsonb_build_object('ms', round(total_ms::numeric, 2));
END
$$;
COMMENT ON FUNCTION perfmon.analyze() IS
    'The per-interval analysis pg_cron runs: scores anomalies (perfmon.score_anomalies(), when '
    'installed), evaluates the alert rules (perfmon.evaluate_alerts()), runs the enabled in-database '
    'recovery actions (perfmon.recover()), records the health score (perfmon.record_health()). Returns '
    'what each part did (or its error), and the total ms; logs each part''s ms and error in '
    'perfmon.analyze_timings and raises a WARNING for a part that failed.';
