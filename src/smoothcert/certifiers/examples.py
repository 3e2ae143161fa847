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
