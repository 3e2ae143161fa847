"""Errors raised for bad user input, before any expensive work starts."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting, dataset or input is unusable.

    The message is a single line that names the setting and says how to fix it; entry points print
    it without a traceback.
    """


def require(condition: bool, message: str) -> None:
    """Raises ``ConfigError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def check_sigma(sigma: float, name: str = "sigma", allow_zero: bool = False) -> float:
    """Returns ``sigma`` as a float; raises ConfigError unless it is > 0 (>= 0 if allowed)."""
    sigma = float(sigma)
    ok = sigma >= 0 if allow_zero else sigma > 0
    bound = ">= 0" if allow_zero else "> 0"
    require(ok, f"{name}={sigma} must be {bound}: set it to the noise level, e.g. {name}=0.25")
    return sigma


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Returns ``alpha`` as a float; raises ConfigError unless 0 < alpha < 1."""
    alpha = float(alpha)
    require(0 < alpha < 1, f"{name}={alpha} must lie in (0, 1): use e.g. {name}=0.001")
    return alpha


def check_count(value: int, name: str, minimum: int = 1) -> int:
    """Returns ``value`` as an int; raises ConfigError if it is not an integer >= ``minimum``."""
    require(
        float(value) == int(value) and int(value) >= minimum,
        f"{name}={value} must be an integer >= {minimum}",
    )
    return int(value)


def check_unit_range(x, name: str = "input") -> None:
    """Raises ConfigError if the tensor ``x`` has values outside [0, 1] or non-finite values.

    Noise is added in [0, 1] pixel space and normalization is the model's first layer, so a dataset
    that normalizes (or scales to [0, 255]) silently gives wrong certificates; this guards it.
    """
    check_input_range(x, name, 0.0, 1.0)


def check_input_range(x, name: str = "input", low: float = 0.0, high: float = 1.0) -> None:
    """Raises ConfigError if the tensor ``x`` has values outside [low, high] or non-finite values
    (NaN fails both comparisons)."""
    lo, hi = float(x.min()), float(x.max())
    if (low, high) == (0.0, 1.0):
        fix = (
            "remove normalization from the data transforms (the model normalizes in its first "
            "layer) and scale pixels to [0, 1]"
        )
    else:
        fix = "rescale the inputs, or set input_range to their range (None turns the check off)"
    require(
        lo >= low and hi <= high,
        f"{name} values span [{lo:.3g}, {hi:.3g}] but must lie in [{low:g}, {high:g}]: {fix}",
    )
