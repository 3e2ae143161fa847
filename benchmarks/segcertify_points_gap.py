"""Holm against Bonferroni on real point clouds as the number of points N grows (Fig. 2c of paper
003, on a trained model instead of the toy oracle of ``segcertify_power.py``).

For each N, the same test clouds of ``shapes3d`` (one per category, ``raw_points = max(2048, N)``
surface points, normalized, resampled to N) are sampled once per cloud with SegCertify's two
passes (``sample_modes_and_counts``: n0 to select, n to count), and both corrections decide on the
*same* counts (``certify_counts``), so the gap is paired: Holm certifies a superset of
Bonferroni's points. Printed: per N, the fraction of points certified (not abstained) and the
certified per-point accuracy under each correction, and the gap.

Usage (a checkpoint of ``+experiment=shapes3d_seg`` with normals)::

    python benchmarks/segcertify_points_gap.py outputs/RUN/checkpoints/last.ckpt \
        --sizes 256 1024 4096 --clouds 5 --tau 0.9
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_modules.segmentation import PointSegmentationModule
from smoothcert.certifiers.segmentation import certify_counts, sample_modes_and_counts
from smoothcert.data.pointclouds import Shapes3D
from smoothcert.noise import GaussianNoise, example_generator
from smoothcert.perturbation import PointCoordinates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--clouds", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--tau", type=float, default=0.9)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    module = PointSegmentationModule.load_from_checkpoint(args.checkpoint).eval()
    model = module.inference_model()
    shift = PointCoordinates(GaussianNoise(args.sigma))
    print(
        f"tau={args.tau} sigma={args.sigma} n0={args.n0} n={args.n} alpha={args.alpha}, "
        f"{args.clouds} test clouds; rates over all their points"
    )
    print("| N | certified Bon | certified Holm | Holm - Bon | acc Bon | acc Holm | s/cloud |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        data = Shapes3D(args.clouds, "test", 0, size, True, raw_points=max(2048, size))
        kept = {"bonferroni": [0, 0], "holm": [0, 0]}
        start = time.perf_counter()
        for idx in range(args.clouds):
            x, labels = data[idx]
            modes, counts = sample_modes_and_counts(
                model, x, args.sigma, args.n0, args.n, args.batch_size,
                example_generator(0, idx), perturbation=shift,
            )  # fmt: skip
            for correction in kept:
                classes, _ = certify_counts(modes, counts, args.n, shift, args.tau, args.alpha,
                                            correction)  # fmt: skip
                kept[correction][0] += int((classes >= 0).sum())
                kept[correction][1] += int((classes == labels).sum())
        seconds = (time.perf_counter() - start) / args.clouds
        total = size * args.clouds
        (bon, bon_ok), (holm, holm_ok) = kept["bonferroni"], kept["holm"]
        print(f"| {size} | {bon / total:.4f} | {holm / total:.4f} | {(holm - bon) / total:.4f} "
              f"| {bon_ok / total:.4f} | {holm_ok / total:.4f} | {seconds:.1f} |")  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
