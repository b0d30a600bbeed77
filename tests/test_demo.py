"""README's first command, `make demo`, is `pgperfmon demo`: it runs here end to end.

A short workload without the dashboards' server (which waits for Ctrl-C; the dashboards
have tests of their own), on an embedded cluster of its own. What it prints is what a
DBA first sees of pgperfmon, so a false alarm there is a fault.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgperfmon import cli, demo, embedded


@pytest.fixture()
def home() -> Path:
    path = Path(tempfile.mkdtemp(prefix="pgpm-demo-"))
    yield path
    embedded.Cluster(path).down()
    shutil.rmtree(path, ignore_errors=True)


def _section(output: str, title: str) -> str:
    """The lines printed under a heading of the demo, up to the next blank line."""
    start = output.index(title)
    return output[start:].split("\n\n", 1)[0]


def test_the_demo_shows_the_monitor_at_work_without_false_alarms(home: Path) -> None:
    result = CliRunner().invoke(cli.main, ["demo", "--data-dir", str(home), "--seconds", "10",
                                           "--no-dashboard"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "pgbench_accounts" in _section(out, "top queries")
    assert "pg_sleep" in _section(out, "slow queries")
    assert "(no rows yet)" not in _section(out, "throughput per sample")
    advice = _section(out, "the advisor's open recommendations")
    assert not re.search(r"^\s+critical\s", advice, re.M), advice
    alerts = _section(out, "alerts (perfmon.alerts)")
    assert not re.search(r"^\s+firing\s+(critical|emergency)\s", alerts, re.M), alerts
    assert re.search(r"^healthy$", out, re.M), out
    assert "Stop it with: pgperfmon down --data-dir" in out


def test_the_report_command_it_prints_pastes_into_a_shell_whatever_the_data_dir() -> None:
    # The DSN was put between double quotes: a --data-dir with ", $ or a backtick in its name
    # broke the command pasted (or ran what the backtick held).
    cluster = embedded.Cluster(Path(tempfile.gettempdir()) / 'it\'s "$HOME `id`"')
    dsn = cluster.dsn("pgperfmon_demo")
    words = shlex.split(demo.report_hint(dsn).split(": ", 1)[1])
    assert words == ["pgperfmon", "report", "--dsn", dsn, "--output", "weekly.html"]
