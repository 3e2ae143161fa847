"""The settings of the classification certifiers (``conf/certify/{cohen,predict,lipschitz,
distspt}.yaml``) besides the example selection and the smoothing, checked on construction: each
callback's ``settings_type`` (see ``callbacks.certification.settings.Configured``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytorch_lightning.utilities import rank_zero_warn

from callbacks.certification.checks import (
    check_alphas,
    check_counts,
    check_radii,
    check_sample_sizes,
)
from smoothcert.certifiers.sequential import SequentialRun, check_stopping, parse_budget
from smoothcert.errors import ConfigError, check_alpha, check_count
from smoothcert.records import RANDOMIZED_SCHEMA, SEQUENTIAL_SCHEMA, RecordSchema

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)  # l2 radii of the certified curve's summary
IN_RANGE_REFUSED = (
    "certify.sequential=true and certify.bound=randomized_cp certify CERTIFY's records only, "
    "but this perturbation's in-range restriction draws its own: use an additive noise, or "
    "certify.sequential=false certify.bound=cp"
)


@dataclass
class CohenSettings:
    """CERTIFY(n0, n, alpha) with the summary at ``radii`` (checked against the norm by the
    callback), ``channels_last`` inputs, and the parts ``topk`` and ``gammas``. Warns when
    ``n < n0`` (``check_sample_sizes``)."""

    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    radii: Sequence[float] = RADII
    channels_last: bool = False
    topk: Sequence[int] | None = None
    gammas: Sequence[float] | None = None
    # Sequential CERTIFY (issue 23; smoothcert.certifiers.sequential): sample until every radius
    # of ``radii`` is decided, n being the cap; ``budget`` (forward passes, or a time "10m")
    # is shared over the run's examples (SharedBudget). The radius column is the certificate at
    # the final lower bound of the confidence sequence, so ACR (cert/acr) is computed from it as
    # in fixed-n mode: the mean radius of correct examples, abstentions 0. It is lower than a
    # fixed-n ACR, since an example stops once its grid radii are decided.
    sequential: bool = False
    budget: int | str | None = None
    # Sequential only, opt-in, change only WHEN an example stops (the radius stays the lower
    # bound at alpha): stop_alpha (null: alpha) the level of the upper bound ruling radii out;
    # futility "cap" (today) or "projected" (also give a radius up when the lower bound expected
    # at the cap, were p_A at its upper bound, cannot certify it). Both can only lose power.
    stop_alpha: float | None = None
    futility: str = "cap"
    # cp: Clopper-Pearson; randomized_cp: the randomized Clopper-Pearson bound (fixed n only,
    # exact level, never smaller), its uniform draw from (seed, index) in the records' u column.
    bound: str = "cp"

    def __post_init__(self) -> None:
        self.n0, self.n = check_count(self.n0, "certify.n0"), check_count(self.n, "certify.n")
        self.alpha = check_alpha(self.alpha, "certify.alpha")
        parse_budget(self.budget)
        check_stopping(self.alpha, self.stop_alpha, self.futility)
        if (self.stop_alpha is not None or self.futility != "cap") and not self.sequential:
            raise ConfigError(
                "certify.stop_alpha and certify.futility need certify.sequential=true: set it, "
                "or certify.stop_alpha=null certify.futility=cap"
            )
        if self.bound not in ("cp", "randomized_cp") or (self.bound != "cp" and self.sequential):
            raise ConfigError(
                f"certify.bound={self.bound!r} must be cp or randomized_cp, and cp with "
                "certify.sequential=true (a fixed-n bound is not valid at a stopping time)"
            )
        if self.bound != "cp" and (self.topk or self.gammas):
            raise ConfigError(
                "certify.bound=randomized_cp certifies CERTIFY's records only: set "
                "certify.topk=null and certify.gammas=null, or certify.bound=cp"
            )
        if self.budget is not None and not self.sequential:
            raise ConfigError(
                f"certify.budget={self.budget!r} needs certify.sequential=true (fixed-n CERTIFY "
                "draws n samples per example): set both, or certify.budget=null"
            )
        if swapped := check_sample_sizes(self.n0, self.n, self.alpha):
            rank_zero_warn(swapped)

    def record_mode(
        self, radii: Sequence[float]
    ) -> tuple[RecordSchema | None, dict[str, object], SequentialRun | None]:
        """What the mode changes: the record schema (None: Cohen's), the header settings it adds
        and, for ``sequential``, the run (deciding the checked ``radii``)."""
        if self.sequential:
            run = SequentialRun(
                self.n0, self.n, self.alpha, radii, self.budget, self.stop_alpha, self.futility
            )
            return SEQUENTIAL_SCHEMA, run.header, run
        if self.bound != "cp":
            return RANDOMIZED_SCHEMA, {"bound": self.bound}, None
        return None, {}, None


@dataclass
class PredictSettings:
    """PREDICT(n, alpha)."""

    n: int = 100_000
    alpha: float = 0.001

    def __post_init__(self) -> None:
        self.n = check_count(self.n, "certify.n")
        self.alpha = check_alpha(self.alpha, "certify.alpha")


@dataclass
class LipschitzSettings:
    """The summary's l2 ``radii`` and the Cohen records drawn beside (``compare_with``)."""

    radii: Sequence[float] = RADII
    compare_with: str | None = "auto"

    def __post_init__(self) -> None:
        self.radii = check_radii(self.radii, "l2")


COUNTS = ("n0", "n0_eps", "n_gamma", "n_eps", "n_error")
ALPHAS = ("alpha_gamma", "alpha_eps", "alpha_error")


@dataclass
class DistSPTSettings:
    """DistSPT's attack interval ``gamma`` (degrees), interpolation error bound ``error_bound``
    (E), inner smoothing ``sigma_eps``, sample counts, alpha split, interval analysis
    (``splits``, ``refinements``) and the summary's ``radii`` (degrees)."""

    gamma: Sequence[float] = (-30.0, 30.0)
    error_bound: float = 0.45
    sigma_eps: float = 0.25
    n0: int = 10
    n0_eps: int = 20
    n_gamma: int = 100
    n_eps: int = 500
    n_error: int = 100
    alpha_gamma: float = 0.004
    alpha_eps: float = 0.005
    alpha_error: float = 0.001
    splits: int = 32
    refinements: int = 4
    radii: Sequence[float] = (0.0, 10.0, 20.0, 30.0)

    def __post_init__(self) -> None:
        if len(self.gamma) != 2:
            raise ConfigError(f"certify.gamma={list(self.gamma)} must be [low, high] degrees")
        checked = check_counts(**{name: getattr(self, name) for name in COUNTS})
        checked |= check_alphas(**{name: getattr(self, name) for name in ALPHAS})
        for name, value in checked.items():
            setattr(self, name, value)
        self.radii = check_radii(self.radii, "rotation (degrees)")

    def counts(self) -> dict[str, int]:
        """The sample counts, by name, in DistSPT's order."""
        return {name: getattr(self, name) for name in COUNTS}

    def alphas(self) -> dict[str, float]:
        """The alpha split, by name, in DistSPT's order."""
        return {name: getattr(self, name) for name in ALPHAS}

    def certifier_args(self) -> tuple:
        """DistSPT's arguments after the model, its classes and the rotation."""
        return (tuple(self.gamma), self.error_bound, self.sigma_eps, self.splits, self.refinements)
