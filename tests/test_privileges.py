"""Least privilege, checked over every object pgperfmon installs (not a hand-kept list)."""

from __future__ import annotations

import psycopg
import pytest


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
