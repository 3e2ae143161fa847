"""Cohen et al.'s smoothed classifier: PREDICT and CERTIFY (``Smooth`` with the familiar API)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_alpha, check_count, check_sigma, require
from smoothcert.independence import certification_mode
from smoothcert.modes import eval_mode
from smoothcert.noise import Noise, NoiseStream, resolve_noise
from smoothcert.outcomes import ABSTAIN
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric
from smoothcert.sampling import (
    BatchSizeChoice,
    ClassCounts,
    batch_size_candidates,
    choose_batch_size,
    example_stream,
    sample,
)
from smoothcert.stats.binomial import binom_test_two_sided, clopper_pearson_lower

__all__ = ["ABSTAIN", "Smooth", "eval_mode"]  # ABSTAIN (outcomes) and eval_mode (modes) re-exported


class Smooth:
    """The smoothed classifier g(x) = argmax_c P(f(x + eps) = c), eps ~ N(0, sigma^2 I) by default.

    Drop-in for the reference ``core.Smooth``: ``Smooth(base_classifier, num_classes, sigma)``
    with ``predict`` and ``certify``, Gaussian noise and l2 radii. ``noise`` swaps in another
    :class:`~smoothcert.noise.Noise` (an instance at the same ``sigma``, or a name: gaussian,
    laplace, uniform) and ``norm`` the norm of the radius (default: the noise's natural norm,
    l2 for Gaussian, l1 for Laplace and uniform); an unsupported pair is refused here.

    Inputs are single examples ``[C, H, W]`` in [0, 1] pixel space (the base classifier
    normalizes in its first layer). Each call takes an optional ``generator``; without one, noise
    comes from a generator seeded by torch's global RNG, so ``torch.manual_seed`` makes calls
    reproducible.

    ``input_range`` guards against the most common wrong result, a dataset that normalizes before
    the noise: inputs outside it are refused. For inputs that are not pixels (tabular features,
    embeddings, signals) pass ``input_range=None``: the check is off and an example may have any
    shape (the base classifier receives ``[batch, *x.shape]``), or give another ``(low, high)``.

    ``perturbation`` smooths over transformation parameters instead of ``x + delta``
    (:class:`~smoothcert.perturbation.ParameterPerturbation`: brightness, gamma, translation,
    ...): its ``noise`` draws the parameters (``sigma`` must be its level, ``noise`` and ``norm``
    stay None), and radii are its certificate in its units (``self.norm`` is its name).

    ``base_classifier`` may be any callable: while certifying, every module it calls runs in eval
    mode (restored afterwards), found by ``smoothcert.independence`` (its attributes, closures,
    partials, globals, ``modules``, and the modules its probe sees called), and a classifier whose
    outputs are random or depend on the rest of the batch is refused (ConfigError).
    """

    ABSTAIN = ABSTAIN

    def __init__(
        self,
        base_classifier: nn.Module,
        num_classes: int,
        sigma: float,
        *,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        input_range: tuple[float, float] | None = (0.0, 1.0),
        noise: Noise | str | None = None,
        norm: str | None = None,
        perturbation: Perturbation = ADDITIVE,
        modules: Sequence[nn.Module] = (),
    ) -> None:
        if input_range is not None:
            low, high = (float(v) for v in input_range)
            if not low < high:
                raise ConfigError(f"input_range={input_range} must be (low, high) with low < high")
            input_range = (low, high)
        self.input_range = input_range
        self.base_classifier = base_classifier
        self.num_classes = check_count(num_classes, "num_classes", minimum=2)
        self.sigma = check_sigma(sigma)
        self.perturbation = perturbation
        if is_parametric(perturbation):
            if noise is not None or norm is not None:
                raise ConfigError(
                    f"perturbation={perturbation.name} brings its own noise and units: leave "
                    "noise and norm unset"
                )
            if perturbation.sigma != self.sigma:
                raise ConfigError(
                    f"sigma={self.sigma} differs from perturbation={perturbation.name}'s noise "
                    f"sigma={perturbation.sigma}: give both the same level"
                )
            self.noise, self.norm = perturbation.noise, perturbation.name
        else:
            self.noise, self.norm = resolve_noise(self.sigma, noise, norm)
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.modules = tuple(modules)

    def _certification_mode(self, x: Tensor):
        """Eval mode for every module the base classifier calls, and the independence probe
        (``smoothcert.independence``: a ConfigError for random or batch-coupled outputs)."""
        return certification_mode(
            self.base_classifier, x.float(), self.noise, self.modules, self.perturbation
        )

    def _stream(self, x: Tensor, generator: torch.Generator | None) -> NoiseStream:
        """The example's stream (``sampling.example_stream``: the input check, the draw shape,
        ``generator=None`` seeded from torch's global RNG)."""
        options = {"input_range": self.input_range, "name": "Smooth"}
        return example_stream(self.noise, self.perturbation, x, generator, **options)

    def _check_example(self, x: Tensor) -> None:
        self.perturbation.check_example(x, self.input_range, "Smooth")

    def _counts(
        self, xs: list[Tensor], nums: list[int], batch_size: int, streams: list[NoiseStream]
    ) -> Tensor:
        """Counts ``[len(xs), K]`` of the examples ``xs``, packed into shared forward passes
        (``sampling.sample``; NaN or infinite logits raise FloatingPointError)."""
        reducer = sample(
            self.base_classifier,
            [x.float() for x in xs],
            nums,
            streams,
            ClassCounts(self.num_classes),
            batch_size=batch_size,
            autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last,
            perturbation=self.perturbation,
            name="base classifier",
        )
        return reducer.counts

    def choose_batch_size(
        self, x: Tensor, largest: int, candidates: Sequence[int] | None = None, **options
    ) -> BatchSizeChoice:
        """The batch size with the most samples per second for examples like ``x``, timed on
        ``x`` (:func:`smoothcert.sampling.choose_batch_size`, whose keyword ``options`` it takes),
        among ``candidates`` (default: powers of two from 64 up to ``largest``, e.g. ``n``).

        Its noise comes from a throwaway generator, so the certificates of later calls are the
        same as without it (they do not depend on the batch size).
        """
        self._check_example(x)
        candidates = batch_size_candidates(largest) if candidates is None else candidates
        settings = {"autocast_dtype": self.autocast_dtype, "channels_last": self.channels_last}
        settings["perturbation"] = self.perturbation
        settings["modules"] = self.modules
        return choose_batch_size(
            self.base_classifier, x, self.num_classes, self.noise, candidates, **settings, **options
        )

    def certify(
        self,
        x: Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float]:
        """CERTIFY: ``(class, radius)`` or ``(ABSTAIN, 0.0)``.

        Guarantee: with probability at least 1 - alpha over the noise, if a class is returned then
        g(x + delta) equals it for every ||delta|| < radius in ``self.norm`` (l2 by default). The
        class is selected with ``n0`` samples and its probability bounded with ``n`` independent
        ones (Clopper-Pearson); the radius is ``self.noise.radius`` of that bound.
        """
        return self.certify_many([x], n0, n, alpha, batch_size, [generator])[0]

    def certify_many(
        self,
        xs: Sequence[Tensor],
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generators: Sequence[torch.Generator | None],
    ) -> list[tuple[int, float]]:
        """CERTIFY of several examples of one shape, their samples packed into shared forward
        passes (faster when ``n0 + n`` is well below ``batch_size``): result ``e`` equals
        ``certify(xs[e], n0, n, alpha, batch_size, generators[e])``, noise included, for a base
        classifier that treats the rows of a batch independently.

        Each example's stream gives its ``n0`` selection samples, then its ``n`` estimation
        samples (disjoint, so independent); both sets of every example go through one packed
        loop, so the selection samples fill batches rather than running as small ones.
        """
        return self.certify_many_with_predictions(xs, n0, n, alpha, batch_size, generators)[0]

    def certify_many_with_predictions(
        self,
        xs: Sequence[Tensor],
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generators: Sequence[torch.Generator | None],
    ) -> tuple[list[tuple[int, float]], list[int], Tensor]:
        """``certify_many``, the smoothed prediction at each ``x`` itself (the selected class
        where its lower bound exceeds 1/2, else ABSTAIN: what the clean accuracy counts) and the
        class counts. The prediction differs from the certificate's class only where a
        parametric certificate abstains on a radius of 0 (brightness_contrast: the class holds
        at ``x``, but not jointly with every contrast in range)."""
        c_hats, counts = self.selected_counts(xs, n0, n, alpha, batch_size, generators)
        selected = counts.gather(1, torch.tensor(c_hats, device=counts.device)[:, None])
        certificates, predictions = [], []
        for count, c_hat in zip(selected[:, 0].tolist(), c_hats, strict=True):
            certificates.append(self.bound_to_certificate(count, n, alpha, c_hat, xs[0].numel()))
            above = clopper_pearson_lower(count, n, alpha) > 0.5
            predictions.append(c_hat if above else ABSTAIN)
        return certificates, predictions, counts.cpu()

    def selected_counts(
        self,
        xs: Sequence[Tensor],
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generators: Sequence[torch.Generator | None],
    ) -> tuple[list[int], Tensor]:
        """CERTIFY's samples: the class ``c_hat`` each example's ``n0`` samples select and the
        class counts ``[len(xs), K]`` of its ``n`` estimation samples (on the device), packed into
        shared forward passes as ``certify_many_with_predictions`` says."""
        n0, n = check_count(n0, "n0"), check_count(n, "n")
        alpha, batch_size = check_alpha(alpha), check_count(batch_size, "batch_size")
        for name, value in (("xs", xs), ("generators", generators)):
            require(
                hasattr(value, "__len__"),
                f"certify_many: {name}={value!r} must be a sequence (xs: the examples; "
                "generators: one torch.Generator or None per example, e.g. [None] * len(xs))",
            )
        require(len(xs) == len(generators) > 0, "give one generator (or None) per example")
        xs = list(xs)
        streams = [self._stream(x, generator) for x, generator in zip(xs, generators, strict=True)]
        each_twice = [x for x in xs for _ in range(2)]
        streams_twice = [stream for stream in streams for _ in range(2)]
        with self._certification_mode(xs[0]):
            both = self._counts(each_twice, [n0, n] * len(xs), batch_size, streams_twice)
        counts0, counts = both[0::2], both[1::2]
        return counts0.argmax(dim=1).tolist(), counts

    def bound_to_certificate(
        self, count: int, n: int, alpha: float, c_hat: int, dim: int | None = None
    ) -> tuple[int, float]:
        """Turns the count of the selected class among ``n`` samples into ``(class, radius)``:
        ``(ABSTAIN, 0.0)`` unless the Clopper-Pearson lower bound exceeds 1/2, and, for a
        parametric perturbation, unless its radius is positive: a radius of 0 certifies nothing
        (brightness_contrast's radius holds jointly with every contrast in range, and 0 means
        that even a pure contrast change in range may flip the answer; TSS abstains there too).
        ``dim`` (the number of input coordinates) is needed for linf radii only."""
        return self.lower_bound_to_certificate(clopper_pearson_lower(count, n, alpha), c_hat, dim)

    def lower_bound_to_certificate(
        self, p_lower: float, c_hat: int, dim: int | None = None
    ) -> tuple[int, float]:
        """``bound_to_certificate`` from a lower bound ``p_lower`` on p_A given directly (e.g.
        the randomized Clopper-Pearson bound)."""
        if p_lower <= 0.5:
            return ABSTAIN, 0.0
        if is_parametric(self.perturbation):
            radius = float(self.perturbation.radius(p_lower))
            return (c_hat, radius) if radius > 0 else (ABSTAIN, 0.0)
        return c_hat, float(self.noise.radius(p_lower, self.norm, dim))

    def predict(
        self,
        x: Tensor,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> int:
        """PREDICT: the top class, or ABSTAIN unless a two-sided binomial test of the top two
        counts rejects equality at level alpha (then the answer is wrong with probability <= alpha).
        """
        n, alpha = check_count(n, "n"), check_alpha(alpha)
        batch_size = check_count(batch_size, "batch_size")
        stream = self._stream(x, generator)
        with self._certification_mode(x):
            counts = self._counts([x], [n], batch_size, [stream])[0]
        top2 = counts.topk(2)
        (count_a, count_b), (c_a, _) = top2.values.tolist(), top2.indices.tolist()
        if binom_test_two_sided(count_a, count_a + count_b, 0.5) > alpha:
            return ABSTAIN
        return int(c_a)
