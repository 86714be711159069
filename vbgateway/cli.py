"""The ``vbgateway`` command: a thin layer over the library.

Subcommands live in ``vbgateway.commands`` (one module each, listed in
``COMMANDS``). Errors reach the user as one line with their code and a
non-zero exit, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import GatewayError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("basics", "serve", "simulate", "report", "export", "lake", "keys", "budget", "providers", "scenario",
            "replay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vbgateway", description="VocalBridge Ops gateway workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"vbgateway.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GatewayError as exc:
        print(f"vbgateway: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"vbgateway: OS_ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vbgateway: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
