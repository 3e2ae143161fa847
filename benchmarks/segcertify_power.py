"""Power of SegCertify (Holm, Bonferroni), IndivClass and JointClass on the toy data of Section 6.1.

The toy model of Fischer et al. (2021), Section 6.1: an oracle over N components and two classes
that is right on N - k components with probability 1 - gamma and on k "bad" components with
probability 1 - 5 gamma (clamped to [0, 1]), independently. The rate reported is the paper's y-axis
in Fig. 2: the fraction of components that get a class (are not abstained on), averaged over
trials; an ideal algorithm reaches the column ``f^tau``, the rate of the exact smoothed model
(1.0, or 0.99 once the bad component drops to p <= tau).

Instead of running a model, each trial draws what the certifiers would see from the oracle's
known probabilities: per component, Bin(n0, p) votes for the correct class (ties go to the lower
class, the correct one, as with ``argmax``), then Bin(n, p) or Bin(n, 1 - p) hits of the selected
class. The decisions are smoothcert's own (``certify_counts``, ``indivclass_counts``,
``clopper_pearson_lower_table``); JointClass draws the n0 joint maps, takes the most frequent one
and draws its hits among the n fresh maps from its exact match probability. SegCertify-Bonferroni
and IndivClass also have closed forms, printed as a check on the simulation.

Tables: Fig. 2a/2b side by side (N=100, k=1, gamma 0..0.1, alpha 0.001, tau 0.75, n0 = n = 100
and 1000), then Fig. 2c (gamma 0.05, k=0, n0 = n = 1000, alpha 0.1, N = 10..10^5). The paper does
not state tau for Fig. 2c; the authors' released script uses 0.9, and so do we (at 0.75 both
corrections certify every component at every N here).

Usage: ``python benchmarks/segcertify_power.py [--quick] [--trials 600] [--seed 0]``
(one to two minutes on two CPU cores at the defaults; ``--quick`` takes a few seconds).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import binom

from smoothcert.certifiers.classification import ABSTAIN
from smoothcert.certifiers.segmentation import certify_counts, indivclass_counts
from smoothcert.stats.binomial import clopper_pearson_lower_table
from smoothcert.stats.multiple_testing import pvalue_table

SIGMA = 0.25  # only scales radii; rates do not depend on it
CORRECT, WRONG = 0, 1
SEGCERTIFY = ("bonferroni", "holm")
PIXELS_PER_CHUNK = 1 << 21  # trials are drawn in chunks of about this many components


def toy_probabilities(num: int, bad: int, gamma: float) -> np.ndarray:
    """P(correct) per component: ``1 - 5 gamma`` (clamped) on the first ``bad``, ``1 - gamma``."""
    p = np.full(num, 1.0 - gamma)
    p[:bad] = np.clip(1.0 - 5.0 * gamma, 0.0, 1.0)
    return p


def draw_counts(p: np.ndarray, n0: int, n: int, trials: int, rng: np.random.Generator):
    """``(modes, counts, p_mode)``, each ``[trials, N]``: the class selected from n0 votes, its
    hits among n fresh samples, and its true probability (to spot false certificates)."""
    votes = rng.binomial(n0, p, size=(trials, p.size))
    modes = np.where(2 * votes >= n0, CORRECT, WRONG)
    p_mode = np.where(modes == CORRECT, p, 1.0 - p)
    return modes, rng.binomial(n, p_mode), p_mode


def jointclass_certified(p: np.ndarray, n0: int, n: int, alpha: float, rng) -> bool:
    """One JointClass run: the most frequent of n0 joint maps (lexicographically first on ties,
    as ``torch.unique`` + ``argmax``) must have Clopper-Pearson lower bound above 1/2."""
    wrong = rng.random((n0, p.size)) >= p
    rows, frequency = np.unique(np.packbits(wrong, axis=1), axis=0, return_counts=True)
    mode = np.unpackbits(rows[frequency.argmax()], count=p.size).astype(bool)
    match = float(np.prod(np.where(mode, 1.0 - p, p)))
    return bool(clopper_pearson_lower_table(n, alpha)[rng.binomial(n, match)] > 0.5)


def exact_rates(p: np.ndarray, n0: int, n: int, tau: float, alpha: float) -> dict[str, float]:
    """Closed forms (scipy only): SegCertify-Bonferroni's expected rate and IndivClass's
    probability of certifying the whole map (components are independent)."""
    p_mode_correct = binom.sf(np.ceil(n0 / 2) - 1, n0, p)  # ties go to the correct class

    def p_certified(min_count: int) -> np.ndarray:
        hit = binom.sf(min_count - 1, n, p), binom.sf(min_count - 1, n, 1.0 - p)
        return p_mode_correct * hit[0] + (1.0 - p_mode_correct) * hit[1]

    sf = binom.sf(np.arange(n + 1) - 1, n, tau)
    bonferroni_min = int(np.argmax(sf <= alpha / p.size)) if sf[-1] <= alpha / p.size else n + 1
    above_half = clopper_pearson_lower_table(n, alpha / p.size) > 0.5
    indiv_min = int(np.argmax(above_half)) if above_half.any() else n + 1
    return {
        "bonferroni": float(p_certified(bonferroni_min).mean()),
        "indivclass": float(np.prod(p_certified(indiv_min))),
    }


def simulate(p, n0, n, tau, alpha, trials, rng, methods) -> dict[str, np.ndarray]:
    """Per-trial certified rates per method, plus ``false:<method>`` flags (a component
    certified with true probability <= tau: a family-wise error of SegCertify)."""
    out = {m: np.zeros(trials) for m in methods}
    out.update({f"false:{m}": np.zeros(trials, bool) for m in methods if m in SEGCERTIFY})
    chunk = max(1, PIXELS_PER_CHUNK // p.size)
    for start in range(0, trials, chunk):
        modes, counts, p_mode = draw_counts(p, n0, n, min(chunk, trials - start), rng)
        modes_t, counts_t = torch.from_numpy(modes), torch.from_numpy(counts)
        for i in range(modes.shape[0]):
            t = start + i
            for method in methods:
                if method == "jointclass":
                    out[method][t] = jointclass_certified(p, n0, n, alpha, rng)
                    continue
                if method == "indivclass":
                    classes, _ = indivclass_counts(modes_t[i], counts_t[i], n, SIGMA, alpha)
                else:
                    classes, _ = certify_counts(
                        modes_t[i], counts_t[i], n, SIGMA, tau, alpha, method
                    )
                certified = (classes != ABSTAIN).numpy()
                out[method][t] = certified.mean()
                if method in SEGCERTIFY:
                    out[f"false:{method}"][t] = bool((certified & (p_mode[i] <= tau)).any())
    return out


def deviation(per_trial: np.ndarray, exact: float, method: str) -> float:
    """``|mean - exact|`` in Monte-Carlo standard errors: binomial ones from the exact value for
    the all-or-nothing IndivClass, the sample's own otherwise (floored at 1 / (2 trials))."""
    if method == "indivclass":
        spread = np.sqrt(exact * (1.0 - exact))
    else:
        spread = per_trial.std(ddof=1) if per_trial.size > 1 else 0.0
    error = max(spread / np.sqrt(per_trial.size), 0.5 / per_trial.size)
    return abs(per_trial.mean() - exact) / error


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def fig2ab(args: argparse.Namespace) -> None:
    methods = ("jointclass", "indivclass", "bonferroni", "holm")
    names = {"jointclass": "Joint", "indivclass": "Indiv", "bonferroni": "Bon", "holm": "Holm"}
    gammas = np.round(np.arange(0.0, 0.1 + 1e-9, args.gamma_step), 6)
    samples = (100, 1000)
    num, bad, tau, alpha = 100, 1, 0.75, 0.001
    rows, worst, false = (
        [],
        {s: 0.0 for s in samples},
        {(s, m): 0 for s in samples for m in SEGCERTIFY},
    )
    for g, gamma in enumerate(gammas):
        p = toy_probabilities(num, bad, float(gamma))
        row = [f"{gamma:.3f}", f"{np.mean(p > tau):.2f}"]
        for s in samples:
            rng = np.random.default_rng([args.seed, 2, s, g])
            rates = simulate(p, s, s, tau, alpha, args.trials, rng, methods)
            row += [f"{rates[m].mean():.3f}" for m in methods]
            exact = exact_rates(p, s, s, tau, alpha)
            worst[s] = max(worst[s], *(deviation(rates[m], exact[m], m) for m in exact))
            for m in SEGCERTIFY:
                false[s, m] += int(rates[f"false:{m}"].sum())
        rows.append(row)
    header = ["gamma", "f^tau"] + [f"{names[m]} n={s}" for s in samples for m in methods]
    print(f"\n### Fig. 2a (n0 = n = 100) and 2b (n0 = n = 1000): certified rate, N={num}, k={bad}")
    print(f"alpha={alpha}, tau={tau} (SegCertify), {args.trials} trials per cell\n")
    print(markdown(header, rows))
    for s in samples:
        wrong_guess = binom.cdf(np.ceil(s / 2) - 1, s, 1.0 - gammas[-1])
        print(
            f"\nn0 = n = {s}: SegCertify-Bon certifies a component iff its count >= "
            f"{critical_count(s, tau, alpha / num)} of {s}; P(a wrong class from the n0 votes) "
            f"on a normal component at gamma={gammas[-1]:.2f}: {wrong_guess:.1e}. "
            f"Largest gap between simulation and closed form (IndivClass, SegCertify-Bon, "
            f"{len(gammas)} gammas): {worst[s]:.1f} standard errors; "
            f"trials with a false certificate: Holm {false[s, 'holm']}, "
            f"Bon {false[s, 'bonferroni']} of {args.trials * len(gammas)}."
        )


def fig2c(args: argparse.Namespace) -> None:
    gamma, n, tau, alpha = 0.05, 1000, 0.9, 0.1
    rows, false = [], dict.fromkeys(SEGCERTIFY, 0)
    for size in args.sizes:
        p = toy_probabilities(size, args.fig2c_bad, gamma)
        trials = max(args.min_trials, min(args.trials, args.pixel_budget // size))
        rng = np.random.default_rng([args.seed, 3, size])
        rates = simulate(p, n, n, tau, alpha, trials, rng, SEGCERTIFY)
        gap = rates["holm"] - rates["bonferroni"]  # paired: same counts
        exact = exact_rates(p, n, n, tau, alpha)["bonferroni"]
        rows.append(
            [
                f"{size:,}",
                str(trials),
                f"{np.mean(p > tau):.4f}",
                f"{rates['bonferroni'].mean():.4f}",
                f"{exact:.4f}",
                f"{rates['holm'].mean():.4f}",
                f"{gap.mean():.4f} +- {gap.std(ddof=1) / np.sqrt(trials) if trials > 1 else 0:.4f}",
                f"{alpha / size:.0e}",
                str(critical_count(n, tau, alpha / size)),
            ]
        )
        for m in SEGCERTIFY:
            false[m] += int(rates[f"false:{m}"].sum())
    header = [
        "N",
        "trials",
        "f^tau",
        "Bon",
        "Bon exact",
        "Holm",
        "Holm - Bon (+- s.e.)",
        "alpha/N",
        "Bon needs count >=",
    ]
    print(
        f"\n### Fig. 2c: certified rate vs N, gamma={gamma}, k={args.fig2c_bad}, "
        f"n0 = n = {n}, alpha={alpha}, tau={tau}\n"
    )
    print(markdown(header, rows))
    print(
        f"\ntrials with a false certificate: Holm {false['holm']}, Bon {false['bonferroni']} "
        f"(only a component with p <= tau can be one: k={args.fig2c_bad} per map here)"
    )


def critical_count(n: int, tau: float, level: float) -> int:
    """The smallest count whose p-value (smoothcert's table) is at most ``level``."""
    passing = (pvalue_table(n, tau) <= level).nonzero()
    return int(passing[0]) if passing.numel() else n + 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=600, help="trials per cell (paper: 600)")
    parser.add_argument("--gamma-step", type=float, default=0.01, help="paper: 0.001, smoothed")
    parser.add_argument(
        "--sizes", default="10,100,1000,10000,100000", help="Fig. 2c: comma-separated N"
    )
    parser.add_argument("--fig2c-bad", type=int, default=0, help="k in Fig. 2c (script: 1)")
    parser.add_argument(
        "--pixel-budget",
        type=int,
        default=20_000_000,
        help="Fig. 2c: at most this many components per N (fewer trials at large N)",
    )
    parser.add_argument("--min-trials", type=int, default=20, help="Fig. 2c: at least this many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="60 trials, gamma step 0.02, N<=10^4")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.gamma_step = 60, 0.02
        args.sizes, args.pixel_budget = "10,100,1000,10000", 1_000_000
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    return args


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    print(f"numpy {np.__version__}, torch {torch.__version__}, seed {args.seed}")
    fig2ab(args)
    fig2c(args)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
