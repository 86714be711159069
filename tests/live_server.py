"""A real uvicorn server on loopback, in a daemon thread: what `vbgateway serve` runs, minus the process.

``LiveServer`` serves one ASGI app. ``GatewayHost`` is one such server that
serves many gateways at once, each under a path prefix of its own
(``http://127.0.0.1:PORT/g3``), so that every test can have its own gateway
over its own DuckDB file without paying for a server start and stop each.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import threading
import time
from typing import Any

import httpx
import uvicorn

__all__ = ["GatewayHost", "LiveServer", "free_port", "wait_until_serving"]


def free_port() -> int:
    """A loopback port nothing listens on now (for a ``vbgateway serve`` started as a process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Wait until the server ``process`` started answers ``GET url/health``; fail if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/health", timeout=5)
            return
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "vbgateway serve did not come up"
            time.sleep(0.05)


class LiveServer:
    """uvicorn on 127.0.0.1, on a port the OS picked (or on the Unix socket ``uds``), in a daemon thread."""

    def __init__(self, app: object, *, uds: str | None = None) -> None:
        if uds is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(uds)
            self.port = 0
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", backlog=256)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


class GatewayHost:
    """One live server, many apps: each mounted under ``/gN`` and seen by it as the whole server."""

    def __init__(self) -> None:
        self._apps: dict[str, Any] = {}
        self._numbers = itertools.count(1)
        self._server = LiveServer(self)

    def __enter__(self) -> GatewayHost:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    def mount(self, app: Any) -> str:
        prefix = f"/g{next(self._numbers)}"
        self._apps[prefix] = app
        return self._server.url + prefix

    def unmount(self, url: str) -> None:
        self._apps.pop(url.removeprefix(self._server.url), None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        prefix = "/" + path.split("/", 2)[1] if path.startswith("/g") else ""
        app = self._apps.get(prefix)
        if app is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        raw = scope.get("raw_path")
        inner = {**scope, "path": path[len(prefix):] or "/",
                 "raw_path": raw[len(prefix):] if isinstance(raw, bytes) else raw}
        await app(inner, receive, send)
