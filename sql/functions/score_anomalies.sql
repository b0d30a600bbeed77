CREATE OR REPLACE FUNCTION perfmon.score_anomalies()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Every interval (perfmon.analyze()): scores the feature samples taken since the
-- last call with the stored models of the detector in force - no training here -
-- and keeps anomalies as episodes: an anomalous sample extends the open episode of
-- its feature or opens one; anomaly_detection.episode_quiet_samples normal samples
-- in a row close it.
DECLARE
    det text := perfmon.anomaly_detector();
    quiet int := perfmon.setting('anomaly_detection.episode_quiet_samples')::int;
    lookback int := greatest(3600, 40 * perfmon.setting('collection.interval_seconds')::int);
    r perfmon.anomaly_score;
    ep bigint;
    scored int := 0;
    anomalous int := 0;
    opened int := 0;
    started timestamptz := clock_timestamp();
    non_finite jsonb;
    enabled boolean;
    unscored int;
    stopped int;
BEGIN
    -- Two scorings at once (a manual analyze() beside the job's) would both count the
    -- same samples into the same episodes.
    IF NOT pg_try_advisory_xact_lock(hashtext('perfmon.score_anomalies')) THEN
        RETURN jsonb_build_object('detector', det, 'skipped', 'another scoring is running');
    END IF;
    -- An open episode ends only when its feature's samples are scored normal: one that no
    -- scoring will reach again - anomaly detection turned off, another detector chosen, its
    -- feature disabled or removed - stayed ongoing for ever, and its alert firing and
    -- escalating. It ends at its last anomalous sample.
    enabled := perfmon.setting('anomaly_detection.enabled')::boolean;
    -- PL/Python's scoring drops the models it no longer scores with; when it no longer runs
    -- (envelope_sql chosen, detection disabled) a long-lived backend kept those it had
    -- loaded for ever. Its setting says that there are some, so a backend that never
    -- loaded any does not start PL/Python for this.
    IF (NOT enabled OR det = 'envelope_sql')
       AND current_setting('perfmon.anomaly_models_loaded', true) = 'on'
       AND to_regprocedure('perfmon.unload_anomaly_models()') IS NOT NULL THEN
        EXECUTE 'SELECT perfmon.unload_anomaly_models()';
    END IF;
    UPDATE perfmon.anomaly_episodes AS e SET ended_at = e.last_seen_at
     WHERE e.server_id = 1 AND e.ended_at IS NULL
       AND (NOT enabled
            OR NOT e.detector = ANY (array_remove(ARRAY[
                   CASE WHEN det = 'isolation_forest_multi' THEN 'envelope' ELSE det END,
                   CASE WHEN det LIKE 'isolation_forest%' THEN 'isolation_forest_multi' END], NULL))
            OR (e.feature <> 'multi' AND NOT EXISTS (
                    SELECT FROM perfmon.anomaly_features AS f WHERE f.name = e.feature AND f.enabled)));
    GET DIAGNOSTICS unscored = ROW_COUNT;
    IF NOT enabled THEN
        RETURN jsonb_build_object('detector', det, 'skipped', 'anomaly_detection.enabled is false')
            || CASE WHEN unscored > 0 THEN jsonb_build_object('episodes_ended_unscored', unscored) ELSE '{}' END;
    END IF;
    -- Skipped values that are not finite numbers, since the newest sample scored: each
    -- said once, unless no finite value came after it (then it is said again).
    non_finite := perfmon.anomaly_non_finite_skipped(
        greatest(now() - make_interval(secs => lookback),
                 (SELECT max(s.last_ts) FROM perfmon.state_anomaly_scoring AS s)) + interval '1 microsecond',
        'infinity', 'scoring');
    CREATE TEMP TABLE IF NOT EXISTS perfmon_scores OF perfmon.anomaly_score ON COMMIT DROP;
    TRUNCATE perfmon_scores;
    IF det = 'envelope_sql' THEN
        INSERT INTO perfmon_scores SELECT * FROM perfmon.score_anomalies_sql(lookback);
    ELSE
        EXECUTE 'INSERT INTO perfmon_scores SELECT * FROM perfmon.score_anomalies_py($1, $2, $3)'
            USING det, perfmon.setting('anomaly_detection.sensitivity') #>> '{}', lookback;
    END IF;
    FOR r IN SELECT * FROM perfmon_scores ORDER BY ts, feature, series LOOP
        scored := scored + 1;
        SELECT e.episode_id INTO ep FROM perfmon.anomaly_episodes AS e
         WHERE e.server_id = 1 AND e.detector = r.detector AND e.feature = r.feature
           AND e.series = r.series AND e.ended_at IS NULL;
        IF r.score >= 1 THEN
            anomalous := anomalous + 1;
            IF ep IS NULL THEN
                INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, series, started_at,
                    last_seen_at, peak_score, peak_at, observed_value, expected_low, expected_high,
                    contributors, model_id)
                VALUES (1, r.detector, r.feature, r.series, r.ts, r.ts, r.score, r.ts, r.observed_value,
                        r.expected_low, r.expected_high, coalesce(r.contributors, '[]'), r.model_id)
                RETURNING episode_id INTO ep;
                opened := opened + 1;
            ELSE
                UPDATE perfmon.anomaly_episodes AS e
                   SET last_seen_at = r.ts, samples = e.samples + 1, calm_samples = 0,
                       peak_score = greatest(e.peak_score, r.score),
                       peak_at = CASE WHEN r.score > e.peak_score THEN r.ts ELSE e.peak_at END,
                       observed_value = CASE WHEN r.score > e.peak_score THEN r.observed_value ELSE e.observed_value END,
                       expected_low = CASE WHEN r.score > e.peak_score THEN r.expected_low ELSE e.expected_low END,
                       expected_high = CASE WHEN r.score > e.peak_score THEN r.expected_high ELSE e.expected_high END,
                       contributors = CASE WHEN r.score > e.peak_score THEN coalesce(r.contributors, '[]') ELSE e.contributors END
                 WHERE e.episode_id = ep;
            END IF;
            INSERT INTO perfmon.anomaly_samples (server_id, ts, episode_id, score, observed_value,
                                                 expected_low, expected_high)
            VALUES (1, r.ts, ep, r.score, r.observed_value, r.expected_low, r.expected_high);
        ELSIF ep IS NOT NULL THEN
            UPDATE perfmon.anomaly_episodes AS e
               SET calm_samples = e.calm_samples + 1,
                   ended_at = CASE WHEN e.calm_samples + 1 >= quiet THEN e.last_seen_at END
             WHERE e.episode_id = ep;
        END IF;
    END LOOP;
    INSERT INTO perfmon.state_anomaly_scoring AS s (detector, feature, series, last_ts)
    SELECT p.detector, p.feature, p.series, max(p.ts) FROM perfmon_scores AS p
     GROUP BY p.detector, p.feature, p.series
    ON CONFLICT (detector, feature, series) DO UPDATE SET last_ts = greatest(s.last_ts, EXCLUDED.last_ts);
    DROP TABLE perfmon_scores;
    -- A series that stops sending (a host or a disk removed) while the other series of its
    -- feature go on never sends the quiet samples that would end its episode: it ends once
    -- another series of the feature has been scored as far past the series' last sample as
    -- its quiet samples would have taken (at the series' sampling step). When all stop (the
    -- server was down), none ends: the samples after the gap end them as before.
    UPDATE perfmon.anomaly_episodes AS e SET ended_at = e.last_seen_at
      FROM perfmon.anomaly_models AS m
      LEFT JOIN perfmon.state_anomaly_scoring AS own
             ON own.detector = m.detector AND own.feature = m.feature AND own.series = m.series
     WHERE e.server_id = 1 AND e.ended_at IS NULL AND e.feature <> 'multi'
       AND m.current AND m.detector = e.detector AND m.feature = e.feature AND m.series = e.series
       AND (SELECT max(o.last_ts) FROM perfmon.state_anomaly_scoring AS o
             WHERE o.detector = e.detector AND o.feature = e.feature AND o.series <> e.series)
           > greatest(e.last_seen_at, own.last_ts)
             + make_interval(secs => quiet * extract(epoch FROM m.trained_to - m.trained_from)
                                     / greatest(m.samples - 1, 1));
    GET DIAGNOSTICS stopped = ROW_COUNT;
    unscored := unscored + stopped;
    RETURN jsonb_build_object('detector', det, 'scored', scored, 'anomalous', anomalous,
        'episodes_opened', opened,
        'ms', round(extract(epoch FROM clock_timestamp() - started)::numeric * 1000, 1))
        || jsonb_strip_nulls(jsonb_build_object('non_finite', non_finite,
                                                'episodes_ended_unscored', nullif(unscored, 0)));
END
$$;
COMMENT ON FUNCTION perfmon.score_anomalies() IS
    'Scores the anomaly features'' new samples with the stored models (no training) and records '
    'anomalous samples as episodes (perfmon.anomalies); ends the open episodes no scoring will reach '
    'again (anomaly detection off, another detector in force, their feature disabled or removed, their '
    'series stopped while the feature''s others go on); '
    'returns {detector, scored, anomalous, episodes_opened, ms}, episodes_ended_unscored when it ended '
    'such episodes, and non_finite: the feature values skipped for not being finite numbers '
    '(NaN, infinities), also raised as a WARNING. Called every interval by perfmon.analyze().';
