"""The embedded default cluster: `pgperfmon up` / `down`, as root or not."""

from __future__ import annotations

import shlex
import shutil
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgperfmon import cli, embedded


@pytest.fixture()
def home(request: pytest.FixtureRequest) -> Path:
    # A test can ask for a folder name of its own with indirect parametrization.
    path = Path(tempfile.mkdtemp(prefix=getattr(request, "param", "pgpm-up-")))
    yield path
    embedded.Cluster(path).down()
    shutil.rmtree(path, ignore_errors=True)


def test_up_prints_the_dsn_and_is_idempotent(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli.main, ["up", "--data-dir", str(home)])
    assert first.exit_code == 0, first.output
    dsn = first.stdout.strip().splitlines()[-1]
    with psycopg.connect(dsn) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert preload == "pg_cron,pg_stat_statements"
        assert conn.execute("SHOW cron.database_name").fetchone() == ("postgres",)
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
        # The server runs as an unprivileged account even when we are root.
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert "password" not in dsn
    again = runner.invoke(cli.main, ["up", "--data-dir", str(home)])
    assert again.exit_code == 0
    assert again.stdout.strip().splitlines()[-1] == dsn
    down_then_up_again(runner, home, dsn)


def down_then_up_again(runner: CliRunner, home: Path, dsn: str) -> None:
    """down stops the server (its DSN no longer connects); up again after down: same data,
    same DSN (the same port when it is still free)."""
    down = runner.invoke(cli.main, ["down", "--data-dir", str(home)])
    assert down.output.strip() == "stopped"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    restarted = runner.invoke(cli.main, ["up", "--data-dir", str(home)])
    assert restarted.exit_code == 0, restarted.output
    assert restarted.stdout.strip().splitlines()[-1] == dsn


# A space, a single quote and a backslash: each must be quoted in pgperfmon.conf and in the DSN.
@pytest.mark.parametrize("home", ["pgpm-up it's a\\b "], indirect=True)
def test_data_dir_with_space_and_quote_works(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli.main, ["up", "--data-dir", str(home)])
    assert first.exit_code == 0, first.output
    dsn = first.stdout.strip().splitlines()[-1]
    assert conninfo_to_dict(dsn)["passfile"] == str(home / "pgpass")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
    # The unix socket is where pgperfmon.conf said, the path read back whole.
    with psycopg.connect(make_conninfo(dsn, host=str(home / "pgdata"))) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (
            str(home / "pgdata"),
        )
    down_then_up_again(runner, home, dsn)


# pg_ctl starts the server through /bin/sh with the data folder and log file in double
# quotes: a double quote, a $ or a backtick there broke the start (or ran what followed).
@pytest.mark.parametrize("home", ['pgpm-up "$HOME `true` $(true)" '], indirect=True)
def test_data_dir_with_shell_characters_works(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli.main, ["up", "--data-dir", str(home)])
    assert first.exit_code == 0, first.output
    dsn = first.stdout.strip().splitlines()[-1]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (
            str(home / "pgdata"),
        )
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
    cluster = embedded.Cluster(home)
    cluster.restart()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "database system is ready" in (home / "server.log").read_text()
    down_then_up_again(runner, home, dsn)


@pytest.mark.parametrize("home", ["pgpm-up line\nbreak "], indirect=True)
def test_data_dir_with_a_line_break_is_refused_before_anything_is_made(home: Path) -> None:
    # PostgreSQL cannot use such a folder (initdb refuses it, postgresql.conf cannot quote it):
    # the user got initdb's whole output ending in "shell command argument contains a newline".
    result = CliRunner().invoke(cli.main, ["up", "--data-dir", str(home)])
    assert result.exit_code == 1
    assert result.output == (f"error: the data folder {str(home / 'pgdata')!r} holds a line break, "
                             "which PostgreSQL cannot use: choose another --data-dir\n")
    assert list(home.iterdir()) == []


def test_a_start_that_fails_before_the_server_logs_anything_shows_pg_ctls_words(home: Path) -> None:
    # pg_ctl's shell cannot open the log file, so the server never runs and never writes:
    # the error ended at "see server.log:" as pg_ctl's own output was dropped.
    cluster = embedded.Cluster(home)
    cluster.up()
    cluster.down()
    cluster.logfile.chmod(0o400)  # read-only for the server's account, root's or not
    result = CliRunner().invoke(cli.main, ["up", "--data-dir", str(home)])
    assert result.exit_code == 1
    assert result.output.startswith("error: the server did not start:\npg_ctl said:\n"), result.output
    assert "cannot create server.log: Permission denied" in result.output
    assert "pg_ctl: could not start server" in result.output
    assert result.output.rstrip().endswith(f"the server wrote nothing to {cluster.logfile}")
    assert not cluster.is_running()


def test_a_port_already_taken_is_named_with_this_starts_log_lines(home: Path) -> None:
    cluster = embedded.Cluster(home)
    cluster.up()
    cluster.down()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(embedded.EmbeddedError) as err:
            cluster.up(port=port)
    message = str(err.value)
    assert message.startswith(f"the server did not start on port {port}:\npg_ctl said:\n")
    assert "pg_ctl: could not start server" in message
    assert f"the end of {cluster.logfile}:\n" in message
    assert "Address already in use" in message
    # Only what this start wrote: not the lines of the earlier up and down.
    assert "ready to accept connections" not in message


def test_server_process_is_not_root(home: Path) -> None:
    cluster = embedded.Cluster(home)
    cluster.up()
    pid = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    owner = Path(f"/proc/{pid}").stat().st_uid
    assert owner != 0
    assert (home / "pgpass").stat().st_mode & 0o077 == 0


def test_missing_packages_are_named(tmp_path: Path) -> None:
    found = embedded.find_binaries()
    empty_share = tmp_path / "share"
    (empty_share / "extension").mkdir(parents=True)
    bare = embedded.Binaries(bindir=found.bindir, sharedir=empty_share, major=found.major)
    required, optional = embedded.missing_extensions(bare)
    assert required == [f"postgresql-{found.major}-cron", "postgresql-contrib"]
    assert optional == [f"postgresql-plpython3-{found.major}", f"postgresql-{found.major}-hypopg"]
    with pytest.raises(embedded.EmbeddedError) as err:
        embedded.Cluster(tmp_path / "c", bare).up()
    assert f"apt-get install -y postgresql-{found.major}-cron postgresql-contrib" in str(err.value)


def test_unreachable_data_dir_is_explained(tmp_path: Path) -> None:
    import os
    if os.geteuid() != 0:
        pytest.fail("this test checks the root path; run the suite as root as CI does")
    locked = tmp_path / "locked $HOME"
    locked.mkdir(mode=0o700)
    with pytest.raises(embedded.EmbeddedError) as err:
        embedded.Cluster(locked / "home").up()
    assert "cannot enter" in str(err.value)
    # The command it suggests pastes into a shell: the folder quoted (a space, a $ in it).
    assert str(err.value).endswith(f"or run: chmod o+x {shlex.quote(str(locked))}")
