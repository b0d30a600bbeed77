-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.unload_anomaly_models()
RETURNS integer
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
from perfmon_py import anomaly
return anomaly.unload_models(plpy, GD)
$$;
COMMENT ON FUNCTION perfmon.unload_anomaly_models() IS
    'Drops the anomaly models this session''s PL/Python scoring keeps loaded and returns how many '
    'there were; perfmon.score_anomalies() calls it when PL/Python no longer scores (detector '
    'envelope_sql, anomaly detection disabled).';
