"""Application agents: perfmon.agent_heartbeat(), the Python helper, perfmon.agent_health
(up/stale/down, p50/p95, error rate, MTTR) and perfmon.application_load."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from agent_login import agent_login

from helpers import collect
from pgperfmon.heartbeat import Heartbeat, heartbeat


@pytest.fixture()
def agent_dsn(installed: str, server, dbname: str) -> Iterator[str]:
    with agent_login(server, dbname) as dsn:
        yield dsn


def health(conn: psycopg.Connection, agent: str) -> dict:
    cur = conn.execute("SELECT * FROM perfmon.agent_health WHERE agent = %s", (agent,))
    row = cur.fetchone()
    assert row is not None, f"{agent} is not in perfmon.agent_health"
    return dict(zip([c.name for c in cur.description], row, strict=True))


def test_heartbeats_give_percentiles_and_error_rate(conn, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for ms in range(1, 21):  # 1..20 ms, the last four with errors
            heartbeat(aconn, "billing", "ok" if ms <= 16 else "error", float(ms), int(ms > 16),
                      expected_interval_s=30)
    h = health(conn, "billing")
    assert h["health"] == "up" and h["last_status"] == "error"
    assert h["heartbeats_1h"] == 20 and h["errors_1h"] == 4
    assert h["p50_response_ms"] == pytest.approx(10.5)
    assert h["p95_response_ms"] == pytest.approx(19.05)
    assert h["error_rate_pct"] == pytest.approx(20.0)
    assert h["expected_interval_s"] == 30
    registry = conn.execute("SELECT heartbeats, first_seen <= last_seen FROM perfmon.agents "
                            "WHERE name = 'billing'").fetchone()
    assert registry == (20, True)


def test_the_helper_times_an_operation_and_reports_its_failure(conn, agent_dsn: str) -> None:
    with Heartbeat(agent_dsn, "etl-worker", expected_interval_s=60) as hb:
        assert hb.beat()
        with hb.timed({"job": "nightly"}):
            time.sleep(0.05)
        with pytest.raises(ZeroDivisionError), hb.timed():
            1 / 0  # noqa: B018
        assert not hb.beat(status="sideways")  # refused by the server, logged, not raised
    rows = conn.execute(
        """SELECT h.status, h.response_ms, h.errors, h.details FROM perfmon.agent_heartbeats h
           JOIN perfmon.agents a USING (agent_id) WHERE a.name = 'etl-worker' ORDER BY h.ts""").fetchall()
    assert [r[0] for r in rows] == ["ok", "ok", "error"]
    assert rows[0][1] is None
    assert 50 <= rows[1][1] < 1000 and rows[1][3] == {"job": "nightly"}
    assert rows[2][2] == 1 and rows[2][3] == {"error": "ZeroDivisionError"}


def test_a_heartbeat_survives_a_lost_connection(conn, agent_dsn: str) -> None:
    hb = Heartbeat(agent_dsn, "reconnecting")
    assert hb.beat()
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = 'reconnecting'")
    time.sleep(0.2)
    assert hb.beat()
    hb.close()
    assert health(conn, "reconnecting")["heartbeats_1h"] == 2


def test_stale_down_and_mttr(conn, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for name in ("flaky", "quiet", "gone", "crashed"):
            heartbeat(aconn, name, expected_interval_s=10)
        heartbeat(aconn, "crashed", "down")
    # History of "flaky" (expected every 10 s; down after 4 intervals of silence):
    # every 10 s from -3000 s, silent after -2990 s until -2400 s (down for 590 s),
    # reported down at -1800 s and -1790 s, back at -1740 s (60 s).
    conn.execute("""
        INSERT INTO perfmon.agent_heartbeats (server_id, ts, agent_id, status, response_ms, errors)
        SELECT 1, now() - t * interval '1 second', a.agent_id,
               CASE WHEN t IN (1800, 1790) THEN 'down' ELSE 'ok' END, 1, 0
        FROM perfmon.agents a, generate_series(10, 3000, 10) AS t
        WHERE a.name = 'flaky' AND NOT (t < 2990 AND t > 2400) AND NOT (t < 1790 AND t > 1740)""")
    conn.execute("UPDATE perfmon.agents SET last_seen = now() - interval '25 seconds' WHERE name = 'quiet'")
    conn.execute("UPDATE perfmon.agents SET last_seen = now() - interval '5 minutes' WHERE name = 'gone'")
    outages = conn.execute("SELECT agent, recovery_s, cause FROM perfmon.agent_outages "
                           "ORDER BY agent, down_since").fetchall()
    assert ("flaky", pytest.approx(590.0, abs=0.01), "no heartbeat") in outages
    assert ("flaky", pytest.approx(60.0, abs=0.01), "reported down") in outages
    assert ("gone", None, "no heartbeat") in outages
    assert ("crashed", None, "reported down") in outages
    flaky = health(conn, "flaky")
    assert (flaky["health"], flaky["outages_7d"], flaky["mttr_s"]) == ("up", 2, pytest.approx(325.0))
    assert health(conn, "quiet")["health"] == "stale"
    assert health(conn, "gone")["health"] == "down"
    assert health(conn, "crashed")["health"] == "down"


def test_an_agent_that_died_after_its_first_heartbeat_goes_down(conn, agent_dsn: str) -> None:
    """One heartbeat without expected_interval_s: no interval to measure its silence in, so
    it counted as up for ever. An hour is assumed until a second heartbeat."""
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        heartbeat(aconn, "once")
    assert health(conn, "once")["health"] == "up"
    conn.execute("UPDATE perfmon.agents SET last_seen = now() - interval '3 hours' WHERE name = 'once'")
    assert health(conn, "once")["health"] == "stale"
    conn.execute("UPDATE perfmon.agents SET last_seen = now() - interval '30 days' WHERE name = 'once'")
    assert health(conn, "once")["health"] == "down"
    assert conn.execute("SELECT cause FROM perfmon.agent_outages WHERE agent = 'once'").fetchall() == [
        ("no heartbeat",)]


def agent_alerts(conn: psycopg.Connection) -> dict[str, tuple[str, str]]:
    conn.execute("SELECT perfmon.evaluate_alerts()")
    return {target: (state, level) for target, state, level in conn.execute(
        "SELECT target, state, level FROM perfmon.alert_log WHERE rule = 'agent_down'")}


def test_an_agent_gone_silent_raises_an_alert_and_its_return_resolves_it(conn, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for name in ("steady", "quiet", "gone", "crashed"):
            heartbeat(aconn, name, expected_interval_s=10)
        heartbeat(aconn, "crashed", "down")
        assert agent_alerts(conn) == {"crashed": ("firing", "critical")}
        for name, silent in (("quiet", "25 seconds"), ("gone", "5 minutes")):
            conn.execute("UPDATE perfmon.agents SET last_seen = now() - %s::interval WHERE name = %s",
                         (silent, name))
        assert agent_alerts(conn) == {"crashed": ("firing", "critical"), "quiet": ("firing", "warning"),
                                      "gone": ("firing", "critical")}
        for name in ("quiet", "gone", "crashed"):
            heartbeat(aconn, name, expected_interval_s=10)
    assert agent_alerts(conn) == {"crashed": ("resolved", "critical"), "quiet": ("resolved", "warning"),
                                  "gone": ("resolved", "critical")}


def test_many_agents_gone_silent_at_once_share_one_alert(conn, agent_dsn: str) -> None:
    """Every application logs in as perfmon_agent, one role with no identity per agent: any of
    them may beat under any name. Forty made-up names that then fell silent raised forty
    agent_down alerts, forty messages on every channel. More silent agents at once than
    alerting.agent_down_max_alerts (5) share one alert that names them."""
    conn.execute("UPDATE perfmon.config SET value = 'true' WHERE key = 'alerting.channels.webhook.enabled'")
    names = [f"fake-{i:02d}" for i in range(40)]
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for name in ("steady", *names):
            heartbeat(aconn, name, expected_interval_s=10)
    conn.execute("UPDATE perfmon.agents SET last_seen = now() - interval '5 minutes' "
                 "WHERE name LIKE 'fake-%'")
    assert agent_alerts(conn) == {"(many agents)": ("firing", "critical")}
    messages = conn.execute("SELECT count(*) FROM perfmon.alert_outbox WHERE channel = 'webhook'").fetchone()
    assert messages == (1,)
    details, impact = conn.execute("SELECT details, business_impact FROM perfmon.alerts "
                                   "WHERE rule = 'agent_down'").fetchone()
    assert (details["agents_silent"], details["down"], details["stale"]) == (40, 40, 0)
    assert details["agents"] == names
    assert impact.startswith("40 application agents silent: fake-00, fake-01, fake-02, ")
    assert "and 30 more" in impact
    # Back to a few: one alert each again, the shared one resolved.
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for name in names[2:]:
            heartbeat(aconn, name, expected_interval_s=10)
    assert agent_alerts(conn) == {"(many agents)": ("resolved", "critical"),
                                  "fake-00": ("firing", "critical"), "fake-01": ("firing", "critical")}


def test_agents_alerting_on_their_own_keep_their_alert_when_many_more_fall_silent(conn,
                                                                                   agent_dsn: str) -> None:
    """A few agents' own alerts are not resolved (a false all-clear) when many more go silent:
    they go on, and only the others share one alert."""
    names = [f"n{i:02d}" for i in range(12)]
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for name in ("a1", "a2", *names):
            heartbeat(aconn, name, expected_interval_s=10)
        heartbeat(aconn, "a1", "down")
        heartbeat(aconn, "a2", "down")
    assert agent_alerts(conn) == {"a1": ("firing", "critical"), "a2": ("firing", "critical")}
    conn.execute("UPDATE perfmon.agents SET last_seen = now() - interval '25 seconds' WHERE name LIKE 'n%'")
    assert agent_alerts(conn) == {"a1": ("firing", "critical"), "a2": ("firing", "critical"),
                                  "(many agents)": ("firing", "warning")}
    details = conn.execute("SELECT details FROM perfmon.alert_log "
                           "WHERE target = '(many agents)'").fetchone()[0]
    assert (details["agents_silent"], details["stale"], details["agents"]) == (12, 12, names)
    # The limit is the DBA's: with 20, each of the 14 has its own alert.
    conn.execute("UPDATE perfmon.config SET value = '20' WHERE key = 'alerting.agent_down_max_alerts'")
    alerts = agent_alerts(conn)
    assert alerts.pop("(many agents)") == ("resolved", "warning")
    assert alerts == {"a1": ("firing", "critical"), "a2": ("firing", "critical")} | {
        name: ("firing", "warning") for name in names}


def test_new_agent_names_beyond_system_max_agents_are_refused(conn, agent_dsn: str) -> None:
    """A login that made up a name per heartbeat grew perfmon.agents (and agent_health, and
    the alerts) without bound. Beyond system.max_agents a new name is refused, naming the
    limit; the agents already known go on beating."""
    conn.execute("UPDATE perfmon.config SET value = '3' WHERE key = 'system.max_agents'")
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        for name in ("a", "b", "c"):
            heartbeat(aconn, name)
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            heartbeat(aconn, "d")
        assert ("agent 'd' refused: 3 agents are registered, the most system.max_agents allows"
                in str(info.value))
        for name in ("a", "b", "c"):
            heartbeat(aconn, name)
    assert conn.execute("SELECT name, heartbeats FROM perfmon.agents ORDER BY name").fetchall() == [
        ("a", 2), ("b", 2), ("c", 2)]
    conn.execute("DELETE FROM perfmon.agents WHERE name = 'c'")  # a retired agent frees its place
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        heartbeat(aconn, "d")
    assert conn.execute("SELECT count(*) FROM perfmon.agents").fetchone() == (3,)


@pytest.mark.parametrize("name", ["it's; DROP TABLE perfmon.agents; --", 'a"b\\c', "名前-ワーカー",
                                  "\U0001F680 rocket", "x" * 200])
def test_hostile_agent_names_are_stored_as_given(conn, agent_dsn: str, name: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        heartbeat(aconn, name, details={"note": name})
    assert health(conn, name)["heartbeats_1h"] == 1
    assert conn.execute("SELECT count(*) FROM perfmon.agents").fetchone() == (1,)


@pytest.mark.parametrize(("args", "message"), [
    (("x" * 10_240, "ok", None, 0, None), "agent name is 10240 characters long; at most 200"),
    (("", "ok", None, 0, None), "agent name is missing"),
    (("tab\there", "ok", None, 0, None), "agent name contains control characters"),
    (("w", "fine'; --", None, 0, None), "status 'fine''; --' is not one of ok, degraded, error, down"),
    (("w", "ok", float("nan"), 0, None), "response_ms must be a finite number"),
    (("w", "ok", -1.0, 0, None), "response_ms must be a finite number"),
    (("w", "ok", 1.0, -2, None), "errors must be >= 0"),
    (("w", "ok", 1.0, 0, '"text"'), "details must be a JSON object"),
    (("w", "ok", 1.0, 0, '{"a": "' + "y" * 9000 + '"}'), "at most 8192"),
])
def test_bad_heartbeats_are_refused_with_the_reason(conn, agent_dsn: str, args: tuple, message: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            aconn.execute("SELECT perfmon.agent_heartbeat(%s, %s, %s, %s, %s::jsonb)", args)
    assert message in str(info.value)
    assert conn.execute("SELECT count(*) FROM perfmon.agents").fetchone() == (0,)


def test_application_load_names_the_application_that_loads_the_server(probe, installed: str) -> None:
    stop = threading.Event()

    def busy() -> None:
        with psycopg.connect(installed, autocommit=True, application_name="report-builder") as c:
            while not stop.is_set():
                c.execute("SELECT pg_sleep(0.2)")

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        time.sleep(0.3)
        for _ in range(4):
            collect(probe)
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join()
    rows = probe.execute("SELECT application, avg_active_sessions, share_of_load_pct, samples "
                         "FROM perfmon.application_load").fetchall()
    top = rows[0]
    assert top[0] == "report-builder", rows
    assert top[1] >= 0.75 and top[2] >= 50 and top[3] == 4


# What a transaction's commit does is decided by synchronous_commit as it stands at
# COMMIT: a deferred trigger on a temporary table (the witness: temporary, so not a
# write that counts) reports it from inside the commit, after perfmon's own check.
WITNESS = """
CREATE TEMP TABLE commit_witness (x int);
CREATE FUNCTION pg_temp.commit_witness() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'synchronous_commit at commit: %', current_setting('synchronous_commit');
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER commit_witness AFTER INSERT ON pg_temp.commit_witness
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.commit_witness();
"""


def synchronous_commit_at_commit(conn: psycopg.Connection, *statements: str) -> str:
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO pg_temp.commit_witness VALUES (1)")
    seen = [n.rsplit(": ", 1)[1] for n in notices if n.startswith("synchronous_commit at commit")]
    assert len(seen) == 1, notices
    return seen[0]


BEAT = "SELECT perfmon.agent_heartbeat('commit-test', 'ok', 1.0, 0)"


def test_a_transaction_of_heartbeats_alone_commits_without_waiting_for_the_flush(
        probe: psycopg.Connection, agent_dsn: str) -> None:
    probe.execute(WITNESS)
    probe.execute("CREATE SEQUENCE probe_seq")
    probe.execute("CREATE UNLOGGED TABLE scratch (x int)")
    probe.execute(BEAT)  # registered: the first heartbeat of an agent adds a row (and takes an id)
    assert synchronous_commit_at_commit(probe, BEAT) == "off"
    assert synchronous_commit_at_commit(probe, BEAT, BEAT) == "off"
    assert synchronous_commit_at_commit(probe, BEAT, "INSERT INTO scratch VALUES (1)") == "off"
    # The caller's other writes keep the caller's setting, whether before or after the heartbeat.
    assert synchronous_commit_at_commit(probe, "INSERT INTO probe VALUES (1001, 'a')", BEAT) == "on"
    assert synchronous_commit_at_commit(probe, BEAT, "UPDATE probe SET v = 'b' WHERE id = 1001") == "on"
    assert synchronous_commit_at_commit(probe, BEAT, "DELETE FROM probe WHERE id = 1001") == "on"
    assert synchronous_commit_at_commit(probe, BEAT, "SELECT nextval('probe_seq')") == "on"
    assert synchronous_commit_at_commit(probe, BEAT, "CREATE TABLE later (x int)") == "on"
    assert synchronous_commit_at_commit(probe, "SET CONSTRAINTS ALL IMMEDIATE", BEAT,
                                        "INSERT INTO probe VALUES (1002, 'c')") == "on"
    assert synchronous_commit_at_commit(probe, "SELECT perfmon.agent_heartbeat('commit-test-new')") == "on"
    # Only for that transaction: the session's own setting is untouched.
    assert probe.execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert probe.execute("SELECT count(*) FROM probe WHERE id = 1002").fetchone() == (1,)
    # An agent login, which can read none of perfmon's tables, gets the same.
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        aconn.execute(WITNESS)
        assert synchronous_commit_at_commit(aconn, BEAT) == "off"
        aconn.execute(BEAT)  # autocommit, as the helper sends it
    assert health(probe, "commit-test")["heartbeats_1h"] == 13
