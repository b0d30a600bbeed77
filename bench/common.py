"""Shared set-up for the benchmarks: a throwaway embedded cluster with pgperfmon installed.

Benchmarks print their figures; they assert nothing. Ratios are against a
baseline measured in the same run, since these machines are noisy.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from pgperfmon import config, deploy, embedded


@contextmanager
def bench_cluster(settings: dict[str, str] | None = None) -> Iterator[embedded.Cluster]:
    home = Path(tempfile.mkdtemp(prefix="pgpm-bench-"))
    cluster = embedded.Cluster(home, settings=settings)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def fresh_database(cluster: embedded.Cluster, name: str, install: bool = True) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = cluster.dsn(name)
    if install:
        deploy.install(dsn, config.load(None, env={}))
    return dsn


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p95": p95, "min": ordered[0],
            "max": ordered[-1]}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
