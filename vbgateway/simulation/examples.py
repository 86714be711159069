"""The example scenarios shipped inside the package, found by name.

``vbgateway simulate normal_week`` and ``load_scenario("vendor_a_outage")``
work from any working directory and from an installed wheel, because the
files live in ``vbgateway/simulation/scenarios/`` (package data).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXAMPLES_DIR", "example_names", "example_path", "looks_like_name"]

EXAMPLES_DIR = Path(__file__).resolve().parent / "scenarios"
_SUFFIXES = (".yaml", ".yml", ".json")


def example_names() -> list[str]:
    """Names of the shipped example scenarios, sorted (none if the folder is missing: the CLI still starts)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.stem for p in EXAMPLES_DIR.iterdir() if p.suffix in _SUFFIXES)


def looks_like_name(source: str) -> bool:
    """A bare word (no folder, no file extension): meant as an example's name rather than a path."""
    path = Path(source)
    return bool(source) and path.name == source and not path.suffix and not path.exists()


def example_path(name: str) -> Path:
    """The file of the example scenario ``name``; an unknown name is refused with the list of known ones."""
    from .scenario import ScenarioError

    for suffix in _SUFFIXES:
        path = EXAMPLES_DIR / f"{name}{suffix}"
        if path.is_file():
            return path
    known = example_names()
    raise ScenarioError(f"no example scenario named {name!r} (known: {', '.join(known)}); "
                        "or give the path of a YAML or JSON file",
                        code="SCENARIO_NOT_FOUND", details={"name": name, "known": known})
