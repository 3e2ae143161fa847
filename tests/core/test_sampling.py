"""The sampler: several examples packed into shared forward passes give exactly the counts of
separate calls, and the batch-size choice picks a timed candidate within its caps without touching
any noise stream a certificate uses (so certificates do not depend on it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from smoothcert import Smooth
from smoothcert.errors import ConfigError
from smoothcert.independence import PROBE_CALLS
from smoothcert.noise import GaussianNoise, LaplaceNoise, example_generator
from smoothcert.perturbation import ADDITIVE
from smoothcert.sampling import (
    BatchSizeChoice,
    OutputsKept,
    batch_size_candidates,
    choose_batch_size,
    sample,
    sample_class_counts,
    sample_class_counts_many,
)

SHAPE = (1, 4, 4)
CLASSES = 5


class RowwiseLinear(nn.Module):
    """Deterministic logits ``W x`` in float64, computed row by row (elementwise product and sum),
    so a row's logits do not depend on the other rows of its batch; records batch sizes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(CLASSES, *SHAPE, generator=generator).double())
        self.batch_sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batch_sizes.append(x.shape[0])
        return (x.double()[:, None] * self.weight).flatten(2).sum(dim=2).float()


def examples(count: int) -> list[Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(SHAPE, generator=generator) for _ in range(count)]


def streams(count: int, noise=None) -> list:
    noise = noise or GaussianNoise(0.5)
    return [noise.stream(SHAPE, example_generator(7, i), "cpu") for i in range(count)]


@pytest.mark.parametrize("batch_size", [7, 64, 1000])
@pytest.mark.parametrize("noise", [GaussianNoise(0.5), LaplaceNoise(0.5)], ids=lambda n: n.name)
def test_packed_counts_equal_separate_counts_bit_for_bit(batch_size, noise) -> None:
    xs, nums = examples(5), [3, 130, 64, 1, 257]
    model = RowwiseLinear()
    separate = [
        sample_class_counts(model, x, num, CLASSES, batch_size, stream)[0]
        for x, num, stream in zip(xs, nums, streams(5, noise), strict=True)
    ]
    model.batch_sizes.clear()
    packed_streams = streams(5, noise)
    packed, finite = sample_class_counts_many(model, xs, nums, CLASSES, batch_size, packed_streams)
    assert packed.shape == (5, CLASSES) and packed.dtype == torch.long and bool(finite)
    assert torch.equal(packed, torch.stack(separate))
    assert packed.sum(dim=1).tolist() == nums
    # The samples really share batches: all full but the last.
    total = sum(nums)
    assert sum(model.batch_sizes) == total
    assert model.batch_sizes[:-1] == [batch_size] * (len(model.batch_sizes) - 1)
    assert len(model.batch_sizes) == -(-total // batch_size)
    # Each stream consumed exactly its example's samples: the next draws continue in step.
    fresh = streams(5, noise)
    for num, used, unused in zip(nums, packed_streams, fresh, strict=True):
        unused.take(num)
        assert torch.equal(used.take(3), unused.take(3))


def test_packing_refuses_examples_of_different_shapes() -> None:
    xs = [torch.rand(SHAPE), torch.rand(1, 4, 5)]
    with pytest.raises(ConfigError, match="one shape"):
        sample_class_counts_many(RowwiseLinear(), xs, [2, 2], CLASSES, 8, streams(2))


def test_certify_many_equals_certify_of_each_example() -> None:
    smooth, xs = Smooth(RowwiseLinear(), CLASSES, 0.5), examples(6)
    settings = (50, 400, 0.01)
    single = [
        smooth.certify(x, *settings, 64, generator=example_generator(3, i))
        for i, x in enumerate(xs)
    ]
    for batch_size in (64, 450, 5000):
        generators = [example_generator(3, i) for i in range(len(xs))]
        assert smooth.certify_many(xs, *settings, batch_size, generators) == single
    assert any(radius > 0 for _, radius in single)


def test_selection_and_estimation_samples_fill_shared_batches() -> None:
    model = RowwiseLinear()
    smooth, xs = Smooth(model, CLASSES, 0.5), examples(3)
    smooth.certify(xs[0], 50, 400, 0.01, 64, example_generator(3, 0))
    del model.batch_sizes[:PROBE_CALLS]  # the independence probe's calls
    assert model.batch_sizes == [64] * 7 + [2]  # not a batch of 50, then 400 in 64s
    model.batch_sizes.clear()
    smooth.certify_many(xs, 50, 400, 0.01, 1000, [example_generator(3, i) for i in range(3)])
    assert model.batch_sizes[PROBE_CALLS:] == [1000, 350]


def test_candidates_are_powers_of_two_then_the_largest() -> None:
    assert batch_size_candidates(10_000) == [64, 128, 256, 512, 1024, 2048, 4096, 8192, 10_000]
    assert batch_size_candidates(1024) == [64, 128, 256, 512, 1024]
    assert batch_size_candidates(50) == [50]
    assert batch_size_candidates(300, smallest=100) == [128, 256, 300]


FAST = {"min_seconds": 0.0, "repeats": 1}


def test_choice_is_a_timed_candidate_within_the_cpu_cap() -> None:
    x = torch.rand(SHAPE)
    candidates = [64, 128, 256, 512, 1024]
    noise = GaussianNoise(0.5)
    cap = 256 * x.numel()
    choice = choose_batch_size(
        RowwiseLinear(), x, CLASSES, noise, candidates, max_elements=cap, **FAST
    )
    assert isinstance(choice, BatchSizeChoice)
    assert choice.batch_size in candidates and choice.batch_size <= 256
    assert list(choice.rates) == [64, 128, 256] and all(r > 0 for r in choice.rates.values())
    assert "512 x 16 elements > 4096" in choice.stopped
    assert f"chose {choice.batch_size} (" in choice.describe()
    # The smallest candidate is timed even where it exceeds the cap.
    tight = choose_batch_size(
        RowwiseLinear(), x, CLASSES, noise, candidates, max_elements=1, **FAST
    )
    assert tight.batch_size == 64 and list(tight.rates) == [64]


class SlowAbove(nn.Module):
    """A model whose forward pass takes 4 ms up to 256 rows and 4 ms per 64 rows above: the most
    samples per second are at 256, and rates fall after it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = RowwiseLinear()

    def forward(self, x: Tensor) -> Tensor:
        time.sleep(0.004 * max(1, x.shape[0] // 64 if x.shape[0] > 256 else 1))
        return self.inner(x)


def test_choice_is_the_fastest_candidate_and_stops_after_two_slower_ones() -> None:
    candidates = batch_size_candidates(4096)
    choice = choose_batch_size(
        SlowAbove(), torch.rand(SHAPE), CLASSES, GaussianNoise(0.5), candidates, **FAST
    )
    assert choice.batch_size == 256, choice.describe()
    assert list(choice.rates) == [64, 128, 256, 512, 1024], choice.describe()
    assert "below 0.5 x the best rate" in choice.stopped


def test_choice_touches_no_certificate_noise_and_certificates_do_not_change() -> None:
    model = RowwiseLinear()
    smooth, x = Smooth(model, CLASSES, 0.5), examples(2)[1]  # one that certifies
    results = {
        batch: smooth.certify(x, 100, 2000, 0.001, batch, example_generator(5, 0))
        for batch in (7, 100, 2100, 100_000)
    }
    state = torch.get_rng_state()
    generator = example_generator(5, 0)
    choice = smooth.choose_batch_size(x, 2000, **FAST)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert choice.batch_size in batch_size_candidates(2000)
    assert model.training  # eval mode was restored
    results["auto"] = smooth.certify(x, 100, 2000, 0.001, choice.batch_size, generator)
    assert len(set(results.values())) == 1, results
    assert results["auto"][1] > 0


def test_a_short_run_pays_for_one_timing_round_only() -> None:
    model, candidates = RowwiseLinear(), [64, 128, 256]
    settings = {"min_seconds": 0.0, "repeats": 3}
    choose_batch_size(model, torch.rand(SHAPE), CLASSES, GaussianNoise(0.5), candidates, **settings)
    probe = PROBE_CALLS  # the independence probe's calls
    assert len(model.batch_sizes) == probe + 4 * len(candidates)  # a warm-up and three rounds
    model.batch_sizes.clear()
    noise = GaussianNoise(0.5)
    choose_batch_size(model, torch.rand(SHAPE), CLASSES, noise, candidates, work=10, **settings)
    assert len(model.batch_sizes) == probe + 2 * len(candidates)  # a warm-up and one round


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_kept_outputs_are_the_stream_plus_x_in_order_for_any_batch_size(batch_size) -> None:
    """The loop SegCertify and center smoothing read: outputs of x + the stream's next samples,
    batch by batch, under inference mode; concatenated, the same for every batch size."""
    x = torch.rand(1, 3, 4)
    noise = LaplaceNoise(0.5)
    seen_inference = []

    def identity(batch: Tensor) -> Tensor:
        seen_inference.append(torch.is_inference_mode_enabled())
        return batch

    outputs: list[Tensor] = []
    stream = noise.stream((1, 3, 4), example_generator(0, 3), "cpu")
    kept = sample(identity, [x], [100], [stream], OutputsKept(keep(outputs)), batch_size=batch_size)
    expected = x + noise.stream((1, 3, 4), example_generator(0, 3), "cpu").take(100)
    assert [len(o) for o in outputs[:-1]] == [batch_size] * (len(outputs) - 1)
    assert torch.equal(torch.cat(outputs), expected) and all(seen_inference)
    assert torch.equal(kept.result()[0], expected)


def keep(outputs: list[Tensor]) -> Callable[[Tensor], Tensor]:
    """A map for ``OutputsKept`` that also appends each batch's outputs to ``outputs``."""

    def kept(batch: Tensor) -> Tensor:
        outputs.append(batch)
        return batch

    return kept


def test_a_perturbation_decides_how_the_draws_meet_the_input() -> None:
    """The loop applies the perturbation it is given (parameter-space smoothing plugs in here);
    the default is x + delta."""

    class Brightness:  # x + b, one draw b per copy (a stand-in for parameter-space smoothing)
        units = "brightness"

        def apply(self, x: Tensor, draws: Tensor) -> Tensor:
            return x.expand(len(draws), *x.shape) + draws.view(-1, *([1] * x.dim()))

    x = torch.rand(1, 2, 2)
    stream = GaussianNoise(0.5).stream((1,), example_generator(0, 1), "cpu")
    batches: list[Tensor] = []
    sample(lambda b: b, [x], [5], [stream], OutputsKept(keep(batches)), batch_size=8,
           perturbation=Brightness())  # fmt: skip
    (batch,) = batches
    shifts = GaussianNoise(0.5).stream((1,), example_generator(0, 1), "cpu").take(5)
    assert torch.equal(batch, x + shifts.view(5, 1, 1, 1))
    assert repr(ADDITIVE) == "Additive()"


@pytest.mark.parametrize("bad", ["xs", "generators"])
def test_certify_many_without_a_sequence_is_a_one_line_error(bad: str) -> None:
    smooth, xs = Smooth(RowwiseLinear(), CLASSES, 0.5), examples(2)
    args = {"xs": xs, "generators": [None, None], bad: None}
    with pytest.raises(ConfigError, match=rf"certify_many: {bad}=None must be a sequence") as info:
        smooth.certify_many(args["xs"], 50, 400, 0.01, 64, args["generators"])
    assert "\n" not in str(info.value)
