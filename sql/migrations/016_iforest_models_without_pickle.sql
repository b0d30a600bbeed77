-- Isolation Forest models without pickle (issue 6).
--
-- Isolation Forest models were pickled (scikit-learn's StandardScaler and
-- IsolationForest); importing scikit-learn and unpickling them in every pg_cron
-- backend cost more than the scoring interval, and unpickling runs code. They are
-- now numpy arrays in an npz archive (perfmon_py.forest), and a pickle is never
-- loaded again. The pickled models still current are retired here: the next
-- hourly perfmon.train_anomaly_models() finds no current model of the detector and
-- refits it (or run SELECT perfmon.train_anomaly_models(true) now). They stay in
-- the table, not current, like any replaced model. A pickle starts with its
-- protocol opcode, byte 0x80; JSON models start with '{', npz archives with 'PK'.
UPDATE perfmon.anomaly_models
   SET current = false
 WHERE current
   AND detector IN ('isolation_forest', 'isolation_forest_multi')
   AND substring(model FROM 1 FOR 1) = '\x80'::bytea;

COMMENT ON TABLE perfmon.anomaly_models IS
    'Trained anomaly models: detector, feature (and series), the training range and sample '
    'count, the parameters (sensitivity, margins, contamination) and the serialised model '
    '(JSON, or a numpy npz archive for Isolation Forest). current = the one scoring new '
    'samples; older ones are kept one retraining for comparison.';
