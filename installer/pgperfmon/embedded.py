"""The embedded default: a local PostgreSQL cluster in a folder of pgperfmon's own.

Layout of the home folder (``--data-dir``):

    pgdata/        the cluster (owned by the server's system user)
    pgpass         the superuser's password, in libpq passfile format (mode 0600)
    state.json     port and user, so that ``up`` finds the cluster again
    server.log     the server's log

The printed DSN names the passfile instead of carrying the password; its values are
quoted as libpq requires, so that a folder with a space or a quote in its name works.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PRELOAD = "pg_cron,pg_stat_statements"
SUPERUSER = "postgres"
CRON_DATABASE = "postgres"
# libpq's limit for a unix socket path, less room for ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")


class EmbeddedError(Exception):
    """Something the user must fix before the embedded cluster can run; the text says what."""


def _conf_string(value: str) -> str:
    """``value`` as a quoted postgresql.conf string: the server reads a backslash there as an
    escape, so both it and the single quote are doubled (as initdb's own quoting does)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Binaries:
    bindir: Path
    sharedir: Path
    major: int


def default_home() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pgperfmon")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pgperfmon"


def _candidate_bindirs() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("PGPERFMON_PG_BINDIR")
    if env:
        found.append(Path(env))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    found.extend(versions)
    on_path = shutil.which("postgres")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    return found


def _debian_packages(major: int | str) -> dict[str, str]:
    return {
        "server": f"postgresql-{major}",
        "pg_cron": f"postgresql-{major}-cron",
        "plpython3u": f"postgresql-plpython3-{major}",
        "hypopg": f"postgresql-{major}-hypopg",
    }


def find_binaries() -> Binaries:
    """Locate initdb/pg_ctl/postgres and the extension folder, or say what to install."""
    for bindir in _candidate_bindirs():
        if all((bindir / exe).is_file() for exe in ("postgres", "initdb", "pg_ctl")):
            out = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
            ).stdout
            major = int(out.split()[-1].split(".")[0])
            sharedir = Path(f"/usr/share/postgresql/{major}")
            if (bindir / "pg_config").is_file():
                sharedir = Path(
                    subprocess.run(
                        [str(bindir / "pg_config"), "--sharedir"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.strip()
                )
            return Binaries(bindir=bindir, sharedir=sharedir, major=major)
    raise EmbeddedError(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin, "
        "$PGPERFMON_PG_BINDIR and PATH). On Debian/Ubuntu, as root: "
        "apt-get install -y postgresql-15 postgresql-15-cron postgresql-plpython3-15 "
        "postgresql-15-hypopg python3-sklearn python3-psutil"
    )


def missing_extensions(binaries: Binaries) -> tuple[list[str], list[str]]:
    """(required, optional) Debian packages whose extensions are not installed."""
    packages = _debian_packages(binaries.major)
    extdir = binaries.sharedir / "extension"
    required = [
        packages[ext]
        for ext in ("pg_cron",)
        if not (extdir / f"{ext}.control").is_file()
    ]
    if not (extdir / "pg_stat_statements.control").is_file():
        required.append("postgresql-contrib")
    optional = [
        packages[ext]
        for ext in ("plpython3u", "hypopg")
        if not (extdir / f"{ext}.control").is_file()
    ]
    return required, optional


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_account() -> tuple[str, int, int] | None:
    """The unprivileged account that runs the server when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgperfmon"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, entry.pw_uid, entry.pw_gid
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--shell", "/usr/sbin/nologin", "pgperfmon"],
        check=True,
    )
    entry = pwd.getpwnam("pgperfmon")
    return "pgperfmon", entry.pw_uid, entry.pw_gid


class Cluster:
    """A local cluster under ``home``; every method is safe to call again."""

    def __init__(
        self,
        home: Path | str | None = None,
        binaries: Binaries | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.home = Path(home or default_home()).resolve()
        self.pgdata = self.home / "pgdata"
        self.passfile = self.home / "pgpass"
        self.state_file = self.home / "state.json"
        self.logfile = self.home / "server.log"
        self._binaries = binaries
        self._extra_settings = settings or {}
        self._account = _server_account()

    # -- facts --------------------------------------------------------------
    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    @property
    def port(self) -> int | None:
        return self._state().get("port")

    def dsn(self, dbname: str = CRON_DATABASE) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=dbname, passfile=str(self.passfile)
        )

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    # -- actions ------------------------------------------------------------
    def up(self, port: int | None = None) -> str:
        """Create (first time) and start the cluster; return its DSN."""
        import psycopg

        required, _optional = missing_extensions(self.binaries)
        if required:
            raise EmbeddedError(
                "PostgreSQL extensions that pgperfmon needs are not installed. "
                f"On Debian/Ubuntu, as root: apt-get install -y {' '.join(required)}"
            )
        if any(c in str(self.pgdata) for c in "\n\r"):
            raise EmbeddedError(
                f"the data folder {str(self.pgdata)!r} holds a line break, which PostgreSQL cannot "
                "use: choose another --data-dir")
        if not self.is_initialised():
            self._initdb()
        if self.is_running():
            if port is not None and port != self.port:
                raise EmbeddedError(
                    f"the cluster in {self.home} is already running on port {self.port}; "
                    "run 'pgperfmon down' first to move it"
                )
            return self.dsn()
        for attempt in range(3):
            chosen = port or (self.port if attempt == 0 and self.port else None) or free_port()
            self._write_settings(chosen)
            failure = self._start()
            if failure is None:
                break
            if port is not None:
                raise EmbeddedError(f"the server did not start on port {port}:\n{failure}")
        else:
            raise EmbeddedError(f"the server did not start:\n{failure}")
        try:
            self._wait_ready()
            self._bootstrap()
        except BaseException as exc:
            # A failed 'up' must not leave a server running that the user was not told of.
            self.down()
            if isinstance(exc, (EmbeddedError, psycopg.Error)):
                raise EmbeddedError(
                    f"{exc}\nthe server was stopped again; see {self.logfile}"
                ) from exc
            raise
        return self.dsn()

    def down(self) -> bool:
        """Stop the cluster; False when it was not running."""
        if not self.is_running():
            return False
        self._pg_ctl("stop", "-m", "fast", "-w")
        return True

    def restart(self, mode: str = "fast") -> None:
        """Restart; mode "immediate" is a crash: no shutdown checkpoint, statistics lost."""
        self._pg_ctl("restart", "-m", mode, "-w", "-l", self.logfile.name)
        self._wait_ready()

    def destroy(self) -> None:
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)

    # -- internals ----------------------------------------------------------
    def _run_as_server(
        self, args: list[str], check: bool = True, env: dict[str, str] | None = None, cwd: Path | str = "/"
    ) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if self._account:
            _name, uid, gid = self._account
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, **(env or {})}
        env["LC_ALL"] = "C.UTF-8"
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, **kwargs)
        if check and result.returncode != 0:
            raise EmbeddedError(
                f"{Path(args[0]).name} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def _pg_ctl(self, action: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """pg_ctl ACTION on the cluster. pg_ctl starts the server through /bin/sh with -D's
        folder and -l's file pasted between double quotes, so a ", $ or backtick in the path
        broke the start (or ran as a command): the folder goes in $PGDATA, which the server
        reads itself (and postmaster.opts then holds no path), and the log file is named
        relative to the home folder pg_ctl runs in."""
        return self._run_as_server(
            [str(self.binaries.bindir / "pg_ctl"), action, *args],
            check=check, env={"PGDATA": str(self.pgdata)}, cwd=self.home,
        )

    def _chown(self, target: Path) -> None:
        if self._account:
            _name, uid, gid = self._account
            os.chown(target, uid, gid)

    def _initdb(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # The server's account must be able to walk down to pgdata.
        self.home.chmod(0o711)
        self._check_traversable()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.pgdata)
        password = secrets.token_urlsafe(24)
        pwfile = self.home / "initdb.pw"  # mode 0600, removed at once
        pwfile.touch(mode=0o600)
        self._chown(pwfile)
        pwfile.write_text(password + "\n")
        try:
            self._run_as_server([
                str(self.binaries.bindir / "initdb"),
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth-local=trust",  # the socket lives inside the 0700 pgdata
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            # host:port:db:user:password; '*' so that a new port keeps working.
            self.passfile.write_text(f"*:*:*:{SUPERUSER}:{password}\n")
        finally:
            os.umask(old)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# Written by pgperfmon\ninclude 'pgperfmon.conf'\n")

    def _check_traversable(self) -> None:
        if not self._account:
            return
        name, uid, _gid = self._account
        for parent in [self.home, *self.home.parents]:
            mode = parent.stat().st_mode
            if parent.stat().st_uid != uid and not mode & 0o001:
                raise EmbeddedError(
                    f"the server runs as the system user '{name}', who cannot enter {parent} "
                    f"(mode {oct(mode & 0o777)}): choose a --data-dir outside it or run: "
                    f"chmod o+x {shlex.quote(str(parent))}"
                )

    def _write_settings(self, port: int) -> None:
        socket_dir = str(self.pgdata)
        if len(socket_dir) > _MAX_SOCKET_DIR:
            raise EmbeddedError(
                f"the data folder path {socket_dir} is too long for a unix socket "
                f"(at most {_MAX_SOCKET_DIR} characters): choose a shorter --data-dir"
            )
        # A list of folders: double-quoted so that a comma or space in the path stays in it.
        socket_dirs = '"' + socket_dir.replace('"', '""') + '"'
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": _conf_string(socket_dirs),
            "unix_socket_permissions": "0700",
            "shared_preload_libraries": f"'{PRELOAD}'",
            "cron.database_name": f"'{CRON_DATABASE}'",
            # Jobs run in background workers: no password or pg_hba entry needed.
            "cron.use_background_workers": "on",
            "max_worker_processes": "32",
            "pg_stat_statements.max": "10000",
            "pg_stat_statements.track": "top",
            "track_io_timing": "on",
            "track_functions": "pl",
            "log_min_messages": "warning",
            **self._extra_settings,
        }

        text = "# Managed by pgperfmon: rewritten by 'pgperfmon up'\n" + "".join(
            f"{key} = {value}\n" for key, value in settings.items()
        )
        conf = self.pgdata / "pgperfmon.conf"
        conf.write_text(text)
        self._chown(conf)
        state = {"port": port, "user": SUPERUSER, "pgdata": str(self.pgdata)}
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _start(self) -> str | None:
        """Start the server; None once it runs, else what went wrong: pg_ctl's own output
        and what the server wrote to its log on this start. The log alone said nothing when
        the server never got to write (the shell pg_ctl runs could not open the log file):
        the message ended at 'see server.log:'."""
        if not self.logfile.exists():
            self.logfile.touch()
        self._chown(self.logfile)
        log_start = self.logfile.stat().st_size
        result = self._pg_ctl("start", "-l", self.logfile.name, "-w", "-t", "60", check=False)
        if result.returncode == 0:
            return None
        if self.is_running():
            # pg_ctl gave up waiting on a server still starting: stopped, not left behind.
            self.down()
        said = f"{result.stdout}{result.stderr}".strip() or f"nothing (exit {result.returncode})"
        return f"pg_ctl said:\n{said}\n{self._log_tail(log_start)}"

    def _log_tail(self, since: int, lines: int = 20) -> str:
        """The last lines the server wrote to its log after byte ``since``, introduced."""
        try:
            with self.logfile.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"its log {self.logfile} cannot be read: {exc.strerror}"
        if not text.strip():
            return f"the server wrote nothing to {self.logfile}"
        return f"the end of {self.logfile}:\n" + "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=3):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"the server does not accept connections: {exc}") from None
                time.sleep(0.2)

    def _bootstrap(self) -> None:
        """pg_cron lives in its own database; create it there once."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            if preload and "pg_cron" in preload[0]:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")

