-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.train_anomaly_models_py(detector text, since timestamptz,
                                                           until timestamptz, sensitivity text,
                                                           zone text)
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py import anomaly
return json.dumps(anomaly.train_models(plpy, detector, since, until, sensitivity, zone))
$$;
COMMENT ON FUNCTION perfmon.train_anomaly_models_py(text, timestamptz, timestamptz, text, text) IS
    'Fits the PL/Python detector (envelope, robust_zscore, isolation_forest; the latter also the '
    'multi-metric forest) on every anomaly feature between two times and makes the models current; zone: the time '
    'zone of the envelope''s daily profile.';
