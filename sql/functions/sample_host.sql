-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.sample_host()
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
# The body is a thin call into plpython/perfmon_py/hostmetrics.py.
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py import hostmetrics
return json.dumps(hostmetrics.sample_in_database(plpy, GD))
$$;
COMMENT ON FUNCTION perfmon.sample_host() IS
    'Samples the host this server runs on with psutil (CPU, load, memory, disks, network, the '
    'PostgreSQL processes) into the metric store; see perfmon.host_metrics. Returns what it stored, '
    'or why it skipped (psutil missing).';
