"""1,000 alerts through a local webhook that fails half the time.

1,000 targets of one rule breach at once: perfmon.analyze() raises 1,000 alerts
and queues 1,000 webhook messages in the same transaction. Two `pgperfmon
deliver` workers (the same code the in-database worker runs) send them to an
HTTP receiver on 127.0.0.1 that answers 500 to every other request. Retries
back off from 0.05 s. Printed: how many distinct messages arrived, duplicates,
refusals, attempts, and the time from queueing to the last delivery.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from alert_servers import http_receiver

from common import bench_cluster, fresh_database
from pgperfmon import alerting

ALERTS = 1000
WORKERS = 2


def main() -> None:
    with bench_cluster() as cluster, http_receiver() as rx:
        rx.fail_every_other = True
        dsn = fresh_database(cluster, "bench_delivery")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for key, value in {"alerting.channels.webhook.enabled": True,
                               "alerting.retry_base_seconds": 0.05, "alerting.retry_max_seconds": 1,
                               "alerting.max_delivery_attempts": 20}.items():
                conn.execute("UPDATE perfmon.config SET value = %s WHERE key = %s", (Jsonb(value), key))
            conn.execute("CREATE TABLE gauge (target text PRIMARY KEY, v float8)")
            conn.execute("INSERT INTO gauge SELECT 'svc' || g, 85 FROM generate_series(1, %s) g", (ALERTS,))
            conn.execute("""INSERT INTO perfmon.alert_rules (name, metric, unit, query, warning_threshold,
                                business_impact, affected_systems, recommended_actions, description)
                            VALUES ('bench', 'bench.load_pct', 'pct',
                                    'SELECT target, v, NULL, NULL FROM public.gauge', 70, 'bench', '{bench}',
                                    'none', 'benchmark rule')""")
            start = time.monotonic()
            conn.execute("SELECT perfmon.analyze()")
            raised = time.monotonic() - start
            queued = conn.execute("SELECT count(*) FROM perfmon.alert_outbox").fetchone()[0]
            env = {"PGPERFMON_WEBHOOK_URL": rx.url, "PGPERFMON_WEBHOOK_SIGNING_KEY": "bench-key"}

            def worker(n: int) -> None:
                with psycopg.connect(dsn) as wconn:
                    while True:
                        alerting.deliver_due(wconn, f"bench-{n}", env=env)
                        left = wconn.execute("SELECT count(*) FROM perfmon.alert_outbox "
                                             "WHERE status = 'pending'").fetchone()[0]
                        wconn.commit()
                        if left == 0:
                            return
                        time.sleep(0.02)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - start
            status = dict(conn.execute("SELECT status, count(*) FROM perfmon.alert_outbox GROUP BY status"))
            attempts = conn.execute("SELECT count(*), max(attempt) FROM perfmon.delivery_log").fetchone()
        ids = rx.message_ids()
        print(f"{queued} alerts raised and queued by perfmon.analyze() in {raised:.2f} s")
        print(f"webhook failing every other request; {WORKERS} workers; retry base 0.05 s")
        print(f"received {len(ids)} messages, {len(set(ids))} distinct, "
              f"{len(ids) - len(set(ids))} duplicates, "
              f"{rx.refused} refused (HTTP 500); outbox {status}; {attempts[0]} attempts logged, "
              f"at most {attempts[1]} for one message")
        exactly_once = len(ids) == len(set(ids)) == queued == ALERTS
        print(f"all delivered exactly once: {exactly_once}; "
              f"queued -> last delivered: {elapsed:.2f} s ({queued / elapsed:.0f} messages/s)")


if __name__ == "__main__":
    main()
