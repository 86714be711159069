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
6. Whoever closes last removes ``<db>.readers`` and ``<db>.handoff/``, so a
   database nobody holds is the plain DuckDB file: the writer when it closes
   holding its exclusive lock, a reader when it can take that lock as it
   leaves. ``<db>.readers`` is unlinked only under an exclusive lock, and
   whoever gets a lock checks that the path still names the file it locked
   (or opens the new one and locks again), so no two processes ever hold
   locks on different files; the request folder goes only when it is empty.

All waits here are in real time: they coordinate processes, not gateway time.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..clock import real_deadline, real_time_left, wait_real
from ..errors import DatabaseBusyError
from ..processes import process_alive

__all__ = ["ReaderLease", "WriterLease"]

POLL_S = 0.02


def _paths(db_path: Path) -> tuple[Path, Path]:
    return Path(str(db_path) + ".readers"), Path(str(db_path) + ".handoff")


def _open_lock_file(lock_path: Path) -> int:
    return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)


def _is_current(fd: int, lock_path: Path) -> bool:
    """True when ``lock_path`` still names the file open as ``fd`` (a closing holder may have unlinked it)."""
    try:
        return os.fstat(fd).st_ino == os.stat(lock_path).st_ino
    except FileNotFoundError:
        return False


def _remove_files(lock_path: Path, requests: Path) -> None:
    """Remove the request folder if no one is asking, then the lock file (caller holds it exclusively)."""
    try:
        requests.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return  # a reader is asking: it goes on with the lock file (any one) and removes both as it leaves
    lock_path.unlink(missing_ok=True)


class WriterLease:
    """The writer's side: exclusive while it holds the file, released to readers on request."""

    def __init__(self, db_path: Path, wait_s: float) -> None:
        self._lock_path, self._requests = _paths(db_path)
        self._requests.mkdir(exist_ok=True)
        self._fd = _open_lock_file(self._lock_path)
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
            if process_alive(pid):
                return True
            (self._requests / name).unlink(missing_ok=True)
        return False

    def acquire(self, wait_s: float, *, ignore_requests: bool = False) -> None:
        """Take the exclusive lock once readers are done; DatabaseBusyError after ``wait_s``."""
        deadline = real_deadline(wait_s)
        while True:
            if (ignore_requests or not self.requested()) and self.try_acquire():
                return
            if real_time_left(deadline) <= 0:
                raise DatabaseBusyError("the database is lent to a reader (a report?) that has not finished",
                                        details={"waitedSeconds": wait_s})
            wait_real(POLL_S)

    def try_acquire(self) -> bool:
        """Take the exclusive lock now if no reader holds the file."""
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if _is_current(self._fd, self._lock_path):
                self.held = True
                return True
            os.close(self._fd)  # a reader that left last removed it: lock the file now at that path
            self._fd = _open_lock_file(self._lock_path)

    def release(self) -> None:
        if self.held:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.held = False

    def close(self, *, remove_files: bool = False) -> None:
        """Let go; with ``remove_files`` (a clean close, lock held) also remove the lock file and request folder."""
        try:
            if remove_files and self.held:
                _remove_files(self._lock_path, self._requests)
        finally:
            self.release()
            os.close(self._fd)


class ReaderLease:
    """The reader's side: ask, then hold a shared lock while reading."""

    def __init__(self, db_path: Path, wait_s: float) -> None:
        self._lock_path, self._requests = _paths(db_path)
        self._request = self._requests / f"{os.getpid()}.{id(self)}"
        while True:  # the folder may vanish in between: its last user removes it as it leaves
            self._requests.mkdir(exist_ok=True)
            try:
                self._request.touch()
                break
            except FileNotFoundError:
                continue
        self._fd = _open_lock_file(self._lock_path)
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
                if _is_current(self._fd, self._lock_path):
                    return
                os.close(self._fd)  # the writer removed it as it closed: lock the file now at that path
                self._fd = _open_lock_file(self._lock_path)
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
        """Withdraw the request; the last one out (no writer holding, no other reader) removes the side files."""
        self._request.unlink(missing_ok=True)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # someone else holds the file: they remove them
            else:
                if _is_current(self._fd, self._lock_path):
                    _remove_files(self._lock_path, self._requests)
        finally:
            os.close(self._fd)  # closing the descriptor drops whichever lock it held
