"""The ingest path: COPY through what perfmon_agent may do, every row validated, good rows
kept, bad rows refused with their row number and reason, a batch stored once."""

from __future__ import annotations

import io
import math
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from agent_login import agent_login
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgperfmon import cli, ingest
from pgperfmon.ingest import Writer, series_key

AGENT_FUNCTIONS = {"agent_heartbeat", "ingest_metric", "ingest_open", "ingest_series", "ingest_batch"}


@pytest.fixture()
def agent_dsn(installed: str, server, dbname: str) -> Iterator[str]:
    with agent_login(server, dbname) as dsn:
        yield dsn


def stored(conn: psycopg.Connection, metric: str) -> list[tuple]:
    return conn.execute(
        "SELECT ts, labels, value FROM perfmon.metric_values WHERE metric = %s ORDER BY ts, value",
        (metric,)).fetchall()


def test_bad_rows_are_refused_with_reasons_and_good_rows_kept(conn, agent_dsn: str) -> None:
    host = {"host": "h1"}
    now = "2030-01-01T00:00:00+00:00"  # beyond tomorrow: refused
    ts = conn.execute("SELECT now()::text").fetchone()[0]
    rows = [
        (1, series_key("host.cpu.user_pct", host), ts, 12.5),
        (2, series_key("host.cpu.user_pct", host), ts, math.nan),
        (3, series_key("host.memory.available_bytes", host), ts, math.inf),
        (4, series_key("host.net.errors", {**host, "interface": "eth0"}), ts, -3.0),
        (5, series_key("host.memory.available_bytes", host), ts, -1.0),
        (6, series_key("no.such.metric", host), ts, 1.0),
        (7, series_key("host.cpu.user_pct", host, "bytes"), ts, 1.0),
        (8, series_key("host.cpu.user_pct", host, "parsecs"), ts, 1.0),
        (9, series_key("x'; DROP TABLE perfmon.metrics; --", host), ts, 1.0),
        (10, series_key("host.cpu.user_pct", {"host": "h" * 300}), ts, 1.0),
        (11, series_key("host.cpu.user_pct", {"Bad Key": "x"}), ts, 1.0),
        (12, series_key("host.cpu.user_pct", host), now, 1.0),
        (13, series_key("business.revenue_impact"), ts, -250.0),  # currency may be negative
        (14, series_key("host.memory.available_bytes", host), ts, 4096.0),
    ]
    with psycopg.connect(agent_dsn) as aconn:
        result = Writer(aconn, "test-agent").send(uuid.uuid4(), rows)
    reasons = dict(result.errors)
    assert result.stored == 3
    assert sorted(reasons) == list(range(2, 13))
    assert "value is NaN" in reasons[2]
    assert "value is infinite" in reasons[3]
    assert "host.net.errors: value -3 is negative; a counter cannot go below 0" in reasons[4]
    assert "value -1 is negative; bytes cannot go below 0" in reasons[5]
    assert "unknown metric no.such.metric" in reasons[6]
    assert "measured in pct, not bytes" in reasons[7]
    assert "unknown unit 'parsecs'" in reasons[8]
    assert "metric name 'x''; DROP TABLE perfmon.metrics; --' is not valid" in reasons[9]
    assert "label host: value is longer than 200 characters" in reasons[10]
    assert "label name 'Bad Key' is not valid" in reasons[11]
    assert "more than a day in the future" in reasons[12]
    assert [r[2] for r in stored(conn, "host.cpu.user_pct")] == [12.5]
    assert [r[2] for r in stored(conn, "host.memory.available_bytes")] == [4096.0]
    assert [r[2] for r in stored(conn, "business.revenue_impact")] == [-250.0]
    assert conn.execute("SELECT count(*) FROM perfmon.metrics WHERE name LIKE 'x%'").fetchone() == (0,)
    batch = conn.execute("SELECT agent, stored, refused, jsonb_array_length(refusals) "
                         "FROM perfmon.ingest_batches").fetchall()
    assert batch == [("test-agent", 3, 5, 5)]  # the server saw 8 rows; 6 had no series id


def test_a_replayed_batch_is_stored_once(conn, agent_dsn: str) -> None:
    key = uuid.uuid4()
    ts = conn.execute("SELECT now()::text").fetchone()[0]
    rows = [(i, series_key("host.load.1m", {"host": "r"}), ts, float(i)) for i in range(1, 101)]
    with psycopg.connect(agent_dsn) as aconn:
        writer = Writer(aconn, "replayer")
        first = writer.send(key, rows)
        again = writer.send(key, rows)
    with psycopg.connect(agent_dsn) as aconn:  # a new session, as after an agent restart
        third = Writer(aconn, "replayer").send(key, rows)
    assert (first.stored, first.duplicate) == (100, False)
    assert (again.stored, again.duplicate) == (0, True)
    assert (third.stored, third.duplicate) == (0, True)
    assert len(stored(conn, "host.load.1m")) == 100


def test_two_batches_in_one_transaction_are_kept_apart(conn, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn) as aconn:
        aconn.execute("SELECT perfmon.ingest_open()")
        sid = aconn.execute("SELECT series_id FROM perfmon.ingest_series(ARRAY['host.load.5m'])"
                            ).fetchone()[0]
        for key in (uuid.uuid4(), uuid.uuid4()):
            with aconn.cursor().copy("COPY pg_temp.perfmon_ingest FROM STDIN") as copy:
                copy.write_row((1, sid, "2026-01-01 00:00:00+00", 1.0))
            answer = aconn.execute("SELECT perfmon.ingest_batch(%s)", (key,)).fetchone()[0]
            assert answer["stored"] == 1
        aconn.commit()
    assert len(stored(conn, "host.load.5m")) == 2


def test_agent_login_can_feed_but_not_read_or_change_anything(conn, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        aconn.execute("SELECT perfmon.ingest_metric('business.uptime_pct', 99.9)")
        aconn.execute("SELECT perfmon.agent_heartbeat('worker', 'ok', 1.5, 0, '{}')")
        relations = [r[0] for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
            "AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition")]
        assert "perfmon.metric_samples" in relations and "perfmon.agent_health" in relations
        for rel in relations:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                aconn.execute(f"SELECT * FROM {rel} LIMIT 1")
        for statement in (
            "INSERT INTO perfmon.metric_samples VALUES (1, 1, now(), 1)",
            "UPDATE perfmon.metrics SET unit = 'bytes'",
            "DELETE FROM perfmon.agents",
            "TRUNCATE perfmon.ingest_batches",
            "COPY perfmon.metric_samples FROM STDIN",
            "CREATE TABLE perfmon.intruder (x int)",
            "SELECT perfmon.collect()",
            "SELECT perfmon.ensure_day_partitions('metric_samples', now(), now())",
            "SELECT perfmon.setting('collection.interval_seconds')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                aconn.execute(statement)
        callable_ = {r[0] for r in aconn.execute(
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'perfmon'::regnamespace "
            "AND has_function_privilege(p.oid, 'EXECUTE')")}
        assert callable_ == AGENT_FUNCTIONS
        # The staging table: INSERT/COPY only; it is perfmon_admin's, so no code can be hung on it.
        aconn.execute("SELECT perfmon.ingest_open()")
        for statement in (
            "SELECT * FROM pg_temp.perfmon_ingest",
            "DELETE FROM pg_temp.perfmon_ingest",
            "ALTER TABLE pg_temp.perfmon_ingest ENABLE ROW LEVEL SECURITY",
            "CREATE RULE r AS ON INSERT TO pg_temp.perfmon_ingest DO INSTEAD NOTHING",
            "DROP TABLE pg_temp.perfmon_ingest",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                aconn.execute(statement)


def test_a_staging_table_of_the_callers_own_is_refused(installed: str, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        aconn.execute("CREATE TEMP TABLE perfmon_ingest (seq int, series_id int, ts timestamptz, "
                      "value float8)")
        with pytest.raises(psycopg.errors.RaiseException, match="is not pgperfmon's staging table"):
            aconn.execute("SELECT perfmon.ingest_open()")
        with pytest.raises(psycopg.errors.RaiseException, match="no staging table in this session"):
            aconn.execute("SELECT perfmon.ingest_batch(gen_random_uuid())")


hostile_text = st.one_of(
    st.text(min_size=0, max_size=60),
    st.sampled_from(["'", "';--", "a;b", "x\"y", "\\", "é.ü", "名前", "host.cpu.user_pct'",
                     "\U0001F600", "a" * 10_240, "host.cpu.user_pct; DELETE FROM perfmon.metrics"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text, label=hostile_text)
def test_hostile_metric_names_and_labels_are_stored_or_refused_safely(conn, agent_dsn: str, name: str,
                                                                       label: str) -> None:
    before = conn.execute("SELECT count(*) FROM perfmon.metrics").fetchone()[0]
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        try:
            aconn.execute("SELECT perfmon.ingest_metric(%s, 1.0, now(), %s::jsonb, 'count')",
                          (name, psycopg.types.json.Jsonb({"tag": label})))
            accepted = True
        except psycopg.errors.InvalidParameterValue as exc:
            accepted = False
            assert "refused" in str(exc)
        except psycopg.DataError:
            assert "\x00" in name + label  # PostgreSQL text cannot hold NUL: refused before the server
            accepted = False
    if accepted:
        # Stored exactly as given, and only a well-formed name can get in.
        assert len(name) <= 100 and name.isascii()
        row = conn.execute("SELECT labels ->> 'tag' FROM perfmon.metric_values WHERE metric = %s",
                           (name,)).fetchall()
        assert (label,) in row
    else:
        after = conn.execute("SELECT count(*) FROM perfmon.metrics").fetchone()[0]
        assert after == before
    assert conn.execute("SELECT to_regclass('perfmon.metrics') IS NOT NULL").fetchone() == (True,)


def test_ingest_metric_defines_custom_metrics_with_a_unit(conn, agent_dsn: str) -> None:
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        aconn.execute("SELECT perfmon.ingest_metric('shop.orders_per_min', 42, now(), '{}', 'per_s')")
        aconn.execute("SELECT perfmon.ingest_metric('business.revenue_impact', -1200.5)")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"unknown metric shop\.visits"):
            aconn.execute("SELECT perfmon.ingest_metric('shop.visits', 1)")
        with pytest.raises(psycopg.errors.InvalidParameterValue,
                           match="value -1 is negative; pct cannot go below 0"):
            aconn.execute("SELECT perfmon.ingest_metric('business.uptime_pct', -1)")
    assert conn.execute("SELECT category, unit, kind FROM perfmon.metrics "
                        "WHERE name = 'shop.orders_per_min'").fetchone() == ("custom", "per_s", "gauge")
    assert [r[2] for r in stored(conn, "business.revenue_impact")] == [-1200.5]


def test_new_label_sets_beyond_max_series_per_metric_are_refused(conn, agent_dsn: str) -> None:
    """Each distinct label set is a series: a feeder sending a fresh label value per sample grew
    perfmon.metric_series without bound. Beyond collection.max_series_per_metric series of a
    metric a new label set is refused, naming the metric and the limit; the values of the
    series already there are stored, and other metrics are not held back."""
    conn.execute("UPDATE perfmon.config SET value = '3' WHERE key = 'collection.max_series_per_metric'")
    ts = conn.execute("SELECT now()::text").fetchone()[0]
    rows = [(i + 1, series_key("host.cpu.user_pct", {"host": f"h{i}"}), ts, float(i)) for i in range(5)]
    rows.append((6, series_key("host.memory.used_pct", {"host": "h4"}), ts, 50.0))
    with psycopg.connect(agent_dsn) as aconn:
        result = Writer(aconn, "test-agent").send(uuid.uuid4(), rows)
        assert result.stored == 4
        reasons = dict(result.errors)
        assert sorted(reasons) == [4, 5]
        assert reasons[4] == ("metric host.cpu.user_pct has 3 series, the most "
                              "collection.max_series_per_metric allows: a new label set is refused")
        later = conn.execute("SELECT (now() + interval '1 second')::text").fetchone()[0]
        again = [(i + 1, series_key("host.cpu.user_pct", {"host": f"h{i}"}), later, 10.0 + i)
                 for i in range(3)]
        assert Writer(aconn, "test-agent").send(uuid.uuid4(), again).stored == 3
    with psycopg.connect(agent_dsn, autocommit=True) as aconn:
        with pytest.raises(psycopg.errors.InvalidParameterValue,
                           match=r"host\.cpu\.user_pct has 3 series, the most "
                                 r"collection\.max_series_per_metric allows"):
            aconn.execute("""SELECT perfmon.ingest_metric('host.cpu.user_pct', 1, now(), '{"host": "h9"}')""")
        aconn.execute("""SELECT perfmon.ingest_metric('host.cpu.user_pct', 7, now(), '{"host": "h0"}')""")
    assert conn.execute("SELECT count(*) FROM perfmon.metric_series s JOIN perfmon.metrics m "
                        "USING (metric_id) WHERE m.name = 'host.cpu.user_pct'").fetchone() == (3,)
    assert sorted(r[2] for r in stored(conn, "host.cpu.user_pct")) == [0.0, 1.0, 2.0, 7.0, 10.0, 11.0, 12.0]
    assert [r[2] for r in stored(conn, "host.memory.used_pct")] == [50.0]


def test_seeded_catalog_has_the_business_metrics(conn) -> None:
    rows = dict(conn.execute("SELECT name, unit FROM perfmon.metrics WHERE category = 'business'"))
    assert rows == {"business.uptime_pct": "pct", "business.cost_per_transaction": "currency",
                    "business.user_satisfaction_score": "score", "business.revenue_impact": "currency"}
    assert {r[0] for r in conn.execute("SELECT DISTINCT category FROM perfmon.metrics")} == {
        "database", "system", "agents", "business"}


def test_ingest_cli_loads_a_csv_and_lists_bad_lines(conn, agent_dsn: str, tmp_path: Path) -> None:
    file = tmp_path / "series.csv"
    file.write_text(
        "timestamp,value\n"
        "2014-02-14 14:27:00,51.846\n"
        "2014-02-14 14:32:00,44.508\n"
        "2014-02-14 14:37:00,abc\n"
        "2014-02-14 14:42:00,NaN\n"
        "yesterday,1\n"
        "1392389220,41.244\n")
    args = ["ingest", "--dsn", agent_dsn, "--metric", "ec2.cpu_utilization", "--unit", "pct",
            "--label", "instance=24ae8d", "--input", str(file)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1, result.output
    assert "refused line 4: value 'abc' is not a number" in result.output
    assert "refused line 5: ec2.cpu_utilization: value is NaN" in result.output
    assert "refused line 6: timestamp 'yesterday' is neither ISO 8601 nor epoch seconds" in result.output
    assert "stored 3 values of ec2.cpu_utilization, refused 3" in result.output
    rows = conn.execute("SELECT ts AT TIME ZONE 'UTC', value, labels FROM perfmon.metric_values "
                        "WHERE metric = 'ec2.cpu_utilization' ORDER BY ts").fetchall()
    assert [(str(r[0]), r[1]) for r in rows] == [
        ("2014-02-14 14:27:00", 51.846), ("2014-02-14 14:32:00", 44.508),
        ("2014-02-14 14:47:00", 41.244)]
    assert rows[0][2] == {"instance": "24ae8d"}
    again = CliRunner().invoke(cli.main, args)
    assert "stored 0 values of ec2.cpu_utilization, refused 3 (1 batches were already stored)" in again.output
    piped = CliRunner().invoke(cli.main, ["ingest", "--dsn", agent_dsn, "--metric", "ec2.cpu_utilization",
                                          "--input", "-"], input="2014-02-15T00:00:00Z,7\n")
    assert piped.exit_code == 0, piped.output
    assert "stored 1 values" in piped.output


def test_a_file_loaded_with_and_without_its_unit_is_stored_once(conn, agent_dsn: str,
                                                               tmp_path: Path) -> None:
    """The unit belongs to the metric, not to the batch: naming it or not is the same load."""
    file = tmp_path / "d2.csv"
    file.write_text("2014-02-14 14:27:00,1\n2014-02-14 14:32:00,2\n")

    def load(metric: str, *unit: str) -> str:
        result = CliRunner().invoke(cli.main, ["ingest", "--dsn", agent_dsn, "--metric", metric, *unit,
                                               "--input", str(file)])
        return result.output

    assert "stored 2 values of test.dup, refused 0" in load("test.dup", "--unit", "count")
    assert "stored 0 values of test.dup, refused 0 (1 batches were already stored)" in load("test.dup")
    assert "stored 0 values of test.dup, refused 0 (1 batches were already stored)" in load(
        "test.dup", "--unit", "count")
    assert "error: metric 'test.dup' refused: metric test.dup is measured in count, not ms" in load(
        "test.dup", "--unit", "ms")
    assert [r[2] for r in stored(conn, "test.dup")] == [1.0, 2.0]
    assert conn.execute("SELECT unit FROM perfmon.metrics WHERE name = 'test.dup'").fetchone() == ("count",)
    # A catalog metric loaded first without its unit, then with it.
    assert "stored 2 values of business.uptime_pct" in load("business.uptime_pct")
    assert "(1 batches were already stored)" in load("business.uptime_pct", "--unit", "pct")
    assert [r[2] for r in stored(conn, "business.uptime_pct")] == [1.0, 2.0]


def test_a_first_line_with_a_timestamp_and_a_bad_value_is_refused_not_skipped(agent_dsn: str) -> None:
    result = CliRunner().invoke(cli.main, ["ingest", "--dsn", agent_dsn, "--metric", "business.uptime_pct",
                                           "--input", "-"],
                                input="2014-12-03T12:40:00,N/A\n2014-12-03T12:45:00,99.5\n")
    assert result.exit_code == 1, result.output
    assert "refused line 1: value 'N/A' is not a number" in result.output
    assert "stored 1 values of business.uptime_pct, refused 1" in result.output


def test_ingest_cli_names_an_unknown_metric(agent_dsn: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["ingest", "--dsn", agent_dsn, "--metric", "nope.nope",
                                           "--input", "-"], input="1,1\n")
    assert result.exit_code == 1
    assert "error: metric 'nope.nope' refused: unknown metric nope.nope" in result.output


def test_read_csv_reports_malformed_lines() -> None:
    key = series_key("m")
    items = list(ingest.read_csv(io.StringIO("a,b,c\n1,2\n\n"), key))
    assert items[0] == (1, "expected 2 fields (timestamp,value), got 3")
    assert items[1][0] == 2 and items[1][3] == 2.0


def test_read_csv_skips_only_a_first_line_that_is_not_data() -> None:
    """A header is a first line neither of whose fields reads: its timestamp is not one either."""
    key = series_key("m")
    assert list(ingest.read_csv(io.StringIO("time,cpu\n1700000000,2\n"), key)) == [
        (2, key, "2023-11-14T22:13:20+00:00", 2.0)]
    assert list(ingest.read_csv(io.StringIO("2026-12-03T12:40:00,N/A\n1700000000,2\n"), key)) == [
        (1, "value 'N/A' is not a number"), (2, key, "2023-11-14T22:13:20+00:00", 2.0)]
    assert list(ingest.read_csv(io.StringIO("1700000000,\n"), key)) == [(1, "value '' is not a number")]
    assert list(ingest.read_csv(io.StringIO("yesterday,1\n"), key)) == [
        (1, "timestamp 'yesterday' is neither ISO 8601 nor epoch seconds")]


def test_read_csv_takes_the_columns_a_header_names() -> None:
    """NAB's older files have timestamp,value,label: the label column is not a value."""
    key = series_key("m")
    text = "Timestamp,value,label\n2014-03-07 03:41:00,45.868,0\n2014-03-07 03:46:00,47.606\n"
    items = list(ingest.read_csv(io.StringIO(text), key))
    assert items[0] == (2, key, "2014-03-07T03:41:00+00:00", 45.868)
    assert items[1] == (3, "expected 3 fields (as the header names 3), got 2")
    swapped = list(ingest.read_csv(io.StringIO("value,timestamp\n2.5,1700000000\n"), key))
    assert swapped == [(2, key, "2023-11-14T22:13:20+00:00", 2.5)]


def test_timestamps_of_every_form_are_stored_to_the_microsecond(conn, agent_dsn: str) -> None:
    # The Writer sends binary COPY; what the server stores must be the very instant given.
    now = datetime.now(timezone.utc).replace(microsecond=123456)
    key = series_key("host.load.15m", {"host": "forms"})
    rows = [
        (1, key, now.timestamp(), 1.0),                                    # seconds since 1970
        (2, key, now.replace(tzinfo=None) - timedelta(seconds=1), 2.0),    # naive datetime = UTC
        (3, key, (now - timedelta(seconds=2)).astimezone(timezone(timedelta(hours=5, minutes=30))), 3.0),
        (4, key, (now - timedelta(seconds=3)).isoformat().replace("+00:00", "Z"), 4.0),
        (5, key, (now - timedelta(seconds=4)).astimezone(timezone(timedelta(hours=-2))).isoformat(), 5),
        (6, key, float("nan"), 6.0),
        (7, key, 1e12, 7.0),
        (8, key, "yesterday", 8.0),
        (9, key, now.timestamp(), "many"),
        (10, key, now.timestamp(), None),
        (11, key, None, 11.0),
        (12, key, datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc), 12.0),
        (13, key, now + timedelta(days=2), 13.0),
    ]
    with psycopg.connect(agent_dsn) as aconn:
        result = Writer(aconn, "forms").send(uuid.uuid4(), rows)
    reasons = dict(result.errors)
    assert result.stored == 5
    assert sorted(reasons) == list(range(6, 14))
    assert reasons[6] == "timestamp is NaN (not a number)"
    assert reasons[7] == "timestamp 1000000000000.0 (seconds since 1970) is out of range"
    assert reasons[8] == "timestamp 'yesterday' is not ISO 8601"
    assert reasons[9] == "value 'many' is not a number"
    assert reasons[10] == "host.load.15m: value is missing"
    assert reasons[11] == "host.load.15m: timestamp is missing"
    assert "is before 2000-01-01" in reasons[12]
    assert "is more than a day in the future" in reasons[13]
    got = conn.execute("SELECT ts, value FROM perfmon.metric_values WHERE metric = 'host.load.15m' "
                       "AND labels = '{\"host\": \"forms\"}' ORDER BY value").fetchall()
    assert got == [(now - timedelta(seconds=i - 1), float(i)) for i in range(1, 6)]


# A batch of random rows, good and bad, against what the rules say: every good row is
# stored exactly once, every bad one is refused with its row number, whether the batch
# took the single validating INSERT alone or also the pass that names the refused rows.
# Series: 12 known ones (more than the 9 from which PostgreSQL looks arrays up by hash)
# of a non-negative gauge, a counter and a metric that may be negative, and an id the
# server does not know (a stale cache).
METRICS = [("host.cpu.user_pct", False), ("host.net.errors", False), ("business.revenue_impact", True)]
VALUES = st.one_of(st.floats(min_value=-1e6, max_value=1e6), st.sampled_from(
    [0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, None]))
OFFSETS_S = st.one_of(st.integers(min_value=-86_400 * 30, max_value=3_600),
                      st.sampled_from([None, -40 * 365 * 86_400, 3 * 86_400]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(st.integers(min_value=0, max_value=12), VALUES, OFFSETS_S),
                      min_size=1, max_size=60))
def test_random_batches_store_exactly_the_good_rows_once(conn, agent_dsn: str, batch: list) -> None:
    run = uuid.uuid4().hex[:12]
    keys = [series_key(METRICS[i % 3][0], {"run": run, "n": i}) for i in range(12)]
    now = conn.execute("SELECT now()").fetchone()[0]
    rows, expected = [], []
    for seq, (series, value, offset) in enumerate(batch, start=1):
        ts = None if offset is None else (now + timedelta(seconds=offset)).timestamp()
        good = (series < 12 and value is not None and math.isfinite(value) and ts is not None
                and (value >= 0 or METRICS[series % 3][1])
                and -30 * 86_400 <= offset <= 3_600)
        rows.append((seq, keys[series] if series < 12 else series_key("host.cpu.user_pct", {"run": run}),
                     ts, value))
        if good:
            expected.append((seq, series, round(ts * 1e6), value))
    with psycopg.connect(agent_dsn) as aconn:
        writer = Writer(aconn, "random")
        ids = writer.resolve(keys)
        writer._series[series_key("host.cpu.user_pct", {"run": run})] = 2_000_000_000  # not in the dictionary
        key = uuid.uuid4()
        result = writer.send(key, rows)
        again = writer.send(key, rows)
    stored_rows = conn.execute(
        "SELECT series_id, (extract(epoch FROM ts) * 1e6)::bigint, value FROM perfmon.metric_samples "
        "WHERE series_id = ANY(%s) ORDER BY 1, 2, 3", ([ids[k] for k in keys],)).fetchall()
    assert sorted(stored_rows) == sorted((ids[keys[s]], us, v) for _seq, s, us, v in expected)
    assert result.stored == len(expected)
    assert sorted(row for row, _reason in result.errors) == sorted(
        set(range(1, len(rows) + 1)) - {seq for seq, *_ in expected})
    assert all(reason for _row, reason in result.errors)
    assert (again.duplicate, again.stored) == (True, 0)


def test_seconds_since_1970_round_to_the_microsecond_as_datetime_does() -> None:
    # The agent's float times must land on the instant iso() names (datetime.fromtimestamp).
    rng = random.Random(4)
    for ts in [rng.uniform(946_684_800, 4e9) for _ in range(20_000)] + [1.5e9 + 0.0000005, 1.5e9 + 0.9999996]:
        expected = (datetime.fromtimestamp(ts, timezone.utc) - datetime(2000, 1, 1, tzinfo=timezone.utc)
                    ) // timedelta(microseconds=1)
        assert ingest._pg_microseconds(ts) == expected, ts
