"""A login role in perfmon_agent, as an operator creates one for `pgperfmon agent`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@contextmanager
def agent_login(server, dbname: str) -> Iterator[str]:
    """Yield a DSN (password over TCP, scram) of a fresh login that is a member of perfmon_agent."""
    name = f"agent_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    server.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE perfmon_agent").format(
        sql.Identifier(name), sql.Literal(password)).as_string(None))
    parts = conninfo_to_dict(server.dsn(dbname))
    parts.pop("passfile", None)
    try:
        yield make_conninfo(**{**parts, "user": name, "password": password})
    finally:
        # A closed session's backend may still be exiting, its temporary tables (owned by the
        # login) not yet dropped: wait for it to end (pg_terminate_backend's timeout) first.
        server.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = %s",
                       (name,))
        server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)).as_string(None))
