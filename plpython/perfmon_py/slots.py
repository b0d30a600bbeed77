"""Waiting inside a pg_cron job without holding back vacuum.

pg_cron 1.4 starts jobs on whole minutes, so work due more often waits inside its job
between runs. PL/pgSQL can only wait with pg_sleep(), and a PL/pgSQL procedure holds a
snapshot while it does (even across a nested CALL): the server-wide cleanup horizon then
lags by the whole wait, and the dead versions of hot rows cannot be pruned meanwhile.
With collect, analyze and the host sampler each waiting 10 s at a time, pgbench lost 16%
of its TPS in bench/soak.py. Python sleeps between queries, after plpy.commit(), with no
snapshot at all, provided each transaction ends before the wait: after plpy.commit() the
next query's snapshot lasts until the next commit.
"""

from __future__ import annotations

import time

CHECK_S = 0.2  # a wait looks this often for a cancel or a shutdown request
RAISED = "P0001"  # raise_exception: what PL/pgSQL's RAISE EXCEPTION gives, for the same callers


def nap(plpy, seconds: float) -> None:
    """Sleep without a snapshot, between transactions: it commits. A cancel or a server
    shutdown ends it within CHECK_S: time.sleep() does not see PostgreSQL's interrupts, the
    empty query between naps does. That query's snapshot lasts until the next commit (a
    procedure's statements share one), so each is committed at once."""
    plpy.commit()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(CHECK_S, left))
        plpy.execute("SELECT")
        plpy.commit()


def run_every_interval(plpy, command: str, interval_s: int) -> int:
    """Run command at every interval_s slot of the current minute, each run in its own
    transaction; a slot missed by an overrunning run is skipped, not bunched up.
    A failing run costs its slot only: it is logged, and the call fails at the end so that
    pg_cron records the job as failed. Returns the number of runs."""
    if interval_s < 1 or 60 % interval_s:
        plpy.error(f"pgperfmon: interval {interval_s} s does not divide a minute", sqlstate=RAISED)
    minute_start = time.time() // 60 * 60
    runs = failures = 0
    last_error = ""
    for i in range(60 // interval_s):
        slot = minute_start + i * interval_s
        nap(plpy, slot - time.time())
        if time.time() >= slot + interval_s:
            continue
        plpy.commit()  # the run gets a fresh transaction, and now() is its slot's time
        runs += 1
        try:
            plpy.execute(command)
        except plpy.spiexceptions.QueryCanceled:
            raise  # a cancel or statement_timeout ends the job, as in PL/pgSQL
        except plpy.SPIError as exc:
            failures += 1
            last_error = str(exc)
            plpy.warning(f"pgperfmon: {command} failed in its {interval_s} s slot: {last_error}")
        plpy.commit()
    if failures:
        plpy.error(f"pgperfmon: {command} failed in {failures} of its {runs} slots this minute "
                   f"(every {interval_s} s): {last_error}", sqlstate=RAISED)
    return runs
