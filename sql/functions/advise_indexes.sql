-- requires: plpython3u
CREATE OR REPLACE FUNCTION perfmon.advise_indexes()
RETURNS jsonb
LANGUAGE plpython3u
-- public: hypopg and pg_stat_statements live there. Generic plans of the prepared
-- statements are what a parameterised query runs with; force them.
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
if "perfmon_py" not in GD:
    plpy.execute("select perfmon.py_bootstrap()")
import json
from perfmon_py.index_advisor import advise
setting = lambda key: json.loads(plpy.execute(
    "select perfmon.setting(%s)::text as v" % plpy.quote_literal(key))[0]["v"])
try:
    result = advise(plpy,
                    top_n=int(setting("optimization.index_advisor_top_statements")),
                    window_days=int(setting("optimization.advice_window_days")),
                    min_pct=float(setting("optimization.index_min_improvement_pct")))
finally:
    if plpy.execute("select exists (select from pg_extension where extname = 'hypopg') as ok")[0]["ok"]:
        plpy.execute("select public.hypopg_reset()")
return json.dumps(result)
$$;
COMMENT ON FUNCTION perfmon.advise_indexes() IS
    'Searches the generic plans of the statements costing the most total time for B-tree '
    'indexes that would cut their calls-weighted cost, checks each with a hypothetical index '
    '(hypopg; pg_stats heuristics without it) and keeps the result in perfmon.index_advice. '
    'Returns how many statements were planned, skipped (and why) and advised.';
