"""Beside the database: alert delivery (``pgperfmon deliver``) and recovery
(``pgperfmon recover``, the fast-path ``pgperfmon watch``).

Delivery uses the same sender code as the in-database worker
(``plpython/perfmon_py/delivery.py``) with its secrets read from this process's
environment. Recovery calls ``perfmon.recover()`` and executes the steps that
cannot run inside a function (VACUUM, CREATE INDEX CONCURRENTLY, and ANALYZE,
which needs the table's owner), composing each statement itself from the
target's names rather than running SQL text it was handed.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import click
import psycopg
from psycopg import sql

from pgperfmon import db, rendering, resources

CHANNEL = "perfmon_alerts"


def delivery_module() -> Any:
    """The delivery module of plpython/, shared with the in-database worker."""
    return resources.plpython_module("delivery")


# --------------------------------------------------------------------------- delivery

class PsycopgStore:
    """The delivery store over a psycopg connection (one transaction per message)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def channels(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT channel, sender, settings FROM perfmon.channel_settings()")
        return [{"channel": c, "sender": s, "settings": settings} for c, s, settings in rows]

    def claim(self, channels: list[str]) -> dict[str, Any] | None:
        cur = self.conn.execute(
            "SELECT message_id, alert_id, channel, event, attempt, payload, recipients_left "
            "FROM perfmon.outbox_claim(%s)", (channels,))
        row = cur.fetchone()
        if row is None:
            return None
        names = [d.name for d in cur.description or []]
        return dict(zip(names, row, strict=True))

    def result(self, message_id: int, ok: bool, status_code: int | None, error: str | None,
               duration_ms: float, worker: str, retry_after_s: float | None = None,
               recipients_left: list[str] | None = None) -> str:
        # A savepoint: if the outcome cannot be stored, the claim still holds (deliver_one).
        with self.conn.transaction():
            row = self.conn.execute("SELECT perfmon.outbox_result(%s::bigint, %s, %s::int, %s::text, "
                                    "%s::real, %s::text, %s::float8, %s::text[])",
                                    (message_id, ok, status_code, error, duration_ms, worker,
                                     retry_after_s, recipients_left)).fetchone()
        return row[0] if row else "?"


def deliver_due(conn: psycopg.Connection, worker: str, env: Mapping[str, str] | None = None,
                max_messages: int = 10_000,
                on_message: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Send every due message this process has the secrets for; commit after each."""
    delivery = delivery_module()
    store = PsycopgStore(conn)
    sent = 0
    for _ in range(max_messages):
        try:
            outcome = delivery.deliver_one(store, worker=worker, env=env)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        if outcome is None:
            break
        sent += 1
        if on_message:
            on_message(outcome)
    return sent


def next_due_in(conn: psycopg.Connection, env: Mapping[str, str] | None = None) -> float | None:
    """Seconds until a message this process can send is due (None: none pending). Messages of
    channels it has no secret for, or that are off, are not: it would wake for them every 50 ms."""
    env = os.environ if env is None else env
    channels = sorted(delivery_module().claimable_channels(PsycopgStore(conn), env))
    row = conn.execute("SELECT perfmon.outbox_next_due(%s)", (channels,)).fetchone() if channels else None
    conn.commit()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


def run_deliverer(dsn: str, once: bool, poll_seconds: float, worker: str,
                  echo: Callable[[str], None], env: Mapping[str, str] | None = None,
                  stop: threading.Event | None = None) -> None:
    """Deliver now, then (unless once) wait for NOTIFY perfmon_alerts or the next retry."""
    with db.connection(dsn) as conn, db.connection(dsn, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))

        def show(o: dict[str, Any]) -> None:
            echo(f"message {o['message_id']} {o['channel']}: {o['status']}"
                 + (f" ({o['error']})" if o.get("error") else ""))

        while stop is None or not stop.is_set():
            deliver_due(conn, worker, env=env, on_message=show)
            if once:
                return
            wait = next_due_in(conn, env)
            timeout = poll_seconds if wait is None else min(poll_seconds, wait + 0.05)
            # Woken early by a NOTIFY from the transaction that queued a message.
            ready, _, _ = select.select([listener.pgconn.socket], [], [], timeout)
            if ready:
                for _ in listener.notifies(timeout=0):
                    pass


# --------------------------------------------------------------------------- recovery

def _table(target: Mapping[str, Any]) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(target["schema"]), sql.Identifier(target["table"]))


def deferred_statement(action: str, target: Mapping[str, Any]) -> sql.Composed:
    """The statement of a deferred step, composed from the target's names."""
    if action == "analyze_stale_tables":
        return sql.SQL("ANALYZE {}").format(_table(target))
    if action == "vacuum_tables":
        option = sql.SQL("FREEZE") if target.get("freeze") else sql.SQL("ANALYZE")
        return sql.SQL("VACUUM ({}) {}").format(option, _table(target))
    if action == "create_approved_indexes":
        return sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} ({})").format(
            sql.Identifier(target["index_name"]), _table(target),
            sql.SQL(", ").join(sql.Identifier(c) for c in target["columns"]))
    raise ValueError(f"recovery action {action} cannot be deferred")


def build_approved_index(conn: psycopg.Connection, target: Mapping[str, Any]) -> tuple[bool, str]:
    """Builds an approved index CONCURRENTLY; returns (built, what happened) for the step's record.

    A failed CONCURRENTLY build leaves an invalid index behind, which is dropped - but only
    that one. An index that held the name before the build is someone else's, or one that
    another run is building (invalid until it is done): the build does not start, and
    nothing is dropped.
    """
    names = {"schema": target["schema"], "table": target["table"], "index_name": target["index_name"]}
    name = f"{target['schema']}.{target['index_name']}"
    # Held from the check of the name to the clean-up: no other pgperfmon recover creates or
    # drops an index of that name meanwhile (perfmon.recover()'s lock ends with its planning).
    lock = ("perfmon.recover.index", name)
    if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", lock).fetchone()[0]:
        return False, f"not built: another pgperfmon recover is building {name}; nothing was dropped"
    try:
        taken = conn.execute("SELECT perfmon.recovery_index_name_taken(%(schema)s, %(index_name)s)",
                             names).fetchone()[0]
        if taken is not None:
            return False, f"not built: the index name is taken by {taken}; nothing was dropped"
        statement = deferred_statement("create_approved_indexes", target)
        try:
            conn.execute(statement)
            return True, statement.as_string(conn)
        except psycopg.errors.DuplicateTable as exc:  # taken since the check, by another session
            return False, f"{db.redact(str(exc).strip())}; nothing was dropped"
        except psycopg.Error as exc:
            error = db.redact(str(exc).strip())
        if not conn.execute(resources.sql("queries/recovery_index_leftover"), names).fetchone()[0]:
            return False, f"{error}; the build left no invalid index, nothing was dropped"
        try:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                sql.Identifier(target["schema"]), sql.Identifier(target["index_name"])))
        except psycopg.Error as exc:
            return False, (f"{error}; the invalid index {name} it left could not be dropped: "
                           f"{db.redact(str(exc).strip())}")
        return False, f"{error}; the invalid index {name} it left was dropped"
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", lock)


# Held by pgperfmon recover while it runs a deferred step: perfmon.recover() closes only
# the deferred steps nobody holds (planned again, or no longer needed).
CLAIM_STEP = "SELECT pg_try_advisory_lock(hashtext('perfmon.recovery_step'), (%s::bigint %% 2147483647)::int)"
RELEASE_STEP = "SELECT pg_advisory_unlock(hashtext('perfmon.recovery_step'), (%s::bigint %% 2147483647)::int)"


def run_table_statement(conn: psycopg.Connection, statement: sql.Composed) -> tuple[bool, str]:
    """Runs a VACUUM or ANALYZE; returns (done, what happened) for the step's record.

    It waits for its table's lock at most optimization.auto_recovery.lock_timeout_ms: a
    transaction holding the table otherwise kept the run waiting for ever, its step
    'deferred' and the steps after it not run.
    """
    timeout = conn.execute("SELECT perfmon.setting('optimization.auto_recovery.lock_timeout_ms')::int"
                           ).fetchone()[0]
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{timeout}ms",))
    try:
        conn.execute(statement)
        return True, statement.as_string(conn)
    except psycopg.errors.LockNotAvailable as exc:
        return False, (f"{db.redact(str(exc).strip())}: the table stayed locked for "
                       f"optimization.auto_recovery.lock_timeout_ms ({timeout} ms)")
    except psycopg.Error as exc:
        return False, db.redact(str(exc).strip())
    finally:
        if not conn.broken:
            conn.execute("RESET lock_timeout")


def run_deferred_step(conn: psycopg.Connection, step: dict[str, Any],
                      runner: psycopg.Connection | None = None) -> None:
    """Runs one deferred step outside any transaction and records its outcome in step.

    The statement runs on runner (default conn), the bookkeeping on conn: a runner whose
    connection is lost meanwhile (terminated, the server restarted) still gets its step
    recorded as failed, where it used to stay 'deferred' with nothing to say it had run.
    """
    runner = runner or conn
    step_id = step["step_id"]
    if not conn.execute(CLAIM_STEP, (step_id,)).fetchone()[0]:
        step.update(result="not run here: another pgperfmon recover is running it")
        return
    try:
        decision = conn.execute("SELECT decision FROM perfmon.recovery_steps WHERE step_id = %s",
                                (step_id,)).fetchone()[0]
        if decision != "deferred":  # closed by a run that planned it again meanwhile
            step.update(decision=decision, result="not run: planned again by another run")
            return
        # Turned off (or the table taken out of allow_tables) while earlier steps ran.
        withdrawn = conn.execute("SELECT perfmon.recovery_step_withdrawn(%s)", (step_id,)).fetchone()[0]
        if withdrawn is not None:
            step.update(decision="skipped", result=withdrawn)
            return
        target = step["target"]
        started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        try:
            if step["action"] == "create_approved_indexes":
                ok, text = build_approved_index(runner, target)
            else:
                ok, text = run_table_statement(runner, deferred_statement(step["action"], target))
        except psycopg.OperationalError as exc:
            if not runner.broken or runner is conn:
                raise
            ok, text = False, db.redact(str(exc).strip())
        if runner.broken and runner is not conn:
            ok, text = False, f"{text}; the connection running it was lost: it may have been partly done"
        check = conn.execute("SELECT perfmon.recovery_step_result(%s, %s, %s, %s)",
                             (step_id, ok, text, started)).fetchone()[0]
        step.update(decision="done" if ok else "failed", result=text, verified=check["verified"])
    finally:
        conn.execute(RELEASE_STEP, (step_id,))


def recover_once(dsn: str, trigger: str, dry_run: bool | None, fast_only: bool = False,
                 actions: list[str] | None = None) -> dict[str, Any]:
    """One recovery run: in-database actions, then the deferred ones, each re-checked."""
    with db.connection(dsn, autocommit=True) as conn:
        result = conn.execute(
            "SELECT perfmon.recover(%s, %s, fast_only => %s, in_database_only => false, actions => %s)",
            (trigger, dry_run, fast_only, actions)).fetchone()[0]
        runner = None  # its own connection, so that losing it loses no step's record
        try:
            for step in result.get("steps", []):
                if step["decision"] == "deferred":
                    if runner is None or runner.broken:
                        if runner is not None:
                            runner.close()
                        runner = db.connect(dsn, autocommit=True)
                    run_deferred_step(conn, step, runner)
        finally:
            if runner is not None:
                runner.close()
        return result


def run_watcher(dsn: str, interval: float, echo: Callable[[str], None],
                iterations: int | None = None, stop: threading.Event | None = None) -> None:
    """The fast path: perfmon.watch() every interval seconds."""
    with db.connection(dsn, autocommit=True) as conn:
        count = 0
        while (iterations is None or count < iterations) and (stop is None or not stop.is_set()):
            start = time.monotonic()
            result = conn.execute("SELECT perfmon.watch()").fetchone()[0]
            for step in result.get("steps", []):
                echo(json.dumps({k: step.get(k) for k in ("action", "decision", "reason", "verified")}
                                | {"pid": step["target"].get("pid")}))
            count += 1
            time.sleep(max(0.0, interval - (time.monotonic() - start)))


# --------------------------------------------------------------------------- commands

dsn_option = click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
                          help="libpq connection string or URI; default $PGPERFMON_DSN, else PG*.")


@click.command()
@dsn_option
@click.option("--once", is_flag=True, help="deliver what is due and exit.")
@click.option("--poll", "poll_seconds", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True,
              help="longest wait between looks at the outbox (LISTEN wakes it sooner).")
@click.option("--worker", default=None, help="name in the delivery log (default pgperfmon@<host>).")
def deliver(dsn: str | None, once: bool, poll_seconds: float, worker: str | None) -> None:
    """Send queued alert notifications with this process's secrets (woken by LISTEN/NOTIFY)."""
    name = worker or f"pgperfmon@{os.uname().nodename}"
    try:
        run_deliverer(db.resolve_dsn(dsn), once, poll_seconds, name, click.echo)
    except KeyboardInterrupt:
        pass
    except db.ConnectError as exc:
        raise click.ClickException(db.redact(str(exc))) from None


@click.command()
@dsn_option
@click.option("--dry-run/--no-dry-run", "dry_run", default=None,
              help="plan only / act (default: optimization.auto_recovery.dry_run; a dry run "
                   "plans every action, enabled or not).")
@click.option("--action", "actions", multiple=True, help="only this action (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="print the run as JSON.")
def recover(dsn: str | None, dry_run: bool | None, actions: tuple[str, ...], as_json: bool) -> None:
    """Run the recovery playbook once, including VACUUM/ANALYZE/CREATE INDEX CONCURRENTLY."""
    try:
        result = recover_once(db.resolve_dsn(dsn), "cli", dry_run, actions=list(actions) or None)
    except db.ConnectError as exc:
        raise click.ClickException(db.redact(str(exc))) from None
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    if result.get("enabled") is False:
        click.echo("automated recovery is off (optimization.auto_recovery.enabled); "
                   "pgperfmon recover --dry-run shows what it would do")
        return
    steps = result.get("steps", [])
    if result.get("run_id") is None:
        click.echo(result.get("skipped") or "nothing to do: no action's condition holds")
        return
    click.echo(f"run {result.get('run_id')}: {len(steps)} step(s)"
               + (" (dry run: nothing changed)" if result.get("dry_run") else ""))
    for s in steps:
        target = s["target"]
        name = target.get("pid") or _table(target).as_string()  # quoted: "a.b"."c" is not "a"."b.c"
        # A table's name may hold a line break or an escape sequence: one line, shown as text.
        click.echo(rendering.one_line(
            f"  {s['action']} {name}: {s['decision']}"
            + (f" - {s['reason']}" if s.get("reason") else "")
            + (f" [verified: {s['verified']}]" if s.get("verified") is not None else "")))


@click.command()
@dsn_option
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="seconds between checks.")
def watch(dsn: str | None, interval: float) -> None:
    """Fast-path recovery: check lock chains, idle-in-transaction sessions and connection
    exhaustion every interval and run the enabled actions (Ctrl-C stops)."""
    try:
        run_watcher(db.resolve_dsn(dsn), interval, click.echo)
    except KeyboardInterrupt:
        pass
    except db.ConnectError as exc:
        raise click.ClickException(db.redact(str(exc))) from None

