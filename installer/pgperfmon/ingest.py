"""The ingest write path, and `pgperfmon ingest` (bulk load of one metric from CSV).

``Writer`` is how everything outside the server feeds the metric store, with
only what ``perfmon_agent`` may do: series ids are asked once from
``perfmon.ingest_series()`` and cached; a batch is COPYed (binary format) into
the session's staging table (``perfmon.ingest_open()``) and stored by
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
import struct
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import psycopg

from pgperfmon import db

# (metric, labels as canonical JSON, unit or None)
SeriesKey = tuple[str, str, str | None]
# (row number, series, timestamp, value); the timestamp is seconds since 1970 (as
# time.time() gives it), a datetime or ISO 8601 text; zone-less means UTC.
Row = tuple[int, SeriesKey, "float | datetime | str", "float | None"]

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


# A batch goes to the staging table in COPY's binary format: the server then
# parses no text (reading the timestamps' text was half the cost of a batch;
# see bench/ingest_throughput.py). Header: signature, flags 0, no extension.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack("!h", -1)
# One row: 4 fields, each its byte length then its value: seq int4, series_id
# int4, ts timestamptz (microseconds since 2000-01-01 UTC), value float8.
_COPY_ROW = struct.Struct("!hiiiiiqid")
# The same field by field, for a row with a NULL.
_COPY_INT4_PAIR = struct.Struct("!hiiii")
_COPY_INT8 = struct.Struct("!iq")
_COPY_FLOAT8 = struct.Struct("!id")
_COPY_NULL = struct.pack("!i", -1)
_NOTHING = object()
_PG_EPOCH_S = 946_684_800  # 2000-01-01 00:00:00 UTC in seconds since 1970
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
# Seconds since 1970 sent as they are: about the years -1200 to 5100, inside
# PostgreSQL's range; the server refuses what is before 2000 or beyond tomorrow.
_MAX_EPOCH_S = 1e11


def _pg_microseconds(ts: float | datetime | str) -> int | str:
    """A row's timestamp as binary COPY wants it, or why it cannot be sent."""
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
        except ValueError:
            return f"timestamp {ts[:40]!r} is not ISO 8601"
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        return (ts - _PG_EPOCH) // _MICROSECOND
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        if ts != ts:
            return "timestamp is NaN (not a number)"
        if not -_MAX_EPOCH_S < ts < _MAX_EPOCH_S:
            return f"timestamp {ts!r} (seconds since 1970) is out of range"
        # Rounded to the microsecond as datetime.fromtimestamp() rounds (so as iso()).
        whole = math.floor(ts)
        return (whole - _PG_EPOCH_S) * 1_000_000 + round((ts - whole) * 1_000_000)
    return f"timestamp {ts!r} is neither seconds since 1970, a datetime nor ISO 8601 text"


def encode_rows(rows: Iterable[Row], series_ids: Mapping[SeriesKey, int | str],
                errors: list[tuple[int | None, str]]) -> bytes:
    """Rows as a binary COPY of pg_temp.perfmon_ingest (seq, series_id, ts, value).

    ``series_ids`` maps each row's series to its id, or to the reason it was
    refused; a key it lacks raises KeyError. A row with a refused series, a
    timestamp that cannot be sent or a value that is not a number goes to
    ``errors`` as (seq, reason) instead; a timestamp or value of None is sent as
    NULL, which the server refuses with its reason.
    """
    out = [_COPY_HEADER]
    pack = _COPY_ROW.pack
    last_ts: object = _NOTHING
    us: int | str | None = None
    for seq, key, ts, value in rows:
        sid = series_ids[key]
        if type(sid) is str:
            errors.append((seq, sid))
            continue
        # The points of one sample share one timestamp object: converted once.
        if ts is not last_ts:
            us = None if ts is None else _pg_microseconds(ts)
            last_ts = ts
        if type(us) is str:
            errors.append((seq, us))
        elif type(value) is float and us is not None:
            out.append(pack(4, 4, seq, 4, sid, 8, us, 8, value))
        else:
            try:
                number = None if value is None else float(value)
            except (TypeError, ValueError):
                errors.append((seq, f"value {str(value)[:40]!r} is not a number"))
                continue
            # NULL (length -1) for a missing time or value: the server says which.
            out.append(b"".join((_COPY_INT4_PAIR.pack(4, 4, seq, 4, sid),
                                 _COPY_NULL if us is None else _COPY_INT8.pack(8, us),
                                 _COPY_NULL if number is None else _COPY_FLOAT8.pack(8, number))))
    out.append(_COPY_TRAILER)
    return b"".join(out)


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
        result = Result(batch_key)
        try:
            data = encode_rows(rows, self._series, result.errors)
        except KeyError:  # a series not asked about yet
            result.errors.clear()
            data = encode_rows(rows, self.resolve(r[1] for r in rows), result.errors)
        try:
            with self.conn.cursor() as cur:
                with cur.copy("COPY pg_temp.perfmon_ingest (seq, series_id, ts, value) "
                              "FROM STDIN (FORMAT binary)") as copy:
                    copy.write(data)
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

    A first line whose value is not a number and whose timestamp is not a timestamp
    either is a header and is skipped; one with a timestamp is data, refused if its
    value is bad. A header that names columns `timestamp` and `value` picks them from
    lines of its width, and the others (a label column, say) are ignored.
    """
    width, ts_col, value_col = 2, 0, 1
    for number, record in enumerate(csv.reader(stream), start=1):
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        names = [name.strip().lower() for name in record]
        if number == 1 and "timestamp" in names and "value" in names:
            width, ts_col, value_col = len(names), names.index("timestamp"), names.index("value")
            continue
        if len(record) != width:
            columns = "timestamp,value" if width == 2 else f"as the header names {width}"
            yield number, f"expected {width} fields ({columns}), got {len(record)}"
            continue
        ts_text, value_text = record[ts_col], record[value_col]
        try:
            value = float(value_text)
        except ValueError:
            if number == 1:
                try:
                    parse_timestamp(ts_text)
                except ValueError:
                    continue  # a header: not a timestamp either
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
    # The unit is the metric's, checked (or the metric added with it) here, once. The rows,
    # and so the batch keys, name the series without it: a file loaded with --unit and
    # again without is one batch, stored once.
    given, key = series_key(metric, labels, unit), series_key(metric, labels)
    refusal = writer.resolve([given, key])[given]
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
    # Bytes that are not UTF-8 are kept as surrogates: the line that holds them is refused
    # with its number (its value or timestamp cannot be read), the others are loaded.
    if input_file == "-":
        stream: Any = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape",
                                       newline="")
    else:
        try:
            stream = Path(input_file).open(encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as exc:
            raise IngestError(f"cannot read {input_file}: {exc.strerror}") from None
    try:
        with stream, db.connection(db.resolve_dsn(dsn)) as conn:
            stored, duplicates, errors = ingest_file(conn, stream, metric, unit, label_map)
    except (psycopg.DataError, UnicodeEncodeError) as exc:  # NUL or lone surrogates in a name
        raise IngestError(f"metric {metric!r}, its unit or its labels cannot be stored: "
                          f"{str(exc).strip()}") from None
    for row, reason in errors[:1000]:
        click.echo(f"refused line {row}: {reason}" if row is not None else f"refused: {reason}", err=True)
    if len(errors) > 1000:
        click.echo(f"... and {len(errors) - 1000} more refused lines", err=True)
    note = f" ({duplicates} batches were already stored)" if duplicates else ""
    click.echo(f"stored {stored} values of {metric}, refused {len(errors)}{note}")
    if errors:
        sys.exit(1)
