"""An anytime-valid confidence sequence for a Bernoulli rate (sequential certification).

Choice: the conjugate **beta-binomial mixture** of Howard, Ramdas, McAuliffe and Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences" (Ann. Statist. 2021, Sec. 3 and
Prop. 7's Bernoulli case; confseq's ``bernoulli_confidence_interval`` computes the same set by
bisection), written with scipy (``confseq`` has no wheel here). For observations
X_1, X_2, ... i.i.d. Bernoulli(p) with S_t successes and F_t = t - S_t failures, and a prior
Beta(a, b) on an alternative rate q,

    M_t(p) = int q^S (1 - q)^F / (p^S (1 - p)^F) dBeta(q; a, b)
           = B(a + S_t, b + F_t) / (B(a, b) p^S_t (1 - p)^F_t)

is, for the true p, a nonnegative martingale with M_0 = 1, so by Ville's inequality
P(exists t: M_t(p) >= 1/alpha) <= alpha. The confidence sequence is
C_t = {p : M_t(p) < 1/alpha}: it holds the true p at every t at once with probability >= 1 - alpha.
``log M_t`` is convex in p with its minimum at S/t (where M_t <= 1), so C_t is an interval
[lower, upper] found by bisection on each side.

Why a bound at a stopping time is valid: the event "p in C_t for every t" has probability
>= 1 - alpha, and on it p lies in C_tau for ANY time tau, however it is chosen from the data
(stopping when a radius is certified, ruled out, at a cap, at a budget or at an interrupt). So the
lower end at whatever time sampling stopped is a (1 - alpha) lower confidence bound on p; the upper
end only decides *when* to stop (ruled out / abstain) and never enters a reported certificate, and
both ends hold jointly at the single level alpha (no split between the sides).

Prior: Beta(1/2, 1/2), the Krichevsky-Trofimov / Jeffreys mixture (Voracek 2024's code uses it too).
Its log-regret against the best fixed q is at most (1/2) log t + log 2 uniformly over sequences,
so the boundary is within a log factor of the optimal width at every t without tuning a target
time; and its mass near 0 and 1 suits certification, where p_A is often close to 1 (all samples
of class A stop after ~log(1/alpha) / log(1/p*) samples, e.g. 14 for p* = 1/2 at alpha = 1e-3).

The bisection keeps the rejected end of its bracket (``BISECTION_STEPS`` halvings), so
a reported bound is never inside the set: rounding only loses power.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaln, xlog1py, xlogy

__all__ = [
    "PRIOR",
    "best_lower_at",
    "confidence_sequence",
    "log_mixture",
    "lower_bound",
    "projected_lower_at",
]

PRIOR = (0.5, 0.5)  # Beta(a, b): the Krichevsky-Trofimov mixture
BISECTION_STEPS = 48  # [0, 1] halved to 4e-15


def _counts(successes: ArrayLike, trials: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    s, t = np.broadcast_arrays(s, t)
    if np.any(s < 0) or np.any(s > t) or np.any(s != np.floor(s)):
        raise ValueError("successes must be integers in 0..trials")
    return s, t


def log_mixture(
    successes: ArrayLike, trials: ArrayLike, p: ArrayLike, prior: tuple[float, float] = PRIOR
) -> np.ndarray:
    """log M_t(p), the log of the beta-binomial mixture martingale of the null rate ``p`` after
    ``successes`` in ``trials`` (broadcast): +inf where ``p`` is impossible (p = 0 with a success,
    p = 1 with a failure)."""
    s, t = _counts(successes, trials)
    a, b = prior
    p = np.asarray(p, dtype=np.float64)
    f = t - s
    with np.errstate(divide="ignore", invalid="ignore"):
        log_likelihood = xlogy(s, p) + xlog1py(f, -p)
        return betaln(a + s, b + f) - betaln(a, b) - log_likelihood


def confidence_sequence(
    successes: ArrayLike,
    trials: ArrayLike,
    alpha: float,
    prior: tuple[float, float] = PRIOR,
    *,
    sides: str = "both",
) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``: the interval C_t = {p : M_t(p) < 1/alpha} after ``successes`` in
    ``trials`` (arrays broadcast; vectorized bisection).

    Guarantee: for X_1, X_2, ... i.i.d. Bernoulli(p), with probability at least 1 - alpha,
    lower_t <= p <= upper_t at every t simultaneously, hence also at any stopping time. At
    ``trials = 0`` the interval is [0, 1]. ``sides="lower"`` skips the upper end (returned as 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha} must be in (0, 1)")
    s, t = _counts(successes, trials)
    a, b = prior
    f = t - s
    # log M_t(p) - log(1/alpha) = margin - log-likelihood(p); the p-free part computed once.
    margin = betaln(a + s, b + f) - betaln(a, b) - np.log(1.0 / alpha)
    mean = np.divide(s, t, out=np.full_like(s, 0.5), where=t > 0)

    def rejected(p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return margin - xlogy(s, p) - xlog1py(f, -p) >= 0

    # Lower end: log M is decreasing on [0, mean]; 0 is rejected iff there is a success.
    lo, hi = np.zeros_like(s), mean.copy()
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        out = rejected(mid)
        lo, hi = np.where(out, mid, lo), np.where(out, hi, mid)
    lower = np.where(s > 0, lo, 0.0)  # lo: rejected (or 0), so lower <= inf C_t
    if sides == "lower":
        return lower, np.ones_like(s)
    # Upper end: log M is increasing on [mean, 1]; 1 is rejected iff there is a failure.
    lo, hi = mean.copy(), np.ones_like(s)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        out = rejected(mid)
        lo, hi = np.where(out, lo, mid), np.where(out, mid, hi)
    upper = np.where(f > 0, hi, 1.0)
    return lower, upper


def lower_bound(
    successes: ArrayLike, trials: ArrayLike, alpha: float, prior: tuple[float, float] = PRIOR
) -> np.ndarray:
    """The lower end of :func:`confidence_sequence` (a valid lower bound at any stopping time)."""
    return confidence_sequence(successes, trials, alpha, prior, sides="lower")[0]


def best_lower_at(
    successes: ArrayLike,
    trials: ArrayLike,
    cap: ArrayLike,
    alpha: float,
    prior: tuple[float, float] = PRIOR,
) -> np.ndarray:
    """The largest lower end reachable by ``cap`` trials: the lower bound at ``cap`` if every
    remaining sample were a success (the futility test of sequential certification: a radius
    whose threshold this cannot pass is unreachable; stopping for it only loses power)."""
    s, t = _counts(successes, trials)
    cap = np.broadcast_to(np.asarray(cap, dtype=np.float64), s.shape)
    return lower_bound(s + (cap - t), cap, alpha, prior)


def projected_lower_at(
    successes: ArrayLike,
    trials: ArrayLike,
    cap: ArrayLike,
    rate: ArrayLike,
    alpha: float,
    prior: tuple[float, float] = PRIOR,
) -> np.ndarray:
    """The lower end expected at ``cap`` trials if the remaining ones succeeded at ``rate``: the
    lower bound at ``cap`` from ``successes + ceil(rate * (cap - trials))`` successes (the
    ``futility="projected"`` stop of sequential certification, with ``rate`` an upper bound on
    p: a radius this cannot reach is given up; like :func:`best_lower_at` it decides only
    *when* to stop, never a reported bound, so it can only lose power)."""
    s, t = _counts(successes, trials)
    cap = np.broadcast_to(np.asarray(cap, dtype=np.float64), s.shape)
    rate = np.clip(np.broadcast_to(np.asarray(rate, dtype=np.float64), s.shape), 0.0, 1.0)
    rest = np.maximum(cap - t, 0.0)
    return lower_bound(np.minimum(s + np.ceil(rate * rest), t + rest), t + rest, alpha, prior)
