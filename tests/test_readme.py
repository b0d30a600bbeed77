"""README.md stays true: every statement of its psql tour runs on an installed database."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_statements() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Quick tour in psql\s+```sql\n(.*?)```", text, re.S)
    assert block, "README.md has no psql tour"
    statements = []
    for line in block.group(1).splitlines():
        sql = line.split("--", 1)[0].strip()
        if sql and not sql.startswith("\\"):  # psql meta-commands are psql's, not SQL
            statements.append(sql.rstrip(";"))
    return statements


@pytest.mark.parametrize("statement", tour_statements())
def test_tour_statement_runs(conn: psycopg.Connection, statement: str) -> None:
    conn.execute("SELECT perfmon.collect()")
    conn.execute(statement).fetchall()


def test_tour_views_are_documented_for_psql_users(conn: psycopg.Connection) -> None:
    views = set(re.findall(r"FROM perfmon\.(\w+)", "\n".join(tour_statements())))
    undocumented = conn.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
        "AND c.relname = ANY(%s) AND obj_description(c.oid, 'pg_class') IS NULL",
        (sorted(views),)).fetchall()
    assert undocumented == []
