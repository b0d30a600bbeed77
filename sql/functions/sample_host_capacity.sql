-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.sample_host_capacity()
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py.host import capacity
folder = plpy.execute("select current_setting('data_directory') as d")[0]["d"]
facts = capacity(folder)
plan = plpy.prepare(
    """INSERT INTO perfmon.host_capacity AS h (server_id, ts, data_directory, disk_total_bytes,
           disk_free_bytes, ram_bytes, cpu_count)
       VALUES (1, now(), $1, $2, $3, $4, $5)
       ON CONFLICT (server_id) DO UPDATE SET ts = EXCLUDED.ts,
           data_directory = EXCLUDED.data_directory, disk_total_bytes = EXCLUDED.disk_total_bytes,
           disk_free_bytes = EXCLUDED.disk_free_bytes, ram_bytes = EXCLUDED.ram_bytes,
           cpu_count = EXCLUDED.cpu_count""",
    ["text", "int8", "int8", "int8", "int4"])
plpy.execute(plan, [folder, facts["disk_total_bytes"], facts["disk_free_bytes"],
                    facts["ram_bytes"], facts["cpu_count"]])
return json.dumps(dict(facts, data_directory=folder))
$$;
COMMENT ON FUNCTION perfmon.sample_host_capacity() IS
    'Reads the data directory''s disk size and free space (bytes), RAM (bytes) and CPU count '
    'into perfmon.host_capacity; returns them as jsonb.';
