"""`pgperfmon backup verify`: a good backup passes (and starts), a corrupted one fails
with a message that names the damage; both are recorded for perfmon.backup_status."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
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


@pytest.mark.parametrize("relative", [False, True])
def test_a_scratch_folder_named_with_shell_characters_works(installed: str, relative: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # pg_verifybackup runs pg_waldump, and pg_ctl the server (with -D, -l and -o), through
    # /bin/sh with the paths pasted in: a ", ', $ or backtick broke the verification and start.
    # A relative folder was read from / by each tool. In the system's temporary folder, which
    # the server's account may enter (pytest's may not).
    scratch = Path(tempfile.mkdtemp(prefix='pgpm-backup it\'s "$HOME `true`" '))
    scratch.chmod(0o711)
    if relative:
        monkeypatch.chdir(scratch.parent)
    try:
        result = CliRunner().invoke(cli.main, ["backup", "verify", "--dsn", installed, "--start",
                                               "--scratch", scratch.name if relative else str(scratch)])
        assert result.exit_code == 0, result.output
        assert "pg_verifybackup: backup successfully verified" in result.output
        assert "started: recovery completed" in result.output
        assert list(scratch.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
