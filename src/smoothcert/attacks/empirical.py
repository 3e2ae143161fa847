"""Empirical robustness of a smoothed classifier beside its certificate: attack an example at
given radii (l2, l1 or linf), then ask PREDICT (n, alpha) at each adversarial point.

Two attacks: ``smoothed_pgd`` (PGD on the smoothed soft classifier with m noise draws, Salman et
al. 2019; in l1 with Foolbox's sparse l1 step and an exact l1-ball projection) and ``base``
(Foolbox's PGD on the base classifier, the attack a user of an undefended model would run:
``L2PGD``, ``LinfPGD``, and for l1 ``SparseL1DescentAttack`` with that projection, since
Foolbox's ``L1PGD`` steps along the dense gradient and rescales instead of projecting, a weak l1
attack, Tramer & Boneh 2019). Neither is a certificate: an attack that fails proves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import binom
from torch import Tensor, nn

from smoothcert.attacks.smoothed_pgd import ATTACK_NORMS, project_l1, smoothed_pgd
from smoothcert.certifiers.classification import Smooth
from smoothcert.errors import ConfigError
from smoothcert.modes import eval_mode
from smoothcert.outcomes import ABSTAIN
from smoothcert.perturbation import ADDITIVE
from smoothcert.sampling import example_stream, take_draws

__all__ = [
    "ATTACKS",
    "attack_generators",
    "attack_example",
    "base_pgd",
    "base_pgd_l2",
    "inside_radius_check",
]

ATTACKS = ("smoothed_pgd", "base")
ATTACK_STREAM = 0xA77AC  # tags the attack's seed sequences


def attack_generators(seed: int, index: int, device: torch.device | str) -> list[torch.Generator]:
    """Two generators for example ``index`` (the attack's noise, PREDICT's noise), independent of
    each other and of CERTIFY's ``example_generator(seed, index)``."""
    generators = []
    for stream in (1, 2):  # a longer entropy list than example_seed's (seed, index): other streams
        entropy = np.random.SeedSequence([int(seed), int(index), ATTACK_STREAM, stream])
        state = entropy.generate_state(2, dtype=np.uint32)
        generator = torch.Generator(device=device)
        generator.manual_seed(int((int(state[0]) << 31) ^ int(state[1])))
        generators.append(generator)
    return generators


def foolbox_attack(norm: str, epsilon: float, steps: int):
    """Foolbox's PGD in ``norm`` with the absolute step ``2.5 epsilon / steps``: ``L2PGD`` and
    ``LinfPGD`` (random start), ``SparseL1DescentAttack`` for l1 (no random start, its default)
    with its l1-ball projection replaced by ``project_l1`` (Foolbox's can leave the ball)."""
    import eagerpy as ep
    import foolbox

    class SparseL1Descent(foolbox.attacks.SparseL1DescentAttack):
        def project(self, x: ep.Tensor, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
            return ep.astensor(project_l1(x.raw, x0.raw, epsilon))

    step = {"abs_stepsize": 2.5 * epsilon / steps, "steps": steps}
    if norm == "l1":
        return SparseL1Descent(**step)
    return (foolbox.attacks.L2PGD if norm == "l2" else foolbox.attacks.LinfPGD)(**step)


def base_pgd_l2(
    model: nn.Module, x: Tensor, y: Tensor, epsilons: Sequence[float], steps: int, seed: int
) -> Tensor:
    """``base_pgd`` in l2: Foolbox's ``L2PGD``."""
    return base_pgd(model, x, y, epsilons, steps, seed, "l2")


def base_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilons: Sequence[float],
    steps: int,
    seed: int,
    norm: str = "l2",
) -> Tensor:
    """Foolbox's PGD in ``norm`` (``foolbox_attack``) on the base classifier ``model`` ([0, 1]
    inputs, logits out) at one radius per example (random start drawn from torch's generator
    seeded by ``seed``), in eval mode. Returns the clipped adversarial points, so
    ``||x_adv - x||_norm <= epsilon`` per row and ``x_adv`` stays in ``[0, 1]``."""
    if norm not in ATTACK_NORMS:
        raise ConfigError(f"attack norm={norm!r} is unknown: use one of {', '.join(ATTACK_NORMS)}")
    try:
        import foolbox
    except ImportError as error:  # a dependency; say how to get it rather than a traceback
        raise ConfigError("attack=base needs foolbox: pip install foolbox") from error
    out = x.clone()
    with eval_mode(model), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        fmodel = foolbox.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        for i, eps in enumerate(epsilons):
            if eps > 0:
                attack = foolbox_attack(norm, eps, steps)
                _, clipped, _ = attack(fmodel, x[i : i + 1], y[i : i + 1], epsilons=float(eps))
                out[i] = clipped[0]
    return out


def attack_example(
    smooth: Smooth,
    kind: str,
    x: Tensor,
    label: int,
    epsilons: Sequence[float],
    settings: tuple[int, int, int, float, int],
    generators: Sequence[torch.Generator],
    norm: str = "l2",
) -> list[int]:
    """PREDICT's answer (a class or ABSTAIN) at ``kind``'s adversarial point for ``x`` at each
    radius in ``norm`` of ``epsilons`` (``settings`` = ``(steps, m, n, alpha, batch_size)``; the
    attack draws from ``generators[0]``, PREDICT from ``generators[1]``)."""
    steps, m, n, alpha, batch_size = settings
    copies = len(epsilons)
    xs = x.unsqueeze(0).expand(copies, *x.shape).contiguous()
    ys = torch.full((copies,), int(label), device=x.device, dtype=torch.long)
    model = smooth.base_classifier
    if kind == "smoothed_pgd":
        options = {"input_range": smooth.input_range, "name": "Smooth", "dtype": x.dtype}
        stream = example_stream(smooth.noise, ADDITIVE, x, generators[0], **options)
        noise = take_draws(stream, m).unsqueeze(1).expand(m, copies, *x.shape)
        eps = torch.tensor(list(epsilons), dtype=x.dtype, device=x.device)
        with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
            adversarial = smoothed_pgd(model, xs.clone(), ys, noise.clone(), eps, steps, norm)
    elif kind == "base":
        seed = int(torch.randint(0, 2**62, (), generator=generators[0], device=x.device))
        with torch.inference_mode(False), torch.enable_grad():
            adversarial = base_pgd(model, xs.clone(), ys, epsilons, steps, seed, norm)
    else:
        raise ConfigError(f"attack={kind} is unknown: use one of {', '.join(ATTACKS)}")
    return [smooth.predict(a, n, alpha, batch_size, generators[1]) for a in adversarial]


def inside_radius_check(
    predictions: Sequence[int], certified: Sequence[int], alpha_certify: float, alpha_predict: float
) -> tuple[int, int, float]:
    """Soundness of certificate and PREDICT together, from attacks within the certified radius.

    Inside its radius a certificate (valid with probability >= 1 - alpha_certify) fixes the
    smoothed class, and PREDICT names another class with probability <= alpha_predict, so each
    attacked example's PREDICT disagrees with its certified class (ABSTAIN is not a disagreement)
    with probability at most ``alpha_certify + alpha_predict``. Returns ``(disagreements,
    examples, p-value)``, the p-value of that many or more under Binomial(examples, that rate): a
    tiny p-value means the certificates or PREDICT are not what they claim.
    """
    wrong = sum(int(p != c and p != ABSTAIN) for p, c in zip(predictions, certified, strict=True))
    total = len(predictions)
    rate = min(1.0, alpha_certify + alpha_predict)
    pvalue = float(binom.sf(wrong - 1, total, rate)) if total else 1.0
    return wrong, total, pvalue


def success_rate(predictions: Sequence[int], labels: Sequence[int]) -> tuple[float, float]:
    """The fraction of attacks PREDICT answers with a wrong class, and wrong or ABSTAIN (nan for
    no attacks)."""
    if not predictions:
        return float("nan"), float("nan")
    p, y = np.asarray(predictions), np.asarray(labels)
    wrong = (p != y) & (p != ABSTAIN)
    return float(wrong.mean()), float((p != y).mean())
