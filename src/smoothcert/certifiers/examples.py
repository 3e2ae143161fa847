"""Certifying a dataset example by example with per-example noise seeds."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset

from smoothcert.certifiers.classification import Smooth
from smoothcert.errors import ConfigError
from smoothcert.noise import example_generator
from smoothcert.records import CohenRecord
from smoothcert.sampling import batch_size_candidates


def certify_examples(
    smooth: Smooth,
    dataset: Dataset,
    indices: Sequence[int],
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    seed: int,
    device: torch.device | str,
) -> Iterator[CohenRecord]:
    """Yields one record per dataset index, in order, as soon as it is certified.

    Example ``i``'s noise comes from a generator seeded by ``(seed, i)``, so each record depends
    only on the model, the example and the settings: not on the batch size, order or sharding.
    """
    device = torch.device(device)
    for idx in indices:
        x, label = dataset[idx]
        generator = example_generator(seed, idx, device)
        x = torch.as_tensor(x).to(device)
        yield certify_one(smooth, idx, x, int(label), generator, n0, n, alpha, batch_size)


def certify_one(
    smooth: Smooth,
    idx: int,
    x: torch.Tensor,
    label: int,
    generator: torch.Generator,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
) -> CohenRecord:
    """CERTIFY of dataset example ``idx`` (input ``x`` on the model's device, class ``label``)
    with noise from ``generator``; ``time`` is the seconds it took."""
    start = time.perf_counter()
    prediction, radius = smooth.certify(x, n0, n, alpha, batch_size, generator=generator)
    elapsed = time.perf_counter() - start
    return CohenRecord(idx, label, prediction, radius, int(prediction == label), elapsed)


# Examples certified together at most when whole certifications fit a batch several times.
MAX_GROUP = 64


def auto_batch_candidates(n0: int, n: int, max_group: int = MAX_GROUP) -> list[int]:
    """The batch sizes ``certify.batch_size=auto`` times for CERTIFY(n0, n): powers of two from
    64 up to ``max_group`` whole certifications (``n0 + n`` samples each; the memory cap of
    ``choose_batch_size`` ends them sooner), and ``n0 + n`` (one example in one batch)."""
    return sorted({*batch_size_candidates(max_group * (n0 + n)), n0 + n})


def group_size(batch_size: int, n0: int, n: int, max_group: int = MAX_GROUP) -> int:
    """Examples to certify together at ``batch_size``: as many whole certifications as fit one
    batch (at most ``max_group``) if at least two do, else one."""
    fits = batch_size // (n0 + n)
    return min(max_group, fits) if fits >= 2 else 1


def certify_group(
    smooth: Smooth,
    indices: Sequence[int],
    xs: Sequence[torch.Tensor],
    labels: Sequence[int],
    generators: Sequence[torch.Generator],
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
) -> list[CohenRecord]:
    """:func:`certify_one` of several examples of one shape, their samples packed into shared
    forward passes (``Smooth.certify_many``): the same predictions and radii; each ``time`` is
    an equal share of the group's seconds."""
    settings = (n0, n, alpha, batch_size)
    records, _, _ = certify_group_details(smooth, indices, xs, labels, generators, *settings)
    return records


def certify_group_details(
    smooth: Smooth,
    indices: Sequence[int],
    xs: Sequence[torch.Tensor],
    labels: Sequence[int],
    generators: Sequence[torch.Generator],
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
) -> tuple[list[CohenRecord], list[int], torch.Tensor]:
    """:func:`certify_group`'s records, with what further certificates from the same samples
    need (``Smooth.certify_many_with_predictions``): each example's smoothed prediction at ``x``
    (in-range brightness) and the class counts ``[len(xs), K]`` of its ``n`` estimation samples
    (top-k)."""
    start = time.perf_counter()
    results, predictions, counts = smooth.certify_many_with_predictions(
        xs, n0, n, alpha, batch_size, generators
    )
    share = (time.perf_counter() - start) / len(results)
    records = [
        CohenRecord(idx, label, prediction, radius, int(prediction == label), share)
        for idx, label, (prediction, radius) in zip(indices, labels, results, strict=True)
    ]
    return records, predictions, counts


def select_indices(
    dataset_size: int,
    num_examples: int | None,
    skip: int = 1,
    split: str = "test",
    noun: str = "examples",
) -> list[int]:
    """Every ``skip``-th index of the split, the first ``num_examples`` of them (all if None).

    Raises ConfigError (naming ``certify.num_examples``) if the split has fewer ``noun``.
    """
    indices = list(range(0, dataset_size, skip))
    if num_examples is not None and num_examples > len(indices):
        raise ConfigError(
            f"certify.num_examples={num_examples} exceeds the {len(indices)} {noun} of "
            f"split={split} (size {dataset_size}, skip {skip}): lower certify.num_examples"
        )
    return indices if num_examples is None else indices[:num_examples]
