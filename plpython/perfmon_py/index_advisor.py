"""Index advice: which B-tree indexes would cut the cost of the statements that cost
the most, checked with hypothetical indexes (hypopg), run inside PostgreSQL.

The method (Dexter's, made stricter):
 1. The statements of this database that cost the most total execution time over
    the sampled history (perfmon.statement_totals), else pg_stat_statements.
 2. Each one's generic plan: PREPARE the normalised text, EXPLAIN EXECUTE it with
    NULL parameters under plan_cache_mode = force_generic_plan. Statements that
    cannot be prepared (utility commands, temp tables, undetermined parameter
    types) are skipped and counted, never fatal.
 3. Candidates per table: one and two columns from the plan's filters, index and
    join conditions and sort keys; those an existing index already leads with are
    dropped.
 4. Each candidate is created as a hypothetical index and every statement reading
    its table is planned again (a prepared statement keeps its plan, so it is
    prepared afresh): the new cost, and whether the plan uses the index at all.
 5. Each statement takes the candidate that cuts its cost most, but the narrower
    one unless the wider cuts 10 more points of the statement's cost; a
    single-column choice that a chosen two-column index serves as well is folded
    into it.
 6. An index is advised when it cuts the calls-weighted cost of the statements it
    serves by optimization.index_min_improvement_pct, and the time it saves them
    exceeds the time it would add to the table's writes (rows written over the
    window times the measured time per written row, shared among the indexes).
Without hypopg, step 4 is replaced by pg_stats selectivity estimates for single
equality columns of sequential scans, with low confidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from perfmon_py import plans

PREPARED = "perfmon_advisor_stmt"
# A wider index must cut 10 more points of a statement's cost than a narrower one.
WIDER_MUST_WIN_BY = 0.10
MIN_QUERY_GAIN = 0.01
# Statements whose plan already costs less than this are left alone (Dexter's
# default min cost): an index cannot save them anything that matters.
MIN_STATEMENT_COST = 100.0
BITMAP_MAX_FRACTION = 0.05
DEFAULT_ROW_WRITE_MS = 0.01  # per written row and index, when no write was measured
_EXPLAINABLE = re.compile(r"^\s*(select|with|update|delete|insert|values|table)\b", re.I)
_OURS = re.compile(r"\bperfmon\s*\.", re.I)
_PARAM = re.compile(r"\$(\d+)")


@dataclass
class Statement:
    stmt_id: int
    queryid: int | None
    query: str
    username: str
    calls: int
    exec_ms: float
    rows: int
    summary: plans.PlanSummary | None = None
    cost: float = 0.0
    costs: dict[tuple[str, str, tuple[str, ...]], float] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        return bool(self.summary and self.summary.modified)


def skip_reason(query: str) -> str | None:
    if _OURS.search(query):
        return "pgperfmon's own statement"
    if not _EXPLAINABLE.match(query):
        return "not a query or DML statement"
    return None


def query(plpy: Any, sql: str, types: list[str], args: list[Any]) -> Any:
    """A statement with parameters, its plan prepared once per session."""
    plans_cache = _PREPARED.setdefault(id(plpy), {})
    if sql not in plans_cache:
        plans_cache[sql] = plpy.prepare(sql, types)
    return plpy.execute(plans_cache[sql], args)


_PREPARED: dict[int, dict[str, Any]] = {}


def use_search_path_of(plpy: Any, username: str) -> None:
    """The default search_path of a statement's user, "$user", public, for this transaction."""
    query(plpy, "SELECT set_config('search_path', $1, true)", ["text"],
          [f"{plpy.quote_ident(username)}, public"])


_WRITE_TARGET = re.compile(
    r'^\s*(?:insert\s+into|update|delete\s+from)\s+(?:only\s+)?'
    r'((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)', re.I)


def written_table(plpy: Any, st: Statement) -> tuple[str, str] | None:
    """The table an INSERT/UPDATE/DELETE writes, from its text, as its user would resolve it."""
    match = _WRITE_TARGET.match(st.query)
    if not match:
        return None
    try:
        with plpy.subtransaction():
            use_search_path_of(plpy, st.username)
            rows = query(plpy, "SELECT n.nspname, c.relname FROM pg_class AS c "
                               "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                               "WHERE c.oid = to_regclass($1)", ["text"], [match.group(1)])
    except Exception:  # an unparsable name: no mapping
        return None
    return (rows[0]["nspname"], rows[0]["relname"]) if rows else None


def may_become(plpy: Any, username: str) -> bool:
    """Whether the current role may SET ROLE to username (a superuser may become anyone)."""
    return bool(query(plpy, "SELECT pg_has_role(current_user, $1, 'MEMBER') AS may", ["name"],
                      [username])[0]["may"])


class Planner:
    """Generic plans of normalised statements, as the statement's user would see the tables."""

    def __init__(self, plpy: Any):
        self.plpy = plpy

    def explain(self, query: str, username: str) -> Any:
        plpy = self.plpy
        params = max((int(n) for n in _PARAM.findall(query)), default=0)
        args = "(" + ", ".join(["NULL"] * params) + ")" if params else ""
        use_search_path_of(plpy, username)
        plpy.execute(f"PREPARE {PREPARED} AS {query}")
        try:
            rows = plpy.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE {PREPARED}{args}")
        finally:
            plpy.execute(f"DEALLOCATE {PREPARED}")
        plan = rows[0]["QUERY PLAN"]
        return json.loads(plan) if isinstance(plan, str) else plan

    def try_explain(self, query: str, username: str) -> tuple[Any, str | None]:
        """Planning folds a user's IMMUTABLE functions, running their code as whoever plans:
        the statement is planned as its own user when this role may become it (a superuser
        refreshing by hand), always read-only, and in a subtransaction rolled back after,
        so that what that code did (a write, a NOTIFY) is undone."""
        plpy = self.plpy
        try:
            with plpy.subtransaction():
                plpy.execute("SET LOCAL transaction_read_only = on")
                if may_become(plpy, username):
                    plpy.execute(f"SET LOCAL ROLE {plpy.quote_ident(username)}")
                raise _Planned(self.explain(query, username))
        except _Planned as planned:
            return planned.plan, None
        except Exception as exc:  # any planning error means: skip this statement
            return None, type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]


class _Planned(Exception):
    """A plan, carried out of the subtransaction it was made in, which raising it rolls back."""

    def __init__(self, plan: Any):
        super().__init__("planned")
        self.plan = plan


def top_statements(plpy: Any, window_days: int, top_n: int) -> list[Statement]:
    """The statements of this database costing the most over the window (history first)."""
    rows = plpy.execute(f"""
        WITH totals AS (
            SELECT t.stmt_id, t.calls, t.exec_ms, t.rows
            FROM perfmon.statement_totals(now() - make_interval(days => {int(window_days)}), now()) AS t
            WHERE t.stmt_id <> 0 AND t.calls > 0
        ),
        mine AS (
            SELECT s.stmt_id, s.queryid, s.query, pg_get_userbyid(s.userid) AS username,
                   t.calls, t.exec_ms, coalesce(t.rows, 0) AS rows,
                   s.query ~* '^\\s*(insert|update|delete)' AS is_write
            FROM totals AS t
            JOIN perfmon.statements AS s USING (stmt_id)
            WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        )
        (SELECT * FROM mine ORDER BY exec_ms DESC NULLS LAST LIMIT {int(top_n)})
        UNION
        (SELECT * FROM mine WHERE is_write ORDER BY exec_ms DESC NULLS LAST LIMIT {int(top_n)})""")
    if not rows:
        # No sampled history yet: pg_stat_statements since its last reset.
        has_pgss = plpy.execute(
            "SELECT to_regclass('public.pg_stat_statements') IS NOT NULL AS ok")[0]["ok"]
        if has_pgss:
            rows = plpy.execute(f"""
                WITH mine AS (
                    SELECT NULL::int AS stmt_id, queryid, query, pg_get_userbyid(userid) AS username,
                           calls, total_exec_time AS exec_ms, rows,
                           query ~* '^\\s*(insert|update|delete)' AS is_write
                    FROM public.pg_stat_statements
                    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                      AND toplevel AND calls > 0
                )
                (SELECT * FROM mine ORDER BY exec_ms DESC LIMIT {int(top_n)})
                UNION
                (SELECT * FROM mine WHERE is_write ORDER BY exec_ms DESC LIMIT {int(top_n)})""")
    out = [Statement(r["stmt_id"], r["queryid"], r["query"], r["username"], int(r["calls"]),
                     float(r["exec_ms"] or 0.0), int(r["rows"] or 0)) for r in rows]
    out.sort(key=lambda s: -s.exec_ms)
    return out


def existing_indexes(plpy: Any) -> dict[tuple[str, str], list[list[str]]]:
    """Plain (no expression, no predicate) valid B-tree indexes: their column lists."""
    rows = plpy.execute("""
        SELECT n.nspname AS schema_name, c.relname AS table_name,
               array_agg(a.attname ORDER BY k.ord) AS columns
        FROM pg_index AS x
        JOIN pg_class AS i ON i.oid = x.indexrelid
        JOIN pg_am AS am ON am.oid = i.relam AND am.amname = 'btree'
        JOIN pg_class AS c ON c.oid = x.indrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL unnest(x.indkey[0:x.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
        LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE x.indisvalid AND x.indpred IS NULL
        GROUP BY x.indexrelid, n.nspname, c.relname
        HAVING bool_and(a.attname IS NOT NULL)""")
    out: dict[tuple[str, str], list[list[str]]] = {}
    for r in rows:
        out.setdefault((r["schema_name"], r["table_name"]), []).append(list(r["columns"]))
    return out


@dataclass
class TableFacts:
    reltuples: float
    n_indexes: int
    rows_written: int


def table_facts(plpy: Any, window_days: int, tables: list[tuple[str, str]]) -> dict:
    if not tables:
        return {}
    names = plpy.quote_literal(json.dumps([list(t) for t in tables]))
    rows = plpy.execute(f"""
        WITH wanted AS (
            SELECT w ->> 0 AS schema_name, w ->> 1 AS table_name
            FROM jsonb_array_elements({names}::jsonb) AS w
        )
        SELECT w.schema_name, w.table_name, c.reltuples,
               (SELECT count(*) FROM pg_index AS x WHERE x.indrelid = c.oid) AS n_indexes,
               (SELECT coalesce(sum(coalesce(h.n_tup_ins, 0) + coalesce(h.n_tup_upd, 0)), 0)
                FROM perfmon.relations AS r
                JOIN perfmon.table_history AS h ON h.rel_id = r.rel_id
                WHERE r.server_id = 1 AND r.relid = c.oid
                  AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND h.ts > now() - make_interval(days => {int(window_days)})) AS rows_written
        FROM wanted AS w
        JOIN pg_namespace AS n ON n.nspname = w.schema_name
        JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = w.table_name""")
    return {(r["schema_name"], r["table_name"]): TableFacts(
        float(r["reltuples"]), int(r["n_indexes"]), int(r["rows_written"])) for r in rows}


@dataclass
class Advice:
    schema: str
    table: str
    columns: tuple[str, ...]
    method: str
    queries: list[tuple[Statement, float, float]]  # statement, cost before, cost after
    est_size_bytes: int | None = None
    write_rows: int = 0
    write_overhead_ms: float = 0.0
    write_overhead_pct: float | None = None

    @property
    def calls(self) -> int:
        return sum(s.calls for s, _b, _a in self.queries)

    @property
    def cost_before(self) -> float:
        return sum(s.calls * b for s, b, _a in self.queries) / max(self.calls, 1)

    @property
    def cost_after(self) -> float:
        return sum(s.calls * a for s, _b, a in self.queries) / max(self.calls, 1)

    @property
    def improvement_pct(self) -> float:
        before = sum(s.calls * b for s, b, _a in self.queries)
        after = sum(s.calls * a for s, _b, a in self.queries)
        return 100.0 * (before - after) / before if before > 0 else 0.0

    @property
    def saved_ms(self) -> float:
        return sum(s.exec_ms * (b - a) / b for s, b, a in self.queries if b > 0)

    def index_sql(self, quote_ident: Callable[[str], str]) -> str:
        return create_index_sql(quote_ident, (self.schema, self.table), self.columns, concurrently=True)


def create_index_sql(quote_ident: Callable[[str], str], table: tuple[str, str], columns: Sequence[str],
                     concurrently: bool = False) -> str:
    """CREATE INDEX on table (schema, name) over columns. quote_ident: the server's
    (plpy.quote_ident), which quotes keywords too: a column named "order" or "user" must be
    written quoted."""
    return "CREATE INDEX {}ON {}.{} ({})".format(
        "CONCURRENTLY " if concurrently else "", quote_ident(table[0]), quote_ident(table[1]),
        ", ".join(quote_ident(c) for c in columns))


def choose(statements: list[Statement], table: tuple[str, str],
           tried: list[tuple[str, ...]]) -> dict[tuple[str, ...], list[tuple[Statement, float, float]]]:
    """Per statement the candidate that cuts its cost most; then fold narrow into wide."""
    chosen: dict[tuple[str, ...], list[tuple[Statement, float, float]]] = {}
    for st in statements:
        options = [(st.costs[(*table, c)], c) for c in tried
                   if (*table, c) in st.costs and st.costs[(*table, c)] < st.cost * (1 - MIN_QUERY_GAIN)]
        if not options:
            continue
        best_cost, best = min(options, key=lambda o: (o[0], len(o[1])))
        narrow = [o for o in options if len(o[1]) < len(best)
                  and o[0] - best_cost <= WIDER_MUST_WIN_BY * st.cost]
        if narrow:
            best_cost, best = min(narrow, key=lambda o: o[0])
        chosen.setdefault(best, []).append((st, st.cost, best_cost))
    for narrow in sorted(chosen, key=len):
        if narrow not in chosen:
            continue
        for wide in [w for w in chosen if len(w) > len(narrow) and w[:len(narrow)] == narrow]:
            moved = []
            for st, before, after in chosen[narrow]:
                wide_cost = st.costs.get((*table, wide))
                if wide_cost is None or wide_cost - after > WIDER_MUST_WIN_BY * before:
                    break
                moved.append((st, before, wide_cost))
            else:
                chosen[wide].extend(moved)
                del chosen[narrow]
                break
    return chosen


def _uses(plan_summary: plans.PlanSummary, oid: int, reltuples: float) -> bool:
    """The plan uses the hypothetical index, and not as a bitmap over much of the table.

    A bitmap scan fetching more than BITMAP_MAX_FRACTION of the rows reads about every
    heap page anyway; the planner prices it below a sequential scan on CPU terms, but
    measured it is slower (bench/advisor_precision.py, "revenue of a status").
    """
    tag = f"<{oid}>"
    used = [(t, rows) for name, t, rows in plan_summary.index_scans if tag in name]
    if not used:
        return False
    return not any(t == "Bitmap Index Scan" and rows > BITMAP_MAX_FRACTION * reltuples
                   for t, rows in used)


def evaluate_hypothetical(plpy: Any, planner: Planner, table: tuple[str, str],
                          cands: list[tuple[str, ...]], readers: list[Statement],
                          reltuples: float) -> dict:
    sizes: dict[tuple[str, ...], int] = {}
    for cand in cands:
        ddl = create_index_sql(plpy.quote_ident, table, cand)
        try:
            with plpy.subtransaction():
                made = query(plpy, "SELECT indexrelid FROM public.hypopg_create_index($1)",
                             ["text"], [ddl])
        except Exception:  # a column type without a B-tree operator class
            continue
        oid = made[0]["indexrelid"]
        try:
            sizes[cand] = int(plpy.execute(
                f"SELECT public.hypopg_relation_size({int(oid)}) AS s")[0]["s"])
            for st in readers:
                explained, _error = planner.try_explain(st.query, st.username)
                if explained is None:
                    continue
                summary = plans.summarise(explained)
                if _uses(summary, oid, reltuples):
                    st.costs[(*table, cand)] = summary.total_cost
        finally:
            plpy.execute(f"SELECT public.hypopg_drop_index({int(oid)})")
    return sizes


def estimate_from_statistics(plpy: Any, table: tuple[str, str], facts: TableFacts,
                             readers: list[Statement], cands: list[tuple[str, ...]]) -> dict:
    """Without hypopg: equality selectivity from pg_stats for single columns of seq scans."""
    singles = [c for c in cands if len(c) == 1]
    if not singles or facts.reltuples < 10_000:
        return {}
    stats = {r["attname"]: r for r in query(
        plpy, "SELECT attname, n_distinct, avg_width, null_frac FROM pg_stats "
              "WHERE schemaname = $1 AND tablename = $2", ["text", "text"], list(table))}
    costs = plpy.execute("SELECT current_setting('random_page_cost')::float8 AS rpc")[0]
    sizes = {}
    for (column,) in singles:
        s = stats.get(column)
        if not s or s["n_distinct"] is None:
            continue
        nd = float(s["n_distinct"])
        distinct = nd if nd > 0 else -nd * facts.reltuples
        if distinct <= 0:
            continue
        selectivity = 1.0 / distinct
        if selectivity > 0.01:
            continue
        width = 8 + 4 + (int(s["avg_width"] or 8) + 7) // 8 * 8
        sizes[(column,)] = int(facts.reltuples * width / (8192 * 0.9) * 8192)
        for st in readers:
            rel = st.summary.relations.get(table) if st.summary else None
            if not rel or "Seq Scan" not in rel.scans or column not in rel.equality:
                continue
            fetched = max(1.0, facts.reltuples * selectivity)
            after = st.cost - rel.seq_scan_cost + fetched * float(costs["rpc"]) + 4.0
            if after < st.cost:
                st.costs[(*table, (column,))] = max(after, 0.01)
    return sizes


def advise(plpy: Any, top_n: int, window_days: int, min_pct: float) -> dict[str, Any]:
    hypothetical = bool(plpy.execute(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'hypopg') AS ok")[0]["ok"])
    if hypothetical:
        plpy.execute("SELECT public.hypopg_reset()")
    planner = Planner(plpy)
    statements = top_statements(plpy, window_days, top_n)
    skipped: dict[str, int] = {}
    explained: list[Statement] = []
    unplanned_writes: list[Statement] = []
    for st in statements:
        reason = skip_reason(st.query)
        if reason is None:
            plan, error = planner.try_explain(st.query, st.username)
            if plan is None:
                reason = "cannot be planned: " + (error or "?").split(":")[0]
            else:
                st.summary = plans.summarise(plan)
                st.cost = st.summary.total_cost
                explained.append(st)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            target = written_table(plpy, st)
            if target:
                st.summary = plans.PlanSummary(0.0, 0.0, {}, target, [], [], [])
                unplanned_writes.append(st)

    existing = existing_indexes(plpy)
    per_table: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    readers: dict[tuple[str, str], list[Statement]] = {}
    writers: dict[tuple[str, str], list[Statement]] = {}
    for st in unplanned_writes:
        assert st.summary is not None and st.summary.modified
        writers.setdefault(st.summary.modified, []).append(st)
    for st in explained:
        assert st.summary is not None
        if st.summary.modified:
            writers.setdefault(st.summary.modified, []).append(st)
        for key, rel in st.summary.relations.items():
            if rel.schema in ("pg_catalog", "information_schema", "perfmon"):
                continue
            cands = [c for c in plans.candidates(rel) if not plans.covered(c, existing.get(key, []))]
            if not cands:
                continue
            if st.cost < MIN_STATEMENT_COST:
                continue
            readers.setdefault(key, []).append(st)
            for c in cands:
                if c not in per_table.setdefault(key, []):
                    per_table[key].append(c)
    facts = table_facts(plpy, window_days, sorted(per_table))

    advice: list[Advice] = []
    evaluated = 0
    for table, cands in per_table.items():
        if table not in facts:
            continue
        if hypothetical:
            sizes = evaluate_hypothetical(plpy, planner, table, cands, readers[table],
                                          facts[table].reltuples)
            evaluated += len(cands)
        else:
            sizes = estimate_from_statistics(plpy, table, facts[table], readers[table], cands)
        for columns, served in choose(readers[table], table, list(sizes)).items():
            a = Advice(table[0], table[1], columns, "hypopg" if hypothetical else "statistics",
                       served, sizes.get(columns))
            if a.improvement_pct < min_pct:
                continue
            _write_overhead(a, facts[table], writers.get(table, []))
            advice.append(a)
    _store(plpy, advice, min_pct)
    return {
        "method": "hypopg" if hypothetical else "statistics",
        "statements": len(statements),
        "explained": len(explained),
        "skipped": skipped,
        "tables": len(per_table),
        "candidates_evaluated": evaluated,
        "advised": sum(1 for a in advice if _recommended(a, min_pct)[0]),
    }


def _write_overhead(a: Advice, facts: TableFacts, writers: list[Statement]) -> None:
    """Time one more index adds to the table's writes over the window, in ms."""
    write_ms = sum(w.exec_ms for w in writers)
    write_stmt_rows = sum(w.rows for w in writers)
    rows = facts.rows_written or write_stmt_rows
    a.write_rows = rows
    if rows <= 0:
        return
    per_row_ms = write_ms / write_stmt_rows if write_stmt_rows > 0 and write_ms > 0 else (
        DEFAULT_ROW_WRITE_MS * (facts.n_indexes + 1))
    # A written row costs the heap and each index about alike: one more index adds a share.
    a.write_overhead_ms = rows * per_row_ms / (facts.n_indexes + 1)
    if write_ms > 0:
        a.write_overhead_pct = 100.0 * a.write_overhead_ms / write_ms


def _recommended(a: Advice, min_pct: float) -> tuple[bool, str]:
    if a.improvement_pct < min_pct:
        return False, f"cuts cost by {a.improvement_pct:.0f}%, below {min_pct:g}%"
    if a.write_overhead_ms > a.saved_ms:
        return False, (f"writes dominate: it would add about {a.write_overhead_ms:.0f} ms to the "
                       f"{a.write_rows} rows written, more than the {a.saved_ms:.0f} ms it saves reads")
    return True, (f"cuts the calls-weighted cost of {len(a.queries)} statement(s) by "
                  f"{a.improvement_pct:.0f}%")


def _store(plpy: Any, advice: list[Advice], min_pct: float) -> None:
    plpy.execute("DELETE FROM perfmon.index_advice")
    for a in advice:
        ok, reason = _recommended(a, min_pct)
        queries = [{
            "stmt_id": st.stmt_id, "queryid": st.queryid, "calls": st.calls,
            "total_ms": round(st.exec_ms, 2), "cost_before": round(before, 2),
            "cost_after": round(after, 2),
            "improvement_pct": round(100 * (before - after) / before, 1) if before else 0,
            "query": st.query[:300],
        } for st, before, after in sorted(a.queries, key=lambda q: -q[0].exec_ms)]
        plan = plpy.prepare(
            """INSERT INTO perfmon.index_advice (schema_name, table_name, columns, index_sql, method,
                   improvement_pct, cost_before, cost_after, est_size_bytes, calls, saved_ms,
                   write_rows, write_overhead_ms, write_overhead_pct, recommended, reason,
                   queries, advised_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                       $17, now())
               ON CONFLICT DO NOTHING""",
            ["text", "text", "text[]", "text", "text", "real", "float8", "float8", "int8",
             "int8", "float8", "int8", "float8", "real", "bool", "text", "jsonb"])
        plpy.execute(plan, [a.schema, a.table, list(a.columns), a.index_sql(plpy.quote_ident), a.method,
                            a.improvement_pct, a.cost_before, a.cost_after, a.est_size_bytes,
                            a.calls, a.saved_ms, a.write_rows, a.write_overhead_ms,
                            a.write_overhead_pct, ok, reason, json.dumps(queries)])
