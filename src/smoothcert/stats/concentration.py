"""Distribution-free slacks of empirical frequencies (center smoothing's mass checks).

- Hoeffding, two-sided: the mean of n i.i.d. [0, 1] samples lies within
  ``sqrt(ln(2 / alpha) / (2 n))`` of its expectation with probability >= 1 - alpha.
- Dvoretzky-Kiefer-Wolfowitz, one-sided (Massart's constant): the empirical CDF of m i.i.d. samples
  stays below the true CDF plus ``sqrt(ln(1 / alpha) / (2 m))`` everywhere with probability
  >= 1 - alpha.
"""

from __future__ import annotations

import math


def hoeffding_slack(n: int, alpha: float) -> float:
    """Two-sided Hoeffding slack of a frequency from n samples: sqrt(ln(2 / alpha) / (2 n))."""
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def dkw_slack(m: int, alpha: float) -> float:
    """One-sided DKW slack of an empirical CDF from m samples: sqrt(ln(1 / alpha) / (2 m))."""
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * m))


def dkw_samples(gap: float, alpha: float) -> int:
    """The fewest m with ``dkw_slack(m, alpha) <= gap`` (``gap`` > 0), from the closed form
    ceil(ln(1 / alpha) / (2 gap^2))."""
    return math.ceil(math.log(1.0 / alpha) / (2.0 * gap * gap))
