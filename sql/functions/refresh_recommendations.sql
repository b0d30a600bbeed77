CREATE OR REPLACE FUNCTION perfmon.refresh_recommendations()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- One advisor run: every enabled rule of perfmon.advisor_rules, in order, each in
-- its own subtransaction (a failing rule keeps its previous findings and costs no
-- other rule its run). A finding is identified by its fingerprint, md5(rule, target):
--  * new -> open;  seen again -> refreshed (a resolved one reopens; dismissed and
--    applied stay as they are);
--  * not produced by a rule that ran -> resolved.
-- A rule that cannot run on this server (perfmon.advisor_unavailable_rules(): its refresh
-- function needs plpython3u) is reported as unavailable, not as an error, and not run: its
-- findings stay as they were.
-- The run and each rule's time and count are logged in perfmon.advisor_runs.
DECLARE
    started timestamptz := clock_timestamp();
    run_ts timestamptz := started;
    r record;
    rule_start timestamptz;
    n int;
    gone int;
    stage jsonb;
    rules jsonb := '{}';
    total_ms double precision;
    unavailable jsonb;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('perfmon.refresh_recommendations')) THEN
        RETURN jsonb_build_object('skipped', 'another refresh is in progress');
    END IF;
    SELECT coalesce(jsonb_object_agg(u.rule, u.reason), '{}') INTO unavailable
      FROM perfmon.advisor_unavailable_rules() AS u;
    FOR r IN SELECT * FROM perfmon.advisor_rules WHERE enabled ORDER BY ordinal, name LOOP
        rule_start := clock_timestamp();
        IF unavailable ? r.name THEN
            stage := jsonb_build_object('unavailable', unavailable ->> r.name);
        ELSE
            BEGIN
                IF r.refresh_function IS NOT NULL THEN
                    EXECUTE format('SELECT %s()', r.refresh_function::regproc);
                END IF;
                EXECUTE format($q$
                    WITH found AS (
                        SELECT md5(%L || ':' || f.target) AS fingerprint, f.*
                        FROM (SELECT DISTINCT ON (v.target) v.target, v.severity, v.finding,
                                     v.evidence, v.apply_sql, v.benefit, v.benefit_unit, v.confidence
                              FROM %s AS v
                              WHERE v.severity IS DISTINCT FROM 'ok' AND v.target IS NOT NULL
                              ORDER BY v.target,
                                       array_position(ARRAY['critical', 'warning', 'info'], v.severity)) AS f
                    ),
                    up AS (
                        INSERT INTO perfmon.recommendation_log AS l
                            (fingerprint, rule, kind, severity, target, finding, evidence, apply_sql,
                             benefit, benefit_unit, confidence, first_seen, last_seen, status_changed)
                        SELECT fingerprint, %L, %L, severity, target, finding, coalesce(evidence, '{}'),
                               apply_sql, benefit, benefit_unit, coalesce(confidence, 'medium'),
                               $1, $1, $1
                        FROM found
                        ON CONFLICT (server_id, fingerprint) DO UPDATE SET
                            severity = EXCLUDED.severity, finding = EXCLUDED.finding,
                            evidence = EXCLUDED.evidence, apply_sql = EXCLUDED.apply_sql,
                            benefit = EXCLUDED.benefit, benefit_unit = EXCLUDED.benefit_unit,
                            confidence = EXCLUDED.confidence, last_seen = EXCLUDED.last_seen,
                            status = CASE WHEN l.status = 'resolved' THEN 'open' ELSE l.status END,
                            status_changed = CASE WHEN l.status = 'resolved' THEN EXCLUDED.last_seen
                                                  ELSE l.status_changed END,
                            status_reason = CASE WHEN l.status = 'resolved' THEN 'seen again'
                                                 ELSE l.status_reason END
                        RETURNING 1
                    )
                    SELECT count(*) FROM up$q$, r.name, r.view_name::regclass, r.name, r.kind)
                INTO n USING run_ts;
                UPDATE perfmon.recommendation_log AS l
                   SET status = 'resolved', status_changed = run_ts,
                       status_reason = CASE WHEN l.status = 'applied' THEN 'applied, no longer found'
                                            ELSE 'no longer found' END
                 WHERE l.server_id = 1 AND l.rule = r.name AND l.last_seen < run_ts
                   AND l.status IN ('open', 'applied');
                GET DIAGNOSTICS gone = ROW_COUNT;
                stage := jsonb_build_object('findings', n, 'resolved', gone);
            EXCEPTION WHEN OTHERS THEN
                stage := jsonb_build_object('error', SQLERRM, 'sqlstate', SQLSTATE);
            END;
        END IF;
        rules := rules || jsonb_build_object(r.name, stage || jsonb_build_object(
            'ms', round((extract(epoch FROM clock_timestamp() - rule_start) * 1000)::numeric, 2)));
    END LOOP;
    total_ms := extract(epoch FROM clock_timestamp() - started) * 1000;
    INSERT INTO perfmon.advisor_runs (ts, duration_ms, rules) VALUES (run_ts, total_ms, rules);
    DELETE FROM perfmon.advisor_runs
     WHERE ts < run_ts - make_interval(days => perfmon.setting('collection.retention_days')::int);
    RETURN jsonb_build_object('ts', run_ts, 'duration_ms', round(total_ms::numeric, 2),
                              'rules', rules);
END
$$;
COMMENT ON FUNCTION perfmon.refresh_recommendations() IS
    'Runs every enabled advisor rule (perfmon.advisor_rules) and keeps perfmon.recommendations '
    'in step: new findings open, findings seen again are refreshed, findings gone are resolved. '
    'Returns per rule its findings, resolved count and ms (or error, or unavailable: why the rule '
    'cannot run on this server).';
