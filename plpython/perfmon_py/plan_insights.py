"""Slow query insight: what the generic plan of each slow query says is wrong, and
the advice that follows. Measured facts (rows per call, temp blocks written) come
from the sampled history; the plan says where."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from perfmon_py import plans
from perfmon_py.index_advisor import Planner, skip_reason

LARGE_TABLE_ROWS = 100_000
MISESTIMATE_FACTOR = 10.0


def next_power_of_two_mb(size_bytes: float, floor_mb: int = 4, cap_mb: int = 2048) -> int:
    """The smallest power-of-two megabytes holding size_bytes, within [floor_mb, cap_mb]."""
    mb = floor_mb
    while mb * 1048576 < size_bytes and mb < cap_mb:
        mb *= 2
    return mb


def problems(summary: plans.PlanSummary, explain: Any, reltuples: dict[tuple[str, str], float],
             rows_per_call: float | None, temp_bytes_per_call: float | None,
             work_mem_bytes: int, is_select: bool,
             quote_ident: Callable[[str], str]) -> list[dict[str, Any]]:
    """Problems of one plan: a list of {problem, relation, detail, advice, evidence}.
    quote_ident: the server's (plpy.quote_ident); a relation is named schema.table quoted, or
    schema "a.b" table "c" and schema "a" table "b.c" would be one relation, and one finding."""
    found: list[dict[str, Any]] = []
    for key, rel in summary.relations.items():
        rows = reltuples.get(key, 0.0)
        if "Seq Scan" in rel.scans and rows >= LARGE_TABLE_ROWS:
            name = f"{quote_ident(rel.schema)}.{quote_ident(rel.table)}"
            cols = rel.equality + [c for c in rel.range + rel.join if c not in rel.equality]
            if cols:
                advice = (f"filters {name} on {', '.join(cols)} while reading all of it: "
                          "see perfmon.index_recommendations for an index that serves it")
            else:
                advice = (f"reads all of {name} without a filter: add a WHERE or LIMIT, or "
                          "keep a summary table if the whole table is really needed")
            found.append({
                "problem": "seq_scan_large_table", "relation": name,
                "detail": f"sequential scan of {name} ({rows:.0f} rows)",
                "advice": advice,
                "evidence": {"table_rows": rows, "filter_columns": cols},
            })
    if is_select and rows_per_call is not None:
        est = summary.plan_rows
        high, low = max(est, rows_per_call, 1.0), max(min(est, rows_per_call), 1.0)
        if high / low >= MISESTIMATE_FACTOR and high >= 100:
            found.append({
                "problem": "row_misestimate", "relation": "",
                "detail": f"the plan expects {est:.0f} rows, the query returns {rows_per_call:.0f} "
                          "per call",
                "advice": "ANALYZE the tables it reads; if that does not help, raise the "
                          "statistics target of the filtered columns (ALTER TABLE ... ALTER "
                          "COLUMN ... SET STATISTICS 1000) or CREATE STATISTICS for correlated "
                          "columns",
                "evidence": {"plan_rows": est, "rows_per_call": rows_per_call},
            })
    spilling = []
    for node in summary.sorts + summary.hashes:
        need = float(node.get("Plan Rows", 0)) * float(node.get("Plan Width", 0))
        if need > work_mem_bytes:
            spilling.append({"node": node["Node Type"], "estimated_bytes": need})
    if (temp_bytes_per_call or 0) > 0 or spilling:
        per_call = temp_bytes_per_call or max(s["estimated_bytes"] for s in spilling)
        suggested_mb = next_power_of_two_mb(2 * per_call)
        found.append({
            "problem": "spill_to_disk", "relation": "",
            "detail": (f"sorts/hashes write {per_call / 1048576:.1f} MB of temporary files per call"
                       if temp_bytes_per_call else
                       "the plan's sorts/hashes need more than work_mem"),
            "advice": f"run it with SET LOCAL work_mem = '{suggested_mb}MB' (or for its role), "
                      "or let an index deliver the rows in order",
            "evidence": {"temp_bytes_per_call": temp_bytes_per_call, "plan_nodes": spilling,
                         "work_mem_bytes": work_mem_bytes, "suggested_work_mem_mb": suggested_mb},
        })
    return found


def explain_slow_queries(plpy: Any, limit: int = 20) -> dict[str, Any]:
    rows = plpy.execute(f"""
        SELECT q.stmt_id, q.query, q.username, q.calls, q.rows_per_call,
               q.temp_written_bytes::float8 / nullif(q.calls, 0) AS temp_bytes_per_call
        FROM perfmon.slow_queries AS q
        WHERE q.database = current_database() AND q.username IS NOT NULL
        ORDER BY q.total_ms DESC
        LIMIT {int(limit)}""")
    work_mem = int(plpy.execute(
        "SELECT setting::bigint * 1024 AS b FROM pg_settings WHERE name = 'work_mem'")[0]["b"])
    planner = Planner(plpy)
    plpy.execute("DELETE FROM perfmon.plan_insights")
    insert = plpy.prepare(
        """INSERT INTO perfmon.plan_insights (stmt_id, problem, relation, detail, advice,
               evidence, explained_at)
           VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT DO NOTHING""",
        ["int4", "text", "text", "text", "text", "jsonb"])
    explained = skipped = stored = 0
    for r in rows:
        if skip_reason(r["query"]):
            skipped += 1
            continue
        explain, _error = planner.try_explain(r["query"], r["username"])
        if explain is None:
            skipped += 1
            continue
        explained += 1
        summary = plans.summarise(explain)
        keys = list(summary.relations)
        reltuples = {}
        if keys:
            names = plpy.quote_literal(json.dumps([list(k) for k in keys]))
            for t in plpy.execute(f"""
                    SELECT w ->> 0 AS s, w ->> 1 AS t, c.reltuples
                    FROM jsonb_array_elements({names}::jsonb) AS w
                    JOIN pg_namespace AS n ON n.nspname = w ->> 0
                    JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = w ->> 1"""):
                reltuples[(t["s"], t["t"])] = float(t["reltuples"])
        is_select = r["query"].lstrip().lower().startswith(("select", "with", "table", "values"))
        rows_per_call = float(r["rows_per_call"]) if r["rows_per_call"] is not None else None
        for p in problems(summary, explain, reltuples, rows_per_call, r["temp_bytes_per_call"],
                          work_mem, is_select, plpy.quote_ident):
            plpy.execute(insert, [r["stmt_id"], p["problem"], p["relation"], p["detail"],
                                  p["advice"], json.dumps(p["evidence"])])
            stored += 1
    return {"slow_queries": len(rows), "explained": explained, "skipped": skipped,
            "problems": stored}
