"""Lending the database file to readers in other processes.

DuckDB lets one process hold a file read-write, or several read-only, never
both. A report must still be able to run while a gateway process keeps
serving traffic, so the writing store lends the file on request:

1. While it holds the file, the writer holds an exclusive ``flock`` on
   ``<db>.readers``.
2. A reader drops a request file (named after its pid) into ``<db>.handoff/``
   and waits for a shared lock on ``<db>.readers``.
3. The writer's watcher thread sees the request, applies every pending
   journal record to DuckDB, closes its connection and unlocks: the reader
   now gets its shared lock and opens DuckDB read-only, seeing every reply
   committed before it asked.
4. Meanwhile replies keep committing to the journal (durable as ever); the
   writer reopens DuckDB once no reader holds the shared lock and no request
   is pending. Requests of processes that died are ignored.
5. A reader notes the journal's last committed sequence number before it
   asks, and accepts the file only once DuckDB has applied at least that far;
   a writer that lent the file and has committed since takes it back, applies
   and lends it again when a new request arrives.

All waits here are in real time: they coordinate processes, not gateway time.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..clock import real_deadline, real_time_left, wait_real
from ..errors import DatabaseBusyError

__all__ = ["ReaderLease", "WriterLease"]

POLL_S = 0.02


def _paths(db_path: Path) -> tuple[Path, Path]:
    return Path(str(db_path) + ".readers"), Path(str(db_path) + ".handoff")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLease:
    """The writer's side: exclusive while it holds the file, released to readers on request."""

    def __init__(self, db_path: Path, wait_s: float) -> None:
        self._lock_path, self._requests = _paths(db_path)
        self._requests.mkdir(exist_ok=True)
        self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False
        self.acquire(wait_s, ignore_requests=True)

    def requested(self) -> bool:
        """True when a live reader asks for the file (stale requests are removed)."""
        try:
            names = os.listdir(self._requests)
        except FileNotFoundError:
            return False
        for name in names:
            try:
                pid = int(name.split(".")[0])
            except ValueError:
                continue
            if _alive(pid):
                return True
            (self._requests / name).unlink(missing_ok=True)
        return False

    def acquire(self, wait_s: float, *, ignore_requests: bool = False) -> None:
        """Take the exclusive lock once readers are done; DatabaseBusyError after ``wait_s``."""
        deadline = real_deadline(wait_s)
        while True:
            if ignore_requests or not self.requested():
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self.held = True
                    return
                except BlockingIOError:
                    pass
            if real_time_left(deadline) <= 0:
                raise DatabaseBusyError("the database is lent to a reader (a report?) that has not finished",
                                        details={"waitedSeconds": wait_s})
            wait_real(POLL_S)

    def try_acquire(self) -> bool:
        """Take the exclusive lock now if no reader holds the file."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        return True

    def release(self) -> None:
        if self.held:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        self.release()
        os.close(self._fd)


class ReaderLease:
    """The reader's side: ask, then hold a shared lock while reading."""

    def __init__(self, db_path: Path, wait_s: float) -> None:
        lock_path, requests = _paths(db_path)
        requests.mkdir(exist_ok=True)
        self._request = requests / f"{os.getpid()}.{id(self)}"
        self._request.touch()
        self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._db_path = db_path
        self._deadline = real_deadline(wait_s)
        self._wait_s = wait_s
        try:
            self._lock_shared()
        except BaseException:
            self.close()
            raise

    def _lock_shared(self) -> None:
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if real_time_left(self._deadline) <= 0:
                    raise DatabaseBusyError(
                        f"the gateway holding {self._db_path} did not lend it within {self._wait_s:g}s",
                        details={"path": str(self._db_path)}) from None
                wait_real(POLL_S)

    def retry(self) -> None:
        """Give the file back and ask again: the snapshot was older than the reader needs."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        wait_real(POLL_S)
        self._lock_shared()

    def close(self) -> None:
        self._request.unlink(missing_ok=True)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
