"""`pgperfmon anomalies`: backtest the in-database anomaly detector on labelled series.

Each input file (``timestamp,value``) is loaded into the metric store as a series of
its own through the ingest path (``pgperfmon ingest``'s ``ingest_file``), then scored
walk-forward by ``perfmon.anomaly_backtest()`` - the detector and model schedule that
run in production, inside the database; nothing here scores anything. The series is
removed again afterwards unless ``--keep``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
import uuid
from pathlib import Path

import click
import psycopg

from pgperfmon import db, ingest

METRIC = "backtest.value"


def series_labels(file: Path, run: str) -> dict[str, str]:
    """The labels of the series a file of a run is loaded as."""
    return {"file": file.name[:200], "run": run}


def same_names(inputs: tuple[Path, ...] | list[Path]) -> None:
    """Refuse inputs that share a file name: the name labels the series a file is loaded as
    and is the output's file column, so two such files (a/x.csv, b/x.csv) were one series -
    the second's values refused as duplicates, or merged into the first's - and their rows
    could not be told apart."""
    seen: dict[str, Path] = {}
    for file in inputs:
        name = series_labels(file, "")["file"]
        if name in seen:
            raise click.BadParameter(
                f"{seen[name]} and {file} have the same file name {name!r}, which names a series and "
                "its rows in the output's file column: give each input a name of its own (copy or "
                "link one under another name)", param_hint="--input")
        seen[name] = file


def load_series(conn: psycopg.Connection, file: Path, run: str) -> int:
    """Load one file as a series labelled with its name and the run; return its series id."""
    labels = series_labels(file, run)
    with file.open(encoding="utf-8", newline="") as stream:
        stored, _dups, errors = ingest.ingest_file(conn, stream, METRIC, "none", labels,
                                                   agent="pgperfmon anomalies backtest")
    if errors:
        line, reason = errors[0]
        raise ingest.IngestError(f"{file}: {len(errors)} lines refused, e.g. line {line}: {reason}")
    if not stored:
        raise ingest.IngestError(f"{file}: no values")
    key = ingest.series_key(METRIC, labels, "none")
    row = conn.execute(
        "SELECT s.series_id FROM perfmon.metric_series AS s JOIN perfmon.metrics AS m USING (metric_id) "
        "WHERE m.name = %s AND s.labels = %s::jsonb", (METRIC, key[1])).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def drop_series(conn: psycopg.Connection, file: Path, run: str) -> None:
    """Remove the series a file of a run was loaded as, if any (a load refused part-way has
    stored the batches before the refusal)."""
    if conn.closed:  # the server went away: its error is the one to show
        return
    conn.rollback()  # a failed load or backtest must not hide its error behind this one
    ids = [r[0] for r in conn.execute(
        "SELECT s.series_id FROM perfmon.metric_series AS s JOIN perfmon.metrics AS m USING (metric_id) "
        "WHERE m.name = %s AND s.labels = %s::jsonb",
        (METRIC, ingest.series_key(METRIC, series_labels(file, run))[1])).fetchall()]
    conn.execute("DELETE FROM perfmon.metric_samples WHERE series_id = ANY (%s)", (ids,))
    conn.execute("DELETE FROM perfmon.metric_series WHERE series_id = ANY (%s)", (ids,))
    conn.commit()


def parse_params(pairs: tuple[str, ...]) -> dict[str, float] | None:
    """--param KEY=VALUE pairs as the settings object perfmon.anomaly_backtest() reads."""
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not key or number != number or number in (float("inf"), float("-inf")):
            raise click.BadParameter(f"{pair!r}: expected KEY=NUMBER, e.g. margin=0.3", param_hint="--param")
        out[key] = int(number) if number.is_integer() else number
    return out or None


@click.group(name="anomalies")
def group() -> None:
    """Anomaly detection: backtests of the in-database detector."""


@group.command("backtest")
@click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
              help="libpq connection string or URI; default $PGPERFMON_DSN, else the PG* variables.")
@click.option("--input", "inputs", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of timestamp,value lines, oldest first (repeatable).")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV written: file,timestamp,score,is_anomaly (file = the input's file name, which "
                   "must differ between inputs; timestamp in UTC, YYYY-MM-DD HH:MM:SS).")
@click.option("--detector", default=None,
              help="detector to run (perfmon.anomaly_detectors; default: the one in force).")
@click.option("--sensitivity", type=click.Choice(["low", "medium", "high"]), default=None,
              help="default: anomaly_detection.sensitivity of the database.")
@click.option("--param", "params", multiple=True, metavar="KEY=NUMBER",
              help="replace a setting of the sensitivity for this backtest (repeatable): margin, "
                   "mean_margin, mean_window (envelope), z (robust_zscore), contamination "
                   "(isolation_forest). See perfmon.anomaly_settings().")
@click.option("--anomalies-only", is_flag=True,
              help="write only the rows with is_anomaly = true (a flags file for nab_score.py).")
@click.option("--keep", is_flag=True, help="keep the loaded series in the metric store.")
def backtest(dsn: str | None, inputs: tuple[Path, ...], output: Path, detector: str | None,
             sensitivity: str | None, params: tuple[str, ...], anomalies_only: bool, keep: bool) -> None:
    """Score each input walk-forward with the in-database detector; write the scores.

    is_anomaly is true at the first sample of each anomaly episode and where its
    severity rises (perfmon.anomalies shows it new or worse); score is 1 at the
    detector's threshold. timestamp is in UTC, whatever offset the input's timestamps
    carry (one without an offset is read as UTC).
    """
    same_names(inputs)
    settings = parse_params(params)
    run = uuid.uuid4().hex[:12]
    flagged = 0
    # Written beside the output, then renamed over it: a run that fails (a refused file, a
    # lost connection, ^C) leaves the output as it was, never truncated or half written. A
    # pipe, a device or a link (/dev/stdout, which renaming would replace) is written in place.
    direct = output.is_symlink() or (output.exists() and not output.is_file())
    partial = output if direct else output.with_name(f".{output.name}.{run}.tmp")
    try:
        with db.connection(db.resolve_dsn(dsn)) as conn, \
                partial.open("w", encoding="utf-8", newline="") as out:
            if not db.installed(conn):
                raise ingest.IngestError(db.not_installed(conn))
            # Settings (and the daily profile's time zone) refused before any series is loaded.
            conn.execute(
                "SELECT perfmon.anomaly_settings("
                "coalesce(%s, perfmon.setting('anomaly_detection.sensitivity') #>> '{}'), "
                "coalesce(%s, perfmon.anomaly_detector()), %s::jsonb), perfmon.anomaly_timezone()",
                (sensitivity, detector, json.dumps(settings) if settings else None))
            conn.commit()
            writer = csv.writer(out)
            writer.writerow(["file", "timestamp", "score", "is_anomaly"])
            for file in inputs:
                start = time.perf_counter()
                try:
                    series_id = load_series(conn, file, run)
                    conn.execute("SET TimeZone = 'UTC'")
                    rows = conn.execute(
                        "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI:SS'), score, is_anomaly "
                        "FROM perfmon.anomaly_backtest(%s, %s, %s, %s::jsonb)",
                        (series_id, detector, sensitivity,
                         json.dumps(settings) if settings else None)).fetchall()
                    conn.commit()
                finally:
                    if not keep:
                        drop_series(conn, file, run)
                n = 0
                for ts, score, is_anomaly in rows:
                    if is_anomaly:
                        n += 1
                    if is_anomaly or not anomalies_only:
                        writer.writerow([file.name, ts, f"{score:.4f}", "true" if is_anomaly else "false"])
                flagged += n
                click.echo(f"{file.name}: {len(rows)} points, {n} anomalies "
                           f"({time.perf_counter() - start:.1f} s)", err=True)
        if not direct:
            partial.replace(output)
    except (ingest.IngestError, psycopg.Error) as exc:
        click.echo(f"error: {db.redact(str(exc)).strip()}", err=True)
        sys.exit(1)
    finally:
        if not direct:
            partial.unlink(missing_ok=True)
    click.echo(f"wrote {output}: {len(inputs)} series, {flagged} anomalies")
