"""SegCertify's settings (``conf/certify/segcertify.yaml``), checked on construction, and what the
record headers, the opening line and the warnings say about them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from smoothcert.certifiers.segmentation import (
    check_tau,
    guarantee,
    segcertify,
    segmentation_radius,
    tau_alpha,
    tau_scope,
)
from smoothcert.errors import ConfigError, check_alpha, check_count, require
from smoothcert.models.segmenters import check_scales
from smoothcert.noise import Certificate
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric
from smoothcert.stats.multiple_testing import FDR, check_correction


@dataclass
class SegCertifySettings:
    """SegCertify(n0, n, tau, alpha): ``tau`` one threshold in [0.5, 1) or a list (``taus``; one
    sampling pass serves them all, each at alpha on its own or, ``joint``, all together at
    ``tau_alpha`` = alpha / T each), the multiple-testing ``correction`` (``budget``: kfwer's
    tolerated false certificates), the base model at ``scale`` (a list: averaged) and ``flip``,
    and ``num_overlays`` PNG overlays."""

    n0: int = 10
    n: int = 100
    tau: float | Sequence[float] = 0.75
    alpha: float = 0.001
    correction: str = "holm"
    budget: int = 0
    joint: bool = False
    scale: float | Sequence[float] = 1.0
    flip: bool = False
    num_overlays: int = 4
    taus: list[float] = field(init=False)
    tau_alpha: float = field(init=False)

    def __post_init__(self) -> None:
        self.n0, self.n = check_count(self.n0, "certify.n0"), check_count(self.n, "certify.n")
        taus = list(self.tau) if isinstance(self.tau, Sequence) else [self.tau]
        require(len(taus) > 0, "certify.tau is empty: give a tau in [0.5, 1) or a list of them")
        self.taus = [check_tau(t, "certify.tau") for t in taus]
        self.alpha = check_alpha(self.alpha, "certify.alpha")
        self.correction, self.budget = check_correction(self.correction, self.budget)
        self.joint = bool(self.joint)
        self.tau_alpha = tau_alpha(self.alpha, len(self.taus), self.joint)
        scales = check_scales(self.scale, "certify.scale")
        self.scale, self.flip = (scales[0] if len(scales) == 1 else list(scales)), bool(self.flip)
        self.num_overlays = check_count(self.num_overlays, "certify.num_overlays", minimum=0)

    def certifier(
        self,
        sigma: float,
        batch_size: int,
        noise: object,
        norm: str,
        perturbation: Perturbation = ADDITIVE,
    ) -> Callable:
        """``segcertify`` with these settings, in ``noise`` at ``sigma`` with radii in ``norm``,
        or over a parameter ``perturbation``'s parameters (its own noise and units, e.g. the
        coordinates of point clouds): ``certifier(model, x, generator=...)`` gives every tau's
        classes and radii."""
        if is_parametric(perturbation):
            noise, norm = None, None
        return partial(
            segcertify,
            sigma=sigma,
            n0=self.n0,
            n=self.n,
            tau=self.taus,
            alpha=self.alpha,
            correction=self.correction,
            batch_size=batch_size,
            budget=self.budget,
            joint=self.joint,
            noise=noise,
            norm=norm,
            perturbation=perturbation,
        )

    @staticmethod
    def radius(
        tau: float, noise: object, norm: str, perturbation: Perturbation, dim: int | None = None
    ) -> float:
        """The certified radius at ``tau``: in a parameter ``perturbation``'s units, else of
        ``noise`` in ``norm`` (linf: for ``dim`` inputs)."""
        radii = perturbation if is_parametric(perturbation) else Certificate(noise, norm, dim)
        return segmentation_radius(radii, tau)

    @staticmethod
    def check_model(contract: object) -> None:
        """A one-line ConfigError unless the model's contract gives per-element logits."""
        if getattr(contract, "logits_at", None) is None:
            raise ConfigError("certify=segcertify needs a segmentation model: use model=seg_small")

    def header(self, radii: object, owner: object = None) -> dict[str, object]:
        """The settings in a record file's header (``radii``: the radius at each tau), then what
        the callback ``owner`` says about its perturbation (``perturbation_settings``: nothing
        for additive noise; a transformation's name, units and settings)."""
        return {
            "guarantee": guarantee(self.correction, self.budget, len(self.taus), self.joint),
            "n0": self.n0,
            "n": self.n,
            "tau": self.taus,
            "radius": radii,
            "alpha": self.alpha,
            "joint": self.joint,
            "alpha_per_tau": self.tau_alpha,
            "correction": self.correction,
            "budget": self.budget,
            "scale": self.scale,
            "flip": self.flip,
            **(owner.perturbation_settings() if owner is not None else {}),
        }

    def prepare(self, prefix: str) -> str:
        """Warns (``warn``) and returns the summary key a sweeper optimizes: ``cert/miou``, or
        ``heuristic/miou`` when the keys' ``prefix`` is a heuristic's (a perturbation that does
        not compose, e.g. rotation3d_heuristic)."""
        self.warn()
        return f"{prefix.split('/')[0]}/miou"

    def describe(self) -> str:
        """``n0=10 n=100 tau=[0.75] alpha=0.001 (single tau) holm``, for the opening line."""
        scope = tau_scope(len(self.taus), self.joint)
        return (
            f"n0={self.n0} n={self.n} tau={self.taus} alpha={self.alpha} ({scope}) "
            f"{self.correction}"
        )

    def warn(self) -> None:
        """Says (rank 0, in ``setup``) when the certificates are not family-wise or not joint."""
        if self.correction in FDR:
            rank_zero_warn(
                f"certify.correction={self.correction} bounds only the expected fraction of false "
                "certificates (FDR), not the chance of any: it is not a family-wise certificate"
            )
        if len(self.taus) > 1 and not self.joint:
            rank_zero_info(
                f"segcertify: each of the {len(self.taus)} tau certificates holds at alpha on its "
                "own, not jointly; certify.joint=true tests each at alpha / T for a joint one"
            )

    def title(self, noise: str, sigma: float, protocol: str) -> str:
        """The curve's title: the procedure; the data and sample sizes (``protocol``); how its
        points hold together (per tau / joint) at which alpha. Three short lines."""
        level = f"alpha={self.alpha:g}"
        if self.joint and len(self.taus) > 1:
            level += f" (alpha/{len(self.taus)} each)"
        kind = "FDR only, " if self.correction in FDR else ""
        scope = tau_scope(len(self.taus), self.joint)
        head = f"SegCertify {self.correction}, {noise} sigma={sigma:g}"
        return f"{head}\n{protocol}\n{kind}{scope}, {level}"
