"""The randomized Clopper-Pearson lower bound (exact level; Stevens 1950's construction, the
"randomized Clopper-Pearson interval" of Voracek 2024).

With X ~ Bin(n, p) observed as x and U ~ Uniform(0, 1) drawn independently of the data, the
lower bound is the p solving P_p(X > x) + U P_p(X = x) = alpha. The left side is increasing in p,
and the randomized p-value P_p(X > X) + U P_p(X = X) is exactly Uniform(0, 1) under p, so
P(bound > p) = alpha exactly: coverage is exactly 1 - alpha. U = 1 gives the ordinary
Clopper-Pearson bound, U < 1 a strictly larger one. U must be drawn once, before or independently
of the samples, recorded, and never redrawn after seeing a result.
"""

from __future__ import annotations

from scipy.optimize import brentq
from scipy.stats import binom

__all__ = ["randomized_cp_lower"]


def randomized_cp_lower(x: int, n: int, alpha: float, u: float) -> float:
    """The (1 - alpha) randomized Clopper-Pearson lower bound on p from ``x`` successes in ``n``
    trials and the uniform draw ``u`` in [0, 1] (see the module docstring)."""
    if not 0 <= x <= n or n < 1:
        raise ValueError(f"need 0 <= x <= n and n >= 1, got x={x}, n={n}")
    if not 0.0 < alpha < 1.0 or not 0.0 <= u <= 1.0:
        raise ValueError(f"need alpha in (0, 1) and u in [0, 1], got alpha={alpha}, u={u}")

    def excess(p: float) -> float:
        return binom.sf(x, n, p) + u * binom.pmf(x, n, p) - alpha

    if excess(0.0) >= 0:  # x = 0 with u >= alpha: nothing excluded
        return 0.0
    if excess(1.0) < 0:  # x = n with u < alpha: every p < 1 excluded
        return 1.0
    return float(brentq(excess, 0.0, 1.0, xtol=1e-15, rtol=1e-15))
