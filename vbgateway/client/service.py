"""The local gateway service: one ``vbgateway serve`` per database, shared by every notebook kernel.

A DuckDB file (and its journal) belongs to one process at a time. So that
several kernels can work on one database at once, the first one that needs
it starts a detached ``vbgateway serve`` on a free loopback port and writes
where it is to ``<db>.service.json`` (url, pid, started_at, breaker; mode 0600);
every later kernel finds that file and talks to the same service over HTTP.

Who starts and stops it:

- ``ensure_service(db)`` (called by ``open_workbench`` and ``vbgateway
  service start``) reuses the service the file names when its process lives
  and ``/health`` answers; otherwise (no file, dead pid, no answer) it starts
  a new one and replaces the file. A lock file serialises two kernels
  starting at once, so only one service is ever started.
- The service is its own process group: a kernel that starts it and dies (or
  is restarted) takes nothing with it, and no kernel ever waits on another.
- It stops on ``vbgateway service stop --db <db>`` (``stop_service``), on
  SIGTERM, or by itself after ``idle_minutes`` without a request (60 by
  default). Stopping closes the gateway (every reply applied, checkpointed),
  removes the service file, and leaves a complete database.

Operator actions (seeding, minting a key) need the operator secret: a random
token in ``<db>.operator`` (mode 0600, created with the service) that the
service reads at start and every client reads from the file, so only the
database's owner can use them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..clock import SystemClock, real_deadline, real_time_left, wait_real
from ..errors import GatewayError
from ..processes import process_alive

if TYPE_CHECKING:
    from ..governance.breaker import BreakerPolicy

__all__ = ["DEFAULT_IDLE_MINUTES", "ServiceInfo", "ensure_service", "find_service", "operator_secret",
           "operator_secret_path", "read_secret_file", "service_file_path", "stop_service", "write_private"]

DEFAULT_IDLE_MINUTES = 60
START_TIMEOUT_S = 60.0
_STARTED: list[subprocess.Popen[bytes]] = []
STOP_TIMEOUT_S = 60.0


def service_file_path(db: str | Path) -> Path:
    return Path(f"{Path(db).resolve()}.service.json")


def operator_secret_path(db: str | Path) -> Path:
    return Path(f"{Path(db).resolve()}.operator")


def _lock_path(db: str | Path) -> Path:
    return Path(f"{Path(db).resolve()}.service.lock")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (0600), replacing it whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def read_secret_file(path: str | Path) -> str:
    """A secret from a file only its owner can read; one that others could read is refused, not used."""
    path = Path(path)
    if path.stat().st_mode & 0o077:
        raise GatewayError(f"{path} can be read by other users: chmod 600 it (or delete it to get a new secret)",
                           code="OPERATOR_SECRET_EXPOSED", http_status=500)
    return path.read_text(encoding="utf-8").strip()


def operator_secret(db: str | Path, *, create: bool = False) -> str | None:
    """The database's operator secret (made when ``create`` and there is none)."""
    path = operator_secret_path(db)
    if path.exists():
        return read_secret_file(path) or None
    if not create:
        return None
    write_private(path, secrets.token_urlsafe(32))
    return read_secret_file(path)


@dataclass(frozen=True)
class ServiceInfo:
    """Where the database's service listens, which process it is, and its breaker policy (JSON; None: none)."""

    url: str
    pid: int
    started_at: str
    db: str
    breaker: str | None = None

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "pid": self.pid, "started_at": self.started_at, "db": self.db,
                           "breaker": self.breaker})


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _read(db: str | Path) -> ServiceInfo | None:
    try:
        data: dict[str, Any] = json.loads(service_file_path(db).read_text(encoding="utf-8"))
        breaker = data.get("breaker")
        return ServiceInfo(str(data["url"]), int(data["pid"]), str(data["started_at"]), str(data.get("db", "")),
                           breaker if isinstance(breaker, str) else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_service(db: str | Path) -> ServiceInfo | None:
    """The running service of ``db``, or None (no file, or it names a dead or silent process)."""
    info = _read(db)
    if info is None or info.db != str(Path(db).resolve()) or not process_alive(info.pid) or not _healthy(info.url):
        return None  # (a file copied along with a database names the original's service)
    return info


@contextlib.contextmanager
def _locked(db: str | Path) -> Iterator[None]:
    """One kernel at a time decides whether to start the service (the others then find it)."""
    path = _lock_path(db)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_service(db: str | Path, *, idle_minutes: float = DEFAULT_IDLE_MINUTES, breaker: BreakerPolicy | None = None,
                   timeout: float = START_TIMEOUT_S) -> ServiceInfo:
    """The database's running service, started (detached) when there is none.

    ``breaker``: the circuit breaker policy of a service this call starts. A
    running service keeps the one it was started with (``ServiceInfo.breaker``).
    """
    db_path = Path(db).resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    found = find_service(db_path)
    if found is not None:
        return found
    with _locked(db_path):
        found = find_service(db_path)  # another kernel may have started it while this one waited
        if found is not None:
            return found
        return _start(db_path, idle_minutes, None if breaker is None else breaker.model_dump_json(), timeout)


def _start(db: Path, idle_minutes: float, breaker: str | None, timeout: float) -> ServiceInfo:
    service_file_path(db).unlink(missing_ok=True)  # stale: names a dead or silent process
    secret_file = operator_secret_path(db)
    operator_secret(db, create=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(f"{db}.service.log")
    command = [sys.executable, "-m", "vbgateway.cli", "serve", "--db", str(db), "--port", str(port),
               "--log-level", "warning", "--operator-secret-file", str(secret_file),
               "--service-file", str(service_file_path(db)), "--idle-minutes", str(idle_minutes),
               *(["--breaker", breaker] if breaker is not None else [])]
    # the service runs this very vbgateway, also from a source checkout that is not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                      os.environ.get("PYTHONPATH", "")]))}
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                   start_new_session=True, close_fds=True)
    _STARTED.append(process)  # kept, so that no ResourceWarning says it still runs: it is meant to
    info = ServiceInfo(url, process.pid, SystemClock().now().isoformat(), str(db), breaker)
    deadline = real_deadline(timeout)
    while not _healthy(url, timeout=1.0):
        if process.poll() is not None or real_time_left(deadline) <= 0:
            if process.poll() is None:
                process.terminate()
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise GatewayError(f"the local service for {db} did not start; its log ({log_path}) ends with:\n{tail}",
                               code="SERVICE_UNAVAILABLE", http_status=503)
        wait_real(0.1)
    write_private(service_file_path(db), info.to_json())
    return info


def stop_service(db: str | Path, *, timeout: float = STOP_TIMEOUT_S) -> ServiceInfo | None:
    """Stop the database's service (SIGTERM: it closes the database completely); None when none ran."""
    info = _read(db)
    if info is None or not process_alive(info.pid):
        service_file_path(db).unlink(missing_ok=True)
        return None
    os.kill(info.pid, signal.SIGTERM)
    deadline = real_deadline(timeout)
    while process_alive(info.pid):
        if real_time_left(deadline) <= 0:
            raise GatewayError(f"the local service (pid {info.pid}) did not stop within {timeout:.0f} s",
                               code="SERVICE_UNAVAILABLE", http_status=503)
        wait_real(0.05)
    service_file_path(db).unlink(missing_ok=True)
    return info
