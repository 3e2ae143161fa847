"""The settings of center-smoothing certification, checked before any training: the settings
dataclass, the grid of noise levels and input radii, one smoother per (distance, sigma), the
record header, and the early one-line errors and warnings about them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from callbacks.certification.checks import CERTIFIER_FOR_TASK
from smoothcert.certifiers.center import (
    CenterSmooth,
    center_noise,
    output_factor,
    quantile_level,
    smallest_m,
)
from smoothcert.distances import Distance, build_distance
from smoothcert.errors import ConfigError, check_count, check_sigma, require
from smoothcert.noise import Noise
from smoothcert.records.center import Grid

OUTPUT_KINDS = ("image", "label_map", "box")


@dataclass
class CenterSettings:
    """Center smoothing's settings: the input radii ``eps_in`` or the factors ``h`` (eps_in = h *
    sigma; one of them, checked with the noise levels by ``noise_grid``), the sample counts
    ``n`` (center and its mass check) and ``m`` (certificate), the mass margin ``delta``, the
    failure probabilities ``alpha1`` and ``alpha2``, the relaxed-triangle constant ``gamma`` (None:
    the distance's own), ``distance`` (a name or a list: ``distances``, each certified with its
    own center), the ``feature_network`` of distance=feature, ``candidates`` (see
    ``CenterSmooth``) and ``num_images`` example figures."""

    eps_in: float | Sequence[float] | None = None  # the input radii (``noise_grid``), or
    h: float | Sequence[float] | None = None  # eps_in = h * sigma
    n: int = 10_000
    m: int = 1_000_000
    delta: float = 0.05
    alpha1: float = 0.005
    alpha2: float = 0.005
    gamma: float | None = None
    distance: str | Sequence[str] = "l2"
    feature_network: nn.Module | None = None
    candidates: int | None = None
    num_images: int = 4
    distances: list[str] = field(init=False)
    settings: dict[str, Any] = field(init=False)  # what every smoother takes

    def __post_init__(self) -> None:
        names = self.distance
        self.distances = [names] if isinstance(names, str) else [str(d) for d in names]
        require(
            len(self.distances) == len(set(self.distances)) > 0,
            f"certify.distance={names}: name a distance or a list of different distances",
        )
        self.settings = {"n": self.n, "m": self.m, "delta": self.delta, "alpha1": self.alpha1}
        self.settings.update(alpha2=self.alpha2, gamma=self.gamma, candidates=self.candidates)
        self.num_images = check_count(self.num_images, "certify.num_images", minimum=0)

    def smoothers(
        self,
        base: Callable[[Tensor], Tensor],
        grid: Grid,
        batch_size: int,
        noise: str,
        module: nn.Module,
        num_classes: int | None,
    ) -> dict[str, list[CenterSmooth]]:
        """Per distance, one smoother of ``base`` (run with ``module`` in eval mode) per sigma of
        ``grid`` (``build_smoothers``); ``num_classes`` and the feature network build the
        distances that need them (label Jaccard, feature)."""
        settings = {**self.settings, "modules": (module,), "noise": noise}
        smoothers = {}
        for name in self.distances:
            network = self.feature_network
            distance = build_distance(name, num_classes, network, setting="certify.distance")
            smoothers[name] = build_smoothers(base, distance, grid, batch_size, settings)
        return smoothers


def check_center_noise(noise: Noise) -> None:
    """A one-line ConfigError (naming certify.noise) unless center smoothing supports ``noise``."""
    try:
        center_noise(noise)
    except ConfigError as error:
        raise ConfigError(f"certify.noise: {error}") from None


def objective_key(distance: str, grid: Grid, h: Sequence[float] | None) -> str:
    """The median eps_out under ``distance`` at the first sigma's smallest eps_in (named by its h
    when eps_in = h * sigma, so that jobs of a sigma sweep share the key; ``/sigma<s>`` with
    several sigmas)."""
    at = f"/sigma{grid[0][0]:g}" if len(grid) > 1 else ""
    point = f"{grid[0][1][0]:g}" if h is None else f"h{h[0]:g}"
    return f"cert/{distance}/eps_out@{point}{at}"


def check_fits(contract: Any, model: str) -> None:
    """Center smoothing certifies any model whose contract states a ``structured_output`` of a
    known output kind; a one-line ConfigError naming the certifier that fits otherwise."""
    if contract.structured_output is None:
        suggestion = CERTIFIER_FOR_TASK.get(contract.task)
        fix = f": use certify={suggestion}" if suggestion else ""
        raise ConfigError(
            f"certify=center needs a model with structured_output (an autoencoder, "
            f"segmentation or box model); {model} has none{fix}"
        )
    kind = contract.output_kind
    require(kind in OUTPUT_KINDS, f"model output_kind={kind!r} is not one of {OUTPUT_KINDS}")


def check_first_output(
    smoothers: Mapping[str, list[CenterSmooth]], out: Tensor, kind: str
) -> dict[str, int]:
    """Checks that every distance accepts the model's (``kind``) output ``out`` on the first
    example; returns per distance how many samples the center is chosen among for such outputs
    (the candidates mode, forced or by the memory budget, is decided by the output size)."""
    check_outputs_fit({name: found[0].distance for name, found in smoothers.items()}, out, kind)
    try:
        return {name: found[0]._num_candidates(out) for name, found in smoothers.items()}
    except ConfigError as error:
        raise ConfigError(f"certify.{error}") from None


def center_header(
    smoother: CenterSmooth,
    name: str,
    grid: Grid,
    h: Sequence[float] | None,
    candidates: int | None,
    feature_network: nn.Module | None,
    kind: str,
) -> dict[str, object]:
    """The settings in the header of ``center_<name>.tsv``: ``eps_in`` a list with one sigma, one
    list per sigma with several; ``candidates``: the count chosen in ``setup`` (None: not yet)."""
    chosen = smoother.candidates if candidates is None else candidates
    return {
        "distance": name,
        "gamma": smoother.gamma,
        "eps_out_factor": output_factor(smoother.gamma),
        "eps_in": [eps_in for _, eps_in in grid] if len(grid) > 1 else grid[0][1],
        "h": h,
        "n": smoother.n,
        "m": smoother.m,
        "delta": smoother.delta,
        "alpha1": smoother.alpha1,
        "alpha2": smoother.alpha2,
        "candidates": chosen,
        "min_candidates": smoother.min_candidates,
        "candidate_miss_budget": smoother.miss_budget
        if (smoother.n if candidates is None else candidates) < smoother.n
        else 0.0,
        "guarantee": guarantee(smoother),
        "feature_network": type(feature_network).__name__ if name == "feature" else None,
        "output_kind": kind,
    }


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
