-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.score_anomalies_py(detector text, sensitivity text, lookback_s integer)
RETURNS SETOF perfmon.anomaly_score
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
from perfmon_py import anomaly
return anomaly.score_new(plpy, GD, detector, lookback_s)
$$;
COMMENT ON FUNCTION perfmon.score_anomalies_py(text, text, integer) IS
    'Scores the feature samples of the last lookback_s seconds not scored yet with the current '
    'stored models (loaded once per session); no retraining.';
