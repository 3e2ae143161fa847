"""l1 certificates of Gaussian, Laplace and uniform noise on digits: table, p_A spread and plot.

Reads the ``certify.tsv`` of the runs ``<root>/noise_<noise>_s<sigma>`` (written by
``python train.py noise=<noise> sigma=<sigma> certify.norm=l1 ...``, see docs/results.md) and prints

- per sigma, a Markdown table: certified accuracy (%) at each l1 radius and the l1 ACR, one row per
  noise, with the largest l1 radius the noise can certify at the run's n and alpha (its "cap");
- per sigma, the spread of the certified lower bound p_A over the correctly classified images,
  recovered from each radius by inverting the noise's own radius formula (``Noise.radius``, the
  only place the formulas are written) numerically;
- per sigma, uniform against Laplace image by image (exact McNemar test: the runs certify the
  same images);
- with several sigmas, the best over sigma at each radius (Yang et al.'s Table 1 is such an
  envelope),

and draws certified accuracy against the l1 radius for the first sigma (one curve per noise, the
caps as dotted lines) into ``--out``. Usage::

    python benchmarks/noise_l1_plot.py [--root outputs/results] [--sigmas 0.5 0.25 1.0]
        [--radii 0 0.25 0.5 0.75 1 1.5 2] [--out docs/noise_l1.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
from scipy.optimize import brentq
from scipy.stats import binomtest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from smoothcert.metrics.certified import average_certified_radius, certified_accuracy  # noqa: E402
from smoothcert.noise import GaussianNoise, LaplaceNoise, UniformNoise  # noqa: E402
from smoothcert.records import read_records  # noqa: E402
from smoothcert.stats.binomial import clopper_pearson_lower  # noqa: E402

NOISES = {"gaussian": GaussianNoise, "laplace": LaplaceNoise, "uniform": UniformNoise}
COLORS = {"gaussian": "tab:blue", "laplace": "tab:orange", "uniform": "tab:green"}


def load(root: Path, noise: str, sigma: float):
    path = root / f"noise_{noise}_s{sigma}" / "certify.tsv"
    meta, records = read_records(path)
    if meta.get("noise") != noise or meta.get("norm") != "l1" or float(meta["sigma"]) != sigma:
        raise SystemExit(
            f"{path}: expected noise {noise}, norm l1, sigma {sigma}; the header says noise "
            f"{meta.get('noise')}, norm {meta.get('norm')}, sigma {meta.get('sigma')}"
        )
    return meta, records


def cap(noise: str, sigma: float, n: int, alpha: float) -> tuple[float, float]:
    """(largest p_A lower bound, largest l1 radius) with n samples at level alpha: all n hit."""
    p_max = clopper_pearson_lower(n, n, alpha)
    return p_max, float(NOISES[noise](sigma).radius(p_max, "l1"))


def p_lower(noise: str, sigma: float, radius: float, p_max: float) -> float:
    """The p_A lower bound that gives ``radius``: the noise's radius formula inverted."""
    model = NOISES[noise](sigma)
    if radius <= 0:
        return 0.5
    return brentq(lambda p: float(model.radius(p, "l1")) - radius, 0.5 + 1e-12, p_max + 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("outputs/results"))
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5])
    parser.add_argument(
        "--radii", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    )
    parser.add_argument("--out", type=Path, default=Path("docs/noise_l1.png"))
    args = parser.parse_args()

    best: dict[str, list[tuple[float, float]]] = {}
    for k, sigma in enumerate(args.sigmas):
        runs = {noise: load(args.root, noise, sigma) for noise in NOISES}
        print(f"\nsigma = {sigma}: certified accuracy (%) at l1 radius r\n")
        cells = " | ".join(f"r={r:g}" for r in args.radii)
        print(f"| noise | {cells} | l1 ACR | l1 cap |")
        print("|---|" + "---:|" * (len(args.radii) + 2))
        caps = {}
        for noise, (meta, records) in runs.items():
            p_max, caps[noise] = cap(noise, sigma, int(meta["n"]), float(meta["alpha"]))
            top = max(r.radius for r in records)
            if top > caps[noise] + 1e-9:
                raise SystemExit(f"{noise} sigma {sigma}: radius {top} above the cap {caps[noise]}")
            accs = [certified_accuracy(records, r) for r in args.radii]
            best.setdefault(noise, [(-1.0, 0.0)] * len(args.radii))
            best[noise] = [max(b, (a, sigma)) for b, a in zip(best[noise], accs, strict=True)]
            row = " | ".join(f"{100 * a:.1f}" for a in accs)
            acr = average_certified_radius(records)
            print(f"| {noise} | {row} | {acr:.3f} | {caps[noise]:.3f} |")

        print(f"\nsigma = {sigma}: certified lower bound p_A of the correctly certified images\n")
        quantiles = (0.1, 0.25, 0.5, 0.75, 0.9)
        qs = " | ".join(f"q{int(100 * q)}" for q in quantiles)
        print(f"| noise | correct | {qs} | max | p_A >= 0.943 | p_A >= 0.99 |")
        print("|---|" + "---:|" * (len(quantiles) + 4))
        for noise, (meta, records) in runs.items():
            p_max = clopper_pearson_lower(int(meta["n"]), int(meta["n"]), float(meta["alpha"]))
            ps = np.array([p_lower(noise, sigma, r.radius, p_max) for r in records if r.correct])
            row = " | ".join(f"{v:.3f}" for v in np.quantile(ps, quantiles))
            print(
                f"| {noise} | {len(ps)} | {row} | {ps.max():.4f} | {(ps >= 0.943).sum()} "
                f"| {(ps >= 0.99).sum()} |"
            )

        print(f"\nsigma = {sigma}: uniform against Laplace, image by image (exact McNemar test)\n")
        print("| r | uniform only / Laplace only | p |")
        print("|---:|---|---:|")
        unif, lap = runs["uniform"][1], runs["laplace"][1]
        for r in args.radii:
            won = sum(
                u.correct and u.radius >= r and not (v.correct and v.radius >= r)
                for u, v in zip(unif, lap, strict=True)
            )
            lost = sum(
                v.correct and v.radius >= r and not (u.correct and u.radius >= r)
                for u, v in zip(unif, lap, strict=True)
            )
            p = binomtest(won, won + lost).pvalue if won + lost else 1.0
            print(f"| {r:g} | +{won} / -{lost} | {p:.2g} |")

        if k == 0:
            grid = np.arange(0.0, max(caps.values()) + 0.02, 0.005)
            fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
            for noise, (_meta, records) in runs.items():
                ys = [certified_accuracy(records, r) for r in grid]
                label = f"{noise} (ACR {average_certified_radius(records):.3f})"
                ax.step(grid, ys, where="post", color=COLORS[noise], label=label)
                ax.axvline(caps[noise], color=COLORS[noise], ls=":", lw=1)
            ax.set_xlabel("l1 radius (pixels in [0, 1])")
            ax.set_ylabel("certified accuracy")
            ax.set_ylim(0, 1.02)
            ax.set_xlim(0, 1.05 * max(max(args.radii), *caps.values()))
            ax.grid(alpha=0.3)
            meta = runs["gaussian"][0]
            ax.set_title(
                f"digits, sigma {sigma}, n {meta['n']}, alpha {meta['alpha']}"
                f" (dotted: each noise's largest l1 radius)",
                fontsize=8,
            )
            ax.legend()
            fig.tight_layout()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(args.out)
            plt.close(fig)
            print(f"\nwrote {args.out}")

    if len(args.sigmas) > 1:
        print("\nbest over sigma " + ", ".join(map(str, args.sigmas)) + " (sigma of the best)\n")
        cells = " | ".join(f"r={r:g}" for r in args.radii)
        print(f"| noise | {cells} |")
        print("|---|" + "---:|" * len(args.radii))
        for noise, cols in best.items():
            row = " | ".join(f"{100 * a:.1f} ({s:g})" if a > 0 else "0.0" for a, s in cols)
            print(f"| {noise} | {row} |")


if __name__ == "__main__":
    main()
