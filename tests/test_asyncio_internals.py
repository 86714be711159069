"""Specification of the guard around asyncio's private API: the virtual loop runs only on a
Python whose asyncio was verified (or that the user names as trusted), says so clearly
otherwise, and its selftest passes on every verified interpreter found on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

import vbgateway
from vbgateway import GatewayError, SystemClock, VirtualClock
from vbgateway.asyncio_internals import TRUST_ENV, VERIFIED_PYTHONS, UnsupportedPythonError, check_python
from vbgateway.asyncio_selftest import CHECKS
from vbgateway.virtual_loop import VirtualLoop

CHECKOUT = Path(vbgateway.__file__).resolve().parents[1]
CHECK_SCRIPT = CHECKOUT / "tests" / "scripts" / "asyncio_adapter_check.py"
LOOP_MODULES = {"vbgateway", "vbgateway.asyncio_internals", "vbgateway.asyncio_selftest", "vbgateway.clock",
                "vbgateway.errors", "vbgateway.virtual_loop"}
FakeVersion = namedtuple("FakeVersion", "major minor micro releaselevel serial")


# --- the version check ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERIFIED_PYTHONS, ids=lambda v: f"{v[0]}.{v[1]}")
def test_every_verified_python_is_accepted_without_any_setting(version: tuple[int, int]) -> None:
    check_python(version, environ={})


@pytest.mark.parametrize("version", [(3, 10), (3, 14), (4, 0)], ids=lambda v: f"{v[0]}.{v[1]}")
def test_an_unknown_python_is_refused_with_a_coded_error_that_says_what_to_do(version: tuple[int, int]) -> None:
    with pytest.raises(UnsupportedPythonError) as info:
        check_python(version, environ={})
    error = info.value
    assert isinstance(error, GatewayError) and error.code == "UNSUPPORTED_PYTHON"
    text = f"{version[0]}.{version[1]}"
    assert f"Python {text}" in error.message and "3.11, 3.12, 3.13" in error.message
    assert f"{TRUST_ENV}={text}" in error.message and "python -m vbgateway.asyncio_selftest" in error.message
    assert error.details == {"python": text, "verified": ["3.11", "3.12", "3.13"], "trustEnv": TRUST_ENV}


def test_the_trust_setting_admits_exactly_the_version_it_names() -> None:
    check_python((3, 14), environ={TRUST_ENV: "3.14"})
    for setting in ["3.15", "3.1", "1", "yes", "3.14.0", ""]:
        with pytest.raises(UnsupportedPythonError):
            check_python((3, 14), environ={TRUST_ENV: setting})


@pytest.fixture
def unknown_python(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    monkeypatch.setattr(sys, "version_info", FakeVersion(3, 99, 0, "final", 0))
    return "3.99"


def test_a_virtual_clock_refuses_to_run_on_an_unknown_python_and_stays_where_it_was(unknown_python: str) -> None:
    clock = VirtualClock()
    coro = clock.sleep(5)
    with pytest.raises(UnsupportedPythonError, match=r"Python 3\.99"):
        clock.run(coro)
    coro.close()
    assert clock.monotonic() == 0.0


def test_the_trust_setting_lets_a_virtual_clock_run_on_the_python_it_names(
        unknown_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUST_ENV, unknown_python)
    clock = VirtualClock()
    clock.run(clock.sleep(5))
    assert clock.monotonic() == 5.0


def test_real_time_does_not_depend_on_asyncio_internals(unknown_python: str) -> None:
    async def answer() -> int:
        await SystemClock().sleep(0)
        return 42

    assert SystemClock().run(answer()) == 42


def test_a_loop_whose_asyncio_lacks_an_internal_is_refused_naming_it() -> None:
    class LoopOnAnAsyncioWithoutProcessEvents(VirtualLoop):
        _process_events = None

    with pytest.raises(UnsupportedPythonError) as info:
        LoopOnAnAsyncioWithoutProcessEvents(VirtualClock())
    assert info.value.details["missing"] == ["BaseEventLoop._process_events"]


# --- the selftest on every verified interpreter here -------------------------------------------


def _interpreters_of(major: int, minor: int) -> list[Path]:
    """The distribution's, pyenv's and uv's builds of one Python version on this machine (and the running one)."""
    name = f"python{major}.{minor}"
    candidates = [Path("/usr/bin") / name, Path("/usr/local/bin") / name]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates += sorted(pyenv.glob(f"{major}.{minor}.*/bin/{name}"))
    uv = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local" / "share" / "uv" / "python")
    candidates += sorted(uv.glob(f"cpython-{major}.{minor}.*/bin/{name}"))
    if sys.version_info[:2] == (major, minor):
        candidates.append(Path(sys.executable))  # last: a venv's python is named by the build it links to
    found: dict[str, Path] = {}
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            found.setdefault(os.path.realpath(path), path)
    return list(found.values())


def _interpreter_params() -> list:
    params = []
    for major, minor in VERIFIED_PYTHONS:
        version = f"{major}.{minor}"
        paths = _interpreters_of(major, minor)
        params += [pytest.param(version, path, id=f"{version}:{path}") for path in paths]
        if not paths:
            params.append(pytest.param(version, None, id=f"{version}:absent", marks=pytest.mark.skip(
                reason=f"no Python {version} here (looked in /usr/bin, /usr/local/bin, pyenv and uv)")))
    return params


@pytest.mark.parametrize(("version", "python"), _interpreter_params())
def test_the_selftest_passes_with_the_standard_library_alone_on(version: str, python: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    env.pop(TRUST_ENV, None)
    done = subprocess.run([str(python), "-S", str(CHECK_SCRIPT)], env=env, cwd=CHECKOUT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["python"].startswith(version + ".")
    assert report["passed"] == list(CHECKS)
    assert report["verified"] is True and report["trusted"] is True
    assert report["site_packages_on_path"] is False
    assert set(report["modules"]) <= LOOP_MODULES


def test_the_running_interpreter_is_among_those_checked() -> None:
    running = os.path.realpath(sys.executable)
    checked = {os.path.realpath(param.values[1]) for param in _interpreter_params() if param.values[1] is not None}
    assert running in checked


def test_the_selftest_command_prints_its_report() -> None:
    done = subprocess.run([sys.executable, "-m", "vbgateway.asyncio_selftest"], cwd=CHECKOUT, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(CHECKOUT)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] == list(CHECKS) and report["verified"] is True
