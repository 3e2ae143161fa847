"""Whether a certifier fits a model, checked before training (one-line errors)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from callbacks.reporting import key_root
from smoothcert.errors import ConfigError, check_alpha, check_count
from smoothcert.noise import GaussianNoise, Noise
from smoothcert.stats.binomial import clopper_pearson_lower

# The certifier that fits each model task, for messages.
CERTIFIER_FOR_TASK = {
    "classification": "cohen",
    "denoised_classification": "cohen",
    "segmentation": "segcertify (or center)",
    "reconstruction": "center",
    "box_regression": "center or certify=median",
    "detection": "median",
}


def check_task(option: str, tasks: Sequence[str], task: str, training: bool = True) -> None:
    """One-line ConfigError unless a ``certify=option`` certifier (of ``tasks``) fits ``task``
    (``training``: the advice offers certify=none, which certify.py cannot use)."""
    if tasks and task not in tasks:
        suggestion = CERTIFIER_FOR_TASK.get(task)
        fix = f"use certify={suggestion}" if suggestion else "choose a certifier for it"
        if training:
            fix += ", or certify=none to train without certifying"
        raise ConfigError(
            f"certify={option} certifies {' or '.join(tasks)} models, but the model is a "
            f"{task or 'custom'} model: {fix}"
        )


def sigma_levels(value: float | Iterable[float]) -> list[float]:
    """A noise level or several (a number or a list, e.g. a model's ``train_sigma``) as floats."""
    return [float(value)] if isinstance(value, (int, float, str)) else [float(v) for v in value]


def number_or_list(values: Sequence[float]) -> float | list[float]:
    """One value as itself, several as a list (for messages and headers)."""
    return values[0] if len(values) == 1 else list(values)


def trained_sigma(pl_module: Any) -> float | list[float] | None:
    """The model's training noise level(s): ``train_sigma`` (from the noise it trains with), or
    the hyperparameter of that name for modules that keep it there; None if unknown."""
    if getattr(pl_module, "external_weights", None):  # certify.py weights=: trained elsewhere
        return None
    value = getattr(pl_module, "train_sigma", None)
    return pl_module.hparams.get("train_sigma") if value is None else value


def certify_noise(sigma: float, noise: Noise | None, norm: str | None) -> tuple[Noise, str]:
    """The certifier's smoothing noise and norm: the noise node's distribution (None: Gaussian)
    at ``certify.sigma`` (it may differ from the training level), and ``norm`` (None: the noise's
    natural norm). One-line ConfigErrors name the setting and the supported (noise, norm) pairs."""
    if noise is not None and not isinstance(noise, Noise):
        raise ConfigError(f"certify.noise={noise!r} must be a smoothcert.noise.Noise")
    noise = GaussianNoise(sigma) if noise is None else noise
    if noise.levels != [sigma]:
        noise = type(noise)(sigma)
    try:
        return noise, noise.check_norm(norm)
    except ConfigError as error:
        raise ConfigError(f"certify.norm={norm}: {error}") from None


def check_perturbation(option: str, sigma: float, perturbation: Any, kind: type | None) -> None:
    """One-line ConfigErrors unless ``perturbation`` is of the ``kind`` a ``certify=option``
    certifier needs (None: any) and its noise is at the certifier's ``sigma``."""
    if kind is not None and not isinstance(perturbation, kind):
        name = getattr(perturbation, "name", type(perturbation).__name__)
        raise ConfigError(
            f"certify={option} certifies {kind.name}s: set perturbation={kind.name} (got {name})"
        )
    if perturbation.sigma != sigma:
        raise ConfigError(
            f"certify.sigma={sigma} differs from perturbation={perturbation.name}'s noise "
            f"sigma={perturbation.sigma} ({perturbation.units}): certify at the perturbation's "
            "level"
        )


def norm_prefix(norm: str, sound: bool = True) -> str:
    """The summary-key prefix of radii in ``norm``: ``cert/`` for l2, else ``cert/<norm>/``; for
    a heuristic (not ``sound``, e.g. BaseSPT) ``heuristic/`` in place of ``cert/``."""
    root = key_root(sound)
    return f"{root}/" if norm == "l2" else f"{root}/{norm}/"


def check_batch_size(value: object, option: str, auto: bool) -> int | str:
    """``certify.batch_size`` as an integer >= 1, or ``"auto"`` for a certifier that chooses it
    (``auto``); anything else is a one-line ConfigError."""
    if value == "auto" and auto:
        return "auto"
    if value == "auto":
        raise ConfigError(
            f"certify.batch_size=auto: certify={option} does not choose its batch size; give a "
            "number of noisy inputs per forward pass (certifications do not depend on it)"
        )
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or number != int(number) or number < 1:
        wanted = "an integer >= 1" + (" or auto" if auto else "")
        raise ConfigError(f"certify.batch_size={value} must be {wanted}")
    return int(number)


def check_counts(**counts: object) -> dict[str, int]:
    """Each ``certify.<name>=count`` as an integer >= 1 (a one-line ConfigError otherwise)."""
    return {name: check_count(value, f"certify.{name}") for name, value in counts.items()}


def check_alphas(**alphas: object) -> dict[str, float]:
    """Each ``certify.<name>=alpha`` as a level in (0, 1) (a one-line ConfigError otherwise)."""
    return {name: check_alpha(value, f"certify.{name}") for name, value in alphas.items()}


def check_radii(radii: Sequence[float], norm: str) -> list[float]:
    """``certify.radii`` as floats; a one-line ConfigError for a negative one."""
    values = [float(r) for r in radii]
    if any(r < 0 for r in values):
        raise ConfigError(
            f"certify.radii={list(radii)} has a negative radius: radii are {norm} distances (>= 0),"
            " e.g. certify.radii=[0.0,0.25,0.5]"
        )
    return values


def check_gammas(gammas: object, perturbation: str) -> list[float] | None:
    """``certify.gammas`` (the gamma factors at which certified accuracy is reported) as floats,
    each in (0, inf); None when unset. A one-line ConfigError for anything else, or when the
    perturbation is not ``gamma``."""
    if gammas is None:
        return None
    example = "e.g. certify.gammas=[0.5,0.8,1.25,2]"
    listed = gammas if isinstance(gammas, Sequence) and not isinstance(gammas, str) else [gammas]
    shown = list(listed)
    if perturbation != "gamma":
        raise ConfigError(
            f"certify.gammas={shown} reports certified accuracy at gamma factors: it needs "
            f"perturbation=gamma (this run smooths over {perturbation}); drop certify.gammas"
        )
    numbers = all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in listed)
    if not listed or not numbers or not all(0 < g < math.inf for g in listed):
        raise ConfigError(
            f"certify.gammas={shown}: every gamma factor must be a number in (0, inf) "
            f"(x^gamma; 1 is the identity), {example}"
        )
    return [float(g) for g in listed]


def check_sample_sizes(n0: int, n: int, alpha: float) -> str | None:
    """CERTIFY's ``n0`` (picks the class) and ``n`` (bounds its probability): a one-line
    ConfigError when ``n`` is too small for any certificate (even with all ``n`` samples on the
    class, the Clopper-Pearson bound ``alpha^(1/n)`` is <= 1/2, so every example abstains); a
    warning (returned, for the caller to log) when ``n < n0``, since ``n`` alone caps the radius
    (the bound never exceeds ``alpha^(1/n)``) and the two are likely swapped."""
    cap = clopper_pearson_lower(n, n, alpha)
    if cap <= 0.5:
        smallest = math.floor(math.log2(1 / alpha)) + 1
        while clopper_pearson_lower(smallest, smallest, alpha) <= 0.5:
            smallest += 1
        raise ConfigError(
            f"certify.n={n} certifies nothing at certify.alpha={alpha}: even if all {n} samples "
            f"agree, the lower bound on p_A is {cap:.3f} <= 0.5, so every example abstains; use "
            f"certify.n >= {smallest} (e.g. certify.n=10000)"
        )
    if n < n0:
        return (
            f"certify.n={n} < certify.n0={n0}: n0 samples only pick the class and n bound its "
            f"probability, at most {cap:.4f} here, which caps every radius (Gaussian l2: sigma * "
            f"{GaussianNoise(1.0).radius(cap, 'l2'):.3f}); did you mean certify.n0={n} "
            f"certify.n={n0}?"
        )
    return None
