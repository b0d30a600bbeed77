"""Reading PostgreSQL plans (EXPLAIN (FORMAT JSON, VERBOSE)): which columns a scan
filters, joins and sorts on. Plain functions over the parsed JSON; no database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
# alias.column, as VERBOSE prints it, possibly wrapped in parentheses and cast:
# "(t.a = $1)", "((t.c)::text = $1)", "(t.a = ANY ($1))", "(o.customer_id = c.id)".
_QUALIFIED = re.compile(rf"(?P<alias>{_IDENT})\.(?P<col>{_IDENT})")
_CAST = r"(?:\)|::[\w ]+(?:\[\])?|\s)*"
_OPS = r"(?P<op>=\s*ANY|<>|!=|<=|>=|=|<|>|~~\*?|!~~|IS\s+NOT\s+NULL|IS\s+NULL)"
_LEFT = re.compile(rf"(?P<ref>{_IDENT}\.{_IDENT}){_CAST}{_OPS}")
_RIGHT = re.compile(rf"(?P<op>=|<=|>=|<|>)\s*\(*(?P<ref>{_IDENT}\.{_IDENT})")
_SORT_KEY = re.compile(rf"^\s*(?P<ref>{_IDENT}\.{_IDENT})(?:\s+(?P<dir>ASC|DESC))?")

EQUALITY = {"=", "= ANY", "=ANY", "IS NULL"}
RANGE = {"<", ">", "<=", ">="}
FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "="}


def unquote(ident: str) -> str:
    if ident.startswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident


def split_ref(ref: str) -> tuple[str, str]:
    match = _QUALIFIED.fullmatch(ref)
    if not match:
        raise ValueError(f"not alias.column: {ref!r}")
    return unquote(match.group("alias")), unquote(match.group("col"))


@dataclass
class Predicates:
    """Columns one expression compares, by alias: equality, range, join."""

    equality: dict[str, list[str]] = field(default_factory=dict)
    range: dict[str, list[str]] = field(default_factory=dict)
    join: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, alias: str, column: str) -> None:
        bucket = getattr(self, kind).setdefault(alias, [])
        if column not in bucket:
            bucket.append(column)


def _inside_function(expr: str, start: int) -> bool:
    """True when the reference at `start` is an argument of a function call: lower(t.c)."""
    i = start - 1
    while i >= 0 and expr[i] == " ":
        i -= 1
    return i >= 1 and expr[i] == "(" and (expr[i - 1].isalnum() or expr[i - 1] == "_")


def predicates(expr: str | None, into: Predicates | None = None) -> Predicates:
    """The indexable comparisons of one plan expression (Filter, Index Cond, Hash Cond...)."""
    out = into or Predicates()
    if not expr:
        return out
    for match in _LEFT.finditer(expr):
        if _inside_function(expr, match.start("ref")):
            continue
        op = re.sub(r"\s+", " ", match.group("op").upper())
        alias, column = split_ref(match.group("ref"))
        rest = expr[match.end():].lstrip(" (")
        other = _QUALIFIED.match(rest)
        if op == "=" and other:  # column = column: a join (or a same-row comparison)
            other_alias, other_col = split_ref(other.group(0))
            if other_alias != alias:
                out.add("join", alias, column)
                out.add("join", other_alias, other_col)
            continue
        if op in EQUALITY or op == "= ANY":
            out.add("equality", alias, column)
        elif op in RANGE:
            out.add("range", alias, column)
    for match in _RIGHT.finditer(expr):
        # "$1 < t.a": a reference on the right of a comparison whose left is not a column.
        before = expr[:match.start()].rstrip(" )")
        if re.search(rf"{_IDENT}\.{_IDENT}(?:::[\w ]+)?$", before):
            continue
        if _inside_function(expr, match.start("ref")):
            continue
        alias, column = split_ref(match.group("ref"))
        op = FLIP[match.group("op")]
        out.add("equality" if op == "=" else "range", alias, column)
    return out


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []) or []:
        yield from walk(child)


@dataclass
class Relation:
    schema: str
    table: str
    aliases: set[str] = field(default_factory=set)
    scans: list[str] = field(default_factory=list)
    index_names: list[str] = field(default_factory=list)
    equality: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    seq_scan_rows: float = 0.0
    seq_scan_cost: float = 0.0


@dataclass
class PlanSummary:
    total_cost: float
    plan_rows: float
    relations: dict[tuple[str, str], Relation]
    modified: tuple[str, str] | None
    index_names: list[str]
    sorts: list[dict[str, Any]]
    hashes: list[dict[str, Any]]
    # (index name, node type, rows the node expects) of every index scan
    index_scans: list[tuple[str, str, float]] = field(default_factory=list)


def _add_unique(target: list[str], values: list[str]) -> None:
    for value in values:
        if value not in target:
            target.append(value)


def summarise(explain: Any) -> PlanSummary:
    """Relations a plan reads with the columns it filters, joins and sorts them on."""
    top = explain[0] if isinstance(explain, list) else explain
    root = top["Plan"]
    relations: dict[tuple[str, str], Relation] = {}
    by_alias: dict[str, Relation] = {}
    modified = None
    index_names: list[str] = []
    index_scans: list[tuple[str, str, float]] = []
    for node in walk(root):
        if node.get("Index Name"):
            index_names.append(node["Index Name"])
            index_scans.append((node["Index Name"], node["Node Type"],
                                float(node.get("Plan Rows", 0.0))))
        if "Relation Name" not in node:
            continue
        key = (node.get("Schema", "public"), node["Relation Name"])
        if node["Node Type"] == "ModifyTable":
            modified = key
            continue
        rel = relations.setdefault(key, Relation(*key))
        alias = node.get("Alias", node["Relation Name"])
        rel.aliases.add(alias)
        by_alias.setdefault(alias, rel)
        rel.scans.append(node["Node Type"])
        if node["Node Type"] == "Seq Scan":
            rel.seq_scan_rows = max(rel.seq_scan_rows, float(node.get("Plan Rows", 0)))
            rel.seq_scan_cost = max(rel.seq_scan_cost, float(node.get("Total Cost", 0)))
        if node.get("Index Name"):
            rel.index_names.append(node["Index Name"])
    found = Predicates()
    sorts: list[dict[str, Any]] = []
    hashes: list[dict[str, Any]] = []
    for node in walk(root):
        for key in ("Filter", "Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond",
                    "Join Filter"):
            predicates(node.get(key), found)
        # A Bitmap Index Scan names no relation: its Index Cond is read above.
        if node["Node Type"] == "Sort":
            sorts.append(node)
            keys = [_SORT_KEY.match(k) for k in node.get("Sort Key", [])]
            refs = [split_ref(k.group("ref")) for k in keys if k]
            aliases = {a for a, _c in refs}
            if refs and len(aliases) == 1 and refs[0][0] in by_alias:
                _add_unique(by_alias[refs[0][0]].sort, [c for _a, c in refs[:2]])
        if node["Node Type"] in ("Hash", "HashAggregate") or node.get("Strategy") == "Hashed":
            hashes.append(node)
    for kind in ("equality", "range", "join"):
        for alias, columns in getattr(found, kind).items():
            if alias in by_alias:
                _add_unique(getattr(by_alias[alias], kind), columns)
    return PlanSummary(
        total_cost=float(root.get("Total Cost", 0.0)),
        plan_rows=float(root.get("Plan Rows", 0.0)),
        relations=relations,
        modified=modified,
        index_names=index_names,
        sorts=sorts,
        hashes=hashes,
        index_scans=index_scans,
    )


def candidates(rel: Relation, limit: int = 12) -> list[tuple[str, ...]]:
    """One- and two-column B-tree candidates for one relation of one query, best bets first.

    Equality columns lead (an index on (eq, x) serves both); a range column can only
    be second to an equality one; a sort column leads only alone (ORDER BY ... LIMIT).
    """
    eq = list(rel.equality) + [c for c in rel.join if c not in rel.equality]
    out: list[tuple[str, ...]] = []

    def add(cand: tuple[str, ...]) -> None:
        if len(set(cand)) == len(cand) and cand not in out:
            out.append(cand)

    for e in eq:
        add((e,))
    # No range column leads: a generic plan prices "col > $1" with a default
    # selectivity (1/3), not with the values the application passes; a range column
    # comes second, after an equality that the column statistics do price.
    if rel.sort:
        add((rel.sort[0],))
    for i, e1 in enumerate(eq):
        for e2 in eq[i + 1:]:
            add((e1, e2))
        for r in rel.range:
            add((e1, r))
        if rel.sort:
            add((e1, rel.sort[0]))
    return out[:limit]


def covered(candidate: tuple[str, ...], existing: list[list[str]]) -> bool:
    """An existing index whose leading columns are the candidate's already serves it."""
    return any(list(candidate) == index[:len(candidate)] for index in existing)
