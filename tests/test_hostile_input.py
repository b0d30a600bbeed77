"""Hostile input: random and malicious text through every text input pgperfmon takes.

Each test pushes hypothesis-generated strings (quotes, backslashes, NUL bytes, SQL
and dollar-quote injections, format markers, very long strings, RTL and emoji,
control characters, JSON-breaking text, identifiers with dots and quotes) through
one input, on one database per module, and checks after every example that:

- nothing executed: the canary table is intact and no object appeared or vanished
  (``Hostile.assert_intact`` compares the catalog with its state before);
- the server still runs: a new connection answers;
- accepted data round-trips exactly, and what was accepted before is still there;
- refused input gets an error naming the problem (the server's ``pgperfmon: ...``
  with the field, or the client's own for text PostgreSQL cannot hold: NUL bytes,
  lone surrogates), never a crash or a traceback.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import logging
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pydantic
import pytest
import yaml
from agent_login import agent_login
from aiosmtpd.controller import Controller
from alert_servers import http_receiver, set_config
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from pgperfmon import alerting, cli, config, deploy, ingest
from pgperfmon.heartbeat import STATUSES, Heartbeat

# ----------------------------------------------------------------------------- inputs

PAYLOADS = [
    "", " ", "'", "''", "\\", "\\'", "';--", "'; DROP TABLE public.canary; --",
    "\"; DROP TABLE public.canary; --", "x'); DELETE FROM perfmon.agents; --",
    "'; CREATE TABLE public.pwned (); --", "$$", "$$; DROP TABLE public.canary; $$",
    "$q$ DROP TABLE public.canary $q$", "%I", "%s", "%L", "%1$s", "%%", "%", "_", "{}", "{0}",
    "\x00", "a\x00b", "\ud800", "x\udfffy", "\u202egnp.exe", "مرحبا", "שלום עולם", "名前", "\U0001F680",
    "👨\u200d👩\u200d👧", "\r\n", "\n", "\t", "\x1b[31mred", "\x7f", "\x85", "\u2028",
    '{"a": 1}', '"}]}', "\\u0000", '\\"', "null", "NULL", "true", "[]",
    "perfmon.agents", "public.canary", '"public"."canary"', "a.b.c", '"a"".b"', "-- comment",
    "/* x */", "1; SELECT pg_terminate_backend(pg_backend_pid())", "x" * 10_000, "é" * 3000,
    "\\x00", "%n%n%n", "${jndi:ldap://x}", "<script>alert(1)</script>",
]

any_char = st.characters(codec=None, categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co"])
hostile_text = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(max_size=80),
    st.text(any_char, max_size=40),
    st.tuples(st.sampled_from(PAYLOADS), st.text(max_size=20), st.sampled_from(PAYLOADS)).map("".join),
)
HOSTILE = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


def unstorable(text: str) -> bool:
    """Text a PostgreSQL text value cannot hold at all."""
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def assert_clear_refusal(exc: BaseException, *words: str) -> None:
    """A refusal that names the problem: which field, or which characters."""
    text = str(exc)
    if isinstance(exc, UnicodeEncodeError):
        assert "surrogates not allowed" in text
    elif isinstance(exc, psycopg.DataError) and "NUL (0x00)" in text:
        pass  # the client's own: "PostgreSQL text fields cannot contain NUL (0x00) bytes"
    elif isinstance(exc, (psycopg.errors.UntranslatableCharacter,
                          psycopg.errors.InvalidTextRepresentation)) and "json" in text.lower():
        detail = exc.diag.message_detail or ""
        assert "\\u0000" in detail or "surrogate" in detail, detail  # the JSON's \u0000 or surrogate
    else:
        assert isinstance(exc, psycopg.errors.InvalidParameterValue | psycopg.errors.RaiseException), (
            f"{type(exc).__name__}: {text}")
        assert text.startswith("pgperfmon:"), text
        assert any(w in text for w in words), f"{text!r} names none of {words}"


# ----------------------------------------------------------------------------- the database

# Every object a statement could create, outside the system schemas (which only a
# superuser may change) and temporary ones; history partitions come and go by design.
OBJECTS = """
    SELECT 'relation ' || c.oid::regclass::text FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND NOT c.relispartition
       AND NOT EXISTS (SELECT FROM pg_index AS i JOIN pg_class AS t ON t.oid = i.indrelid
                        WHERE i.indexrelid = c.oid AND t.relispartition)
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc AS p
      JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname !~ '^pg_(temp|toast_temp)'
    UNION ALL SELECT 'role ' || rolname FROM pg_roles
    UNION ALL SELECT 'database ' || datname FROM pg_database
    UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger
     WHERE NOT tgisinternal
    UNION ALL SELECT 'rule ' || rulename || ' on ' || ev_class::regclass::text FROM pg_rewrite
     WHERE rulename <> '_RETURN'
    UNION ALL SELECT 'policy ' || polname FROM pg_policy
    UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger
    UNION ALL SELECT 'extension ' || extname FROM pg_extension
"""
CANARY = [(1, "alive"), (2, "'; DROP TABLE public.canary; --")]


class Hostile:
    """The module's database, its connections, and what the examples so far stored."""

    def __init__(self, dsn: str, agent_dsn: str, admin: psycopg.Connection,
                 pause_jobs: Callable[[], None]):
        self.dsn, self.agent_dsn, self.admin, self.pause_jobs = dsn, agent_dsn, admin, pause_jobs
        self.objects: set[str] = set()
        self.agents: dict[str, int] = {}  # accepted so far, checked again after every example

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example
        return f"Hostile({self.dsn.split('dbname=')[1].split()[0]})"

    def snapshot(self) -> set[str]:
        return {r[0] for r in self.admin.execute(OBJECTS)}

    def assert_intact(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as fresh:
            assert fresh.execute("SELECT id, v FROM public.canary ORDER BY id").fetchall() == CANARY
            now = {r[0] for r in fresh.execute(OBJECTS)}
        assert now == self.objects, f"appeared: {now - self.objects}; vanished: {self.objects - now}"
        stored = dict(self.admin.execute("SELECT name, heartbeats FROM perfmon.agents").fetchall())
        assert stored == self.agents, "heartbeats accepted before are no longer as they were"


@pytest.fixture(scope="module")
def h(server, module_db: tuple[str, str]) -> Iterator[Hostile]:
    name, dsn = module_db
    with agent_login(server, name) as agent_dsn, psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE public.canary (id int PRIMARY KEY, v text)")
        admin.cursor().executemany("INSERT INTO public.canary VALUES (%s, %s)", CANARY)
        admin.execute("GRANT ALL ON public.canary TO PUBLIC")  # so that an injection could reach it
        state = Hostile(dsn, agent_dsn, admin, lambda: server.pause_jobs(name))
        state.objects = state.snapshot()
        yield state
        state.assert_intact()


# ----------------------------------------------------------------------------- heartbeats

@HOSTILE
@given(agent=hostile_text, status=st.one_of(st.sampled_from((*STATUSES, "OK", "Down")), hostile_text),
       key=hostile_text, value=hostile_text)
@example(agent="it's; DROP TABLE public.canary; --", status="OK", key="$$", value="%I")
@example(agent="x" * 201, status="ok", key="k", value="v")
@example(agent="tab\there", status="ok", key="k", value="v")
@example(agent="a\x00b", status="ok", key="k", value="v")
@example(agent="w", status="fine'; --", key="\\u0000", value="\x00")
def test_heartbeat_sql_stores_hostile_text_exactly_or_refuses_it_clearly(
        h: Hostile, agent: str, status: str, key: str, value: str) -> None:
    details = {key: value}
    with psycopg.connect(h.agent_dsn, autocommit=True) as aconn:
        try:
            aconn.execute("SELECT perfmon.agent_heartbeat(%s, %s, 1.5, 0, %s)",
                          (agent, status, Jsonb(details)))
            accepted = True
        except (psycopg.Error, UnicodeEncodeError) as exc:
            accepted = False
            assert_clear_refusal(exc, "agent name", "status", "details")
    plain = 0 < len(agent) <= 200 and agent.isprintable() and not unstorable(agent + key + value)
    if plain and status in (*STATUSES, "OK", "Down") and len(json.dumps(details)) < 4000:
        assert accepted, "a well-formed heartbeat was refused"
    if len(agent) > 200 or not agent or has_control(agent) or (
            status.isascii() and status.lower() not in STATUSES):
        assert not accepted, "a malformed heartbeat was accepted"
    if accepted:
        h.agents[agent] = h.agents.get(agent, 0) + 1
        row = h.admin.execute(
            "SELECT a.last_status, b.details FROM perfmon.agents a JOIN perfmon.agent_heartbeats b "
            "USING (agent_id) WHERE a.name = %s ORDER BY b.ts DESC LIMIT 1", (agent,)).fetchone()
        assert row == (status.lower(), details)
    h.assert_intact()


@HOSTILE
@given(agent=hostile_text, status=st.one_of(st.sampled_from(STATUSES), hostile_text),
       key=hostile_text, value=hostile_text)
@example(agent="\ud800", status="ok", key="k", value="v")
@example(agent="a\x00b", status="ok", key="k", value="v")
@example(agent="w", status="ok", key="k", value="\udfff")
def test_heartbeat_helper_never_raises_and_logs_why_it_refused(
        h: Hostile, agent: str, status: str, key: str, value: str) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("pgperfmon.heartbeat")
    log.addHandler(handler)
    try:
        with Heartbeat(h.agent_dsn, agent=agent, expected_interval_s=30) as hb:
            sent = hb.beat(status, 2.0, 0, {key: value})  # must not raise, whatever the text
    finally:
        log.removeHandler(handler)
    if sent:
        h.agents[agent] = h.agents.get(agent, 0) + 1
        assert h.admin.execute(
            "SELECT b.details FROM perfmon.agents a JOIN perfmon.agent_heartbeats b USING (agent_id) "
            "WHERE a.name = %s ORDER BY b.ts DESC LIMIT 1", (agent,)).fetchone() == ({key: value},)
    else:
        messages = [r.getMessage() for r in records]
        assert len(messages) == 1 and "refused: " in messages[0], messages
        reason = messages[0].split("refused: ", 1)[1]
        assert re.search(r"pgperfmon: (agent name|status|details)|NUL \(0x00\)|surrogates not allowed|"
                         r"\\u0000 cannot be converted|surrogate", reason), reason
    h.assert_intact()


# ----------------------------------------------------------------------------- metrics

UNITS = ["count", "pct", "ms", "bytes", "per_s"]
metric_names = st.one_of(hostile_text, st.from_regex(r"[a-z][a-z0-9_]{0,12}(\.[a-z0-9_]{1,10}){0,3}",
                                                     fullmatch=True))
label_keys = st.one_of(hostile_text, st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True))


@HOSTILE
@given(metric=metric_names, key=label_keys, value=hostile_text,
       unit=st.one_of(st.sampled_from(UNITS), hostile_text))
@example(metric="host.cpu.user_pct'; DROP TABLE public.canary; --", key="k", value="v", unit="pct")
@example(metric="shop.orders", key="region", value="'; DROP TABLE public.canary; --", unit="count")
@example(metric="shop.orders", key="a.b", value="v", unit="count")
def test_ingest_metric_stores_hostile_names_and_labels_exactly_or_refuses_them(
        h: Hostile, metric: str, key: str, value: str, unit: str) -> None:
    before = h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0]
    with psycopg.connect(h.agent_dsn, autocommit=True) as aconn:
        try:
            aconn.execute("SELECT perfmon.ingest_metric(%s, 42.5, now(), %s, %s)",
                          (metric, Jsonb({key: value}), unit))
            accepted = True
        except (psycopg.Error, UnicodeEncodeError) as exc:
            accepted = False
            assert_clear_refusal(exc, "metric name", "label", "unit", "refused", "is measured in")
    good_name = re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*", metric) and len(metric) <= 100
    good_label = re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", key) and len(value) <= 200
    if not good_name or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", key):
        assert not accepted, "a malformed metric name or label name was accepted"
    after = h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0]
    if accepted:
        assert good_label
        assert after == before + 1
        stored = h.admin.execute(
            "SELECT labels, value FROM perfmon.metric_values WHERE metric = %s AND labels = %s",
            (metric, Jsonb({key: value}))).fetchall()
        assert ({key: value}, 42.5) in stored
    else:
        assert after == before
    h.assert_intact()


@HOSTILE
@given(agent=hostile_text, series=st.lists(st.tuples(metric_names, label_keys, hostile_text),
                                           min_size=1, max_size=4))
def test_writer_batches_with_hostile_series_keep_the_good_rows(
        h: Hostile, agent: str, series: list[tuple[str, str, str]]) -> None:
    ts = h.admin.execute("SELECT now()").fetchone()[0]
    rows = [(i, ingest.series_key(m, {k: v}, "count"), ts, float(i)) for i, (m, k, v) in
            enumerate(series, start=1)]
    before = h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0]
    with psycopg.connect(h.agent_dsn) as aconn:
        try:
            result = ingest.Writer(aconn, agent=agent).send(uuid.uuid4(), rows)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            assert_clear_refusal(exc, "agent name")
            assert len(agent) > 200 or has_control(agent) or unstorable(
                agent + "".join(m + k + v for m, k, v in series))
            assert h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0] == before
            h.assert_intact()
            return
    after = h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0]
    assert after - before == result.stored and result.stored + result.refused == len(rows)
    for seq, reason in result.errors:
        assert seq in range(1, len(rows) + 1) and reason, (seq, reason)
    h.assert_intact()


# ----------------------------------------------------------------------------- CSV ingest

csv_field = st.one_of(hostile_text, st.floats(allow_nan=True).map(repr),
                      st.datetimes(timezones=st.just(None)).map(lambda d: d.isoformat()))
csv_line = st.lists(csv_field, min_size=0, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(csv_line, max_size=8), raw=st.binary(max_size=60),
       metric=st.one_of(st.just("business.hostile_csv"), hostile_text),
       label=st.tuples(label_keys, hostile_text))
@example(lines=[["2024-01-01", "1"]], raw=b"\xff\xfe,1\n", metric="business.hostile_csv", label=("k", "v"))
@example(lines=[], raw=b"", metric="business.hostile_csv", label=("k", "\x00"))
def test_ingest_cli_loads_hostile_csv_without_a_traceback(
        h: Hostile, tmp_path_factory: pytest.TempPathFactory, lines: list[list[str]], raw: bytes,
        metric: str, label: tuple[str, str]) -> None:
    now = h.admin.execute("SELECT now()::text").fetchone()[0]
    good = [[now, "1.5"], [now, "2.5"]]  # two rows that must be stored whatever surrounds them
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for record in [*lines[:4], *good, *lines[4:]]:
        writer.writerow(record)
    data = buffer.getvalue().encode("utf-8", "surrogatepass") + raw  # raw: not even UTF-8
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_bytes(data)
    before = h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0]
    result = CliRunner().invoke(cli.main, [
        "ingest", "--dsn", h.agent_dsn, "--metric", metric, "--unit", "count",
        "--label", f"{label[0]}={label[1]}", "--input", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    stored = h.admin.execute("SELECT count(*) FROM perfmon.metric_samples").fetchone()[0] - before
    if result.exit_code == 0 or "stored " in result.output:
        summary = re.search(r"stored (\d+) values of .*, refused (\d+)", result.output)
        assert summary, result.output
        assert int(summary.group(1)) == stored >= 2, "the well-formed rows were lost"
        refused = [ln for ln in result.output.splitlines() if ln.startswith("refused line ")]
        assert len(refused) == int(summary.group(2))
        assert all(re.match(r"refused line \d+: \S", ln) for ln in refused), refused
    else:
        assert result.exit_code == 1 and stored == 0
        assert result.output.startswith("error: "), result.output
        assert re.search(r"metric .* refused|--label|NUL|surrogate|\\u0000 cannot be converted",
                         result.output), result.output
    h.assert_intact()


# ----------------------------------------------------------------------------- configuration

STRING_KEYS = [
    ("alerting", "channels", "email", "smtp_host"), ("alerting", "channels", "email", "sender"),
    ("alerting", "channels", "email", "username"), ("alerting", "channels", "sms", "sender"),
    ("alerting", "channels", "sms", "gateway_url"), ("alerting", "channels", "sms", "account_sid"),
]
LIST_KEYS = [("alerting", "channels", "email", "recipients"), ("collection", "exclude_schemas"),
             ("optimization", "auto_recovery", "cancel_long_queries", "allow_roles")]


def _nest(path: tuple[str, ...], value: Any) -> dict:
    out: dict = {}
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return out


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) else v
    return a


@HOSTILE
@given(values=st.lists(hostile_text, min_size=len(STRING_KEYS) + len(LIST_KEYS),
                       max_size=len(STRING_KEYS) + len(LIST_KEYS)),
       bad_key=st.one_of(st.none(), hostile_text), raw=st.one_of(st.none(), st.binary(max_size=200)))
@example(values=["\x00"] * (len(STRING_KEYS) + len(LIST_KEYS)), bad_key=None, raw=None)
@example(values=["ok"] * (len(STRING_KEYS) + len(LIST_KEYS)), bad_key="'; DROP", raw=None)
@example(values=["ok"] * (len(STRING_KEYS) + len(LIST_KEYS)), bad_key=None, raw=b"\xff\xfe")
def test_config_validate_names_the_bad_key_and_never_crashes(
        tmp_path_factory: pytest.TempPathFactory, values: list[str], bad_key: str | None,
        raw: bytes | None) -> None:
    tree: dict = {}
    for path, value in zip(STRING_KEYS + LIST_KEYS, values, strict=True):
        _merge(tree, _nest(path, [value] if path in LIST_KEYS else value))
    if bad_key is not None:
        _merge(tree, {"alerting": {bad_key: 1}})
    path = tmp_path_factory.mktemp("cfg") / "performance_monitoring.yml"
    if raw is None:
        path.write_text(yaml.safe_dump(tree, allow_unicode=False), encoding="utf-8")
    else:
        path.write_bytes(raw)
    result = CliRunner().invoke(cli.main, ["config", "validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert result.output.startswith(f"{path}: valid")
        if raw is None:  # what the file says is what is kept, to the character
            written = yaml.safe_load(path.read_text(encoding="utf-8"))
            stored = config.flatten(config.load(path, env={}))
            for key in STRING_KEYS + LIST_KEYS:
                node = written
                for part in key:
                    node = node[part]
                assert stored[".".join(key)] == node
            assert not any(unstorable(v) for v in values), "text PostgreSQL cannot store was accepted"
    else:
        assert result.exit_code == 1
        assert result.output.startswith(f"error: invalid configuration in {path}:"), result.output
        problems = result.output.splitlines()[1:]
        assert problems and problems[0].startswith("  - "), result.output
        if raw is None and bad_key not in (None, *config.Alerting.model_fields) and not unstorable(bad_key):
            assert any("unknown key" in p for p in problems), problems
        if raw is None and any(unstorable(v) for v in values):  # named, by us or by pydantic
            assert any("PostgreSQL cannot store them" in p or "unicode string" in p for p in problems), (
                problems)


@FEW
@given(values=st.lists(hostile_text.filter(lambda t: len(t) < 2000), min_size=len(STRING_KEYS),
                       max_size=len(STRING_KEYS)))
@example(values=["'; DROP TABLE public.canary; --", "$$", "%I%s", "\u202eevil", "\U0001F680", "x" * 1999])
def test_install_stores_hostile_configuration_values_exactly(h: Hostile, values: list[str]) -> None:
    tree: dict = {}
    for path, value in zip(STRING_KEYS, values, strict=True):
        _merge(tree, _nest(path, value))
    try:
        cfg = config.Config.model_validate(tree)
    except pydantic.ValidationError as exc:
        assert any(unstorable(v) for v in values), f"free text refused: {exc}"
        assert "PostgreSQL cannot store them" in str(exc)
        h.assert_intact()
        return
    saved = h.admin.execute("SELECT key, value FROM perfmon.config").fetchall()
    try:
        deploy.install(h.dsn, cfg)
        for path, value in zip(STRING_KEYS, values, strict=True):
            stored = h.admin.execute("SELECT perfmon.setting(%s)", (".".join(path),)).fetchone()[0]
            assert stored == value
    finally:
        h.admin.cursor().executemany("UPDATE perfmon.config SET value = %s WHERE key = %s",
                                     [(Jsonb(v), k) for k, v in saved])
        h.pause_jobs()  # install schedules the jobs again
    h.assert_intact()


# ----------------------------------------------------------------------------- alerting

class AlertKit:
    """A receiver for the webhook and Slack channels, and the environment naming it."""

    def __init__(self, rx: Any, env: dict[str, str]):
        self.rx, self.env = rx, env

    def __repr__(self) -> str:
        return f"AlertKit({self.rx.url})"


@pytest.fixture(scope="module")
def alert_kit(h: Hostile) -> Iterator[AlertKit]:
    h.admin.execute("CREATE TABLE public.hostile_gauge (target text PRIMARY KEY, v float8)")
    h.objects = h.snapshot()
    set_config(h.admin, alerting__channels__webhook__enabled=True, alerting__channels__slack__enabled=True,
               alerting__cooldown_minutes=0)
    with http_receiver() as rx:
        yield AlertKit(rx, {"PGPERFMON_WEBHOOK_URL": rx.url, "PGPERFMON_WEBHOOK_SIGNING_KEY": "k" * 16,
                            "PGPERFMON_SLACK_WEBHOOK_URL": rx.url + "/slack"})


def _only_the_hostile_rule(conn: psycopg.Connection) -> None:
    """The seeded rules off: the hostile agents of other examples, silent since, would
    raise agent_down alerts beside the one under test."""
    conn.execute("UPDATE perfmon.alert_rules SET enabled = false WHERE enabled")


def _deliver(h: Hostile, kit: AlertKit) -> list[dict]:
    kit.rx.received.clear()
    with psycopg.connect(h.dsn) as conn:
        alerting.deliver_due(conn, "hostile", env=kit.env)
    return [r.json() for r in kit.rx.received]


@HOSTILE
@given(metric=hostile_text, unit=hostile_text, impact=hostile_text, actions=hostile_text,
       system=hostile_text, target=hostile_text)
@example(metric='"}]}', unit="%s", impact="\r\nBcc: x@example.test", actions="$$", system="\\",
         target="'; DROP TABLE public.canary; --")
def test_alert_rule_fields_survive_evaluation_and_delivery_exactly(
        h: Hostile, alert_kit: AlertKit, metric: str, unit: str, impact: str, actions: str,
        system: str, target: str) -> None:
    fields = [metric, unit, impact, actions, system, target]
    conn = h.admin
    conn.execute("DELETE FROM perfmon.alert_log")
    conn.execute("DELETE FROM perfmon.alert_rules WHERE name = 'hostile'")
    conn.execute("TRUNCATE public.hostile_gauge")
    _only_the_hostile_rule(conn)
    try:
        conn.execute(
            """INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison, warning_threshold,
                   hold_seconds, business_impact, affected_systems, recommended_actions, description)
               VALUES ('hostile', %s, %s, 'SELECT target, v, NULL::text, NULL::jsonb
                       FROM public.hostile_gauge', '>', 70, 0, %s, ARRAY[%s], %s, 'hostile text')""",
            (metric, unit, impact, system, actions))
        conn.execute("INSERT INTO public.hostile_gauge VALUES (%s, 80)", (target,))
    except (psycopg.DataError, UnicodeEncodeError) as exc:
        assert any(unstorable(f) for f in fields)
        assert_clear_refusal(exc)
        h.assert_intact()
        return
    result = conn.execute("SELECT perfmon.evaluate_alerts()").fetchone()[0]
    assert "error" not in result.get("rules", {}).get("hostile", {}), result
    row = conn.execute("SELECT metric, unit, target, business_impact, affected_systems, recommended_actions, "
                       "state FROM perfmon.alerts WHERE rule = 'hostile'").fetchone()
    assert row == (metric, unit, target, impact, [system], actions, "firing")
    payloads = _deliver(h, alert_kit)
    assert {c for (c,) in conn.execute("SELECT DISTINCT status FROM perfmon.alert_outbox")} == {"delivered"}
    webhook = [p for p in payloads if "alert" in p]
    assert len(webhook) == 1
    alert = webhook[0]["alert"]
    assert (alert["metric"], alert["unit"], alert["target"], alert["business_impact"],
            alert["affected_systems"], alert["recommended_actions"]) == (
        metric, unit, target, impact, [system], actions)
    slack = [p for p in payloads if "blocks" in p]
    assert len(slack) == 1
    # Slack shows a mrkdwn field with its three entities decoded; a raw < > & would be a control.
    field = next(f["text"] for f in slack[0]["blocks"][1]["fields"] if f["text"].startswith("*Target*\n"))
    shown = field.removeprefix("*Target*\n").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert shown == target and not any(c in field.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
                                       for c in "<>&"), field
    h.assert_intact()


def test_email_of_an_alert_on_a_target_with_line_breaks_is_sent(h: Hostile, alert_kit: AlertKit) -> None:
    """A target may hold line breaks (a table named "a\\nb"): the mail goes out all the same."""
    mails: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    conn = h.admin
    try:
        conn.execute("DELETE FROM perfmon.alert_log")
        conn.execute("DELETE FROM perfmon.alert_rules WHERE name = 'hostile'")
        conn.execute("TRUNCATE public.hostile_gauge")
        _only_the_hostile_rule(conn)
        conn.execute("""INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison,
                            warning_threshold, business_impact, affected_systems, recommended_actions,
                            description)
                        VALUES ('hostile', 'x', 'pct', 'SELECT target, v, NULL::text, NULL::jsonb
                                FROM public.hostile_gauge', '>', 70, 'i', '{}', 'a', 'd')""")
        target = "evil\r\nBcc: attacker@example.test\r\n\r\nbody"
        conn.execute("INSERT INTO public.hostile_gauge VALUES (%s, 80)", (target,))
        set_config(conn, alerting__channels__email__enabled=True,
                   alerting__channels__email__smtp_host="127.0.0.1",
                   alerting__channels__email__smtp_port=port, alerting__channels__email__starttls=False,
                   alerting__channels__email__recipients=["dba@example.test"],
                   alerting__channels__webhook__enabled=False, alerting__channels__slack__enabled=False)
        conn.execute("SELECT perfmon.evaluate_alerts()")
        with psycopg.connect(h.dsn) as wconn:
            alerting.deliver_due(wconn, "hostile", env={"PGPERFMON_SMTP_PASSWORD": "unused-password"})
        status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox "
                                     "WHERE channel = 'email'").fetchone()
        assert (status, error) == ("delivered", None)
        assert len(mails) == 1 and mails[0].rcpt_tos == ["dba@example.test"], "no header was injected"
        mail = email.message_from_bytes(mails[0].content, policy=email.policy.default)
        assert "Bcc" not in mail and "evil" in mail["Subject"]
        assert "Target: evil" in mail.get_content(), "the body keeps the target as it is"
    finally:
        controller.stop()
        set_config(conn, alerting__channels__email__enabled=False, alerting__channels__webhook__enabled=True,
                   alerting__channels__slack__enabled=True)
    h.assert_intact()


@HOSTILE
@given(pattern=hostile_text, reason=hostile_text, note=hostile_text, by=hostile_text)
@example(pattern="%\\", reason="deploy", note="n", by="b")
@example(pattern="\\", reason="deploy", note="n", by="b")
@example(pattern="%", reason="  ", note="'; DROP TABLE public.canary; --", by="$$")
def test_silences_and_acknowledgements_store_hostile_text_and_never_break_evaluation(
        h: Hostile, alert_kit: AlertKit, pattern: str, reason: str, note: str, by: str) -> None:
    conn = h.admin
    conn.execute("DELETE FROM perfmon.silences")
    if conn.execute("SELECT count(*) FROM perfmon.alert_log WHERE state <> 'resolved'").fetchone()[0] == 0:
        conn.execute("TRUNCATE public.hostile_gauge")
        conn.execute("INSERT INTO public.hostile_gauge VALUES ('app', 80)")
        conn.execute("""INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison,
                            warning_threshold, business_impact, affected_systems, recommended_actions,
                            description)
                        VALUES ('hostile', 'x', 'pct', 'SELECT target, v, NULL::text, NULL::jsonb
                                FROM public.hostile_gauge', '>', 70, 'i', '{}', 'a', 'd')
                        ON CONFLICT (name) DO NOTHING""")
        conn.execute("SELECT perfmon.evaluate_alerts()")
    alert_id = conn.execute("SELECT alert_id FROM perfmon.alert_log WHERE state <> 'resolved' LIMIT 1"
                            ).fetchone()[0]
    try:
        silence = conn.execute("SELECT perfmon.silence_alerts(NULL, %s, '1 hour', %s)", (pattern, reason)
                               ).fetchone()[0]
        assert conn.execute("SELECT target_pattern, reason FROM perfmon.silences WHERE silence_id = %s",
                            (silence,)).fetchone() == (pattern, reason)
    except (psycopg.Error, UnicodeEncodeError) as exc:
        assert_clear_refusal(exc, "target_pattern", "reason")
        assert unstorable(pattern + reason) or not reason.strip() or pattern.endswith("\\")
    # Whatever was stored, evaluation and the alerts view still work.
    result = conn.execute("SELECT perfmon.evaluate_alerts()").fetchone()[0]
    assert "error" not in result, result
    assert conn.execute("SELECT count(*) FROM perfmon.alerts").fetchone()[0] >= 1
    try:
        row = conn.execute("SELECT ack_note, acked_by FROM perfmon.ack_alert(%s, %s, %s)",
                           (alert_id, note, by)).fetchone()
        assert row == (note, by)
        details = conn.execute("SELECT details FROM perfmon.alert_events WHERE alert_id = %s "
                               "AND event = 'acknowledged' ORDER BY event_id DESC LIMIT 1",
                               (alert_id,)).fetchone()[0]
        assert details == {"by": by, "note": note}
    except (psycopg.Error, UnicodeEncodeError) as exc:
        assert unstorable(note + by)
        assert_clear_refusal(exc)
    h.assert_intact()


NEW_RECOMMENDATION = """
    INSERT INTO perfmon.recommendation_log (fingerprint, rule, kind, severity, target, finding,
           confidence, first_seen, last_seen, status_changed)
    VALUES (gen_random_uuid()::text, 'r', 'k', 'warning', 't', 'f', 'high', now(), now(), now())
    RETURNING id"""


@HOSTILE
@given(reason=hostile_text, note=hostile_text,
       rec_id=st.one_of(hostile_text, st.integers(min_value=-2**63, max_value=2**63 - 1).map(str)))
@example(reason="", note="n", rec_id="1; DROP TABLE public.canary")
@example(reason="'; DROP TABLE public.canary; --", note="%s", rec_id="99999999999999999999")
def test_dismiss_and_mark_applied_take_hostile_reasons_and_ids(
        h: Hostile, reason: str, note: str, rec_id: str) -> None:
    conn = h.admin
    real = conn.execute(NEW_RECOMMENDATION).fetchone()[0]
    try:
        row = conn.execute("SELECT status, status_reason FROM perfmon.dismiss(%s, %s)", (real, reason)
                           ).fetchone()
        assert row == ("dismissed", reason)
    except (psycopg.Error, UnicodeEncodeError) as exc:
        assert_clear_refusal(exc, "say why")
        assert unstorable(reason) or not reason.strip()
    other = conn.execute(NEW_RECOMMENDATION).fetchone()[0]
    try:
        assert conn.execute("SELECT status_reason FROM perfmon.mark_applied(%s, %s)", (other, note)
                            ).fetchone() == (note,)
    except (psycopg.Error, UnicodeEncodeError) as exc:
        assert unstorable(note)
        assert_clear_refusal(exc)
    # An id typed by a person: a number that names no recommendation, or not a number at all.
    try:
        row = conn.execute("SELECT id FROM perfmon.dismiss(%s::bigint, 'by id')", (rec_id,)).fetchone()
        assert conn.execute("SELECT status_reason FROM perfmon.recommendation_log WHERE id = %s",
                            row).fetchone() == ("by id",), "only an existing recommendation is dismissed"
    except psycopg.errors.InvalidTextRepresentation as exc:
        assert 'invalid input syntax for type bigint: "' in str(exc)
    except psycopg.errors.NumericValueOutOfRange as exc:
        assert "out of range for type bigint" in str(exc)
    except (psycopg.Error, UnicodeEncodeError) as exc:
        assert_clear_refusal(exc, "no recommendation with id")
    h.assert_intact()


identifier = st.one_of(st.sampled_from(['a"b', "a.b", "A B", "x;DROP TABLE public.canary", "名前",
                                        "\U0001F680", "$$", "%I", "x" * 63, "Ünïcode", "'q'"]),
                       st.text(st.characters(codec="utf-8", exclude_characters="\x00"),
                               min_size=1, max_size=30))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(table=identifier, column=identifier)
def test_approved_indexes_on_hostile_identifiers_are_built_on_exactly_that_table(
        h: Hostile, table: str, column: str) -> None:
    conn = h.admin
    conn.execute("DROP SCHEMA IF EXISTS hostile_ids CASCADE")
    conn.execute("CREATE SCHEMA hostile_ids")
    conn.execute("DELETE FROM perfmon.index_approvals")
    try:
        conn.execute(sql.SQL("CREATE TABLE hostile_ids.{} ({} int)").format(sql.Identifier(table),
                                                                             sql.Identifier(column)))
    except psycopg.Error as exc:  # e.g. names PostgreSQL itself refuses
        pytest.fail(f"could not create the test table {table!r}({column!r}): {exc}")
    real_table, real_column = conn.execute(
        "SELECT c.relname::text, a.attname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relnamespace = 'hostile_ids'::regnamespace AND a.attnum = 1").fetchone()
    # Too long a name is cut to 63 bytes by PostgreSQL: approve the name it has.
    approval = conn.execute("SELECT perfmon.approve_index('hostile_ids', %s, ARRAY[%s])",
                            (real_table, real_column)).fetchone()[0]
    assert conn.execute("SELECT table_name, columns FROM perfmon.index_approvals WHERE approval_id = %s",
                        (approval,)).fetchone() == (real_table, [real_column])
    with pytest.raises(psycopg.errors.RaiseException, match="pgperfmon: no table"):
        conn.execute("SELECT perfmon.approve_index('hostile_ids', %s, ARRAY[%s])",
                     ("'; DROP TABLE public.canary; --" + real_table, real_column))
    plan = conn.execute("SELECT target FROM perfmon.recovery_plan_indexes('{}')").fetchall()
    assert len(plan) == 1
    target = plan[0][0]
    conn.execute(alerting.deferred_statement("create_approved_indexes", target))
    built = conn.execute(
        "SELECT i.indrelid::regclass = (SELECT oid FROM pg_class WHERE relname = %s AND relnamespace = "
        "'hostile_ids'::regnamespace)::regclass FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relnamespace = 'hostile_ids'::regnamespace", (real_table,)).fetchall()
    assert built == [(True,)], "the index was built on another table, or not at all"
    assert conn.execute("SELECT count(*) FROM perfmon.recovery_plan_indexes('{}')").fetchone() == (0,)
    conn.execute("DROP SCHEMA hostile_ids CASCADE")
    h.assert_intact()


def quoted(name: str) -> str:
    """A name as a double-quoted identifier ("" for a quote), as in an allow_tables pattern."""
    return '"' + name.replace('"', '""') + '"'


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema=identifier, table=identifier, cut=st.integers(min_value=0))
@example(schema="a.b", table="c", cut=0)
@example(schema="a", table="b.c", cut=0)
@example(schema='x"."y', table='z', cut=1)
def test_allow_tables_patterns_of_hostile_names_allow_exactly_that_table(
        h: Hostile, schema: str, table: str, cut: int) -> None:
    """A pattern quoting a table's names allows that table and no other: not the table whose
    names read the same joined by a dot ("a.b"."c" and "a"."b.c" were both a.b.c)."""
    pattern = f"{quoted(schema)}.{quoted(table)}"
    config.TableAction(allow_tables=[pattern])  # the installer takes what the database matches
    joined = f"{schema}.{table}"
    dots = [i for i, c in enumerate(joined) if c == "."]
    other = (joined[:dots[cut % len(dots)]], joined[dots[cut % len(dots)] + 1:])
    match = "SELECT perfmon.table_pattern_match(%s, %s, %s)"
    assert h.admin.execute(match, (schema, table, Jsonb([pattern]))).fetchone() == (True,)
    if other != (schema, table):
        assert h.admin.execute(match, (*other, Jsonb([pattern]))).fetchone() == (False,), other
    assert h.admin.execute(match, (schema, table, Jsonb([joined]))).fetchone() == (
        bool(config._TABLE_PATTERN.fullmatch(joined)),), "the database and the installer disagree"
    h.assert_intact()


def test_nul_bytes_are_refused_with_a_clear_error_and_the_server_keeps_running(h: Hostile) -> None:
    """PostgreSQL text cannot hold NUL: every text entry point says so instead of crashing."""
    calls: list[tuple[str, tuple]] = [
        ("SELECT perfmon.agent_heartbeat(%s)", ("a\x00b",)),
        ("SELECT perfmon.ingest_metric(%s, 1)", ("host\x00.cpu",)),
        ("SELECT perfmon.silence_alerts(NULL, %s)", ("\x00",)),
        ("SELECT perfmon.setting(%s)", ("collection.\x00",)),
        ("SELECT perfmon.agent_heartbeat('w', 'ok', 1, 0, %s)", (Jsonb({"k": "\x00"}),)),
    ]
    for statement, args in calls:
        with psycopg.connect(h.dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.DataError) as info:
                conn.execute(statement, args)
            assert "NUL (0x00)" in str(info.value) or "\\u0000" in (info.value.diag.message_detail or "")
            assert conn.execute("SELECT 1").fetchone() == (1,), "the session survives the refusal"
    h.assert_intact()


# ----------------------------------------------------------------------------- helpers' own checks

def test_the_checks_can_fail(h: Hostile) -> None:
    """assert_intact sees a dropped canary row and a planted object (it is not a no-op)."""
    h.admin.execute("DELETE FROM public.canary WHERE id = 2")
    with pytest.raises(AssertionError):
        h.assert_intact()
    h.admin.execute("INSERT INTO public.canary VALUES (%s, %s)", CANARY[1])
    h.admin.execute("CREATE TABLE public.pwned ()")
    with pytest.raises(AssertionError, match="appeared"):
        h.assert_intact()
    h.admin.execute("DROP TABLE public.pwned")
    h.assert_intact()
    assert_clear_refusal(psycopg.errors.InvalidParameterValue("pgperfmon: agent name is missing"),
                         "agent name")
    with pytest.raises(AssertionError):
        assert_clear_refusal(psycopg.errors.SyntaxError("syntax error at or near"), "agent name")

