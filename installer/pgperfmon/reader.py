"""Read-only connections for the report and the dashboards: they act as perfmon_reader.

Whatever the login (a superuser's DSN included), the session runs ``SET ROLE
perfmon_reader`` and ``default_transaction_read_only``: the views and the
read-only report functions are all it can reach, and a write fails. A login
that may not act as perfmon_reader is refused with the GRANT that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgperfmon import db, resources

READER_ROLE = "perfmon_reader"


class ReaderError(Exception):
    """The reader session cannot be set up; the message says why and what to do."""


def connect(dsn: str, application: str, statement_timeout_ms: int = 15_000) -> psycopg.Connection:
    """An autocommit connection acting as perfmon_reader, rows as dicts.

    A statement ends after ``statement_timeout_ms`` (a view waiting on a lock another session
    holds) and the session after about a minute without an answer from the server
    (db.KEEPALIVES): a dashboard's panel would otherwise hold its pool slot for as long, and
    with every slot held every panel said the connections were busy. A statement_timeout
    of the DSN's own (options=-c statement_timeout=..., $PGOPTIONS), and the keepalive
    settings and application_name it gives (db.connect), are kept."""
    conn = db.connect(dsn, autocommit=True, application_name=f"pgperfmon {application}")
    try:
        user, role = conn.execute(
            "SELECT session_user, EXISTS (SELECT FROM pg_roles WHERE rolname = %s)",
            (READER_ROLE,)).fetchone()
        if not db.installed(conn) or not role:
            raise ReaderError(db.not_installed(conn))
        try:
            conn.execute(f"SET ROLE {READER_ROLE}")
        except psycopg.errors.InsufficientPrivilege:
            raise ReaderError(
                f"the login {user} may not act as {READER_ROLE}, the only role the {application} "
                f"reads through; as a superuser run: GRANT {READER_ROLE} TO \"{user}\";") from None
        conn.execute("SET default_transaction_read_only = on")
        # source 'client': set by the DSN's options or $PGOPTIONS, which the user meant.
        conn.execute("SELECT set_config('statement_timeout', CASE WHEN source = 'client' "
                     "THEN setting ELSE %s END, false) "
                     "FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'",
                     (str(int(statement_timeout_ms)),))
    except BaseException:
        conn.close()
        raise
    conn.row_factory = dict_row  # type: ignore[assignment]
    return conn


def query_text(name: str) -> str:
    """``sql/queries/<name>.sql`` without its leading comment, which pg_stat_statements would keep."""
    lines = resources.sql(f"queries/{name}").splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def rows(conn: psycopg.Connection, name: str, params: Mapping[str, Any] | None = None) -> list[dict]:
    """The rows of ``sql/queries/<name>.sql``."""
    cur = conn.execute(query_text(name), params or None)
    return list(cur.fetchall()) if cur.description else []
