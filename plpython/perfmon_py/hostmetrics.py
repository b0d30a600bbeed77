"""Host metrics from psutil, shared by the in-database sampler (perfmon.sample_host())
and `pgperfmon agent`.

``sample(previous)`` reads the host once and returns the points of this sample,
``(metric, labels, value)`` with the metric names of the catalog
(``perfmon.metrics``), and the counters to pass as ``previous`` next time.
Cumulative counters (CPU time, disk and network I/O) become rates per second
over the time since the previous sample; a counter that went backwards (a
reboot, a device re-attached, a wrapped counter) gives no rate for that key,
never a negative value or a spike. The first sample has no rates.

psutil is imported when sampling, so that this module imports without it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

Point = tuple[str, dict[str, str], float]

# Bounds: a host with thousands of interfaces (containers) or mounts must not
# turn one sample into thousands of series.
MAX_MOUNTS = 64
MAX_DEVICES = 64
MAX_INTERFACES = 64
# Block devices that are not storage worth watching.
_SKIP_DEVICE_PREFIXES = ("loop", "ram", "fd", "sr")


def label(value: str) -> str:
    """``value`` as valid UTF-8 text for a label (and the jsonb it is stored in).

    psutil decodes a mount point or device name that is not UTF-8 with surrogateescape
    ("/mnt/caf\\udce9"), which jsonb refuses: every sample of the host would fail. Its
    bytes are kept readable as escapes ("/mnt/caf\\xe9") instead.
    """
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def hostname() -> str:
    return label(socket.gethostname())


def postmaster_of(backend_pid: int, started_at: float | None = None) -> int | None:
    """The postmaster's pid when ``backend_pid`` is a PostgreSQL backend on this host.

    ``started_at`` (epoch seconds of pg_postmaster_start_time()) confirms it is
    the same server and not a local process that happens to have that pid.
    """
    import psutil

    try:
        parent = psutil.Process(backend_pid).parent()
        if parent is None or not parent.name().startswith(("postgres", "postmaster")):
            return None
        if started_at is not None and abs(parent.create_time() - started_at) > 5:
            return None
        return parent.pid
    except (psutil.Error, OSError):
        return None


def _rates(cur: list[float], prev: list[float] | None, elapsed: float) -> list[float] | None:
    """Per-second rates of counters, or None for a baseline or a counter that went back."""
    if prev is None or elapsed <= 0 or len(prev) != len(cur):
        return None
    deltas = [c - p for c, p in zip(cur, prev, strict=True)]
    if any(d < 0 for d in deltas):
        return None
    return [d / elapsed for d in deltas]


def _cpu(psutil: Any, prev: dict | None, add: Any) -> dict:
    times = psutil.cpu_times()._asdict()
    if prev and set(prev) == set(times):
        d = {k: times[k] - prev[k] for k in times}
        # guest time is already counted in user time on Linux.
        total = sum(d.values()) - d.get("guest", 0.0) - d.get("guest_nice", 0.0)
        if total > 0 and all(v >= 0 for v in d.values()):
            idle = d.get("idle", 0.0) + d.get("iowait", 0.0)
            add("host.cpu.total_pct", 100.0 * (total - idle) / total)
            add("host.cpu.user_pct", 100.0 * (d.get("user", 0.0) + d.get("nice", 0.0)) / total)
            add("host.cpu.system_pct", 100.0 * (d.get("system", 0.0) + d.get("irq", 0.0)
                                                + d.get("softirq", 0.0)) / total)
            add("host.cpu.iowait_pct", 100.0 * d.get("iowait", 0.0) / total)
            add("host.cpu.steal_pct", 100.0 * d.get("steal", 0.0) / total)
    add("host.cpu.count", psutil.cpu_count() or 0)
    return times


def _mounts(psutil: Any) -> list[str]:
    seen: list[str] = []
    try:
        parts = psutil.disk_partitions(all=False)
    except OSError:
        parts = []
    for part in parts:
        if part.mountpoint not in seen:
            seen.append(part.mountpoint)
    if not seen:  # in a container the root is often an overlay that all=False leaves out
        seen.append("/")
    return seen[:MAX_MOUNTS]


def _storage_devices(names: list[str]) -> list[str]:
    """Whole disks (not partitions) where the OS says which is which."""
    try:
        whole = set(os.listdir("/sys/block"))
    except OSError:
        whole = set(names)
    keep = [n for n in names if n in whole and not n.startswith(_SKIP_DEVICE_PREFIXES)]
    return sorted(keep)[:MAX_DEVICES]


def _postgres(psutil: Any, pid: int, prev: dict | None, elapsed: float, add: Any) -> dict | None:
    try:
        postmaster = psutil.Process(pid)
        # Exited backends' CPU is in the postmaster's children_* times once it reaps
        # them, so the total only grows while the postmaster lives.
        t = postmaster.cpu_times()
        cpu_s = t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        procs = [postmaster, *postmaster.children()]
    except (psutil.Error, OSError):
        return None
    private = 0
    shared_max = 0
    count = 0
    for proc in procs:
        try:
            mem = proc.memory_info()
            if proc is not postmaster:
                ct = proc.cpu_times()
                cpu_s += ct.user + ct.system
        except (psutil.Error, OSError):
            continue  # exited while we looked
        count += 1
        shared = getattr(mem, "shared", 0)
        private += mem.rss - shared
        shared_max = max(shared_max, shared)
    if prev and prev.get("pid") == pid and elapsed > 0 and cpu_s >= prev.get("cpu_s", cpu_s + 1):
        add("host.postgres.cpu_pct", 100.0 * (cpu_s - prev["cpu_s"]) / elapsed)
    add("host.postgres.rss_bytes", private + shared_max)
    add("host.postgres.processes", count)
    return {"pid": pid, "cpu_s": cpu_s}


def sample(
    previous: dict | None,
    *,
    host: str | None = None,
    postmaster_pid: int | None = None,
    now: float | None = None,
) -> tuple[list[Point], dict]:
    """One sample of the host: (points, counters to pass as ``previous`` next time)."""
    import psutil

    now = time.time() if now is None else now
    host = host or hostname()
    prev = previous or {}
    elapsed = now - prev["t"] if "t" in prev else 0.0
    points: list[Point] = []

    def add(metric: str, value: float, **labels: str) -> None:
        points.append((metric, {"host": host, **{k: label(v) for k, v in labels.items()}}, float(value)))

    state: dict[str, Any] = {"t": now}
    state["cpu"] = _cpu(psutil, prev.get("cpu") if elapsed > 0 else None, add)

    load1, load5, load15 = psutil.getloadavg()
    add("host.load.1m", load1)
    add("host.load.5m", load5)
    add("host.load.15m", load15)

    vm = psutil.virtual_memory()
    add("host.memory.used_pct", 100.0 * (vm.total - vm.available) / vm.total if vm.total else 0.0)
    add("host.memory.available_bytes", vm.available)
    add("host.memory.total_bytes", vm.total)
    swap = psutil.swap_memory()
    add("host.swap.used_pct", swap.percent)
    add("host.swap.used_bytes", swap.used)

    for mount in _mounts(psutil):
        try:
            usage = psutil.disk_usage(mount)
        except OSError:
            continue
        add("host.disk.used_bytes", usage.used, mount=mount)
        add("host.disk.total_bytes", usage.total, mount=mount)
        add("host.disk.used_pct", usage.percent, mount=mount)

    disks = psutil.disk_io_counters(perdisk=True) or {}
    state["disk"] = {}
    prev_disk = prev.get("disk", {})
    for name in _storage_devices(list(disks)):
        c = disks[name]
        name = label(name)  # the state is stored as jsonb too
        cur = [c.read_bytes, c.write_bytes, c.read_count, c.write_count, getattr(c, "busy_time", 0)]
        state["disk"][name] = cur
        r = _rates(cur, prev_disk.get(name), elapsed)
        if r is None:
            continue
        add("host.diskio.read_bytes_per_s", r[0], device=name)
        add("host.diskio.write_bytes_per_s", r[1], device=name)
        add("host.diskio.read_iops", r[2], device=name)
        add("host.diskio.write_iops", r[3], device=name)
        if hasattr(c, "busy_time"):  # milliseconds busy per second -> percent
            add("host.diskio.busy_pct", min(100.0, r[4] / 10.0), device=name)

    nics = psutil.net_io_counters(pernic=True) or {}
    state["net"] = {}
    prev_net = prev.get("net", {})
    for name in sorted(nics)[:MAX_INTERFACES]:
        c = nics[name]
        name = label(name)
        cur = [c.bytes_recv, c.bytes_sent, c.packets_recv, c.packets_sent,
               c.errin + c.errout, c.dropin + c.dropout]
        state["net"][name] = cur
        r = _rates(cur, prev_net.get(name), elapsed)
        if r is None:
            continue
        add("host.net.recv_bytes_per_s", r[0], interface=name)
        add("host.net.sent_bytes_per_s", r[1], interface=name)
        add("host.net.recv_packets_per_s", r[2], interface=name)
        add("host.net.sent_packets_per_s", r[3], interface=name)
        add("host.net.errors", round(r[4] * elapsed), interface=name)
        add("host.net.drops", round(r[5] * elapsed), interface=name)

    if postmaster_pid:
        pg = _postgres(psutil, postmaster_pid, prev.get("pg"), elapsed, add)
        if pg is not None:
            state["pg"] = pg
    return points, state


# --------------------------------------------------------------------------- in the server

def sample_in_database(plpy: Any, gd: dict) -> dict:
    """perfmon.sample_host(): sample this server's host and store it through the ingest path."""
    try:
        import psutil  # noqa: F401
    except Exception as exc:  # the server's Python lacks psutil: say so, do not fail the job
        return {"skipped": f"psutil cannot be imported in the server's Python: {exc}"}
    host = hostname()
    plans = gd.setdefault("perfmon_hostmetrics_plans", {})
    if not plans:
        plans["load"] = plpy.prepare("SELECT state FROM perfmon.state_host WHERE host = $1", ["text"])
        plans["save"] = plpy.prepare(
            "INSERT INTO perfmon.state_host (host, state) VALUES ($1, $2::jsonb) "
            "ON CONFLICT (host) DO UPDATE SET state = EXCLUDED.state", ["text", "text"])
        plans["series"] = plpy.prepare(
            "SELECT ord, series_id, refused FROM perfmon.ingest_series($1, $2::jsonb[])",
            ["text[]", "text[]"])
    rows = plpy.execute(plans["load"], [host])
    previous = json.loads(rows[0]["state"]) if rows else None
    points, state = sample(previous, host=host, postmaster_pid=os.getppid())
    plpy.execute(plans["save"], [host, json.dumps(state)])
    if not points:
        return {"host": host, "stored": 0}

    cache: dict[tuple[str, str], int] = gd.setdefault("perfmon_hostmetrics_series", {})
    keys = [(m, json.dumps(labels, sort_keys=True)) for m, labels, _v in points]
    missing = sorted({k for k in keys if k not in cache})
    refused: list[str] = []
    if missing:
        for row in plpy.execute(plans["series"], [[k[0] for k in missing], [k[1] for k in missing]]):
            if row["refused"] is None:
                cache[missing[row["ord"] - 1]] = row["series_id"]
            else:
                refused.append(f"{missing[row['ord'] - 1][0]}: {row['refused']}")
    ids = [cache.get(k) for k in keys]
    plpy.execute("SELECT perfmon.ingest_open()")
    if "stage" not in plans:  # the staging table exists only now
        plans["stage"] = plpy.prepare(
            "INSERT INTO pg_temp.perfmon_ingest (seq, series_id, ts, value) "
            "SELECT g, s, to_timestamp($3), v FROM unnest($1, $2) WITH ORDINALITY AS u(s, v, g)",
            ["int[]", "float8[]", "float8"])
    kept = [(i, p[2]) for p, i in zip(points, ids, strict=True) if i is not None]
    plpy.execute(plans["stage"], [[i for i, _v in kept], [v for _i, v in kept], state["t"]])
    result = json.loads(plpy.execute(
        "SELECT perfmon.ingest_batch(gen_random_uuid(), 'in-database sampler')::text AS r")[0]["r"])
    if result["refused"] and any("unknown series" in e["reason"] for e in result["errors"]):
        cache.clear()  # the dictionary was rebuilt under us: resolve again next time
    return {"host": host, "stored": result["stored"],
            "refused": result["refused"] + len(refused),
            "errors": refused + [e["reason"] for e in result["errors"]]}
