-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.deliver_next(worker text DEFAULT 'pg_cron')
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
# The body is a thin call into plpython/perfmon_py/delivery.py.
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py import delivery
outcome = delivery.deliver_one(delivery.PlpyStore(plpy), worker=worker)
return None if outcome is None else json.dumps(outcome)
$$;
COMMENT ON FUNCTION perfmon.deliver_next(text) IS
    'Claims, sends and records one due message of the channels whose secrets the server''s '
    'environment holds; NULL when there is none. Returns {message_id, channel, ok, status, ms}.';
