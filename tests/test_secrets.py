"""Secrets never appear in logs, tables, status output or error messages.

Distinctive secret strings are put where pgperfmon meets secrets (passwords in
DSNs, Slack and webhook URLs with their tokens, the webhook signing key, SMTP
credentials, SMS gateway tokens, passwords in SQL statements), then looked for in
every table and view of perfmon, in the server's log (with every statement and its
parameters logged), in the commands' output and in the Python log records.
"""

from __future__ import annotations

import base64
import getpass
import logging
import os
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from alert_servers import add_gauge_rule, http_receiver, set_config
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgperfmon import agent, alerting, backup, cli, config, db, deploy
from pgperfmon.heartbeat import Heartbeat

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def distinctive(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(8)}"


def perfmon_text_holding(conn: psycopg.Connection, secret: str) -> list[str]:
    """Every table and view of perfmon whose rows, as text, hold the secret."""
    relations = [r for (r,) in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
        "AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition ORDER BY 1")]
    assert "perfmon.delivery_log" in relations and "perfmon.alerts" in relations
    return relations_holding(conn, relations, secret)


def relations_holding(conn: psycopg.Connection, relations: list[str], secret: str) -> list[str]:
    """Those of the relations whose rows, read as the current role and as text, hold the secret."""
    found = []
    for relation in relations:
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '30s'")
            hits = conn.execute(f"SELECT count(*) FROM {relation} AS t WHERE strpos(t::text, %s) > 0",
                                (secret,)).fetchone()[0]
        if hits:
            found.append(relation)
    return found


class ServerLog:
    """What the server logged since it was opened."""

    def __init__(self, server, conn: psycopg.Connection):
        if server.cluster is not None:
            self.path: Path | None = Path(server.cluster.logfile)
            self.offset = self.path.stat().st_size
            self.conn = None
        else:  # an external server: read its current log file through SQL (superuser)
            self.path, self.conn = None, conn
            name = conn.execute("SELECT pg_current_logfile()").fetchone()[0]
            if name is None:
                pytest.fail("the server's log cannot be read: no cluster of the tests' own and no "
                            "logging_collector on the server of PGPERFMON_TEST_DSN", pytrace=False)
            self.name = name
            self.offset = conn.execute("SELECT (pg_stat_file(%s)).size", (name,)).fetchone()[0]

    def text(self) -> str:
        if self.path is not None:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                return f.read().decode("utf-8", "replace")
        assert self.conn is not None
        return self.conn.execute("SELECT pg_read_file(%s, %s, 1000000000)", (self.name, self.offset)
                                 ).fetchone()[0]


@pytest.fixture()
def logged_db(server, conn: psycopg.Connection, dbname: str) -> Iterator[ServerLog]:
    """Every statement of the test's database and its parameters go to the server's log."""
    server.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(
        sql.Identifier(dbname)).as_string(None))
    server.execute(sql.SQL("ALTER DATABASE {} SET log_parameter_max_length = -1").format(
        sql.Identifier(dbname)).as_string(None))
    server.execute(sql.SQL("ALTER DATABASE {} SET log_min_messages = 'info'").format(
        sql.Identifier(dbname)).as_string(None))
    yield ServerLog(server, conn)


@pytest.fixture()
def password_login(server, dbname: str) -> Iterator[tuple[str, str, str]]:
    """(name, password, DSN over TCP with that password) of a fresh superuser login."""
    name = f"secret_{secrets.token_hex(4)}"
    password = distinctive("Right-Pw")
    server.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)).as_string(None))
    parts = conninfo_to_dict(server.dsn(dbname))
    parts.pop("passfile", None)
    try:
        yield name, password, make_conninfo(**{**parts, "user": name, "password": password})
    finally:
        server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)).as_string(None))


def uri(dsn: str, password: str) -> str:
    p = conninfo_to_dict(dsn)
    return (f"postgresql://{p['user']}:{urllib.parse.quote(password, safe='')}@{p['host']}:{p['port']}"
            f"/{p['dbname']}?connect_timeout=5")


# --------------------------------------------------------------------------- the redaction helper

password_text = st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]),
                        min_size=6, max_size=40).map(lambda t: "Zq" + t)


@PROPERTY
@given(password=password_text, host=st.sampled_from(["db.example.test", "127.0.0.1", "[::1]"]))
@example(password="Zq'a b\\'c", host="db.example.test")
@example(password="Zq@/:?#&=%", host="127.0.0.1")
@example(password="Zq0000@.", host="db.example.test")  # the host becomes ".": idna refuses it
@example(password="Zq%8000@", host="db.example.test")  # percent-decodes to bytes that are not UTF-8
def test_redact_removes_the_password_of_any_dsn(password: str, host: str) -> None:
    keyword = make_conninfo(host=host.strip("[]"), user="bob", dbname="app", password=password)
    uri_form = f"postgresql://bob:{urllib.parse.quote(password, safe='')}@{host}:5432/app?sslmode=prefer"
    for dsn in (keyword, uri_form, f"{uri_form}&password={urllib.parse.quote(password, safe='')}"):
        message = db.redact(f"cannot connect with {dsn}: connection refused")
        assert password not in message and urllib.parse.quote(password, safe="") not in message
        assert "bob" in message and "connection refused" in message  # the rest stays readable
    # A DSN libpq cannot parse: its complaint quotes fragments of the string.
    for broken in (f"host={host} password={password} nonsense", f"postgresql://bob:{password}@[::1/app"):
        with pytest.raises(db.ConnectError) as info:
            db.connect(broken)
        assert password not in str(info.value)


token_text = st.text(st.characters(codec="ascii", categories=["L", "N"], include_characters="-_."),
                     min_size=12, max_size=40)


@PROPERTY
@given(token=token_text, junk=st.sampled_from(["", " ", "\n", "\t", "\x7f"]))
def test_redact_removes_url_tokens_in_every_form_an_error_quotes_them(token: str, junk: str) -> None:
    url = f"https://hooks.example.test/services/T0/B0/{token}{junk}?sig={token[::-1]}"
    path = urllib.parse.urlsplit(url).path
    messages = [
        f"POST {url} failed", f"InvalidURL: URL can't contain control characters. {path!r}",
        f"unknown url type: {url!r}", f"bad {urllib.parse.quote(url, safe='')}",
        f"echo {base64.b64encode(url.encode()).decode()}",
    ]
    for message in messages:
        scrubbed = db.redact(message, [url])
        assert token not in scrubbed and token[::-1] not in scrubbed, (message, scrubbed)
        assert base64.b64encode(url.encode()).decode() not in scrubbed
    # Without being told the secret: nothing after the host of a (well-formed) URL is kept.
    if not junk:
        assert token not in db.redact(f"POST {url} failed")
    # Junk inside the token: urlsplit drops a tab or a line break that the error keeps.
    half = len(token) // 2
    inside = f"https://hooks.example.test/services/T0/B0/{token[:half]}{junk}{token[half:]}"
    raw_path = inside.removeprefix("https://hooks.example.test")
    scrubbed = db.redact(f"InvalidURL: URL can't contain control characters. {raw_path!r}", [inside])
    assert token[:half] not in scrubbed and token[half:] not in scrubbed, scrubbed


@PROPERTY
@given(password=password_text)
@example(password="Zqa\\'b")
@example(password="Zq$$x$$")
@example(password="Zq' VALID UNTIL 'x")
def test_redact_secrets_masks_passwords_in_sql_statements(conn_for_sql: psycopg.Connection,
                                                          password: str) -> None:
    literal = sql.Literal(password).as_string(conn_for_sql)
    by_hand = "'" + password.replace("'", "''") + "'"
    conninfo = sql.Literal(make_conninfo(host="h", password=password)).as_string(conn_for_sql)
    plain = make_conninfo(host="h", password=password)
    e_conninfo = "E'" + plain.replace("\\", "\\\\").replace("'", "\\'") + "'"
    statements = [
        f"ALTER ROLE app PASSWORD {literal}",
        f"CREATE ROLE app LOGIN PASSWORD {by_hand} VALID UNTIL 'infinity'",
        f"alter user app with encrypted password {by_hand}",
        f"CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password {literal})",
        f"CREATE SUBSCRIPTION s CONNECTION {conninfo} PUBLICATION p WITH (connect = false)",
        f"CREATE SUBSCRIPTION s CONNECTION 'postgresql://app:{urllib.parse.quote(password, safe='')}@h/d' "
        "PUBLICATION p",
        # Spellings that slipped through: a Unicode-escape string, the option name quoted,
        # a comment before the constant, a connection string inside an E'' string.
        f"ALTER ROLE app PASSWORD U&{by_hand}",
        f'CREATE USER MAPPING FOR app SERVER s OPTIONS ("password" {literal})',
        f"ALTER ROLE app PASSWORD/**/{by_hand}",
        f"CREATE SUBSCRIPTION s CONNECTION {e_conninfo} PUBLICATION p",
    ]
    for statement in statements:
        masked = conn_for_sql.execute("SELECT perfmon.redact_secrets(%s)", (statement,)).fetchone()[0]
        assert password not in masked and urllib.parse.quote(password, safe="") not in masked, masked
        assert "***" in masked


@pytest.fixture(scope="module")
def conn_for_sql(module_db: tuple[str, str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db[1], autocommit=True) as connection:
        yield connection


# --------------------------------------------------------------------------- DSN passwords

def _commands(dsn: str, tmp: Path) -> list[list[str]]:
    csv = tmp / "in.csv"
    csv.write_text("2024-01-01T00:00:00Z,1\n")
    return [
        ["install", "--dsn", dsn], ["status", "--dsn", dsn], ["status", "--json", "--dsn", dsn],
        ["config", "show", "--dsn", dsn], ["deliver", "--once", "--dsn", dsn],
        ["recover", "--dry-run", "--dsn", dsn], ["watch", "--dsn", dsn],
        ["ingest", "--dsn", dsn, "--metric", "business.x", "--unit", "count", "--input", str(csv)],
        ["anomalies", "backtest", "--dsn", dsn, "--input", str(csv), "--output", str(tmp / "out.csv")],
        ["uninstall", "--yes", "--dsn", dsn], ["backup", "verify", "--dsn", dsn, "--scratch", str(tmp)],
    ]


def test_commands_never_print_a_password_they_were_given(installed: str, password_login, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong password, or the right one for an unreachable server: each command fails,
    says which server, and prints neither password."""
    name, right, dsn = password_login
    wrong = distinctive("Wrong-Pw")
    # Unencoded, a URI password's '@' and '/' make libpq read its pieces as host and database.
    pieces = [distinctive("Raw"), distinctive("At"), distinctive("Slash")]
    raw = f"{pieces[0]}@{pieces[1]}/{pieces[2]}"
    p = conninfo_to_dict(dsn)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "5")
    cases = {
        "raw @ and / in a URI password": f"postgresql://{name}:{raw}@{p['host']}:{p['port']}/{p['dbname']}",
        "wrong password": make_conninfo(dsn, password=wrong),
        "wrong password, URI": uri(dsn, wrong),
        "server unreachable": make_conninfo(dsn, port="1"),
        "server unreachable, URI": uri(make_conninfo(dsn, port="1"), right),
        "malformed": f"{make_conninfo(dsn, password=None)} password={right} {wrong}",
    }
    for case, target in cases.items():
        for args in _commands(target, tmp_path):
            result = CliRunner().invoke(cli.main, args)
            shown = f"{case}: pgperfmon {' '.join(args[:2])}"
            assert result.exit_code != 0, shown
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                f"{shown}: {result.exception!r}")
            for secret in (right, wrong, urllib.parse.quote(right, safe=""), *pieces):
                assert secret not in result.output, f"{shown} printed a password:\n{result.output}"
            if case != "malformed":
                assert name in result.output or "pg_basebackup failed" in result.output, (
                    f"{shown} does not say which login failed:\n{result.output}")


def test_status_output_holds_no_password(installed: str, password_login) -> None:
    """status connects twice (the database, then pg_cron's) with the DSN it was given."""
    _name, password, dsn = password_login
    for target in (dsn, uri(dsn, password)):
        for args in (["status", "--dsn", target], ["status", "--json", "--dsn", target]):
            result = CliRunner().invoke(cli.main, args)
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert '"jobs": [' in result.output or "jobs:" in result.output, result.output
            assert password not in result.output, f"pgperfmon {' '.join(args[:2])} printed the password"


def test_agent_and_heartbeat_logs_hold_no_password(installed: str, password_login, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    _name, right, dsn = password_login
    wrong = distinctive("Wrong-Pw")
    caplog.set_level(logging.INFO)
    for target in (make_conninfo(dsn, password=wrong), uri(dsn, wrong), make_conninfo(dsn, port="1")):
        worker = agent.Agent(target, interval=1, spool_dir=tmp_path / "spool")
        worker.sample_once()
        assert worker.flush() == 0
        worker.spool.close()
        with Heartbeat(target, agent="billing") as hb:
            assert hb.beat() is False
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "database unreachable" in logged and "heartbeat of 'billing' not sent" in logged
    assert right not in logged and wrong not in logged


def test_backup_hands_the_password_to_pg_basebackup_out_of_its_command_line(tmp_path: Path) -> None:
    password = distinctive("Backup-Pw")
    for dsn in (f"host=db.example.test user=backup password={password} dbname=postgres",
                f"postgresql://backup:{password}@db.example.test/postgres?sslmode=require"):
        args, env = backup.basebackup_invocation(dsn, tmp_path / "copy")
        assert not any(password in a for a in args), args
        assert env["PGPASSWORD"] == password
        target = conninfo_to_dict(args[args.index("--dbname") + 1])
        assert target == {k: v for k, v in conninfo_to_dict(dsn).items() if k != "password"}


# --------------------------------------------------------------------------- passwords in SQL

def test_passwords_in_statements_never_reach_perfmon_tables_or_views(server, probe: psycopg.Connection,
                                                                      dbname: str) -> None:
    conn = probe
    role, role_pw, mapping_pw, sub_pw = (f"leaky_{secrets.token_hex(3)}", distinctive("RolePw"),
                                         distinctive("MappingPw"), distinctive("SubPw"))
    conn.execute("SELECT perfmon.collect()")
    try:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(role_pw)))
        conn.execute("CREATE FOREIGN DATA WRAPPER leaky_fdw")
        conn.execute("CREATE SERVER leaky_server FOREIGN DATA WRAPPER leaky_fdw")
        conn.execute(sql.SQL("CREATE USER MAPPING FOR {} SERVER leaky_server OPTIONS (user 'x', password {})")
                     .format(sql.Identifier(role), sql.Literal(mapping_pw)))
        conn.execute(sql.SQL("CREATE SUBSCRIPTION leaky_sub CONNECTION {} PUBLICATION p "
                             "WITH (connect = false)").format(
            sql.Literal(f"host=127.0.0.1 dbname=x password={sub_pw}")))
        conn.execute("ALTER SUBSCRIPTION leaky_sub SET (slot_name = NONE)")
        conn.execute("DROP SUBSCRIPTION leaky_sub")
        conn.execute("SELECT perfmon.collect()")
        stored = [q for (q,) in conn.execute(
            "SELECT query FROM perfmon.statements WHERE query ~* '(leaky|password)'")]
        assert any("PASSWORD '***'" in q for q in stored), stored  # the statements were collected
        assert any("password=***" in q for q in stored), stored
        for secret in (role_pw, mapping_pw, sub_pw):
            assert perfmon_text_holding(conn, secret) == [], secret
        conn.execute("SET ROLE perfmon_reader")
        try:
            texts = " ".join(q for (q,) in conn.execute("SELECT query FROM perfmon.top_queries"))
        finally:
            conn.execute("RESET ROLE")
        assert role_pw not in texts
    finally:
        conn.execute("DROP SERVER IF EXISTS leaky_server CASCADE")
        conn.execute("DROP FOREIGN DATA WRAPPER IF EXISTS leaky_fdw CASCADE")
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_upgrade_masks_passwords_stored_by_earlier_releases(installed: str, conn: psycopg.Connection) -> None:
    password = distinctive("OldPw")
    conn.execute("INSERT INTO perfmon.statements (server_id, userid, dbid, queryid, toplevel, query) "
                 "VALUES (1, 10, 1, 4242, true, %s)", (f"ALTER ROLE app PASSWORD '{password}'",))
    conn.execute("DELETE FROM perfmon.schema_migrations WHERE version = 9")  # as before migration 009
    deploy.install(installed, config.load(None, env={}))
    assert conn.execute("SELECT query FROM perfmon.statements WHERE queryid = 4242").fetchone() == (
        "ALTER ROLE app PASSWORD '***'",)


def reader_views_holding(conn: psycopg.Connection, secrets_: tuple[str, ...]) -> list[str]:
    """Every view of perfmon perfmon_reader may read whose rows, read as the current role, hold a secret."""
    views = [v for (v,) in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
        "AND c.relkind IN ('v', 'm') AND has_table_privilege('perfmon_reader', c.oid, 'SELECT') ORDER BY 1")]
    assert "perfmon.blocking_locks" in views and "perfmon.top_queries" in views
    return [f"{view}: {secret}" for secret in secrets_ for view in relations_holding(conn, views, secret)]


def test_live_query_texts_shown_to_readers_hide_passwords(conn: psycopg.Connection, paused_cron: str) -> None:
    """A session running ALTER ROLE ... PASSWORD that blocks another, and the one it blocks."""
    suffix = secrets.token_hex(3)
    target, watcher = f"leaky_{suffix}", f"watcher_{suffix}"
    held_pw, waiting_pw = distinctive("HeldPw"), distinctive("WaitingPw")
    # A monitoring login often holds pg_monitor too (Grafana's and pgwatch's setups): it then
    # sees the text of every session in pg_stat_activity, and so would in perfmon's views.
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(target)))
    conn.execute(sql.SQL("CREATE ROLE {} IN ROLE perfmon_reader, pg_monitor").format(sql.Identifier(watcher)))
    blocker = psycopg.connect(paused_cron)  # a transaction left open: the role's row stays locked
    waiter = psycopg.connect(paused_cron, autocommit=True)
    waiter_pid = waiter.info.backend_pid
    outcome: list[object] = []

    def wait_for_the_row() -> None:
        try:
            waiter.execute("SET statement_timeout = '60s'")
            waiter.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(target), sql.Literal(waiting_pw)))
            outcome.append("done")
        except psycopg.Error as exc:  # reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=wait_for_the_row)
    try:
        blocker.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(target),
                                                                  sql.Literal(held_pw)))
        thread.start()
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT count(*) FROM perfmon.blocking_locks WHERE blocked_pid = %s",
                               (waiter_pid,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the second ALTER ROLE never waited on the first"
            time.sleep(0.1)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(watcher)))
        try:
            # The watcher does see both secrets in pg_stat_activity: the test can fail.
            raw = " ".join(q for (q,) in conn.execute(
                "SELECT query FROM pg_stat_activity WHERE pid IN (%s, %s)",
                (waiter_pid, blocker.info.backend_pid)))
            assert held_pw in raw and waiting_pw in raw, raw
            shown = conn.execute("SELECT blocked_query, blocking_query FROM perfmon.blocking_locks "
                                 "WHERE blocked_pid = %s", (waiter_pid,)).fetchall()
            masked = sql.SQL("ALTER ROLE {} PASSWORD '***'").format(sql.Identifier(target)).as_string(conn)
            assert shown == [(masked, masked)]
            assert reader_views_holding(conn, (held_pw, waiting_pw)) == []
        finally:
            conn.execute("RESET ROLE")
    finally:
        blocker.rollback()
        blocker.close()
        if thread.is_alive() or thread.ident:
            thread.join(60)
        waiter.close()
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(watcher)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(target)))
    assert outcome == ["done"]


# --------------------------------------------------------------------------- delivery secrets

def test_delivery_failures_record_no_secret_in_tables_logs_or_output(
        server, conn: psycopg.Connection, installed: str, logged_db: ServerLog, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    slack_token, hook_token, signing_key, smtp_password, sms_token = (
        distinctive(kind) for kind in ("SlackTok", "HookTok", "SignKey", "SmtpPw", "SmsTok"))
    secrets_ = [slack_token, hook_token, signing_key, smtp_password, sms_token]
    auth_blobs = [base64.b64encode(f"\0alerts\0{smtp_password}".encode()).decode(),
                  base64.b64encode(smtp_password.encode()).decode()]

    def authenticator(server_, session, envelope, mechanism, auth_data):
        # A careless server that echoes what it was sent in its refusal.
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 bad credentials {auth_data.password.decode()} {auth_blobs[0]}")

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        smtp_port = probe_socket.getsockname()[1]
    smtp = Controller(object(), hostname="127.0.0.1", port=smtp_port, authenticator=authenticator,
                      auth_require_tls=False)
    smtp.start()
    caplog.set_level(logging.DEBUG)
    try:
        with http_receiver() as rx:
            rx.fail_status = 500
            set_config(conn, alerting__channels__slack__enabled=True,
                       alerting__channels__webhook__enabled=True, alerting__channels__email__enabled=True,
                       alerting__channels__sms__enabled=True,
                       alerting__channels__email__smtp_host="127.0.0.1",
                       alerting__channels__email__smtp_port=smtp_port,
                       alerting__channels__email__starttls=False,
                       alerting__channels__email__username="alerts",
                       alerting__channels__email__recipients=["dba@example.test"],
                       alerting__channels__sms__gateway_url=rx.url,
                       alerting__channels__sms__account_sid="AC1",
                       alerting__channels__sms__recipients=["+15550000"],
                       alerting__retry_base_seconds=0.01, alerting__max_delivery_attempts=8)
            add_gauge_rule(conn, value=99)  # emergency: every channel
            conn.execute("SELECT perfmon.analyze()")
            base = {"PGPERFMON_WEBHOOK_SIGNING_KEY": signing_key, "PGPERFMON_SMTP_PASSWORD": smtp_password,
                    "PGPERFMON_SMS_TOKEN": sms_token}
            attempts = [  # each a way a URL with a token fails
                {"PGPERFMON_SLACK_WEBHOOK_URL": f"{rx.url}/services/T0/B0/{slack_token}",
                 "PGPERFMON_WEBHOOK_URL": f"http://127.0.0.1:1/hook?token={hook_token}"},
                {"PGPERFMON_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{rx.port}/services/{slack_token} x",
                 "PGPERFMON_WEBHOOK_URL": f"127.0.0.1/hook/{hook_token}"},
            ]
            # Beside the database: pgperfmon deliver, reading its environment.
            for env in attempts:
                for key, value in {**base, **env}.items():
                    monkeypatch.setenv(key, value)
                result = CliRunner().invoke(cli.main, ["deliver", "--once", "--dsn", installed])
                assert result.exit_code == 0, result.output
                assert "failed" in result.output or "pending" in result.output, result.output
                for secret in [*secrets_, *auth_blobs]:
                    assert secret not in result.output, f"deliver printed {secret}:\n{result.output}"
                conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
            # In the database: the PL/Python worker, with the secrets in its backend's environment
            # (set with statement logging off: that statement is the test's, not pgperfmon's).
            with psycopg.connect(installed, autocommit=True) as backend:
                backend.execute("SET log_statement = 'none'")
                backend.execute(sql.SQL("DO {} LANGUAGE plpython3u").format(sql.Literal(
                    "import os; os.environ.update(" + repr({**base, **attempts[0]}) + ")")))
                backend.execute("SET log_statement = 'all'")
                backend.execute("CALL perfmon.deliver_alerts()")
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
            with psycopg.connect(installed) as wconn:  # and the library call, once more
                alerting.deliver_due(wconn, "test", env={**base, **attempts[1]})
    finally:
        smtp.stop()
    errors = conn.execute("SELECT channel, error FROM perfmon.delivery_log WHERE NOT ok").fetchall()
    assert {c for c, _ in errors} == {"slack", "webhook", "email", "sms"}, errors
    assert all(e for _, e in errors), "every failure says why"
    assert any("535" in e for c, e in errors if c == "email"), errors
    assert any("malformed: it holds a space" in e for c, e in errors if c == "slack"), errors
    log = logged_db.text()
    assert "perfmon.outbox_result" in log, "the server log does not show the delivery's statements"
    # pgperfmon's own records (the stand-in SMTP server logs what it is sent, by design).
    python_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pgperfmon"))
    for secret in [*secrets_, *auth_blobs]:
        assert perfmon_text_holding(conn, secret) == [], secret
        assert secret not in log, f"the server log holds {secret}"
        assert secret not in python_log


@pytest.mark.parametrize("case", ["tab_in_the_path", "bracketed_host"])
def test_a_malformed_webhook_url_is_named_in_errors_never_quoted(
        server, conn: psycopg.Connection, installed: str, logged_db: ServerLog, case: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # urllib's complaint quoted the URL: the path around a tab ('/***/T0/B0/<token>\\t***'),
    # the host of https://[host]/... ('<host>' does not appear to be an IPv4 or IPv6 address).
    token, host = distinctive("SlackTok"), distinctive("SlackHost")
    url, problem = {
        "tab_in_the_path": (f"https://{host}.example.test/services/T0/B0/{token}\tx", "it holds a tab"),
        "bracketed_host": (f"https://[{host}]/services/T0/B0/{token}",
                           "its host cannot be parsed (a [bracketed] host must be an IPv6 address)"),
    }[case]
    expected = f"the URL in PGPERFMON_SLACK_WEBHOOK_URL is malformed: {problem}; nothing was sent"
    set_config(conn, alerting__channels__slack__enabled=True)
    add_gauge_rule(conn, value=99)
    conn.execute("SELECT perfmon.analyze()")
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PGPERFMON_SLACK_WEBHOOK_URL", url)
    result = CliRunner().invoke(cli.main, ["deliver", "--once", "--dsn", installed])
    assert result.exit_code == 0, result.output
    assert f"slack: pending ({expected})" in result.output
    conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
    with psycopg.connect(installed, autocommit=True) as backend:  # and the in-database worker
        backend.execute("SET log_statement = 'none'")
        backend.execute(sql.SQL("DO {} LANGUAGE plpython3u").format(sql.Literal(
            "import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = " + repr(url))))
        backend.execute("SET log_statement = 'all'")
        backend.execute("CALL perfmon.deliver_alerts()")
    assert conn.execute("SELECT worker, error FROM perfmon.delivery_log ORDER BY attempt").fetchall() == [
        (f"pgperfmon@{os.uname().nodename}", expected), ("database", expected)]
    assert conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchall() == [
        ("pending", expected)]
    log = logged_db.text()
    assert "perfmon.outbox_result" in log, "the server log does not show the delivery's statements"
    python_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pgperfmon"))
    for secret in (token, host):
        assert perfmon_text_holding(conn, secret) == [], secret
        assert secret not in log and secret not in python_log and secret not in result.output


def test_an_upgrade_masks_texts_stored_before_a_spelling_was_known(installed: str) -> None:
    """Texts stored by a release whose redaction missed a spelling (PASSWORD U&'...') stay in
    perfmon.statements: the install masks them with the current perfmon.redact_secrets()."""
    secret = distinctive("Stored-Pw")
    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute("INSERT INTO perfmon.statements (server_id, userid, dbid, queryid, toplevel, query) "
                     "VALUES (0, 10, 1, -42, true, %s)", (f"ALTER ROLE app PASSWORD U&'{secret}'",))
    report = deploy.install(installed, config.load(None, env={}))
    assert "masked passwords in 1 stored query texts" in report.changes
    with psycopg.connect(installed) as conn:
        assert perfmon_text_holding(conn, secret) == []
        assert conn.execute("SELECT query FROM perfmon.statements WHERE queryid = -42").fetchone() == (
            "ALTER ROLE app PASSWORD '***'",)
    assert deploy.install(installed, config.load(None, env={})).changes == []


def test_a_dsn_without_a_user_is_described_with_libpqs_default_user(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGUSER", "PGHOST", "PGPORT", "PGDATABASE"):
        monkeypatch.delenv(var, raising=False)
    me = getpass.getuser()
    assert db.describe("") == f"{me}@local socket:5432/{me}"  # was "@local socket:5432/"
