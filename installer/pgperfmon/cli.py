"""The `pgperfmon` command."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import psycopg

from pgperfmon import (
    __version__,
    agent,
    alerting,
    anomalies,
    backup,
    config,
    dashboard,
    db,
    deploy,
    embedded,
    ingest,
    reader,
    report,
    spool,
    status,
)

F = TypeVar("F", bound=Callable[..., Any])

# Errors that carry a message meant for the user: shown as one clean line, exit 1.
USER_ERRORS = (
    db.ConnectError,
    deploy.DeployError,
    config.ConfigError,
    embedded.EmbeddedError,
    ingest.IngestError,
    spool.SpoolError,
    reader.ReaderError,
    report.ReportError,
    dashboard.DashboardError,
)


def _user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            click.echo(f"error: {db.redact(str(exc))}", err=True)
            sys.exit(1)
        except psycopg.Error as exc:
            click.echo(f"error: {db.redact(_database_error(exc))}", err=True)
            sys.exit(1)
        except OSError as exc:  # a file to read or write: the output folder missing, no permission
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _database_error(exc: psycopg.Error) -> str:
    """The server's message, and what to do for the errors a DBA meets with the wrong login
    or database."""
    message = str(exc).strip()
    if isinstance(exc, psycopg.errors.InvalidSchemaName) and "perfmon" in message:
        return f"{message}: pgperfmon is not installed in this database (pgperfmon install)"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (f"{message}: connect as a login granted perfmon_reader (reading), perfmon_agent "
                "(ingest, agent) or perfmon_admin, or as a superuser")
    return message


dsn_option = click.option(
    "--dsn",
    envvar="PGPERFMON_DSN",
    default=None,
    help="libpq connection string or URI; default $PGPERFMON_DSN, else the PG* variables.",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"home of the embedded cluster (default {embedded.default_home()}).",
)


@click.group()
@click.version_option(__version__, prog_name="pgperfmon")
def main() -> None:
    """pgperfmon: a PostgreSQL performance monitor that lives inside the database it watches."""


# ------------------------------------------------------------------ embedded cluster

@main.command()
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="TCP port on 127.0.0.1 (default: the last one used, else a free one).")
@_user_errors
def up(data_dir: Path | None, port: int | None) -> None:
    """Create (first time) and start the embedded local PostgreSQL; print its DSN last."""
    cluster = embedded.Cluster(data_dir)
    was_running = cluster.is_running() if cluster.is_initialised() else False
    _required, optional = embedded.missing_extensions(cluster.binaries)
    dsn = cluster.up(port)
    if not was_running:
        click.echo(f"started PostgreSQL {cluster.binaries.major} in {cluster.pgdata}", err=True)
    if optional:
        click.echo(
            "note: optional extensions missing (pgperfmon runs degraded without them); "
            f"on Debian/Ubuntu: apt-get install -y {' '.join(optional)}",
            err=True,
        )
    click.echo(dsn)


@main.command()
@data_dir_option
@_user_errors
def down(data_dir: Path | None) -> None:
    """Stop the embedded PostgreSQL."""
    cluster = embedded.Cluster(data_dir)
    if not cluster.is_initialised():
        click.echo(f"no embedded cluster in {cluster.home}")
        return
    click.echo("stopped" if cluster.down() else "was not running")


@main.command()
@data_dir_option
@click.option("--seconds", type=click.IntRange(5, 3600), default=30, show_default=True,
              help="how long the demo workload runs.")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True,
              help="end by serving the dashboards on 127.0.0.1 until Ctrl-C.")
@_user_errors
def demo(data_dir: Path | None, seconds: int, dashboard: bool) -> None:
    """Embedded PostgreSQL, a pgbench workload, and pgperfmon at work on it."""
    from pgperfmon import demo as demo_module

    demo_module.run(data_dir, seconds, serve_dashboards=dashboard)


# ------------------------------------------------------------------ install

@main.command()
@dsn_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="performance_monitoring.yml (default: keep the stored configuration; "
                                 "the built-in defaults on a first install).")
@_user_errors
def install(dsn: str | None, config_file: Path | None) -> None:
    """Install or upgrade pgperfmon in a database (idempotent; keeps data and configuration)."""
    cfg = config.load(config_file)  # an invalid file or override stops here, before any change
    target = db.resolve_dsn(dsn)
    report = deploy.install(target, cfg if config_file else None)
    for line in report.changes:
        click.echo(line)
    for line in report.notes:
        click.echo(f"note: {line}")
    click.echo(
        f"pgperfmon {__version__} installed in {db.describe(target)}"
        + ("" if report.changes else " (nothing to change)")
    )


main.add_command(install, name="upgrade")


@main.command()
@dsn_option
@click.option("--keep-data", is_flag=True, help="keep the tables of schema perfmon and their rows.")
@click.option("--yes", is_flag=True, help="do not ask for confirmation.")
@_user_errors
def uninstall(dsn: str | None, keep_data: bool, yes: bool) -> None:
    """Remove pgperfmon's jobs, schema and roles from a database."""
    target = db.resolve_dsn(dsn)
    if not yes and sys.stdin.isatty():
        what = "its functions, views and jobs" if keep_data else "all its data"
        click.confirm(f"Remove pgperfmon and {what} from {db.describe(target)}?", abort=True)
    report = deploy.uninstall(target, keep_data=keep_data)
    for line in report.changes:
        click.echo(line)
    for line in report.notes:
        click.echo(f"note: {line}")
    click.echo(f"pgperfmon uninstalled from {db.describe(target)}")


@main.command(name="status")
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON.")
@_user_errors
def status_command(dsn: str | None, as_json: bool) -> None:
    """What is installed, which capabilities are in force, how the jobs ran. Exit 1 if unhealthy."""
    result = status.collect(db.resolve_dsn(dsn))
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, default=str))
    else:
        click.echo(status.render(result))
    sys.exit(0 if result.healthy else 1)


# ------------------------------------------------------------------ configuration

@main.group(name="config")
def config_group() -> None:
    """Validate and show the configuration."""


@config_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_user_errors
def config_validate(file: Path) -> None:
    """Check FILE (and the environment overrides); print the problems, exit 1 if any."""
    cfg = config.load(file)
    overridden = [f"{var} -> {key}" for var, key in config.ENV_OVERRIDES.items()
                  if var in os.environ]
    click.echo(f"{file}: valid ({len(config.flatten(cfg))} keys)")
    for line in overridden:
        click.echo(f"  overridden by ${line}")


@config_group.command("show")
@dsn_option
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="show a file's effective configuration instead of the database's.")
@_user_errors
def config_show(dsn: str | None, file: Path | None) -> None:
    """Print the configuration stored in the database (or a file's), as YAML."""
    if file is not None:
        click.echo(config.to_yaml(config.unflatten(config.flatten(config.load(file)))), nl=False)
        return
    with db.connection(db.resolve_dsn(dsn)) as conn:
        if not db.installed(conn):
            raise deploy.DeployError(db.not_installed(conn))
        rows = dict(conn.execute("SELECT key, value FROM perfmon.config"))
    # In the documented order of the template, not alphabetically.
    order = list(config.flatten(config.Config()))
    ordered = {k: rows[k] for k in sorted(rows, key=lambda k: (k not in order, order.index(k)
                                                                 if k in order else 0, k))}
    click.echo(config.to_yaml(config.unflatten(ordered)), nl=False)


# ------------------------------------------------------------------ other modules' commands
# agent, ingest (issue 4), backup (5), anomalies (6), deliver, recover, watch (7),
# report, dashboard (8).
# Their user-facing errors print like the others'; backup reports its own verdict.
for _command in (agent.command, ingest.command, anomalies.backtest,
                 alerting.deliver, alerting.recover, alerting.watch, report.command,
                 dashboard.command):
    _command.callback = _user_errors(_command.callback)
for _command in (agent.command, ingest.command, backup.command, anomalies.group,
                 alerting.deliver, alerting.recover, alerting.watch, report.command,
                 dashboard.command):
    main.add_command(_command)


if __name__ == "__main__":
    main()
