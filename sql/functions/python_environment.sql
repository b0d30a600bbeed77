-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.python_environment()
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py.environment import describe
return json.dumps(describe())
$$;
COMMENT ON FUNCTION perfmon.python_environment() IS
    'The server''s Python as PL/Python sees it: version and the versions of numpy, '
    'scikit-learn and psutil (null when one cannot be imported, with the reason).';
