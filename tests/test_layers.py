"""Data flows one way (DESIGN.md): the core imports neither Lightning glue nor callbacks, and
``callbacks`` never imports ``lightning_modules`` (which imports callbacks), so there is no import
cycle between the two. Checked on the source, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

RULES = [  # (folder, top-level packages it must not import)
    ("callbacks", ("lightning_modules",)),
    ("src/smoothcert", ("lightning_modules", "callbacks", "pytorch_lightning", "hydra")),
]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("folder", "forbidden"), RULES)
def test_no_package_imports_one_above_it(folder, forbidden):
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported(path) & set(forbidden)) for path in files
    }
    assert {path: names for path, names in offenders.items() if names} == {}
