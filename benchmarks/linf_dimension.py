"""The curse of dimensionality of l-infinity certificates (Kumar et al. 2020, Yang et al. 2020).

At the same per-coordinate noise level sigma and the same lower bound p_A, the linf radius of the
Gaussian certificate is its l2 radius over sqrt(d), and that of uniform noise on a cube is
``2 lambda (1 - (3/2 - p_A)^(1/d))``, about ``2 lambda ln(1 / (3/2 - p_A)) / d`` for large d: both
shrink with the input dimension d (uniform the faster), while the l2 and l1 radii do not depend
on d. The table compares them at d = 64 (8x8 digits), 784 (MNIST) and 3072 (CIFAR-10); the last
column is the Gaussian linf radius in 8-bit pixel levels (units of 1/255, as in "eps = 8/255").

Radii come from the noises' own ``radius`` (the only place the formulas are written), so this is
also a readable check of them. Usage: ``python benchmarks/linf_dimension.py [--sigma 0.25]
[--p 0.9 0.99]``.
"""

from __future__ import annotations

import argparse

from smoothcert.noise import GaussianNoise, UniformNoise

DIMENSIONS = {"digits 8x8": 64, "MNIST": 784, "CIFAR-10": 3072}


def rows(sigma: float, p_values: list[float]) -> list[tuple[str, int, float, float, float, float]]:
    """(dataset, d, p_A, Gaussian l2, Gaussian linf, uniform linf) for every d and p_A."""
    gaussian, uniform = GaussianNoise(sigma), UniformNoise(sigma)
    table = []
    for p in p_values:
        for name, d in DIMENSIONS.items():
            l2 = gaussian.radius(p, "l2")
            table.append(
                (name, d, p, l2, gaussian.radius(p, "linf", d), uniform.radius(p, "linf", d))
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--p", type=float, nargs="+", default=[0.9, 0.99])
    args = parser.parse_args()
    print(f"sigma = {args.sigma} (per-coordinate std of both noises); radii in [0, 1] pixel units")
    header = (
        f"{'dataset':<11} {'d':>5} {'p_A':>5} {'gauss l2':>9} {'gauss linf':>11} "
        f"{'unif linf':>10} {'unif/gauss':>10} {'gauss linf/(1/255)':>19}"
    )
    print(header)
    print("-" * len(header))
    for name, d, p, l2, g_inf, u_inf in rows(args.sigma, args.p):
        print(
            f"{name:<11} {d:>5} {p:>5} {l2:>9.4f} {g_inf:>11.5f} {u_inf:>10.6f} "
            f"{u_inf / g_inf:>10.3f} {255 * g_inf:>19.2f}"
        )


if __name__ == "__main__":
    main()
