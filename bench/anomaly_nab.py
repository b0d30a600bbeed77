"""NAB evaluation of the in-database anomaly detectors, on the production path.

For each detector: `pgperfmon anomalies backtest` loads the 17 NAB AWS series of
../shared/datasets/nab-aws into the metric store of a throwaway cluster and scores
them walk-forward inside the database; ../shared/tools/nab_score.py scores the
flags (15% warm-up, one-hour cooldown, event-level F1) and prints the detectors
published with NAB beside them.

    python3 bench/anomaly_nab.py [--detector NAME ...] [--sensitivity medium]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "datasets" / "nab-aws" / "data"
SCORER = SHARED / "tools" / "nab_score.py"
sys.path.insert(0, str(REPO / "installer"))
sys.path.insert(0, str(REPO / "bench"))

from common import bench_cluster, fresh_database  # noqa: E402

DETECTORS = ("envelope", "envelope_sql", "robust_zscore", "isolation_forest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", action="append", choices=DETECTORS)
    parser.add_argument("--sensitivity", default="medium", choices=("low", "medium", "high"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="pgpm-nab-")))
    args = parser.parse_args()
    detectors = args.detector or list(DETECTORS)
    inputs = sorted(DATA.glob("*.csv"))
    args.out.mkdir(exist_ok=True)
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "nab")
        for detector in detectors:
            flags = args.out / f"nab_flags_{detector}_{args.sensitivity}.csv"
            cmd = [sys.executable, "-m", "pgperfmon", "anomalies", "backtest", "--dsn", dsn,
                   "--detector", detector, "--sensitivity", args.sensitivity,
                   "--anomalies-only", "--output", str(flags)]
            for file in inputs:
                cmd += ["--input", str(file)]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL,
                           env={"PYTHONPATH": str(REPO / "installer"), "PATH": "/usr/bin:/bin"})
            elapsed = time.perf_counter() - start
            print(f"== detector {detector}, sensitivity {args.sensitivity}: "
                  f"{len(inputs)} series backtested in {elapsed:.1f} s; flags in {flags}")
            scored = subprocess.run([sys.executable, str(SCORER), str(flags)], check=True,
                                    capture_output=True, text=True).stdout.splitlines()
            # This detector's line, then the published ones once.
            print(scored[0].replace("this detector", detector))
        print("== detectors published with NAB, same series, same rule")
        print("\n".join(scored[1:]))


if __name__ == "__main__":
    main()
