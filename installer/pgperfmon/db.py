"""The one connection helper: DSN resolution (libpq conventions) and redaction."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

APPLICATION_NAME = "pgperfmon"


class ConnectError(Exception):
    """The server could not be reached with the given DSN (its password redacted)."""


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else PGPERFMON_DSN, else '' so that libpq reads the usual PG* variables."""
    if dsn:
        return dsn
    return os.environ.get("PGPERFMON_DSN", "")


def redact(text: str) -> str:
    """Remove passwords from a DSN or from any message that may quote one."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.I)
    return text


def describe(dsn: str) -> str:
    """user@host:port/dbname, for messages; never the password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    user = parts.get("user") or os.environ.get("PGUSER", "")
    host = parts.get("host") or os.environ.get("PGHOST", "local socket")
    port = parts.get("port") or os.environ.get("PGPORT", "5432")
    dbname = parts.get("dbname") or os.environ.get("PGDATABASE", user)
    return f"{user}@{host}:{port}/{dbname}"


def with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


def connect(dsn: str, *, autocommit: bool = False, **kwargs: object) -> psycopg.Connection:
    """Connect, or raise ConnectError with a message that names the target but no secret."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConnectError(f"the DSN is malformed: {redact(str(exc))}") from None
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            application_name=APPLICATION_NAME,
            connect_timeout=10,
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        raise ConnectError(
            f"cannot connect to {describe(dsn)}: {redact(str(exc).strip())}"
        ) from None


@contextmanager
def connection(dsn: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(dsn, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()
