CREATE OR REPLACE FUNCTION perfmon.anomaly_settings(sensitivity text, detector text DEFAULT NULL,
                                                   params jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The detectors' settings for a sensitivity: the SQL mirror of
-- perfmon_py.anomaly.SENSITIVITY (tests keep the two equal), with params replacing
-- some of them - what a backtest evaluates (perfmon.anomaly_backtest); production
-- models use the sensitivity alone. Where each value comes from: docs/anomalies.md.
DECLARE
    -- mean_window and the time-of-day channel's conditions are the same for all.
    settings jsonb := jsonb_build_object('mean_window', 36, 'season_min_periods', 3,
                                         'season_min_explained', 0.5) || CASE sensitivity
        WHEN 'low'    THEN '{"margin": 0.5, "mean_margin": 1.0, "z": 9.0, "contamination": 0.002}'
        WHEN 'medium' THEN '{"margin": 0.2, "mean_margin": 0.5, "z": 6.0, "contamination": 0.005}'
        WHEN 'high'   THEN '{"margin": 0.1, "mean_margin": 0.25, "z": 4.0, "contamination": 0.01}'
    END::jsonb;
    -- The settings each detector reads.
    allowed text[] := CASE detector
        WHEN 'envelope' THEN ARRAY['margin', 'mean_margin', 'mean_window']
        WHEN 'envelope_sql' THEN ARRAY['margin', 'mean_margin', 'mean_window']
        WHEN 'robust_zscore' THEN ARRAY['z']
        WHEN 'isolation_forest' THEN ARRAY['contamination']
        ELSE ARRAY['margin', 'mean_margin', 'mean_window', 'z', 'contamination']
    END;
    p record;
BEGIN
    IF settings IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: sensitivity %: expected low, medium or high', quote_nullable(sensitivity);
    END IF;
    IF params IS NULL OR params = 'null'::jsonb THEN
        RETURN settings;
    END IF;
    IF jsonb_typeof(params) <> 'object' THEN
        RAISE EXCEPTION 'pgperfmon: detector settings %: expected a JSON object such as {"margin": 0.3}', params;
    END IF;
    FOR p IN SELECT * FROM jsonb_each(params) LOOP
        IF NOT p.key = ANY (allowed) THEN
            RAISE EXCEPTION 'pgperfmon: setting % is not one of detector %', quote_literal(p.key),
                            coalesce(detector, '(any)')
                USING HINT = 'expected one of ' || array_to_string(allowed, ', ');
        END IF;
        IF jsonb_typeof(p.value) <> 'number' OR (p.value #>> '{}')::numeric <= 0
           OR (p.key = 'mean_window' AND (p.value #>> '{}')::numeric <> trunc((p.value #>> '{}')::numeric))
           OR (p.key = 'contamination' AND (p.value #>> '{}')::numeric > 0.5) THEN
            RAISE EXCEPTION 'pgperfmon: setting % = %: expected %', quote_literal(p.key), p.value,
                CASE p.key WHEN 'mean_window' THEN 'a whole number of samples greater than 0'
                           WHEN 'contamination' THEN 'a share greater than 0 and at most 0.5'
                           ELSE 'a number greater than 0' END;
        END IF;
    END LOOP;
    RETURN settings || params;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_settings(text, text, jsonb) IS
    'Settings of the anomaly detectors for a sensitivity (low, medium, high): envelope margin and '
    'mean_margin (in robust spreads beyond the training range), mean_window (samples), robust '
    'z-score threshold z (robust standard deviations), Isolation Forest contamination (share); '
    'params (a JSON object) replaces some of them, checked against what the detector reads.';
