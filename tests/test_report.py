"""`pgperfmon report` (JSON, Markdown, one offline HTML file) and the scheduled report
delivered through the alert channels, against real local HTTP and SMTP receivers."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
import shlex
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from alert_servers import http_receiver, set_config, wait_for
from browser import Browser, Page
from click.testing import CliRunner
from report_helpers import HOSTILE_ALIAS, prepared_database, smtp_server

from pgperfmon import alerting, charts, cli, config, dashboard, rendering, report

SIGNING_KEY = "report-signing-key"
SMTP_PASSWORD = "smtp-SECRET-pw-42"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(width=1280, height=900) as b:
        yield b


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    p = browser.new_page()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def reported(server) -> Iterator[str]:
    """One database with prepared data for the tests that only read it: its DSN."""
    with prepared_database(server) as (_name, dsn):
        yield dsn


@pytest.fixture()
def prepared(reported: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(reported, autocommit=True) as conn:
        yield conn


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


def report_of(conn: psycopg.Connection, period: str = "weekly") -> dict:
    return conn.execute("SELECT perfmon.executive_report(%s)", (period,)).fetchone()[0]


# --------------------------------------------------------------------------- the charts

def test_charts_draw_gaps_escape_names_and_say_when_there_is_no_data() -> None:
    series = charts.Series("<b>cpu</b>", [(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, 5.0)])
    svg = str(charts.line_chart([series], title="t <i>", how="h & m"))
    path = re.search(r'<path class="series"[^>]*data-points="(\d+)"[^>]*d="([^"]+)"', svg)
    assert path.group(1) == "4" and path.group(2).count("M") == 2, "a None breaks the line"
    assert "<b>" not in svg and "&lt;b&gt;cpu&lt;/b&gt;" in svg and "t &lt;i&gt;" in svg
    assert "h &amp; m" in svg
    empty = str(charts.line_chart([charts.Series("x", [(0, None)])], title="t", how="h",
                                  no_data="nothing sampled"))
    assert 'class="chart nodata"' in empty and "nothing sampled" in empty and "<path" not in empty
    bars = str(charts.bar_chart([("a", 3), ("b", None), ("c", 1)], title="b", how="h"))
    assert bars.count('<rect class="bar"') == 2


def test_markdown_cells_show_hostile_names_as_text() -> None:
    # A table, host or agent name reaches the report's bare cells: no tag, link or
    # autolink may open there, nor a new cell or line.
    cell = rendering.md_cell("<img src=x onerror=alert(1)> [pay](https://evil.example) "
                             "<https://e.example> | a`b\nc")
    assert cell == ("&lt;img src=x onerror=alert(1)> \\[pay](https://evil.example) &lt;https://e.example> "
                    "\\| a'b c")
    # In a code span (the query texts) < and [ are inert and shown as they are.
    assert rendering.md_code("SELECT '<b>' || x[1]") == "SELECT '<b>' \\|\\| x[1]"


def test_markdown_shows_control_characters_in_names_as_escapes() -> None:
    # An escape sequence or a right-to-left override in a table, query or database name went
    # into the Markdown as it was: read in a terminal (the report's standard output, cat) it
    # recoloured or cleared the screen, or showed the text reordered.
    assert rendering.md_cell("t\x1b[2J\u202eevil") == "t\\x1b\\[2J\\u202eevil"
    assert rendering.md_code("SELECT 1 AS \"\x1b]0;x\x07\"") == 'SELECT 1 AS "\\x1b]0;x\\x07"'
    r = report.Report(period="daily", data={"period": {"name": "daily"}}, trend=[],
                      database="shop\x1b[31m", generated_at=datetime(2026, 1, 2, tzinfo=timezone.utc))
    text = report.render_markdown(r)
    assert text.splitlines()[0] == "# Daily report — database shop\\x1b\\[31m"
    assert "\x1b" not in text


# --------------------------------------------------------------------------- the three formats

def test_json_is_executive_report_as_the_database_returns_it(prepared: psycopg.Connection,
                                                              reported: str) -> None:
    code, out = run("report", "--dsn", reported, "--period", "weekly", "--format", "json")
    assert code == 0, out
    shown = json.loads(out)
    expected = report_of(prepared)
    assert shown.keys() == expected.keys()
    # Figures of the past do not move between the two calls; "now" ones may.
    for path in (("technical_performance", "transactions"), ("technical_performance", "top_queries"),
                 ("technical_performance", "mean_query_ms"), ("financial_impact", "infrastructure_cost"),
                 ("financial_impact", "savings_from_applied_recommendations"), ("recommendations",)):
        a, b = shown, expected
        for key in path:
            a, b = a[key], b[key]
        assert a == b, path
    assert shown["period"]["name"] == "weekly"


def test_markdown_heading_shows_a_hostile_database_name_as_text() -> None:
    """A database name is the user's: in the heading it is text, on one line, like any cell."""
    r = report.Report(period="daily", data={"period": {"name": "daily"}}, trend=[],
                      database="<img src=x onerror=alert(1)>\n# [pwn](x)",
                      generated_at=datetime(2026, 1, 2, tzinfo=timezone.utc))
    heading = report.render_markdown(r).splitlines()[0]
    assert heading == "# Daily report — database &lt;img src=x onerror=alert(1)> # \\[pwn](x)"


def test_markdown_has_every_section_and_each_figure_with_its_how(prepared: psycopg.Connection,
                                                                 reported: str) -> None:
    code, md = run("report", "--dsn", reported, "--period", "daily", "--format", "md")
    assert code == 0, md
    expected = report_of(prepared, "daily")
    digest = rendering.digest()
    dbname = prepared.info.dbname
    assert md.startswith(f"# Daily report — database {dbname}\n")
    for heading in ("## Executive summary", "## Financial impact", "## Technical performance",
                    "### Top queries", "### Anomalies", "### Alerts", "## Recommendations"):
        assert f"\n{heading}\n" in md
    assert expected["executive_summary"]["headline"] in md
    tp = expected["technical_performance"]
    for label, node in (("Transactions", tp["transactions"]), ("Mean statement time", tp["mean_query_ms"]),
                        ("Revenue at risk", expected["financial_impact"]["revenue_at_risk"])):
        assert f"| {label} | {digest.figure(node)} | {node['how']} |" in md, label
    # The hostile statement is a table cell: its pipes could not break the table.
    top = next(q for q in tp["top_queries"] if "window.__xss" in q["query"])
    assert re.search(rf"\| {top['rank']} \| [\d,]+ \| .*window\.__xss", md)
    assert "alert firing" not in md and "test.load_pct on app1" in md


def test_html_report_is_one_file_that_opens_offline_with_its_charts(
        prepared: psycopg.Connection, reported: str, page: Page, tmp_path: Path,
        artifacts: Path) -> None:
    target = tmp_path / "weekly.html"
    code, out = run("report", "--dsn", reported, "--format", "html", "--output", str(target))
    assert code == 0 and "written to" in out
    html = target.read_text(encoding="utf-8")
    # Self-contained: no script, no stylesheet link, nothing fetched from anywhere.
    assert "<script" not in html.replace("&lt;script", "") and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "&lt;script&gt;window.__xss" in html and HOSTILE_ALIAS not in html

    page.send("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
              uploadThroughput=-1)
    mark = len(page.browser.events)
    page.goto(target.as_uri())
    assert page.requests(mark) == [target.as_uri()], "the report loads nothing else"
    expected = report_of(prepared)
    assert page.evaluate("document.title") == f"Weekly report — {prepared.info.dbname}"
    figures = page.evaluate("Array.from(document.querySelectorAll('figure.chart'), "
                            "f => [f.querySelector('figcaption').textContent, f.dataset.points])")
    assert [f[0] for f in figures] == [
        "Health score", "Transactions per second", "Mean statement time",
        "Top statements by total execution time", "Anomaly episodes by severity",
        "Alerts fired by level", "Open recommendations by severity"]
    points = dict(figures)
    assert int(points["Health score"]) == len(expected["technical_performance"]["health_trend"]) >= 1
    assert int(points["Transactions per second"]) >= 1
    assert int(points["Top statements by total execution time"]) == \
        len(expected["technical_performance"]["top_queries"][:10])
    assert page.evaluate("document.querySelectorAll('figure.chart:not(.nodata) svg path.series, "
                         "figure.chart:not(.nodata) svg rect.bar').length") >= 4
    # Every figure points to how it was computed.
    notes = page.evaluate("document.querySelectorAll('#how li').length")
    refs = page.evaluate("Array.from(document.querySelectorAll('.tile sup a'), a => a.hash)")
    assert notes >= 15 and len(refs) >= 15
    assert page.evaluate(f"{json.dumps(refs)}.every(h => document.querySelector(h))")
    assert page.evaluate("window.__xss") is None
    assert any(HOSTILE_ALIAS in t for t in page.evaluate(
        "Array.from(document.querySelectorAll('#top-queries code.query'), c => c.textContent)"))
    page.screenshot(artifacts / "report-weekly.png")


def test_bad_input_gets_a_clear_error_and_keeps_the_previous_file(reported: str, tmp_path: Path) -> None:
    installed = reported
    target = tmp_path / "report.html"
    target.write_text("last week's report")
    code, out = run("report", "--dsn", installed, "--period", "yearly", "--output", str(target))
    assert code == 2 and "'yearly' is not one of 'daily', 'weekly', 'monthly'" in out
    bad = installed.replace("dbname=", "dbname=no_such_db_") if "dbname=" in installed else installed
    code, out = run("report", "--dsn", bad, "--output", str(target))
    assert code == 1 and out.startswith("error: cannot connect to") and "Traceback" not in out
    assert target.read_text() == "last week's report"
    with psycopg.connect(installed) as conn, pytest.raises(psycopg.errors.RaiseException,
                                                           match="unknown report period 'hourly'"):
        conn.execute("SELECT perfmon.queue_report('hourly')")


# --------------------------------------------------------------------------- scheduled reports

def test_a_report_written_to_a_link_goes_to_the_file_it_names(reported: str, tmp_path: Path) -> None:
    # The report was written beside the link and renamed over it: the link (a published
    # report's, /dev/stdout) became a plain file and the file it named kept last week's.
    real = tmp_path / "published" / "report.md"
    real.parent.mkdir()
    real.write_text("last week's report")
    link = tmp_path / "latest.md"
    link.symlink_to(real)
    code, out = run("report", "--dsn", reported, "--format", "md", "--output", str(link))
    assert code == 0, out
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text().startswith("# Weekly report")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["latest.md", "published", "report.md"]


def test_configuration_of_reports_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("reporting:\n  schedule: hourly\n  channels: [pager]\n  hour_utc: 24\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(bad, env={})
    text = str(err.value)
    for key in ("reporting.schedule: got 'hourly'", "reporting.channels.0: got 'pager'",
                "reporting.hour_utc: got 24"):
        assert key in text


def test_the_report_job_runs_hourly_and_sends_once_per_period(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT schedule, command FROM perfmon.job_plan WHERE name = 'report'").fetchone() \
        == ("7 * * * *", "SELECT perfmon.report_schedule()")
    due = conn.execute("SELECT perfmon.report_schedule()").fetchone()[0]
    assert due == {"due": False, "reason": "reporting.schedule is not set"}
    set_config(conn, reporting__schedule="weekly", alerting__channels__webhook__enabled=True)

    def schedule(at: str) -> dict:
        return conn.execute("SELECT perfmon.report_schedule(%s::timestamptz)", (at,)).fetchone()[0]

    # 2030-01-07 is a Monday: the ISO week starts there; hour_utc is 7.
    assert schedule("2030-01-07 06:59+00")["due"] is False
    first = schedule("2030-01-07 07:10+00")
    assert first["due"] is True and first["queued"] == 1 and first["channels"] == ["webhook"]
    assert first["skipped"] == {"email": "alerting.channels.email.enabled is false",
                                "slack": "alerting.channels.slack.enabled is false"}
    again = schedule("2030-01-10 12:00+00")
    assert (again["due"], again["reason"]) == (False, "already queued")
    assert again["report_id"] == first["report_id"]
    # The next week, missed on its Monday (server down): Tuesday's run sends it.
    assert schedule("2030-01-15 18:00+00")["queued"] == 1
    rows = conn.execute("SELECT r.period, r.trigger, r.due_for, o.channel, o.event, o.alert_id "
                        "FROM perfmon.report_runs r JOIN perfmon.alert_outbox o USING (report_id) "
                        "ORDER BY r.report_id").fetchall()
    assert [(p, t, str(d.date()), c, e, a) for p, t, d, c, e, a in rows] == [
        ("weekly", "schedule", "2030-01-07", "webhook", "report", None),
        ("weekly", "schedule", "2030-01-14", "webhook", "report", None)]
    assert conn.execute("SELECT count(*) FROM perfmon.events WHERE kind = 'report'").fetchone()[0] == 2


def test_a_scheduled_report_reaches_a_webhook_and_an_inbox(
        conn: psycopg.Connection, installed: str, tmp_path: Path) -> None:
    conn.execute("SELECT perfmon.collect()")
    with http_receiver() as rx, smtp_server(tmp_path, "reports", SMTP_PASSWORD) as smtp:
        set_config(conn, reporting__schedule="daily", reporting__hour_utc=0,
                   reporting__channels=["webhook", "email"], alerting__channels__webhook__enabled=True,
                   alerting__channels__email__enabled=True, alerting__channels__email__smtp_host="127.0.0.1",
                   alerting__channels__email__smtp_port=smtp.port,
                   alerting__channels__email__username="reports",
                   alerting__channels__email__ca_file=str(smtp.cert),
                   alerting__channels__email__recipients=["cto@example.test"])
        queued = conn.execute("SELECT perfmon.report_schedule()").fetchone()[0]
        assert queued["due"] is True and queued["queued"] == 2, queued
        expected = report_of(conn, "daily")
        env = {"PGPERFMON_WEBHOOK_URL": rx.url, "PGPERFMON_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
               "PGPERFMON_SMTP_PASSWORD": SMTP_PASSWORD}
        with psycopg.connect(installed) as worker:
            assert alerting.deliver_due(worker, "test", env=env) == 2
        assert wait_for(lambda: len(smtp.mails) == 1)

        (hook,) = rx.received
        stamp = hook.headers["X-Pgperfmon-Timestamp"].encode()
        mac = hmac.new(SIGNING_KEY.encode(), stamp + b"." + hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["X-Pgperfmon-Signature"] == f"sha256={mac}"
        body = hook.json()
        assert body["event"] == "report" and "alert" not in body
        sent = body["report"]
        assert sent["kind"] == "report" and sent["period"] == "daily"
        assert sent["report"]["executive_summary"]["headline"] == queued["headline"]
        assert sent["report"]["technical_performance"]["transactions"] == \
            expected["technical_performance"]["transactions"]

        mail = email.message_from_bytes(smtp.mails[0].content, policy=email.policy.default)
        assert mail["Subject"].startswith(f"Daily report: {queued['headline']}"[:60])
        text = mail.get_content()
        digest = rendering.digest()
        assert f"Transactions: {digest.figure(expected['technical_performance']['transactions'])}" in text
        assert "Health score (latest): " in text and "Full report: pgperfmon report --period daily" in text
        assert smtp.mails[0].rcpt_tos == ["cto@example.test"]
    statuses = conn.execute("SELECT channel, status, attempts FROM perfmon.alert_delivery "
                            "ORDER BY channel").fetchall()
    assert statuses == [("email", "delivered", 1), ("webhook", "delivered", 1)]
    assert SMTP_PASSWORD not in json.dumps(conn.execute(
        "SELECT array_agg(error) FROM perfmon.delivery_log").fetchone()[0])


def test_a_report_to_a_failing_receiver_is_retried_dead_lettered_and_sent_again(
        conn: psycopg.Connection, installed: str) -> None:
    set_config(conn, reporting__channels=["webhook"], alerting__channels__webhook__enabled=True,
               alerting__max_delivery_attempts=2)
    with http_receiver() as rx:
        env = {"PGPERFMON_WEBHOOK_URL": rx.url, "PGPERFMON_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
        rx.fail_status = 503
        assert conn.execute("SELECT perfmon.queue_report('weekly') ->> 'queued'").fetchone()[0] == "1"
        with psycopg.connect(installed) as worker:
            assert alerting.deliver_due(worker, "test", env=env) == 1
            outbox = "SELECT status, attempts FROM perfmon.alert_outbox"
            assert conn.execute(outbox).fetchone() == ("pending", 1)
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = now()")
            assert alerting.deliver_due(worker, "test", env=env) == 1
            assert conn.execute(outbox).fetchone() == ("dead", 2)
            rx.fail_status = None
            assert conn.execute("SELECT perfmon.retry_dead_letters('webhook')").fetchone()[0] == 1
            assert alerting.deliver_due(worker, "test", env=env) == 1
    assert len(rx.received) == 1 and rx.received[0].json()["event"] == "report"
    assert conn.execute("SELECT status FROM perfmon.alert_outbox").fetchone() == ("delivered",)
    assert [ok for (ok,) in conn.execute("SELECT ok FROM perfmon.delivery_log ORDER BY ts")] == \
        [False, False, True]


def test_the_in_database_worker_posts_the_report_to_slack(conn: psycopg.Connection,
                                                          installed: str) -> None:
    set_config(conn, reporting__channels=["slack"], alerting__channels__slack__enabled=True)
    queued = conn.execute("SELECT perfmon.queue_report('monthly')").fetchone()[0]
    assert queued["queued"] == 1
    with http_receiver() as rx, psycopg.connect(installed, autocommit=True) as backend:
        backend.execute("DO $$ import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = "
                        f"'{rx.url}' $$ LANGUAGE plpython3u")
        backend.execute("CALL perfmon.deliver_alerts()")
        assert len(rx.received) == 1
        body = rx.received[0].json()
    assert body["text"] == f"Monthly report: {queued['headline']} [{conn.info.dbname}]"
    fields = [f["text"] for block in body["blocks"][1:] for f in block["fields"]]
    assert all(1 <= len(block["fields"]) <= 10 for block in body["blocks"][1:])
    assert any(f.startswith("*Availability*\n") for f in fields)
    assert "*Full report*\npgperfmon report --period monthly --format html --output report.html" in fields
    assert conn.execute("SELECT worker, ok FROM perfmon.delivery_log").fetchall() == [("database", True)]


def test_the_readme_commands_of_reports_and_dashboards_work(reported: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Reports and dashboards\s+```sh\n(.*?)```", readme, re.S)
    assert block, "README.md has no 'Reports and dashboards' commands"
    commands = [shlex.split(line.split("#", 1)[0].replace('"$DSN"', shlex.quote(reported)))
                for line in block.group(1).splitlines() if line.startswith("pgperfmon ")]
    assert {c[1] for c in commands} == {"report", "dashboard"}
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        if argv[1] == "dashboard":  # serves until stopped: its options must parse
            dashboard.command.make_context("dashboard", argv[2:])
            continue
        code, out = run(*argv[1:])
        assert code == 0, (argv, out)
    assert (tmp_path / "weekly.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
