"""False-certificate rates on the analytic oracle: each certifier's own statement, family-wise over
the image, at rate <= alpha up to three binomial standard errors over many independent runs.

On ``ThresholdOracle(p)`` at ``x = 0``, pixel i predicts class 0 with probability exactly ``p[i]``
and class 1 otherwise, independently across pixels, so every statement can be checked exactly.
Every test also shows its check is not vacuous (the certifier does certify) and, where it matters,
that a sound-looking shortcut breaks it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import Tensor

from seg.toy import CORRECT, ThresholdOracle
from smoothcert import ABSTAIN, segcertify
from smoothcert.certifiers.segmentation import indivclass, jointclass

SIGMA = 0.25


def class_probability(classes: Tensor, p: Tensor) -> Tensor:
    """True probability of each pixel's returned class on the oracle (ABSTAIN pixels: 1)."""
    chosen = torch.where(classes == CORRECT, p, 1 - p)
    return torch.where(classes == ABSTAIN, torch.ones_like(p), chosen)


def slack(alpha: float, trials: int) -> float:
    """Three standard errors of an empirical rate whose mean is alpha."""
    return 3 * float(np.sqrt(alpha * (1 - alpha) / trials))


@pytest.mark.slow  # a statistical test of several seconds
def test_joint_over_tau_holds_family_wise_and_per_tau_does_not():
    """Three tau, each with its own pixels at p = tau (the worst case for H0: p <= tau) and the
    other pixels far from it, so the three per-tau errors are nearly independent: per tau, each
    certificate is right at alpha but some tau's is wrong far more often than alpha; with
    ``joint=True`` (alpha / 3 each) the chance that any tau's certificate is wrong is <= alpha."""
    taus, alpha, trials = [0.6, 0.75, 0.9], 0.2, 500
    p = torch.cat([torch.full((m,), t) for t, m in zip(taus, (1, 4, 16), strict=True)]).view(3, 7)
    model, x = ThresholdOracle(p, SIGMA), torch.zeros(1, 3, 7)
    wrong = {joint: np.zeros((trials, len(taus)), dtype=bool) for joint in (False, True)}
    certified = 0
    for trial in range(trials):
        for joint in (False, True):  # the same noise for both
            generator = torch.Generator().manual_seed(trial)
            classes, _ = segcertify(
                model, x, SIGMA, 20, 100, taus, alpha, batch_size=120, generator=generator,
                joint=joint,
            )  # fmt: skip
            for j, tau in enumerate(taus):
                issued = classes[j] != ABSTAIN
                wrong[joint][trial, j] = bool(
                    (issued & (class_probability(classes[j], p) <= tau)).any()
                )
            certified += int(joint) * int((classes[0] != ABSTAIN).sum())
    per_tau, joint = wrong[False].any(axis=1).mean(), wrong[True].any(axis=1).mean()
    print(
        f"P(some tau wrong) over {trials} runs at alpha={alpha}: per tau {per_tau:.3f} (each: "
        f"{wrong[False].mean(axis=0).round(3)}), joint {joint:.3f} (each: "
        f"{wrong[True].mean(axis=0).round(3)}); joint: {certified / trials:.1f} pixels of 21 "
        "certified at tau 0.6 (20 have p > 0.6)"
    )
    bound = alpha + slack(alpha, trials)
    assert joint <= bound  # the joint statement
    assert np.all(wrong[False].mean(axis=0) <= bound)  # each per-tau statement on its own
    assert per_tau > bound  # without the alpha / T split the joint statement fails
    assert certified / trials > 15  # not vacuous: the joint test still certifies


def test_indivclass_radius_holds_for_every_pixel_at_alpha():
    """IndivClass returns every pixel's class with radius R, or abstains everywhere. A false
    certificate: some pixel's returned class has true probability below ``Phi(R / sigma)`` (its
    own radius is smaller than R). One pixel at p = 0.7 among pixels at 0.97 decides R."""
    p = torch.full((3, 4), 0.97)
    p[0, 0] = 0.7
    model, x, alpha, trials = ThresholdOracle(p, SIGMA), torch.zeros(1, 3, 4), 0.2, 400
    generator = torch.Generator().manual_seed(0)
    false = certified = 0
    for _ in range(trials):
        classes, radius = indivclass(model, x, SIGMA, 10, 100, alpha, 110, generator)
        if (classes == ABSTAIN).all():
            continue
        assert (classes != ABSTAIN).all() and radius > 0  # all pixels or none
        certified += 1
        false += bool((class_probability(classes, p) < norm.cdf(radius / SIGMA)).any())
    print(f"IndivClass over {trials} runs: false {false / trials:.4f}, certified {certified}")
    assert false / trials <= alpha + slack(alpha, trials)
    assert certified > trials // 2


def test_jointclass_map_probability_holds_at_alpha():
    """JointClass returns one map with radius R, or abstains everywhere. A false certificate: the
    noisy model outputs exactly that map with true probability below ``Phi(R / sigma)``. Four
    pixels at p = 0.93 make the all-correct map's probability 0.748, where Clopper-Pearson at
    alpha = 0.2 is nearly tight (exact rate 0.199), so doubling alpha would be caught."""
    p = torch.full((2, 2), 0.93)
    model, x, alpha, trials = ThresholdOracle(p, SIGMA), torch.zeros(1, 2, 2), 0.2, 1000
    generator = torch.Generator().manual_seed(0)
    false = certified = 0
    for _ in range(trials):
        classes, radius = jointclass(model, x, SIGMA, 10, 100, alpha, 110, generator)
        if (classes == ABSTAIN).all():
            continue
        assert (classes != ABSTAIN).all() and radius > 0
        certified += 1
        map_probability = float(class_probability(classes, p).prod())
        false += map_probability < norm.cdf(radius / SIGMA)
    print(f"JointClass over {trials} runs: false {false / trials:.4f}, certified {certified}")
    assert false / trials <= alpha + slack(alpha, trials)
    assert certified > trials // 2
