"""Install, upgrade and uninstall pgperfmon in a database.

Install is idempotent and keeps data: table migrations (``sql/migrations``) run
once each, in order, each in its own transaction, and are recorded; views and
functions (``sql/functions``, ``sql/views``) are ``CREATE OR REPLACE`` sources
re-applied every time; the ``plpython/`` modules are stored in the database so
the server needs no file of ours; the validated configuration is stored; the
pg_cron jobs are made to match ``perfmon.job_plan``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from pgperfmon import __version__, db, resources
from pgperfmon.config import Config, flatten
from pgperfmon.config import load as load_config

ROLES = ("perfmon_admin", "perfmon_agent", "perfmon_reader")
# An install that deadlocks with a running job (see install()) starts again, at most so often.
INSTALL_ATTEMPTS = 3
OPTIONAL_EXTENSIONS = ("plpython3u", "hypopg")
INSTALL_LOCK = 0x70676D6F6E  # "pgmon": serialises concurrent installs of one database
_REQUIRES = re.compile(r"^--\s*requires:\s*([\w, ]+)$", re.M)


class DeployError(Exception):
    """Install or uninstall could not proceed; the text says why and what to do."""


@dataclass
class Report:
    """What an install or uninstall did, one line per change."""

    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def change(self, text: str) -> None:
        self.changes.append(text)

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class SqlObject:
    path: Path
    text: str

    @property
    def requires(self) -> set[str]:
        found = _REQUIRES.search(self.text)
        return {r.strip() for r in found.group(1).split(",")} if found else set()


def migrations() -> list[Migration]:
    found = []
    for file in sorted(resources.path("sql", "migrations").glob("*.sql")):
        number, _, name = file.stem.partition("_")
        if not number.isdigit():
            raise DeployError(f"migration file {file.name} must be named NNN_name.sql")
        found.append(Migration(int(number), name, file.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DeployError(f"two migrations share a number: {versions}")
    return found


def sql_objects() -> list[SqlObject]:
    """Function files first (bodies are not checked at creation), then views."""
    objects = []
    for folder in ("functions", "views"):
        for file in sorted(resources.path("sql", folder).glob("*.sql")):
            objects.append(SqlObject(file, file.read_text(encoding="utf-8")))
    return objects


def python_modules() -> dict[str, tuple[bool, str]]:
    """Dotted module name -> (is_package, source) for everything under plpython/."""
    root = resources.path("plpython")
    modules = {}
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root).with_suffix("")
        is_package = rel.name == "__init__"
        parts = rel.parts[:-1] if is_package else rel.parts
        modules[".".join(parts)] = (is_package, file.read_text(encoding="utf-8"))
    return modules


def cron_job_prefix(dbname: str) -> str:
    """The start of the names of a database's jobs. Not enough to find them: those of a
    database named "shop.eu" start with the prefix of "shop" too, so every query also
    asks for the job's database."""
    return f"pgperfmon.{dbname}."


# --------------------------------------------------------------------------- install

def install(dsn: str, config: Config | None = None, skip_extensions: tuple[str, ...] = ()) -> Report:
    """Install or upgrade pgperfmon in the database of ``dsn``; safe to run again.

    config None (no file given): keep the configuration stored by the last install,
    with the keys this release adds at their defaults (the defaults themselves on a
    first install), and the environment's overrides applied."""
    with db.connection(dsn) as conn:
        _check_server(conn)
        for attempt in range(1, INSTALL_ATTEMPTS + 1):
            report = Report()
            conn.execute("SELECT pg_advisory_lock(%s)", (INSTALL_LOCK,))
            conn.commit()
            try:
                _install_schema(conn, config, skip_extensions, report)
                conn.commit()
                break
            except psycopg.errors.DeadlockDetected:
                # Views are re-created (ACCESS EXCLUSIVE) and partitions made in one
                # transaction, beside the minute's jobs reading and writing them: a
                # deadlock rolls it all back, and the install starts again.
                conn.rollback()
                if attempt == INSTALL_ATTEMPTS:
                    raise
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (INSTALL_LOCK,))
                conn.commit()
        if attempt > 1:
            report.note(f"started again {attempt - 1} time(s) after a deadlock with a running job")
        _sync_cron_jobs(conn, dsn, report)
    return report


def _install_schema(conn: psycopg.Connection, config: Config | None, skip_extensions: tuple[str, ...],
                    report: Report) -> None:
    """Everything of an install but the pg_cron jobs, in the caller's transaction."""
    available = _create_extensions(conn, report, skip_extensions)
    _create_roles(conn, report)
    _apply_migrations(conn, report)
    _apply_objects(conn, available, report)
    # perfmon_admin's tables are written as perfmon_admin: a trigger on them runs as the
    # writer, and must never run as the installing superuser.
    with _as_admin(conn):
        _redact_stored_texts(conn, report)
    _deploy_python(conn, available, report)
    with _as_admin(conn):
        if config is None:
            config = load_config(stored=dict(conn.execute("SELECT key, value FROM perfmon.config")))
        _store_config(conn, config, report)
        _check_stored_config(conn)
    _grant_read_all_data(conn, config.optimization.advisor_reads_all_tables, report)
    _create_partitions(conn, report)
    with _as_admin(conn):
        _record_version(conn, report)
    _apply_privileges(conn)


@contextmanager
def _as_admin(conn: psycopg.Connection) -> Iterator[None]:
    """The block runs as perfmon_admin. SET LOCAL: a block that fails leaves it to the
    rollback of its transaction (or savepoint) to end the role, as it ends the block's work."""
    conn.execute("SET LOCAL ROLE perfmon_admin")
    yield
    conn.execute("RESET ROLE")


def _check_server(conn: psycopg.Connection) -> None:
    version = conn.info.server_version
    if version < 150000:
        raise DeployError(
            f"PostgreSQL {version // 10000} is too old: pgperfmon needs PostgreSQL 15 or newer"
        )
    is_super = conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not is_super or not is_super[0]:
        raise DeployError(
            f"pgperfmon install must run as a superuser (connected as {conn.info.user}): it "
            "creates extensions, roles and PL/Python functions"
        )
    conn.commit()


def _create_extensions(conn: psycopg.Connection, report: Report,
                       skip: tuple[str, ...] = ()) -> set[str]:
    """Create what is needed and what is available; return the extensions present.

    skip: optional extensions to treat as unavailable (tests of the degraded modes).
    """
    rows = conn.execute(
        "SELECT name, installed_version IS NOT NULL FROM pg_available_extensions "
        "WHERE name = ANY(%s)",
        (["pg_stat_statements", *(e for e in OPTIONAL_EXTENSIONS if e not in skip)],),
    ).fetchall()
    available = dict(rows)
    if "pg_stat_statements" not in available:
        raise DeployError(
            "the pg_stat_statements extension is not available on this server: install "
            "PostgreSQL's contrib modules (on Debian: apt-get install postgresql-contrib)"
        )
    present = set()
    for name, installed in available.items():
        if not installed:
            # pg_stat_statements and hypopg go in public, where pgperfmon's functions
            # look for them; a language has its own place.
            schema = sql.SQL("") if name == "plpython3u" else sql.SQL(" WITH SCHEMA public")
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}{}").format(
                sql.Identifier(name), schema))
            report.change(f"created extension {name}")
        present.add(name)
    for name, schema in conn.execute(
        "SELECT extname, extnamespace::regnamespace::text FROM pg_extension "
        "WHERE extname = ANY(%s) AND extnamespace <> 'public'::regnamespace",
        (["pg_stat_statements", "hypopg"],),
    ):
        raise DeployError(
            f"extension {name} is installed in schema {schema}; pgperfmon expects it in public "
            f"(ALTER EXTENSION {name} SET SCHEMA public, where that is safe for your other users)"
        )
    for name in OPTIONAL_EXTENSIONS:
        if name not in available:
            report.note(f"extension {name} is not available on the server; see pgperfmon status")
    return present


def _create_roles(conn: psycopg.Connection, report: Report) -> None:
    existing = {r[0] for r in conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)
    )}
    for role in ROLES:
        if role in existing:
            continue
        # perfmon_admin needs LOGIN only because pg_cron's background workers run the
        # jobs as it; it gets no password, so nobody logs in as it over the network.
        options = "LOGIN" if role == "perfmon_admin" else "NOLOGIN"
        conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
        report.change(f"created role {role}")
    is_member = conn.execute(
        "SELECT pg_has_role('perfmon_admin', 'pg_monitor', 'MEMBER')"
    ).fetchone()
    if not is_member or not is_member[0]:
        conn.execute("GRANT pg_monitor TO perfmon_admin")
        report.change("granted pg_monitor to perfmon_admin")
    schema = conn.execute(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'perfmon'"
    ).fetchone()
    if schema is None:
        conn.execute("CREATE SCHEMA perfmon AUTHORIZATION perfmon_admin")
        report.change("created schema perfmon")
    elif schema[0] != "perfmon_admin":
        _reclaim_ownership(conn, report)
    conn.execute("""
        CREATE TABLE IF NOT EXISTS perfmon.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )""")
    conn.execute("ALTER TABLE perfmon.schema_migrations OWNER TO perfmon_admin")
    conn.commit()


def _reclaim_ownership(conn: psycopg.Connection, report: Report) -> None:
    """After `uninstall --keep-data` the kept tables belong to whoever uninstalled."""
    conn.execute("ALTER SCHEMA perfmon OWNER TO perfmon_admin")
    for (name,) in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c "
        "WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r', 'p') "
        "AND c.relname <> 'python_modules' AND NOT c.relispartition"
    ).fetchall():
        # The name is the catalog's own regclass output: already quoted.
        conn.execute(f"ALTER TABLE {name} OWNER TO perfmon_admin")
    report.change("gave schema perfmon and its tables back to perfmon_admin")


def _apply_migrations(conn: psycopg.Connection, report: Report) -> None:
    applied = dict(conn.execute("SELECT version, checksum FROM perfmon.schema_migrations"))
    for migration in migrations():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                report.note(
                    f"migration {migration.version:03d}_{migration.name} changed since it was "
                    "applied; migrations are forward-only, so the change is not applied"
                )
            continue
        try:
            with _as_admin(conn):
                conn.execute(migration.text)
                # Recorded as perfmon_admin too: the table is perfmon_admin's, and a trigger it
                # hung on it would run as whoever writes the row (here a superuser).
                conn.execute(
                    "INSERT INTO perfmon.schema_migrations (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise DeployError(
                f"migration {migration.version:03d}_{migration.name} failed and was rolled "
                f"back: {exc}"
            ) from None
        report.change(f"applied migration {migration.version:03d}_{migration.name}")


def _definitions(conn: psycopg.Connection) -> dict[str, str]:
    """Current definitions of perfmon's functions and views, to report what changed."""
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
          FROM pg_proc AS p WHERE p.pronamespace = 'perfmon'::regnamespace AND p.prokind <> 'a'
        UNION ALL
        SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
          FROM pg_class AS c WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind = 'v'
    """).fetchall()
    return dict(rows)


def _apply_objects(conn: psycopg.Connection, available: set[str], report: Report) -> None:
    """Re-apply every function and view, in dependency order found by trying."""
    before = _definitions(conn)
    # Everything (re)created below is written by this transaction or its
    # subtransactions: the age of its xmin is at most that of this xid.
    start_xid = conn.execute(
        "SELECT (pg_current_xact_id()::text::numeric % 4294967296)::text"
    ).fetchone()[0]
    pending = [o for o in sql_objects() if o.requires <= available]
    for skipped in (o for o in sql_objects() if not o.requires <= available):
        report.note(f"skipped {skipped.path.name}: needs {', '.join(sorted(skipped.requires))}")
    conn.execute("SET LOCAL check_function_bodies = off")
    while pending:
        failed: list[tuple[SqlObject, psycopg.Error]] = []
        for obj in pending:
            try:
                # PL/Python is an untrusted language: only a superuser may create it.
                with conn.transaction(), (
                        nullcontext() if "plpython3u" in obj.requires else _as_admin(conn)):
                    _apply_object(conn, obj)
            # UndefinedColumn: on an upgrade, a view can refer to a column that the new
            # version of another view, applied later in this loop, adds.
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction,
                    psycopg.errors.UndefinedObject, psycopg.errors.UndefinedColumn) as exc:
                failed.append((obj, exc))
        if len(failed) == len(pending):
            obj, exc = failed[0]
            raise DeployError(f"{obj.path.name} cannot be applied: {exc}")
        pending = [obj for obj, _exc in failed]
    _drop_stale(conn, start_xid, report)
    after = _definitions(conn)
    for name in sorted(after):
        if name not in before:
            report.change(f"created {name}")
        elif before[name] != after[name]:
            report.change(f"replaced {name}")


def _redact_stored_texts(conn: psycopg.Connection, report: Report) -> None:
    """Query texts stored before a release whose perfmon.redact_secrets() masks more
    spellings of a password: masked now as the new ones are (perfmon_reader reads them)."""
    masked = conn.execute(
        """WITH s AS (
               UPDATE perfmon.statements SET query = perfmon.redact_secrets(query)
                WHERE query ~* '(password|://)' AND query <> perfmon.redact_secrets(query)
               RETURNING 1),
           r AS (
               UPDATE perfmon.recovery_steps
                  SET target = jsonb_set(target, '{query}',
                                         to_jsonb(perfmon.redact_secrets(target ->> 'query')))
                WHERE target ->> 'query' ~* '(password|://)'
                  AND target ->> 'query' <> perfmon.redact_secrets(target ->> 'query')
               RETURNING 1)
           SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM r)""").fetchone()[0]
    if masked:
        report.change(f"masked passwords in {masked} stored query texts")


def _drop_stale(conn: psycopg.Connection, start_xid: str, report: Report) -> None:
    """Drop functions and views of an older release that no source file defines any more."""
    stale_views = conn.execute(
        """SELECT c.oid::regclass::text FROM pg_class c
             JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
            WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind = 'v'
              AND age(r.xmin) > age(%s::xid)""", (start_xid,)).fetchall()
    stale_routines = conn.execute(
        """SELECT p.oid::regprocedure::text, p.prokind FROM pg_proc p
            WHERE p.pronamespace = 'perfmon'::regnamespace AND age(p.xmin) > age(%s::xid)
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
        (start_xid,)).fetchall()
    # Names are the catalog's own regclass/regprocedure output: already quoted.
    for (view,) in stale_views:
        conn.execute(f"DROP VIEW {view}")
        report.change(f"dropped {view} (no longer defined)")
    for routine, kind in stale_routines:
        conn.execute(f"DROP {'PROCEDURE' if kind == 'p' else 'FUNCTION'} {routine}")
        report.change(f"dropped {routine} (no longer defined)")


def _apply_object(conn: psycopg.Connection, obj: SqlObject) -> None:
    try:
        with conn.transaction():
            conn.execute(obj.text)
    except (psycopg.errors.InvalidTableDefinition, psycopg.errors.InvalidFunctionDefinition):
        # A view whose columns changed, or a function whose result type changed (a RETURNS
        # TABLE with a new column), cannot be replaced in place: drop it and create it.
        # No CASCADE: a user's view built on ours makes this fail loudly instead.
        old = _replaced_object(conn, obj)
        if old is None:
            raise
        conn.execute(f"DROP {old}")
        conn.execute(obj.text)


def _replaced_object(conn: psycopg.Connection, obj: SqlObject) -> str | None:
    """'VIEW name' or 'FUNCTION signature' of the object that obj replaces, quoted by the
    catalog; None unless exactly one exists. perfmon overloads no function name, so the
    name alone finds the old function."""
    found = re.search(r"CREATE OR REPLACE (VIEW|FUNCTION)\s+perfmon\.(\w+)", obj.text)
    if not found:
        return None
    kind, name = found.groups()
    old = conn.execute(
        """SELECT c.oid::regclass::text FROM pg_class c
            WHERE %(kind)s = 'VIEW' AND c.relnamespace = 'perfmon'::regnamespace
              AND c.relname = %(name)s AND c.relkind = 'v'
           UNION ALL
           SELECT p.oid::regprocedure::text FROM pg_proc p
            WHERE %(kind)s = 'FUNCTION' AND p.pronamespace = 'perfmon'::regnamespace
              AND p.proname = %(name)s""", {"kind": kind, "name": name}).fetchall()
    return f"{kind} {old[0][0]}" if len(old) == 1 else None


def _deploy_python(conn: psycopg.Connection, available: set[str], report: Report) -> None:
    if "plpython3u" not in available:
        return
    _claim_code_store(conn, report)
    stored = dict(conn.execute("SELECT name, sha256 FROM perfmon.python_modules"))
    modules = python_modules()
    for name, (is_package, source) in modules.items():
        digest = hashlib.sha256(source.encode()).hexdigest()
        if stored.get(name) == digest:
            continue
        conn.execute(
            """INSERT INTO perfmon.python_modules (name, is_package, source, sha256)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (name) DO UPDATE
               SET is_package = EXCLUDED.is_package, source = EXCLUDED.source,
                   sha256 = EXCLUDED.sha256, deployed_at = now()""",
            (name, is_package, source, digest),
        )
        report.change(f"deployed Python module {name}")
    for gone in sorted(set(stored) - set(modules)):
        conn.execute("DELETE FROM perfmon.python_modules WHERE name = %s", (gone,))
        report.change(f"removed Python module {gone}")


def _claim_code_store(conn: psycopg.Connection, report: Report) -> None:
    """Make perfmon.python_modules the superuser's own plain table before writing to it.

    perfmon_admin owns schema perfmon, and a schema's owner may drop any table in it: it
    could have put a table of its own (with its code, its triggers) or a view in the code
    store's place. That one is dropped unread, as a superuser's reading a view or writing
    a table of perfmon_admin's would run perfmon_admin's functions as the superuser, and a
    new one is made (migration 001's first table, still perfmon_admin's, goes the same way).
    """
    found = conn.execute(
        """SELECT c.relkind::text, r.rolsuper, r.rolname::text FROM pg_class AS c
             JOIN pg_roles AS r ON r.oid = c.relowner
            WHERE c.oid = to_regclass('perfmon.python_modules')""").fetchone()
    if found is not None and found[:2] == ("r", True):
        return
    if found is not None:
        kind, _super, owner = found
        held = 0
        if kind == "r":  # a plain table: a superuser's SELECT runs none of its owner's code
            held = conn.execute("SELECT count(*) FROM perfmon.python_modules").fetchone()[0]
        drop = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE",
                "S": "SEQUENCE", "i": "INDEX", "I": "INDEX", "c": "TYPE"}[kind]
        conn.execute(f"DROP {drop} perfmon.python_modules")  # no CASCADE: a dependent fails loudly
        if kind != "r" or owner != "perfmon_admin" or held:
            report.change(f"replaced perfmon.python_modules, which {owner} owned: code written "
                          "there would run as the server's operating-system user")
    else:
        report.change("made the missing PL/Python code store perfmon.python_modules again")
    conn.execute(resources.sql("python_modules"))


def _store_config(conn: psycopg.Connection, config: Config, report: Report) -> None:
    stored = dict(conn.execute("SELECT key, value FROM perfmon.config"))
    wanted = flatten(config)
    if not stored:
        report.change(f"stored the configuration ({len(wanted)} keys)")
    for key, value in wanted.items():
        if key in stored and stored[key] == value:
            continue
        conn.execute(
            """INSERT INTO perfmon.config (key, value) VALUES (%s, %s)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            (key, Jsonb(value)),
        )
        if stored:
            report.change(f"set {key} = {json.dumps(value)}")
    for gone in sorted(set(stored) - set(wanted)):
        conn.execute("DELETE FROM perfmon.config WHERE key = %s", (gone,))
        report.change(f"removed obsolete configuration key {gone}")


def _check_stored_config(conn: psycopg.Connection) -> None:
    """What only the server can check of the configuration: the time zone is one of its
    pg_timezone_names (Python's zoneinfo also takes names such as right/UTC)."""
    try:
        conn.execute("SELECT perfmon.anomaly_timezone()")
    except psycopg.errors.RaiseException as exc:
        raise DeployError(f"{exc.diag.message_primary} on this server ({exc.diag.message_hint}); "
                          "nothing was changed") from None


def _create_partitions(conn: psycopg.Connection, report: Report) -> None:
    """History partitions for today and the days ahead, made now rather than by the
    first sample, whose DDL would have to wait for the locks of the other jobs that
    pg_cron starts on the same tick; and those past the retention dropped, as the
    maintenance job would."""
    with _as_admin(conn):
        done = dict(conn.execute(
            "SELECT action, count(*) FROM perfmon.maintain_partitions() GROUP BY action").fetchall())
    if done.get("created"):
        report.change(f"created {done['created']} history partitions")
    if done.get("dropped"):
        # A shorter collection.retention_days than before: say what went with it.
        report.change(f"dropped {done['dropped']} history partitions older than collection.retention_days")


def _grant_read_all_data(conn: psycopg.Connection, wanted: bool, report: Report) -> None:
    """optimization.advisor_reads_all_tables: the scheduled advisor may plan on any table."""
    row = conn.execute(
        "SELECT pg_has_role('perfmon_admin', 'pg_read_all_data', 'MEMBER')"
    ).fetchone()
    if bool(row and row[0]) == wanted:
        return
    conn.execute("GRANT pg_read_all_data TO perfmon_admin" if wanted
                 else "REVOKE pg_read_all_data FROM perfmon_admin")
    report.change(("granted pg_read_all_data to" if wanted else "revoked pg_read_all_data from")
                  + " perfmon_admin (optimization.advisor_reads_all_tables)")


def _record_version(conn: psycopg.Connection, report: Report) -> None:
    row = conn.execute("SELECT value FROM perfmon.meta WHERE key = 'version'").fetchone()
    if row and row[0] == __version__:
        return
    for key, value in (("version", __version__), ("installed_at", "now")):
        conn.execute(
            """INSERT INTO perfmon.meta (key, value)
               VALUES (%s, CASE WHEN %s = 'now' THEN now()::text ELSE %s END)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            (key, value, value),
        )
    report.change(
        f"upgraded pgperfmon {row[0]} -> {__version__}" if row else f"installed pgperfmon {__version__}"
    )


def _apply_privileges(conn: psycopg.Connection) -> None:
    conn.execute(resources.sql("privileges"))


# --------------------------------------------------------------------------- pg_cron

def cron_database(conn: psycopg.Connection) -> str | None:
    """The database pg_cron keeps its jobs in, or None when pg_cron is not preloaded."""
    cur = conn.cursor(row_factory=tuple_row)
    preload, cron_db = cur.execute(
        "SELECT current_setting('shared_preload_libraries'), "
        "current_setting('cron.database_name', true)"
    ).fetchone() or ("", None)
    if "pg_cron" not in [p.strip() for p in preload.split(",")]:
        return None
    return cron_db or "postgres"


def _cron_connection(conn: psycopg.Connection, dsn: str, cron_db: str) -> psycopg.Connection:
    if cron_db == conn.info.dbname:
        return conn
    return db.connect(db.with_dbname(dsn, cron_db), autocommit=True)


def _sync_cron_jobs(conn: psycopg.Connection, dsn: str, report: Report) -> None:
    cron_db = cron_database(conn)
    if cron_db is None:
        report.note(
            "pg_cron is not in shared_preload_libraries: no jobs were scheduled "
            "(add it and restart the server, then run pgperfmon install again)"
        )
        return
    dbname = conn.info.dbname
    plan = conn.execute("SELECT name, schedule, command FROM perfmon.job_plan").fetchall()
    for name, requires in conn.execute(
        "SELECT j.name, j.requires FROM perfmon.jobs AS j WHERE j.enabled "
        "AND NOT EXISTS (SELECT FROM perfmon.job_plan AS p WHERE p.name = j.name) ORDER BY j.name"
    ):
        report.note(f"job {name} is not scheduled: it needs {', '.join(requires)} "
                    "(it starts at the next pgperfmon install once that is there)")
    conn.commit()
    cron = _cron_connection(conn, dsn, cron_db)
    try:
        cron.autocommit = True
        cron.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        prefix = cron_job_prefix(dbname)
        jobids: dict[str, int] = {}
        current = {}
        for jobid, jobname, *rest in cron.execute(
            "SELECT jobid, jobname, schedule, command, database, username, active FROM cron.job "
            "WHERE starts_with(jobname, %s) AND database = %s",
            (prefix, dbname),
        ):
            jobids[jobname] = jobid
            current[jobname] = tuple(rest)
        wanted = {prefix + name: (schedule, command) for name, schedule, command in plan}
        for jobname, (schedule, command) in wanted.items():
            if current.get(jobname) == (schedule, command, dbname, "perfmon_admin", True):
                continue
            cron.execute(
                "SELECT cron.schedule_in_database(%s, %s, %s, %s, 'perfmon_admin', true)",
                (jobname, schedule, command, dbname),
            )
            report.change(f"scheduled {jobname} ({schedule}): {command}")
        for jobname in sorted(set(current) - set(wanted)):
            # By id: unschedule(name) only finds the calling user's jobs.
            cron.execute("SELECT cron.unschedule(%s::bigint)", (jobids[jobname],))
            report.change(f"unscheduled {jobname}")
    finally:
        if cron is not conn:
            cron.close()


def _unschedule_all(conn: psycopg.Connection, dsn: str, report: Report) -> None:
    cron_db = cron_database(conn)
    if cron_db is None:
        return
    conn.commit()
    cron = _cron_connection(conn, dsn, cron_db)
    try:
        cron.autocommit = True
        has_cron = cron.execute(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')"
        ).fetchone()
        if not has_cron or not has_cron[0]:
            return
        jobs = cron.execute(
            "SELECT jobid, jobname FROM cron.job WHERE starts_with(jobname, %s) AND database = %s",
            (cron_job_prefix(conn.info.dbname), conn.info.dbname),
        ).fetchall()
        for jobid, jobname in jobs:
            cron.execute("SELECT cron.unschedule(%s::bigint)", (jobid,))
            cron.execute("DELETE FROM cron.job_run_details WHERE jobid = %s", (jobid,))
            report.change(f"unscheduled {jobname}")
    finally:
        if cron is not conn:
            cron.close()


# --------------------------------------------------------------------------- uninstall

def uninstall(dsn: str, keep_data: bool = False) -> Report:
    """Remove jobs, schema (or all but its tables) and the roles, when no longer used."""
    report = Report()
    with db.connection(dsn) as conn:
        _check_server(conn)
        _unschedule_all(conn, dsn, report)
        installed = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'perfmon')"
        ).fetchone()
        if installed and installed[0]:
            if keep_data:
                _drop_all_but_tables(conn, report)
            else:
                conn.execute("DROP SCHEMA perfmon CASCADE")
                report.change("dropped schema perfmon")
        conn.commit()
        _drop_roles(conn, report)
    return report


def _drop_all_but_tables(conn: psycopg.Connection, report: Report) -> None:
    for kind, query in (
        ("view", "SELECT c.oid::regclass::text FROM pg_class c "
                 "WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('v', 'm')"),
        ("routine", "SELECT p.oid::regprocedure::text FROM pg_proc p "
                    "WHERE p.pronamespace = 'perfmon'::regnamespace"),
    ):
        for (name,) in conn.execute(query).fetchall():
            # Names come from the catalog's own regclass/regprocedure output: already quoted.
            statement = "DROP VIEW IF EXISTS {} CASCADE" if kind == "view" else (
                "DROP ROUTINE IF EXISTS {} CASCADE")
            conn.execute(statement.format(name))
            report.change(f"dropped {kind} {name}")
    # The data stays, owned by the uninstalling user so that the roles can go.
    conn.execute("REASSIGN OWNED BY perfmon_admin TO CURRENT_USER")
    report.note("kept the tables of schema perfmon with their data (--keep-data)")


def _drop_roles(conn: psycopg.Connection, report: Report) -> None:
    conn.autocommit = True
    present = [r for (r,) in conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),))]
    if present:
        # Privileges granted to our roles in this database (nothing they own is left here).
        conn.execute(sql.SQL("DROP OWNED BY {}").format(
            sql.SQL(", ").join(sql.Identifier(r) for r in present)))
    for role in reversed(ROLES):
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            continue
        members = conn.execute(
            """SELECT string_agg(m.rolname, ', ' ORDER BY m.rolname) FROM pg_auth_members AS a
                 JOIN pg_roles AS m ON m.oid = a.member
                WHERE a.roleid = %s::regrole AND m.rolname <> ALL (%s)""", (role, list(ROLES))).fetchone()[0]
        try:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            # Logins granted it (a BI tool's, an agent's) lose what it gave them: say which.
            report.change(f"dropped role {role}"
                          + (f" (granted to {members}, who lose it)" if members else ""))
        except psycopg.errors.DependentObjectsStillExist as exc:
            report.note(
                f"kept role {role}: it is still used elsewhere "
                f"({(exc.diag.message_detail or '').replace(chr(10), '; ')})"
            )
