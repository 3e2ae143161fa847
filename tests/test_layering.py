"""Data flows one way inside ``src/smoothcert`` (issue 22, DESIGN.md): no import cycle between its
parts, and the lower layers (statistics, noises, records, metrics) never reach up into the
certifiers. Checked on the source with ``ast``, imports inside functions included.

A *part* is a subpackage (``certifiers``, ``records``, ...) or a top-level module (``errors``,
``sampling``, ...). The package's ``__init__.py`` is the public facade above every part and is left
out. Arrows that still run the wrong way are listed in ``ALLOWED``, one per import with its reason,
so that a NEW such import fails; an entry no longer needed fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src" / "smoothcert"

# The rules, explicitly: part -> (kind, parts of smoothcert): it must not import those, or (ONLY)
# may import none but those.
ONLY = "may import only"
RULES = {
    "stats": (ONLY, {"errors"}),  # pure statistics: scipy/numpy/torch and errors only
    "noise": ("must not import", {"certifiers"}),
    "records": ("must not import", {"certifiers"}),
    "metrics": ("must not import", {"certifiers"}),
}

# Existing arrows that break the rules or close a cycle, kept until issue 22 removes them:
# (importing file under src/smoothcert, imported module) -> why it is still there.
ALLOWED = {
    # ABSTAIN (= -1) is defined by the classifier certifier; records only document the value.
    ("metrics/certified.py", "smoothcert.certifiers.classification"): "ABSTAIN constant",
    # Detection AP reuses the certified box-IoU bound and the output slot layout of the certifier.
    ("metrics/detection.py", "smoothcert.certifiers.median_boxes"): "worst_iou",
    ("metrics/detection.py", "smoothcert.certifiers.median_detection"): "SLOT layout",
    # Segmenters import the consistency regime; with certifiers -> models (lipschitz) and
    # regimes -> attacks -> certifiers this closes a cycle certifiers -> models -> regimes -> ...
    ("models/segmenters.py", "smoothcert.regimes"): "ConsistencyRegularization, consistency_loss",
}


def part_of(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("smoothcert", *(rel[:-1] if rel[-1] == "__init__" else rel)))


def imports(path: Path) -> set[str]:
    """Absolute names of the smoothcert modules ``path`` imports (relative imports resolved;
    ``from smoothcert.x import y`` yields ``smoothcert.x``)."""
    names = set()
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "smoothcert":  # from smoothcert import part
                names.update(f"smoothcert.{alias.name}" for alias in node.names)
            else:
                names.add(module)
    return {name for name in names if name.startswith("smoothcert.")}


def arrows() -> list[tuple[str, str, str, str]]:
    """(importing file, its part, imported module, that module's part) across parts."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "__init__.py":
            continue
        source = part_of(path)
        for name in sorted(imports(path)):
            target = name.split(".")[1]
            if target != source:
                found.append((path.relative_to(SRC).as_posix(), source, name, target))
    return found


def allowed(file: str, name: str) -> bool:
    return any(file == f and (name == m or name.startswith(m + ".")) for f, m in ALLOWED)


def broken_rules(found: list[tuple[str, str, str, str]]) -> list[str]:
    bad = []
    for file, source, name, target in found:
        if source not in RULES or allowed(file, name):
            continue
        kind, parts = RULES[source]
        if (target not in parts) if kind == ONLY else (target in parts):
            bad.append(f"{file} imports {name}: {source} {kind} {sorted(parts)}")
    return bad


def cycles(found: list[tuple[str, str, str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one part (Tarjan), allowed arrows left out."""
    graph: dict[str, set[str]] = {}
    for file, source, name, target in found:
        graph.setdefault(target, set())
        if not allowed(file, name):
            graph.setdefault(source, set()).add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_scan_sees_the_known_arrows():
    found = arrows()
    pairs = {(source, target) for _, source, _, target in found}
    # Not vacuous: arrows the package certainly has, a relative-free ``from x.y import z`` each.
    assert {("certifiers", "stats"), ("certifiers", "noise"), ("records", "errors")} <= pairs
    assert len(found) > 50


def test_no_lower_layer_imports_upward():
    assert broken_rules(arrows()) == []


def test_no_import_cycle_between_parts():
    assert cycles(arrows()) == []


@pytest.mark.parametrize(("file", "module"), sorted(ALLOWED))
def test_each_allowed_arrow_is_still_there(file, module):
    """An allow-list entry whose import is gone must be deleted (the list only shrinks)."""
    names = imports(SRC / file)
    assert any(n == module or n.startswith(module + ".") for n in names), (
        f"{file} no longer imports {module}: remove it from ALLOWED"
    )


def test_the_rules_catch_a_new_upward_import():
    """The checks themselves on a made-up arrow: records -> certifiers, stats -> noise, and a
    cycle stats <-> noise."""
    fake = [
        ("records/new.py", "records", "smoothcert.certifiers.center", "certifiers"),
        ("stats/new.py", "stats", "smoothcert.noise", "noise"),
        ("noise/new.py", "noise", "smoothcert.stats.binomial", "stats"),
    ]
    assert len(broken_rules(fake)) == 2
    assert cycles(fake) == [["noise", "stats"]]
