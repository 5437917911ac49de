"""The image's lock (requirements.prod.lock): runtime dependencies only, at the versions of
the development lock (requirements.lock) that the tests ran with."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(file_name: str) -> dict[str, str]:
    text = (ROOT / file_name).read_text(encoding="utf-8")
    return {_normalise(name): version for name, version in PIN_RE.findall(text)}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for r in requirements}


def _project() -> dict[str, object]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert isinstance(project, dict)
    return project


def test_the_production_lock_has_no_development_tool() -> None:
    prod = _pins("requirements.prod.lock")
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    dev = _requirement_names(extras["dev"])
    assert dev & set(prod) == set()
    for tool in ("pytest", "ruff", "mypy", "import-linter", "pytest-asyncio", "pyyaml"):
        assert tool not in prod


def test_every_runtime_dependency_is_pinned_as_in_the_development_lock() -> None:
    prod = _pins("requirements.prod.lock")
    dev = _pins("requirements.lock")
    dependencies = _project()["dependencies"]
    assert isinstance(dependencies, list)
    assert _requirement_names(dependencies) <= set(prod)
    assert {name: (version, dev.get(name)) for name, version in prod.items()} == {
        name: (version, version) for name, version in prod.items()
    }


def test_every_pin_carries_hashes() -> None:
    text = (ROOT / "requirements.prod.lock").read_text(encoding="utf-8")
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if PIN_RE.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
