"""The toy setting of Section 6.1: an oracle base model with known per-pixel probabilities.

``ThresholdOracle`` is a real segmentation model (it reads the noisy input), so the whole
``segcertify`` pipeline can be checked against analytic truth. ``simulate_counts`` draws the same
``(modes, counts)`` distribution directly (fast, for large N). Run as a script for the power study:

    python tests/seg/toy.py            # Fig. 2a/2b (N=100, k=1) and Fig. 2c (N up to 10^5)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm
from torch import Tensor, nn

from smoothcert.certifiers.segmentation import certify_counts, indivclass_counts
from smoothcert.stats.binomial import clopper_pearson_lower_table

CORRECT = 0  # the oracle's correct class; class 1 is the only wrong one


class ThresholdOracle(nn.Module):
    """Pixel i predicts class 0 iff (noisy pixel i) / sigma < Phi^-1(p_i), else class 1.

    On the input ``zeros(1, H, W)`` smoothed with N(0, sigma^2 I), pixel i therefore predicts the
    correct class 0 with probability exactly ``p[i]``, independently across pixels.
    """

    def __init__(self, p: Tensor, sigma: float) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(norm.ppf(p.double().numpy())).float())
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        correct = (x[:, 0] / self.sigma < self.threshold).float()
        return torch.stack([correct, 1 - correct], dim=1)


def toy_probabilities(num: int, bad: int, gamma: float) -> np.ndarray:
    """Section 6.1: ``num - bad`` components correct w.p. 1 - gamma, ``bad`` w.p. 1 - 5 gamma."""
    p = np.full(num, 1.0 - gamma)
    p[:bad] = np.clip(1.0 - 5.0 * gamma, 0.0, 1.0)
    return p


def simulate_counts(p: np.ndarray, n0: int, n: int, rng: np.random.Generator):
    """``(modes, counts)`` with exactly the distribution ``sample_modes_and_counts`` gives for the
    oracle (ties among the n0 samples go to the lower class, 0, as with ``argmax``)."""
    correct0 = rng.binomial(n0, p)
    modes = np.where(2 * correct0 >= n0, CORRECT, 1)
    counts = np.where(modes == CORRECT, rng.binomial(n, p), rng.binomial(n, 1.0 - p))
    return torch.as_tensor(modes), torch.as_tensor(counts)


def simulate_jointclass(p, n0: int, n: int, alpha: float, rng: np.random.Generator) -> float:
    """JointClass on the oracle: the fraction of components certified with the correct class."""
    samples = rng.random((n0, p.size)) >= p  # True = wrong class
    rows, frequency = np.unique(samples, axis=0, return_counts=True)
    mode = rows[frequency.argmax()]
    match = float(np.prod(np.where(mode, 1.0 - p, p)))
    hits = rng.binomial(n, match)
    if clopper_pearson_lower_table(n, alpha)[hits] <= 0.5:
        return 0.0
    return float(np.mean(~mode))


def certified_rates(p, n0, n, tau, alpha, trials, seed=0, methods=None) -> dict[str, float]:
    """Mean fraction of components certified with the correct class, per method."""
    methods = methods or ("holm", "bonferroni", "indivclass", "jointclass")
    rng = np.random.default_rng(seed)
    totals = dict.fromkeys(methods, 0.0)
    for _ in range(trials):
        modes, counts = simulate_counts(p, n0, n, rng)
        for method in methods:
            if method == "jointclass":
                totals[method] += simulate_jointclass(p, n0, n, alpha, rng)
                continue
            if method == "indivclass":
                classes, _ = indivclass_counts(modes, counts, n, 0.25, alpha)
            else:
                classes, _ = certify_counts(modes, counts, n, 0.25, tau, alpha, method)
            totals[method] += float((classes == CORRECT).double().mean())
    return {m: t / trials for m, t in totals.items()}


def power_study(trials: int = 600, gammas=None, sizes=None) -> None:
    """Prints the certified rates of Fig. 2a/2b (N=100, k=1, alpha 0.001, tau 0.75) and Fig. 2c
    (gamma 0.05, k=0, n0 = n = 1000, alpha 0.1, tau 0.9, N from 10 to 10^5)."""
    gammas = np.linspace(0.0, 0.1, 11) if gammas is None else gammas
    for samples in (100, 1000):
        print(f"\nFig. 2{'a' if samples == 100 else 'b'}: N=100, k=1, n0=n={samples}, alpha=0.001")
        print("gamma   SegCertify-Holm  SegCertify-Bonf  IndivClass  JointClass")
        for gamma in gammas:
            p = toy_probabilities(100, 1, float(gamma))
            r = certified_rates(p, samples, samples, 0.75, 0.001, trials, seed=int(gamma * 1e4))
            print(
                f"{gamma:5.3f}   {r['holm']:15.3f}  {r['bonferroni']:15.3f}  "
                f"{r['indivclass']:10.3f}  {r['jointclass']:10.3f}"
            )
    # The paper does not state tau for Fig. 2c; at tau = 0.75 both certify every component here.
    print("\nFig. 2c: gamma=0.05, k=0, n0=n=1000, alpha=0.1, tau=0.9")
    print("N        SegCertify-Holm  SegCertify-Bonf")
    for size in sizes or (10, 100, 1000, 10_000, 100_000):
        p = toy_probabilities(size, 0, 0.05)
        runs = max(5, min(trials, 200_000 // size))
        r = certified_rates(p, 1000, 1000, 0.9, 0.1, runs, methods=("holm", "bonferroni"))
        print(f"{size:<8d} {r['holm']:15.4f}  {r['bonferroni']:15.4f}")


if __name__ == "__main__":
    power_study()
