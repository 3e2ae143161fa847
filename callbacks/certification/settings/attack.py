"""The settings of the attacks (``conf/attack/*.yaml``) besides the example selection, checked on
construction: each attack callback's ``settings_type`` (see
``callbacks.certification.settings.Configured``), and what its record header says about them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smoothcert.attacks.segmentation import PAPER_STEPS
from smoothcert.errors import check_alpha, check_count, require


def check_epsilons(**lists: Sequence[float]) -> list[list[float]]:
    """``attack.radii`` (and ``attack.multiples``, if given) as lists of floats; a one-line
    ConfigError if one is negative or NaN."""
    values = {name: [float(v) for v in given] for name, given in lists.items()}
    bad = [v for given in values.values() for v in given if not v >= 0]
    named = " ".join(f"attack.{name}={list(given)}" for name, given in lists.items())
    require(
        not bad,
        f"{named}: an attack epsilon must be >= 0 (got {bad}), an l2 radius in [0, 1] pixel units",
    )
    return list(values.values())


@dataclass
class EmpiricalSettings:
    """PGD (``steps``; ``m`` noise draws for the smoothed attack) at every l2 radius of ``radii``
    and at ``multiples`` of each certified radius of ``certifier``'s records, then
    PREDICT(``n``, ``alpha``) at each adversarial point."""

    radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    multiples: Sequence[float] = (1.0, 1.5, 2.0)
    steps: int = 20
    m: int = 16
    n: int = 1000
    alpha: float = 0.001
    certifier: str = "cohen"

    def __post_init__(self) -> None:
        self.radii, self.multiples = check_epsilons(radii=self.radii, multiples=self.multiples)
        self.steps = check_count(self.steps, "attack.steps")
        self.m, self.n = check_count(self.m, "attack.m"), check_count(self.n, "attack.n")
        self.alpha = check_alpha(self.alpha, "attack.alpha")

    def header(self, attack: str) -> dict[str, object]:
        """The settings in the record header (``attack``: its name)."""
        sizes = {"attack": attack, "steps": self.steps, "m": self.m, "n": self.n}
        return sizes | {"alpha": self.alpha, "radii": self.radii, "multiples": self.multiples}


@dataclass
class SegAttackSettings:
    """l2 PGD of ``steps`` steps on the images ``certifier`` certified, at every radius of
    ``radii`` (sorted, without repeats)."""

    radii: Sequence[float] = (0.0, 0.17, 0.25, 0.5)
    steps: int = PAPER_STEPS
    certifier: str = "segcertify"

    def __post_init__(self) -> None:
        (radii,) = check_epsilons(radii=self.radii)
        require(len(radii) > 0, "attack.radii is empty: give l2 radii >= 0 in [0, 1] pixel units")
        self.radii, self.steps = sorted(set(radii)), check_count(self.steps, "attack.steps")

    def header(self) -> dict[str, object]:
        """The settings in the record header."""
        return {"attack": "seg_pgd", "steps": self.steps, "radii": self.radii}
