"""`pgperfmon backup verify`: prove a base backup of the server can be taken, is intact
and (optionally) starts.

Steps: pg_basebackup (WAL streamed into the backup, a manifest with checksums) into
a scratch folder; pg_verifybackup against its manifest; with ``--start``, start the
copy on a private socket until it accepts a query (recovery from its WAL works);
record the result in ``perfmon.backup_log`` (read by ``perfmon.backup_status``);
remove the scratch folder unless ``--keep``. ``--backup-dir`` checks a backup that
is already there instead of taking one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import click
import psycopg

from pgperfmon import db, embedded


class BackupError(Exception):
    """The backup could not be taken, verified or started; the text says which step and why."""


@dataclass
class Result:
    ok: bool
    folder: Path
    started_at: datetime
    finished_at: datetime | None = None
    size_bytes: int | None = None
    verified: bool = False
    restored: bool = False
    steps: list[str] = field(default_factory=list)
    error: str | None = None
    recorded_id: int | None = None

    @property
    def detail(self) -> str:
        return self.error or "; ".join(self.steps)


def _tool(name: str) -> Path:
    path = embedded.find_binaries().bindir / name
    if not path.is_file():
        raise BackupError(f"{name} is not installed next to the server binaries ({path.parent})")
    return path


def _run(step: str, args: list[str], env: dict[str, str] | None = None,
         as_server: bool = False, cwd: Path | str = "/") -> str:
    kwargs: dict = {}
    account = embedded._server_account() if as_server else None
    if account:
        _name, uid, gid = account
        kwargs = {"user": uid, "group": gid, "extra_groups": []}
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, **kwargs)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        # The tool's own error lines say what is wrong; show the first few.
        shown = "\n  ".join(output[:8]) or f"exit status {result.returncode}"
        raise BackupError(f"{step} failed:\n  {db.redact(shown)}")
    return result.stdout


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def basebackup_invocation(dsn: str, target: Path) -> tuple[list[str], dict[str, str]]:
    """pg_basebackup's arguments and environment. The password goes in the environment
    (PGPASSWORD): a command line is readable by every user of the host (ps, /proc)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except (psycopg.ProgrammingError, UnicodeDecodeError) as exc:
        raise BackupError(f"the DSN is malformed: {db.redact(str(exc).strip(), db.dsn_secrets(dsn))}"
                          ) from None
    env = dict(os.environ)
    password = parts.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    args = [str(_tool("pg_basebackup")), "--dbname", psycopg.conninfo.make_conninfo(**parts),
            "--pgdata", str(target), "--wal-method=stream", "--checkpoint=fast", "--no-password",
            "--manifest-checksums=CRC32C"]
    return args, env


def take(dsn: str, target: Path) -> None:
    """pg_basebackup of the server into `target` (plain format, WAL streamed, fast checkpoint)."""
    args, env = basebackup_invocation(dsn, target)
    _run("pg_basebackup", args, env=env)


def verify_folder(target: Path) -> str:
    """pg_verifybackup against the backup's manifest: every file present, sizes and checksums."""
    if not (target / "backup_manifest").is_file():
        raise BackupError(f"pg_verifybackup failed: {target} holds no backup_manifest "
                          "(not a pg_basebackup of PostgreSQL 13 or newer)")
    # pg_verifybackup runs pg_waldump through /bin/sh with the WAL folder pasted between double
    # quotes: named relative to the folder it runs in, no ", $ or backtick of the path is there.
    return _run("pg_verifybackup", [str(_tool("pg_verifybackup")), target.name],
                cwd=target.parent).strip()


def start_copy(target: Path, user: str) -> None:
    """Start the backup as a server on a private socket until it answers; then stop it."""
    account = embedded._server_account()
    if account:
        _name, uid, gid = account
        for root, dirs, files in os.walk(target):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid)
        os.chown(target, uid, gid)
    target.chmod(0o700)
    # The copy may come from a server whose configuration lives outside its data
    # directory (Debian: /etc/postgresql): give it a minimal one of its own.
    for name, text in (("postgresql.conf", ""), ("pg_hba.conf", "local all all trust\n")):
        if not (target / name).exists():
            (target / name).write_text(text)
            if account:
                os.chown(target / name, account[1], account[2])
    socket_dir = target
    # pg_ctl starts the server through /bin/sh with -D's folder, -l's file and -o pasted in:
    # the folder goes in $PGDATA, and the log, socket folder and hba_file are named relative
    # to it (the server works in its data folder), so no ", ', $ or backtick of the path is there.
    options = ("-c listen_addresses='' -c unix_socket_directories=. "
               "-c port=5432 -c archive_mode=off -c shared_preload_libraries='' "
               "-c hba_file=pg_hba.conf -c max_wal_senders=0 -c wal_level=minimal "
               "-c max_connections=10")
    pg_ctl = str(embedded.find_binaries().bindir / "pg_ctl")
    log = target / "verify-start.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGDATA"] = str(target)
    try:
        _run("starting the backup", [pg_ctl, "start", "-o", options, "-l", log.name, "-w", "-t", "120"],
             env=env, as_server=True, cwd=target)
    except BackupError as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        raise BackupError(f"{exc}\n  server log: " + "\n  ".join(tail)) from None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(host=str(socket_dir), port=5432, user=user,
                                     dbname="postgres", connect_timeout=5) as conn:
                    conn.execute("SELECT count(*) FROM pg_database").fetchone()
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise BackupError(f"the started backup does not answer: {exc}") from None
                time.sleep(0.5)
    finally:
        _run("stopping the backup", [pg_ctl, "stop", "-m", "fast", "-w"], env=env, as_server=True,
             cwd=target)


def record(dsn: str, result: Result) -> int | None:
    """Write the result to perfmon.backup_log; None when pgperfmon is not installed there."""
    with db.connection(dsn, autocommit=True) as conn:
        installed = conn.execute(
            "SELECT to_regprocedure('perfmon.record_backup(text, boolean, timestamptz, timestamptz, "
            "bigint, text, boolean, boolean)') IS NOT NULL").fetchone()
        if not installed or not installed[0]:
            return None
        row = conn.execute(
            "SELECT perfmon.record_backup(%s, %s, %s, %s, %s, %s, %s, %s)",
            ("pgperfmon backup verify", result.ok, result.started_at, result.finished_at,
             result.size_bytes, result.detail[:2000], result.verified, result.restored)).fetchone()
        return int(row[0]) if row else None


def verify(dsn: str, *, scratch: Path | None = None, backup_dir: Path | None = None,
           start: bool = False, keep: bool = False, record_result: bool = True) -> Result:
    """Take (or take `backup_dir` as) a base backup, verify it, optionally start it; record it."""
    started = datetime.now(timezone.utc)
    # The tools run in other folders than ours (/, the copy's): a relative path would be read
    # from there (pg_basebackup wrote a relative --scratch under /).
    scratch = scratch.resolve() if scratch is not None else None
    backup_dir = backup_dir.resolve() if backup_dir is not None else None
    if backup_dir is not None:
        folder, target, owned = backup_dir, backup_dir, False
    else:
        if scratch is not None:
            scratch.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="pgperfmon-backup-", dir=scratch))
        folder.chmod(0o711)
        target, owned = folder / "pgdata", True
    result = Result(ok=False, folder=target, started_at=started)
    try:
        if owned:
            take(dsn, target)
            result.steps.append("pg_basebackup: taken")
        result.size_bytes = _folder_bytes(target)
        verify_folder(target)
        result.verified = True
        result.steps.append("pg_verifybackup: backup successfully verified")
        if start:
            user = psycopg.conninfo.conninfo_to_dict(dsn).get("user") or os.environ.get(
                "PGUSER", embedded.SUPERUSER)
            start_copy(target, str(user))
            result.restored = True
            result.steps.append("started: recovery completed and it answered a query")
        result.ok = True
    except BackupError as exc:
        result.error = str(exc)
    finally:
        result.finished_at = datetime.now(timezone.utc)
        if owned and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if record_result:
        try:
            result.recorded_id = record(dsn, result)
        except db.ConnectError:
            result.recorded_id = None
    return result


# --------------------------------------------------------------------------- CLI


@click.group("backup")
def command() -> None:
    """Check that the server's backups work."""


@command.command("verify")
@click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
              help="libpq connection string of a superuser or REPLICATION role; default "
                   "$PGPERFMON_DSN, else the PG* variables.")
@click.option("--scratch", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the temporary copy (default: the system's temporary folder).")
@click.option("--backup-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="verify this existing base backup instead of taking one.")
@click.option("--start", is_flag=True,
              help="also start the copy on a private socket to prove it recovers.")
@click.option("--keep", is_flag=True, help="keep the copy (its folder is printed).")
def verify_command(dsn: str | None, scratch: Path | None, backup_dir: Path | None,
                   start: bool, keep: bool) -> None:
    """Take a base backup with pg_basebackup, check it with pg_verifybackup, optionally
    start it; record the result in perfmon.backup_log. Exit 1 when any step fails."""
    target = db.resolve_dsn(dsn)
    try:
        result = verify(target, scratch=scratch, backup_dir=backup_dir, start=start, keep=keep)
    except (BackupError, embedded.EmbeddedError, db.ConnectError) as exc:
        click.echo(f"error: {db.redact(str(exc), db.dsn_secrets(target))}", err=True)
        raise SystemExit(1) from None
    took = (result.finished_at - result.started_at).total_seconds() if result.finished_at else 0
    for step in result.steps:
        click.echo(step)
    recorded = (f"recorded as perfmon.backup_log id {result.recorded_id}"
                if result.recorded_id is not None else "not recorded (pgperfmon is not installed there)")
    if result.ok:
        size = f"{result.size_bytes / 1048576:.1f} MB" if result.size_bytes else "?"
        kept = f"; kept in {result.folder}" if keep or backup_dir else ""
        click.echo(f"backup OK: {size} in {took:.1f} s{kept}; {recorded}")
        return
    click.echo(f"backup FAILED: {db.redact(result.error or '', db.dsn_secrets(target))}", err=True)
    click.echo(recorded, err=True)
    raise SystemExit(1)
