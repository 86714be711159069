"""Run the virtual loop's asyncio selftest on this interpreter with the standard library alone.

    PYTHONPATH=<checkout> python -S tests/scripts/asyncio_adapter_check.py

``-S`` keeps site-packages off the path, so nothing but the standard library
and the checkout can be imported. vbgateway's ``__init__`` needs pandas and
DuckDB, so the package is registered without running it and only the loop's
modules (clock, virtual_loop, asyncio_internals, asyncio_selftest, errors)
are loaded from it. Prints one JSON line: the selftest's report plus the
modules of the package that were loaded, or the error; exits 1 on failure.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types


def load_selftest() -> types.ModuleType:
    spec = importlib.util.find_spec("vbgateway")  # locates the package on PYTHONPATH without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("vbgateway not found: set PYTHONPATH to the checkout")
    package = types.ModuleType("vbgateway")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["vbgateway"] = package
    from vbgateway import asyncio_selftest

    return asyncio_selftest


def main() -> int:
    asyncio_selftest = load_selftest()
    try:
        report = asyncio_selftest.selftest()
    except Exception as exc:  # report any failure as data for the test to show
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return 1
    report["modules"] = sorted(name for name in sys.modules if name.startswith("vbgateway"))
    report["site_packages_on_path"] = any("site-packages" in entry for entry in sys.path)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
