"""The package boundaries of docs/architecture.md, read from the code: imports run `ui → mimicsafe → ownership`.

Every module's imports are read with `ast` (nothing is imported), including imports inside functions,
so a late `import gradio` in a service is caught as surely as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each package must never import (top-level module names).
FORBIDDEN = {
    "ownership": {"mimicsafe", "ui", "gradio", "sqlalchemy", "torch", "diffusers", "transformers", "peft",
                  "accelerate"},
    "mimicsafe": {"ui", "gradio"},
}


def imported_modules(path: Path, package: str) -> set[str]:
    """Top-level names of every module `path` imports, relative imports resolved to `package`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(package if node.level else (node.module or "").split(".")[0])
    return names


def violations(package: str, root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for name in sorted(imported_modules(path, package) & FORBIDDEN[package]):
            found.append(f"{path.relative_to(root)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The reader above is what the rule rests on: it must see imports at any depth and relative ones."""
    module = tmp_path / "ownership" / "deep" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("def late():\n    import gradio.routes\n    from mimicsafe.db import models\n"
                      "    from . import sibling\n")
    assert imported_modules(module, "ownership") == {"gradio", "mimicsafe", "ownership"}
    assert violations("ownership", tmp_path) == ["ownership/deep/probe.py imports gradio",
                                                 "ownership/deep/probe.py imports mimicsafe"]


def test_docs_do_not_point_outside_the_repository() -> None:
    """A clone has README.md and docs/; the team's workshop folder beside the repository is not in it."""
    pages = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert [p.name for p in pages if "../shared" in p.read_text(encoding="utf-8")] == []
