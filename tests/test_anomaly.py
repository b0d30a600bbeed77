"""Anomaly detection in the database: models, scoring, episodes, fallback, backtest, forecasts.

The workload is synthetic history written into perfmon's own tables (server_history,
statement_history, the metric store) at one-minute samples: two quiet days to train on,
then a quiet hour, then four incidents - what perfmon.collect() and the host sampler
would have stored during them.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from advisor_helpers import set_config
from click.testing import CliRunner

from pgperfmon import config, db, deploy
from pgperfmon.cli import main

STEP = timedelta(minutes=1)
NORMAL = {"sessions_total": 20, "sessions_active": 3, "sessions_waiting": 0, "blocked": 0,
          "tps": 100.0, "mean_ms": 2.0, "cpu": 20.0}


class Workload:
    """Writes samples into the history tables, one per minute, ending now."""

    def __init__(self, conn: psycopg.Connection, start: datetime):
        self.conn = conn
        self.ts = start
        self.rng = random.Random(7)
        conn.execute("SELECT perfmon.ensure_day_partitions(t, %s, now() + interval '1 day') "
                     "FROM unnest(ARRAY['server_history', 'statement_history', 'metric_samples']) AS t",
                     (start,))
        self.cpu_series = conn.execute(
            "SELECT series_id FROM perfmon.ingest_series(ARRAY['host.cpu.total_pct'], "
            "ARRAY['{\"host\": \"db1\"}'::jsonb], ARRAY[NULL::text])").fetchone()[0]

    def rows(self, n: int, **override: float) -> list[tuple]:
        out = []
        for _ in range(n):
            v = {**NORMAL, **override}
            r = self.rng
            sessions = max(1, round(v["sessions_total"] + r.gauss(0, 2)))
            active = max(0, round(v["sessions_active"] + r.gauss(0, 1)))
            tps = max(0.0, v["tps"] + r.gauss(0, 8))
            out.append((self.ts, sessions, active, int(v["sessions_waiting"] + (r.random() < 0.1)),
                        int(v["blocked"]), tps, v["mean_ms"] * (1 + r.gauss(0, 0.1)),
                        min(100.0, max(0.0, v["cpu"] + r.gauss(0, 3)))))
            self.ts += STEP
        return out

    def write(self, rows: list[tuple]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total, "
                "sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions, "
                "interval_s, database_interval_s, xact_commit, blks_hit, blks_read, max_xid_age) "
                "VALUES (1, %s, 100, %s, %s, 0, 0, %s, %s, 60, 60, %s, 100000, 1000, 1000)",
                [(ts, s, a, w, b, round(tps * 60)) for ts, s, a, w, b, tps, _ms, _cpu in rows])
            cur.executemany(
                "INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms) "
                "VALUES (1, %s, 0, 6000, %s)", [(ts, 6000 * ms) for ts, *_rest, ms, _cpu in rows])
            cur.executemany(
                "INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) VALUES (1, %s, %s, %s)",
                [(self.cpu_series, ts, cpu) for ts, *_rest, cpu in rows])

    def sample_and_score(self, **override: float) -> dict:
        self.write(self.rows(1, **override))
        return self.conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]


def _workload(conn: psycopg.Connection, detector: str, quiet_samples: int = 60) -> Workload:
    set_config(conn, "anomaly_detection.algorithm", detector)
    set_config(conn, "anomaly_detection.episode_quiet_samples", quiet_samples)
    days = 2
    # Training history ends now; the samples scored after it are a few hours ahead.
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=days)
    w = Workload(conn, start)
    w.write(w.rows(days * 1440))
    trained = conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    assert trained["models"] >= 8, trained
    return w


def _episodes(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT metrics[1], started_at, severity, business_impact, recommended_actions, "
                        "observed_value, expected_low, expected_high, score FROM perfmon.anomalies "
                        "ORDER BY started_at").fetchall()


INCIDENTS = {
    "lock storm": ({"blocked": 12, "sessions_waiting": 14, "sessions_active": 15}, "db.sessions.blocked"),
    "connection spike": ({"sessions_total": 90}, "db.connections.total"),
    "slow queries": ({"mean_ms": 40.0}, "db.query.mean_ms"),
    "CPU hog": ({"cpu": 97.0}, "host.cpu.total_pct"),
}


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_incidents_are_flagged_within_two_samples_and_a_quiet_hour_is_not(
        conn: psycopg.Connection, detector: str) -> None:
    w = _workload(conn, detector)
    assert conn.execute("SELECT perfmon.anomaly_detector()").fetchone()[0] == detector
    for _ in range(60):
        result = w.sample_and_score()
        assert result["detector"] == detector
    assert result["scored"] >= 8
    assert _episodes(conn) == [], "a quiet hour produced anomalies"
    for name, (override, feature) in INCIDENTS.items():
        onset = w.ts
        for _ in range(2):
            w.sample_and_score(**override)
        flagged = {row[0]: row for row in _episodes(conn) if row[1] >= onset}
        assert feature in flagged, f"{name}: nothing on {feature} within two samples ({flagged})"
        row = flagged[feature]
        assert row[1] <= onset + STEP
        assert row[3] and row[4], f"{name}: no impact or actions"
        assert not row[6] <= row[5] <= row[7], f"{name}: observed value inside the expected range"
        for _ in range(100):  # back to normal: the moving mean settles, then the quiet samples end it
            w.sample_and_score()
    still_open = conn.execute("SELECT metrics FROM perfmon.anomalies WHERE ongoing").fetchall()
    assert still_open == []
    # Consecutive anomalous samples are one episode, not one row each.
    per_feature = conn.execute("SELECT metrics[1], count(*), sum(anomalous_samples) FROM perfmon.anomalies "
                               "GROUP BY 1").fetchall()
    assert all(n == 1 and samples >= 2 for feature, n, samples in per_feature
               if feature in {f for _o, f in INCIDENTS.values()}), per_feature


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_scoring_that_fell_behind_catches_up_on_a_quiet_hour_without_anomalies(
        conn: psycopg.Connection, detector: str) -> None:
    # analyze() stopped for most of an hour (a paused job, a long maintenance): the
    # samples it missed are scored together, the oldest near the start of the lookback.
    # Their moving means still cover 36 samples, as when each was scored in time.
    set_config(conn, "anomaly_detection.algorithm", detector)
    behind = 58
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=2)
    w = Workload(conn, start)
    w.write(w.rows(2 * 1440 - behind - 1))
    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 8
    # The last sample scored before the pause, near the start of the hour's lookback,
    # timed from after the training: a slow training under load once pushed a sample
    # placed before it out of the lookback, so that nothing was scored before the pause.
    w.ts = conn.execute("SELECT now()").fetchone()[0] - timedelta(minutes=behind, seconds=30)
    first = w.sample_and_score()
    assert first["scored"] >= 8 and first["anomalous"] == 0, first
    w.write(w.rows(behind))
    result = conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]
    assert result["scored"] >= 8 * behind, result
    assert result["anomalous"] == 0, _episodes(conn)


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_the_first_samples_after_a_gap_in_sampling_are_not_flagged_for_it(
        conn: psycopg.Connection, detector: str) -> None:
    # The server was down for three hours: nothing was sampled or scored. The samples
    # after it have no 36 recent samples for a moving mean; their values are scored.
    set_config(conn, "anomaly_detection.algorithm", detector)
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=2)
    w = Workload(conn, start)
    w.write(w.rows(2 * 1440 - 200))
    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 8
    assert w.sample_and_score()["anomalous"] == 0
    w.ts += timedelta(hours=3)
    for _ in range(20):
        assert w.sample_and_score()["anomalous"] == 0, _episodes(conn)
    w.sample_and_score(cpu=98.0)
    assert "host.cpu.total_pct" in [r[0] for r in _episodes(conn)]


def test_a_second_scoring_or_training_at_once_skips(conn: psycopg.Connection, paused_cron: str) -> None:
    # A manual analyze() beside the job's would count the same samples into the same
    # episodes twice; a second training would store the same models again.
    w = _workload(conn, "envelope")
    w.write(w.rows(1, cpu=98.0))
    conn.execute("SET statement_timeout = '30s'")  # unguarded, the second would wait on the first's rows
    with psycopg.connect(paused_cron) as holder:  # its transaction stays open
        held = holder.execute("SELECT perfmon.score_anomalies()").fetchone()[0]
        assert held["anomalous"] >= 1
        assert conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]["skipped"] == \
            "another scoring is running"
        assert "models" in holder.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
        assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["skipped"] == \
            "another training is running"
        holder.commit()
    assert conn.execute("SELECT count(*), sum(anomalous_samples) FROM perfmon.anomalies").fetchone() == (1, 1)
    assert conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]["scored"] == 0


UNSCORABLE = {
    "nothing changed": None,
    "anomaly detection turned off": "UPDATE perfmon.config SET value = 'false' "
                                    "WHERE key = 'anomaly_detection.enabled'",
    "another detector chosen": "UPDATE perfmon.config SET value = '\"robust_zscore\"' "
                               "WHERE key = 'anomaly_detection.algorithm'",
    "its feature disabled": "UPDATE perfmon.anomaly_features SET enabled = false "
                            "WHERE name = 'db.connections.total'",
    "its feature removed": "DELETE FROM perfmon.anomaly_features WHERE name = 'db.connections.total'",
}


@pytest.mark.parametrize("change", list(UNSCORABLE))
def test_an_episode_no_scoring_will_reach_again_ends_and_its_alert_resolves(
        conn: psycopg.Connection, change: str) -> None:
    # An open episode ends after its feature's quiet samples: once nothing scores that
    # feature with that detector any more, it stayed ongoing, its alert firing, for ever.
    conn.execute(
        """INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, started_at,
               last_seen_at, samples, peak_score, peak_at, observed_value, expected_low, expected_high)
           VALUES (1, 'envelope', 'db.connections.total', now() - interval '12 minutes',
                   now() - interval '1 minute', 12, 2.5, now() - interval '5 minutes', 95, 10, 40)""")
    conn.execute("SELECT perfmon.analyze()")
    alert = "SELECT state FROM perfmon.alerts WHERE rule = 'anomaly'"
    assert conn.execute(alert).fetchall() == [("firing",)]
    if UNSCORABLE[change]:
        conn.execute(UNSCORABLE[change])
    for _ in range(3):
        result = conn.execute("SELECT perfmon.analyze()").fetchone()[0]
    episode = conn.execute("SELECT ongoing, last_seen_at = peak_at + interval '4 minutes' "
                           "FROM perfmon.anomalies").fetchall()
    if change == "nothing changed":  # the envelope still scores it: its quiet samples end it
        assert episode == [(True, True)]
        assert conn.execute(alert).fetchall() == [("firing",)]
    else:
        assert episode == [(False, True)], result
        assert conn.execute(alert).fetchall() == [("resolved",)]


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_the_episode_of_a_series_that_stops_ends_when_the_others_have_gone_on(
        conn: psycopg.Connection, detector: str) -> None:
    # A second host's CPU spikes, then the host is removed: it never sends the quiet
    # samples that end its episode, which stayed ongoing (its alert firing) for ever.
    w = _workload(conn, detector, quiet_samples=10)
    db2 = conn.execute("SELECT series_id FROM perfmon.ingest_series(ARRAY['host.cpu.total_pct'], "
                       "ARRAY['{\"host\": \"db2\"}'::jsonb], ARRAY[NULL::text])").fetchone()[0]
    conn.execute("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                 "SELECT 1, %s, t, 20 + 6 * random() FROM generate_series(%s - interval '2 days', %s, "
                 "interval '1 minute') AS t", (db2, w.ts - STEP, w.ts - STEP))
    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 9
    conn.execute("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                 "VALUES (1, %s, %s, 99)", (db2, w.ts))
    spike = w.ts
    w.sample_and_score()
    ongoing = "SELECT series, ongoing, last_seen_at FROM perfmon.anomalies"
    assert conn.execute(ongoing).fetchall() == [('{"host": "db2"}', True, spike)]
    for _ in range(9):  # the other host goes on, short of db2's quiet samples
        w.sample_and_score()
    assert conn.execute(ongoing).fetchall() == [('{"host": "db2"}', True, spike)]
    for _ in range(2):
        result = w.sample_and_score()
    assert conn.execute(ongoing).fetchall() == [('{"host": "db2"}', False, spike)], result
    assert result["episodes_ended_unscored"] == 1


def test_a_long_lived_session_keeps_only_the_models_it_still_scores_with(conn: psycopg.Connection) -> None:
    """A backend that scores every interval (a pool's, or the agent's schedule) kept each model it
    had loaded while the model stayed current: that of a host removed, or of a feature disabled,
    for ever, and a copy in each such backend."""
    w = _workload(conn, "envelope")
    db2 = conn.execute("SELECT series_id FROM perfmon.ingest_series(ARRAY['host.cpu.total_pct'], "
                       "ARRAY['{\"host\": \"db2\"}'::jsonb], ARRAY[NULL::text])").fetchone()[0]
    conn.execute("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                 "SELECT 1, %s, t, 20 + 6 * random() FROM generate_series(%s - interval '2 days', %s, "
                 "interval '1 minute') AS t", (db2, w.ts - STEP, w.ts - STEP))
    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 9
    # The session's cache, as PL/Python keeps it (GD is shared by the session's functions).
    conn.execute("CREATE FUNCTION public.cached_models() RETURNS int8[] LANGUAGE plpython3u AS "
                 "$$ return sorted(GD.get('perfmon_anomaly_models', {})) $$")
    current = ("SELECT coalesce(array_agg(model_id ORDER BY model_id), '{}') FROM perfmon.anomaly_models "
               "WHERE current AND detector = 'envelope' AND NOT (feature = ANY (%s) OR series = ANY (%s))")

    def analyze() -> list[int]:
        w.write(w.rows(1))
        conn.execute("SELECT perfmon.analyze()")
        return conn.execute("SELECT public.cached_models()").fetchone()[0]

    assert analyze() == conn.execute(current, ([], [])).fetchone()[0]
    # db2 was removed hours ago (its model stays current: nothing retrains it; its samples of the
    # last hours, which the scoring reads, are gone), a feature is disabled, the models of another
    # deleted: none of theirs is kept.
    conn.execute("DELETE FROM perfmon.metric_samples WHERE series_id = %s "
                 "AND ts > now() - interval '3 hours'", (db2,))
    conn.execute("UPDATE perfmon.anomaly_features SET enabled = false WHERE name = 'db.sessions.blocked'")
    conn.execute("DELETE FROM perfmon.anomaly_models WHERE feature = 'db.query.mean_ms'")
    gone = (["db.sessions.blocked", "db.query.mean_ms"], ['{"host": "db2"}'])
    assert analyze() == conn.execute(current, gone).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM perfmon.anomaly_models WHERE current AND detector = 'envelope' "
                        "AND series = '{\"host\": \"db2\"}'").fetchone()[0] == 1
    # Retrained (db.query.mean_ms again): the new models replace the old ones.
    conn.execute("SELECT perfmon.train_anomaly_models(true)")
    assert analyze() == conn.execute(current, (["db.sessions.blocked"], gone[1])).fetchone()[0]


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_the_training_retires_the_models_of_series_that_stopped_sending(
        conn: psycopg.Connection, detector: str) -> None:
    # A host removed, a feature disabled: nothing retrained or replaced their models, which
    # stayed current for ever (and the episode of the host with them, which no scoring ends).
    w = _workload(conn, detector)
    db2 = conn.execute("SELECT series_id FROM perfmon.ingest_series(ARRAY['host.cpu.total_pct'], "
                       "ARRAY['{\"host\": \"db2\"}'::jsonb], ARRAY[NULL::text])").fetchone()[0]
    history = ("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
               "SELECT 1, %s, t, 20 + 6 * random() FROM generate_series(%s - interval '2 days', %s, "
               "interval '1 minute') AS t")
    conn.execute(history, (db2, w.ts - STEP, w.ts - STEP))
    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 9
    models = ("SELECT feature, series, current FROM perfmon.anomaly_models WHERE detector = %s "
              "AND (series = '{\"host\": \"db2\"}' OR feature = 'db.sessions.blocked') ORDER BY 1, 2, 3")
    conn.execute("INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, series, started_at, "
                 "last_seen_at, peak_score, peak_at) VALUES (1, %s, 'host.cpu.total_pct', "
                 "'{\"host\": \"db2\"}', now() - interval '3 days', now() - interval '3 days', 3, "
                 "now() - interval '3 days')", (detector,))
    # db2 sent nothing in the training window, a feature is disabled.
    conn.execute("DELETE FROM perfmon.metric_samples WHERE series_id = %s", (db2,))
    conn.execute("UPDATE perfmon.anomaly_features SET enabled = false WHERE name = 'db.sessions.blocked'")
    trained = conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    assert [(r["feature"], r["series"]) for r in trained["retired"]] == [
        ("db.sessions.blocked", ""), ("host.cpu.total_pct", '{"host": "db2"}')], trained
    assert {r["detector"] for r in trained["retired"]} == {detector}
    assert conn.execute(models, (detector,)).fetchall() == []
    assert conn.execute("SELECT ended_at = last_seen_at FROM perfmon.anomaly_episodes "
                        "WHERE series = '{\"host\": \"db2\"}'").fetchall() == [(True,)]
    # The series sent in the window are kept; a second training retires nothing more.
    assert conn.execute("SELECT count(*) FROM perfmon.anomaly_models WHERE current AND detector = %s",
                        (detector,)).fetchone()[0] >= 7
    assert "retired" not in conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    # Both come back: the next training gives them models again.
    conn.execute(history, (db2, w.ts - STEP, w.ts - STEP))
    conn.execute("UPDATE perfmon.anomaly_features SET enabled = true WHERE name = 'db.sessions.blocked'")
    assert "retired" not in conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    assert conn.execute(models, (detector,)).fetchall() == [
        ("db.sessions.blocked", "", True), ("host.cpu.total_pct", '{"host": "db2"}', True)]


@pytest.mark.parametrize("change", ["envelope_sql", "disabled"])
def test_a_session_whose_python_scoring_stops_drops_the_models_it_had_loaded(
        conn: psycopg.Connection, change: str) -> None:
    """PL/Python's scoring drops the models it no longer scores with, but when it no longer runs
    (the detector changed to envelope_sql, anomaly detection disabled) a long-lived backend kept
    those it had loaded for ever."""
    w = _workload(conn, "envelope")
    # The session's cache, as PL/Python keeps it (GD is shared by the session's functions).
    conn.execute("CREATE FUNCTION public.cached_models() RETURNS int LANGUAGE plpython3u AS "
                 "$$ return len(GD.get('perfmon_anomaly_models', {})) $$")

    def analyze() -> int:
        w.write(w.rows(1))
        conn.execute("SELECT perfmon.analyze()")
        return conn.execute("SELECT public.cached_models()").fetchone()[0]

    assert analyze() >= 8
    if change == "disabled":
        set_config(conn, "anomaly_detection.enabled", False)
    else:
        set_config(conn, "anomaly_detection.algorithm", change)
    assert analyze() == 0
    assert conn.execute("SELECT current_setting('perfmon.anomaly_models_loaded')").fetchone()[0] == ""


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_a_changed_sensitivity_or_time_zone_retrains_at_the_next_training_run(
        conn: psycopg.Connection, detector: str) -> None:
    # A model keeps the margins it was fitted with: a DBA who lowered the sensitivity
    # against noisy alerts kept the old margins for up to retrain_interval_hours, the
    # hourly job saying "not due".
    _workload(conn, detector)
    current = ("SELECT params ->> 'sensitivity', params ->> 'zone', (convert_from(model, 'UTF8')::jsonb "
               "->> 'margin')::float8 FROM perfmon.anomaly_models WHERE current AND detector = %s")
    assert "skipped" in conn.execute("SELECT perfmon.train_anomaly_models()").fetchone()[0]
    set_config(conn, "anomaly_detection.sensitivity", "low")
    trained = conn.execute("SELECT perfmon.train_anomaly_models()").fetchone()[0]
    assert trained.get("models", 0) >= 8, trained
    assert "sensitivity" in trained["settings_changed"]
    assert set(conn.execute(current, (detector,)).fetchall()) == {("low", "UTC", 0.5)}
    set_config(conn, "anomaly_detection.timezone", "Europe/Berlin")
    assert conn.execute("SELECT perfmon.train_anomaly_models()").fetchone()[0].get("models", 0) >= 8
    assert set(conn.execute(current, (detector,)).fetchall()) == {("low", "Europe/Berlin", 0.5)}
    # Fitted with the settings in force: not due again.
    assert "skipped" in conn.execute("SELECT perfmon.train_anomaly_models()").fetchone()[0]


def test_models_survive_a_server_restart(server, conn: psycopg.Connection, installed: str) -> None:
    w = _workload(conn, "envelope")
    before = conn.execute("SELECT model_id, trained_at, md5(model) FROM perfmon.anomaly_models "
                          "WHERE current ORDER BY model_id").fetchall()
    conn.close()
    server.cluster.restart()
    with psycopg.connect(installed, autocommit=True) as again:
        after = again.execute("SELECT model_id, trained_at, md5(model) FROM perfmon.anomaly_models "
                              "WHERE current ORDER BY model_id").fetchall()
        assert after == before
        # Not due: the stored models score, nothing is retrained.
        assert "skipped" in again.execute("SELECT perfmon.train_anomaly_models()").fetchone()[0]
        w.conn = again
        result = w.sample_and_score(cpu=99.0)
        assert result["scored"] >= 8 and result["anomalous"] >= 1
        assert again.execute("SELECT count(*) FROM perfmon.anomaly_models WHERE current").fetchone()[0] \
            == len(before)


def _trained_as_in_python(conn: psycopg.Connection, history: list[tuple[datetime, float]]) -> dict:
    """Trains the detector in force on host CPU's history and checks that the stored
    model's profile is the one perfmon_py fits on the same samples; returns the model."""
    from perfmon_py import anomaly

    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 1
    stored = json.loads(conn.execute(
        "SELECT convert_from(model, 'UTF8') FROM perfmon.anomaly_models WHERE current "
        "AND feature = 'host.cpu.total_pct'").fetchone()[0])
    expected = anomaly.fit_envelope([v for _, v in history], ts=[ts.timestamp() for ts, _ in history])
    assert stored["season"]["profile"] == pytest.approx(expected["season"]["profile"], abs=1e-9)
    assert stored["season"]["mean"] == pytest.approx(expected["season"]["mean"], abs=1e-9)
    assert stored["season"]["explained"] == pytest.approx(expected["season"]["explained"], abs=1e-9)
    assert stored["season"]["zone"] == expected["season"]["zone"] == "UTC"  # anomaly_detection.timezone
    return stored


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_a_day_out_of_shape_is_flagged_through_the_daily_profile(conn: psycopg.Connection,
                                                                  detector: str) -> None:
    """Host CPU with a daily cycle, 4 days of 5-minute samples: the model holds its hourly
    medians, the same from PL/Python and SQL. At the hour of the daily peak the CPU stays
    at its daily mean - inside the week's range, and a moving mean the week has seen -
    and the time-of-day channel flags it; the normal samples before are not flagged."""
    set_config(conn, "anomaly_detection.algorithm", detector)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    step, start = timedelta(minutes=5), now - timedelta(days=4)
    w = Workload(conn, start)
    rng = random.Random(3)
    peak = now + timedelta(hours=1)  # the cycle peaks an hour after the training ends

    def cpu(ts: datetime) -> float:
        return 50 + 30 * math.cos((ts - peak).total_seconds() / 86400 * 2 * math.pi) + rng.gauss(0, 2)

    def write(points: list[tuple[datetime, float]]) -> None:
        conn.cursor().executemany("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                                  "VALUES (1, %s, %s, %s)", [(w.cpu_series, ts, v) for ts, v in points])

    history = [(start + i * step, cpu(start + i * step)) for i in range(4 * 288)]
    write(history)
    stored = _trained_as_in_python(conn, history)
    ts = history[-1][0]
    while ts + step < peak:  # normal samples up to the peak
        ts += step
        write([(ts, cpu(ts))])
        assert conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]["anomalous"] == 0
    level = 50 + rng.gauss(0, 2)  # the daily mean, where 80 is usual
    assert stored["value"]["min"] < level < stored["value"]["max"]
    for _ in range(6):
        ts += step
        write([(ts, level)])
        conn.execute("SELECT perfmon.score_anomalies()")
    found = conn.execute("SELECT started_at, contributing_features, observed_value, expected_low, "
                         "expected_high, peak_at FROM perfmon.anomalies "
                         "WHERE metrics = ARRAY['host.cpu.total_pct']").fetchall()
    assert len(found) == 1 and found[0][0] > peak, found
    _started, contributors, observed, low, high, peak_at = found[0]
    assert contributors[0]["feature"] == "time of day", found
    # The expected range shown is the hour's, around its median, not the week's.
    usual = stored["season"]["profile"][int(peak_at.timestamp() % 86400 // 3600)]
    assert low < usual < high and high - low < 30 and not low <= observed <= high, found


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql"])
def test_a_workday_at_its_rest_day_level_is_flagged_through_the_weekly_profile(conn: psycopg.Connection,
                                                                               detector: str) -> None:
    """A metric high on five days of the week and low on two, 28 days of 15-minute samples:
    no daily rhythm, so the model holds the 168 hourly medians of the week, the same from
    PL/Python and SQL. Today, a workday, the level drops to a rest day's: inside the
    window's range, a moving mean the window has seen, and flagged by the weekly profile."""
    set_config(conn, "anomaly_detection.algorithm", detector)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    step, start = timedelta(minutes=15), now - timedelta(days=28) + timedelta(minutes=1)
    rest = {(now.weekday() + 2) % 7, (now.weekday() + 3) % 7}
    w = Workload(conn, start)
    rng = random.Random(8)

    def write(points: list[tuple[datetime, float]]) -> None:
        conn.cursor().executemany("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                                  "VALUES (1, %s, %s, %s)", [(w.cpu_series, ts, v) for ts, v in points])

    history = [(start + i * step, (20 if (start + i * step).weekday() in rest else 60) + rng.gauss(0, 3))
               for i in range(28 * 96)]
    write(history)
    stored = _trained_as_in_python(conn, history)
    assert len(stored["season"]["profile"]) == 168
    ts = history[-1][0]
    for _ in range(12):  # three hours at a rest day's level
        ts += step
        write([(ts, 20 + rng.gauss(0, 3))])
        conn.execute("SELECT perfmon.score_anomalies()")
    found = conn.execute("SELECT started_at, contributing_features, expected_low, observed_value "
                         "FROM perfmon.anomalies WHERE metrics = ARRAY['host.cpu.total_pct']").fetchall()
    assert len(found) == 1 and found[0][0] > history[-1][0], found
    assert found[0][1][0]["feature"] == "time of day" and found[0][2] > found[0][3], found


@pytest.mark.parametrize("detector", ["envelope", "envelope_sql", "isolation_forest"])
def test_a_feature_value_that_is_not_a_finite_number_is_skipped_and_said(conn: psycopg.Connection,
                                                                          detector: str) -> None:
    """A custom feature dividing by a float zero gives Infinity or NaN: the SQL envelope's
    range became infinite (its maximum NaN), and nothing said why."""
    set_config(conn, "anomaly_detection.algorithm", detector)
    conn.execute("CREATE TABLE public.orders_rate (ts timestamptz PRIMARY KEY, v float8)")
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=2)
    rng = random.Random(3)
    rows = [(start + i * STEP, 50 + rng.gauss(0, 3)) for i in range(2 * 1440)]
    broken = {100: math.inf, 900: math.inf, 1200: -math.inf, 1300: math.nan, 1700: math.inf}
    for i, value in broken.items():
        rows[i] = (rows[i][0], value)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.orders_rate VALUES (%s, %s)", rows)
    conn.execute("INSERT INTO perfmon.anomaly_features (name, query, unit, multi, impact, actions, "
                 "description) VALUES ('business.orders', 'SELECT NULL::text, ts, v FROM public.orders_rate "
                 "WHERE ts BETWEEN $1 AND $2', 'per_s', true, 'fewer orders', ARRAY['check'], 'orders')")
    trained = conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    assert trained["non_finite"] == [{"feature": "business.orders", "series": "", "samples": 5,
                                      "last_ts": (start + 1700 * STEP).isoformat(), "last_value": "Infinity"}]
    per_metric = "envelope" if detector == "envelope" else detector
    samples, model = conn.execute(
        "SELECT samples, CASE WHEN get_byte(model, 0) = 123 THEN convert_from(model, 'UTF8') END "
        "FROM perfmon.anomaly_models WHERE current AND feature = 'business.orders' AND detector = %s",
        (per_metric,)).fetchone()
    assert samples == 2 * 1440 - 5
    if model is not None:
        envelope = json.loads(model)
        bounds = [envelope[c][k] for c in ("value", "mean") for k in ("min", "max", "spread")]
        assert all(isinstance(b, float) and math.isfinite(b) for b in bounds), envelope
        assert 30 < envelope["value"]["min"] < envelope["value"]["max"] < 70
    # A new sample that is Infinity: skipped, said once; the samples around it are scored.
    conn.execute("INSERT INTO public.orders_rate VALUES (now() - interval '20 seconds', 'Infinity'), "
                 "(now() - interval '10 seconds', 50)")
    scored = conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]
    assert [(n["feature"], n["samples"], n["last_value"]) for n in scored["non_finite"]] == \
        [("business.orders", 1, "Infinity")]
    assert scored["scored"] >= 1 and scored["anomalous"] == 0, scored
    conn.execute("INSERT INTO public.orders_rate VALUES (now(), 51)")
    assert "non_finite" not in conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM perfmon.anomaly_episodes WHERE observed_value = 'Infinity' "
                        "OR expected_high IN ('NaN', 'Infinity')").fetchone()[0] == 0


@pytest.mark.parametrize("detector", ["envelope", "isolation_forest"])
def test_the_training_reads_each_feature_once(conn: psycopg.Connection, detector: str) -> None:
    """The PL/Python training read every feature over its window, then read it all again for the
    values that are not finite numbers, which it skips and says: a second pass, +12% of its time."""
    set_config(conn, "anomaly_detection.algorithm", detector)
    conn.execute("CREATE TABLE public.orders_rate (ts timestamptz PRIMARY KEY, v float8)")
    conn.execute("CREATE SEQUENCE public.orders_read")  # counts the rows the feature's query reads
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=2)
    rng = random.Random(3)
    rows = [(start + i * STEP, math.nan if i == 100 else 50 + rng.gauss(0, 3)) for i in range(2 * 1440)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.orders_rate VALUES (%s, %s)", rows)
    conn.execute("INSERT INTO perfmon.anomaly_features (name, query, unit, multi, impact, actions, "
                 "description) VALUES ('business.orders', 'SELECT NULL::text, ts, v FROM public.orders_rate "
                 "WHERE ts BETWEEN $1 AND $2 AND nextval(''public.orders_read'') > 0', 'per_s', true, "
                 "'fewer orders', ARRAY['check'], 'orders')")
    trained = conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    assert trained["non_finite"] == [{"feature": "business.orders", "series": "", "samples": 1,
                                      "last_ts": (start + 100 * STEP).isoformat(), "last_value": "NaN"}]
    assert conn.execute("SELECT samples FROM perfmon.anomaly_models WHERE current "
                        "AND feature = 'business.orders' AND detector = %s", (detector,)).fetchone() == \
        (2 * 1440 - 1,)
    assert conn.execute("SELECT last_value FROM public.orders_read").fetchone()[0] == 2 * 1440


def test_isolation_forest_stores_and_uses_a_multi_metric_model(conn: psycopg.Connection) -> None:
    w = _workload(conn, "isolation_forest")
    names = conn.execute("SELECT features FROM perfmon.anomaly_models WHERE current "
                         "AND detector = 'isolation_forest_multi'").fetchone()[0]
    assert {"db.connections.total", "db.query.mean_ms", "host.cpu.total_pct"} <= set(names)
    w.sample_and_score(sessions_total=90, mean_ms=40.0, blocked=12, sessions_waiting=14)
    multi = conn.execute("SELECT contributing_features FROM perfmon.anomalies "
                         "WHERE detector = 'isolation_forest_multi'").fetchall()
    assert multi, "the multi-metric forest did not flag four metrics moving at once"
    assert {c["feature"] for c in multi[0][0]} & {"db.connections.total", "db.query.mean_ms",
                                                   "db.sessions.blocked"}


def test_the_multi_metric_alert_keeps_its_target_when_the_peak_moves(conn: psycopg.Connection) -> None:
    """The anomaly alert's target was the features contributing at the episode's peak: when a
    higher peak had other contributors, the alert resolved and another fired within one episode."""
    set_config(conn, "anomaly_detection.algorithm", "isolation_forest")
    conn.execute(
        """INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, started_at, last_seen_at,
               samples, peak_score, peak_at, observed_value, expected_low, expected_high, contributors)
           VALUES (1, 'isolation_forest_multi', 'multi', now() - interval '12 minutes',
                   now() - interval '2 minutes', 12, 2.5, now() - interval '5 minutes', 0.7, 0, 0.5,
                   '[{"feature": "db.connections.total", "z": 9.1}]')""")
    conn.execute("SELECT perfmon.analyze()")
    alerts = "SELECT alert_id, target, state, details -> 'metrics' FROM perfmon.alerts WHERE rule = 'anomaly'"
    (first, target, state, metrics), = conn.execute(alerts).fetchall()
    assert (state, metrics) == ("firing", ["db.connections.total"])
    # A later, higher peak of the same episode with other contributors, as score_anomalies() records it.
    conn.execute("""UPDATE perfmon.anomaly_episodes
                    SET peak_score = 3.5, peak_at = now() - interval '1 minute',
                        last_seen_at = now() - interval '1 minute', samples = 13,
                        contributors = '[{"feature": "db.query.mean_ms", "z": 14.2},
                                         {"feature": "db.sessions.blocked", "z": 8.0}]'""")
    conn.execute("SELECT perfmon.analyze()")
    assert conn.execute(alerts).fetchall() == \
        [(first, target, "firing", ["db.query.mean_ms", "db.sessions.blocked"])]
    assert target == "multi-metric"
    resolved = "SELECT count(*) FROM perfmon.alert_events WHERE event = 'resolved'"
    assert conn.execute(resolved).fetchone()[0] == 0


@pytest.mark.parametrize(("hidden", "algorithm", "runs"), [("numpy", "envelope", "envelope_sql"),
                                                         ("numpy", "isolation_forest", "envelope_sql"),
                                                         ("sklearn", "isolation_forest", "envelope")])
def test_a_detector_whose_python_package_cannot_be_imported_falls_back(conn: psycopg.Connection, hidden: str,
                                                                       algorithm: str, runs: str) -> None:
    """plpython3u was there but numpy (or scikit-learn) was not: the PL/Python detector was chosen all
    the same and every scoring (or training) failed. The package is made unimportable in this session's
    Python as on a server without it: sys.modules[name] = None, before anything imported it, makes
    `import name` fail and importlib.util.find_spec find nothing."""
    conn.execute(f"DO $$ import sys; sys.modules[{hidden!r}] = None $$ LANGUAGE plpython3u")
    set_config(conn, "anomaly_detection.algorithm", algorithm)
    assert conn.execute("SELECT perfmon.anomaly_detector()").fetchone()[0] == runs
    missing = conn.execute("SELECT perfmon.anomaly_python_missing()").fetchone()[0]
    label = {"numpy": "numpy", "sklearn": "scikit-learn"}[hidden]
    assert list(missing) == [label], missing
    cap = dict((r[0], r[2]) for r in conn.execute("SELECT * FROM perfmon.capabilities()"))
    assert cap["anomaly_detector"].startswith(f"{runs} ({'SQL' if runs == 'envelope_sql' else 'PL/Python'}: "
                                              f"anomaly_detection.algorithm {algorithm} needs {label}, "), cap
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=1)
    w = Workload(conn, start)
    w.write(w.rows(1440))
    assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 8
    for _ in range(5):
        result = w.sample_and_score()
        assert (result["detector"], result["anomalous"]) == (runs, 0), result
    w.sample_and_score(cpu=98.0)
    assert "host.cpu.total_pct" in [r[0] for r in _episodes(conn)]
    assert conn.execute("SELECT DISTINCT detector FROM perfmon.anomalies").fetchall() == [(runs,)]


# Makes a package found but broken in this session's Python, as one built for another numpy is:
# importlib.util.find_spec finds it, and importing it raises ValueError, not ImportError.
BREAK_PACKAGE = """DO $$
import importlib.abc, importlib.machinery, sys
class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == %r:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")
sys.meta_path.insert(0, Broken())
$$ LANGUAGE plpython3u"""


@pytest.mark.parametrize(("broken", "runs"), [("sklearn", "envelope"), ("numpy", "envelope_sql")])
def test_a_detector_whose_python_package_is_broken_falls_back(conn: psycopg.Connection, paused_cron: str,
                                                              broken: str, runs: str) -> None:
    """A scikit-learn that was found but failed to import (built for another numpy) was only looked
    up: the isolation forest stayed chosen and every training failed, where a missing one fell back
    to the envelope. The training, which imports it, finds it broken, and every session falls back."""
    conn.execute(BREAK_PACKAGE % broken)
    set_config(conn, "anomaly_detection.algorithm", "isolation_forest")
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=1)
    w = Workload(conn, start)
    w.write(w.rows(1440))
    trained = conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
    assert trained["detector"] == runs and trained["models"] >= 8, trained
    assert conn.execute("SELECT perfmon.anomaly_detector()").fetchone()[0] == runs
    label = {"numpy": "numpy", "sklearn": "scikit-learn"}[broken]
    cap = dict((r[0], r[2]) for r in conn.execute("SELECT * FROM perfmon.capabilities()"))
    assert cap["anomaly_detector"].startswith(
        f"{runs} ({'SQL' if runs == 'envelope_sql' else 'PL/Python'}: anomaly_detection.algorithm "
        f"isolation_forest needs {label}, which the server's Python cannot import: ValueError: "
        "numpy.dtype size changed"), cap
    for _ in range(5):
        result = w.sample_and_score()
        assert (result["detector"], result["anomalous"]) == (runs, 0), result
    w.sample_and_score(cpu=98.0)
    assert "host.cpu.total_pct" in [r[0] for r in _episodes(conn)]
    if broken == "sklearn":
        # Another session, which only looks scikit-learn up, chooses the same; one whose training
        # imports it (unbroken) takes the forest back.
        with psycopg.connect(paused_cron, autocommit=True) as other:
            assert other.execute("SELECT perfmon.anomaly_detector()").fetchone()[0] == "envelope"
            trained = other.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
            assert trained["detector"] == "isolation_forest", trained
            assert other.execute("SELECT perfmon.anomaly_python_missing()").fetchone()[0] == {}


def test_the_anomaly_detector_capability_says_the_configured_sql_envelope_is_chosen(
        conn: psycopg.Connection) -> None:
    set_config(conn, "anomaly_detection.algorithm", "envelope_sql")
    cap = dict((r[0], r[2]) for r in conn.execute("SELECT * FROM perfmon.capabilities()"))
    assert cap["anomaly_detector"] == "envelope_sql (SQL, as anomaly_detection.algorithm chooses)"
    assert conn.execute("SELECT perfmon.anomaly_python_missing()").fetchone()[0] == {}


def test_sql_fallback_without_plpython(server, dbname: str, dsn: str) -> None:
    deploy.install(dsn, config.load(None, env={}), skip_extensions=("plpython3u",))
    # The workload is synthetic: a minute tick of collect() would add a real sample to it.
    server.pause_jobs(dbname)
    with psycopg.connect(dsn, autocommit=True) as conn:
        has = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'plpython3u'").fetchone()
        assert has[0] == 0
        assert conn.execute("SELECT to_regprocedure('perfmon.score_anomalies_py(text,text,integer)')"
                            ).fetchone()[0] is None
        cap = dict((r[0], r[2]) for r in conn.execute("SELECT * FROM perfmon.capabilities()"))
        assert cap["anomaly_detector"].startswith("envelope_sql")
        # The plpython3u line names the detector that runs instead (it said "robust detector").
        assert "anomaly scoring uses the SQL envelope (envelope_sql)" in cap["plpython3u"]
        conn.execute("UPDATE perfmon.config SET value = '\"isolation_forest\"' "
                     "WHERE key = 'anomaly_detection.algorithm'")
        # Whatever is configured, without PL/Python the SQL envelope runs.
        assert conn.execute("SELECT perfmon.anomaly_detector()").fetchone()[0] == "envelope_sql"
        start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=1)
        w = Workload(conn, start)
        w.write(w.rows(1440))
        assert conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]["models"] >= 8
        for _ in range(20):
            assert w.sample_and_score()["anomalous"] == 0
        w.sample_and_score(cpu=98.0)
        assert "host.cpu.total_pct" in [r[0] for r in _episodes(conn)]
        # The backtest runs the SQL envelope too; a PL/Python detector is refused by name.
        onsets = conn.execute("SELECT ts FROM perfmon.anomaly_backtest(%s) WHERE is_anomaly",
                              (w.cpu_series,)).fetchall()
        assert [ts for (ts,) in onsets] == [w.ts - STEP]
        with pytest.raises(psycopg.errors.RaiseException, match=r"envelope.* needs PL/Python"):
            conn.execute("SELECT * FROM perfmon.anomaly_backtest(%s, 'envelope')", (w.cpu_series,))
        # Forecasts are SQL too: the XID age of the workload is flat.
        assert conn.execute("SELECT trend, eta FROM perfmon.forecasts WHERE forecast = 'xid_wraparound'"
                            ).fetchall() == [("flat", None)]


def _series(path: Path, n: int, spike_at: int | None, step: timedelta = timedelta(minutes=5)) -> None:
    """A daily cycle with noise, sampled every step, with 5 samples spiking from spike_at."""
    per_day = timedelta(days=1) / step
    rng = random.Random(5)
    t0 = datetime(2020, 1, 1)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["timestamp", "value"])
        for i in range(n):
            v = 10 + 3 * math.sin(i / per_day * 2 * math.pi) + rng.gauss(0, 0.5)
            if spike_at is not None and spike_at <= i < spike_at + 5:
                v += 30
            out.writerow([(t0 + step * i).isoformat(sep=" "), f"{v:.3f}"])


def test_backtest_runs_the_database_detector_walk_forward(installed: str, tmp_path: Path) -> None:
    _series(tmp_path / "spiky.csv", 1500, 1200)
    _series(tmp_path / "quiet.csv", 1500, None)
    out = tmp_path / "flags.csv"
    runner = CliRunner()
    result = runner.invoke(main, ["anomalies", "backtest", "--dsn", installed, "--input",
                                  str(tmp_path / "spiky.csv"), "--input", str(tmp_path / "quiet.csv"),
                                  "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "timestamp", "score", "is_anomaly"]
    assert len(rows) == 3000
    flagged = [(r["file"], r["timestamp"]) for r in rows if r["is_anomaly"] == "true"]
    assert ("spiky.csv", "2020-01-05 04:00:00") in flagged
    assert not [f for f in flagged if f[0] == "quiet.csv"], flagged
    # Walk-forward: the same series cut before the spike scores its points identically.
    _series(tmp_path / "cut.csv", 1150, None)
    cut_out = tmp_path / "cut_flags.csv"
    result = runner.invoke(main, ["anomalies", "backtest", "--dsn", installed, "--input",
                                  str(tmp_path / "cut.csv"), "--output", str(cut_out)])
    assert result.exit_code == 0, result.output
    cut = [r["score"] for r in csv.DictReader(cut_out.open())]
    assert cut == [r["score"] for r in rows if r["file"] == "spiky.csv"][:1150]
    with psycopg.connect(installed) as conn:  # the loaded series were removed again
        assert conn.execute("SELECT count(*) FROM perfmon.metric_series AS s JOIN perfmon.metrics "
                            "USING (metric_id) WHERE name = 'backtest.value'").fetchone()[0] == 0


def _backtest_series(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM perfmon.metric_series AS s JOIN perfmon.metrics "
                            "USING (metric_id) WHERE name = 'backtest.value'").fetchone()[0]


def test_a_backtest_whose_input_is_refused_part_way_leaves_no_series_behind(installed: str,
                                                                            tmp_path: Path) -> None:
    # The good lines before and after the bad one were stored before the refusal was
    # known; the series stayed in the metric store, which said it removed its series.
    _series(tmp_path / "good.csv", 400, None)
    _series(tmp_path / "bad.csv", 400, None)
    lines = (tmp_path / "bad.csv").read_text().splitlines()
    lines[200] = lines[200].split(",")[0] + ",oops"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    code, output, _rows = _backtest(installed, [tmp_path / "good.csv", tmp_path / "bad.csv"],
                                    tmp_path / "flags.csv")
    assert code == 1 and "bad.csv: 1 lines refused, e.g. line 201" in output, output
    assert _backtest_series(installed) == 0
    # With --keep the series loaded stay, as asked.
    code, output, _rows = _backtest(installed, [tmp_path / "good.csv", tmp_path / "bad.csv"],
                                    tmp_path / "flags.csv", "--keep")
    assert code == 1
    assert _backtest_series(installed) == 2


def test_a_failed_backtest_leaves_its_output_file_as_it_was(installed: str, tmp_path: Path) -> None:
    # The output was opened for writing before anything ran: a run that failed truncated
    # the flags of the last good one to a header, or to nothing.
    _series(tmp_path / "good.csv", 400, None)
    (tmp_path / "bad.csv").write_text("timestamp,value\n2020-01-01 00:00:00,oops\n")
    out = tmp_path / "flags.csv"
    out.write_text("the last good run's flags\n")
    code, output, _rows = _backtest(installed, [tmp_path / "good.csv", tmp_path / "bad.csv"], out)
    assert code == 1, output
    assert out.read_text() == "the last good run's flags\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "flags.csv", "good.csv"]
    code, output, rows = _backtest(installed, [tmp_path / "good.csv"], out)
    assert code == 0 and len(rows) == 400, output


@pytest.mark.parametrize("content", ["identical", "different"])
def test_a_backtest_of_two_inputs_with_the_same_file_name_is_refused_naming_both(
        installed: str, tmp_path: Path, content: str) -> None:
    # a/x.csv and b/x.csv were loaded with the same labels: identical, the second was refused
    # as "no values" (its batches duplicates); different, with --keep, the two were one series,
    # and the output's file column could not tell their rows apart.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "x.csv", tmp_path / "b" / "x.csv"
    _series(first, 400, None)
    _series(second, 400, 300 if content == "different" else None)
    out = tmp_path / "flags.csv"
    for options in ((), ("--keep",)):
        result = CliRunner().invoke(main, ["anomalies", "backtest", "--dsn", installed, "--input", str(first),
                                           "--input", str(second), "--output", str(out), *options])
        assert result.exit_code != 0, result.output
        assert f"{first} and {second} have the same file name 'x.csv'" in result.output, result.output
        assert not out.exists()
        assert _backtest_series(installed) == 0
    # The same inputs under names of their own run, each its own series and rows.
    (tmp_path / "b" / "y.csv").symlink_to(second)
    code, output, rows = _backtest(installed, [first, tmp_path / "b" / "y.csv"], out)
    assert code == 0, output
    assert [(f, sum(r["file"] == f for r in rows)) for f in ("x.csv", "y.csv")] == \
        [("x.csv", 400), ("y.csv", 400)]


def _backtest(dsn: str, files: list[Path], out: Path, *options: str) -> tuple[int, str, list[dict]]:
    args = ["anomalies", "backtest", "--dsn", dsn, "--output", str(out), *options]
    for file in files:
        args += ["--input", str(file)]
    result = CliRunner().invoke(main, args)
    rows = list(csv.DictReader(out.open())) if result.exit_code == 0 else []
    return result.exit_code, result.output, rows


def _both_envelopes(dsn: str, tmp_path: Path, name: str, rows: list[list[str]]) -> list[dict]:
    """Backtests rows (timestamp, value) with both envelopes, checks that they score and
    flag every point alike, and returns the rows of the output (the PL/Python one's)."""
    with (tmp_path / name).open("w", newline="") as fh:
        csv.writer(fh).writerows([["timestamp", "value"], *rows])
    scored = {}
    for detector in ("envelope", "envelope_sql"):
        code, output, scored[detector] = _backtest(dsn, [tmp_path / name], tmp_path / f"{detector}.csv",
                                                   "--detector", detector)
        assert code == 0, output
    py, sql = scored["envelope"], scored["envelope_sql"]
    assert [r["timestamp"] for r in py] == [r["timestamp"] for r in sql]
    assert [float(r["score"]) for r in py] == pytest.approx([float(r["score"]) for r in sql], abs=1e-3)
    assert [r["is_anomaly"] for r in py] == [r["is_anomaly"] for r in sql]
    return py


@pytest.mark.parametrize(("hidden", "detector", "instead"), [("numpy", "envelope", "envelope_sql"),
                                                             ("sklearn", "isolation_forest", "envelope")])
def test_a_backtest_of_a_detector_whose_python_package_is_missing_is_refused_naming_both(
        installed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: str, detector: str,
        instead: str) -> None:
    """--detector envelope on a server whose Python has no numpy failed on the PL/Python import,
    a traceback naming neither the detector nor the one that runs without it."""
    connect = db.connect

    def without_package(dsn: str, **kwargs: object) -> psycopg.Connection:
        conn = connect(dsn, **kwargs)  # the CLI's session, its Python as on a server without it
        conn.execute(f"DO $$ import sys; sys.modules[{hidden!r}] = None $$ LANGUAGE plpython3u")
        return conn

    monkeypatch.setattr(db, "connect", without_package)
    _series(tmp_path / "series.csv", 400, None)
    out = tmp_path / "flags.csv"
    code, output, _rows = _backtest(installed, [tmp_path / "series.csv"], out, "--detector", detector)
    label = {"numpy": "numpy", "sklearn": "scikit-learn"}[hidden]
    assert code == 1 and f"detector {detector} needs {label}, which the server's Python cannot import" \
        in output, output
    assert f"--detector {instead}" in output, output
    assert not out.exists() and _backtest_series(installed) == 0
    # What it names runs.
    code, output, rows = _backtest(installed, [tmp_path / "series.csv"], out, "--detector", instead)
    assert code == 0 and len(rows) == 400, output


def test_backtest_where_pgperfmon_is_not_installed_says_so(dsn: str, tmp_path: Path) -> None:
    _series(tmp_path / "quiet.csv", 300, None)
    code, output, _rows = _backtest(dsn, [tmp_path / "quiet.csv"], tmp_path / "flags.csv")
    assert code == 1
    assert "pgperfmon is not installed in database" in output and "pgperfmon install" in output, output


def test_backtest_settings_and_the_sql_envelope_are_walk_forward(installed: str, tmp_path: Path) -> None:
    """Settings replaced for a backtest (what bench/anomaly_nab.py cross-validates) reach both
    envelopes alike; the SQL envelope is walk-forward too."""
    _series(tmp_path / "spiky.csv", 1500, 1200)
    _series(tmp_path / "cut.csv", 1150, None)
    spiky = [tmp_path / "spiky.csv"]
    settings = ["--param", "margin=0.5", "--param", "mean_window=12"]
    code, output, py = _backtest(installed, spiky, tmp_path / "py.csv", "--detector", "envelope", *settings)
    assert code == 0, output
    code, output, sql = _backtest(installed, spiky, tmp_path / "sql.csv", "--detector", "envelope_sql",
                                  *settings)
    assert code == 0, output
    assert [r["is_anomaly"] for r in py] == [r["is_anomaly"] for r in sql]
    assert [float(r["score"]) for r in py] == pytest.approx([float(r["score"]) for r in sql], abs=1e-3)
    assert [r["timestamp"] for r in py if r["is_anomaly"] == "true"] == ["2020-01-05 04:00:00"]
    # Scores of the points before the cut do not change when later points are appended.
    code, output, cut = _backtest(installed, [tmp_path / "cut.csv"], tmp_path / "cut_sql.csv",
                                  "--detector", "envelope_sql", *settings)
    assert code == 0, output
    assert [r["score"] for r in cut] == [r["score"] for r in sql][:1150]
    # The settings are used: margins of 5 and 20 spreads let the spike through unflagged
    # (the moving mean of its departures from the daily profile is 13 spreads out).
    code, output, wide = _backtest(installed, spiky, tmp_path / "wide.csv", "--detector", "envelope_sql",
                                   "--param", "margin=5", "--param", "mean_margin=20")
    assert code == 0, output
    assert not [r for r in wide if r["is_anomaly"] == "true"]
    # Bad settings are refused by name before any series is loaded.
    for options, message in (
            (["--param", "margin=wide"], "expected KEY=NUMBER"),
            (["--param", "z=3"], "setting 'z' is not one of detector envelope"),
            (["--param", "mean_window=2.5"], "a whole number of samples"),
            (["--param", "margin=-1"], "a number greater than 0"),
            (["--detector", "isolation_forest", "--param", "contamination=0.7"], "at most 0.5")):
        code, output, _rows = _backtest(installed, spiky, tmp_path / "bad.csv", *options)
        assert code != 0 and message in output, (options, output)
    with psycopg.connect(installed) as conn:
        assert conn.execute("SELECT count(*) FROM perfmon.metric_series AS s JOIN perfmon.metrics "
                            "USING (metric_id) WHERE name = 'backtest.value'").fetchone()[0] == 0


def test_both_envelopes_agree_on_an_irregular_series_longer_than_the_window(installed: str,
                                                                          tmp_path: Path) -> None:
    """Jittered intervals, dropped samples, a 9-hour outage, a repeated timestamp and 10 days
    of history: the refits follow the clock in both envelopes, and the moving means a
    model is trained on are taken within its window, so the two score every point alike."""
    rng = random.Random(11)
    t, rows = datetime(2020, 1, 1), []
    while t < datetime(2020, 1, 11):
        t += timedelta(seconds=rng.randint(200, 420))
        if rng.random() < 0.2 or datetime(2020, 1, 8, 3) <= t < datetime(2020, 1, 8, 12):
            continue
        v = 10 + 3 * math.sin(t.timestamp() / 86400 * 2 * math.pi) + rng.gauss(0, 0.5) + t.day * 0.4
        rows.append([t.isoformat(sep=" "), f"{v + (25 if t.day == 9 and t.hour == 15 else 0):.3f}"])
    rows.insert(2000, [rows[1999][0], "13.5"])  # a second value at the same time, as NAB has
    py = _both_envelopes(installed, tmp_path, "irregular.csv", rows)
    assert any(r["timestamp"].startswith("2020-01-09 15:") for r in py if r["is_anomaly"] == "true")


def test_both_envelopes_report_an_episode_again_when_its_severity_rises(installed: str,
                                                                       tmp_path: Path) -> None:
    """A slight excursion, then in the same episode a far larger one: both backtests report
    the start and the rise to critical, by the rule of perfmon.anomalies' severity."""
    from perfmon_py import anomaly

    _series(tmp_path / "rising.csv", 1500, None)
    rows = list(csv.reader((tmp_path / "rising.csv").open()))
    top = max(float(r[1]) for r in rows[1:1201])
    rows[1201][1] = f"{top + 1.5:.3f}"  # the 1200th sample: just beyond the range and its margin
    rows[1221][1] = f"{top + 100:.3f}"
    with (tmp_path / "rising.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    for detector in ("envelope", "envelope_sql"):
        code, output, scored = _backtest(installed, [tmp_path / "rising.csv"], tmp_path / f"{detector}.csv",
                                         "--detector", detector)
        assert code == 0, output
        flagged = [(r["timestamp"], float(r["score"])) for r in scored if r["is_anomaly"] == "true"]
        assert [ts for ts, _ in flagged] == [rows[1201][0], rows[1221][0]], (detector, flagged)
        assert 1 <= flagged[0][1] < 2 and flagged[1][1] >= 4
    with psycopg.connect(installed) as conn:
        for peak, samples in ((1.0, 1), (1.99, 9), (1.99, 10), (2.0, 1), (3.99, 50), (4.0, 1)):
            got = conn.execute("SELECT perfmon.anomaly_severity(%s, %s)", (peak, samples)).fetchone()[0]
            assert got == anomaly.severity(peak, samples), (peak, samples)


def test_a_sparse_series_gets_models_too(installed: str, tmp_path: Path) -> None:
    """Three-hourly samples: the 28-day window holds 224, never the 288 a model needs at 5
    minutes; half of what the window holds is enough then, in both envelopes alike."""
    from perfmon_py import anomaly

    _series(tmp_path / "sparse.csv", 600, 500, step=timedelta(hours=3))
    flagged = {}
    for detector in ("envelope", "envelope_sql"):
        code, output, rows = _backtest(installed, [tmp_path / "sparse.csv"], tmp_path / f"{detector}.csv",
                                       "--detector", detector)
        assert code == 0, output
        scored = [r for r in rows if float(r["score"]) > 0]
        # The first model: 112 samples (half of 224), the first point with 112 before it.
        assert scored and scored[0]["timestamp"] >= "2020-01-15 00:00:00", scored[:1]
        flagged[detector] = [r["timestamp"] for r in rows if r["is_anomaly"] == "true"]
    assert flagged["envelope"] == flagged["envelope_sql"] == ["2020-03-03 12:00:00"]
    week, weeks4 = 7 * 86400.0, 28 * 86400.0
    grid = ((288, 1.0, 1e9), (287, 287 * 300.0, week), (84, 83 * 3600.0, week), (83, 82 * 3600.0, week),
            (112, 111 * 10800.0, weeks4), (111, 110 * 10800.0, weeks4),
            (29, 28 * 86400.0, week), (30, 29 * 86400.0, week), (40, 0.0, 86400.0))
    with psycopg.connect(installed) as conn:
        for n, span_s, window_s in grid:
            got = conn.execute("SELECT perfmon.enough_to_train(%s, %s, %s)", (n, span_s, window_s))
            assert got.fetchone()[0] == anomaly.enough_to_train(n, span_s, window_s), (n, span_s, window_s)


def _office_hours(path: Path) -> None:
    """A load kept on Berlin's clocks, 8:00-18:00 every day, every 15 minutes from
    2026-02-26 to 2026-04-05 (UTC timestamps): on 2026-03-29 Berlin moves to summer time
    and the busy hours start at 6:00 UTC instead of 7:00."""
    berlin, rng = ZoneInfo("Europe/Berlin"), random.Random(13)
    t, end = datetime(2026, 2, 26, tzinfo=timezone.utc), datetime(2026, 4, 5, tzinfo=timezone.utc)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["timestamp", "value"])
        while t < end:
            busy = 8 <= t.astimezone(berlin).hour < 18
            value = (500 if busy else 100) + rng.gauss(0, 20)
            out.writerow([t.strftime("%Y-%m-%d %H:%M:%S"), f"{value:.2f}"])
            t += timedelta(minutes=15)


def test_the_daily_profile_keeps_the_hours_of_anomaly_detection_timezone(installed: str,
                                                                          tmp_path: Path) -> None:
    """Office hours on Berlin's clocks across the change to summer time. Counted in UTC,
    the daily profile still expects the winter hours for weeks and both envelopes flag the
    mornings after the change; with anomaly_detection.timezone Europe/Berlin the profile
    follows the clocks and nothing is flagged after the first days, in both alike. A name that is
    not a time zone is refused by name, in the configuration and in the database."""
    from perfmon_py import anomaly

    _office_hours(tmp_path / "office.csv")
    flagged: dict[tuple[str, str], list[str]] = {}
    scores: dict[tuple[str, str], list[float]] = {}
    for zone in ("UTC", "Europe/Berlin"):
        with psycopg.connect(installed, autocommit=True) as conn:
            set_config(conn, "anomaly_detection.timezone", zone)
        for detector in ("envelope", "envelope_sql"):
            code, output, rows = _backtest(installed, [tmp_path / "office.csv"],
                                           tmp_path / f"{detector}.csv", "--detector", detector)
            assert code == 0, output
            flagged[zone, detector] = [r["timestamp"] for r in rows if r["is_anomaly"] == "true"]
            scores[zone, detector] = [float(r["score"]) for r in rows]
    for detector in ("envelope", "envelope_sql"):
        utc, berlin = flagged["UTC", detector], flagged["Europe/Berlin", detector]
        # While the offset holds, the zone only renames the hours: the same flags (in the
        # first days, from models of a few days' history).
        assert [ts for ts in utc if ts < "2026-03-29"] == [ts for ts in berlin if ts < "2026-03-29"], flagged
        assert all(ts < "2026-03-05" for ts in berlin), flagged
        assert [ts for ts in utc if ts >= "2026-03-29 06:00:00"], flagged
    for zone in ("UTC", "Europe/Berlin"):
        assert scores[zone, "envelope"] == pytest.approx(scores[zone, "envelope_sql"], abs=1e-3)
    # The hours themselves, in SQL and in PL/Python: across both changes of 2026, the
    # repeated hour of October, and a zone half an hour off the hour.
    stamps = [datetime(2026, month, day, 0, 10, tzinfo=timezone.utc) + timedelta(minutes=20 * i)
              for month, day in ((3, 29), (10, 25)) for i in range(9)]
    with psycopg.connect(installed, autocommit=True) as conn:
        for zone in ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"):
            got = [conn.execute("SELECT perfmon.hour_of_day(%s, %s)", (ts, zone)).fetchone()[0]
                   for ts in stamps]
            assert got == anomaly.hour_of_day([ts.timestamp() for ts in stamps], zone).tolist(), zone
            assert got == [ts.astimezone(ZoneInfo(zone)).hour for ts in stamps], zone
        set_config(conn, "anomaly_detection.timezone", "UTC+3")
        with pytest.raises(psycopg.errors.RaiseException,
                           match=re.escape("anomaly_detection.timezone 'UTC+3': not a time zone name")):
            conn.execute("SELECT perfmon.train_anomaly_models(true)")
    code, output, _rows = _backtest(installed, [tmp_path / "office.csv"], tmp_path / "bad.csv")
    assert code == 1 and "anomaly_detection.timezone 'UTC+3': not a time zone name" in output, output
    with pytest.raises(ValueError, match=re.escape("time zone 'Mars/Olympus': not a time zone name")):
        anomaly.hour_of_day([0.0], "Mars/Olympus")
    (tmp_path / "bad.yml").write_text("anomaly_detection:\n  timezone: UTC+3\n")
    with pytest.raises(config.ConfigError,
                       match=re.escape("anomaly_detection.timezone: got 'UTC+3'; not a time zone name")):
        config.load(tmp_path / "bad.yml", env={})


def test_both_envelopes_agree_on_a_weekly_profile_in_a_backtest(installed: str, tmp_path: Path) -> None:
    """Five weeks of office hours on weekdays and quiet weekends, 15-minute samples from
    Monday 2026-01-05, the fifth Monday at its Sunday level all day: the backtests of both
    envelopes score every point alike and, after the first weekend (new to the models of
    the first week), flag only that Monday."""
    rng = random.Random(9)
    t0, rows = datetime(2026, 1, 5), []
    for i in range(35 * 96):
        t = t0 + timedelta(minutes=15 * i)
        busy = t.weekday() < 5 and 8 <= t.hour < 18 and t.date() != datetime(2026, 2, 2).date()
        level = 500 if busy else (100 if t.weekday() < 5 else 120)
        rows.append([t.isoformat(sep=" "), f"{level + rng.gauss(0, 20):.2f}"])
    scored = _both_envelopes(installed, tmp_path, "weeks.csv", rows)
    flagged = [r["timestamp"] for r in scored if r["is_anomaly"] == "true" and r["timestamp"] >= "2026-01-12"]
    assert flagged and all(ts.startswith("2026-02-02 ") for ts in flagged), flagged
    assert flagged[0] <= "2026-02-02 08:30:00", flagged


def test_detector_settings_are_the_same_in_sql_and_python(conn: psycopg.Connection) -> None:
    from perfmon_py import anomaly

    for sensitivity in anomaly.SENSITIVITY:
        got = conn.execute("SELECT perfmon.anomaly_settings(%s)", (sensitivity,)).fetchone()[0]
        assert got == anomaly.thresholds(sensitivity)
    override = {"margin": 0.3, "mean_window": 12}
    got = conn.execute("SELECT perfmon.anomaly_settings('medium', 'envelope', %s::jsonb)",
                       (json.dumps(override),)).fetchone()[0]
    assert got == anomaly.thresholds("medium", override)
    for sensitivity, detector, params, message in (
            ("extreme", None, None, "sensitivity 'extreme': expected low, medium or high"),
            ("medium", "envelope", "[0.3]", "expected a JSON object"),
            ("medium", "envelope", '{"margin": "x"}', "expected a number greater than 0"),
            ("medium", "robust_zscore", '{"margin": 1}',
             "setting 'margin' is not one of detector robust_zscore")):
        with pytest.raises(psycopg.errors.RaiseException, match=re.escape(message)):
            conn.execute("SELECT perfmon.anomaly_settings(%s, %s, %s::jsonb)",
                         (sensitivity, detector, params))
    with pytest.raises(ValueError, match="expected one of"):
        anomaly.thresholds("medium", {"spread": 2})


def test_forecasts_give_an_eta_with_an_interval(conn: psycopg.Connection) -> None:
    start = datetime.now(timezone.utc) - timedelta(hours=6)
    conn.execute("SELECT perfmon.ensure_day_partitions('server_history', %s, now())", (start,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total, "
            "sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions, "
            "max_xid_age) VALUES (1, %s, 100, %s, 1, 0, 0, 0, 0, %s)",
            [(start + timedelta(minutes=i), 10 + i // 6 + (i % 3), 1_000_000 + 5_000_000 * i + (i % 7) * 1000)
             for i in range(360)])
    rows = {r[0]: r for r in conn.execute(
        "SELECT forecast, days_left, eta, eta_earliest, eta_latest, severity, growth_per_day "
        "FROM perfmon.forecasts")}
    xid = rows["xid_wraparound"]
    # 5M XIDs a minute from ~1.8G: about 70 minutes left.
    assert 0.03 < float(xid[1]) < 0.07
    assert xid[3] <= xid[2] <= xid[4]
    assert xid[5] == "critical"
    connections = rows["connection_exhaustion"]
    assert connections[2] is not None and float(connections[6]) > 0
