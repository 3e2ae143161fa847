"""Voráček 2024 single-radius thresholds, reimplemented from the paper: an anytime-valid
sequential test of "is the point robust at one radius r?".

Voráček (2024, arXiv 2406.17830, "Treatment of statistical estimation problems in randomized
smoothing"; code vvoracek/RS_conf_seq) observes Bernoulli outcomes "the base model is right on a
noisy copy" (the true label, no selection step) and tests the point null p = p* with the
likelihood ratio of the Krichevsky-Trofimov (KT) mixture, a Beta(1/2, 1/2) prior on the
Bernoulli rate, against p*. With A successes in N draws

    log M_N = log B(A + 1/2, N - A + 1/2) - log B(1/2, 1/2) - [A log p* + (N - A) log(1 - p*)],

a nonnegative martingale with mean 1 under p = p*, so by Ville's inequality
P(sup_N M_N >= c) <= 1/c. Both thresholds below depend on N only and the event of ever crossing
the upper one grows with the successes, so its probability under any p <= p* is at most its
probability under p* (coupling); likewise the lower one for p >= p*.

- Upper threshold ``U[N]``: the smallest A >= p* N with log M_N >= log(2 / alpha), N + 1 if no
  A <= N reaches it; then a reverse running minimum (``U[N] = min_{M >= N} U[M]``), which keeps
  the set of sequences that ever cross (counts only grow: A_N >= U[M] implies A_M >= U[M]).
- Lower threshold ``L[N] = N - U'[N]`` with ``U'`` the upper thresholds of the failures at
  1 - p*, then a running maximum (a sequence below ``L[M]`` at an earlier M crossed there).
- Decision after each draw: "not robust" at A <= L[N], "robust" at A >= U[N], "undecided" at
  the cap. Each side errs with probability at most alpha / 2 (Ville at 2 / alpha), so a wrong
  decision has probability at most alpha.

Gaussian noise: p* = Phi(r / sigma) (``norm.cdf``). Two errors of the reference are not copied
here: its level is log(1 / (2 alpha)) per side (``log(1/alpha/2)``), under which each side errs
with probability up to 2 alpha (4 alpha in all): ``level="reference"`` reproduces it for the
tests only; and its Gaussian target is ``norm.ppf(r / sigma)`` where ``norm.cdf`` is meant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from smoothcert.errors import check_alpha, require
from smoothcert.stats.sequential import log_mixture

ROBUST, NOT_ROBUST, UNDECIDED = 1, 0, -1
KT_PRIOR = (0.5, 0.5)  # Krichevsky-Trofimov: Beta(1/2, 1/2)
LEVELS = ("correct", "reference")


def target_probability(radius: float, sigma: float) -> float:
    """p* = Phi(r / sigma): the least probability of the true class under Gaussian noise of
    level sigma that certifies l2 radius r (Cohen et al.'s radius sigma Phi^-1(p) solved for p)."""
    return float(norm.cdf(radius / sigma))


def kt_log_ratio(successes, trials, p_star: float) -> np.ndarray:
    """log M_N of the KT mixture against the point null p*, elementwise over arrays of
    ``successes`` A and ``trials`` N (0 <= A <= N): the beta-binomial mixture of sequential
    certification (:func:`smoothcert.stats.sequential.log_mixture`) at its Beta(1/2, 1/2) prior."""
    return log_mixture(successes, trials, p_star, KT_PRIOR)


def log_level(alpha: float, level: str = "correct") -> float:
    """Per-side log threshold: log(2 / alpha) ("correct": each side errs w.p. <= alpha / 2) or
    the reference code's log(1 / (2 alpha)) ("reference": each side up to 2 alpha)."""
    require(level in LEVELS, f"level={level!r} must be one of {LEVELS}")
    return math.log(2.0 / alpha) if level == "correct" else math.log(1.0 / (2.0 * alpha))


def upper_thresholds(p_star: float, n_max: int, alpha: float, level: str = "correct") -> np.ndarray:
    """``U[N]`` for N = 0..n_max (index N = draws so far): "robust" once A_N >= U[N]. Entries
    that no count can reach are N + 1 (before the reverse running minimum). Non-decreasing."""
    require(0.0 < p_star < 1.0, f"p_star={p_star} must lie in (0, 1)")
    check_alpha(alpha)
    threshold = log_level(alpha, level)
    n = np.arange(n_max + 1, dtype=np.int64)
    # log M_N is increasing in A for A >= p* N - 1/2 (the ratio of successive terms is
    # (A + 1/2)(1 - p*) / ((N - A - 1/2) p*)), so bisect A over [ceil(p* N), N] for all N at once.
    low = np.minimum(np.ceil(p_star * n).astype(np.int64), n)
    reachable = kt_log_ratio(n, n, p_star) >= threshold
    high = n.copy()  # invariant where reachable: log M(high) >= threshold
    while True:
        open_ = reachable & (low < high)
        if not open_.any():
            break
        mid = (low + high) // 2
        above = kt_log_ratio(mid, n, p_star) >= threshold
        high = np.where(open_ & above, mid, high)
        low = np.where(open_ & ~above, mid + 1, low)
    upper = np.where(reachable, high, n + 1)
    return np.minimum.accumulate(upper[::-1])[::-1]


def lower_thresholds(p_star: float, n_max: int, alpha: float, level: str = "correct") -> np.ndarray:
    """``L[N]`` for N = 0..n_max: "not robust" once A_N <= L[N] (negative: unreachable).
    Non-decreasing."""
    failures = upper_thresholds(1.0 - p_star, n_max, alpha, level)
    return np.maximum.accumulate(np.arange(n_max + 1) - failures)


@dataclass(frozen=True)
class SingleRadiusThresholds:
    """Both thresholds of one (p*, alpha, cap): decide a count path with :meth:`decide`."""

    p_star: float
    alpha: float
    cap: int
    upper: np.ndarray
    lower: np.ndarray

    @classmethod
    def build(
        cls, p_star: float, alpha: float, cap: int, level: str = "correct"
    ) -> SingleRadiusThresholds:
        """The thresholds up to ``cap`` draws (Voráček's code: 131,100)."""
        upper = upper_thresholds(p_star, cap, alpha, level)
        lower = lower_thresholds(p_star, cap, alpha, level)
        return cls(p_star, alpha, cap, upper, lower)

    def decide(self, correct) -> tuple[np.ndarray, np.ndarray]:
        """Decisions of count paths: ``correct`` is ``[..., T]`` booleans (the base model right on
        draw t, T <= cap). Returns ``(decision, draws)`` over the leading axes: ROBUST (1),
        NOT_ROBUST (0), or UNDECIDED (-1) if neither threshold was crossed within the T draws
        (the cap when T == cap), and the draws used (the first crossing, else T). "Not robust" is
        checked first, as in the reference."""
        correct = np.asarray(correct, dtype=bool)
        steps = correct.shape[-1]
        require(steps <= self.cap, f"{steps} draws exceed the thresholds' cap {self.cap}")
        counts = np.cumsum(correct, axis=-1, dtype=np.int64)
        low = counts <= self.lower[1 : steps + 1]
        high = counts >= self.upper[1 : steps + 1]
        crossed = low | high
        hit = crossed.any(axis=-1)
        first = np.argmax(crossed, axis=-1)
        low_first = np.take_along_axis(low, first[..., None], axis=-1)[..., 0]
        decision = np.where(hit, np.where(low_first, NOT_ROBUST, ROBUST), UNDECIDED)
        draws = np.where(hit, first + 1, steps)
        return decision, draws
