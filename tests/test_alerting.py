"""Alert rules, lifecycle and loss-free delivery, against real local receivers."""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import email.utils
import hashlib
import hmac
import re
import threading
import urllib.parse
from pathlib import Path

import psycopg
import pytest
from alert_servers import (
    SLOW_HOST,
    add_gauge_rule,
    http_receiver,
    self_signed_cert,
    set_config,
    slow_resolver,
    slow_resolver_in_backend,
    smtp_receiver,
    trickling_receiver,
    wait_for,
)
from click.testing import CliRunner

from pgperfmon import alerting, cli

SIGNING_KEY = "s1gn-me-please"
TOKEN = "tok-SECRET-123456"


def analyze(conn: psycopg.Connection) -> dict:
    return conn.execute("SELECT perfmon.analyze()").fetchone()[0]


def outbox(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT message_id, event, channel, level, status FROM perfmon.alert_outbox ORDER BY message_id"
    ).fetchall()


def webhook_env(url: str) -> dict[str, str]:
    return {"PGPERFMON_WEBHOOK_URL": url, "PGPERFMON_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


def deliver(dsn: str, env: dict[str, str]) -> int:
    with psycopg.connect(dsn) as conn:
        return alerting.deliver_due(conn, "test", env=env)


def backdate(conn: psycopg.Connection, minutes: int) -> None:
    """Time passes: move every open alert's clock back."""
    conn.execute(
        "UPDATE perfmon.alert_log SET first_seen = first_seen - make_interval(mins => %s), "
        "fired_at = fired_at - make_interval(mins => %s), "
        "escalated_at = escalated_at - make_interval(mins => %s) WHERE state <> 'resolved'",
        (minutes, minutes, minutes))


def test_seeded_rules_take_the_configured_thresholds(conn: psycopg.Connection) -> None:
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT rule, comparison, warning_threshold, critical_threshold, emergency_threshold "
        "FROM perfmon.alert_rule_thresholds")}
    assert rows["cpu"] == (">", 80, 95, 98)
    assert rows["memory"] == (">", 85, 95, 98)
    assert rows["disk"] == (">", 80, 90, 98)
    assert rows["connection_usage"] == (">", 80, 90, 98)
    assert rows["cache_hit_ratio"][:2] == ("<", 95)
    assert rows["slow_query"][1] == 1000
    # A configuration change is picked up without touching the rules.
    set_config(conn, system__thresholds__cpu_pct__warning=60)
    assert conn.execute("SELECT warning_threshold FROM perfmon.alert_rule_thresholds "
                        "WHERE rule = 'cpu'").fetchone()[0] == 60


def test_breach_fires_once_escalates_and_resolves(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, escalation_minutes=5, value=75)
    set_config(conn, alerting__channels__webhook__enabled=True)
    with http_receiver() as rx:
        env = webhook_env(rx.url)
        for _ in range(3):
            analyze(conn)
        alerts = conn.execute("SELECT alert_id, state, level, current_value, threshold, business_impact, "
                              "affected_systems, recommended_actions, escalation_required "
                              "FROM perfmon.alerts WHERE rule = 'test_gauge'").fetchall()
        assert len(alerts) == 1, "one alert per fingerprint, however often it is seen"
        alert_id, state, level, value, threshold, impact, systems, actions, esc = alerts[0]
        assert (state, level, float(value), threshold) == ("firing", "warning", 75.0, 70)
        assert impact == "checkout is slow for customers" and systems == ["app1", "database"]
        assert actions == "add capacity" and esc is False
        assert [(e, lv) for _, e, _, lv, _ in outbox(conn)] == [("firing", "warning")]

        # Unacknowledged past its escalation time: one level up, notified again.
        backdate(conn, 6)
        assert analyze(conn)["alerts"]["outcomes"].get("escalated") == 1
        level, esc_level, required = conn.execute(
            "SELECT level, escalation_level, escalation_required FROM perfmon.alerts "
            "WHERE alert_id = %s", (alert_id,)).fetchone()
        assert (level, esc_level, required) == ("critical", 1, True)

        # Acknowledged: no further escalation.
        conn.execute("SELECT perfmon.ack_alert(%s, 'looking at it')", (alert_id,))
        backdate(conn, 30)
        assert "escalated" not in analyze(conn)["alerts"]["outcomes"]

        # The condition clears: resolved, and the resolution is notified.
        conn.execute("UPDATE public.test_gauge SET v = 10")
        assert analyze(conn)["alerts"]["outcomes"] == {"resolved": 1}
        state, resolved_at = conn.execute("SELECT state, resolved_at FROM perfmon.alerts "
                                          "WHERE alert_id = %s", (alert_id,)).fetchone()
        assert state == "resolved" and resolved_at is not None
        assert [e for _, e, *_ in outbox(conn)] == ["firing", "escalated", "resolved"]

        assert deliver(installed, env) == 3
        events = [r.json()["event"] for r in rx.received]
        assert events == ["firing", "escalated", "resolved"]
        for r in rx.received:
            expected = "sha256=" + hmac.new(
                SIGNING_KEY.encode(), r.headers["X-Pgperfmon-Timestamp"].encode() + b"." + r.body,
                hashlib.sha256).hexdigest()
            assert r.headers["X-Pgperfmon-Signature"] == expected
        first = rx.received[0].json()["alert"]
        for field in ("ts", "metric", "current_value", "threshold", "level", "business_impact",
                      "affected_systems", "recommended_actions", "escalation_required"):
            assert field in first
        history = [e for (e,) in conn.execute(
            "SELECT event FROM perfmon.alert_events WHERE alert_id = %s ORDER BY event_id", (alert_id,))]
        assert history == ["firing", "escalated", "acknowledged", "resolved"]


def test_breach_must_hold_before_it_fires(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, hold_seconds=1, value=95)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    assert conn.execute("SELECT state, level FROM perfmon.alerts").fetchall() == [("pending", "critical")]
    assert outbox(conn) == []
    conn.execute("SELECT pg_sleep(1.1)")
    analyze(conn)
    assert conn.execute("SELECT state FROM perfmon.alerts").fetchall() == [("firing",)]
    assert [e for _, e, *_ in outbox(conn)] == ["firing"]
    # Worse while firing: the raised level is notified.
    conn.execute("UPDATE public.test_gauge SET v = 99")
    analyze(conn)
    assert [e for _, e, *_ in outbox(conn)] == ["firing", "level_raised"]


def test_pending_breach_that_clears_notifies_nobody(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, hold_seconds=60, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    conn.execute("UPDATE public.test_gauge SET v = 1")
    analyze(conn)
    assert conn.execute("SELECT state FROM perfmon.alerts").fetchall() == [("resolved",)]
    assert outbox(conn) == []


def test_silence_suppresses_notifications_until_it_expires(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__cooldown_minutes=0)
    silence = conn.execute("SELECT perfmon.silence_alerts('test_gauge', 'app%', '1 hour', 'deploy')"
                           ).fetchone()[0]
    analyze(conn)
    assert conn.execute("SELECT state, silenced FROM perfmon.alerts").fetchall() == [("firing", True)]
    assert outbox(conn) == []
    assert conn.execute("SELECT count(*) FROM perfmon.alert_events WHERE event = 'suppressed'"
                        ).fetchone()[0] == 1
    assert conn.execute("SELECT perfmon.expire_silence(%s)", (silence,)).fetchone()[0] is True
    conn.execute("UPDATE public.test_gauge SET v = 1")
    analyze(conn)
    conn.execute("UPDATE public.test_gauge SET v = 80")
    analyze(conn)
    assert [e for _, e, *_ in outbox(conn)] == ["firing"]
    with pytest.raises(psycopg.errors.RaiseException, match="no alert rule"):
        conn.execute("SELECT perfmon.silence_alerts('no_such_rule')")


def test_flapping_within_the_cooldown_reopens_the_same_alert(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True)
    for v in (80, 1, 80, 1, 80):
        conn.execute("UPDATE public.test_gauge SET v = %s", (v,))
        analyze(conn)
    assert conn.execute("SELECT count(*) FROM perfmon.alert_log").fetchone()[0] == 1
    assert [e for _, e, *_ in outbox(conn)] == ["firing", "resolved"]


def test_an_alert_reopened_within_the_cooldown_is_unacknowledged_and_not_escalated(
        conn: psycopg.Connection) -> None:
    """A new episode of the same alert: it kept the last one's acknowledgement (so it never
    escalated) and its escalated level."""
    add_gauge_rule(conn, escalation_minutes=5, value=75)
    analyze(conn)
    backdate(conn, 6)
    assert analyze(conn)["alerts"]["outcomes"].get("escalated") == 1
    alert_id = conn.execute("SELECT alert_id FROM perfmon.alert_log").fetchone()[0]
    conn.execute("SELECT perfmon.ack_alert(%s, 'on it', 'alice')", (alert_id,))
    backdate(conn, 30)  # the episode lasted half an hour
    conn.execute("UPDATE public.test_gauge SET v = 10")
    assert analyze(conn)["alerts"]["outcomes"] == {"resolved": 1}

    conn.execute("UPDATE public.test_gauge SET v = 75")
    assert analyze(conn)["alerts"]["outcomes"] == {"reopened": 1}
    row = conn.execute("SELECT alert_id, state, level, escalation_level, acknowledged, acked_by, ack_note, "
                       "escalation_required, escalation_due_at > now() + interval '4 minutes' "
                       "FROM perfmon.alerts").fetchall()
    assert row == [(alert_id, "firing", "warning", 0, False, None, None, False, True)]
    # The episode before stays auditable: its acknowledgement and escalation, in the events.
    previous = conn.execute("SELECT details -> 'previous' FROM perfmon.alert_events "
                            "WHERE alert_id = %s AND event = 'reopened'", (alert_id,)).fetchone()[0]
    assert (previous["acked_by"], previous["ack_note"], previous["escalation_level"], previous["level"]) == \
        ("alice", "on it", 1, "critical")
    assert previous["acked_at"] and previous["fired_at"] and previous["resolved_at"]
    # Unacknowledged, the new episode escalates after its own escalation time, not at once.
    assert "escalated" not in analyze(conn)["alerts"]["outcomes"]
    backdate(conn, 6)
    assert analyze(conn)["alerts"]["outcomes"].get("escalated") == 1
    escalated = conn.execute("SELECT level, escalation_level FROM perfmon.alert_log").fetchall()
    assert escalated == [("critical", 1)]


def test_a_channel_down_for_minutes_loses_nothing(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__retry_base_seconds=60,
               alerting__retry_max_seconds=600, alerting__max_delivery_attempts=8)
    for i in range(20):
        conn.execute("INSERT INTO public.test_gauge VALUES (%s, 85)", (f"svc{i}",))
    analyze(conn)
    assert len(outbox(conn)) == 21
    with http_receiver() as rx:
        env = webhook_env(rx.url + "?token=" + TOKEN)
        rx.fail_status = 503
        for attempt in range(1, 6):  # five attempts over what would be 60+120+240+480 s
            assert deliver(installed, env) == 21
            waits = conn.execute(
                "SELECT DISTINCT round(extract(epoch FROM next_attempt_at - l.ts)) "
                "FROM perfmon.alert_outbox o JOIN LATERAL (SELECT max(ts) AS ts FROM perfmon.delivery_log d "
                "WHERE d.message_id = o.message_id) l ON true").fetchall()
            assert waits == [(min(600, 60 * 2 ** (attempt - 1)),)], "exponential backoff"
            assert deliver(installed, env) == 0, "nothing is due before its backoff"
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")  # time passes
        assert rx.received == [] and rx.refused == 21 * 5
        rx.fail_status = None
        assert deliver(installed, env) == 21
        assert sorted(rx.message_ids()) == [m for m, *_ in outbox(conn)], "each delivered exactly once"
        assert {s for *_, s in outbox(conn)} == {"delivered"}
        assert rx.received[0].path == "/hook?token=" + TOKEN
    log = conn.execute("SELECT count(*), count(*) FILTER (WHERE ok), max(attempt), "
                       "string_agg(DISTINCT error, ' | ') FROM perfmon.delivery_log").fetchone()
    assert log[:3] == (21 * 6, 21, 6)
    assert log[3] == "HTTP 503 Service Unavailable"
    assert_no_secret(conn, TOKEN)


@pytest.mark.parametrize(("case", "worker"), [("seconds", "deliver"), ("http_date", "deliver"),
                                              ("shorter_than_the_backoff", "deliver"),
                                              ("too_long", "deliver"), ("seconds", "database")])
def test_a_retry_after_holds_the_message_and_its_channel_back(conn: psycopg.Connection, installed: str,
                                                               case: str, worker: str) -> None:
    # A rate-limited receiver's Retry-After was ignored: the message came back after the 10 s
    # backoff, and every other queued message was sent (and refused) at once.
    add_gauge_rule(conn, value=99)
    conn.execute("INSERT INTO public.test_gauge VALUES ('app2', 99)")
    set_config(conn, alerting__channels__slack__enabled=True, alerting__retry_base_seconds=10,
               alerting__retry_max_seconds=600)
    analyze(conn)
    header, status, wait, error = {
        "seconds": ("120", 429, 120, r"HTTP 429 Too Many Requests; Retry-After 120 s"),
        "http_date": (email.utils.format_datetime(datetime.datetime.now(datetime.UTC)
                                                  + datetime.timedelta(seconds=300), usegmt=True),
                      503, 300, r"HTTP 503 Service Unavailable; Retry-After (299|300) s"),
        "shorter_than_the_backoff": ("1", 429, 10, r"HTTP 429 Too Many Requests; Retry-After 1 s"),
        "too_long": ("86400", 503, 600, r"HTTP 503 Service Unavailable; Retry-After 86400 s, waiting at "
                     r"most alerting\.retry_max_seconds \(600 s\)"),
    }[case]
    with http_receiver() as rx:
        rx.fail_status, rx.fail_headers = status, {"Retry-After": header}
        if worker == "deliver":
            assert deliver(installed, {"PGPERFMON_SLACK_WEBHOOK_URL": rx.url}) == 1
        else:
            with psycopg.connect(installed, autocommit=True) as backend:
                backend.execute("DO $$ import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = "
                                f"'{rx.url}' $$ LANGUAGE plpython3u")
                backend.execute("CALL perfmon.deliver_alerts()")
        assert rx.refused == 1, "the other message waits with its channel"
    (logged,) = conn.execute("SELECT error FROM perfmon.delivery_log").fetchone()
    assert re.fullmatch(error, logged), logged
    # Both messages wait (at least) as long as the receiver asked, at most retry_max_seconds.
    waits = conn.execute("SELECT o.attempts, extract(epoch FROM o.next_attempt_at - l.ts)::float8 "
                         "FROM perfmon.alert_outbox o, (SELECT max(ts) AS ts FROM perfmon.delivery_log) l "
                         "ORDER BY o.attempts DESC").fetchall()
    assert [a for a, _ in waits] == [1, 0]
    tried, other = waits[0][1], waits[1][1]
    if case == "http_date":  # a date is to the second, and the header was written before the attempt
        assert 297 <= tried <= 300 and 297 <= other <= 300, waits
    else:
        assert round(tried) == wait, waits
        assert round(other) == (1 if case == "shorter_than_the_backoff" else wait), waits


def test_dead_letter_after_the_last_attempt_and_retry(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__max_delivery_attempts=3,
               alerting__retry_base_seconds=0.01)
    analyze(conn)
    with http_receiver() as rx:
        env = webhook_env(rx.url)
        rx.fail_status = 500
        for _ in range(3):
            deliver(installed, env)
            conn.execute("SELECT pg_sleep(0.05)")
        assert [s for *_, s in outbox(conn)] == ["dead"]
        assert deliver(installed, env) == 0
        rx.fail_status = None
        assert conn.execute("SELECT perfmon.retry_dead_letters()").fetchone()[0] == 1
        assert deliver(installed, env) == 1
        assert len(rx.received) == 1 and [s for *_, s in outbox(conn)] == ["delivered"]


def test_two_workers_never_send_the_same_message(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__channels__slack__enabled=True)
    conn.execute("INSERT INTO public.test_gauge SELECT 'svc' || g, 85 FROM generate_series(1, 99) g")
    analyze(conn)
    assert len(outbox(conn)) == 200
    with http_receiver() as rx:
        env = webhook_env(rx.url) | {"PGPERFMON_SLACK_WEBHOOK_URL": rx.url}
        threads = [threading.Thread(target=deliver, args=(installed, env)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = rx.message_ids()
        assert len(ids) == 200 and len(set(ids)) == 200
    workers = conn.execute("SELECT count(*) FROM perfmon.delivery_log").fetchone()[0]
    assert workers == 200


def test_in_database_worker_sends_slack_messages(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=99)
    set_config(conn, alerting__channels__slack__enabled=True)
    analyze(conn)
    with http_receiver() as rx, psycopg.connect(installed, autocommit=True) as backend:
        # The PL/Python worker reads the server's environment: give this backend the URL.
        backend.execute("DO $$ import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = "
                        f"'{rx.url}' $$ LANGUAGE plpython3u")
        backend.execute("CALL perfmon.deliver_alerts()")
        assert len(rx.received) == 1
        body = rx.received[0].json()
        assert body["text"].startswith("EMERGENCY test.load_pct on app1: 99.00 pct")
        assert body["blocks"][0]["type"] == "header"
        assert {"type": "mrkdwn", "text": "*Business impact*\ncheckout is slow for customers"} in \
            body["blocks"][1]["fields"]
        worker = conn.execute("SELECT worker, ok FROM perfmon.delivery_log").fetchall()
        assert worker == [("database", True)]


def test_a_hostile_target_reaches_slack_as_text_not_as_a_mention_or_link(conn: psycopg.Connection,
                                                                          installed: str) -> None:
    # A target comes from the database: a table, a host, an agent's own name. Slack
    # reads <...> and & in text as mentions and links unless they are entities.
    add_gauge_rule(conn, value=99)
    hostile = "<!channel> & <https://evil.example|pay here>"
    conn.execute("UPDATE public.test_gauge SET target = %s", (hostile,))
    set_config(conn, alerting__channels__slack__enabled=True)
    analyze(conn)
    with http_receiver() as rx:
        assert deliver(installed, {"PGPERFMON_SLACK_WEBHOOK_URL": rx.url}) == 1
        body = rx.received[0].json()
    escaped = "&lt;!channel&gt; &amp; &lt;https://evil.example|pay here&gt;"
    mrkdwn = [body["text"], body["attachments"][0]["fallback"]] + \
        [f["text"] for block in body["blocks"][1:] for f in block["fields"]]
    assert escaped in body["text"]
    assert not any("<" in t or ">" in t for t in mrkdwn), mrkdwn
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": body["blocks"][0]["text"]["text"]}
    assert hostile in body["blocks"][0]["text"]["text"], "plain_text is shown as it is: not escaped"


def test_messages_wait_for_a_worker_that_has_the_secret(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    assert deliver(installed, {}) == 0, "no secret here: the message is left for another worker"
    assert [(s, a) for s, a in conn.execute("SELECT status, attempts FROM perfmon.alert_outbox")] == \
        [("pending", 0)]


def test_sms_is_a_twilio_style_form_post(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=95)
    with http_receiver() as rx:
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__account_sid="AC123", alerting__channels__sms__sender="+15550000",
                   alerting__channels__sms__recipients=["+15551111", "+15552222"])
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        forms = [urllib.parse.parse_qs(r.body.decode()) for r in rx.received]
        assert [f["To"] for f in forms] == [["+15551111"], ["+15552222"]]
        assert forms[0]["From"] == ["+15550000"] and "CRITICAL test.load_pct" in forms[0]["Body"][0]
        auth = rx.received[0].headers["Authorization"]
        assert base64.b64decode(auth.split()[1]).decode() == f"AC123:{TOKEN}"
    assert_no_secret(conn, TOKEN)


def test_warning_does_not_page_by_sms(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=75)
    set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__webhook__enabled=True)
    analyze(conn)
    assert [c for _, _, c, *_ in outbox(conn)] == ["webhook"]


def test_email_over_smtp_with_starttls_and_login(conn: psycopg.Connection, installed: str,
                                                 tmp_path: Path) -> None:
    import socket
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mails: list = []
    logins: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"alerts" and auth_data.password == TOKEN.encode()
        logins.append((mechanism, ok, session.ssl is not None))
        return AuthResult(success=ok, handled=False)

    with socket.socket() as probe:  # aiosmtpd's start() connects to its port: it cannot be 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)
    controller.start()
    try:
        add_gauge_rule(conn, value=80)
        set_config(conn, alerting__channels__email__enabled=True,
                   alerting__channels__email__smtp_host="127.0.0.1",
                   alerting__channels__email__smtp_port=port,
                   alerting__channels__email__username="alerts",
                   alerting__channels__email__ca_file=str(cert),
                   alerting__channels__email__recipients=["dba@example.test"])
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMTP_PASSWORD": "wrong-password"}) == 1
        assert mails == [] and logins[-1][1] is False
        status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()
        assert status == "pending" and error.startswith("SMTP 535")
        conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert deliver(installed, {"PGPERFMON_SMTP_PASSWORD": TOKEN}) == 1
        assert wait_for(lambda: len(mails) == 1)
        assert logins[-1] == ("LOGIN", True, True) or logins[-1][1:] == (True, True)
        mail = email.message_from_bytes(mails[0].content, policy=email.policy.default)
        assert mail["Subject"].strip().startswith("WARNING test.load_pct on app1: 80.00 pct")
        assert "Business impact: checkout is slow for customers" in mail.get_content()
        assert mails[0].rcpt_tos == ["dba@example.test"]
    finally:
        controller.stop()
    assert_no_secret(conn, TOKEN)


def test_idle_in_transaction_rule_fires_on_a_real_session(conn: psycopg.Connection, installed: str) -> None:
    set_config(conn, database__performance_thresholds__idle_in_transaction_seconds=0.2)
    with psycopg.connect(installed) as idle:
        idle.execute("SELECT 1")  # opens a transaction, then sits in it
        conn.execute("SELECT pg_sleep(0.4)")
        analyze(conn)
        row = conn.execute("SELECT state, level, current_value > 0.2, recovery_action FROM perfmon.alerts "
                           "WHERE rule = 'idle_in_transaction'").fetchone()
        assert row == ("firing", "warning", True, "terminate_idle_in_transaction")
    analyze(conn)
    assert conn.execute("SELECT state FROM perfmon.alerts WHERE rule = 'idle_in_transaction'"
                        ).fetchone() == ("resolved",)


def test_recommendations_above_the_level_raise_alerts(conn: psycopg.Connection) -> None:
    set_config(conn, alerting__recommendation_min_level="warning")
    conn.execute("""INSERT INTO perfmon.recommendation_log (fingerprint, rule, kind, severity, target,
                        finding, confidence, first_seen, last_seen, status_changed)
                    VALUES ('r1', 'vacuum_health', 'vacuum', 'critical', 'public.t', 'dead tuples pile up',
                            'high', now(), now(), now()),
                           ('r2', 'vacuum_health', 'vacuum', 'info', 'public.u', 'minor', 'high',
                            now(), now(), now())""")
    analyze(conn)
    rows = conn.execute("SELECT target, level, business_impact FROM perfmon.alerts "
                        "WHERE rule = 'recommendation'").fetchall()
    assert rows == [("vacuum_health: public.t", "critical", "dead tuples pile up")]


def test_a_broken_rule_does_not_stop_the_others(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=80)
    conn.execute("""INSERT INTO perfmon.alert_rules (name, metric, unit, query, warning_threshold,
                        business_impact, affected_systems, recommended_actions, description)
                    VALUES ('broken', 'x', 'none', 'SELECT 1/0, 1, NULL, NULL', 0, 'x', '{}', 'x', 'x')""")
    result = analyze(conn)["alerts"]
    assert "division by zero" in result["rules"]["broken"]["error"]
    assert result["outcomes"] == {"firing": 1}


def test_deliver_command_sends_and_exits_with_once(conn: psycopg.Connection, installed: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    with http_receiver() as rx:
        for name, value in webhook_env(rx.url).items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(cli.main, ["deliver", "--dsn", installed, "--once"])
        assert result.exit_code == 0, result.output
        assert "webhook: delivered" in result.output and len(rx.received) == 1


def test_deliver_command_is_woken_by_notify(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=1)
    set_config(conn, alerting__channels__webhook__enabled=True)
    with http_receiver() as rx:
        env = webhook_env(rx.url)
        stop = threading.Event()

        def run() -> None:
            alerting.run_deliverer(installed, once=False, poll_seconds=2, worker="listener",
                                   echo=lambda _line: None, env=env, stop=stop)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        conn.execute("SELECT pg_sleep(0.5)")
        conn.execute("UPDATE public.test_gauge SET v = 80")
        analyze(conn)
        assert wait_for(lambda: len(rx.received) == 1, timeout=5)
        stop.set()
        thread.join(timeout=5)
        assert conn.execute("SELECT worker FROM perfmon.delivery_log").fetchall() == [("listener",)]


def test_a_redirect_is_a_failure_not_a_delivery(conn: psycopg.Connection, installed: str) -> None:
    # Following a 302, urllib re-sent the POST as a GET without its body: the alert reached
    # no one, yet the 200 of the GET marked it delivered.
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    with http_receiver() as rx:
        rx.redirect_to = f"http://localhost:{rx.port}/moved?token={TOKEN}"
        assert deliver(installed, webhook_env(rx.url)) == 1
        assert rx.gets == [] and rx.received == [] and rx.refused == 1
    status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()
    assert status == "pending"
    assert error == f"HTTP 302 Found: redirected to localhost:{rx.port} (redirects are not followed)"
    assert_no_secret(conn, TOKEN)


def test_a_null_affected_system_is_skipped_not_a_dead_letter(conn: psycopg.Connection,
                                                             installed: str) -> None:
    add_gauge_rule(conn, value=80)
    conn.execute("UPDATE perfmon.alert_rules SET affected_systems = ARRAY['db', NULL] "
                 "WHERE name = 'test_gauge'")
    with http_receiver() as rx, smtp_receiver() as box:
        set_config(conn, alerting__channels__slack__enabled=True, alerting__channels__email__enabled=True,
                   alerting__channels__email__smtp_host="127.0.0.1",
                   alerting__channels__email__smtp_port=box.port, alerting__channels__email__starttls=False,
                   alerting__channels__email__recipients=["dba@example.test"])
        analyze(conn)
        env = {"PGPERFMON_SLACK_WEBHOOK_URL": rx.url, "PGPERFMON_SMTP_PASSWORD": "unused"}
        assert deliver(installed, env) == 2
        assert wait_for(lambda: len(box.mails) == 1)
        fields = [f["text"] for block in rx.received[0].json()["blocks"][1:] for f in block["fields"]]
        mail = email.message_from_bytes(box.mails[0].content, policy=email.policy.default)
    assert "*Affected systems*\ndb" in fields
    assert "Affected systems: db\r\n" in mail.get_content()
    assert [s for *_, s in outbox(conn)] == ["delivered", "delivered"]
    # Any field may be NULL (a JSON null): shown as "-", never a crash.
    delivery = alerting.delivery_module()
    nulls = {"message_id": 1, "event": "firing", "attempt": 1, "payload": dict.fromkeys(
        ("level", "state", "metric", "target", "current_value", "ts", "business_impact", "summary",
         "affected_systems", "recommended_actions", "alert_id", "fingerprint", "database"))}
    assert ("Affected systems", "-") in delivery.details_of(nulls)
    assert delivery.slack_body(nulls)["text"] == "- [-]"


def test_messages_of_one_alert_are_delivered_in_order(conn: psycopg.Connection, installed: str) -> None:
    # A retried "firing" overtaken by its "resolved" left the receiver's last word "firing".
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__cooldown_minutes=0)
    analyze(conn)
    with http_receiver() as rx:
        env = webhook_env(rx.url)
        rx.fail_status = 500
        assert deliver(installed, env) == 1  # firing: failed, retried later
        rx.fail_status = None
        conn.execute("UPDATE public.test_gauge SET v = 10")
        conn.execute("INSERT INTO public.test_gauge VALUES ('app2', 80)")
        analyze(conn)
        assert sorted(e for _, e, *_ in outbox(conn)) == ["firing", "firing", "resolved"]
        # The resolution waits for its firing; another alert's message does not.
        assert deliver(installed, env) == 1
        assert [(r.json()["event"], r.json()["alert"]["target"]) for r in rx.received] == [("firing", "app2")]
        conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now() WHERE status = 'pending'")
        assert deliver(installed, env) == 2
        assert [(r.json()["event"], r.json()["alert"]["target"]) for r in rx.received[1:]] == \
            [("firing", "app1"), ("resolved", "app1")]


@pytest.mark.parametrize("case", ["secret_missing", "channel_disabled"])
def test_deliver_does_not_spin_on_messages_it_cannot_send(conn: psycopg.Connection, installed: str,
                                                          monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    # A pending message no channel of this worker can claim looked due: the loop ran every 50 ms.
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__channels__slack__enabled=True)
    analyze(conn)
    conn.execute("DELETE FROM perfmon.alert_outbox WHERE channel = 'slack'")
    if case == "secret_missing":
        env = {"PGPERFMON_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook"}
    else:
        set_config(conn, alerting__channels__webhook__enabled=False)
        env = webhook_env("http://127.0.0.1:9/hook")
    loops = []
    real = alerting.deliver_due
    monkeypatch.setattr(alerting, "deliver_due", lambda *a, **k: loops.append(1) or real(*a, **k))
    stop = threading.Event()
    thread = threading.Thread(target=alerting.run_deliverer, daemon=True, kwargs=dict(
        dsn=installed, once=False, poll_seconds=1, worker="idle", echo=lambda _line: None, env=env,
        stop=stop))
    thread.start()
    conn.execute("SELECT pg_sleep(2)")
    stop.set()
    thread.join(timeout=5)
    assert 1 <= len(loops) <= 4, f"{len(loops)} loops in 2 s"
    assert [(c, s) for _, _, c, _, s in outbox(conn)] == [("webhook", "pending")]


def test_sms_accepted_by_some_recipients_is_delivered_not_resent(conn: psycopg.Connection,
                                                                 installed: str) -> None:
    # Retrying the whole message re-sent it to the recipients who had it: +1 got it 4 times.
    add_gauge_rule(conn, value=95)
    with http_receiver() as rx:
        rx.fail_when = lambda r: 400 if "%2B15552222" in r.body.decode() else None
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__recipients=["+15551111", "+15552222"])
        analyze(conn)
        for _ in range(4):
            deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN})
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert [urllib.parse.parse_qs(r.body.decode())["To"] for r in rx.received] == [["+15551111"]]
        assert rx.refused == 1
    status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()
    assert status == "delivered"
    assert error == "delivered to 1 of 2 recipients; refused: +15552222: HTTP 400 Bad Request"


def test_sms_refused_by_every_recipient_is_retried(conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=95)
    with http_receiver() as rx:
        rx.fail_status = 503
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__recipients=["+15551111", "+15552222"])
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
    status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()
    assert status == "pending"
    assert error == "+15551111: HTTP 503 Service Unavailable; +15552222: HTTP 503 Service Unavailable"


def test_email_with_a_refused_recipient_is_delivered_not_resent(conn: psycopg.Connection,
                                                                installed: str) -> None:
    add_gauge_rule(conn, value=80)
    with smtp_receiver(refuse=("gone@example.test",)) as box:
        set_config(conn, alerting__channels__email__enabled=True,
                   alerting__channels__email__smtp_host="127.0.0.1",
                   alerting__channels__email__smtp_port=box.port, alerting__channels__email__starttls=False,
                   alerting__channels__email__recipients=["dba@example.test", "gone@example.test"])
        analyze(conn)
        for _ in range(3):
            deliver(installed, {"PGPERFMON_SMTP_PASSWORD": "unused"})
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert wait_for(lambda: len(box.mails) >= 1)
        assert [m.rcpt_tos for m in box.mails] == [["dba@example.test"]]
    status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()
    assert status == "delivered"
    assert error == "delivered to 1 of 2 recipients; refused: gone@example.test: SMTP 550 no such user here"


@pytest.mark.parametrize("channel", ["webhook", "email"])
def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_delivery_timeout(
        conn: psycopg.Connection, installed: str, channel: str) -> None:
    # The timeout bounded each read alone: a byte every 0.2 s held the deliverer as long as the
    # receiver liked (8 s here, for ever in the wild), however short the timeout.
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__delivery_timeout_seconds=1)
    with trickling_receiver("http" if channel == "webhook" else "smtp", interval=0.2) as rx:
        if channel == "webhook":
            set_config(conn, alerting__channels__webhook__enabled=True)
            env = webhook_env(f"http://127.0.0.1:{rx.port}/hook")
        else:
            set_config(conn, alerting__channels__email__enabled=True,
                       alerting__channels__email__smtp_host="127.0.0.1",
                       alerting__channels__email__smtp_port=rx.port,
                       alerting__channels__email__starttls=False,
                       alerting__channels__email__recipients=["dba@example.test"])
            env = {"PGPERFMON_SMTP_PASSWORD": "unused"}
        analyze(conn)
        assert deliver(installed, env) == 1
        assert rx.requests == 1
    status, error = conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()
    assert status == "pending"
    assert error == ("SMTP " if channel == "email" else "") + \
        "timed out: no complete answer within the delivery timeout of 1 s"


@pytest.mark.parametrize(("channel", "worker"), [("slack", "deliver"), ("slack", "database"),
                                                 ("email", "deliver"), ("email_local_name", "deliver")])
def test_a_host_name_that_does_not_resolve_in_time_is_cut_off_at_the_delivery_timeout(
        conn: psycopg.Connection, installed: str, channel: str, worker: str) -> None:
    # The receiver's host name was looked up outside the deadline: a resolver that did not
    # answer held the deliverer (and every message behind this one) for as long as it
    # liked, whatever alerting.delivery_timeout_seconds said. So was this host's own name,
    # which smtplib looks up for its EHLO (email_local_name: the SMTP server's name resolves).
    add_gauge_rule(conn, value=99)
    set_config(conn, alerting__delivery_timeout_seconds=1)
    local_name = channel == "email_local_name"
    with http_receiver() as rx, smtp_receiver() as box, slow_resolver(local_name=local_name) as dns:
        if channel == "slack":
            set_config(conn, alerting__channels__slack__enabled=True)
            env = {"PGPERFMON_SLACK_WEBHOOK_URL": f"http://{SLOW_HOST}:{rx.port}/hook"}
        else:
            set_config(conn, alerting__channels__email__enabled=True,
                       alerting__channels__email__smtp_host="127.0.0.1" if local_name else SLOW_HOST,
                       alerting__channels__email__smtp_port=box.port,
                       alerting__channels__email__starttls=False,
                       alerting__channels__email__recipients=["dba@example.test"])
            env = {"PGPERFMON_SMTP_PASSWORD": "unused"}
        analyze(conn)
        if worker == "deliver":
            assert deliver(installed, env) == 1
            assert dns.answered == 0, "the attempt ended without waiting for the resolver"
        else:
            with psycopg.connect(installed, autocommit=True) as backend:
                backend.execute("DO $$ import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = "
                                f"'{env['PGPERFMON_SLACK_WEBHOOK_URL']}' $$ LANGUAGE plpython3u")
                answered = slow_resolver_in_backend(backend, seconds=30)
                backend.execute("CALL perfmon.deliver_alerts()")
                assert answered() == 0, "the attempt ended without waiting for the resolver"
        assert outbox_status(conn) == (
            "pending", ("SMTP " if channel.startswith("email") else "") +
            "timed out: no complete answer within the delivery timeout of 1 s")
        assert rx.received == [] and box.mails == []
        if worker == "deliver":  # once the name resolves, the same receiver has it
            dns.answer.set()
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
            assert deliver(installed, env) == 1
            assert outbox_status(conn) == ("delivered", None)
            assert wait_for(lambda: len(rx.received) + len(box.mails) == 1)


def outbox_status(conn: psycopg.Connection) -> tuple:
    return conn.execute("SELECT status, last_error FROM perfmon.alert_outbox").fetchone()


def recipients_left(conn: psycopg.Connection) -> list[str] | None:
    return conn.execute("SELECT recipients_left FROM perfmon.alert_outbox").fetchone()[0]


def test_an_sms_refused_for_now_is_retried_to_that_recipient_only(conn: psycopg.Connection,
                                                                     installed: str) -> None:
    # A message some recipients accepted was delivered, the others' refusals noted: a number
    # the gateway could not take just then (503, 429) never got the alert.
    add_gauge_rule(conn, value=95)
    with http_receiver() as rx:
        busy = {"+15552222"}
        rx.fail_when = lambda r: 503 if urllib.parse.parse_qs(r.body.decode())["To"][0] in busy else None
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__recipients=["+15551111", "+15552222", "+15553333"])
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        assert outbox_status(conn) == ("pending", "delivered to 2 of 3 recipients; refused for now, "
                                       "retried: +15552222: HTTP 503 Service Unavailable")
        assert recipients_left(conn) == ["+15552222"]
        conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1, "still refused: still pending"
        busy.clear()
        conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        sent = [urllib.parse.parse_qs(r.body.decode())["To"][0] for r in rx.received]
        assert sorted(sent) == ["+15551111", "+15552222", "+15553333"], "each got it once"
        assert rx.refused == 2
    assert outbox_status(conn) == ("delivered", None) and recipients_left(conn) is None
    log = conn.execute("SELECT attempt, ok, error FROM perfmon.delivery_log ORDER BY attempt").fetchall()
    assert log == [
        (1, False, "delivered to 2 of 3 recipients; refused for now, retried: "
                   "+15552222: HTTP 503 Service Unavailable"),
        (2, False, "delivered to 0 of 1 recipients left; refused for now, retried: "
                   "+15552222: HTTP 503 Service Unavailable"),
        (3, True, None)]


def test_an_sms_gateway_that_hangs_gets_the_delivery_timeout_once_not_once_per_recipient(
        conn: psycopg.Connection, installed: str) -> None:
    # Each recipient's request had the whole delivery timeout: a gateway that hangs held one
    # attempt for N times the timeout. Time up, the recipients not yet sent it wait for the
    # next attempt with those the gateway did not answer.
    add_gauge_rule(conn, value=95)
    set_config(conn, alerting__delivery_timeout_seconds=1)
    to = ["+15551111", "+15552222", "+15553333"]
    with http_receiver() as rx:
        rx.stall_when = lambda r: urllib.parse.parse_qs(r.body.decode())["To"] == ["+15552222"]
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__recipients=to)
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        assert [urllib.parse.parse_qs(r.body.decode())["To"] for r in rx.received] == [["+15551111"]]
        assert rx.stalled == 1
        assert outbox_status(conn) == (
            "pending", "delivered to 1 of 3 recipients; refused for now, retried: +15552222: timed out: "
                       "no complete answer within the delivery timeout of 1 s; +15553333: not sent: the "
                       "delivery timeout of 1 s was used up")
        assert recipients_left(conn) == ["+15552222", "+15553333"]
        rx.stall_when = None
        conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        assert sorted(urllib.parse.parse_qs(r.body.decode())["To"][0] for r in rx.received) == to
    assert outbox_status(conn) == ("delivered", None) and recipients_left(conn) is None


def test_a_message_retried_to_one_recipient_does_not_hold_back_the_next_from_the_others(
        conn: psycopg.Connection, installed: str) -> None:
    # The firing reached two of three numbers; the third is retried alone, on the backoff, for
    # up to max_delivery_attempts. The resolution must not wait for that (up to 80 minutes
    # with the defaults) to reach the two who were told of the firing.
    add_gauge_rule(conn, value=95)
    set_config(conn, alerting__cooldown_minutes=0)
    with http_receiver() as rx:
        rx.fail_when = lambda r: 503 if "%2B15552222" in r.body.decode() else None
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__recipients=["+15551111", "+15552222", "+15553333"])
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        conn.execute("UPDATE public.test_gauge SET v = 10")
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        told = [(urllib.parse.parse_qs(r.body.decode())["To"][0], "RESOLVED" in r.body.decode())
                for r in rx.received]
        assert told == [("+15551111", False), ("+15553333", False),
                        ("+15551111", True), ("+15553333", True)]
    assert conn.execute("SELECT event, status, recipients_left FROM perfmon.alert_outbox ORDER BY message_id"
                        ).fetchall() == [("firing", "pending", ["+15552222"]),
                                         ("resolved", "pending", ["+15552222"])]


def test_an_sms_gateway_that_asks_to_wait_is_not_sent_the_other_recipients_meanwhile(
        conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=95)
    set_config(conn, alerting__retry_base_seconds=10)
    with http_receiver() as rx:
        rx.fail_when = lambda r: 429 if "%2B15552222" in r.body.decode() else None
        rx.fail_headers = {"Retry-After": "30"}
        set_config(conn, alerting__channels__sms__enabled=True, alerting__channels__sms__gateway_url=rx.url,
                   alerting__channels__sms__recipients=["+15551111", "+15552222", "+15553333"])
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMS_TOKEN": TOKEN}) == 1
        assert [urllib.parse.parse_qs(r.body.decode())["To"] for r in rx.received] == [["+15551111"]]
        assert rx.refused == 1
    assert outbox_status(conn) == (
        "pending", "delivered to 1 of 3 recipients; refused for now, retried: +15552222: HTTP 429 Too Many "
                   "Requests; Retry-After 30 s; +15553333: not sent: the gateway asked to wait (Retry-After)")
    assert recipients_left(conn) == ["+15552222", "+15553333"]
    wait = conn.execute("SELECT round(extract(epoch FROM o.next_attempt_at - d.ts)) "
                        "FROM perfmon.alert_outbox o JOIN perfmon.delivery_log d USING (message_id)"
                        ).fetchone()
    assert wait == (30,), "the gateway's Retry-After, not the 10 s backoff"


def test_an_email_recipient_refused_for_now_is_retried_and_one_refused_for_good_is_not(
        conn: psycopg.Connection, installed: str) -> None:
    add_gauge_rule(conn, value=80)
    recipients = ["dba@example.test", "busy@example.test", "gone@example.test"]
    with smtp_receiver(refuse=("gone@example.test",)) as box:
        box.defer.add("busy@example.test")
        set_config(conn, alerting__channels__email__enabled=True,
                   alerting__channels__email__smtp_host="127.0.0.1",
                   alerting__channels__email__smtp_port=box.port, alerting__channels__email__starttls=False,
                   alerting__channels__email__recipients=recipients)
        analyze(conn)
        assert deliver(installed, {"PGPERFMON_SMTP_PASSWORD": "unused"}) == 1
        assert outbox_status(conn) == (
            "pending", "delivered to 1 of 3 recipients; refused for now, retried: busy@example.test: "
                       "SMTP 451 4.7.1 greylisted, try again later; "
                       "refused: gone@example.test: SMTP 550 no such user here")
        assert recipients_left(conn) == ["busy@example.test"]
        box.defer.clear()
        conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
        assert deliver(installed, {"PGPERFMON_SMTP_PASSWORD": "unused"}) == 1
        assert wait_for(lambda: len(box.mails) == 2)
        assert [m.rcpt_tos for m in box.mails] == [["dba@example.test"], ["busy@example.test"]]
        headers = [email.message_from_bytes(m.content, policy=email.policy.default) for m in box.mails]
        assert headers[0]["Message-ID"] == headers[1]["Message-ID"], "one message, reaching the rest"
    assert outbox_status(conn) == ("delivered", None) and recipients_left(conn) is None


def assert_no_secret(conn: psycopg.Connection, secret: str) -> None:
    """No table of perfmon holds the secret, whatever the column."""
    tables = [t for (t,) in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
        "AND c.relkind IN ('r', 'p') AND c.relname <> 'python_modules'")]
    for table in tables:
        found = conn.execute(f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE %s",
                             (f"%{secret}%",)).fetchone()[0]
        assert found == 0, f"{table} holds the secret"


def test_sampling_that_stopped_raises_an_alert_and_its_return_resolves_it(conn: psycopg.Connection) -> None:
    def stopped() -> list[tuple]:
        conn.execute("SELECT perfmon.evaluate_alerts()")
        return conn.execute("SELECT state, level, round(value) FROM perfmon.alert_log "
                            "WHERE rule = 'sampling_stopped'").fetchall()

    conn.execute("SELECT perfmon.collect()")
    assert stopped() == []
    # pg_cron may take a minute to start a job: a sample 3.5 minutes old is 2.5 intervals
    # late, not yet a warning; then collect() writes none for 5 minutes, then 15.
    conn.execute("UPDATE perfmon.server_history SET ts = ts - interval '210 seconds'")
    assert stopped() == []
    conn.execute("UPDATE perfmon.server_history SET ts = ts - interval '90 seconds'")
    assert stopped() == [("firing", "warning", 4)]
    conn.execute("UPDATE perfmon.server_history SET ts = ts - interval '10 minutes'")
    assert stopped() == [("firing", "critical", 14)]
    conn.execute("SELECT perfmon.collect()")
    assert stopped() == [("resolved", "critical", 14)]


def test_the_agent_and_sampling_rules_keep_a_dbas_rule_of_the_same_name(conn: psycopg.Connection) -> None:
    # A DBA who had added a rule named agent_down keeps it through the upgrade that
    # brings pgperfmon's own (migration 017 run again over it must change nothing).
    conn.execute("UPDATE perfmon.alert_rules SET description = 'ours', hold_seconds = 600 "
                 "WHERE name IN ('agent_down', 'sampling_stopped')")
    migration = Path(__file__).resolve().parents[1] / "sql/migrations/017_agent_and_sampling_alerts.sql"
    conn.execute(migration.read_text())
    assert conn.execute("SELECT name, description, hold_seconds FROM perfmon.alert_rules "
                        "WHERE name IN ('agent_down', 'sampling_stopped') ORDER BY name").fetchall() == \
        [("agent_down", "ours", 600), ("sampling_stopped", "ours", 600)]


def test_the_grouped_agent_down_query_keeps_a_dbas_own_query(conn: psycopg.Connection) -> None:
    # Migration 025 points pgperfmon's agent_down rule at perfmon.agent_down_breaches(); a
    # query a DBA rewrote stays theirs.
    assert "perfmon.agent_down_breaches()" in conn.execute(
        "SELECT query FROM perfmon.alert_rules WHERE name = 'agent_down'").fetchone()[0]
    conn.execute("UPDATE perfmon.alert_rules SET query = 'SELECT NULL::text, 1, NULL, NULL WHERE false' "
                 "WHERE name = 'agent_down'")
    migration = Path(__file__).resolve().parents[1] / "sql/migrations/025_agent_down_grouped.sql"
    conn.execute(migration.read_text())
    assert conn.execute("SELECT query FROM perfmon.alert_rules WHERE name = 'agent_down'").fetchone() == (
        "SELECT NULL::text, 1, NULL, NULL WHERE false",)


def test_an_ongoing_anomaly_raises_an_alert_and_its_end_resolves_it(conn: psycopg.Connection) -> None:
    """An episode of perfmon.anomalies at or above alerting.anomaly_min_level is an alert."""
    episode = conn.execute(
        """INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, started_at,
               last_seen_at, samples, peak_score, peak_at, observed_value, expected_low,
               expected_high)
           VALUES (1, 'envelope', 'db.connections.total', now() - interval '1 minute', now(),
                   12, 2.5, now(), 95, 10, 40)
           RETURNING episode_id""").fetchone()[0]
    analyze(conn)
    fired = conn.execute(
        "SELECT state, level, current_value FROM perfmon.alerts WHERE rule = 'anomaly'").fetchall()
    assert fired == [("firing", "warning", 2.5)]
    conn.execute("UPDATE perfmon.anomaly_episodes SET ended_at = now() WHERE episode_id = %s",
                 (episode,))
    analyze(conn)
    assert conn.execute(
        "SELECT state FROM perfmon.alerts WHERE rule = 'anomaly'").fetchall() == [("resolved",)]


def test_an_alert_of_a_disabled_or_deleted_rule_is_resolved_and_never_escalates(
        conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, escalation_minutes=5, value=95)
    add_gauge_rule(conn, name="test_gone", escalation_minutes=5, value=95)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    assert conn.execute("SELECT rule, state FROM perfmon.alerts ORDER BY rule").fetchall() == \
        [("test_gauge", "firing"), ("test_gone", "firing")]
    # The docs' way to pause a rule, and a rule removed for good: the condition may still
    # be there, but nothing measures it any more.
    conn.execute("UPDATE perfmon.alert_rules SET enabled = false WHERE name = 'test_gauge'")
    conn.execute("DELETE FROM perfmon.alert_rules WHERE name = 'test_gone'")
    assert analyze(conn)["alerts"]["outcomes"] == {"resolved": 2}
    assert conn.execute("SELECT rule, state FROM perfmon.alerts ORDER BY rule").fetchall() == \
        [("test_gauge", "resolved"), ("test_gone", "resolved")]
    backdate(conn, 60)
    assert "escalated" not in analyze(conn)["alerts"]["outcomes"]
    # Whoever heard of the firing hears of its end, and of nothing else.
    assert sorted((e, c) for _, e, c, _, _ in outbox(conn)) == \
        [("firing", "webhook")] * 2 + [("resolved", "webhook")] * 2
    reasons = [r for (r,) in conn.execute(
        "SELECT details ->> 'reason' FROM perfmon.alert_events WHERE event = 'resolved' ORDER BY alert_id")]
    assert reasons == ["rule disabled", "rule deleted"]


def test_a_value_that_is_not_a_finite_number_fires_nothing_and_is_reported(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=75)
    set_config(conn, alerting__channels__webhook__enabled=True)
    analyze(conn)
    # NaN compares greater than every number in PostgreSQL: it must not read as an emergency.
    conn.execute("UPDATE public.test_gauge SET v = 'NaN'")
    conn.execute("INSERT INTO public.test_gauge VALUES ('app2', 'Infinity'), ('app3', '-Infinity')")
    result = analyze(conn)["alerts"]
    run = result["rules"]["test_gauge"]
    assert run["breaches"] == 0 and run["skipped"] == 3
    assert "not a finite number" in run["error"]
    assert result["outcomes"] == {}, "nothing fires, nothing resolves"
    # A broken measurement says nothing of the condition: the open alert stays as it was.
    assert conn.execute("SELECT target, state, level, current_value FROM perfmon.alerts").fetchall() == \
        [("app1", "firing", "warning", 75)]
    assert [(e, lv) for _, e, _, lv, _ in outbox(conn)] == [("firing", "warning")]
    assert conn.execute("SELECT rules -> 'test_gauge' ->> 'error' FROM perfmon.alert_rule_runs "
                        "ORDER BY ts DESC LIMIT 1").fetchone()[0] == run["error"]
    assert conn.execute("SELECT * FROM perfmon.alert_level_for('>', 'NaN', 0, 70, 90, 98)"
                        ).fetchone() == (None, None)


def test_a_level_flapping_below_one_already_notified_is_not_notified_again(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=95)
    set_config(conn, alerting__channels__webhook__enabled=True, alerting__channels__sms__enabled=True)
    for v in (95, 75, 95, 75, 95, 75):
        conn.execute("UPDATE public.test_gauge SET v = %s", (v,))
        analyze(conn)
    # Each return to critical is shown, but the page (SMS) went out once.
    assert sorted((e, c, lv) for _, e, c, lv, _ in outbox(conn)) == \
        [("firing", "sms", "critical"), ("firing", "webhook", "critical")]
    assert conn.execute("SELECT count(*) FROM perfmon.alert_events WHERE event = 'level_raised' "
                        "AND details ->> 'notified' = 'false'").fetchone()[0] == 2
    # Above every level notified so far: notified.
    conn.execute("UPDATE public.test_gauge SET v = 99")
    assert analyze(conn)["alerts"]["outcomes"] == {"level_raised": 1}
    assert sorted((e, c, lv) for _, e, c, lv, _ in outbox(conn) if e == "level_raised") == \
        [("level_raised", "sms", "emergency"), ("level_raised", "webhook", "emergency")]
    assert conn.execute("SELECT notified_level FROM perfmon.alert_log").fetchone()[0] == "emergency"


def test_an_alert_that_fired_during_a_silence_is_notified_when_it_ends(conn: psycopg.Connection) -> None:
    add_gauge_rule(conn, value=80)
    set_config(conn, alerting__channels__webhook__enabled=True)
    silence = conn.execute("SELECT perfmon.silence_alerts('test_gauge', '%', '1 hour', 'deploy')"
                           ).fetchone()[0]
    analyze(conn)
    analyze(conn)
    assert conn.execute("SELECT state, silenced FROM perfmon.alerts").fetchall() == [("firing", True)]
    assert outbox(conn) == []
    conn.execute("SELECT perfmon.expire_silence(%s)", (silence,))
    # Still firing once the silence is over: now it is heard of, once.
    outcomes = analyze(conn)["alerts"]["outcomes"]
    assert [(e, c, lv) for _, e, c, lv, _ in outbox(conn)] == [("firing", "webhook", "warning")]
    assert outcomes == {"firing": 1, "firing_after_silence": 1}
    assert analyze(conn)["alerts"]["outcomes"] == {"firing": 1}
    assert len(outbox(conn)) == 1
    # ... and so is its end.
    conn.execute("UPDATE public.test_gauge SET v = 1")
    analyze(conn)
    assert [e for _, e, *_ in outbox(conn)] == ["firing", "resolved"]


def test_a_silenced_alert_does_not_escalate(conn: psycopg.Connection) -> None:
    """Escalation notifies; under a silence it climbed unheard and the alert came out of
    the silence at the top level."""
    add_gauge_rule(conn, escalation_minutes=5, value=80)
    conn.execute("SELECT perfmon.silence_alerts('test_gauge', '%', '1 hour', 'deploy')")
    analyze(conn)
    for _ in range(3):
        backdate(conn, 6)
        analyze(conn)
    assert conn.execute("SELECT escalation_level, level FROM perfmon.alert_log").fetchall() == [
        (0, "warning")]


def test_the_resolution_reaches_every_channel_that_heard_of_the_alert(conn: psycopg.Connection) -> None:
    set_config(conn, alerting__channels__webhook__enabled=True,
               alerting__channels__webhook__min_level="critical",
               alerting__channels__slack__enabled=True, alerting__channels__slack__min_level="emergency",
               alerting__escalation_channels=["slack"])
    # Heard at critical, resolved after the level was lowered to warning.
    add_gauge_rule(conn, value=95)
    for v in (95, 75, 10):
        conn.execute("UPDATE public.test_gauge SET v = %s", (v,))
        analyze(conn)
    assert [(e, c) for _, e, c, _, _ in outbox(conn)] == [("firing", "webhook"), ("resolved", "webhook")]
    # Slack heard of it only through the escalation: it hears of its end too.
    add_gauge_rule(conn, name="test_escalated", escalation_minutes=5, value=75)
    analyze(conn)
    backdate(conn, 6)
    analyze(conn)
    conn.execute("UPDATE public.test_escalated SET v = 10")
    analyze(conn)
    later = conn.execute("SELECT event, channel FROM perfmon.alert_outbox AS o JOIN perfmon.alert_log "
                         "USING (alert_id) WHERE rule = 'test_escalated' ORDER BY event, channel").fetchall()
    assert later == [("escalated", "slack"), ("escalated", "webhook"),
                     ("resolved", "slack"), ("resolved", "webhook")]
