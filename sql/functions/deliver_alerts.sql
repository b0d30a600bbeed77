-- requires: plpython3u
CREATE OR REPLACE PROCEDURE perfmon.deliver_alerts(max_seconds double precision DEFAULT 0,
                                                   max_messages integer DEFAULT 100000)
LANGUAGE plpython3u
-- No SET clause: a procedure with one may not COMMIT. Names are schema-qualified.
AS $$
# The body is a thin call into plpython/perfmon_py/delivery.py. Python, not PL/pgSQL:
# pg_sleep() between polls would hold a snapshot, and with it vacuum's horizon, all minute.
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
from perfmon_py import delivery
delivery.work_outbox(plpy, max_seconds, max_messages)
$$;
COMMENT ON PROCEDURE perfmon.deliver_alerts(double precision, integer) IS
    'The in-database delivery worker: sends due messages one by one, committing each; with '
    'max_seconds > 0 it keeps polling the outbox (every alerting.delivery_poll_seconds) for that '
    'many seconds, waiting without a snapshot. Secrets come from the server''s environment '
    '(see docs/alerting.md).';
