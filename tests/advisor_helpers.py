"""Helpers shared by the advisor tests."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from helpers import collect, flush


def refresh(conn: psycopg.Connection) -> dict[str, Any]:
    result = conn.execute("SELECT perfmon.refresh_recommendations()").fetchone()[0]
    errors = {k: v["error"] for k, v in result["rules"].items() if "error" in v}
    assert not errors, errors
    return result


def findings(conn: psycopg.Connection, rule: str, status: str | None = "open") -> list[dict]:
    """Rows of perfmon.recommendations made by one rule (of one status, or all)."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT * FROM perfmon.recommendations WHERE rule = %s AND (%s::text IS NULL OR status = %s) "
        "ORDER BY id", (rule, status, status)).fetchall()


def view(conn: psycopg.Connection, name: str, where: str = "true") -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(f"SELECT * FROM perfmon.{name} WHERE {where}").fetchall()


def set_config(conn: psycopg.Connection, key: str, value: object) -> None:
    conn.execute("UPDATE perfmon.config SET value = to_jsonb(%s) WHERE key = %s", (value, key))
    assert conn.execute("SELECT count(*) FROM perfmon.config WHERE key = %s", (key,)).fetchone() == (1,)


def sampled(conn: psycopg.Connection, work: Any) -> None:
    """A baseline sample, the work, then a sample that stores what the work did."""
    flush(conn)
    collect(conn)
    work()
    flush(conn)
    collect(conn)
