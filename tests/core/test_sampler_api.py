"""The sampler's API: one loop (``sample``) feeding reducers, a stopping rule, one stream set-up.

Each reducer is checked against an oracle that does not use the loop: the model applied to
``x + stream.take(n)`` (the same stream, drawn at once) and reduced with plain torch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, LaplaceNoise, example_generator
from smoothcert.perturbation import ADDITIVE
from smoothcert.sampling import (
    ClassCounts,
    ElementClassCounts,
    GivenClassCounts,
    OutputsKept,
    Reducer,
    RunningSums,
    StoppingRule,
    StopWhen,
    example_stream,
    example_streams,
    global_generator,
    sample,
    sample_class_counts_many,
    take_draws,
)

SHAPE = (1, 4, 4)
CLASSES = 5


class Linear(nn.Module):
    """Row-wise logits ``W x`` (float64 inside): a row's logits do not depend on its batch."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(CLASSES, *SHAPE, generator=generator).double())

    def forward(self, x: Tensor) -> Tensor:
        return (x.double()[:, None] * self.weight).flatten(2).sum(dim=2).float()


class PixelLinear(nn.Module):
    """Per-pixel logits ``[B, K, H, W]``: class k's logit at a pixel is ``w_k * x + b_k``."""

    def forward(self, x: Tensor) -> Tensor:
        w = torch.linspace(-1.0, 1.0, CLASSES).view(1, CLASSES, 1, 1)
        return w * x.mean(dim=1, keepdim=True) + torch.linspace(0, 0.1, CLASSES).view_as(w)


def examples(count: int) -> list[Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(SHAPE, generator=generator) for _ in range(count)]


def streams(count: int, noise=None, seed: int = 7) -> list:
    noise = noise or GaussianNoise(0.5)
    return example_streams(noise, ADDITIVE, examples(count), seed, range(count))


def oracle_inputs(xs, nums, noise=None, seed: int = 7) -> list[Tensor]:
    """Each example's perturbed copies, drawn at once from a fresh copy of its stream."""
    fresh = streams(len(xs), noise, seed)
    return [x + s.take(n) for x, s, n in zip(xs, fresh, nums, strict=True)]


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_class_counts_equal_the_oracle_and_the_old_entry_point(batch_size: int) -> None:
    xs, nums, model = examples(4), [3, 130, 64, 257], Linear()
    reducer = sample(model, xs, nums, streams(4), ClassCounts(CLASSES), batch_size=batch_size)
    for e, inputs in enumerate(oracle_inputs(xs, nums)):
        expected = torch.bincount(model(inputs).argmax(1), minlength=CLASSES)
        assert torch.equal(reducer.counts[e], expected)
    assert reducer.drawn == nums and bool(reducer.all_finite)
    counts, finite = sample_class_counts_many(model, xs, nums, CLASSES, batch_size, streams(4))
    assert torch.equal(counts, reducer.counts) and bool(finite)


def test_a_stopping_rule_stops_after_the_batch_it_sees_and_matches_fixed_n() -> None:
    x, seen = examples(1), []

    def enough(reducer: Reducer, drawn) -> bool:
        seen.append(int(reducer.counts.sum()))
        return drawn[0] >= 100

    rule = StopWhen(enough)
    assert isinstance(rule, StoppingRule)
    stopped = sample(
        Linear(), x, [1000], streams(1), ClassCounts(CLASSES), batch_size=32, stop=rule
    )
    assert stopped.drawn == [128] and seen == [32, 64, 96, 128]
    fixed = sample(Linear(), x, [128], streams(1), ClassCounts(CLASSES), batch_size=32)
    assert torch.equal(stopped.counts, fixed.counts)
    never = StopWhen(lambda reducer, drawn: False)
    full = sample(Linear(), x, [1000], streams(1), ClassCounts(CLASSES), batch_size=32, stop=never)
    default = sample(Linear(), x, [1000], streams(1), ClassCounts(CLASSES), batch_size=32)
    assert full.drawn == [1000] and torch.equal(full.counts, default.counts)


def test_element_and_given_class_counts_equal_the_oracle() -> None:
    xs, nums, model = examples(2), [40, 23], PixelLinear()
    first = sample(model, xs, nums, streams(2), ElementClassCounts(), batch_size=16)
    modes = first.counts.argmax(dim=1)
    second = sample(model, xs, nums, streams(2, seed=8), GivenClassCounts(modes), batch_size=16)
    for e, (inputs, again) in enumerate(
        zip(oracle_inputs(xs, nums), oracle_inputs(xs, nums, seed=8), strict=True)
    ):
        preds = model(inputs).argmax(1)
        expected = torch.stack([(preds == k).sum(0) for k in range(CLASSES)]).int()
        assert torch.equal(first.counts[e], expected)
        hits = (model(again).argmax(1) == modes[e]).sum(0)
        assert torch.equal(second.counts[e], hits)
    assert first.counts.dtype == torch.int32 and second.counts.dtype == torch.long


def test_pixel_logits_of_the_wrong_size_are_refused() -> None:
    model = lambda b: PixelLinear()(b)[..., :3]  # noqa: E731
    with pytest.raises(ValueError, match=r"expected \[batch, K, 4, 4\]: certification is at full"):
        sample(model, examples(1), [5], streams(1), ElementClassCounts(), batch_size=4)


def test_outputs_kept_and_running_sums_equal_the_oracle() -> None:
    xs, nums = examples(3), [5, 17, 9]
    kept = sample(nn.Identity(), xs, nums, streams(3), OutputsKept(), batch_size=8).result()
    mapped = OutputsKept(map=lambda b: b.flatten(1).sum(1))
    sums = sample(nn.Identity(), xs, nums, streams(3), RunningSums(), batch_size=8)
    mapped = sample(nn.Identity(), xs, nums, streams(3), mapped, batch_size=8).result()
    for e, inputs in enumerate(oracle_inputs(xs, nums)):
        assert torch.equal(kept[e], inputs)
        assert torch.equal(mapped[e], inputs.flatten(1).sum(1))
        assert sums.counts[e] == nums[e]
        torch.testing.assert_close(sums.mean()[e], inputs.double().mean(0))


def test_the_nan_check_is_the_loops_and_says_what_it_saw() -> None:
    def with_value(value: float):
        def model(batch: Tensor) -> Tensor:
            out = Linear()(batch)
            out[-1, 0] = value
            return out

        return model

    with pytest.raises(FloatingPointError, match="the base classifier returned NaN or infinite"):
        sample(with_value(float("inf")), *streams_args(), ClassCounts(CLASSES), batch_size=8,
               name="base classifier")  # fmt: skip
    kept = sample(
        with_value(float("inf")), *streams_args(), OutputsKept(), batch_size=8, check="nan"
    )
    assert torch.isinf(kept.result()[0]).any()  # order statistics take infinities
    with pytest.raises(FloatingPointError, match="returned NaN outputs"):
        sample(with_value(float("nan")), *streams_args(), OutputsKept(), batch_size=8, check="nan")
    off = sample(with_value(float("nan")), *streams_args(), ClassCounts(CLASSES), batch_size=8,
                 check="off")  # fmt: skip
    assert not bool(off.all_finite) and not bool(off.no_nan)


def streams_args():
    return examples(1), [20], streams(1)


def test_example_stream_checks_the_input_in_one_place() -> None:
    noise = GaussianNoise(0.5)
    with pytest.raises(ConfigError, match=r"Smooth expects one example \[C, H, W\]") as info:
        example_stream(noise, ADDITIVE, torch.rand(4, 4), name="Smooth")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"segcertify input values span .* must lie in \[0, 1\]"):
        example_stream(noise, ADDITIVE, torch.full(SHAPE, 2.0), name="segcertify")
    with pytest.raises(ConfigError, match="got a scalar"):
        example_stream(noise, ADDITIVE, torch.tensor(0.5), input_range=None)
    tabular = example_stream(noise, ADDITIVE, torch.full((7,), 5.0), input_range=None)
    assert tabular.shape == (7,)


def test_one_seeding_rule() -> None:
    """``(seed, index)`` for datasets; without a generator, torch's global RNG seeds one."""
    noise, x = LaplaceNoise(0.5), examples(1)[0]
    (stream,) = example_streams(noise, ADDITIVE, [x], 3, [11])
    direct = noise.stream(SHAPE, example_generator(3, 11), "cpu")
    assert torch.equal(take_draws(stream, 50), direct.take(50))
    torch.manual_seed(4)
    first = take_draws(example_stream(noise, ADDITIVE, x), 20)
    torch.manual_seed(4)
    again = take_draws(example_stream(noise, ADDITIVE, x), 20)
    torch.manual_seed(4)
    by_rule = noise.stream(SHAPE, global_generator("cpu"), "cpu").take(20)
    assert torch.equal(first, again) and torch.equal(first, by_rule)
