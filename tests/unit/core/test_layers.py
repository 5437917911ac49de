"""The layers between the engine (``orchestrator``) and the domain (``workflows``).

``make lint`` enforces them with import-linter; these tests keep its contracts complete and
the public surface explicit (like httpx's test of its exported members).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import orchestrator

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "src" / "orchestrator"


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    return {c["name"]: c for c in contracts}


def test_every_private_engine_module_is_forbidden_to_the_domain() -> None:
    contract = _contracts()[
        "The domain uses only the engine's public API, never the queue or the pool"
    ]
    forbidden = set(contract["forbidden_modules"])  # type: ignore[call-overload]
    private = {
        f"orchestrator.{path.stem}"
        for path in ENGINE.glob("_*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    private |= {
        f"orchestrator.{path.name}"
        for path in ENGINE.glob("_*/")
        if (path / "__init__.py").is_file()
    }
    private -= {"orchestrator.__pycache__"}
    assert private - forbidden == set()


def test_public_names_are_exactly_all() -> None:
    public = {name for name in vars(orchestrator) if not name.startswith("_")}
    exported = set(orchestrator.__all__)
    assert sorted(exported) == sorted(set(exported)), "duplicates in __all__"
    assert exported <= public
    # every public attribute is exported, except the private modules' package attributes
    # Python sets when a submodule is imported (none of them lacks a leading underscore)
    modules = {name for name in public if name in {"procrastinate_app"}}
    assert public - exported - modules == set()


def test_all_is_sorted() -> None:
    assert list(orchestrator.__all__) == sorted(orchestrator.__all__)


def test_engine_sources_never_import_the_domain() -> None:
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.startswith("workflows.") else []
            else:
                continue
            for name in names:
                assert name.split(".")[0] != "workflows", f"{path}: {name}"
