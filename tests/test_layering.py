"""The package's layering, as the README states it, checked on every import statement in cyclegan/
(module level and inside functions): ops <- nn <- model <- inference <- callbacks <- cli, data stands
alone, and the base modules (checkpoint files, setting errors) import nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cyclegan"
# Each layer may import itself and the layers listed before it; base modules may be imported by all.
LAYERS = ("ops", "nn", "model", "inference", "callbacks", "cli")
BASE = ("checkpoint_files", "errors")


def imported_parts(path: Path) -> set[str]:
    """The cyclegan subpackages and base modules that ``path`` imports (``cyclegan.X...`` -> ``X``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("cyclegan."):
                parts.add(name.split(".")[1])
    return parts


def allowed(part: str) -> set[str]:
    if part in BASE:
        return set()
    if part == "data":
        return {"data", *BASE}
    if part == "conf":
        return set()
    index = LAYERS.index(part)
    lower = set(LAYERS[: index + 1])
    # inference and the layers above it may read data (image decoding, domain names); model and below may not
    return lower | set(BASE) | ({"data"} if index >= LAYERS.index("inference") else set())


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE or path.stem in BASE)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    wrong = imported_parts(path) - allowed(part) - {part}
    assert not wrong, f"cyclegan/{path.relative_to(PACKAGE)} ({part}) imports from {sorted(wrong)}"


def test_every_layer_is_a_package_and_the_checker_sees_imports() -> None:
    assert all((PACKAGE / layer / "__init__.py").is_file() for layer in (*LAYERS, "data"))
    assert "model" in imported_parts(PACKAGE / "callbacks" / "run_checkpoint.py")
    assert allowed("model") == {"ops", "nn", "model", *BASE}
