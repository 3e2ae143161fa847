"""The one Monte-Carlo loop of every certifier, its reducers and stopping rules, the one stream
set-up and seeding rule, and the choice of the fastest batch size.

How a certifier samples (nothing else in ``src/smoothcert`` loops over noise samples)::

    from smoothcert.sampling import ClassCounts, example_stream, sample

    stream = example_stream(noise, perturbation, x, generator)  # checks x, draw shape, seeding
    with certification_mode(model, x, noise, modules, perturbation):  # eval mode + probe
        counts = sample(model, [x], [n], [stream], ClassCounts(K), batch_size=b).counts

- Streams: :func:`example_stream` ``(noise, perturbation, x, generator=None, *, input_range=(0,
  1), name="input", dtype=float32)``: ``perturbation.check_example`` (the input check, one
  place), the perturbation's ``draw_shape``, and ``generator=None`` -> :func:`global_generator`
  (seeded from torch's global RNG). :func:`example_streams` ``(noise, perturbation, xs, seed,
  indices)`` seeds example ``i`` by ``example_generator(seed, i)`` (the dataset rule: records
  depend on neither batch size nor sharding). :func:`take_draws` hands out fixed draws (attacks).
- Loop: :func:`sample` ``(model, xs, nums, streams, reducer, *, batch_size, autocast_dtype=None,
  channels_last=False, perturbation=ADDITIVE, stop=None, check="finite", name="base model")``
  returns the reducer. ``inference_mode``, autocast, channels_last, several examples per batch,
  and the NaN check (``check``: "finite", "nan" or "off") live here only.
- Reducers (:class:`Reducer`: ``begin(xs, nums)``, ``update(pieces, outputs)``, ``result()``;
  the loop keeps ``drawn``, ``all_finite``, ``no_nan`` on it): :class:`ClassCounts` (``[E, K]``
  argmax counts), :class:`ElementClassCounts` (``[E, K, *spatial]``, per pixel),
  :class:`GivenClassCounts` (per-element count of ``argmax == targets[e]``),
  :class:`OutputsKept` (outputs, optionally mapped, concatenated per example),
  :class:`RunningSums` (sum and count per example). A certifier with another need subclasses
  :class:`Reducer`.
- Stopping: fixed n (``stop=None``) or a :class:`StoppingRule` (``should_stop(reducer, drawn)``,
  asked after every batch; :class:`StopWhen` wraps a function).
- Wrappers of today's API, no loop of their own: :func:`sample_class_counts`,
  :func:`sample_class_counts_many`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from smoothcert.errors import check_count, require
from smoothcert.independence import certification_mode
from smoothcert.modes import eval_mode as eval_mode  # re-exported: its old home
from smoothcert.noise import Noise, NoiseStream, example_generator
from smoothcert.perturbation import ADDITIVE, Perturbation

# CPU cap of the batch-size choice: noisy input elements per batch (2 MiB of float32, e.g. 8192
# digits of 8x8 or 128 CIFAR images). A convolutional net's activations are some tens of times
# its input, so a batch stays far below the memory of a machine that trains such a model; and a
# CPU's throughput peaks well below it (beyond, batches overflow the caches: the digits CNN runs
# 1.5-3x slower at 10,000 than at 512-2048).
CPU_MAX_ELEMENTS = 1 << 19

R = TypeVar("R", bound="Reducer")


def forward_context(
    device: torch.device, autocast_dtype: torch.dtype | None = None
) -> contextlib.ExitStack:
    """``inference_mode``, and autocast to ``autocast_dtype`` when given: how every noisy batch
    goes through a base model."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if autocast_dtype is not None:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=autocast_dtype))
    return stack


def noisy_batches(
    xs: Sequence[Tensor],
    nums: Sequence[int],
    streams: Sequence[NoiseStream],
    batch_size: int,
    channels_last: bool = False,
    perturbation: Perturbation = ADDITIVE,
) -> Iterator[tuple[list[tuple[int, int]], Tensor]]:
    """The batches of the one Monte-Carlo loop: ``batch_size`` perturbed copies each (the last may
    be short), example ``e`` taking its ``nums[e]`` draws from ``streams[e]`` in order and the
    examples filling the batches one after another; ``perturbation`` turns draws into inputs
    (``x + delta`` by default). Yields ``(pieces, batch)``, ``pieces`` the batch's
    ``(example, samples)`` runs. Only :func:`sample` (and the thin wrappers here) call it."""
    for pieces in _pack(nums, batch_size):
        parts = [perturbation.apply(xs[e], streams[e].take(m)) for e, m in pieces]
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        yield pieces, batch


# ----- stream set-up: one rule for every certifier -----------------------------------------------


def global_generator(device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded from torch's global RNG (``torch.manual_seed`` makes calls
    without a generator reproducible): what an example's noise comes from when none is given."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))
    return generator


def example_stream(
    noise: Noise,
    perturbation: Perturbation,
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    input_range: tuple[float, float] | None = (0.0, 1.0),
    name: str = "input",
    dtype: torch.dtype = torch.float32,
) -> NoiseStream:
    """THE stream set-up: the noise stream of one example ``x``.

    ``perturbation.check_example(x, input_range, name)`` first refuses an input the perturbation
    does not accept (a one-line ConfigError: an image ``[C, H, W]`` with values in
    ``input_range``; any non-scalar shape when ``input_range`` is None; ``name`` starts the
    message, e.g. "Smooth" or "segcertify"). The stream's draws have the perturbation's
    ``draw_shape`` (``x``'s own shape for ``Additive``, ``(k,)`` for k transformation parameters),
    on ``x.device`` in ``dtype``. ``generator=None`` draws from :func:`global_generator` (seeded
    from torch's global RNG); certification of a dataset passes ``example_generator(seed, index)``
    (:func:`example_streams`), so records depend on neither the batch size nor the sharding.
    """
    perturbation.check_example(x, input_range, name)
    if generator is None:
        generator = global_generator(x.device)
    shape = perturbation.draw_shape(tuple(x.shape))
    return noise.stream(shape, generator, x.device, dtype)


def example_streams(
    noise: Noise,
    perturbation: Perturbation,
    xs: Sequence[Tensor],
    seed: int,
    indices: Sequence[int],
    **options,
) -> list[NoiseStream]:
    """:func:`example_stream` of each ``xs[e]`` from ``example_generator(seed, indices[e])`` (the
    one seeding rule of dataset certification: example ``i``'s noise depends on ``(seed, i)``
    only); ``options`` as :func:`example_stream`'s keywords."""
    require(len(xs) == len(indices), "give one dataset index per example")
    return [
        example_stream(noise, perturbation, x, example_generator(seed, i, x.device), **options)
        for x, i in zip(xs, indices, strict=True)
    ]


def take_draws(stream: NoiseStream, num: int) -> Tensor:
    """The next ``num`` draws ``[num, *shape]`` of ``stream`` as one tensor: for a user that holds
    its noise fixed rather than sampling a model (smoothed PGD's ``m`` draws per example)."""
    return stream.take(check_count(num, "num"))


# ----- reducers: what a certifier keeps of the outputs -------------------------------------------


class Reducer:
    """What a certifier keeps of the base model's outputs; :func:`sample` owns the loop.

    :func:`sample` calls ``start(xs, nums)`` once, then, for every batch, ``update(pieces,
    outputs)``: ``outputs`` the model's outputs on the batch (rows in order), ``pieces`` the
    batch's ``(example, samples)`` runs (rows ``0..m0`` belong to example ``pieces[0][0]``, the
    next ``m1`` rows to ``pieces[1][0]``, ...; :meth:`rows` splits them). A subclass implements
    ``begin`` (allocate) and ``update`` (reduce) and may read, beside its own state, what the
    loop keeps on it: ``drawn`` (samples reduced so far, per example), ``all_finite`` and
    ``no_nan`` (device bool scalars: every floating output so far finite / free of NaN).
    ``result()`` is what a certifier reads (default: the reducer itself)."""

    outputs_noun = "outputs"  # what the NaN message calls the outputs

    def start(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        """Called by :func:`sample` before the first batch."""
        device = xs[0].device
        self.drawn = [0] * len(xs)
        self.all_finite = torch.ones((), dtype=torch.bool, device=device)
        self.no_nan = torch.ones((), dtype=torch.bool, device=device)
        self.begin(xs, nums)

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        """Allocate the state for ``len(xs)`` examples (``nums[e]`` samples each at most)."""

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        raise NotImplementedError

    def result(self):
        return self

    @staticmethod
    def rows(pieces: list[tuple[int, int]], outputs) -> Iterator[tuple[int, object]]:
        """``(example, its rows of outputs)`` for each run of the batch."""
        if len(pieces) == 1:
            yield pieces[0][0], outputs
            return
        start = 0
        for example, m in pieces:
            yield example, outputs[start : start + m]
            start += m

    def _note(self, pieces: list[tuple[int, int]], outputs) -> None:
        """The loop's part (not a reducer's): samples drawn and the NaN/inf flags, on the device
        (``aminmax`` propagates NaN; no output-sized temporaries)."""
        for example, m in pieces:
            self.drawn[example] += m
        if isinstance(outputs, Tensor) and outputs.is_floating_point() and outputs.numel():
            low, high = torch.aminmax(outputs)
            self.all_finite &= torch.isfinite(low) & torch.isfinite(high)
            self.no_nan &= ~(torch.isnan(low) | torch.isnan(high))


def _check_class_logits(logits: Tensor, num_classes: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"the base classifier returned logits of shape {tuple(logits.shape)}, expected "
            f"[batch, {num_classes}]: check num_classes against the model's output"
        )


def check_element_logits(logits: Tensor, spatial: tuple[int, ...], name: str) -> None:
    """A ValueError unless per-element logits are ``[batch, K, *spatial]`` (full resolution)."""
    if logits.dim() != 2 + len(spatial) or tuple(logits.shape[2:]) != tuple(spatial):
        raise ValueError(
            f"the {name} returned logits of shape {tuple(logits.shape)}, expected "
            f"[batch, K, {', '.join(str(s) for s in spatial)}]: certification is at full "
            "resolution, so upsample the logits to the input size"
        )


class ClassCounts(Reducer):
    """Argmax counts per example: ``counts`` int64 ``[E, K]`` on the device (Cohen's CERTIFY and
    PREDICT, top-k). Logits must be ``[batch, K]`` (a ValueError names ``num_classes``)."""

    outputs_noun = "logits"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        self.device = xs[0].device
        self.counts = torch.zeros(
            len(xs) * self.num_classes, dtype=torch.long, device=self.device
        ).view(len(xs), self.num_classes)
        self._ones = torch.ones(0, dtype=torch.long, device=self.device)

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        _check_class_logits(outputs, self.num_classes)
        size, k = outputs.shape[0], self.num_classes
        if len(self._ones) < size:
            self._ones = torch.ones(size, dtype=torch.long, device=self.device)
        index = outputs.argmax(dim=1)
        if len(pieces) == 1:
            index = index + pieces[0][0] * k
        else:
            offsets = torch.tensor([e * k for e, _ in pieces], device=self.device)
            sizes = torch.tensor([m for _, m in pieces], device=self.device)
            index = index + offsets.repeat_interleave(sizes, output_size=size)
        self.counts.view(-1).scatter_add_(0, index, self._ones[:size])

    def result(self) -> Tensor:
        return self.counts


class ElementClassCounts(Reducer):
    """Per-element argmax counts: ``counts`` int32 ``[E, K, *spatial]`` (SegCertify's first pass:
    each pixel's class counts). Logits must be ``[batch, K, *spatial]``, ``spatial`` by default
    the example's shape after its first axis (``[H, W]`` of an image ``[C, H, W]``); K is read
    from the first batch unless given. ``name`` names the model in the shape error."""

    outputs_noun = "logits"

    def __init__(
        self,
        num_classes: int | None = None,
        spatial: tuple[int, ...] | None = None,
        name: str = "segmentation model",
    ) -> None:
        self.num_classes, self.spatial, self.name = num_classes, spatial, name

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        self.examples, self.device = len(xs), xs[0].device
        if self.spatial is None:
            self.spatial = tuple(xs[0].shape[1:])
        self.counts: Tensor | None = None
        if self.num_classes is not None:
            self._allocate(self.num_classes)

    def _allocate(self, num_classes: int) -> None:
        shape = (self.examples, num_classes, *self.spatial)
        self.counts = torch.zeros(shape, dtype=torch.int32, device=self.device)
        ones = (1,) * (1 + len(self.spatial))
        self._one = torch.ones(ones, dtype=torch.int32, device=self.device)

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        check_element_logits(outputs, self.spatial, self.name)
        if self.counts is None:
            self._allocate(outputs.shape[1])
        elif outputs.shape[1] != self.counts.shape[1]:
            raise ValueError(
                f"the {self.name} returned {outputs.shape[1]} classes, expected "
                f"{self.counts.shape[1]}"
            )
        preds = outputs.argmax(dim=1)
        for example, rows in self.rows(pieces, preds):
            self.counts[example].scatter_add_(0, rows, self._one.expand(rows.shape))

    def result(self) -> Tensor:
        return self.counts


class GivenClassCounts(Reducer):
    """Per-element counts of given classes: ``counts`` int64 shaped like ``targets``
    (``[E, *spatial]``), ``counts[e]`` how often ``output.argmax(1) == targets[e]`` (SegCertify's
    second pass, with the modes of the first; ``spatial = ()`` and logits ``[batch, K]`` count
    one class per example). ``name`` names the model in the shape error."""

    outputs_noun = "logits"

    def __init__(self, targets: Tensor, name: str = "segmentation model") -> None:
        self.targets, self.name = targets, name

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        require(len(self.targets) == len(xs), "give one target per example")
        self.counts = torch.zeros_like(self.targets, dtype=torch.long)

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        check_element_logits(outputs, tuple(self.targets.shape[1:]), self.name)
        preds = outputs.argmax(dim=1)
        for example, rows in self.rows(pieces, preds):
            self.counts[example] += (rows == self.targets[example]).sum(dim=0)

    def result(self) -> Tensor:
        return self.counts


class OutputsKept(Reducer):
    """The outputs themselves, ``map``-ped batch by batch when given (e.g. an embedding, argmax
    maps, or output vectors), concatenated per example: for order statistics and pairwise
    distances. ``result()`` is the list of ``[n_e, ...]`` tensors, one per example."""

    def __init__(self, map: Callable[[Tensor], Tensor] | None = None) -> None:
        self.map = map

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        self.parts: list[list[Tensor]] = [[] for _ in xs]

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        kept = outputs if self.map is None else self.map(outputs)
        for example, rows in self.rows(pieces, kept):
            self.parts[example].append(rows)

    def result(self) -> list[Tensor]:
        return [torch.cat(parts) if len(parts) != 1 else parts[0] for parts in self.parts]


class RunningSums(Reducer):
    """Sum and count of the (``map``-ped) outputs per example, for expectations: ``sums[e]`` (in
    ``dtype``; default float64 for floating outputs, int64 otherwise) and ``counts[e]``;
    ``result()`` is ``(sums, counts)``, :meth:`mean` the sample means."""

    def __init__(
        self, map: Callable[[Tensor], Tensor] | None = None, dtype: torch.dtype | None = None
    ) -> None:
        self.map, self.dtype = map, dtype

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        self.sums: list[Tensor | None] = [None] * len(xs)
        self.counts = [0] * len(xs)

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        values = outputs if self.map is None else self.map(outputs)
        for example, rows in self.rows(pieces, values):
            dtype = self.dtype or (torch.float64 if rows.is_floating_point() else torch.long)
            total = rows.sum(dim=0, dtype=dtype)
            previous = self.sums[example]
            self.sums[example] = total if previous is None else previous + total
            self.counts[example] += len(rows)

    def result(self) -> tuple[list[Tensor | None], list[int]]:
        return self.sums, self.counts

    def mean(self) -> list[Tensor | None]:
        return [None if s is None else s / c for s, c in zip(self.sums, self.counts, strict=True)]


# ----- stopping rules ----------------------------------------------------------------------------


@runtime_checkable
class StoppingRule(Protocol):
    """Decides after each batch whether :func:`sample` stops before the ``nums`` are drawn (the
    sequential-certification hook). ``drawn`` is the samples reduced so far, per example."""

    def should_stop(self, reducer: Reducer, drawn: Sequence[int]) -> bool: ...


@dataclass(frozen=True)
class StopWhen:
    """A stopping rule from a function ``(reducer, drawn) -> bool``."""

    condition: Callable[[Reducer, Sequence[int]], bool]

    def should_stop(self, reducer: Reducer, drawn: Sequence[int]) -> bool:
        return bool(self.condition(reducer, drawn))


# ----- the one Monte-Carlo loop ------------------------------------------------------------------

CHECKS = ("finite", "nan", "off")


def _forward(
    model: Callable[[Tensor], Tensor],
    xs: Sequence[Tensor],
    nums: Sequence[int],
    streams: Sequence[NoiseStream],
    batch_size: int,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    perturbation: Perturbation,
) -> Iterator[tuple[list[tuple[int, int]], Tensor]]:
    """``(pieces, model(batch))`` batch by batch, under ``forward_context``."""
    with forward_context(xs[0].device, autocast_dtype):
        batches = noisy_batches(xs, nums, streams, batch_size, channels_last, perturbation)
        for pieces, batch in batches:
            yield pieces, model(batch)


def sample(
    model: Callable[[Tensor], Tensor],
    xs: Sequence[Tensor],
    nums: Sequence[int],
    streams: Sequence[NoiseStream],
    reducer: R,
    *,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    perturbation: Perturbation = ADDITIVE,
    stop: StoppingRule | None = None,
    check: str = "finite",
    name: str = "base model",
) -> R:
    """THE Monte-Carlo loop of every certifier: the base model's outputs on perturbed copies of
    the examples ``xs``, fed batch by batch to ``reducer``; returns ``reducer`` (read
    ``reducer.result()`` or its attributes).

    Example ``e`` takes its ``nums[e]`` draws from ``streams[e]`` (set up by
    :func:`example_stream` / :func:`example_streams`), in order; ``perturbation.apply`` turns
    draws into inputs (``x + delta`` by default). Examples of one shape are packed into shared
    batches of ``batch_size`` rows (the last may be short), one after another, so for a model that
    treats rows independently (eval mode: callers run it under
    ``smoothcert.independence.certification_mode``) every example's outputs equal those of a
    separate call, for any batch size. Forward passes run under ``inference_mode``, autocast to
    ``autocast_dtype`` when given, and channels_last when asked (4-d batches).

    After each batch ``reducer.update(pieces, outputs)`` runs (``pieces``: the batch's
    ``(example, samples)`` runs), then ``stop.should_stop(reducer, reducer.drawn)`` when a
    stopping rule is given: True ends the loop early (streams are consumed only up to there).
    Without ``stop`` exactly ``nums`` are drawn (fixed n).

    The NaN check (the only one): ``check="finite"`` raises FloatingPointError ("the {name}
    returned NaN or infinite {outputs} under noise: ...") once the loop ends if any floating
    output was NaN or infinite; ``"nan"`` only for NaN (order statistics take infinities);
    ``"off"`` leaves it to the caller (``reducer.all_finite`` / ``reducer.no_nan``, device bool
    scalars). Nothing is copied to the host in the loop unless the reducer or rule does.
    """
    require(len(xs) == len(nums) == len(streams) > 0, "give one count and stream per example")
    shape = tuple(xs[0].shape)
    require(all(tuple(x.shape) == shape for x in xs), "packed examples must share one shape")
    require(check in CHECKS, f"check={check!r} must be one of {', '.join(CHECKS)}")
    reducer.start(xs, nums)
    settings = (batch_size, autocast_dtype, channels_last, perturbation)
    batches = _forward(model, xs, nums, streams, *settings)
    try:
        for pieces, outputs in batches:
            reducer._note(pieces, outputs)
            reducer.update(pieces, outputs)
            if stop is not None and stop.should_stop(reducer, reducer.drawn):
                break
    finally:
        batches.close()
    if check == "finite" and not bool(reducer.all_finite):
        raise FloatingPointError(
            f"the {name} returned NaN or infinite {reducer.outputs_noun} under noise: check the "
            "checkpoint and the input range; certificates from such a model are meaningless"
        )
    if check == "nan" and not bool(reducer.no_nan):
        raise FloatingPointError(
            f"the {name} returned NaN {reducer.outputs_noun} under noise: check the checkpoint "
            "and the input range; certificates from such a model are meaningless"
        )
    return reducer


# ----- thin wrappers (today's API; no loop of their own) -----------------------------------------


def sample_class_counts(
    model: nn.Module,
    x: Tensor,
    num: int,
    num_classes: int,
    batch_size: int,
    stream: NoiseStream,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    perturbation: Perturbation = ADDITIVE,
) -> tuple[Tensor, Tensor]:
    """Counts the base classifier's predictions on ``num`` noisy copies of one example.

    Args:
        model: base classifier mapping ``[B, C, H, W]`` in [0, 1] pixel space to logits ``[B, K]``.
        x: one example ``[C, H, W]`` on the model's device.
        num: number of noise samples.
        num_classes: K, the length of the returned count vector.
        batch_size: noisy copies per forward pass.
        stream: where the noise comes from (its next ``num`` samples are consumed).
        autocast_dtype: run the forward pass under autocast to this dtype (e.g. bfloat16 on GPU).
        channels_last: feed the batch in channels_last memory format.
        perturbation: how the draws meet ``x`` (``x + delta`` by default; a transformation's
            stream draws its parameters).

    Returns:
        ``(counts, all_finite)``: int64 counts ``[K]`` and a bool scalar that is False if any
        logit was NaN or infinite, both on the model's device. Nothing is copied to the host, so
        the loop never waits for the device.
    """
    options = {"autocast_dtype": autocast_dtype, "channels_last": channels_last}
    options["perturbation"] = perturbation
    counts, all_finite = sample_class_counts_many(
        model, [x], [num], num_classes, batch_size, [stream], **options
    )
    return counts[0], all_finite


def sample_class_counts_many(
    model: nn.Module,
    xs: Sequence[Tensor],
    nums: Sequence[int],
    num_classes: int,
    batch_size: int,
    streams: Sequence[NoiseStream],
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    perturbation: Perturbation = ADDITIVE,
) -> tuple[Tensor, Tensor]:
    """:func:`sample_class_counts` of several examples of one shape, packed into shared batches
    (:func:`sample` with :class:`ClassCounts`, the NaN flag returned rather than raised).

    Example ``e`` takes its ``nums[e]`` samples from its own ``streams[e]``, in order, and the
    batches are filled with the examples one after another, so for a base classifier that treats
    the rows of a batch independently (eval mode) ``counts[e]`` equals what a separate call gives.

    Returns:
        ``(counts, all_finite)``: int64 counts ``[len(xs), K]`` and one bool scalar for all
        logits, both on the device of ``xs``.
    """
    options = {"autocast_dtype": autocast_dtype, "channels_last": channels_last}
    reducer = sample(
        model, xs, nums, streams, ClassCounts(num_classes), batch_size=batch_size,
        perturbation=perturbation, check="off", **options,
    )  # fmt: skip
    return reducer.counts, reducer.all_finite


def _pack(nums: Sequence[int], batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """The batches as lists of ``(example, samples)``: examples in order, every batch full but the
    last, an example split across batches where it does not fit."""
    pieces: list[tuple[int, int]] = []
    room = batch_size
    for example, num in enumerate(nums):
        while num > 0:
            take = min(num, room)
            pieces.append((example, take))
            num, room = num - take, room - take
            if room == 0:
                yield pieces
                pieces, room = [], batch_size
    if pieces:
        yield pieces


def batch_size_candidates(largest: int, smallest: int = 64) -> list[int]:
    """Powers of two from ``smallest`` below ``largest``, then ``largest`` itself (e.g. the
    samples a certifier needs per call: a larger batch never runs)."""
    largest = check_count(largest, "largest batch size")
    powers = [1 << k for k in range(max(0, smallest - 1).bit_length(), largest.bit_length())]
    return [b for b in powers if smallest <= b < largest] + [largest]


@dataclass(frozen=True)
class BatchSizeChoice:
    """The fastest batch size, the samples per second of every candidate timed (in order), why
    larger candidates were not timed ("" if all were) and the seconds the choice took."""

    batch_size: int
    rates: dict[int, float]
    stopped: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        """One line: ``chose B (X samples/s; B0: Y samples/s, ...; timed in S s)``."""
        others = ", ".join(f"{b}: {r:,.0f}" for b, r in self.rates.items() if b != self.batch_size)
        parts = [f"chose {self.batch_size} ({self.rates[self.batch_size]:,.0f} samples/s"]
        parts += [f"{others} samples/s"] if others else []
        parts += [f"larger not timed: {self.stopped}"] if self.stopped else []
        return "; ".join([*parts, f"timed in {self.seconds:.1f} s)"])


def choose_batch_size(
    model: nn.Module,
    x: Tensor,
    num_classes: int,
    noise: Noise,
    candidates: Sequence[int],
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_elements: int = CPU_MAX_ELEMENTS,
    memory_fraction: float = 0.5,
    min_seconds: float = 0.03,
    max_seconds: float = 1.0,
    decline: float = 0.5,
    repeats: int = 3,
    time_budget: float = 3.0,
    work: int | None = None,
    work_share: float = 0.05,
    perturbation: Perturbation = ADDITIVE,
    modules: Sequence[nn.Module] = (),
) -> BatchSizeChoice:
    """Times :func:`sample_class_counts` (noise, forward pass, counting) on ``x`` at each of the
    ``candidates`` and returns the one with the most samples per second.

    The noise comes from a throwaway generator: neither the certificate's streams nor torch's
    global generator are touched, so certificates do not depend on the choice. Candidates are
    warmed up smallest first with one batch each; larger ones are skipped once one exceeds the
    memory cap (CPU: ``batch * x.numel() > max_elements``; CUDA: a peak allocation above
    ``memory_fraction`` of the memory free at the start, measured with
    ``torch.cuda.max_memory_allocated`` and extrapolated to the next size, or an out-of-memory
    error), once one batch took more than ``max_seconds`` (timing larger ones would cost more
    than they can gain), or once two in a row run below ``decline`` times the best rate so far
    (past the best size). The smallest candidate is always timed. Then
    ``repeats`` rounds time every remaining candidate once each, over at least ``min_seconds``,
    interleaved so that a busy spell slows every candidate alike. A candidate's rate is all its
    rounds' samples over all their seconds, the throughput a run would see: a size that is fast
    only in quiet spells (small batches, whose many thread synchronizations stall while another
    process holds a core) is not favoured by one lucky run. Rounds stop early (after one) once
    ``time_budget`` seconds have passed, or, given ``work`` (the samples the caller will draw with
    the choice), ``work_share`` of the time that work takes at the best warm-up rate, so a short
    run does not pay more for the choice than it can gain. ``perturbation`` is how the draws
    meet ``x`` (its ``draw_shape`` shapes the throwaway stream). The model runs as certifiers
    run it (``smoothcert.independence.certification_mode``, with ``modules``).
    """
    began = time.perf_counter()
    candidates = sorted({check_count(b, "batch size candidate") for b in candidates})
    require(bool(candidates), "choose_batch_size needs at least one candidate")
    repeats = check_count(repeats, "repeats")
    x, device = x.float(), x.device
    cuda = device.type == "cuda"
    throwaway = torch.Generator(device=device).manual_seed(0)
    stream = example_stream(noise, perturbation, x, throwaway, input_range=None, name="batch size")
    options = {"autocast_dtype": autocast_dtype, "channels_last": channels_last}
    options["perturbation"] = perturbation

    def seconds(batch: int, calls: int = 1) -> float:
        start = time.perf_counter()
        counts, _ = sample_class_counts(
            model, x, calls * batch, num_classes, batch, stream, **options
        )
        counts.sum().item()  # waits for the device
        return time.perf_counter() - start

    budget = memory_fraction * torch.cuda.mem_get_info(device)[0] if cuda else math.inf
    calls: dict[int, int] = {}  # batches per timed run, by candidate
    warm: dict[int, float] = {}  # the rate of the warm-up batch, by candidate
    stopped, bytes_per_sample, slower = "", 0.0, 0
    with certification_mode(model, x, noise, modules, perturbation):
        for batch in candidates:
            if calls and not cuda and batch * x.numel() > max_elements:
                stopped = f"{batch} x {x.numel()} elements > {max_elements}"
                break
            if calls and batch * bytes_per_sample > budget:
                stopped = f"{batch} would exceed {memory_fraction:.0%} of free memory"
                break
            try:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                warm[batch] = batch / seconds(batch)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if not calls:
                    raise
                stopped = f"out of memory at {batch}"
                break
            if cuda:
                peak = torch.cuda.max_memory_allocated(device) - base
                bytes_per_sample = peak / batch
                if calls and peak > budget:
                    stopped = f"{batch} took over {memory_fraction:.0%} of free memory"
                    break
            calls[batch] = max(1, min(64, math.ceil(min_seconds * warm[batch] / batch)))
            if batch / warm[batch] > max_seconds:
                stopped = f"one batch of {batch} took over {max_seconds:g} s"
                break
            slower = slower + 1 if warm[batch] < decline * max(warm.values()) else 0
            if slower == 2:
                stopped = f"two sizes up to {batch} ran below {decline:g} x the best rate"
                break
        if work is not None:
            time_budget = min(time_budget, work_share * work / max(warm.values()))
        spent, rounds = dict.fromkeys(calls, 0.0), 0
        while rounds < repeats and (rounds == 0 or time.perf_counter() - began <= time_budget):
            for batch, times in calls.items():
                spent[batch] += seconds(batch, times)
            rounds += 1
    rates = {batch: rounds * calls[batch] * batch / spent[batch] for batch in calls}
    best = max(rates, key=rates.__getitem__)
    return BatchSizeChoice(best, rates, stopped, time.perf_counter() - began)
