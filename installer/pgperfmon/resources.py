"""The one loader for the SQL, PL/Python and config files that ship with pgperfmon.

In a source checkout they live at the top of the repository; in an installed
wheel they are packaged under ``pgperfmon/_resources``.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

_PACKAGED = Path(__file__).resolve().parent / "_resources"
_CHECKOUT = Path(__file__).resolve().parents[2]


@cache
def root() -> Path:
    """The folder holding ``sql/``, ``plpython/`` and ``config/``."""
    for candidate in (_PACKAGED, _CHECKOUT):
        if (candidate / "sql" / "migrations").is_dir():
            return candidate
    raise FileNotFoundError(
        f"pgperfmon's SQL sources are missing: looked in {_PACKAGED} and {_CHECKOUT}"
    )


def path(*parts: str) -> Path:
    return root().joinpath(*parts)


@cache
def sql(name: str) -> str:
    """Text of ``sql/<name>.sql``, e.g. ``sql("status/jobs")``."""
    return path("sql", f"{name}.sql").read_text(encoding="utf-8")


def default_config_file() -> Path:
    return path("config", "performance_monitoring.yml")


def plpython_module(name: str) -> ModuleType:
    """``perfmon_py.<name>`` from plpython/: code the package shares with the server's."""
    folder = str(path("plpython"))
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(f"perfmon_py.{name}")
