"""Data flows one way inside ``src/smoothcert`` (issue 22, DESIGN.md): every part has a place in one
layer order, imports only the parts its rule names (all of them in lower layers), and no two parts
import each other through any chain. Checked on the source with ``ast``, imports inside functions
included. There are no exceptions: a new upward import fails.

A *part* is a subpackage (``certifiers``, ``records``, ...) or a top-level module (``errors``,
``sampling``, ...). The package's ``__init__.py`` is the public facade above every part and is left
out. A new part fails until it is placed in ``LAYERS`` and given its rule in ``RULES``.

Also: no radius formula (a Gaussian quantile, Phi^-1: ``norm.ppf``, ``ndtri``, ``icdf``,
``erfinv``, ``NormalDist.inv_cdf``) outside the noises (``noise/``) and the perturbations
(``perturbation.py``, ``transforms/``), but for the files of ``RADIUS_EXCEPTIONS`` (shrink-only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src" / "smoothcert"

# The layer order, bottom first. A part imports only parts of lower layers (never one of its own
# layer or above), and of those only the ones ``RULES`` names for it.
LAYERS: list[tuple[str, ...]] = [
    # leaves: the error type, run provenance, the ABSTAIN value, eval_mode
    ("errors", "provenance", "outcomes", "modes"),
    # statistics, noises (with their radii), record schemas, datasets, networks
    ("stats", "noise", "records", "data", "models"),
    # how noise meets the input; distances between outputs (center smoothing)
    ("perturbation", "distances"),
    # parameter perturbations; the independence probe; box layout and worst-case IoU
    ("transforms", "independence", "boxes"),
    # the one Monte-Carlo loop; scores computed from records
    ("sampling", "metrics"),
    ("certifiers",),
    # attacks on smoothed and base models (they certify with the certifiers)
    ("attacks",),
    # training recipes: noise, perturbation, the model's kinds, and attacks (SmoothAdv)
    ("regimes",),
    # curves, tables and figures from records and metrics
    ("report",),
]

# part -> the parts it may import (explicit, for every part).
# fmt: off
RULES: dict[str, set[str]] = {
    "errors": set(),
    "provenance": set(),
    "outcomes": set(),
    "modes": set(),
    "stats": {"errors"},
    "noise": {"errors"},
    "records": {"errors"},
    "data": {"errors"},
    "models": {"errors"},
    "perturbation": {"errors", "noise"},
    "distances": {"errors", "modes"},
    "transforms": {"errors", "noise", "perturbation"},
    "independence": {"errors", "noise", "perturbation"},
    "boxes": {"errors", "distances"},
    "sampling": {"errors", "modes", "stats", "noise", "perturbation", "independence"},
    "metrics": {"errors", "outcomes", "stats", "records", "boxes"},
    "certifiers": {
        "errors", "outcomes", "modes", "stats", "noise", "records", "models", "perturbation",
        "distances", "transforms", "independence", "boxes", "sampling",
    },
    "attacks": {
        "errors", "outcomes", "modes", "stats", "noise", "perturbation", "sampling", "certifiers",
    },
    "regimes": {"errors", "modes", "noise", "models", "perturbation", "sampling", "attacks"},
    # (certifiers: the median report turns certified intervals into detections)
    "report": {"errors", "outcomes", "records", "metrics", "data", "boxes", "certifiers"},
}
# fmt: on

# Files outside noise/ and the perturbations that still evaluate a Gaussian quantile, each with
# its reason; an entry whose file no longer does fails (the list only shrinks).
RADIUS_EXCEPTIONS = {
    "src/smoothcert/certifiers/topk.py": (
        "the top-k radius solves Phi(Phi^-1(p_A) - r/sigma) = Phi(Phi^-1(p_S) + r/sigma)/t by "
        "root finding, with scipy's ufuncs for speed; GaussianNoise owns no top-k certificate yet"
    ),
    "src/smoothcert/certifiers/distspt.py": (
        "DistSPT's rotation radius (in degrees) and its inner l2 radii; they belong to the "
        "rotation perturbation's certificate, which the structured rewrite moves there"
    ),
}
# Where a radius formula belongs: the noises and the perturbations.
RADIUS_HOMES = (
    "src/smoothcert/noise/",
    "src/smoothcert/perturbation.py",
    "src/smoothcert/transforms/",
)
# Product code scanned for radius formulas (tests and benchmarks may compute them as oracles).
SCANNED = ("src/smoothcert", "callbacks", "lightning_modules", "train.py", "certify.py")


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


def parts() -> set[str]:
    return {part_of(path) for path in SRC.rglob("*.py") if path != SRC / "__init__.py"}


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


def layer_of(part: str) -> int | None:
    return next((number for number, layer in enumerate(LAYERS) if part in layer), None)


def broken_rules(found: list[tuple[str, str, str, str]]) -> list[str]:
    bad = []
    for file, source, name, target in found:
        allowed = RULES.get(source)
        if allowed is None:
            bad.append(f"{file}: part {source} has no rule: place it in LAYERS and RULES")
        elif target not in allowed:
            bad.append(f"{file} imports {name}: {source} may import only {sorted(allowed)}")
    return bad


def cycles(found: list[tuple[str, str, str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one part (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for _, source, _, target in found:
        graph.setdefault(target, set())
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


def test_every_part_has_one_place_and_one_rule():
    placed = [part for layer in LAYERS for part in layer]
    assert len(placed) == len(set(placed)), "a part stands in two layers"
    assert parts() <= set(placed), f"place {sorted(parts() - set(placed))} in LAYERS and RULES"
    assert set(RULES) == set(placed)


def test_the_rules_point_only_to_lower_layers():
    for part, allowed in RULES.items():
        for target in allowed:
            assert layer_of(target) < layer_of(part), f"{part} may import {target}: not below it"


def test_no_part_imports_beyond_its_rule():
    assert broken_rules(arrows()) == []


def test_no_import_cycle_between_parts():
    assert cycles(arrows()) == []


def test_the_rules_catch_a_new_upward_import():
    """The checks themselves on made-up arrows: records -> certifiers, stats -> noise, an unplaced
    part, and a cycle stats <-> noise."""
    fake = [
        ("records/new.py", "records", "smoothcert.certifiers.center", "certifiers"),
        ("stats/new.py", "stats", "smoothcert.noise", "noise"),
        ("noise/new.py", "noise", "smoothcert.stats.binomial", "stats"),
        ("new.py", "new", "smoothcert.errors", "errors"),
    ]
    assert len(broken_rules(fake)) == 4
    assert cycles(fake) == [["noise", "stats"]]


# --- radius formulas -------------------------------------------------------------------------

QUANTILE_FUNCTIONS = ("ndtri", "erfinv", "erfinv_", "icdf", "inv_cdf")


def dotted(node: ast.AST, aliases: dict[str, str]) -> str:
    """The dotted name of an expression (``scipy.stats.norm.ppf``), the first name resolved through
    the file's imports; ``()`` stands for a call (``scipy.stats.norm().ppf``)."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value, aliases)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{dotted(node.func, aliases)}()"
    return "?"


def gaussian_quantiles(source: str) -> list[int]:
    """Lines of ``source`` that evaluate Phi^-1: scipy.stats.norm's ``ppf``/``isf`` (of the
    frozen or the plain distribution), ``ndtri`` (scipy, torch), ``erfinv``, a distribution's
    ``icdf`` and ``statistics.NormalDist().inv_cdf``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func, aliases)
        last = name.rpartition(".")[2]
        receiver = name.rpartition(".")[0].removesuffix("()")
        normal = receiver == "scipy.stats.norm" or receiver.endswith("stats.norm")
        if last in QUANTILE_FUNCTIONS or (last in ("ppf", "isf") and normal):
            lines.append(node.lineno)
    return lines


def product_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_the_radius_scan_sees_the_formulas():
    """Not vacuous: the noises' own radii are found, and each way of writing Phi^-1 is."""
    assert gaussian_quantiles((SRC / "noise" / "gaussian.py").read_text(encoding="utf-8"))
    written = [
        "from scipy.stats import norm\nr = s * norm.ppf(p)",
        "from scipy.stats import norm as normal\nr = s * normal(0, 1).isf(q)",
        "import scipy.stats\nr = s * scipy.stats.norm.ppf(p)",
        "from scipy import stats\nr = s * stats.norm.ppf(p)",
        "from scipy.special import ndtri as q\nr = s * q(p)",
        "import torch\nr = s * torch.special.ndtri(p)",
        "import torch\nr = s * 2**0.5 * torch.erfinv(2 * p - 1)",
        "r = s * p.mul(2).sub(1).erfinv()",
        "r = s * torch.distributions.Normal(0, 1).icdf(p)",
        "from statistics import NormalDist\nr = s * NormalDist().inv_cdf(p)",
    ]
    assert [len(gaussian_quantiles(code)) for code in written] == [1] * len(written)
    harmless = "from scipy.stats import beta, binom\nb = beta.ppf(a, k, n) + binom.ppf(a, n, p)"
    assert gaussian_quantiles(harmless) == []


def test_no_radius_formula_outside_the_noises_and_the_perturbations():
    found = []
    for path in product_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(RADIUS_HOMES) or rel in RADIUS_EXCEPTIONS:
            continue
        lines = gaussian_quantiles(path.read_text(encoding="utf-8"))
        found.extend(f"{rel}:{line}" for line in lines)
    assert found == [], "Phi^-1 outside noise/ and the perturbations: ask the noise for its radius"


@pytest.mark.parametrize("rel", sorted(RADIUS_EXCEPTIONS))
def test_each_radius_exception_is_still_needed(rel):
    """An exception whose file no longer evaluates Phi^-1 must be deleted (the list only
    shrinks)."""
    assert not rel.startswith(RADIUS_HOMES)
    assert gaussian_quantiles((ROOT / rel).read_text(encoding="utf-8")), (
        f"{rel} no longer evaluates Phi^-1: remove it from RADIUS_EXCEPTIONS"
    )
