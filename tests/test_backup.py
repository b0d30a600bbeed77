"""`pgperfmon backup verify`: a good backup passes (and starts), a corrupted one fails
with a message that names the damage; both are recorded for perfmon.backup_status."""

from __future__ import annotations

from pathlib import Path

import psycopg
from click.testing import CliRunner

from pgperfmon import cli


def _log(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT tool, ok, verified, restored, detail FROM perfmon.backup_log "
                            "ORDER BY id").fetchall()


def test_good_backup_is_verified_started_and_recorded(installed: str) -> None:
    result = CliRunner().invoke(cli.main, ["backup", "verify", "--dsn", installed, "--start"])
    assert result.exit_code == 0, result.output
    assert "pg_verifybackup: backup successfully verified" in result.output
    assert "started: recovery completed" in result.output
    assert "backup OK" in result.output
    (tool, ok, verified, restored, _detail), = _log(installed)
    assert (tool, ok, verified, restored) == ("pgperfmon backup verify", True, True, True)
    with psycopg.connect(installed) as conn:
        state = conn.execute("SELECT state, lag_s FROM perfmon.backup_status "
                             "WHERE component = 'base_backup'").fetchone()
    assert state[0] == "ok" and state[1] < 600


def test_corrupted_backup_fails_with_a_clear_message(installed: str, tmp_path: Path) -> None:
    runner = CliRunner()
    kept = runner.invoke(cli.main, ["backup", "verify", "--dsn", installed, "--keep",
                                    "--scratch", str(tmp_path)])
    assert kept.exit_code == 0, kept.output
    pgdata = next(tmp_path.glob("pgperfmon-backup-*/pgdata"))
    victim = max((f for f in (pgdata / "base").rglob("*") if f.is_file()),
                 key=lambda f: f.stat().st_size)
    with victim.open("r+b") as f:  # flip bytes in the middle of the largest data file
        f.seek(victim.stat().st_size // 2)
        f.write(b"\xde\xad\xbe\xef")
    bad = runner.invoke(cli.main, ["backup", "verify", "--dsn", installed,
                                   "--backup-dir", str(pgdata)])
    assert bad.exit_code == 1
    relative = victim.relative_to(pgdata).as_posix()
    assert "pg_verifybackup failed" in bad.output
    assert f'checksum mismatch for file "{relative}"' in bad.output, bad.output
    log = _log(installed)
    assert [row[1] for row in log] == [True, False]
    assert f'checksum mismatch for file "{relative}"' in log[-1][4]
    with psycopg.connect(installed) as conn:
        finding = conn.execute("SELECT finding FROM perfmon.backup_status "
                               "WHERE component = 'base_backup'").fetchone()[0]
    assert "failed" in finding and "checksum mismatch" in finding


def test_missing_file_fails_and_unreachable_server_is_an_error(installed: str, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli.main, ["backup", "verify", "--dsn", installed, "--keep",
                                    "--scratch", str(tmp_path)]).exit_code == 0
    pgdata = next(tmp_path.glob("pgperfmon-backup-*/pgdata"))
    (pgdata / "global" / "pg_control").unlink()
    bad = runner.invoke(cli.main, ["backup", "verify", "--dsn", installed,
                                   "--backup-dir", str(pgdata)])
    assert bad.exit_code == 1
    assert '"global/pg_control" is present in the manifest but not on disk' in bad.output
    nowhere = runner.invoke(cli.main, ["backup", "verify", "--dsn",
                                       "host=127.0.0.1 port=1 user=nobody connect_timeout=2"])
    assert nowhere.exit_code == 1
    assert "pg_basebackup failed" in nowhere.output
