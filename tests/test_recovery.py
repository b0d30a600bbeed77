"""Guarded automated recovery: each action on a prepared situation, audited, and refusing
what it must not touch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest
from alert_servers import set_config, wait_for
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from helpers import flush
from pgperfmon import alerting, cli

APP_ROLE = "recovery_test_app"  # not perfmon_*: test_install counts those roles as its own


@pytest.fixture()
def app_dsn(conn: psycopg.Connection, installed: str) -> str:
    """A DSN for an ordinary application role (recovery never touches superusers)."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
    if not exists:
        conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD 'app-pw'")
    conn.execute(f"GRANT ALL ON SCHEMA public TO {APP_ROLE}")
    return make_conninfo(installed, user=APP_ROLE, password="app-pw")


@pytest.fixture()
def enabled(conn: psycopg.Connection) -> psycopg.Connection:
    set_config(conn, optimization__auto_recovery__enabled=True, optimization__auto_recovery__dry_run=False)
    return conn


def alive(conn: psycopg.Connection, pid: int) -> bool:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 1


def steps(conn: psycopg.Connection, action: str) -> list[tuple]:
    return conn.execute(
        "SELECT decision, reason, verified, (target ->> 'pid')::int FROM perfmon.recovery_actions "
        "WHERE action = %s ORDER BY step_id", (action,)).fetchall()


@pytest.fixture()
def idle_session(app_dsn: str) -> Iterator[tuple[psycopg.Connection, int]]:
    # closing(), not the connection's own exit: a terminated session cannot roll back.
    with closing(psycopg.connect(app_dsn)) as session:
        pid = session.execute("SELECT pg_backend_pid()").fetchone()[0]  # now idle in transaction
        yield session, pid


def lock_chain(blocker_dsn: str, waiter_dsn: str, waiters: int) -> tuple[psycopg.Connection, int,
                                                                         list[threading.Thread], list]:
    """A session idle in a transaction holding a row lock that `waiters` sessions queue behind."""
    blocker = psycopg.connect(blocker_dsn)
    blocker.execute("UPDATE public.chain SET v = v + 1 WHERE id = 1")
    pid = blocker.execute("SELECT pg_backend_pid()").fetchone()[0]
    outcomes: list = []

    def wait_on_it() -> None:
        with psycopg.connect(waiter_dsn, autocommit=True) as w:
            try:
                w.execute("UPDATE public.chain SET v = v + 1 WHERE id = 1")
                outcomes.append("updated")
            except psycopg.Error as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=wait_on_it, daemon=True) for _ in range(waiters)]
    for t in threads:
        t.start()
    return blocker, pid, threads, outcomes


def prepare_chain(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.chain (id int PRIMARY KEY, v int)")
    conn.execute("INSERT INTO public.chain VALUES (1, 0)")
    conn.execute(f"GRANT ALL ON public.chain TO {APP_ROLE}")


def waiting(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]


def test_off_by_default_and_a_dry_run_changes_nothing(conn: psycopg.Connection, idle_session) -> None:
    _session, pid = idle_session
    conn.execute("SELECT pg_sleep(0.3)")
    assert conn.execute("SELECT perfmon.watch()").fetchone()[0] == {"enabled": False}
    set_config(conn, optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=["*"])
    plan = conn.execute("SELECT perfmon.recover('manual', dry_run => true)").fetchone()[0]
    mine = [s for s in plan["steps"] if s["target"].get("pid") == pid]
    assert [(s["action"], s["decision"]) for s in mine] == [("terminate_idle_in_transaction", "disabled")]
    # Enabled, with dry_run on in the configuration: planned and audited, not done.
    set_config(conn, optimization__auto_recovery__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True)
    conn.execute("SELECT perfmon.watch()")
    assert steps(conn, "terminate_idle_in_transaction")[-1][:1] == ("dry_run",)
    assert alive(conn, pid)
    assert conn.execute("SELECT dry_run FROM perfmon.recovery_runs ORDER BY run_id DESC LIMIT 1"
                        ).fetchone() == (True,)


@pytest.mark.parametrize("missing", ["enabled", "dry_run", "max_actions_per_hour"])
def test_recovery_without_its_switch_stays_off(conn: psycopg.Connection, idle_session, missing: str) -> None:
    """With optimization.auto_recovery.enabled or dry_run removed from perfmon.config (or
    null), every run failed on its NULL dry_run; without max_actions_per_hour nothing limited
    the actions. A missing switch is off, a missing limit allows nothing."""
    _session, pid = idle_session
    set_config(conn, optimization__auto_recovery__enabled=True, optimization__auto_recovery__dry_run=False,
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    conn.execute("DELETE FROM perfmon.config WHERE key = %s", (f"optimization.auto_recovery.{missing}",))
    conn.execute("SELECT pg_sleep(0.2)")
    result = conn.execute("SELECT perfmon.watch()").fetchone()[0]
    assert alive(conn, pid)
    if missing == "enabled":
        assert result == {"enabled": False}
    else:
        assert [s[:2] for s in steps(conn, "terminate_idle_in_transaction")] == [
            ("dry_run", "dry run: nothing was changed") if missing == "dry_run"
            else ("rate_limited", "max_actions_per_hour is not set: no action is allowed")]


def test_terminates_the_root_blocker_of_a_lock_chain(enabled: psycopg.Connection, app_dsn: str) -> None:
    conn = enabled
    prepare_chain(conn)
    set_config(conn, optimization__auto_recovery__terminate_lock_blockers__enabled=True,
               optimization__auto_recovery__terminate_lock_blockers__after_seconds=0.3,
               optimization__auto_recovery__terminate_lock_blockers__allow_roles=["recovery_test_*"])
    blocker, pid, threads, outcomes = lock_chain(app_dsn, app_dsn, 5)
    try:
        assert wait_for(lambda: waiting(conn) >= 5)
        conn.execute("SELECT pg_sleep(0.4)")
        result = conn.execute("SELECT perfmon.watch()").fetchone()[0]
        done = [s for s in result["steps"] if s["action"] == "terminate_lock_blockers"]
        assert [(s["decision"], s["target"]["pid"], s["target"]["waiters"], s["verified"]) for s in done] \
            == [("done", pid, 5, True)]
        for t in threads:
            t.join(timeout=10)
        assert outcomes == ["updated"] * 5
        assert not alive(conn, pid)
        row = conn.execute("SELECT trigger, verified, verify_detail, recovery_ms > 300, action_ms >= 0, "
                           "statement LIKE 'SELECT pg_terminate_backend(%%' FROM perfmon.recovery_actions "
                           "WHERE action = 'terminate_lock_blockers'").fetchone()
        assert row[:2] == ("watch", True) and row[3:] == (True, True, True)
        assert "none of the 5 waiting sessions still waits" in row[2]
    finally:
        blocker.close()


def test_refuses_superusers_and_roles_outside_the_allowlist(enabled: psycopg.Connection, installed: str,
                                                            app_dsn: str) -> None:
    conn = enabled
    prepare_chain(conn)
    set_config(conn, optimization__auto_recovery__terminate_lock_blockers__enabled=True,
               optimization__auto_recovery__terminate_lock_blockers__after_seconds=0.2,
               optimization__auto_recovery__terminate_lock_blockers__allow_roles=["*"])
    blocker, pid, threads, _outcomes = lock_chain(installed, app_dsn, 2)  # the blocker is a superuser
    try:
        assert wait_for(lambda: waiting(conn) >= 2)
        conn.execute("SELECT pg_sleep(0.3)")
        conn.execute("SELECT perfmon.watch()")
        assert steps(conn, "terminate_lock_blockers") == [
            ("refused", "role postgres is a superuser (include_superusers is off)", None, pid)]
        assert alive(conn, pid)
        conn.execute("SELECT perfmon.watch()")
        assert len(steps(conn, "terminate_lock_blockers")) == 1, "a refusal is recorded once, not every tick"
    finally:
        blocker.close()
        for t in threads:
            t.join(timeout=10)
    set_config(conn, optimization__auto_recovery__terminate_lock_blockers__allow_roles=["reporting_*"])
    blocker, pid, threads, _outcomes = lock_chain(app_dsn, app_dsn, 1)
    try:
        assert wait_for(lambda: waiting(conn) >= 1)
        conn.execute("SELECT pg_sleep(0.3)")
        conn.execute("SELECT perfmon.watch()")
        assert steps(conn, "terminate_lock_blockers")[-1] == (
            "refused", f"role {APP_ROLE} is not in allow_roles", None, pid)
        assert alive(conn, pid)
    finally:
        blocker.close()
        for t in threads:
            t.join(timeout=10)


def test_never_touches_pgperfmon_sessions(enabled: psycopg.Connection, app_dsn: str) -> None:
    conn = enabled
    set_config(conn, optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=["*"])
    with psycopg.connect(app_dsn, application_name="pgperfmon agent") as ours:
        pid = ours.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SELECT pg_sleep(0.2)")
        conn.execute("SELECT perfmon.watch()")
        assert steps(conn, "terminate_idle_in_transaction") == [
            ("refused", "a session of pgperfmon itself (include_pgperfmon is off)", None, pid)]
        assert alive(conn, pid)


def test_terminates_sessions_idle_in_transaction(enabled: psycopg.Connection, idle_session) -> None:
    conn = enabled
    _session, pid = idle_session
    set_config(conn, optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.2,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    conn.execute("SELECT perfmon.watch()")
    assert steps(conn, "terminate_idle_in_transaction") == [], "not idle long enough yet"
    conn.execute("SELECT pg_sleep(0.3)")
    # As pg_cron runs it: as perfmon_admin, who needs pg_signal_backend.
    conn.execute("SET ROLE perfmon_admin")
    conn.execute("SELECT perfmon.watch()")
    conn.execute("RESET ROLE")
    assert steps(conn, "terminate_idle_in_transaction") == [("done", None, True, pid)]
    assert not alive(conn, pid)


def test_cancels_long_queries(enabled: psycopg.Connection, app_dsn: str) -> None:
    conn = enabled
    set_config(conn, optimization__auto_recovery__cancel_long_queries__enabled=True,
               optimization__auto_recovery__cancel_long_queries__after_seconds=0.3,
               optimization__auto_recovery__cancel_long_queries__allow_roles=[APP_ROLE])
    outcome: list = []
    with psycopg.connect(app_dsn, autocommit=True) as runner:
        pid = runner.execute("SELECT pg_backend_pid()").fetchone()[0]

        def run() -> None:
            try:
                runner.execute("SELECT pg_sleep(30)")
                outcome.append("finished")
            except psycopg.errors.QueryCanceled:
                outcome.append("cancelled")

        thread = threading.Thread(target=run)
        thread.start()
        conn.execute("SELECT pg_sleep(0.5)")
        conn.execute("SELECT perfmon.analyze()")  # the in-database, per-interval path
        thread.join(timeout=10)
        assert outcome == ["cancelled"]
        assert steps(conn, "cancel_long_queries") == [("done", None, True, pid)]
        assert alive(conn, pid), "cancelled, not terminated"


def test_sheds_idle_connections_when_they_run_out(enabled: psycopg.Connection, app_dsn: str) -> None:
    conn = enabled
    sessions = [psycopg.connect(app_dsn, autocommit=True) for _ in range(3)]
    try:
        pids = [s.execute("SELECT pg_backend_pid()").fetchone()[0] for s in sessions]
        total = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                             ).fetchone()[0]
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])
        # The threshold sits one connection under the current count: shed down to it.
        usage_pct = 100.0 * (total - 1) / max_conn
        set_config(conn, optimization__auto_recovery__shed_idle_connections__enabled=True,
                   optimization__auto_recovery__shed_idle_connections__after_seconds=0.1,
                   optimization__auto_recovery__shed_idle_connections__usage_pct=usage_pct,
                   optimization__auto_recovery__shed_idle_connections__allow_roles=[APP_ROLE])
        conn.execute("SELECT pg_sleep(0.2)")
        conn.execute("SELECT perfmon.watch()")
        done = [s for s in steps(conn, "shed_idle_connections") if s[0] == "done"]
        assert len(done) == 2 and all(s[2] for s in done)
        assert {s[3] for s in done} <= set(pids)
        assert sum(alive(conn, p) for p in pids) == 1
    finally:
        for s in sessions:
            s.close()


def test_rate_limit(enabled: psycopg.Connection, app_dsn: str) -> None:
    conn = enabled
    set_config(conn, optimization__auto_recovery__max_actions_per_hour=1,
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=["*"])
    with closing(psycopg.connect(app_dsn)) as a, closing(psycopg.connect(app_dsn)) as b:
        pids = [s.execute("SELECT pg_backend_pid()").fetchone()[0] for s in (a, b)]
        conn.execute("SELECT pg_sleep(0.2)")
        conn.execute("SELECT perfmon.watch()")
        decisions = [s[0] for s in steps(conn, "terminate_idle_in_transaction")]
        assert decisions == ["done", "rate_limited"]
        assert sum(alive(conn, p) for p in pids) == 1


def test_vacuum_and_analyze_run_outside_a_transaction(enabled: psycopg.Connection, installed: str) -> None:
    conn = enabled
    conn.execute("CREATE TABLE public.churn (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = off)")
    conn.execute("CREATE TABLE public.other (id int) WITH (autovacuum_enabled = off)")
    conn.execute("INSERT INTO public.churn SELECT g, 'x' FROM generate_series(1, 5000) g")
    conn.execute("INSERT INTO public.other SELECT generate_series(1, 5000)")
    conn.execute("ANALYZE public.churn")
    conn.execute("DELETE FROM public.churn WHERE id <= 3000")
    conn.execute("DELETE FROM public.other WHERE id <= 3000")
    flush(conn)
    set_config(conn, optimization__auto_recovery__vacuum_tables__enabled=True,
               optimization__auto_recovery__vacuum_tables__allow_tables=["public.churn"],
               optimization__auto_recovery__analyze_stale_tables__enabled=True,
               optimization__auto_recovery__analyze_stale_tables__allow_tables=["public.*"])
    # Inside the database (pg_cron's path) table actions are not even planned.
    conn.execute("SELECT perfmon.analyze()")
    assert steps(conn, "vacuum_tables") == []
    result = alerting.recover_once(installed, "test", dry_run=None)
    by_table = {(s["action"], s["target"]["table"]): (s["decision"], s.get("verified"))
                for s in result["steps"]}
    assert by_table[("vacuum_tables", "churn")] == ("done", True)
    assert by_table[("analyze_stale_tables", "other")] == ("done", True)
    assert by_table[("vacuum_tables", "other")][0] == "refused"
    dead = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'").fetchone()[0]
    assert dead == 0
    row = conn.execute("SELECT statement, result, verify_detail FROM perfmon.recovery_actions "
                       "WHERE action = 'vacuum_tables' AND decision = 'done'").fetchone()
    assert row[0] == "VACUUM (ANALYZE) public.churn" and row[1] == 'VACUUM (ANALYZE) "public"."churn"'
    assert row[2].startswith("last vacuum")


# Tables whose names PostgreSQL must quote: dotted ones two of which read a.b.c joined,
# upper case, spaces, a quote, a keyword, and a plain one the unquoted patterns name.
ODD_TABLES = [("a.b", "c"), ("a", "b.c"), ("a", "Orders"), ("a", "orders"), ("a", "order lines"),
              ("a", 'say "hi"'), ("a", "user"), ("public", "orders")]


def test_allow_tables_names_each_table_however_its_name_is_spelled(enabled: psycopg.Connection,
                                                                     installed: str) -> None:
    """allow_tables matched the unquoted string schema.table: "a.b"."c" and "a"."b.c" were both
    a.b.c, a pattern for one allowed the other, and neither could be allowed alone."""
    conn = enabled
    for schema, table in ODD_TABLES:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.{} (id int) WITH (autovacuum_enabled = off)").format(
            sql.Identifier(schema), sql.Identifier(table)))
        conn.execute(sql.SQL("INSERT INTO {}.{} SELECT generate_series(1, 50)").format(
            sql.Identifier(schema), sql.Identifier(table)))
    flush(conn)

    def allowed(*patterns: str) -> set[tuple[str, str]]:
        params = Jsonb({"min_rows": 1, "modified_pct": 0, "allow_tables": list(patterns)})
        rows = conn.execute("SELECT target, refusal FROM perfmon.recovery_plan_analyze(%s)", (params,))
        return {(t["schema"], t["table"]) for t, refusal in rows if refusal is None} & set(ODD_TABLES)

    assert allowed('"a.b".c') == {("a.b", "c")}
    assert allowed('a."b.c"') == {("a", "b.c")}
    assert allowed("a.b.c") == set(), "ambiguous: refused by the installer, matches nothing"
    assert allowed('a."Orders"') == {("a", "Orders")}
    assert allowed("a.orders") == {("a", "orders")}
    assert allowed('a."order lines"', 'a."say ""hi"""', "a.user") == {
        ("a", "order lines"), ("a", 'say "hi"'), ("a", "user")}
    assert allowed("a.*") == {t for t in ODD_TABLES if t[0] == "a"}, "* stays within the name"
    assert allowed("*.orders") == {("a", "orders"), ("public", "orders")}
    assert allowed("public.orders") == {("public", "orders")}
    assert allowed("*") == set(ODD_TABLES)
    keys = conn.execute("SELECT target ->> 'key' FROM perfmon.recovery_plan_analyze(%s)",
                        (Jsonb({"min_rows": 1, "modified_pct": 0}),)).fetchall()
    assert len(keys) == len(set(keys)) >= len(ODD_TABLES), "each table has a step key of its own"
    refusal = conn.execute("SELECT refusal FROM perfmon.recovery_plan_analyze(%s) "
                           "WHERE target ->> 'schema' = 'a' AND target ->> 'table' = 'b.c'",
                           (Jsonb({"min_rows": 1, "modified_pct": 0, "allow_tables": []}),)).fetchone()
    assert refusal == ('table a."b.c" is not in allow_tables',)
    # End to end: pgperfmon recover analyzes the one table allowed, and no other.
    set_config(conn, optimization__auto_recovery__analyze_stale_tables__enabled=True,
               optimization__auto_recovery__analyze_stale_tables__min_rows=1,
               optimization__auto_recovery__analyze_stale_tables__allow_tables=['a."b.c"'])
    result = alerting.recover_once(installed, "cli", None, actions=["analyze_stale_tables"])
    done = [(s["target"]["schema"], s["target"]["table"]) for s in result["steps"] if s["decision"] == "done"]
    assert done == [("a", "b.c")]
    analyzed = conn.execute("SELECT schemaname, relname FROM pg_stat_user_tables "
                            "WHERE last_analyze IS NOT NULL AND schemaname IN ('a', 'a.b')").fetchall()
    assert analyzed == [("a", "b.c")]
    assert conn.execute("SELECT target_name FROM perfmon.recovery_actions WHERE decision = 'done'"
                        ).fetchall() == [('a."b.c"',)]


def test_steps_a_sql_call_deferred_are_run_or_closed_by_the_next_pgperfmon_recover(
        enabled: psycopg.Connection, installed: str) -> None:
    """SELECT perfmon.recover() cannot VACUUM or build an index: it says so, and the next
    pgperfmon recover does it. Its deferred steps used to wait for ever."""
    conn = enabled
    conn.execute("CREATE TABLE public.churn (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = off)")
    conn.execute("INSERT INTO public.churn SELECT g, 'x' FROM generate_series(1, 5000) g")
    conn.execute("ANALYZE public.churn")
    conn.execute("DELETE FROM public.churn WHERE id <= 3000")
    approve_orders_index(conn)
    flush(conn)
    set_config(conn, optimization__auto_recovery__vacuum_tables__enabled=True,
               optimization__auto_recovery__vacuum_tables__allow_tables=["public.churn"])
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(f"{d.message_primary} / {d.message_detail}"))
    planned = conn.execute("SELECT perfmon.recover('manual')").fetchone()[0]
    waiting = {s["action"]: s for s in planned["steps"] if s["decision"] != "refused"}
    assert {a: (s["decision"], s["reason"]) for a, s in waiting.items()} == {
        a: ("deferred", "runs outside a transaction: waits for pgperfmon recover")
        for a in ("vacuum_tables", "create_approved_indexes")}
    ids = sorted(s["step_id"] for s in waiting.values())
    assert notices == [
        f"pgperfmon: 2 recovery step(s) wait for pgperfmon recover (step_id {ids[0]}, {ids[1]}) / "
        "VACUUM, ANALYZE and CREATE INDEX CONCURRENTLY cannot run in a function: run pgperfmon "
        "recover --dsn ..., which plans them again and runs them."]
    # The index's approval is withdrawn meanwhile: no longer needed.
    conn.execute("DELETE FROM perfmon.index_approvals")

    result = alerting.recover_once(installed, "cli", dry_run=None)
    acted = [s for s in result["steps"] if s["decision"] != "refused"]
    assert [(s["action"], s["decision"], s["verified"]) for s in acted] == [("vacuum_tables", "done", True)]
    dead = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'").fetchone()
    assert dead == (0,)
    new_vacuum = acted[0]["step_id"]
    audit = conn.execute("SELECT step_id, action, trigger, decision, result FROM perfmon.recovery_actions "
                         "WHERE decision <> 'refused' ORDER BY step_id").fetchall()
    assert [row[:4] for row in audit] == [
        (waiting["vacuum_tables"]["step_id"], "vacuum_tables", "manual", "skipped"),
        (waiting["create_approved_indexes"]["step_id"], "create_approved_indexes", "manual", "skipped"),
        (new_vacuum, "vacuum_tables", "cli", "done")]
    assert audit[0][4] == f"not run: planned again as step {new_vacuum} of run {result['run_id']} (deferred)"
    assert audit[1][4].startswith("not run: no longer planned at ") and audit[1][4].endswith(
        "(its condition is gone)")
    assert notices == [notices[0]], "pgperfmon recover runs what it defers: nothing to say"


def test_steps_turned_off_while_a_run_is_in_flight_are_not_run(enabled: psycopg.Connection,
                                                                installed: str) -> None:
    """pgperfmon recover ran every deferred step of its plan, however long the steps before it
    took: turning the action off, or taking a table out of allow_tables, meanwhile stopped
    nothing."""
    conn = enabled
    for table in ("t1", "t2", "t3"):
        conn.execute(f"CREATE TABLE public.{table} (id int) WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO public.{table} SELECT generate_series(1, 5000)")
        conn.execute(f"DELETE FROM public.{table} WHERE id <= 3000")
    flush(conn)
    set_config(conn, optimization__auto_recovery__vacuum_tables__enabled=True,
               optimization__auto_recovery__vacuum_tables__allow_tables=["public.t*"])
    planned = conn.execute("SELECT perfmon.recover('cli', actions => ARRAY['vacuum_tables'])").fetchone()[0]
    plan = {s["target"]["table"]: s for s in planned["steps"] if s["target"]["schema"] == "public"}
    assert {t: s["decision"] for t, s in plan.items()} == dict.fromkeys(("t1", "t2", "t3"), "deferred")
    with closing(psycopg.connect(installed, autocommit=True)) as runner:  # as recover_once runs them
        alerting.run_deferred_step(runner, plan["t1"])
        set_config(conn, optimization__auto_recovery__vacuum_tables__allow_tables=["public.t1", "public.t3"])
        alerting.run_deferred_step(runner, plan["t2"])
        set_config(conn, optimization__auto_recovery__vacuum_tables__enabled=False)
        alerting.run_deferred_step(runner, plan["t3"])
    assert [(plan[t]["decision"], plan[t]["result"]) for t in ("t2", "t3")] == [
        ("skipped", "not run: table public.t2 was taken out of optimization.auto_recovery.vacuum_tables."
                    "allow_tables after it was planned"),
        ("skipped", "not run: optimization.auto_recovery.vacuum_tables.enabled was turned off after it "
                    "was planned")]
    audit = conn.execute("SELECT target ->> 'table', decision, result LIKE 'not run: %%' "
                         "FROM perfmon.recovery_actions WHERE action = 'vacuum_tables' "
                         "AND target ->> 'table' IN ('t1', 't2', 't3') ORDER BY 1").fetchall()
    assert audit == [("t1", "done", False), ("t2", "skipped", True), ("t3", "skipped", True)]
    vacuumed = conn.execute("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL "
                            "AND relname IN ('t1', 't2', 't3')").fetchall()
    assert vacuumed == [("t1",)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is not waiting to run"):
        conn.execute("SELECT perfmon.recovery_step_withdrawn(%s)", (plan["t2"]["step_id"],))


def test_a_vacuum_waiting_for_a_locked_table_gives_up_and_the_run_goes_on(enabled: psycopg.Connection,
                                                                           installed: str) -> None:
    """A transaction holding a table kept pgperfmon recover's VACUUM waiting for ever: the run
    never ended, its step stayed 'deferred' and the steps after it never ran."""
    conn = enabled
    for table in ("held", "free"):
        conn.execute(f"CREATE TABLE public.{table} (id int) WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO public.{table} SELECT generate_series(1, 5000)")
        conn.execute(f"DELETE FROM public.{table} WHERE id <= 3000 + (%s = 'held')::int", (table,))
    flush(conn)  # held has one dead tuple more: planned, and run, first
    set_config(conn, optimization__auto_recovery__lock_timeout_ms=200,
               optimization__auto_recovery__vacuum_tables__enabled=True,
               optimization__auto_recovery__vacuum_tables__allow_tables=["public.held", "public.free"])
    runs: list[dict] = []
    with closing(psycopg.connect(installed)) as holder:
        holder.execute("LOCK TABLE public.held IN SHARE UPDATE EXCLUSIVE MODE")  # as a VACUUM would
        run = threading.Thread(target=lambda: runs.append(
            alerting.recover_once(installed, "cli", None, actions=["vacuum_tables"])), daemon=True)
        run.start()
        try:
            assert wait_for(lambda: not run.is_alive(), timeout=30), "the run waits for the lock"
        finally:
            holder.rollback()
            run.join(timeout=30)
    mine = {s["target"]["table"]: s for s in runs[0]["steps"] if s["target"]["schema"] == "public"}
    assert list(mine) == ["held", "free"]
    assert (mine["held"]["decision"], mine["held"]["result"]) == (
        "failed", "canceling statement due to lock timeout: the table stayed locked for "
                  "optimization.auto_recovery.lock_timeout_ms (200 ms)")
    assert (mine["free"]["decision"], mine["free"]["verified"]) == ("done", True)
    assert conn.execute("SELECT decision, verified, verify_detail FROM perfmon.recovery_actions "
                        "WHERE step_id = %s", (mine["held"]["step_id"],)).fetchone() == (
        "failed", False, "the statement failed")


def test_a_step_whose_connection_is_lost_is_recorded_and_the_run_goes_on(enabled: psycopg.Connection,
                                                                          installed: str) -> None:
    """The VACUUM's session terminated (or the server restarted) while it ran: pgperfmon recover
    died with the connection, the step stayed 'deferred' with nothing to say it had run, and
    the steps after it never ran."""
    conn = enabled
    for table in ("held", "free"):
        conn.execute(f"CREATE TABLE public.{table} (id int) WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO public.{table} SELECT generate_series(1, 5000)")
        conn.execute(f"DELETE FROM public.{table} WHERE id <= 3000 + (%s = 'held')::int", (table,))
    flush(conn)
    set_config(conn, optimization__auto_recovery__lock_timeout_ms=60_000,
               optimization__auto_recovery__vacuum_tables__enabled=True,
               optimization__auto_recovery__vacuum_tables__allow_tables=["public.held", "public.free"])
    runs: list = []

    def run() -> None:
        try:
            runs.append(alerting.recover_once(installed, "cli", None, actions=["vacuum_tables"]))
        except Exception as exc:  # what the old code died of
            runs.append(exc)

    vacuum = ("SELECT pid FROM pg_stat_activity WHERE query LIKE 'VACUUM%%held%%' "
              "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    with closing(psycopg.connect(installed)) as holder:
        holder.execute("LOCK TABLE public.held IN SHARE UPDATE EXCLUSIVE MODE")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            assert wait_for(lambda: conn.execute(vacuum).fetchone() is not None)
            conn.execute(f"SELECT pg_terminate_backend(({vacuum}))")
        finally:
            holder.rollback()
    thread.join(timeout=30)
    assert len(runs) == 1 and isinstance(runs[0], dict), runs
    mine = {s["target"]["table"]: s for s in runs[0]["steps"] if s["target"]["schema"] == "public"}
    assert mine["held"]["decision"] == "failed"
    assert mine["held"]["result"].startswith("terminating connection due to administrator command")
    assert mine["held"]["result"].endswith(
        "; the connection running it was lost: it may have been partly done")
    assert (mine["free"]["decision"], mine["free"]["verified"]) == ("done", True)
    assert conn.execute("SELECT decision FROM perfmon.recovery_actions WHERE step_id = %s",
                        (mine["held"]["step_id"],)).fetchone() == ("failed",)


def test_builds_only_approved_indexes_concurrently(enabled: psycopg.Connection, installed: str) -> None:
    conn = enabled
    conn.execute("CREATE TABLE public.orders (id int, customer_id int, note text)")
    conn.execute("INSERT INTO public.orders SELECT g, g % 100, 'n' FROM generate_series(1, 2000) g")
    set_config(conn, optimization__auto_recovery__create_approved_indexes__enabled=True)
    assert alerting.recover_once(installed, "test", None, actions=["create_approved_indexes"])["steps"] == []
    with pytest.raises(psycopg.errors.RaiseException, match="no column"):
        conn.execute("SELECT perfmon.approve_index('public', 'orders', ARRAY['nope'])")
    conn.execute("SELECT perfmon.approve_index('public', 'orders', ARRAY['customer_id'])")
    result = alerting.recover_once(installed, "test", None, actions=["create_approved_indexes"])
    assert [(s["decision"], s["verified"]) for s in result["steps"]] == [("done", True)]
    name = result["steps"][0]["target"]["index_name"]
    assert name.startswith("perfmon_orders_customer_id_") and name.endswith("_idx")
    assert index_on(conn, name) == ("public.orders", True)
    again = alerting.recover_once(installed, "test", None, actions=["create_approved_indexes"])
    assert again["steps"] == [], "an index that exists is not built again"


def index_on(conn: psycopg.Connection, name: str) -> tuple[str, bool] | None:
    """(table, valid) of the index public.<name>, None when there is none."""
    return conn.execute("SELECT c.relnamespace::regnamespace || '.' || c.relname, i.indisvalid "
                        "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                        "WHERE i.indexrelid = to_regclass(format('public.%%I', %s::text))",
                        (name,)).fetchone()


def planned_index(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT target ->> 'index_name' FROM perfmon.recovery_plan_indexes('{}')"
                        ).fetchone()[0]


def build_indexes(dsn: str) -> list[tuple]:
    result = alerting.recover_once(dsn, "test", None, actions=["create_approved_indexes"])
    return [(s["target"]["columns"], s["decision"], s["verified"]) for s in result["steps"]]


def approve_orders_index(conn: psycopg.Connection) -> str:
    """public.orders (2,000 rows), an approved index on customer_id and builds enabled: the
    name its build will use."""
    conn.execute("CREATE TABLE public.orders (id int, customer_id int, note text)")
    conn.execute("INSERT INTO public.orders SELECT g, g % 100 FROM generate_series(1, 2000) g")
    set_config(conn, optimization__auto_recovery__create_approved_indexes__enabled=True)
    conn.execute("SELECT perfmon.approve_index('public', 'orders', ARRAY['customer_id'])")
    return planned_index(conn)


def test_never_drops_an_index_it_did_not_build(enabled: psycopg.Connection, installed: str) -> None:
    conn = enabled
    name = approve_orders_index(conn)
    # The name builds had before names were unique, held by an index of another table: a
    # build that failed on it dropped that index.
    conn.execute("CREATE TABLE public.other (id int, note text)")
    conn.execute("CREATE INDEX perfmon_orders_customer_id_idx ON public.other (note)")
    assert build_indexes(installed) == [(["customer_id"], "done", True)]
    assert index_on(conn, "perfmon_orders_customer_id_idx") == ("public.other", True)
    assert index_on(conn, name) == ("public.orders", True)
    # The very name the build uses, taken by someone else: neither built over nor dropped.
    conn.execute(f"DROP INDEX public.{name}")
    conn.execute(f"CREATE INDEX {name} ON public.other (id)")
    assert build_indexes(installed) == [(["customer_id"], "refused", None)]
    reason = conn.execute("SELECT reason FROM perfmon.recovery_actions WHERE action = "
                          "'create_approved_indexes' ORDER BY step_id DESC LIMIT 1").fetchone()[0]
    assert reason == (f"the index name is taken by public.{name} (a valid index on public.other): "
                      "not built, nothing dropped")
    assert index_on(conn, name) == ("public.other", True)
    # Taken after the plan was made (by an invalid index, as a failed or running build leaves):
    # the build checks again under its lock, and says why it did not build.
    conn.execute(f"DROP INDEX public.{name}")
    target = conn.execute("SELECT target FROM perfmon.recovery_plan_indexes('{}')").fetchone()[0]
    conn.execute("CREATE TABLE public.dup (id int)")
    conn.execute("INSERT INTO public.dup VALUES (1), (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON public.dup (id)")
    assert index_on(conn, name) == ("public.dup", False)
    assert alerting.build_approved_index(conn, target) == (
        False, f"not built: the index name is taken by public.{name} (an invalid index on public.dup: "
               "being built, or left by a failed build); nothing was dropped")
    assert index_on(conn, name) == ("public.dup", False)


def test_approvals_whose_cut_names_collide_get_an_index_each(enabled: psycopg.Connection,
                                                              installed: str) -> None:
    conn = enabled
    table = "order_lines_of_the_customer_accounts_archive"
    conn.execute(f"CREATE TABLE public.{table} (id int, customer_reference_a int, customer_reference_b int)")
    set_config(conn, optimization__auto_recovery__create_approved_indexes__enabled=True)
    for column in ("customer_reference_a", "customer_reference_b"):
        conn.execute("SELECT perfmon.approve_index('public', %s, ARRAY[%s])", (table, column))
    # Cut to 59 characters, both names were perfmon_<table>_custom_idx: the second build
    # failed on "already exists" and dropped the first one's index, run after run.
    assert build_indexes(installed) == [(["customer_reference_a"], "done", True),
                                        (["customer_reference_b"], "done", True)]
    built = conn.execute("SELECT c.relname::text, octet_length(c.relname::text), a.attname::text, "
                         "i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                         "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                         "WHERE i.indrelid = %s::regclass ORDER BY 3", (f"public.{table}",)).fetchall()
    assert [(column, valid) for _, _, column, valid in built] == [("customer_reference_a", True),
                                                                  ("customer_reference_b", True)]
    assert built[0][0] != built[1][0] and all(length <= 63 for _, length, _, _ in built)
    assert build_indexes(installed) == [], "both indexes exist: nothing is built or dropped again"


def test_overlapping_runs_leave_each_others_builds_alone(enabled: psycopg.Connection, installed: str) -> None:
    conn = enabled
    name = approve_orders_index(conn)
    runs: dict[str, list[tuple]] = {}

    def run(label: str) -> None:
        runs[label] = build_indexes(installed)

    first, second = (threading.Thread(target=run, args=(label,)) for label in ("first", "second"))
    # An open write transaction holds the first run's build, its index invalid, until it ends.
    with closing(psycopg.connect(installed)) as writer:
        writer.execute("INSERT INTO public.orders VALUES (0, 0)")
        first.start()
        assert wait_for(lambda: index_on(conn, name) == ("public.orders", False))
        second.start()
        # Before the fix, the second run's build waited for the first one's to end, then
        # failed on "already exists" and dropped the index the first one had just built.
        assert wait_for(lambda: not second.is_alive() or waiting(conn) >= 2)
        writer.commit()
    first.join(timeout=30)
    second.join(timeout=30)
    assert index_on(conn, name) == ("public.orders", True)
    assert runs["first"] == [(["customer_id"], "done", True)]
    assert runs["second"] == [(["customer_id"], "refused", None)]


def test_a_failed_build_drops_the_invalid_index_it_left(enabled: psycopg.Connection, installed: str) -> None:
    conn = enabled
    conn.execute("CREATE TABLE public.orders (id int, customer_id int)")
    conn.execute("INSERT INTO public.orders SELECT g, g % 100 FROM generate_series(1, 2000) g")
    set_config(conn, optimization__auto_recovery__create_approved_indexes__enabled=True)
    conn.execute("SELECT perfmon.approve_index('public', 'orders', ARRAY['customer_id'])")
    name = planned_index(conn)
    runs: list[list[tuple]] = []
    build = threading.Thread(target=lambda: runs.append(build_indexes(installed)))
    # The build, held by an open write transaction after it created its invalid index, is cancelled.
    with closing(psycopg.connect(installed)) as writer:
        writer.execute("INSERT INTO public.orders VALUES (0, 0)")
        build.start()
        assert wait_for(lambda: index_on(conn, name) == ("public.orders", False))
        conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                     "WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%' AND pid <> pg_backend_pid()")
        assert wait_for(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE 'CREATE INDEX CONCURRENTLY%%' AND pid <> pg_backend_pid()").fetchone() == (0,))
        writer.commit()
    build.join(timeout=30)
    assert runs == [[(["customer_id"], "failed", False)]]
    result = conn.execute("SELECT result FROM perfmon.recovery_actions "
                          "WHERE action = 'create_approved_indexes'").fetchone()[0]
    assert result == (f"canceling statement due to user request; the invalid index public.{name} "
                      "it left was dropped")
    assert index_on(conn, name) is None
    assert build_indexes(installed) == [(["customer_id"], "done", True)]


def test_recover_command_dry_run(conn: psycopg.Connection, installed: str, idle_session) -> None:
    _session, pid = idle_session
    set_config(conn, optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1)
    conn.execute("SELECT pg_sleep(0.2)")
    result = CliRunner().invoke(cli.main, ["recover", "--dsn", installed, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "(dry run: nothing changed)" in result.output
    assert f"terminate_idle_in_transaction {pid}: refused - role {APP_ROLE} is not in allow_roles" \
        in result.output
    assert alive(conn, pid)
    off = CliRunner().invoke(cli.main, ["recover", "--dsn", installed])
    assert "automated recovery is off" in off.output


def test_recover_command_names_an_unknown_action_and_says_when_there_is_nothing_to_do(
        installed: str) -> None:
    typo = CliRunner().invoke(cli.main, ["recover", "--dsn", installed, "--dry-run", "--action", "nosuch"])
    assert typo.exit_code == 1, typo.output
    assert "unknown recovery action 'nosuch'; expected one of " in typo.output
    assert "terminate_idle_in_transaction" in typo.output
    quiet = CliRunner().invoke(cli.main, ["recover", "--dsn", installed, "--dry-run",
                                          "--action", "create_approved_indexes"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.strip() == "nothing to do: no action's condition holds"


def test_recover_shows_a_table_named_with_a_line_break_on_one_line(
        conn: psycopg.Connection, installed: str) -> None:
    # The name went to the terminal as it is: a line break split the step's line and an
    # escape sequence would clear the screen.
    conn.execute('CREATE TABLE public."evil\n\x1b[2J" (customer_id int)')
    conn.execute("SELECT perfmon.approve_index('public', %s, ARRAY['customer_id'])", ("evil\n\x1b[2J",))
    result = CliRunner().invoke(cli.main, ["recover", "--dsn", installed, "--dry-run",
                                           "--action", "create_approved_indexes"], color=True)
    assert result.exit_code == 0, result.output
    assert '  create_approved_indexes "public"."evil\\n\\x1b[2J": ' in result.output, result.output
    assert "\x1b" not in result.output


def test_a_run_cancelled_while_it_acts_keeps_a_row_for_every_session_it_ended(
        enabled: psycopg.Connection, installed: str, app_dsn: str) -> None:
    """A statement_timeout (or Ctrl-C) in the middle of a run rolled back the steps' rows of
    sessions already terminated: actions without an audit row. The run is cancelled while it
    waits for the 8th of 20 sessions to exit (its exit waits on a lock this test holds on its
    temporary table): the 7 sessions ended before have their rows, and so has the 8th.

    (Cancelled by a statement_timeout tried from short to long, this once failed on a loaded
    machine: whether any timeout fell while the run acted depended on how fast it planned.)"""
    conn = enabled
    set_config(conn, optimization__auto_recovery__max_actions_per_hour=10_000,
               optimization__auto_recovery__verify_timeout_ms=60_000,  # never over before the cancel
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    sessions = [psycopg.connect(app_dsn) for _ in range(20)]
    stuck = sessions[7]
    stuck.execute("CREATE TEMP TABLE held_at_exit (x int)")
    stuck.commit()
    temp_schema = stuck.execute(
        "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()").fetchone()[0]
    outcome: list = []
    try:
        # Idle in a transaction, oldest first in this order: the run ends them in this order.
        pids = [s.execute("SELECT pg_backend_pid()").fetchone()[0] for s in sessions]
        conn.execute("SELECT pg_sleep(0.2)")  # idle in transaction past after_seconds
        with closing(psycopg.connect(installed)) as holder, \
                psycopg.connect(installed, autocommit=True) as watcher:
            holder.execute(sql.SQL("LOCK TABLE {}.held_at_exit IN ACCESS SHARE MODE").format(
                sql.Identifier(temp_schema)))

            def watch() -> None:
                try:
                    outcome.append(watcher.execute("SELECT perfmon.watch()").fetchone()[0])
                except psycopg.Error as exc:
                    outcome.append(exc)

            run = threading.Thread(target=watch)
            run.start()
            # The 8th session, signalled, waits at its exit to drop its temporary table: the run
            # is in pg_terminate_backend(), waiting for it to end.
            assert wait_for(lambda: conn.execute(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted)",
                (pids[7],)).fetchone()[0], timeout=30)
            conn.execute("SELECT pg_cancel_backend(%s)", (watcher.info.backend_pid,))
            run.join(timeout=60)
            holder.rollback()
        assert not run.is_alive()
        assert wait_for(lambda: not alive(conn, pids[7]), timeout=30)
        result = outcome[0]
        assert not isinstance(result, Exception), result
        ended = {pid for pid in pids if not alive(conn, pid)}
        recorded = {pid for decision, _r, _v, pid in steps(conn, "terminate_idle_in_transaction")
                    if decision in ("done", "failed")}
        assert ended == set(pids[:8])
        assert ended <= recorded, (result, ended - recorded)
        assert result.get("cancelled") is True
        assert conn.execute(
            "SELECT decision, result FROM perfmon.recovery_actions WHERE (target ->> 'pid')::int = %s",
            (pids[7],)).fetchall() == [("failed", "cancelled while acting: the signal may have been sent")]
    finally:
        for s in sessions:
            s.close()


def test_a_run_cancelled_while_it_plans_a_later_action_keeps_the_rows_of_earlier_ones(
        enabled: psycopg.Connection, installed: str, idle_session) -> None:
    """A cancel while the run planned a later action (here waiting for a lock on the index
    approvals) rolled back the rows of sessions an earlier action had already terminated."""
    conn = enabled
    _session, pid = idle_session
    approve_orders_index(conn)
    set_config(conn, optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    conn.execute("SELECT pg_sleep(0.2)")
    with closing(psycopg.connect(installed)) as holder:
        holder.execute("LOCK TABLE perfmon.index_approvals IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET statement_timeout = 1000")
        try:
            result = conn.execute("SELECT perfmon.recover('manual')").fetchone()[0]
        except psycopg.errors.QueryCanceled:
            result = {}
        finally:
            conn.execute("RESET statement_timeout")
            holder.rollback()
    assert not alive(conn, pid)
    assert steps(conn, "terminate_idle_in_transaction") == [("done", None, True, pid)]
    assert result.get("cancelled") is True
    done = [s["action"] for s in result["steps"] if s["decision"] == "done"]
    assert done == ["terminate_idle_in_transaction"]
    # Before any row is written, a cancel is an error as usual.
    with closing(psycopg.connect(installed)) as holder:
        holder.execute("LOCK TABLE perfmon.index_approvals IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET statement_timeout = 300")
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT perfmon.recover('manual', actions => ARRAY['create_approved_indexes'])")
        finally:
            conn.execute("RESET statement_timeout")
            holder.rollback()


def test_a_run_gives_up_at_its_lock_timeout_before_writing_its_audit(
        enabled: psycopg.Connection, installed: str, idle_session) -> None:
    """perfmon.recovery_steps held by another transaction (a DBA's LOCK, a VACUUM FULL): the run
    waited for it until statement_timeout (for ever under pg_cron), holding the recovery lock so
    that every watch tick was skipped. It gives up at optimization.auto_recovery.lock_timeout_ms,
    saying so, before acting on anything."""
    conn = enabled
    _session, pid = idle_session
    set_config(conn, optimization__auto_recovery__lock_timeout_ms=100,
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    conn.execute("SELECT pg_sleep(0.2)")
    with closing(psycopg.connect(installed)) as holder:
        holder.execute("LOCK TABLE perfmon.recovery_steps IN SHARE MODE")
        conn.execute("SET statement_timeout = '20s'")  # where the run used to wait: an error, not a hang
        try:
            with pytest.raises(psycopg.errors.LockNotAvailable,
                               match=r"^pgperfmon: recovery gave up recording a step of "
                                     r"terminate_idle_in_transaction before acting: perfmon.recovery_runs or "
                                     r"perfmon.recovery_steps stayed locked longer than "
                                     r"optimization.auto_recovery.lock_timeout_ms \(100ms\)\n"):
                conn.execute("SELECT perfmon.recover('manual')")
        finally:
            conn.execute("RESET statement_timeout")
            holder.rollback()
    assert alive(conn, pid)
    assert conn.execute("SELECT count(*) FROM perfmon.recovery_runs").fetchone() == (0,)
    assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)  # the run's own, not the session's


def test_a_lock_held_past_lock_timeout_while_planning_a_later_action_keeps_the_rows_of_earlier_ones(
        enabled: psycopg.Connection, installed: str, idle_session) -> None:
    """The index approvals held by another transaction while the run plans create_approved_indexes,
    after it terminated a session: the run stops at lock_timeout_ms, says why, and keeps the row of
    the session it ended (an error would roll it back)."""
    conn = enabled
    _session, pid = idle_session
    approve_orders_index(conn)
    set_config(conn, optimization__auto_recovery__lock_timeout_ms=100,
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    conn.execute("SELECT pg_sleep(0.2)")
    with closing(psycopg.connect(installed)) as holder:
        holder.execute("LOCK TABLE perfmon.index_approvals IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET statement_timeout = '20s'")  # where the run used to wait: cancelled, not a hang
        try:
            result = conn.execute("SELECT perfmon.recover('manual')").fetchone()[0]
        finally:
            conn.execute("RESET statement_timeout")
            holder.rollback()
    assert not alive(conn, pid)
    assert steps(conn, "terminate_idle_in_transaction") == [("done", None, True, pid)]
    assert result.get("stopped") == (
        "pgperfmon: recovery gave up planning create_approved_indexes: a table it reads stayed locked "
        "longer than optimization.auto_recovery.lock_timeout_ms (100ms)")
    assert "cancelled" not in result
    assert conn.execute("SELECT finished_at IS NOT NULL FROM perfmon.recovery_runs WHERE run_id = %s",
                        (result["run_id"],)).fetchone() == (True,)


def test_a_run_cancelled_while_it_records_a_later_step_keeps_the_rows_of_earlier_ones(
        enabled: psycopg.Connection, installed: str, app_dsn: str) -> None:
    """A cancel while the run waited to record its second step (its insert waiting on another
    transaction's row of the same step_id) rolled back the row of the session it had already
    terminated: the run stops there as a cancel while acting or planning does."""
    conn = enabled
    set_config(conn, optimization__auto_recovery__lock_timeout_ms=60_000,  # never over before the cancel
               optimization__auto_recovery__terminate_idle_in_transaction__enabled=True,
               optimization__auto_recovery__terminate_idle_in_transaction__after_seconds=0.1,
               optimization__auto_recovery__terminate_idle_in_transaction__allow_roles=[APP_ROLE])
    sessions = [psycopg.connect(app_dsn) for _ in range(2)]
    outcome: list = []
    try:
        pids = [s.execute("SELECT pg_backend_pid()").fetchone()[0] for s in sessions]
        conn.execute("SELECT pg_sleep(0.2)")
        with closing(psycopg.connect(installed)) as holder, \
                psycopg.connect(installed, autocommit=True) as watcher:
            # The step_id the run's second step will take, held by an open transaction's row.
            second = holder.execute(
                "SELECT CASE WHEN is_called THEN last_value + 2 ELSE last_value + 1 END "
                "FROM perfmon.recovery_steps_step_id_seq").fetchone()[0]
            holder.execute(
                "WITH r AS (INSERT INTO perfmon.recovery_runs (trigger, dry_run) VALUES ('test', true) "
                "RETURNING run_id) "
                "INSERT INTO perfmon.recovery_steps (step_id, run_id, action, target, decision) "
                "OVERRIDING SYSTEM VALUE SELECT %s, run_id, 'test', '{}', 'dry_run' FROM r", (second,))

            def watch() -> None:
                try:
                    outcome.append(watcher.execute("SELECT perfmon.watch()").fetchone()[0])
                except psycopg.Error as exc:
                    outcome.append(exc)

            run = threading.Thread(target=watch)
            run.start()
            assert wait_for(lambda: conn.execute(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted)",
                (watcher.info.backend_pid,)).fetchone()[0], timeout=30)
            conn.execute("SELECT pg_cancel_backend(%s)", (watcher.info.backend_pid,))
            run.join(timeout=60)
            holder.rollback()
        assert not run.is_alive()
        result = outcome[0]
        assert not isinstance(result, Exception), result
        assert result.get("cancelled") is True
        assert not alive(conn, pids[0]) and alive(conn, pids[1])
        assert steps(conn, "terminate_idle_in_transaction") == [("done", None, True, pids[0])]
    finally:
        for s in sessions:
            s.close()
