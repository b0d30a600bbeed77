"""Least privilege, checked over every object pgperfmon installs (not a hand-kept list)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgperfmon import config, deploy


def test_public_has_no_privilege_on_any_perfmon_object(conn: psycopg.Connection) -> None:
    granted_to_public = conn.execute("""
        SELECT c.oid::regclass::text FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relnamespace = 'perfmon'::regnamespace AND a.grantee = 0
        UNION ALL
        SELECT p.oid::regprocedure::text FROM pg_proc p,
               aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
         WHERE p.pronamespace = 'perfmon'::regnamespace AND a.grantee = 0
        UNION ALL
        SELECT 'schema perfmon' FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE n.nspname = 'perfmon' AND a.grantee = 0
    """).fetchall()
    assert granted_to_public == []


def test_every_security_definer_function_has_a_safe_search_path(conn: psycopg.Connection) -> None:
    definers = conn.execute("""
        SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p
         WHERE p.pronamespace = 'perfmon'::regnamespace AND p.prosecdef""").fetchall()
    assert definers, "pgperfmon has SECURITY DEFINER functions; none found"
    for name, proconfig in definers:
        paths = [c for c in proconfig or [] if c.startswith("search_path=")]
        assert paths, f"{name} is SECURITY DEFINER without a fixed search_path"
        entries = [e.strip().strip('"') for e in paths[0].split("=", 1)[1].split(",")]
        assert entries[0] == "pg_catalog", f"{name}: search_path must start with pg_catalog"
        assert "$user" not in entries and "public" not in entries, (
            f"{name}: a SECURITY DEFINER search_path must not name a schema others can write")
        assert entries[-1] == "pg_temp", f"{name}: pg_temp must come last in {entries}"


def test_plpython_functions_are_for_perfmon_admin_only(conn: psycopg.Connection) -> None:
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text, r.rolname,
               has_function_privilege(r.rolname, p.oid, 'EXECUTE')
          FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
          CROSS JOIN (VALUES ('perfmon_admin'), ('perfmon_reader'), ('perfmon_agent')) r(rolname)
         WHERE p.pronamespace = 'perfmon'::regnamespace AND l.lanname = 'plpython3u'""").fetchall()
    assert rows
    for name, role, allowed in rows:
        assert allowed == (role == "perfmon_admin"), f"{role} EXECUTE on {name}: {allowed}"


def test_reader_reads_every_view_and_no_table(conn: psycopg.Connection) -> None:
    rows = conn.execute("""
        SELECT c.oid::regclass::text, c.relkind,
               has_table_privilege('perfmon_reader', c.oid, 'SELECT'),
               has_table_privilege('perfmon_reader', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
          FROM pg_class c
         WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')""")
    for name, kind, can_select, can_write in rows:
        assert not can_write, f"perfmon_reader may write {name}"
        assert can_select == (kind in ("v", "m")), f"perfmon_reader SELECT on {name}: {can_select}"


def test_agent_and_reader_cannot_change_anything(conn: psycopg.Connection) -> None:
    for role in ("perfmon_agent", "perfmon_reader"):
        writable = conn.execute("""
            SELECT c.oid::regclass::text FROM pg_class c
             WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r', 'p')
               AND has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')""",
            (role,)).fetchall()
        assert writable == [], f"{role} may write {writable}"
        assert conn.execute("SELECT has_schema_privilege(%s, 'perfmon', 'CREATE')",
                            (role,)).fetchone() == (False,)


def test_a_function_planted_in_public_does_not_hijack_definer_functions(
        conn: psycopg.Connection) -> None:
    """perfmon.setting() is SECURITY DEFINER; a same-named trap in public must not run."""
    conn.execute("CREATE TABLE public.hijacked (at timestamptz)")
    conn.execute("""CREATE FUNCTION public.quote_literal(text) RETURNS text LANGUAGE sql AS
                    $$ INSERT INTO public.hijacked VALUES (now()) RETURNING 'x' $$""")
    conn.execute("GRANT EXECUTE ON FUNCTION public.quote_literal(text) TO PUBLIC")
    conn.execute("GRANT INSERT ON public.hijacked TO PUBLIC")  # so that a hijack would succeed
    conn.execute("SET search_path = public, pg_catalog")
    conn.execute("SET ROLE perfmon_reader")
    try:
        assert conn.execute("SELECT perfmon.setting('collection.interval_seconds')::int"
                            ).fetchone() == (60,)
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("SELECT perfmon.setting('no.such.key')")  # its error path quotes
    finally:
        conn.execute("RESET ROLE")
        conn.execute("RESET search_path")
    assert conn.execute("SELECT count(*) FROM public.hijacked").fetchone() == (0,)


# --------------------------------------------------------------------------- issue 9, item 1
# The lists of what an agent and a reader may execute are the documented ones
# (docs/security.md); everything else is derived from the catalog, so an object
# added later is checked too.


@pytest.fixture(scope="module")
def catalog(module_db: tuple[str, str]) -> Iterator[psycopg.Connection]:
    """The checks below change nothing lasting: one installed database for all of them."""
    with psycopg.connect(module_db[1], autocommit=True) as connection:
        yield connection


DOCS = Path(__file__).resolve().parents[1] / "docs" / "security.md"
OTHER_ROLES_SQL = """
    SELECT coalesce(array_agg(r.rolname::text ORDER BY r.rolname), '{}') FROM pg_roles AS r
     WHERE NOT r.rolsuper AND has_function_privilege(r.oid, %s::regprocedure, 'EXECUTE')"""


def documented(heading: str) -> set[str]:
    """Function names listed under a heading of docs/security.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    names = set(re.findall(r"`perfmon\.(\w+)\(", section))
    assert names, f"docs/security.md lists nothing under {heading!r}"
    return names


def executable(conn: psycopg.Connection, role: str) -> dict[str, str]:
    """Every function of perfmon the role may execute: signature -> name."""
    return dict(conn.execute(
        """SELECT p.oid::regprocedure::text, p.proname::text FROM pg_proc AS p
            WHERE p.pronamespace = 'perfmon'::regnamespace
              AND has_function_privilege(%s, p.oid, 'EXECUTE')""", (role,)).fetchall())


def test_agent_executes_exactly_the_documented_feed_functions(catalog: psycopg.Connection) -> None:
    may = executable(catalog, "perfmon_agent")
    assert set(may.values()) == documented("What perfmon_agent may execute")
    # Every one of them is the only way in: it runs as perfmon_admin with a fixed path.
    for signature in may:
        definer, config = catalog.execute(
            "SELECT prosecdef, proconfig FROM pg_proc WHERE oid = %s::regprocedure", (signature,)).fetchone()
        assert definer and "search_path=pg_catalog, pg_temp" in (config or []), signature


def test_agent_touches_no_table_view_sequence_or_column(catalog: psycopg.Connection) -> None:
    rights = catalog.execute(
        """SELECT c.oid::regclass::text, p.privilege
             FROM pg_class AS c
            CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                                    'TRIGGER']) AS p(privilege)
            WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
              AND has_table_privilege('perfmon_agent', c.oid, p.privilege)
           UNION ALL
           SELECT c.oid::regclass::text, p.privilege
             FROM pg_class AS c CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p(privilege)
            WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind = 'S'
              AND has_sequence_privilege('perfmon_agent', c.oid, p.privilege)
           UNION ALL
           SELECT a.attrelid::regclass::text || '.' || a.attname, 'column'
             FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid, aclexplode(a.attacl) AS x
            WHERE c.relnamespace = 'perfmon'::regnamespace
              AND x.grantee IN ('perfmon_agent'::regrole, 'perfmon_reader'::regrole)""").fetchall()
    assert rights == []
    assert catalog.execute("SELECT has_schema_privilege('perfmon_agent', 'perfmon', 'USAGE'), "
                           "has_schema_privilege('perfmon_agent', 'perfmon', 'CREATE')"
                           ).fetchone() == (True, False)


def test_each_feed_function_writes_only_the_metric_store_and_the_agent_registry(
        catalog: psycopg.Connection) -> None:
    """Called as perfmon_agent, the documented functions write these tables and no other."""
    feed_tables = {"metrics", "metric_series", "metric_samples", "ingest_batches", "agents",
                   "agent_heartbeats"}
    catalog.execute("SET ROLE perfmon_agent")
    try:
        with catalog.transaction(force_rollback=True):
            catalog.execute("SELECT perfmon.agent_heartbeat('privileges-test', 'ok', 1.0, 0, "
                            "'{\"a\": 1}', 30)")
            catalog.execute("SELECT perfmon.ingest_metric('business.privileges_test', 1.0, now(), "
                            "'{\"k\": \"v\"}', 'count')")
            catalog.execute("SELECT perfmon.ingest_open()")
            sid = catalog.execute("SELECT series_id FROM perfmon.ingest_series("
                                  "ARRAY['business.privileges_test'], ARRAY['{}'::jsonb], ARRAY['count'])"
                                  ).fetchone()[0]
            catalog.execute("INSERT INTO pg_temp.perfmon_ingest VALUES (1, %s, now(), 2.0)", (sid,))
            assert catalog.execute("SELECT perfmon.ingest_batch(gen_random_uuid(), 'privileges-test')"
                                   ).fetchone()[0]["stored"] == 1
            written = catalog.execute(
                """SELECT coalesce(p.relname, c.relname)::text FROM pg_stat_xact_user_tables AS s
                     JOIN pg_class AS c ON c.oid = s.relid
                     LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid
                     LEFT JOIN pg_class AS p ON p.oid = i.inhparent
                    WHERE s.schemaname = 'perfmon' AND s.n_tup_ins + s.n_tup_upd + s.n_tup_del > 0"""
            ).fetchall()
    finally:
        catalog.execute("RESET ROLE")
    written_tables = {t for (t,) in written}
    assert written_tables and written_tables <= feed_tables, written_tables - feed_tables


def test_reader_executes_only_the_documented_read_only_functions(catalog: psycopg.Connection) -> None:
    may = executable(catalog, "perfmon_reader")
    assert set(may.values()) <= documented("What perfmon_reader may execute"), (
        "perfmon_reader may execute functions docs/security.md does not list")
    # Each runs, as the reader, in a READ ONLY transaction: it writes nothing and needs no
    # privilege the reader lacks. Arguments: the function's defaults, else a sample per type.
    samples = {"text": ["collection.interval_seconds", "weekly"], "integer": ["60"],
               "timestamp with time zone": ["-infinity", "now"], "interval": ["1 hour"], "jsonb": ["{}"],
               "boolean": ["false"], "double precision": ["1"], "bigint": ["1"]}
    for signature in sorted(may):
        types = catalog.execute(
            """SELECT coalesce(array_agg(format_type(t, NULL) ORDER BY o), '{}')
                 FROM pg_proc AS p, unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)
                WHERE p.oid = %s::regprocedure AND o <= p.pronargs - p.pronargdefaults""",
            (signature,)).fetchone()[0]
        name = signature.split("(")[0]
        attempts = [[samples[t][min(i, len(samples[t]) - 1)] for t in types] for i in range(2)]
        outcomes = []
        for args in attempts:
            placeholders = ", ".join(f"%s::{t}" for t in types)
            catalog.execute("SET ROLE perfmon_reader")
            try:
                with catalog.transaction(force_rollback=True):
                    catalog.execute("SET TRANSACTION READ ONLY")
                    catalog.execute(f"SELECT * FROM {name}({placeholders})", args).fetchall()
                outcomes.append("ok")
            except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege):
                raise
            except psycopg.Error as exc:  # refused these sample arguments
                outcomes.append(f"{type(exc).__name__}: {exc}")
            finally:
                catalog.execute("RESET ROLE")
        assert "ok" in outcomes, f"{signature} never ran as perfmon_reader: {outcomes}"


def test_reader_reads_every_view_in_a_read_only_transaction(catalog: psycopg.Connection) -> None:
    """Every view, including those added later, answers the reader and writes nothing."""
    views = [v for (v,) in catalog.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
        "AND c.relkind IN ('v', 'm') ORDER BY 1")]
    assert "perfmon.slow_queries" in views
    failed = {}
    catalog.execute("SET ROLE perfmon_reader")
    try:
        for view in views:
            try:
                with catalog.transaction(force_rollback=True):
                    catalog.execute("SET TRANSACTION READ ONLY")
                    catalog.execute("SET LOCAL statement_timeout = '30s'")
                    catalog.execute(f"SELECT * FROM {view} LIMIT 5").fetchall()
            except psycopg.Error as exc:
                failed[view] = f"{type(exc).__name__}: {str(exc).strip()}"
    finally:
        catalog.execute("RESET ROLE")
    assert failed == {}


def recovery_functions(conn: psycopg.Connection) -> dict[str, str]:
    """The recovery playbook's functions, what signals backends, and what runs recovery:
    signature -> name."""
    return dict(conn.execute(
        r"""SELECT p.oid::regprocedure::text, p.proname::text FROM pg_proc AS p
            WHERE p.pronamespace = 'perfmon'::regnamespace
              AND (p.proname ~ '^(recover|recovery_|watch$)'
                   OR p.prosrc ~ 'pg_(terminate|cancel)_backend'
                   OR p.prosrc ~ 'perfmon\.(recover|watch)\s*\('
                   OR format('perfmon.%s', p.proname) IN (SELECT plan_function
                                                           FROM perfmon.recovery_playbook))
        """).fetchall())


def test_recovery_functions_are_executable_by_perfmon_admin_only(catalog: psycopg.Connection) -> None:
    functions = recovery_functions(catalog)
    assert {"recover", "watch", "recovery_plan_lock_blockers", "analyze"} <= set(functions.values())
    for signature in functions:
        assert catalog.execute(OTHER_ROLES_SQL, (signature,)).fetchone()[0] == ["perfmon_admin"], signature


def test_every_other_function_is_executable_by_perfmon_admin_only(catalog: psycopg.Connection) -> None:
    shared = documented("What perfmon_agent may execute") | documented("What perfmon_reader may execute")
    for signature, name in executable(catalog, "perfmon_admin").items():
        if name in shared:
            continue
        assert catalog.execute(OTHER_ROLES_SQL, (signature,)).fetchone()[0] == ["perfmon_admin"], signature


def test_definer_functions_belong_to_perfmon_admin_not_a_superuser(catalog: psycopg.Connection) -> None:
    owners = catalog.execute(
        """SELECT p.oid::regprocedure::text, r.rolname::text, r.rolsuper FROM pg_proc AS p
             JOIN pg_roles AS r ON r.oid = p.proowner
            WHERE p.pronamespace = 'perfmon'::regnamespace AND p.prosecdef""").fetchall()
    assert owners
    assert [o for o in owners if o[1:] != ("perfmon_admin", False)] == []


def test_roles_hold_no_more_than_they_need(catalog: psycopg.Connection) -> None:
    roles = {r[0]: r[1:] for r in catalog.execute(
        """SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
                  r.rolbypassrls, r.rolcanlogin, a.rolpassword IS NOT NULL,
                  ARRAY(SELECT m.roleid::regrole::text FROM pg_auth_members AS m
                         WHERE m.member = r.oid ORDER BY 1)
             FROM pg_roles AS r JOIN pg_authid AS a ON a.oid = r.oid
            WHERE r.rolname IN ('perfmon_admin', 'perfmon_agent', 'perfmon_reader')""")}
    no_attributes = (False, False, False, False, False)
    assert roles["perfmon_agent"] == (*no_attributes, False, False, [])
    assert roles["perfmon_reader"] == (*no_attributes, False, False, []), (
        f"perfmon_reader is a member of {roles['perfmon_reader'][7]}: it then reads more than "
        "pgperfmon's views (pg_read_all_stats: every session's query text, and the texts of "
        "pg_stat_statements, passwords of ALTER ROLE ... PASSWORD included)")
    # perfmon_admin logs in only for pg_cron's background workers: no password.
    assert roles["perfmon_admin"][:7] == (*no_attributes, True, False)
    assert set(roles["perfmon_admin"][7]) <= {"pg_monitor", "pg_signal_backend", "pg_read_all_data"}


def test_only_the_superuser_may_write_the_python_code_store(catalog: psycopg.Connection) -> None:
    """Code in perfmon.python_modules runs as the server's OS user: perfmon_admin only reads it."""
    owner = catalog.execute("SELECT r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                            "WHERE c.oid = 'perfmon.python_modules'::regclass").fetchone()
    assert owner == (True,)
    for role in ("perfmon_admin", "perfmon_agent", "perfmon_reader"):
        assert catalog.execute("SELECT has_table_privilege(%s, 'perfmon.python_modules', "
                               "'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES')", (role,)
                               ).fetchone() == (False,), role
    catalog.execute("SET ROLE perfmon_admin")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            catalog.execute("UPDATE perfmon.python_modules SET source = 'import os' WHERE false")
    finally:
        catalog.execute("RESET ROLE")


def test_perfmon_admin_cannot_replace_the_python_code_store_with_its_own(paused_cron: str) -> None:
    """perfmon_admin owns schema perfmon, so it may drop the superuser's code store (a schema's
    owner may drop any table in it) and make its own: that code must never run, not even
    after the next install, which takes the name back (the digests it compares are forged)."""
    planted = ("import os\n"
               "raise Exception('perfmon_admin code ran as the OS user: PG_VERSION '"
               " + open('PG_VERSION').read().strip())\n")
    with psycopg.connect(paused_cron, autocommit=True) as conn:
        conn.execute("SET ROLE perfmon_admin")
        real = conn.execute("SELECT name, is_package, sha256 FROM perfmon.python_modules").fetchall()
        conn.execute("DROP TABLE perfmon.python_modules")
        conn.execute("CREATE TABLE perfmon.python_modules (name text PRIMARY KEY, is_package boolean, "
                     "source text, sha256 text, deployed_at timestamptz DEFAULT now())")
        for name, is_package, digest in real:  # the real digests: an install sees nothing to update
            conn.execute("INSERT INTO perfmon.python_modules (name, is_package, source, sha256) "
                         "VALUES (%s, %s, %s, %s)", (name, is_package, planted, digest))

    def run_as_admin() -> None:
        with psycopg.connect(paused_cron, autocommit=True) as fresh:  # a session not bootstrapped
            fresh.execute("SET ROLE perfmon_admin")
            fresh.execute("SELECT perfmon.python_environment()")

    with pytest.raises(psycopg.Error) as refused:
        run_as_admin()
    assert "perfmon_admin code ran" not in str(refused.value)
    assert "not the superuser's code store" in str(refused.value)

    report = deploy.install(paused_cron, config.load(None, env={}))
    assert any("replaced perfmon.python_modules, which perfmon_admin owned" in c for c in report.changes)
    run_as_admin()  # the code store is the superuser's again, with pgperfmon's code
    with psycopg.connect(paused_cron) as conn:
        assert conn.execute("SELECT count(*) FROM perfmon.python_modules WHERE source = %s",
                            (planted,)).fetchone() == (0,)
        assert conn.execute("SELECT r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                            "WHERE c.oid = 'perfmon.python_modules'::regclass").fetchone() == (True,)


def test_an_upgrade_fires_no_trigger_of_perfmon_admin_as_the_superuser(
        paused_cron: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """perfmon_admin owns perfmon's tables and may hang triggers on them; a trigger runs as
    whoever writes the row. An upgrade recording its new migration as the superuser ran
    perfmon_admin's trigger as the superuser: here one that makes perfmon_admin a superuser."""
    with psycopg.connect(paused_cron, autocommit=True) as conn:
        conn.execute("SET ROLE perfmon_admin")
        conn.execute("""CREATE FUNCTION perfmon.planted() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN
                            IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                                ALTER ROLE perfmon_admin SUPERUSER;
                            END IF;
                            RETURN NEW;
                        END $$""")
        for table in ("schema_migrations", "config", "meta", "statements"):
            conn.execute(sql.SQL("CREATE TRIGGER planted BEFORE INSERT OR UPDATE ON perfmon.{} "
                                 "FOR EACH ROW EXECUTE FUNCTION perfmon.planted()").format(
                                     sql.Identifier(table)))
    # A release that brings a new migration (the one after the newest).
    shipped = deploy.migrations()
    monkeypatch.setattr(deploy, "migrations", lambda: [
        *shipped, deploy.Migration(shipped[-1].version + 1, "next_release", "SELECT 1")])
    try:
        # The install itself fails (its clean-up finds perfmon.planted() defined by no file
        # and kept by the triggers); what it committed before that is what counts.
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            deploy.install(paused_cron, config.load(None, env={"PERFORMANCE_COLLECTION_INTERVAL": "30"}))
    finally:
        with psycopg.connect(paused_cron, autocommit=True) as conn:
            superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'perfmon_admin'"
                                     ).fetchone()
            conn.execute("ALTER ROLE perfmon_admin NOSUPERUSER")  # the cluster is shared
    assert superuser == (False,)


def test_temporary_tables_named_like_perfmon_tables_do_not_capture_the_feed(
        catalog: psycopg.Connection) -> None:
    """pg_temp is last on the definer functions' path, but an agent may create temporary tables:
    one named like each perfmon table must not receive (or hide) what the feed writes."""
    tables = [t for (t,) in catalog.execute(
        "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
        "AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'perfmon_ingest'")]
    with catalog.transaction(force_rollback=True):  # the traps go with the transaction
        catalog.execute("SET LOCAL ROLE perfmon_agent")
        for table in tables:
            catalog.execute(sql.SQL("CREATE TEMP TABLE {} (trap text)").format(sql.Identifier(table)))
        catalog.execute("SELECT perfmon.agent_heartbeat('trapped', 'ok')")
        catalog.execute("SELECT perfmon.ingest_metric('business.trapped', 3.0, now(), '{}', 'count')")
        for table in tables:
            assert catalog.execute(sql.SQL("SELECT count(*) FROM pg_temp.{}").format(
                sql.Identifier(table))).fetchone() == (0,), table
        catalog.execute("RESET ROLE")
        assert catalog.execute("SELECT heartbeats FROM perfmon.agents WHERE name = 'trapped'"
                               ).fetchone() == (1,)
        assert catalog.execute("SELECT value FROM perfmon.metric_values WHERE metric = 'business.trapped'"
                               ).fetchall() == [(3.0,)]
