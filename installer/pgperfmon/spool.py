"""The agent's spool: a bounded, append-only queue of batches on disk.

Every batch the agent samples is written here first (one JSON line, fsynced)
and removed only once the database has stored it, so nothing sampled is lost
while the database is unreachable or when the agent is stopped. Batches are
replayed oldest first; each carries its idempotency key, so a batch sent again
after a crash or a lost acknowledgement is stored once.

Layout: ``<folder>/<segment number>.jsonl``, a new segment every
``segment_bytes``. When the spool would exceed ``max_bytes`` the oldest segments
are dropped - the newest data is kept - and that is logged as an error and
counted in ``dropped``. When the disk under the spool is full (ENOSPC), the
batch being written is refused (``SpoolError``, counted in ``dropped``) and what
was written of it is cut off, so the segments keep whole lines only and every
batch spooled before stays readable. A segment deleted from outside (an operator,
a tmp cleaner) is lost: its unsent batches are counted in ``dropped`` and logged
as an error, and the spool carries on with the others; when the folder itself is
removed, the next append creates it again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("pgperfmon.spool")


class SpoolError(Exception):
    """The spool folder cannot be used; the text says why."""


@dataclass
class _Segment:
    number: int
    path: Path
    lines: int = 0
    size: int = 0
    acked: int = 0
    ack_offset: int = 0


class Spool:
    def __init__(self, folder: Path | str, max_bytes: int = 256 * 1024 * 1024,
                 segment_bytes: int = 1024 * 1024):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max(max_bytes // 4, 1))
        # batches dropped since start: the spool was full, or the database refused them for good
        self.dropped = 0
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._writer: Any = None  # open file of the last segment
        # Never reused, not even after the folder was emptied under us: a position the
        # flusher holds must not name a newer segment.
        self._next_number = 1
        self._make_folder()
        if not os.access(self.folder, os.W_OK):
            raise SpoolError(f"the spool folder {self.folder} is not writable")
        for path in sorted(self.folder.glob("*.jsonl")):
            if path.stem.isdigit():
                data = path.read_bytes()
                self._segments.append(_Segment(int(path.stem), path, data.count(b"\n"), len(data)))
        if self._segments:
            self._next_number = self._segments[-1].number + 1

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool folder {self.folder}: {exc.strerror}") from None

    # ------------------------------------------------------------------ facts
    @property
    def pending(self) -> int:
        """Batches not yet acknowledged."""
        with self._lock:
            return sum(s.lines - s.acked for s in self._segments)

    @property
    def size(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    # ------------------------------------------------------------------ writing
    def append(self, record: dict[str, Any]) -> None:
        """Write one batch durably (fsync) before it is sent anywhere.

        Raises SpoolError when it cannot be written (a full disk): the batch is lost,
        counted in ``dropped``; the batches spooled before it are intact.
        """
        line = (json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n").encode()
        with self._lock:
            self._check_files()
            self._make_room(len(line))
            seg = None
            try:
                seg = self._segments[-1] if self._writer is not None else None
                if seg is None or (seg.size + len(line) > self.segment_bytes and seg.lines):
                    seg = self._open_segment()
                written = 0
                while written < len(line):  # an unbuffered write may be partial
                    written += self._writer.write(line[written:])
                os.fsync(self._writer.fileno())
            except OSError as exc:
                if seg is not None and self._writer is not None:
                    # Cut the part of the line that made it: whole lines only, so the next
                    # batch does not run into a torn one.
                    os.ftruncate(self._writer.fileno(), seg.size)
                self.dropped += 1
                raise SpoolError(
                    f"cannot write to the spool folder {self.folder}: {exc.strerror}; this batch "
                    f"is lost ({self.dropped} since start), the batches spooled before it are kept"
                ) from exc
            seg.lines += 1
            seg.size += len(line)

    def _check_files(self) -> None:
        """Notice a folder or segment deleted under us, before writing into a deleted file."""
        folder_gone = not self.folder.is_dir()
        if folder_gone or (self._writer is not None and os.fstat(self._writer.fileno()).st_nlink == 0):
            for seg in [s for s in self._segments if not s.path.exists()]:
                self._lost(seg)
        if folder_gone:
            log.error("the spool folder %s was removed; creating it again", self.folder)
            self._make_folder()

    def _lost(self, seg: _Segment) -> None:
        """``seg``'s file was deleted from outside: what it held unsent is lost."""
        if seg is self._segments[-1] and self._writer is not None:
            self._writer.close()
            self._writer = None
        self._segments.remove(seg)
        lost = seg.lines - seg.acked
        self.dropped += lost
        log.error("SPOOL SEGMENT LOST: %s was deleted (not by pgperfmon); its %d unsent batches are "
                  "lost (%d dropped since start). The spool carries on with the others.",
                  seg.path, lost, self.dropped)

    def _open_segment(self) -> _Segment:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        number = self._next_number
        self._next_number += 1
        seg = _Segment(number, self.folder / f"{number:012d}.jsonl")
        # Unbuffered, kept open across appends: a failed write leaves nothing behind in a
        # buffer to be written (or to fail again) later.
        self._writer = open(seg.path, "ab", buffering=0)
        self._segments.append(seg)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name is durable too
        finally:
            os.close(dir_fd)
        return seg

    def _make_room(self, incoming: int) -> None:
        total = sum(s.size for s in self._segments)
        dropped_now = 0
        while self._segments and total + incoming > self.max_bytes:
            oldest = self._segments[0]
            if len(self._segments) == 1 and self._writer is not None:
                self._writer.close()
                self._writer = None
            self._segments.pop(0)
            oldest.path.unlink(missing_ok=True)
            total -= oldest.size
            dropped_now += oldest.lines - oldest.acked
        if dropped_now:
            self.dropped += dropped_now
            log.error(
                "SPOOL FULL: %s is at its limit of %d bytes; dropped the %d oldest unsent batches "
                "(%d dropped since start) to keep the newest. The database has been unreachable "
                "too long: restore it, or raise --spool-max-mb.",
                self.folder, self.max_bytes, dropped_now, self.dropped)

    # ------------------------------------------------------------------ reading
    def peek(self) -> tuple[tuple[int, int], dict[str, Any]] | None:
        """The oldest unacknowledged batch and its position, or None when all are sent."""
        with self._lock:
            while True:
                seg = next((s for s in self._segments if s.acked < s.lines), None)
                if seg is None:
                    self._drop_acked()
                    return None
                try:
                    with open(seg.path, "rb") as f:
                        f.seek(seg.ack_offset)
                        raw = f.readline()
                except FileNotFoundError:
                    self._lost(seg)
                    continue
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("torn line")
                    return (seg.number, seg.acked), json.loads(raw)
                except ValueError:
                    # A line torn by a crash mid-write: nothing of it can be sent.
                    log.warning("skipping an unreadable batch in %s", seg.path)
                    self._advance(seg, len(raw))

    def ack(self, position: tuple[int, int]) -> None:
        """The batch at ``position`` is stored: forget it (and its segment once all are)."""
        with self._lock:
            self._forget(position)

    def drop(self, position: tuple[int, int]) -> None:
        """The batch at ``position`` can never be stored: forget it, counted in ``dropped``."""
        with self._lock:
            if self._forget(position):
                self.dropped += 1

    def _forget(self, position: tuple[int, int]) -> bool:
        number, index = position
        seg = next((s for s in self._segments if s.number == number), None)
        if seg is None or seg.acked != index:
            return False  # dropped meanwhile (spool full), or acknowledged already
        try:
            with open(seg.path, "rb") as f:
                f.seek(seg.ack_offset)
                self._advance(seg, len(f.readline()))
        except FileNotFoundError:
            self._lost(seg)
            return False
        return True

    def _advance(self, seg: _Segment, nbytes: int) -> None:
        seg.acked += 1
        seg.ack_offset += nbytes
        self._drop_acked()

    def _drop_acked(self) -> None:
        for seg in [s for s in self._segments if s.acked >= s.lines and s.lines]:
            if seg is self._segments[-1] and self._writer is not None:
                self._writer.close()
                self._writer = None
            self._segments.remove(seg)
            seg.path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
