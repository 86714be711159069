"""Whether another process still runs: one answer for the store's readers and the local service.

The store's file hand-over records readers' pids, and the notebooks' local
service records its own; both must tell a live process from one that is gone.
A zombie (finished, not yet reaped by its starter) counts as gone: a service
started by a kernel that never waits for it stays a zombie after it stops.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_alive"]


def process_alive(pid: int) -> bool:
    """Is ``pid`` a running process (a zombie is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: the signal test is all we have
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
