"""``vbgateway service start|stop|status --db``: the local gateway service the notebooks share.

``start`` finds the database's running service or starts one (detached, on a
free loopback port, with ``--breaker`` as ``serve`` takes it) and prints its
URL and breaker policy; ``stop`` stops it (the database is
left complete); ``status`` says whether one runs. See
``vbgateway.client.service`` for who starts and stops it and the files
next to the database.

Also here: what ``vbgateway serve`` does when it runs as that service
(``--service-file``, ``--idle-minutes``): stop by itself after a quiet spell,
and remove its service file when it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pydantic

from ..client.service import DEFAULT_IDLE_MINUTES, ensure_service, find_service, stop_service
from ..clock import Clock, wait_real
from ..governance.breaker import BreakerPolicy
from .basics import DEFAULT_DB

__all__ = ["IdleStop", "breaker_policy", "register", "remove_own_service_file"]

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class IdleStop:
    """ASGI wrapper: notes each request's time; a watcher thread sends SIGTERM after ``idle_s`` without one.

    SIGTERM takes the server's normal way out (requests in flight finish, the
    gateway closes), so an idle stop leaves the same complete database as
    ``vbgateway service stop``.
    """

    def __init__(self, app: Any, clock: Clock, idle_s: float) -> None:
        self.app, self.clock, self.idle_s = app, clock, idle_s
        self.last = clock.monotonic()
        self.active = 0
        threading.Thread(target=self._watch, name="vbgateway-idle-stop", daemon=True).start()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self.last = self.clock.monotonic()

    def _watch(self) -> None:
        while True:
            wait_real(min(30.0, max(self.idle_s / 4, 0.05)))
            if self.active == 0 and self.clock.monotonic() - self.last >= self.idle_s:
                os.kill(os.getpid(), signal.SIGTERM)
                return


def remove_own_service_file(path: str | None) -> None:
    """Remove the service file if it names this process (a newer service may have replaced it)."""
    if not path:
        return
    try:
        if json.loads(Path(path).read_text(encoding="utf-8")).get("pid") == os.getpid():
            Path(path).unlink(missing_ok=True)
    except (OSError, ValueError, AttributeError):
        pass


def breaker_policy(value: str) -> BreakerPolicy:
    """``--breaker '{"failure_threshold": 3}'``: a ``BreakerPolicy`` from JSON fields (``{}``: the defaults)."""
    try:
        return BreakerPolicy.model_validate_json(value)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors()[:3])
        raise argparse.ArgumentTypeError(f"not a breaker policy ({problems})") from exc


def _breaker_text(breaker: str | None) -> str:
    return f"circuit breakers {breaker}" if breaker is not None else "no circuit breakers"


def service(args: argparse.Namespace) -> int:
    if args.action == "start":
        info = ensure_service(args.db, idle_minutes=args.idle_minutes, breaker=args.breaker)
        print(f"vbgateway: the service of {args.db} runs at {info.url} (pid {info.pid}, since {info.started_at}) "
              f"with {_breaker_text(info.breaker)}")
        if args.breaker is not None and info.breaker != args.breaker.model_dump_json():
            print(f"vbgateway: it was started before, with {_breaker_text(info.breaker)}, not the --breaker "
                  "asked for; `vbgateway service stop` first to change them")
            return 1
    elif args.action == "stop":
        stopped = stop_service(args.db)
        print(f"vbgateway: stopped the service of {args.db} (pid {stopped.pid}); the database is complete"
              if stopped else f"vbgateway: no service runs for {args.db}")
    else:
        found = find_service(args.db)
        print(f"vbgateway: the service of {args.db} runs at {found.url} (pid {found.pid})" if found
              else f"vbgateway: no service runs for {args.db}")
        return 0 if found else 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("service", help="start, stop or check the local service the notebooks share")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES,
                        help="a started service stops after this long without a request "
                             f"(default {DEFAULT_IDLE_MINUTES})")
    parser.add_argument("--breaker", nargs="?", const="{}", default=None, type=breaker_policy, metavar="JSON",
                        help="start: the service has a circuit breaker per provider, as `vbgateway serve --breaker` "
                             "(a service already running keeps its own)")
    parser.set_defaults(func=service)
