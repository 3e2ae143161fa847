"""Distribution-free confidence bounds on quantiles by order statistics.

Let Y_1, ..., Y_n be i.i.d. real samples with CDF F, Y_(1) <= ... <= Y_(n) their order statistics
(1-based ranks), and Q_p = inf{y : F(y) >= p} the p-quantile. Then, for every F:

- upper bound: Y_(q) >= Q_p unless at least q samples fall below Q_p, and P(Y < Q_p) <= p, so
  ``P(Y_(q) >= Q_p) >= BinomCDF(q - 1; n, p)``. The upper rank is the smallest q with
  ``BinomCDF(q - 1; n, p) >= 1 - alpha``;
- lower bound: Y_(q) <= Q_p as soon as q samples are <= Q_p, and P(Y <= Q_p) >= p, so
  ``P(Y_(q) <= Q_p) >= 1 - BinomCDF(q - 1; n, p)``. The lower rank is the largest q with
  ``1 - BinomCDF(q - 1; n, p) >= 1 - alpha``, i.e. ``BinomCDF(q - 1; n, p) <= alpha``.

Both hold with equality for continuous F, so the bounds are exact, not conservative. When no rank
in 1..n qualifies the bound is infinite (``None`` here; +inf / -inf for the values): the upper
rank exists iff ``p^n <= alpha``, the lower iff ``(1 - p)^n <= alpha``.

The ranks are 1-based: the q-th smallest value is ``sorted[q - 1]`` in 0-based indexing. Using
``sorted[q]`` instead (Chiang et al.'s reference does) moves the lower bound one rank up, which
is anti-conservative (see ``tests/median``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binom
from torch import Tensor

from smoothcert.errors import ConfigError, check_alpha, check_count


def _check(n: int, p: float, alpha: float) -> tuple[int, float, float]:
    n = check_count(n, "n")
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ConfigError(f"the quantile level p={p} must lie in (0, 1)")
    return n, p, check_alpha(alpha)


def upper_rank(n: int, p: float, alpha: float) -> int | None:
    """The smallest 1-based rank q with ``BinomCDF(q - 1; n, p) >= 1 - alpha``: Y_(q) >= Q_p with
    probability at least 1 - alpha for any distribution. None (an infinite bound) when even
    q = n fails, i.e. ``p^n > alpha``."""
    n, p, alpha = _check(n, p, alpha)
    # BinomCDF(k) >= 1 - alpha  <=>  BinomSF(k) <= alpha; the survival function keeps precision
    # at small alpha. ppf gives the candidate, the loops correct its rounding.
    k = int(min(max(binom.isf(alpha, n, p), 0), n))
    while k > 0 and binom.sf(k - 1, n, p) <= alpha:
        k -= 1
    while k <= n and binom.sf(k, n, p) > alpha:
        k += 1
    return k + 1 if k + 1 <= n else None


def lower_rank(n: int, p: float, alpha: float) -> int | None:
    """The largest 1-based rank q with ``BinomCDF(q - 1; n, p) <= alpha``: Y_(q) <= Q_p with
    probability at least 1 - alpha for any distribution. None (an infinite bound) when even q = 1
    fails, i.e. ``(1 - p)^n > alpha``."""
    n, p, alpha = _check(n, p, alpha)
    k = int(min(max(binom.ppf(alpha, n, p), 0), n))
    while k < n and binom.cdf(k + 1, n, p) <= alpha:
        k += 1
    while k >= 0 and binom.cdf(k, n, p) > alpha:
        k -= 1
    return k + 1 if k >= 0 else None


def smallest_n(p_lower: float, p_upper: float, alpha: float) -> int:
    """The fewest samples for which both bounds are finite: the smallest n with
    ``p_upper^n <= alpha`` and ``(1 - p_lower)^n <= alpha``."""
    alpha = check_alpha(alpha)
    worst = max(float(p_upper), 1.0 - float(p_lower))
    if not 0.0 < worst < 1.0:
        raise ConfigError(f"quantile levels ({p_lower}, {p_upper}) must lie in (0, 1)")
    n = max(1, math.ceil(math.log(alpha) / math.log(worst) - 1e-9))
    while worst**n > alpha:  # guard the rounding of the logarithms
        n += 1
    while n > 1 and worst ** (n - 1) <= alpha:
        n -= 1
    return n


@dataclass(frozen=True)
class QuantileRanks:
    """The 1-based ranks bounding Q_{p_lower} from below and Q_{p_upper} from above, each at
    confidence 1 - ``alpha`` (per bound); None where the bound is infinite."""

    n: int
    p_lower: float
    p_upper: float
    alpha: float
    lower: int | None
    upper: int | None

    @property
    def finite(self) -> bool:
        return self.lower is not None and self.upper is not None


def quantile_ranks(n: int, p_lower: float, p_upper: float, alpha: float) -> QuantileRanks:
    """``lower_rank(n, p_lower, alpha)`` and ``upper_rank(n, p_upper, alpha)`` together."""
    return QuantileRanks(
        n,
        float(p_lower),
        float(p_upper),
        float(alpha),
        lower_rank(n, p_lower, alpha),
        upper_rank(n, p_upper, alpha),
    )


def order_statistic_quantile(values: Tensor, q: float) -> float:
    """The q-quantile as an order statistic: the ceil(q m)-th smallest of m values (inf if q > 1).

    At least a q fraction of the values are <= the result; no interpolation.
    """
    m = values.numel()
    if q > 1.0:
        return math.inf
    rank = max(1, math.ceil(q * m - 1e-9))  # guard q * m landing a hair above an integer
    return float(values.reshape(-1).kthvalue(rank).values)
