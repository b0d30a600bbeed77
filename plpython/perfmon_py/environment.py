"""What the server's Python can do: the facts behind `pgperfmon status`."""

from __future__ import annotations

import importlib
import sys
from typing import Any

# Import name -> the name a DBA knows the package by.
PACKAGES = {"numpy": "numpy", "sklearn": "scikit-learn", "psutil": "psutil"}


def describe() -> dict[str, Any]:
    packages: dict[str, dict[str, str | None]] = {}
    for module_name, label in PACKAGES.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import failure is a fact to report, not a crash
            packages[label] = {"version": None, "error": f"{type(exc).__name__}: {exc}"}
        else:
            packages[label] = {"version": getattr(module, "__version__", "unknown"), "error": None}
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "packages": packages,
    }


# What the isolation forest's training imports (perfmon_py.anomaly.fit_iforest).
FOREST_TRAINING_MODULES = ("sklearn.ensemble", "sklearn.preprocessing")


def import_error(module_names: tuple[str, ...] | list[str]) -> str | None:
    """Why the first of the modules that cannot be imported cannot (None when all can)."""
    for name in module_names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken build raises ValueError, AttributeError ... too
            return f"{type(exc).__name__}: {exc}"
    return None


def detector_packages_missing(failed_imports: dict[str, str] | None = None) -> dict[str, str]:
    """The packages the PL/Python detectors need that the server's Python lacks, with why:
    numpy (every one of them: scoring and training) and scikit-learn (the isolation forest's
    training). numpy is imported, as scoring imports it anyway; scikit-learn is only looked
    up (importlib.util.find_spec) here, since importing it would cost every scoring run (a
    fresh backend each interval under pg_cron) about as much again as the scoring. Whether it
    imports is tried where it is imported anyway, by the training (perfmon.anomaly_python_probe()),
    and failed_imports (package -> why) is what that found: a scikit-learn that is found but
    fails to import (built for another numpy, a broken dependency) counts as missing too."""
    import importlib.util

    missing: dict[str, str] = {}
    try:
        importlib.import_module("numpy")
    except Exception as exc:  # any import failure means the detectors cannot run
        missing["numpy"] = f"{type(exc).__name__}: {exc}"
    try:
        found = importlib.util.find_spec("sklearn") is not None
    except (ImportError, ValueError) as exc:
        missing["scikit-learn"] = f"{type(exc).__name__}: {exc}"
    else:
        if not found:
            missing["scikit-learn"] = "ModuleNotFoundError: No module named 'sklearn'"
        elif "scikit-learn" in (failed_imports or {}):
            missing["scikit-learn"] = failed_imports["scikit-learn"]
    return missing
