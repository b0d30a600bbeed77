"""The ingest write path, and `pgperfmon ingest` (bulk load of one metric from CSV).

``Writer`` is how everything outside the server feeds the metric store, with
only what ``perfmon_agent`` may do: series ids are asked once from
``perfmon.ingest_series()`` and cached; a batch is COPYed into the session's
staging table (``perfmon.ingest_open()``) and stored by
``perfmon.ingest_batch()`` in the same transaction, which validates every row,
keeps the good ones, says which rows it refused and why, and stores a batch
key only once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import psycopg

from pgperfmon import db

# (metric, labels as canonical JSON, unit or None)
SeriesKey = tuple[str, str, str | None]
# (row number, series, timestamp as ISO text, value)
Row = tuple[int, SeriesKey, str, float]

BATCH_ROWS = 50_000
# Names in batch keys of files: the same file loaded twice is stored once.
_FILE_KEYS = uuid.UUID("5c1f3a52-8d0e-4f4e-9a55-6f2b1d0c7e41")


class IngestError(Exception):
    """Input that cannot be loaded at all; the text says what and where."""


def series_key(metric: str, labels: dict[str, Any] | None = None, unit: str | None = None) -> SeriesKey:
    return (metric, json.dumps(labels or {}, sort_keys=True, separators=(",", ":")), unit)


def iso(ts: float | datetime) -> str:
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).isoformat()
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _float_text(value: float) -> str:
    # repr() round-trips; PostgreSQL spells the special values its own way.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


@dataclass
class Result:
    batch_key: uuid.UUID
    stored: int = 0
    duplicate: bool = False
    errors: list[tuple[int | None, str]] = field(default_factory=list)  # (row, reason)

    @property
    def refused(self) -> int:
        return len(self.errors)


class Writer:
    """Writes batches of metric rows through perfmon_agent's ingest functions."""

    def __init__(self, conn: psycopg.Connection, agent: str = "pgperfmon"):
        self.conn = conn
        self.agent = agent
        self._series: dict[SeriesKey, int] = {}
        conn.autocommit = False
        # Naive timestamps are UTC; a staging table of a big batch stays in memory.
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET temp_buffers = '32MB'")
        conn.execute("SELECT perfmon.ingest_open()")
        conn.commit()

    def resolve(self, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int | str]:
        """Series id (or the reason it is refused) of each key; ids are cached."""
        out: dict[SeriesKey, int | str] = {}
        missing = []
        for key in dict.fromkeys(keys):
            if key in self._series:
                out[key] = self._series[key]
            else:
                missing.append(key)
        for start in range(0, len(missing), 10_000):
            chunk = missing[start:start + 10_000]
            rows = self.conn.execute(
                "SELECT ord, series_id, refused FROM perfmon.ingest_series(%s, %s::jsonb[], %s)",
                ([k[0] for k in chunk], [k[1] for k in chunk], [k[2] for k in chunk]),
            ).fetchall()
            for ord_, series_id, refused in rows:
                key = chunk[ord_ - 1]
                if refused is None:
                    self._series[key] = out[key] = series_id
                else:
                    out[key] = refused
        self.conn.commit()
        return out

    def send(self, batch_key: uuid.UUID, rows: Sequence[Row]) -> Result:
        """Store one batch (one transaction); rows whose series is refused are reported."""
        resolved = self.resolve(r[1] for r in rows)
        result = Result(batch_key)
        lines = []
        for seq, key, ts, value in rows:
            sid = resolved[key]
            if isinstance(sid, str):
                result.errors.append((seq, sid))
            else:
                lines.append(f"{seq}\t{sid}\t{ts}\t{_float_text(value)}\n")
        try:
            with self.conn.cursor() as cur:
                with cur.copy("COPY pg_temp.perfmon_ingest (seq, series_id, ts, value) FROM STDIN") as copy:
                    copy.write("".join(lines))
                answer = cur.execute("SELECT perfmon.ingest_batch(%s, %s)",
                                     (batch_key, self.agent)).fetchone()[0]
            self.conn.commit()
        except BaseException:
            if not self.conn.closed:
                self.conn.rollback()
            raise
        result.stored = answer["stored"]
        result.duplicate = answer["duplicate"]
        result.errors.extend((e["row"], e["reason"]) for e in answer["errors"])
        if any(reason.startswith("unknown series id") for _row, reason in answer["errors"]):
            self._series.clear()  # the dictionary changed under us: ask again next time
        result.errors.sort(key=lambda e: (e[0] is None, e[0] or 0))
        return result


# --------------------------------------------------------------------------- CSV

def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (zone-less = UTC) or seconds since the epoch."""
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), timezone.utc)
    except ValueError:
        pass
    except (OverflowError, OSError):
        raise ValueError(f"timestamp {text[:40]!r} is out of range") from None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {text[:40]!r} is neither ISO 8601 nor epoch seconds") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def read_csv(stream: io.TextIOBase, key: SeriesKey) -> Iterator[Row | tuple[int, str]]:
    """Rows of a `timestamp,value` file, or (line, reason) for a line that cannot be read.

    A first line whose value is not a number is a header and is skipped.
    """
    for number, record in enumerate(csv.reader(stream), start=1):
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != 2:
            yield number, f"expected 2 fields (timestamp,value), got {len(record)}"
            continue
        ts_text, value_text = record
        try:
            value = float(value_text)
        except ValueError:
            if number == 1:
                continue  # header
            yield number, f"value {value_text[:40]!r} is not a number"
            continue
        try:
            ts = parse_timestamp(ts_text)
        except ValueError as exc:
            yield number, str(exc)
            continue
        yield number, key, ts.isoformat(), value


def ingest_file(conn: psycopg.Connection, stream: io.TextIOBase, metric: str,
                unit: str | None = None, labels: dict[str, Any] | None = None,
                agent: str = "pgperfmon ingest") -> tuple[int, int, list[tuple[int | None, str]]]:
    """Load a CSV stream into one series: (stored, batches already stored, refused rows)."""
    writer = Writer(conn, agent)
    key = series_key(metric, labels, unit)
    refusal = writer.resolve([key])[key]
    if isinstance(refusal, str):
        raise IngestError(f"metric {metric!r} refused: {refusal}")
    stored = duplicates = 0
    errors: list[tuple[int | None, str]] = []
    batch: list[Row] = []

    def flush() -> None:
        nonlocal stored, duplicates
        digest = hashlib.sha256(repr((key, batch)).encode()).hexdigest()
        result = writer.send(uuid.uuid5(_FILE_KEYS, digest), batch)
        stored += result.stored
        duplicates += result.duplicate
        errors.extend(result.errors)
        batch.clear()

    for item in read_csv(stream, key):
        if len(item) == 2:
            errors.append(item)  # type: ignore[arg-type]
            continue
        batch.append(item)  # type: ignore[arg-type]
        if len(batch) >= BATCH_ROWS:
            flush()
    if batch:
        flush()
    errors.sort(key=lambda e: (e[0] is None, e[0] or 0))
    return stored, duplicates, errors


@click.command("ingest")
@click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
              help="libpq connection string or URI; default $PGPERFMON_DSN, else the PG* variables.")
@click.option("--metric", required=True, help="metric name, e.g. business.revenue_impact.")
@click.option("--unit", default=None,
              help="unit of the values; an unknown metric is added to the catalog with it.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="a label of the series (repeatable), e.g. --label region=eu.")
@click.option("--input", "input_file", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="CSV file of timestamp,value lines (ISO 8601 or epoch seconds); - for stdin.")
def command(dsn: str | None, metric: str, unit: str | None, labels: tuple[str, ...],
            input_file: str) -> None:
    """Load a timestamp,value CSV into the metric store; refused lines are listed, exit 1 if any."""
    label_map = {}
    for item in labels:
        name, sep, value = item.partition("=")
        if not sep:
            raise IngestError(f"--label {item!r}: expected KEY=VALUE")
        label_map[name] = value
    if input_file == "-":
        stream: Any = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    else:
        try:
            stream = Path(input_file).open(encoding="utf-8", newline="")
        except OSError as exc:
            raise IngestError(f"cannot read {input_file}: {exc.strerror}") from None
    with stream, db.connection(db.resolve_dsn(dsn)) as conn:
        stored, duplicates, errors = ingest_file(conn, stream, metric, unit, label_map)
    for row, reason in errors[:1000]:
        click.echo(f"refused line {row}: {reason}" if row is not None else f"refused: {reason}", err=True)
    if len(errors) > 1000:
        click.echo(f"... and {len(errors) - 1000} more refused lines", err=True)
    note = f" ({duplicates} batches were already stored)" if duplicates else ""
    click.echo(f"stored {stored} values of {metric}, refused {len(errors)}{note}")
    if errors:
        sys.exit(1)
