"""CC-Cert (Pautov et al.): a heuristic ESTIMATE of the probability that a RANDOM
transformation changes the answer, from a Chernoff-Cramer bound on sampled outputs. Not a
certificate of any kind: it estimates "for a transformation drawn uniformly from the range, the
prediction changes with probability at most eps", with no stated confidence, and says nothing
about the worst transformation in the range. Its numbers never go under a ``cert/`` key.

Resolution: from ``m`` samples no probability below about ``1 / m`` can be told apart from 0 (a
true flip probability of 1e-3 shows no flip in 1,000 samples 37% of the time), so the estimate
is reported as at least ``1 / m`` (read: "< 1/m" when it sits there) and ``pca`` refuses an eps
at or below it.

Parameters and ranges are in the transformation's own units, those of ``transform`` and of the
docs (brightness shift b; (log-contrast k, brightness b); gamma factor; pixels; degrees), not the
smoothing noise's draws: the same range gives the same images whatever noise the perturbation
was built with (a Rayleigh or log-normal gamma, any sigma_k). Each transformed image is clipped
to [0, 1] by default (``clip=True``), as the reference does; ``clip=False`` keeps the unclipped
images (TSS's threat model for brightness: a clipped change is then not what is measured).

For a base classifier with softmax ``p``, let ``a = (p_(1)(x) - p_(2)(x)) / 2`` (half the top-2
margin) and ``Y = ||p(x) - p(T(x))||_inf``. ``Y < a`` implies the same top class at ``T(x)``, and
Chernoff-Cramer gives ``P(Y >= a) <= inf_(t > 0) E[exp(t Y)] exp(-t a)``. The expectation is
estimated from samples; following the paper, ``nbounds`` groups of ``nsamples`` give one bound
each, the largest is divided by ``delta`` (the paper's Paley-Zygmund correction) and clipped at 1.
The minimum over ``t`` is taken on the same samples as the mean, so the estimate is not a
confidence bound either. ``E[exp(t Y)]`` is computed in log space (``logsumexp`` in float64):
with ``t`` up to 1e4 and ``Y`` up to 1, ``exp(t Y)`` overflows float32 (and float64), which turns
the reference's estimate into inf / inf = NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from smoothcert.errors import check_count, require
from smoothcert.independence import certification_mode
from smoothcert.perturbation import ParameterPerturbation
from smoothcert.sampling import OutputsKept, sample


def t_grid(t_min: float = 1e-4, t_max: float = 1e4, steps: int = 500) -> np.ndarray:
    """The paper's grid of ``t``: ``steps`` points evenly spaced on [t_min, t_max]."""
    require(0 < t_min < t_max, f"t grid [{t_min}, {t_max}] must satisfy 0 < t_min < t_max")
    return np.linspace(t_min, t_max, check_count(steps, "steps"))


def log_mgf(y: np.ndarray | Tensor, t: np.ndarray) -> np.ndarray:
    """``log mean_i exp(t y_i)`` for every ``t`` (``[T]``), from samples ``y`` (``[..., N]``:
    leading axes are separate groups; result ``[..., T]``), with a log-sum-exp in float64."""
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    tt = torch.as_tensor(np.asarray(t), dtype=torch.float64)
    values = torch.logsumexp(tt[:, None] * y[..., None, :], dim=-1) - math.log(y.shape[-1])
    return values.numpy()


def chernoff_bound(y: np.ndarray | Tensor, a: float, t: np.ndarray | None = None) -> np.ndarray:
    """``min(1, min_t mean_i exp(t y_i) exp(-t a))`` per group of samples (the last axis of
    ``y``): the Chernoff-Cramer bound on ``P(Y >= a)`` with the empirical moment generating
    function. With the exact distribution's samples in the right proportions it is an upper
    bound on ``P(Y >= a)``."""
    t = t_grid() if t is None else np.asarray(t, dtype=np.float64)
    exponent = (log_mgf(y, t) - t * float(a)).min(axis=-1)
    return np.minimum(1.0, np.exp(exponent))


def cc_cert_estimate(
    y: np.ndarray | Tensor, a: float, nbounds: int, delta: float = 0.9, t: np.ndarray | None = None
) -> float:
    """The paper's estimate from ``nbounds`` groups of the samples ``y`` (``[nbounds * m]``):
    the largest group bound over ``delta``, clipped at 1 and raised to the resolution ``1 / (nbounds
    * m)`` (see the module docstring). A heuristic probability, not a bound with a stated
    confidence."""
    require(0 < delta <= 1, f"delta={delta} must lie in (0, 1]")
    groups = np.asarray(y, dtype=np.float64).reshape(check_count(nbounds, "nbounds"), -1)
    estimate = min(1.0, chernoff_bound(groups, a, t).max() / delta)
    return float(max(estimate, 1.0 / groups.size))


class _Parameters:
    """The sampler's view of CC-Cert's draws: parameters already in ``transform``'s units (drawn
    uniformly from the range by :meth:`CCCert.sample_parameters`), handed out in order as a
    stream's ``take`` would (:func:`smoothcert.sampling.sample` reads ``take``), and turned
    into images by :meth:`CCCert.transformed` (``apply``)."""

    def __init__(self, certifier: CCCert, params: Tensor) -> None:
        self.certifier, self.params, self.next = certifier, params, 0
        self.units = certifier.perturbation.units

    def take(self, m: int) -> Tensor:
        rows = self.params[self.next : self.next + m]
        require(len(rows) == m, f"asked for {m} of the {len(self.params)} parameters given")
        self.next += m
        return rows

    def draw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.certifier.perturbation.num_params,)

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        return self.certifier.transformed(x, draws)

    def check_example(self, x: Tensor, input_range=(0.0, 1.0), name: str = "CC-Cert") -> None:
        self.certifier.perturbation.check_example(x, input_range, name)


def _softmax(logits: Tensor) -> Tensor:
    return logits.double().softmax(dim=1)


def _argmax(logits: Tensor) -> Tensor:
    return logits.argmax(1)


@dataclass(frozen=True)
class CCCertResult:
    """One example: the clean prediction, whether it is right, the estimate of ``P(the random
    transformation changes the answer)`` (at least ``resolution``, ``1 / samples``: a value there
    reads "< 1/samples"), and the accuracy on the parameter grid (all right)."""

    predict: int
    correct: bool
    probability: float
    grid_correct: bool
    resolution: float = 0.0


class CCCert:
    """CC-Cert of a base classifier under ``perturbation.transform`` with parameters drawn
    uniformly from ``[low, high]`` (one range per parameter, in ``transform``'s units: see the
    module docstring), as the paper samples them; each image clipped to [0, 1] unless
    ``clip=False``.
    The clean answer is the model's on ``x``, or, with ``identity`` (the parameters of the
    identity transformation, e.g. angle 0), on ``perturbation.apply(x, identity)``: for a
    transformation that also pre-processes (rotation's vignette and filter) the clean image then
    goes through the same pipeline as the transformed ones.

    Labelled for what it is: ``probability`` estimates the chance that a random transformation
    changes the answer (``PCA(eps)`` counts examples with ``probability < eps``); it is no
    certificate of the worst transformation in the range.

    The transformed images go through the sampler (``smoothcert.sampling.sample``): batches of
    ``batch_size``, autocast to ``autocast_dtype`` and channels_last when asked, and NaN or
    infinite logits raise FloatingPointError. ``model`` may be any callable: every module it
    calls runs in eval mode, and a random or batch-coupled one is refused
    (``smoothcert.independence``).
    """

    def __init__(
        self,
        model: nn.Module,
        perturbation: ParameterPerturbation,
        low: Sequence[float],
        high: Sequence[float],
        nsamples: int = 100,
        nbounds: int = 10,
        delta: float = 0.9,
        t: np.ndarray | None = None,
        grid_points: int = 20,
        identity: Sequence[float] | None = None,
        clip: bool = True,
        batch_size: int = 1000,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> None:
        self.model, self.perturbation, self.clip = model, perturbation, bool(clip)
        self.batch_size = check_count(batch_size, "batch_size")
        self.autocast_dtype, self.channels_last = autocast_dtype, channels_last
        self.low = torch.tensor(list(low), dtype=torch.float32)
        self.high = torch.tensor(list(high), dtype=torch.float32)
        require(
            len(self.low) == len(self.high) == perturbation.num_params
            and bool(torch.all(self.low <= self.high)),
            f"give low <= high for each of the {perturbation.num_params} parameters",
        )
        self.nsamples, self.nbounds = (
            check_count(nsamples, "nsamples"),
            check_count(nbounds, "nbounds"),
        )
        self.delta, self.t = delta, t_grid() if t is None else t
        self.grid_points = check_count(grid_points, "grid_points")
        self.identity = None if identity is None else torch.tensor([list(identity)])
        require(
            self.identity is None or self.identity.shape[1] == perturbation.num_params,
            f"give one identity value for each of the {perturbation.num_params} parameters",
        )

    def _probs(self, xs: Tensor) -> Tensor:
        return _softmax(self.model(xs))

    def _sample(self, x: Tensor, params: Tensor, keep) -> Tensor:
        """The sampler's loop over ``x`` under each row of ``params`` (transformation units):
        batched, autocast when asked, NaN or infinite logits raise; ``keep`` maps the logits."""
        draws = _Parameters(self, params)
        kept = sample(
            self.model, [x], [len(params)], [draws], OutputsKept(keep),
            batch_size=self.batch_size, autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last, perturbation=draws, name="base classifier",
        )  # fmt: skip
        return kept.result()[0]

    def transformed(self, x: Tensor, params: Tensor) -> Tensor:
        """``x`` (``[C, H, W]``) under each row of ``params`` (``[m, k]``, in ``transform``'s
        units, not the noise's draws), clipped to [0, 1] when ``clip``."""
        copies = x.unsqueeze(0).expand(params.shape[0], *x.shape)
        images = self.perturbation.transform(copies, params.to(x.device, x.dtype))
        return images.clamp(0.0, 1.0) if self.clip else images

    def sample_parameters(self, generator: torch.Generator) -> Tensor:
        """The ``nsamples * nbounds`` parameters ``[m, k]`` drawn uniformly from the range."""
        u = torch.rand(self.nsamples * self.nbounds, len(self.low), generator=generator)
        return self.low + u * (self.high - self.low)

    def certify(self, x: Tensor, label: int, generator: torch.Generator) -> CCCertResult:
        """The estimate for one example ``x`` (``[C, H, W]``) with true ``label``."""
        params = self.sample_parameters(generator)
        grid = torch.linspace(0, 1, self.grid_points)[:, None] * (self.high - self.low) + self.low
        noise = self.perturbation.noise
        with certification_mode(self.model, x, noise, (), self.perturbation, "base classifier"):
            with torch.inference_mode():
                base = x[None] if self.identity is None else self.transformed(x, self.identity)
                clean = self._probs(base.to(x.device))[0]
            moved = self._sample(x, params, _softmax)
            on_grid = self._sample(x, grid, _argmax)
        top2 = clean.topk(2).values
        a = float(top2[0] - top2[1]) / 2
        y = (moved - clean).abs().amax(dim=1).cpu().numpy()
        predict = int(clean.argmax())
        probability = cc_cert_estimate(y, a, self.nbounds, self.delta, self.t)
        grid_correct = bool((on_grid == label).all())
        resolution = 1.0 / len(params)
        return CCCertResult(predict, predict == label, probability, grid_correct, resolution)


def pca(results: Sequence[CCCertResult], eps: float) -> float:
    """``PCA(eps)``: the fraction of examples classified correctly whose estimated probability
    of a change is below ``eps`` (an estimate, not a certified accuracy). ``eps`` must exceed
    what the samples resolve (``1 / samples``): below it every estimate reads "< 1/samples"."""
    finest = max((r.resolution for r in results), default=0.0)
    require(
        eps > finest,
        f"PCA(eps={eps:g}): {round(1 / finest) if finest else 0} samples per example cannot "
        f"resolve probabilities at or below {finest:g}; use eps > {finest:g} or more samples",
    )
    return float(np.mean([r.correct and r.probability < eps for r in results]))


def era(results: Sequence[CCCertResult]) -> float:
    """Empirical robust accuracy: the fraction right at every point of the parameter grid."""
    return float(np.mean([r.grid_correct for r in results]))
