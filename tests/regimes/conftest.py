"""Fixtures of the regime tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Runs each test with one torch thread, then restores the count.

    The models here are tiny: with several threads, each small op pays a thread barrier, and on a
    shared CPU a descheduled thread stalls it (measured: 30x slower steps). Results are unchanged.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
