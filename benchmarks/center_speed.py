"""Choosing the center of n outputs: ours (chunked pairwise matrix + kthvalue) against a loop.

Center smoothing's Algorithm 1 picks, among n sampled outputs, the one with the smallest median
distance to all n. Two ways of doing that on the same samples:

1. ``loop``: one Python iteration per sample, as the reference implementation of center smoothing
   does: distances from sample i to all samples as one vector operation, then their median. It
   takes minutes at n = 10,000, so it is timed on the first ``--loop-rows`` samples (distances
   still to all n) and extrapolated linearly to n rows; the table says so.
2. ``ours``: ``smoothcert.certifiers.center.min_median_sample``, the distance matrix formed
   ``chunk_elements`` entries at a time (for l2 through a matrix product) with ``kthvalue`` per row,
   exact where it matters: the products are taken in float64 after moving the rows to a common
   reference, and the 8 best medians are recomputed from exact (difference-based) distances.
3. ``float32``: the same matrix without the reference or the float64 products and without the exact
   recomputation (``torch.cdist`` for l2), as before the fix: what the exact distances cost. It
   cancels catastrophically for outputs of large norm (see ``smoothcert.distances``).

Peak memory is the rise of the process's peak resident set (Linux VmHWM, reset before each run
through /proc/self/clear_refs) on CPU, and ``torch.cuda.max_memory_allocated`` on CUDA, beyond the
samples themselves. Both methods are checked to pick the same center on the timed rows.

Usage: ``python benchmarks/center_speed.py [--device cuda] [--n 10000] [--distances l2,tv]``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from pathlib import Path

import torch

from smoothcert.certifiers.center import min_median_sample
from smoothcert.distances import L2Distance, build_distance

SHAPES = {"784": (784,), "3x32x32": (3, 32, 32)}


def loop_medians(distance, samples: torch.Tensor, rows: int) -> torch.Tensor:
    """The reference way: per sample, its distances to every sample, then their median."""
    n = len(samples)
    medians = torch.empty(rows, device=samples.device)
    for i in range(rows):
        distances = distance(samples[i : i + 1], samples)
        medians[i] = distances.kthvalue((n + 1) // 2).values
    return medians


def float32_min_median(distance, embedded: torch.Tensor, chunk_elements: int) -> tuple[int, float]:
    """The selection before the fix: float32 products on the raw rows, no exact recomputation
    (``torch.cdist`` for l2; other distances have no matrix-product form and are unchanged)."""
    n = len(embedded)
    step = max(1, chunk_elements // n)
    pairwise = torch.cdist if isinstance(distance, L2Distance) else distance.pairwise
    medians = torch.cat(
        [
            pairwise(embedded[i : i + step], embedded).kthvalue((n + 1) // 2, dim=1).values
            for i in range(0, n, step)
        ]
    )
    best = int(medians.argmin())
    return best, float(medians[best])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(device: torch.device) -> int:
    """Starts a peak-memory measurement; returns the baseline in bytes."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _status_kib("VmRSS") * 1024


def peak_since(device: torch.device, baseline: int) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    return max(0, _status_kib("VmHWM") * 1024 - baseline)


def timed(device: torch.device, run, *arguments):
    baseline = reset_peak(device)
    start = time.perf_counter()
    result = run(*arguments)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start, peak_since(device, baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--shapes", default="784,3x32x32")
    parser.add_argument("--distances", default="l2,tv")
    parser.add_argument("--loop-rows", type=int, default=300)
    parser.add_argument("--chunk-elements", type=int, default=2**24)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"device={device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads) n={args.n} chunk={args.chunk_elements} floats"
    )
    print()
    print(
        "| output | distance | ours s | float32 s | ours / float32 | loop s (extrapolated) "
        "| loop / ours | ours peak MiB | float32 peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for shape_name in args.shapes.split(","):
        shape = SHAPES[shape_name]
        generator = torch.Generator(device=device).manual_seed(0)
        raw = torch.rand(args.n, *shape, generator=generator, device=device)
        for name in args.distances.split(","):
            distance = build_distance(name)
            tv_on_vectors = name == "tv" and len(shape) == 1
            samples = raw.reshape(args.n, 1, 28, 28) if tv_on_vectors else raw
            embedded = distance.embed(samples)
            (best, median), ours_s, peak = timed(
                device, min_median_sample, distance, embedded, args.chunk_elements
            )
            _, fast_s, fast_peak = timed(
                device, float32_min_median, distance, embedded, args.chunk_elements
            )
            rows = min(args.loop_rows, args.n)
            medians, loop_s, _ = timed(device, loop_medians, distance, samples, rows)
            loop_full = loop_s * args.n / rows
            # the same rule: on the timed rows, the loop's medians match ours
            ours_rows = distance.pairwise(embedded[:rows], embedded).kthvalue((args.n + 1) // 2)
            assert torch.allclose(medians, ours_rows.values, rtol=1e-3, atol=1e-3)
            print(
                f"| {shape_name} | {name} | {ours_s:.2f} | {fast_s:.2f} | {ours_s / fast_s:.2f} | "
                f"{loop_full:.1f} ({rows} rows timed) | {loop_full / ours_s:.1f}x | "
                f"{peak / 2**20:.0f} | {fast_peak / 2**20:.0f} |"
            )


if __name__ == "__main__":
    main()
