"""A perfmon_agent login for the benchmarks (as docs/host-and-agents.md creates one)."""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def agent_login_dsn(superuser_dsn: str, name: str = "bench_agent") -> str:
    password = secrets.token_urlsafe(16)
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE perfmon_agent").format(
            sql.Identifier(name), sql.Literal(password)))
    parts = conninfo_to_dict(superuser_dsn)
    parts.pop("passfile", None)
    return make_conninfo(**{**parts, "user": name, "password": password})
