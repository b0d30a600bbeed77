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
