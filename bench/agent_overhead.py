"""The agent's own cost: CPU at a 10-second interval, and memory over an hour of running.

1. CPU: `pgperfmon agent --interval 10` runs as a process of its own (logged in as a
   perfmon_agent login) for 5 minutes after a 15 s warm-up; its CPU seconds
   (user + system, psutil) over that time, as a percentage of one core.
   Target (issue 4): <= 1% of one core.
2. Memory: an hour at 10 s is 360 samples. The same Agent object takes 360 samples and
   writes each through its spool and the ingest path, without sleeping (each sample is
   time-stamped 10 s after the previous); RSS is read every 60 iterations.
   Target: flat, not growing.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil
from agent_common import agent_login_dsn

from common import bench_cluster, fresh_database
from pgperfmon.agent import Agent

CPU_SECONDS = 300
WARMUP = 15


def cpu_share(agent_dsn: str, spool: str) -> tuple[float, float, int]:
    proc = subprocess.Popen([sys.executable, "-m", "pgperfmon", "agent", "--dsn", agent_dsn,
                             "--interval", "10", "--spool-dir", spool, "--host", "bench-cpu"],
                            stderr=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    time.sleep(WARMUP)
    t0, c0 = time.monotonic(), watched.cpu_times()
    time.sleep(CPU_SECONDS)
    t1, c1 = time.monotonic(), watched.cpu_times()
    rss = watched.memory_info().rss
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    used = (c1.user + c1.system) - (c0.user + c0.system)
    return 100.0 * used / (t1 - t0), used, rss


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "agent_bench")
        agent_dsn = agent_login_dsn(dsn)
        with tempfile.TemporaryDirectory() as spool:
            pct, used, rss = cpu_share(agent_dsn, spool)
        print(f"CPU at --interval 10 over {CPU_SECONDS} s: {used:.2f} CPU s = {pct:.3f}% of one core "
              f"(target <= 1%); RSS {rss / 2**20:.1f} MiB")

        with tempfile.TemporaryDirectory() as spool:
            agent = Agent(agent_dsn, interval=10, spool_dir=spool, host="bench-memory")
            me = psutil.Process(os.getpid())
            start = time.time()
            marks = []
            t0 = time.perf_counter()
            for i in range(1, 361):
                agent.sample_once(now=start + i * 10)
                agent.flush()
                if i % 60 == 0:
                    gc.collect()
                    marks.append((i, me.memory_info().rss))
            elapsed = time.perf_counter() - t0
            assert agent.spool.pending == 0 and agent.sent == 360, (agent.spool.pending, agent.sent)
        print(f"simulated hour: 360 samples sampled, spooled and stored in {elapsed:.1f} s "
              f"({elapsed / 360 * 1000:.1f} ms each)")
        print("RSS after samples: " + ", ".join(f"{i}: {rss / 2**20:.1f} MiB" for i, rss in marks))
        growth = (marks[-1][1] - marks[0][1]) / 2**20
        print(f"RSS growth from sample 60 to 360: {growth:+.2f} MiB (target: flat)")


if __name__ == "__main__":
    main()
