"""``vbgateway serve``: the /v1 HTTP API on uvicorn, over one database file.

One process only: the gateway holds the database (and its journal) for as
long as it runs, and its group commits rely on one event loop. Access logs
are the API's own JSON lines on stderr (uvicorn's access log is off: it
would print query strings).

``run_app`` is how the server runs an app; ``benchmarks/bench_api.py`` calls
it too, so what is measured is what is deployed.

SIGTERM and SIGINT stop it: uvicorn finishes the requests in flight, then
the gateway closes (every reply applied to DuckDB, checkpointed, side files
removed) and the process exits with status 0. uvicorn hands the signal back
once it has shut down; ``_exit_on_stop_signals`` makes that a normal exit, so
the ``with`` around the gateway closes it (the default SIGTERM action would
end the process on the spot).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ..client.service import read_secret_file
from ..gateway import Gateway
from ..gc_tuning import SERVING_GC, tune_gc
from . import service as service_command
from .basics import DEFAULT_DB
from .service import IdleStop, breaker_policy, remove_own_service_file

__all__ = ["cors_origin", "register", "run_app", "serve"]

def run_app(app: Any, *, host: str, port: int, log_level: str) -> None:
    """Serve ``app`` with uvicorn (uvloop and httptools when installed) until interrupted."""
    import uvicorn

    tune_gc(SERVING_GC)  # see gc_tuning.py: at the defaults, full collections paused the server 0.2-0.3 s
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                loop="auto", http="auto", server_header=False)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop(signum: int, frame: FrameType | None) -> None:
    """A stop signal: unwind to ``serve`` (closing the gateway on the way); later ones wait for that close."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(0)


@contextmanager
def _exit_on_stop_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the process by a normal exit, before, during (through uvicorn) and after serving."""
    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("vbgateway.api.access", "vbgateway.api.errors"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def serve(args: argparse.Namespace) -> int:
    from ..api import create_app

    _configure_logging(args.log_level)
    secret = read_secret_file(args.operator_secret_file) if args.operator_secret_file else None
    try:
        with _exit_on_stop_signals(), Gateway.open(args.db, breaker=args.breaker) as gw:
            app: Any = create_app(gw, cors_origins=args.cors_origin, operator_secret=secret or None)
            if args.idle_minutes:
                app = IdleStop(app, gw.clock, args.idle_minutes * 60)
            print(f"vbgateway: serving {args.db} on http://{args.host}:{args.port} (docs: /docs)", file=sys.stderr)
            run_app(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        remove_own_service_file(args.service_file)  # after the gateway closed: the database is complete
    return 0


def cors_origin(value: str) -> str:
    """An origin as a browser sends it: ``scheme://host[:port]``, nothing after (a trailing ``/`` is dropped)."""
    origin = value.strip().removesuffix("/").lower()  # browsers send scheme and host in lower case
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
        raise argparse.ArgumentTypeError(f"{value!r} is not an origin like https://ops.example.com or http://host:8080")
    return origin


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("serve", help="run the /v1 HTTP API over a database")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="level of the JSON request log on stderr (default info)")
    parser.add_argument("--cors-origin", action="append", default=[], type=cors_origin, metavar="URL",
                        help="also let browser pages from this origin call the API, e.g. https://ops.example.com "
                             "(repeatable; any http(s)://localhost port is always allowed)")
    parser.add_argument("--operator-secret-file", metavar="FILE",
                        help="also serve /v1/operator (seeding, minting keys) to requests carrying this file's secret "
                             "in X-Operator-Secret")
    parser.add_argument("--idle-minutes", type=float, default=0,
                        help="stop (closing the database) after this long without a request (default: never)")
    parser.add_argument("--breaker", nargs="?", const="{}", default=None, type=breaker_policy, metavar="JSON",
                        help="a circuit breaker per provider; alone: the default policy, or its fields as JSON, e.g. "
                             "'{\"failure_threshold\": 3, \"cooldown_s\": 60}' (docs/gateway.md, Circuit breakers)"),
    parser.add_argument("--service-file", metavar="FILE",
                        help="the local service's file (vbgateway service), removed when this server stops")
    parser.set_defaults(func=serve)
    service_command.register(sub)
