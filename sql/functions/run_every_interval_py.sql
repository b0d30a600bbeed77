-- requires: plpython3u
CREATE OR REPLACE PROCEDURE perfmon.run_every_interval_py(command text, interval_s integer)
LANGUAGE plpython3u
-- No SET search_path: a procedure with SET clauses may not COMMIT. The body names
-- perfmon's objects schema-qualified; the command runs as the caller wrote it.
AS $$
# The body is a thin call into plpython/perfmon_py/slots.py.
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
from perfmon_py import slots
slots.run_every_interval(plpy, command, interval_s)
$$;
COMMENT ON PROCEDURE perfmon.run_every_interval_py(text, integer) IS
    'perfmon.run_every_interval() without its one cost: it waits between slots holding no '
    'snapshot, so vacuum''s cleanup horizon is never held back by the wait. The sub-minute '
    'jobs use it where plpython3u is installed (see perfmon.job_plan).';
