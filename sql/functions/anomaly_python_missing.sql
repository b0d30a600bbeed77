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
    GD["perfmon_detector_packages_missing"] = json.dumps(detector_packages_missing())
return GD["perfmon_detector_packages_missing"]
$$;
COMMENT ON FUNCTION perfmon.anomaly_python_missing() IS
    'The packages the PL/Python anomaly detectors need that the server''s Python lacks, with why '
    '({"numpy": "ModuleNotFoundError: ..."}; {} when none): numpy for every PL/Python detector, '
    'scikit-learn for training the isolation forest. Probed once per session.';
