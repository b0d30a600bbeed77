-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.explain_slow_queries()
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py.plan_insights import explain_slow_queries
return json.dumps(explain_slow_queries(plpy))
$$;
COMMENT ON FUNCTION perfmon.explain_slow_queries() IS
    'Reads the generic plan of each slow query of this database (perfmon.slow_queries) and '
    'keeps its problems in perfmon.plan_insights: sequential scans of large tables, row '
    'estimates far from the rows measured per call, sorts and hashes that spill to disk.';
