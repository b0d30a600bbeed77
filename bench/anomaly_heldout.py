"""The shipped anomaly detectors on labelled series outside ../shared: a held-out check.

Nothing is chosen here. Each detector runs with the settings it ships with, through
`pgperfmon anomalies backtest` on a throwaway cluster (the production path, walk-forward),
and its flags are scored by the rule of ../shared/tools/nab_score.py - its own score()
function, pointed at a temporary copy of the series in its layout (15% warm-up,
one-hour cooldown, event-level F1, micro-averaged).

    python3 bench/anomaly_heldout.py --windows WINDOWS.json PATH [PATH ...]
                                     [--detector envelope ...] [--sensitivity medium]

PATH is a series in NAB's format (timestamp,value; a third 'label' column of older NAB
releases is dropped before the detector sees the file) or a folder of them. With a
clone of https://github.com/numenta/NAB, the run quoted in docs/anomalies.md is

    python3 bench/anomaly_heldout.py --windows NAB/labels/combined_windows.json \
        NAB/data/realTraffic NAB/data/realAdExchange NAB/data/artificialWithAnomaly \
        NAB/data/realKnownCause/ec2_request_latency_system_failure.csv \
        NAB/data/realKnownCause/ambient_temperature_system_failure.csv

WINDOWS.json maps a series -
its file name, or NAB's 'category/name.csv' - to its labelled windows, as NAB's
combined_windows.json does. A series without an entry there is reported and left out.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCORER = REPO.parent / "shared" / "tools" / "nab_score.py"
sys.path.insert(0, str(REPO / "bench"))

from anomaly_nab import DETECTORS, cli_backtest  # noqa: E402

from common import bench_cluster, fresh_database  # noqa: E402


def scorer(here: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("nab_score", SCORER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = str(here)
    return module


def collect(paths: list[Path], windows_file: Path, here: Path) -> list[Path]:
    """Copy each labelled series to here/data as timestamp,value and write here/windows.json."""
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
    return inputs


def per_series(flags: dict[str, list[str]], here: Path, names: list[str]) -> None:
    """Each series scored alone: the scorer pointed at a layout holding only it."""
    windows = json.loads((here / "windows.json").read_text())
    for name in names:
        alone = here / "alone" / name
        if not alone.exists():
            (alone / "data").mkdir(parents=True)
            (alone / "data" / name).symlink_to(here / "data" / name)
            (alone / "windows.json").write_text(json.dumps({name: windows[name]}))
        nab = scorer(alone)
        line = nab.score({name: [nab.ts(t) for t in flags.get(name, [])]})
        print(f"   {name:44} {line.split(' precision')[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--windows", required=True, type=Path, help="NAB-style windows JSON")
    parser.add_argument("--detector", action="append", choices=DETECTORS)
    parser.add_argument("--sensitivity", default="medium", choices=("low", "medium", "high"))
    args = parser.parse_args()
    here = Path(tempfile.mkdtemp(prefix="pgpm-heldout-"))
    inputs = collect(args.paths, args.windows, here)
    if not inputs:
        sys.exit("no labelled series found")
    nab = scorer(here)
    windows = json.loads((here / "windows.json").read_text())
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
            per_series(flags, here, [p.name for p in inputs])


if __name__ == "__main__":
    main()
