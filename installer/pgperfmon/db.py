"""The one connection helper: DSN resolution (libpq conventions) and redaction."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row

from pgperfmon import resources

APPLICATION_NAME = "pgperfmon"
# libpq's connection keywords: words of a DSN that are never a password.
_KEYWORDS = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
# A server that stops answering mid-query (the network to it blackholed, its host gone)
# sends no reset: a session waits on its socket as long as the kernel keeps it, two hours
# and more, and statement_timeout cannot end it (the server that would is the one gone).
# TCP keepalive probes after 30 s of silence, every 10 s, 3 unanswered, and at most 60 s
# for data the server does not acknowledge, end it within about a minute.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
              "keepalives_count": "3", "tcp_user_timeout": "60000"}


class ConnectError(Exception):
    """The server could not be reached with the given DSN (its password redacted)."""


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else PGPERFMON_DSN, else '' so that libpq reads the usual PG* variables."""
    if dsn:
        return dsn
    return os.environ.get("PGPERFMON_DSN", "")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove passwords from a DSN or from any message that may quote one (and ``secrets``).

    The one redaction helper, shared with the in-database alert delivery:
    ``plpython/perfmon_py/redact.py``.
    """
    return resources.plpython_module("redact").redact(text, secrets)


def dsn_secrets(dsn: str) -> list[str]:
    """What may be a password in ``dsn``, for redacting messages about it: the password
    libpq parses, else whatever follows the word password, and a URI's user:password@
    part, and each piece of it between '@', '/', ':' and '?' (unencoded, those make libpq
    read the pieces as host, port and database, which messages name)."""
    try:
        parsed = conninfo_to_dict(dsn).get("password")
    except (psycopg.ProgrammingError, UnicodeDecodeError):  # percent-encoded bytes that are not UTF-8
        parsed = None
    guessed = [] if parsed else [f.strip(" =") for f in re.findall(r"password(.*)", dsn, flags=re.I | re.S)]
    guessed += re.findall(r"://[^:/@\s]*:(.*)@", dsn, flags=re.S)
    words = [w for text in guessed for w in re.split(r"[\s'\"=&@/:?]+", text) if w and w not in _KEYWORDS]
    return [str(parsed)] * bool(parsed) + guessed + words


def describe(dsn: str) -> str:
    """user@host:port/dbname, for messages; never the password. As libpq reads them: those a
    service= gives included."""
    try:
        conninfo_to_dict(dsn)
    except (psycopg.ProgrammingError, UnicodeDecodeError):  # percent-encoded bytes that are not UTF-8
        return "<unparsable DSN>"
    parts = libpq_settings(dsn, ("user", "host", "port", "dbname"))
    user = parts.get("user") or os.environ.get("PGUSER") or getpass.getuser()  # libpq's default
    host = parts.get("host") or os.environ.get("PGHOST", "local socket")
    port = parts.get("port") or os.environ.get("PGPORT", "5432")
    dbname = parts.get("dbname") or os.environ.get("PGDATABASE", user)
    return f"{user}@{host}:{port}/{dbname}"


def with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


def libpq_settings(dsn: str, keywords: Iterable[str]) -> dict[str, str]:
    """The value libpq takes for each of ``keywords`` when connecting with ``dsn``: the DSN's
    own, else its service's (service= or $PGSERVICE, from pg_service.conf), else the PG*
    environment variable's; a keyword none of them gives is left out.

    libpq reads them itself (PQconnectStart, then PQconninfo): told an sslmode it refuses, it
    stops there, before any network. A DSN it cannot read (a service not found) gives nothing
    here, and the connection says why."""
    pgconn = psycopg.pq.PGconn.connect_start(make_conninfo(dsn, sslmode="refused").encode())
    try:
        wanted = set(keywords)
        return {o.keyword.decode(): o.val.decode(errors="replace") for o in pgconn.info
                if o.keyword.decode() in wanted and o.val}
    finally:
        pgconn.finish()


def connect(dsn: str, *, autocommit: bool = False, application_name: str = APPLICATION_NAME,
            **kwargs: object) -> psycopg.Connection:
    """Connect, or raise ConnectError with a message that names the target but no secret.

    application_name, a 10 s connect_timeout and KEEPALIVES (a server that stopped
    answering is given up within a minute, not the kernel's two hours) are defaults only:
    a value the DSN, its service file or $PGAPPNAME, $PGCONNECT_TIMEOUT gives is kept, as
    libpq would (a DBA's connect_timeout for a slow link, the application_name their
    pg_stat_activity accounting groups by). ``kwargs`` are set whatever the DSN says."""
    try:
        conninfo_to_dict(dsn)
    except (psycopg.ProgrammingError, UnicodeDecodeError) as exc:
        reason = redact(str(exc).strip(), dsn_secrets(dsn))
        raise ConnectError(f"the DSN is malformed: {reason}") from None
    defaults = {"application_name": application_name, "connect_timeout": "10", **KEEPALIVES}
    given = libpq_settings(dsn, defaults)
    # Given as keywords even where libpq would read them anyway: psycopg, which times the
    # connection attempt itself, reads connect_timeout from the DSN and $PGCONNECT_TIMEOUT
    # only, never from a service file.
    kwargs = {**defaults, **given, **kwargs}
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **kwargs)
    except (psycopg.OperationalError, ValueError) as exc:  # ValueError: a host name idna refuses
        raise ConnectError(
            redact(f"cannot connect to {describe(dsn)}: {str(exc).strip()}", dsn_secrets(dsn))
        ) from None


@contextmanager
def connection(dsn: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(dsn, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()


def installed(conn: psycopg.Connection) -> bool:
    """Whether pgperfmon is installed in the connection's database: its perfmon.meta,
    created first by the first migration, exists. Read from the catalog, which any login
    may read (to_regclass() needs USAGE on the schema)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'perfmon' AND c.relname = 'meta')").fetchone()
    return bool(row and row[0])


def not_installed(conn: psycopg.Connection) -> str:
    """The message for a command run against a database without pgperfmon."""
    return (f"pgperfmon is not installed in database {conn.info.dbname}: "
            "run pgperfmon install --dsn DSN first")
