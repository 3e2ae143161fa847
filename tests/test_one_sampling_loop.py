"""One sampling loop and one stream set-up (issue 22): ``smoothcert.sampling`` holds the only
Monte-Carlo loop and stream set-up of the certifiers.

The test reads the source with ``ast`` (no import) and fails on

- a sampling loop outside ``src/smoothcert/sampling.py``: a call of a stream's ``.take(``, of
  ``noisy_outputs`` / ``noisy_batches``, or ``torch.randn`` / ``torch.rand`` / ``randn_like`` /
  ``rand_like`` (noise drawn by hand);
- a stream set-up (``.stream(`` / ``NoiseStream(``) outside ``sampling.py`` and ``noise/``.

``ALLOWED`` lists today's exceptions, each with its reason; it may only shrink: an entry whose
code is gone fails too, so a converted certifier must delete its entry. Entries name the file,
the enclosing function (``Class.method``) and what is called, not line numbers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src/smoothcert", "callbacks", "lightning_modules")
LOOP_HOME = "src/smoothcert/sampling.py"
STREAM_HOMES = (LOOP_HOME, "src/smoothcert/noise/")

LOOP_CALLS = {"take", "noisy_outputs", "noisy_batches"}
RANDOM_CALLS = {"randn", "rand", "randn_like", "rand_like"}
STREAM_CALLS = {"stream", "NoiseStream"}

ALLOWED: dict[tuple[str, str, str], str] = {
    # CC-Cert's parameters are not smoothing noise of a Noise: uniform on the user's range.
    ("src/smoothcert/certifiers/cccert.py", "CCCert.sample_parameters", "torch.rand"): (
        "CC-Cert's parameters, uniform on the user's range in the transformation's units (the "
        "paper's sampling, kept bit for bit: no Noise draws U[low, high]); the transformed images "
        "go through sampling.sample"
    ),
    # Randomness that is not smoothing noise.
    ("src/smoothcert/attacks/segmentation.py", "_pgd", "torch.randn"): (
        "PGD's random start direction inside the ball (an attack, not a smoothing draw)"
    ),
    ("src/smoothcert/attacks/segmentation.py", "_pgd", "torch.rand"): (
        "PGD's random start radius inside the ball (an attack, not a smoothing draw)"
    ),
    ("src/smoothcert/attacks/smoothed_pgd.py", "_l2_step", "torch.randn_like"): (
        "a random direction where PGD's gradient is zero (the smoothing draws are given)"
    ),
    ("src/smoothcert/certifiers/lipschitz.py", "spectral_norm", "torch.randn"): (
        "the random start of the power iteration for a layer's spectral norm"
    ),
    ("src/smoothcert/certifiers/median_expectation.py", "mean_interval", "torch.rand"): (
        "randomized rounding of bounded outputs to Bernoulli draws for Clopper-Pearson "
        "(statistics on outputs already sampled)"
    ),
    ("src/smoothcert/transforms/rotation.py", "Rotation.forward", "torch.randn"): (
        "training augmentation (pixel noise after the rotation), not certification"
    ),
    ("src/smoothcert/regimes/smoothmix.py", "SmoothMix.draw_lambda", "torch.rand"): (
        "SmoothMix's mixing weights lam ~ U[0, 1/2) (training mixup, not a smoothing draw; its "
        "noise comes from the regime's Noise)"
    ),
}


def _calls(path: Path) -> list[tuple[str, str, int]]:
    """``(function, call, line)`` of each loop, random or stream call in ``path``."""
    found: list[tuple[str, str, int]] = []
    scope: list[str] = []

    class Visitor(ast.NodeVisitor):
        def visit_scope(self, node: ast.AST) -> None:
            scope.append(node.name)
            self.generic_visit(node)
            scope.pop()

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_scope

        def visit_Call(self, node: ast.Call) -> None:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            owner = func.value if isinstance(func, ast.Attribute) else None
            torch_call = isinstance(owner, ast.Name) and owner.id == "torch"
            call = None
            if name in LOOP_CALLS or name in STREAM_CALLS:
                call = name
            elif name in RANDOM_CALLS and (torch_call or name.endswith("_like")):
                call = f"torch.{name}"
            if call is not None:
                found.append((".".join(scope) or "<module>", call, node.lineno))
            self.generic_visit(node)

    Visitor().visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _violations() -> dict[tuple[str, str, str], int]:
    """Every call the rules forbid, keyed like ``ALLOWED``, with its first line."""
    out: dict[tuple[str, str, str], int] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for function, call, line in _calls(path):
                if call in STREAM_CALLS:
                    if rel.startswith(STREAM_HOMES):
                        continue
                elif rel == LOOP_HOME:
                    continue
                out.setdefault((rel, function, call), line)
    return out


def test_one_sampling_loop_and_one_stream_set_up() -> None:
    found = _violations()
    new = [f"{rel}:{line} {function} calls {call}" for (rel, function, call), line in found.items()
           if (rel, function, call) not in ALLOWED]  # fmt: skip
    assert not new, (
        "sampling outside smoothcert.sampling (draw through sampling.sample with a reducer and "
        "set streams up with sampling.example_stream), or add an entry with its reason if this "
        "is not smoothing noise:\n" + "\n".join(new)
    )


def test_the_allow_list_only_shrinks() -> None:
    gone = sorted(set(ALLOWED) - set(_violations()))
    assert not gone, f"these ALLOWED entries no longer occur: delete them: {gone}"
    assert all(reason.strip() for reason in ALLOWED.values())


def test_the_scan_sees_each_kind_of_call(tmp_path: Path) -> None:
    """The scanner itself: each forbidden form is found, with its enclosing function."""
    source = tmp_path / "m.py"
    source.write_text(
        "import torch\n"
        "class A:\n"
        "    def f(self, s, n):\n"
        "        s.take(3); noisy_outputs(); sampling.noisy_batches()\n"
        "        torch.randn(2); torch.rand(2); x.randn_like(); torch.rand_like(y)\n"
        "        n.stream((1,), g, 'cpu'); NoiseStream()\n"
        "        rng.rand(3)\n"  # numpy's generator: not torch
    )
    calls = sorted({(function, call) for function, call, _ in _calls(source)})
    expected = ["NoiseStream", "noisy_batches", "noisy_outputs", "stream", "take"]
    expected += ["torch.rand", "torch.rand_like", "torch.randn", "torch.randn_like"]
    assert calls == sorted(("A.f", call) for call in expected)
