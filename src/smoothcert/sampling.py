"""Monte-Carlo sampling of a base classifier under any smoothing noise, counting on the device:
the one loop (eval mode, ``inference_mode``, autocast, channels_last, the NaN check), several
examples per forward pass when one example's samples do not fill a batch, and the choice of the
fastest batch size."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from smoothcert.errors import check_count, require
from smoothcert.independence import certification_mode
from smoothcert.modes import eval_mode as eval_mode  # re-exported: its old home
from smoothcert.noise import Noise, NoiseStream
from smoothcert.perturbation import ADDITIVE, Perturbation

# CPU cap of the batch-size choice: noisy input elements per batch (2 MiB of float32, e.g. 8192
# digits of 8x8 or 128 CIFAR images). A convolutional net's activations are some tens of times
# its input, so a batch stays far below the memory of a machine that trains such a model; and a
# CPU's throughput peaks well below it (beyond, batches overflow the caches: the digits CNN runs
# 1.5-3x slower at 10,000 than at 512-2048).
CPU_MAX_ELEMENTS = 1 << 19


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
    """The one Monte-Carlo loop: batches of ``batch_size`` perturbed copies (the last may be
    short), example ``e`` taking its ``nums[e]`` draws from ``streams[e]`` in order and the
    examples filling the batches one after another; ``perturbation`` turns draws into inputs
    (``x + delta`` by default). Yields ``(pieces, batch)``, ``pieces`` the batch's
    ``(example, samples)`` runs. Callers run it under ``forward_context``."""
    for pieces in _pack(nums, batch_size):
        parts = [perturbation.apply(xs[e], streams[e].take(m)) for e, m in pieces]
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        yield pieces, batch


def noisy_outputs(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    num: int,
    batch_size: int,
    stream: NoiseStream,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    perturbation: Perturbation = ADDITIVE,
) -> Iterator[Tensor]:
    """The base model's outputs on ``num`` noisy copies of one example, a batch at a time (the
    reducer is the caller's: per-pixel counts for SegCertify, distances for center smoothing)."""
    options = {"channels_last": channels_last, "perturbation": perturbation}
    with forward_context(x.device, autocast_dtype):
        for _, batch in noisy_batches([x], [num], [stream], batch_size, **options):
            yield model(batch)


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
    """:func:`sample_class_counts` of several examples of one shape, packed into shared batches.

    Example ``e`` takes its ``nums[e]`` samples from its own ``streams[e]``, in order, and the
    batches are filled with the examples one after another, so for a base classifier that treats
    the rows of a batch independently (eval mode) ``counts[e]`` equals what a separate call gives.

    Returns:
        ``(counts, all_finite)``: int64 counts ``[len(xs), K]`` and one bool scalar for all
        logits, both on the device of ``xs``.
    """
    require(len(xs) == len(nums) == len(streams) > 0, "give one count and stream per example")
    shape = tuple(xs[0].shape)
    require(all(tuple(x.shape) == shape for x in xs), "packed examples must share one shape")
    device = xs[0].device
    counts = torch.zeros(len(xs) * num_classes, dtype=torch.long, device=device)
    all_finite = torch.ones((), dtype=torch.bool, device=device)
    ones = torch.ones(min(batch_size, sum(nums)), dtype=torch.long, device=device)
    with forward_context(device, autocast_dtype):
        batches = noisy_batches(xs, nums, streams, batch_size, channels_last, perturbation)
        for pieces, batch in batches:
            logits = model(batch)
            if logits.dim() != 2 or logits.shape[1] != num_classes:
                raise ValueError(
                    f"the base classifier returned logits of shape {tuple(logits.shape)}, expected "
                    f"[batch, {num_classes}]: check num_classes against the model's output"
                )
            all_finite &= torch.isfinite(logits).all()
            index = logits.argmax(dim=1)
            if len(pieces) == 1:
                index = index + pieces[0][0] * num_classes
            else:
                offsets = torch.tensor([e * num_classes for e, _ in pieces], device=device)
                sizes = torch.tensor([m for _, m in pieces], device=device)
                index = index + offsets.repeat_interleave(sizes, output_size=batch.shape[0])
            counts.scatter_add_(0, index, ones[: batch.shape[0]])
    return counts.view(len(xs), num_classes), all_finite


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
    shape = perturbation.draw_shape(tuple(x.shape))
    stream = noise.stream(shape, torch.Generator(device=device).manual_seed(0), device)
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
