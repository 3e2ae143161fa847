"""The settings of center-smoothing certification, checked before any training: the grid of noise
levels and input radii, one smoother per (distance, sigma), and the early one-line errors and
warnings about them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from smoothcert.certifiers.center import CenterSmooth, quantile_level, smallest_m
from smoothcert.distances import Distance
from smoothcert.errors import ConfigError, check_sigma, require
from smoothcert.records.center import Grid


def float_list(value: float | Sequence[float], setting: str) -> list[float]:
    """Sorted distinct non-negative floats from a number or a list; ConfigError otherwise."""
    values = sorted({float(v) for v in (value if isinstance(value, Sequence) else [value])})
    require(len(values) > 0, f"{setting} is empty: give a number or a list of numbers")
    require(values[0] >= 0, f"{setting}={values[0]} must be >= 0")
    return values


def noise_grid(
    sigma: float | Sequence[float],
    eps_in: float | Sequence[float] | None,
    h: float | Sequence[float] | None,
) -> tuple[list[float], list[float] | None, list[tuple[float, list[float]]]]:
    """The sorted noise levels, the sorted h (None with explicit radii) and the grid: each sigma
    with its input radii, eps_in = h * sigma for every h (the paper's protocol) or every explicit
    eps_in. Exactly one of ``eps_in`` and ``h`` is set; every sigma is > 0."""
    sigmas = float_list(sigma, "certify.sigma")
    check_sigma(sigmas[0], "certify.sigma")
    require(
        (eps_in is None) != (h is None),
        f"certify.eps_in={eps_in} and certify.h={h}: set exactly one of them (eps_in = h * "
        "sigma) and the other to null",
    )
    if h is None:
        radii = float_list(eps_in, "certify.eps_in")
        return sigmas, None, [(s, list(radii)) for s in sigmas]
    factors = float_list(h, "certify.h")
    return sigmas, factors, [(s, [v * s for v in factors]) for s in sigmas]


def build_smoothers(
    base: Callable[[Tensor], Tensor],
    distance: Distance,
    grid: Grid,
    batch_size: int,
    settings: Mapping[str, object],
) -> list[CenterSmooth]:
    """One smoother per sigma of ``grid`` (in its order), each checked to certify at least one of
    its eps_in; a one-line ConfigError (naming the setting, the sigma and the m needed) if not."""
    smoothers = []
    try:
        for sigma, eps_in in grid:
            smoother = CenterSmooth(base, distance, sigma, batch_size=batch_size, **settings)
            smoother.check_certifiable(eps_in)
            smoothers.append(smoother)
    except ConfigError as error:  # its messages start with the setting's name
        raise ConfigError(f"certify.{error}") from None
    return smoothers


def guarantee(smoother: CenterSmooth, short: bool = False) -> str:
    """What a certificate states, for record headers (and, ``short``, plot titles)."""
    total = f"{smoother.alpha1 + smoother.alpha2:g}"
    if short:
        return f"each x' within eps_in separately: P[moves > eps_out] <= {total}"
    return (
        f"for each x' with ||x' - x|| <= eps_in separately (noise at x' independent): "
        f"P[d(center(x), center(x')) > eps_out and neither abstains] <= alpha1 + alpha2 = {total}"
    )


def check_outputs_fit(distances: Mapping[str, Distance], out: Tensor, kind: str) -> None:
    """Each distance accepts the model's (``kind``) outputs ``out`` (a batch of one)."""
    for name, distance in distances.items():
        try:
            shape = tuple(distance(out, out).shape)
            problem = "" if shape == (1,) else f"it gives {shape} distances for one output"
        except (ConfigError, RuntimeError) as error:
            problem = str(error)
        require(
            not problem,
            f"certify.distance={name} does not fit the model's {kind} outputs "
            f"{tuple(out.shape[1:])}: {problem}",
        )


def warn_uncertifiable(smoother: CenterSmooth, grid: Grid) -> None:
    """Warns, per sigma, of the eps_in where q > 1 (no certificate, eps_out = inf) and the m
    that would certify them."""
    delta, m, alpha2 = smoother.delta, smoother.m, smoother.alpha2
    for sigma, eps_in in grid:
        lost = [e for e in eps_in if quantile_level(e, sigma, delta, m, alpha2) > 1]
        if lost:
            need = smallest_m(lost[-1], sigma, delta, alpha2)
            fix = "no m certifies them all" if need is None else f"m >= {need} would certify them"
            rank_zero_warn(
                f"certify.m={m} gives no certificate (eps_out = inf) at eps_in={lost} at "
                f"sigma={sigma}: q > 1 there; {fix}"
            )
