-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.anomaly_backtest_py(series_id integer, detector text, sensitivity text,
                                                       params jsonb, window_s double precision,
                                                       refit_s double precision, quiet integer, zone text)
RETURNS TABLE (ts timestamptz, value double precision, score double precision, anomalous boolean,
               is_anomaly boolean)
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
from perfmon_py import anomaly
return anomaly.backtest(plpy, series_id, detector, sensitivity, window_s, refit_s, quiet, params, zone)
$$;
COMMENT ON FUNCTION perfmon.anomaly_backtest_py(integer, text, text, jsonb, double precision, double precision, integer, text) IS
    'Walk-forward backtest of a PL/Python detector on one stored series (see perfmon.anomaly_backtest).';
