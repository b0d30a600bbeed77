"""The shipped anomaly detectors on labelled series outside ../shared: a held-out check.

Nothing is chosen here. Each detector runs with the settings it ships with, through
`pgperfmon anomalies backtest` on a throwaway cluster (the production path, walk-forward),
and its flags are scored by the rule of ../shared/tools/nab_score.py - its own score()
function, pointed at a temporary copy of the series in its layout (15% warm-up,
one-hour cooldown, event-level F1, micro-averaged).

    python3 bench/anomaly_heldout.py --windows WINDOWS.json PATH [PATH ...]
                                     [--detector envelope ...] [--sensitivity medium]

PATH is a series in NAB's format (timestamp,value; other columns, such as the 'label'
of older NAB releases, are dropped before the detector sees the file) or a folder of
them. With a clone of https://github.com/numenta/NAB, the run quoted in
docs/anomalies.md is

    python3 bench/anomaly_heldout.py --windows NAB/labels/combined_windows.json \
        NAB/data/realTraffic NAB/data/realAdExchange NAB/data/artificialWithAnomaly \
        NAB/data/realKnownCause/ec2_request_latency_system_failure.csv \
        NAB/data/realKnownCause/ambient_temperature_system_failure.csv \
        NAB/data/realKnownCause/machine_temperature_system_failure.csv \
        NAB/data/realKnownCause/cpu_utilization_asg_misconfiguration.csv \
        NAB/data/realKnownCause/rogue_agent_key_hold.csv \
        NAB/data/realKnownCause/rogue_agent_key_updown.csv \
        NAB/data/realKnownCause/nyc_taxi.csv \
        NAB/data/realTweets/Twitter_volume_AAPL.csv \
        NAB/data/realTweets/Twitter_volume_GOOG.csv \
        NAB/data/realTweets/Twitter_volume_IBM.csv

then, once, the seven tweet series fetched after that was written,

    python3 bench/anomaly_heldout.py --windows NAB/labels/combined_windows.json \
        NAB/data/realTweets/Twitter_volume_{AMZN,CRM,CVS,FB,KO,PFE,UPS}.csv

and, for false alarms alone (NAB labels no window in these series),

    python3 bench/anomaly_heldout.py --windows NAB/labels/combined_windows.json \
        NAB/data/artificialNoAnomaly

WINDOWS.json maps a series -
its file name, or NAB's 'category/name.csv' - to its labelled windows, as NAB's
combined_windows.json does. A series without an entry there is reported and left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from anomaly_nab import DETECTORS, cli_backtest, load_scorer, per_file  # noqa: E402

from common import bench_cluster, fresh_database  # noqa: E402


def collect(paths: list[Path], windows_file: Path, here: Path) -> tuple[list[Path], dict[str, list]]:
    """Copy each labelled series to here/data as timestamp,value and write here/windows.json:
    nab_score.py's layout. Returns the copies and their windows."""
    for path in [*paths, windows_file]:
        if not path.exists():
            sys.exit(f"{path}: no such file or folder")
    labelled = {Path(k).name: v for k, v in json.loads(windows_file.read_text()).items()}
    (here / "data").mkdir(parents=True)
    windows, inputs = {}, []
    for file in sorted(f for p in paths for f in (p.glob("*.csv") if p.is_dir() else [p])):
        if file.name not in labelled:
            print(f"-- {file}: no windows in {windows_file}, left out")
            continue
        if file.name in windows:
            sys.exit(f"{file}: a second series named {file.name}")
        with file.open(newline="") as src, (here / "data" / file.name).open("w", newline="") as dst:
            out = csv.writer(dst)
            out.writerow(["timestamp", "value"])
            out.writerows([row["timestamp"], row["value"]] for row in csv.DictReader(src))
        windows[file.name] = labelled[file.name]
        inputs.append(here / "data" / file.name)
    (here / "windows.json").write_text(json.dumps(windows))
    return inputs, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--windows", required=True, type=Path, help="NAB-style windows JSON")
    parser.add_argument("--detector", action="append", choices=DETECTORS)
    parser.add_argument("--sensitivity", default="medium", choices=("low", "medium", "high"))
    args = parser.parse_args()
    here = Path(tempfile.mkdtemp(prefix="pgpm-heldout-"))
    inputs, windows = collect(args.paths, args.windows, here)
    if not inputs:
        sys.exit("no labelled series found")
    nab = load_scorer()
    nab.HERE = str(here)
    names = [p.name for p in inputs]
    print(f"== {len(inputs)} series, {sum(len(w) for w in windows.values())} labelled windows, "
          "shipped settings (nothing chosen on these series)")
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "heldout")
        for detector in args.detector or ["envelope", "envelope_sql"]:
            out = here / f"flags_{detector}.csv"
            elapsed = cli_backtest(dsn, detector, args.sensitivity, inputs, out)
            flags: dict[str, list[str]] = {}
            for row in csv.DictReader(out.open()):
                flags.setdefault(row["file"], []).append(row["timestamp"])
            print(f"-- {detector}, sensitivity {args.sensitivity}: backtested in {elapsed:.1f} s")
            print(f"   {detector:>16}  {nab.score({f: [nab.ts(t) for t in v] for f, v in flags.items()})}")
            counts = per_file(nab, {name: len(w) for name, w in windows.items()}, flags, names)
            for name, (tp, fp, fn) in counts.items():
                print(f"   {name:44} tp={tp} fp={fp} fn={fn}")

if __name__ == "__main__":
    main()
