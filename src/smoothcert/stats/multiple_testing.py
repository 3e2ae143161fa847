"""Multiple testing over many hypotheses at once (SegCertify's per-pixel tests): Holm,
Bonferroni, k-FWER (Lehmann-Romano), Benjamini-Hochberg and Benjamini-Yekutieli, run on the
histogram of p-value levels. statsmodels' ``multipletests`` is the oracle in the tests.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import binom
from torch import Tensor

from smoothcert.errors import ConfigError, check_count

# A "false certificate" is a pixel certified with a class whose true probability is <= tau.
# Family-wise procedures: P(any false certificate in the image) <= alpha (kfwer: P(more than
# ``budget`` of them) <= alpha), for each tau on its own (``joint``: for all tau at once).
# FDR procedures bound only the expected fraction of false certificates among certified pixels:
# "fdr" (Benjamini-Hochberg) when the pixels' p-values are PRDS (positively dependent), which
# pixels computed from shared samples need not be; "fdr_by" (Benjamini-Yekutieli, alpha divided
# by 1 + 1/2 + ... + 1/N) under any dependence. Neither is a family-wise certificate.
FAMILY_WISE = ("holm", "bonferroni", "kfwer")
FDR = ("fdr", "fdr_by")
CORRECTIONS = (*FAMILY_WISE, *FDR)


def check_correction(correction: str, budget: int = 0) -> tuple[str, int]:
    """Validates the multiple-testing procedure and the k-FWER error budget (one-line errors)."""
    if correction not in CORRECTIONS:
        raise ConfigError(
            f"correction={correction!r} is unknown: use one of {', '.join(CORRECTIONS)}"
        )
    budget = check_count(budget, "budget", minimum=0)
    if budget > 0 and correction != "kfwer":
        raise ConfigError(f"budget={budget} needs correction=kfwer (got {correction!r})")
    return correction, budget


def pvalue_table(n: int, tau: float, device: torch.device | str | None = None) -> Tensor:
    """``table[k] = P(Bin(n, tau) >= k)`` for k = 0..n (float64): the one-sided p-value of H0:
    p <= tau when the selected class appeared k times in n samples (scipy's ``binom.sf``)."""
    counts = np.arange(n + 1)
    return torch.as_tensor(binom.sf(counts - 1, n, tau), dtype=torch.float64, device=device)


def reject_levels(
    pvalues: Tensor, sizes: Tensor, alpha: float, correction: str = "holm", budget: int = 0
) -> Tensor:
    """Decisions of a multiple-testing procedure for hypotheses grouped by p-value.

    Args:
        pvalues: float64 ``[L]``, non-decreasing: the distinct p-value levels.
        sizes: ``[L]`` number of hypotheses at each level (zero allowed).
        alpha: the level.
        correction: ``holm``, ``bonferroni``, ``kfwer`` (Lehmann-Romano step-down with critical
            values k*alpha/N for i <= k and k*alpha/(N + k - i) after, k = budget + 1; Holm when
            budget = 0), ``fdr`` (Benjamini-Hochberg step-up) or ``fdr_by`` (Benjamini-Yekutieli:
            the same at alpha / (1 + 1/2 + ... + 1/N)); the FDR ones are not family-wise.
        budget: tolerated false rejections for ``kfwer``.

    Returns:
        bool ``[L]``: whether the hypotheses at each level are rejected. Ties are handled as in
        statsmodels' ``multipletests`` (all hypotheses sharing a p-value get the same decision),
        with the same floating-point comparisons, so decisions are identical to it.
    """
    sizes = sizes.to(torch.int64)
    total = int(sizes.sum())
    occupied = sizes > 0
    before = torch.cumsum(sizes, 0) - sizes  # hypotheses with a smaller p-value
    if total == 0:
        return torch.zeros_like(occupied)
    if correction == "bonferroni":
        return occupied & (pvalues <= alpha / float(total))
    if correction in FDR:
        fraction = (before + sizes).to(torch.float64) / float(total)  # last rank in the level / N
        if correction == "fdr_by":  # statsmodels' harmonic sum and operation order
            fraction = fraction / float(np.sum(1.0 / np.arange(1, total + 1)))
        passed = occupied & (pvalues <= fraction * alpha)
        # Step-up: everything up to the last passing level is rejected.
        return occupied & (
            torch.flip(torch.cummax(torch.flip(passed.int(), [0]), 0).values, [0]) > 0
        )
    k = budget + 1
    rank = torch.clamp(before + 1, min=k)  # the first (strictest) rank within the level
    critical = (k * alpha) / (total + k - rank).to(torch.float64)
    passed = (pvalues <= critical) | ~occupied
    # Step-down: reject up to (not including) the first failing level.
    return occupied & (torch.cummin(passed.int(), 0).values > 0)


def reject_counts(
    counts: Tensor, n: int, tau: float, alpha: float, correction: str = "holm", budget: int = 0
) -> Tensor:
    """Per-pixel decisions (bool, shape of ``counts``) for H0: p <= tau given ``counts`` of the
    selected class among ``n`` samples; the correction runs on the ``n + 1``-bin count histogram."""
    table = pvalue_table(n, tau, counts.device)
    sizes = torch.bincount(counts.flatten(), minlength=n + 1)
    # Larger counts have smaller p-values: levels ascending in p are counts n, n - 1, ..., 0.
    rejected = reject_levels(table.flip(0), sizes.flip(0), alpha, correction, budget).flip(0)
    return rejected[counts]
