-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.py_bootstrap()
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
# Make the modules stored in perfmon.python_modules importable as perfmon_py.*
# in this session. Every PL/Python function of pgperfmon calls this once per
# session (GD is shared by all of them), then imports what it needs.
import hashlib
import importlib.abc
import importlib.util
import sys

# perfmon_admin owns schema perfmon, and a schema's owner may drop any table in it: it
# could put a table (or a view) of its own in the code store's place, whose code would
# run here as the server's operating-system user. Only a superuser's plain table is read.
# The lock keeps the name on the table checked until the transaction ends (a DROP waits),
# and it is taken before anything reads the relation: a view's functions would run.
plpy.execute("lock table perfmon.python_modules in access share mode")
store = plpy.execute(
    "select c.relkind::text as kind, r.rolsuper, r.rolname::text as owner"
    "  from pg_class as c join pg_roles as r on r.oid = c.relowner"
    " where c.oid = 'perfmon.python_modules'::regclass")
if not (store[0]["kind"] == "r" and store[0]["rolsuper"]):
    plpy.error("pgperfmon: perfmon.python_modules is not the superuser's code store (it is a "
               "relation of kind %s owned by %s): its code is not run"
               % (store[0]["kind"], store[0]["owner"]),
               hint="pgperfmon install, run as a superuser, puts the code store back")
rows = plpy.execute(
    "select name, is_package, source from perfmon.python_modules order by name")
sources = {r["name"]: (r["source"], r["is_package"]) for r in rows}
if "perfmon_py" not in sources:
    plpy.error("pgperfmon: no PL/Python modules are deployed",
               hint="run pgperfmon install")

class PerfmonFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in sources:
            return importlib.util.spec_from_loader(
                fullname, self, is_package=sources[fullname][1])
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(sources[module.__name__][0],
                       "<perfmon.python_modules:%s>" % module.__name__, "exec")
        exec(code, module.__dict__)

for name in [m for m in sys.modules if m == "perfmon_py" or m.startswith("perfmon_py.")]:
    del sys.modules[name]
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PerfmonFinder"]
sys.meta_path.insert(0, PerfmonFinder())
digest = hashlib.sha256("".join(sorted(s for s, _ in sources.values())).encode()).hexdigest()
GD["perfmon_py"] = digest
return digest
$$;
COMMENT ON FUNCTION perfmon.py_bootstrap() IS
    'Loads pgperfmon''s PL/Python modules from perfmon.python_modules into this session; '
    'returns their combined sha256.';
