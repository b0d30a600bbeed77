-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.anomaly_python_missing()
RETURNS jsonb
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
# perfmon.anomaly_detector() asks at every call: the answer is probed once per session.
if "perfmon_detector_packages_missing" not in GD:
    if "perfmon_py" not in GD:
        plpy.execute("select perfmon.py_bootstrap()")
    import json
    from perfmon_py.environment import detector_packages_missing
    # scikit-learn is only looked up here: whether it imports, the last training found.
    failed = {r["package"]: r["error"] for r in plpy.execute(
        "SELECT package, format('%s (the training''s import at %s)', error, "
        "date_trunc('second', probed_at)) AS error "
        "FROM perfmon.state_python_probes WHERE error IS NOT NULL")}
    GD["perfmon_detector_packages_missing"] = json.dumps(detector_packages_missing(failed))
return GD["perfmon_detector_packages_missing"]
$$;
COMMENT ON FUNCTION perfmon.anomaly_python_missing() IS
    'The packages the PL/Python anomaly detectors need that the server''s Python lacks, with why '
    '({"numpy": "ModuleNotFoundError: ..."}; {} when none): numpy for every PL/Python detector, '
    'scikit-learn for training the isolation forest (looked up, and missing too where the last '
    'training could not import it: perfmon.state_python_probes). Probed once per session.';
