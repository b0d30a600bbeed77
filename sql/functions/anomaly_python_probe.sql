-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.anomaly_python_probe()
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
# perfmon.anomaly_python_missing() only looks scikit-learn up; the training, which imports it
# anyway, imports what fitting a forest needs and records the outcome for every session.
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
from perfmon_py.environment import FOREST_TRAINING_MODULES, import_error
error = import_error(FOREST_TRAINING_MODULES)
plpy.execute(plpy.prepare(
    "INSERT INTO perfmon.state_python_probes AS p (package, error, probed_at) "
    "VALUES ('scikit-learn', $1, now()) "
    "ON CONFLICT (package) DO UPDATE SET error = EXCLUDED.error, probed_at = EXCLUDED.probed_at",
    ["text"]), [error])
GD.pop("perfmon_detector_packages_missing", None)  # this session asks again
return error
$$;
COMMENT ON FUNCTION perfmon.anomaly_python_probe() IS
    'Imports what the isolation forest''s training needs from scikit-learn and records in '
    'perfmon.state_python_probes whether it could (and why not), which perfmon.anomaly_detector() '
    'then reads in every session; returns the error, NULL when it imported. Run by '
    'perfmon.train_anomaly_models() where anomaly_detection.algorithm is isolation_forest.';
