"""Host facts PostgreSQL cannot see from SQL: disk space of a folder, RAM, CPUs."""

from __future__ import annotations

import os
import shutil
from typing import Any


def capacity(folder: str) -> dict[str, Any]:
    """Total and free bytes of the file system holding `folder`, RAM bytes, CPU count."""
    out: dict[str, Any] = {"disk_total_bytes": None, "disk_free_bytes": None,
                           "ram_bytes": None, "cpu_count": os.cpu_count()}
    try:
        usage = shutil.disk_usage(folder)
        # What an unprivileged writer (the server) can still use: f_bavail, not f_bfree.
        out["disk_total_bytes"], out["disk_free_bytes"] = usage.total, usage.free
    except OSError:
        pass
    try:
        out["ram_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return out
