"""SegCertify on one 1024x2048 image: time of the statistics and peak memory of a full call.

1. Statistics (n=100, tau 0.75, alpha 0.001, Holm): given the per-pixel counts of the selected
   class (drawn once: Bin(100, p) with p ~ Beta(20, 1), seeded), three ways to decide which
   pixels to certify, with identical decisions (checked):

   - ``ours``: ``smoothcert.stats.multiple_testing.reject_counts``: a table of the n + 1 possible
     p-values, Holm on the (n + 1)-bin histogram of counts, one gather back to the pixels. Also
     timed: the per-pixel p-value map ``pvalue_table(n, tau)[counts]``, which the decisions do not
     need.
   - ``scipy vectorised``: ``scipy.stats.binom.sf(counts - 1, n, tau)`` on every pixel, then
     ``statsmodels.stats.multitest.multipletests(pvalues, alpha, method="holm")``.
   - ``reference loop``: ``scipy.stats.binomtest(count, n, tau, alternative="greater")`` per pixel
     in a Python loop, as Fischer et al.'s code does (there spread over a multiprocessing pool),
     timed on ``--loop-pixels`` pixels and extrapolated linearly to all 2,097,152; then the same
     ``multipletests`` call, timed on all pixels. The paper reports 30 s per image for its
     p-values and 0.1 s for Holm.

2. Memory: each configuration runs in a fresh subprocess that builds a tiny model (a 1x1 conv,
   3 -> 19 classes, computed channels-last: on a CPU, argmax over the class axis of NCHW logits
   costs more than the conv), resets the process's peak RSS (``/proc/self/clear_refs``), calls
   ``segcertify`` on a ``[3, 1024, 2048]`` image and reports VmHWM minus the VmRSS before the call
   (on CUDA also ``torch.cuda.max_memory_allocated`` growth). The peak does not depend on n (counts
   are fixed-size), so a sweep over batch sizes at a small n accompanies the full-n call.

Usage: ``python benchmarks/segcertify_speed.py [--quick] [--device cuda]`` (about 15 minutes on two
CPU cores, nearly all of it the n=1000 call; ``--quick`` about 30 s).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy
import statsmodels
import torch
from scipy.stats import binom, binomtest
from statsmodels.stats.multitest import multipletests
from torch import nn

from smoothcert.certifiers.segmentation import segcertify
from smoothcert.stats.multiple_testing import pvalue_table, reject_counts

HEIGHT, WIDTH, NUM_CLASSES = 1024, 2048, 19
N, TAU, ALPHA, SIGMA = 100, 0.75, 0.001, 0.25
GIB = 1 << 30


def draw_counts(seed: int) -> np.ndarray:
    """``[H, W]`` int64 counts: mostly confident pixels and a tail of uncertain ones."""
    rng = np.random.default_rng(seed)
    return rng.binomial(N, rng.beta(20.0, 1.0, size=(HEIGHT, WIDTH))).astype(np.int64)


def timed(
    fn: Callable[[], object], repeats: int, sync: Callable[[], None], stat: str = "median"
) -> float:
    """Wall time in ms of one call: ``stat`` (median or min) of ``repeats`` after a warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * (min(times) if stat == "min" else statistics.median(times))


def statistics_table(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    counts_np = draw_counts(args.seed)
    counts = torch.from_numpy(counts_np).to(device)
    pixels = counts_np.size

    table_ms = timed(lambda: pvalue_table(N, TAU, device), args.repeats, sync, args.stat)
    ours_ms = timed(
        lambda: reject_counts(counts, N, TAU, ALPHA, "holm"), args.repeats, sync, args.stat
    )
    map_ms = timed(lambda: pvalue_table(N, TAU, device)[counts], args.repeats, sync, args.stat)

    slow = max(1, args.repeats // 2)
    sf_ms = timed(lambda: binom.sf(counts_np - 1, N, TAU), slow, sync, args.stat)
    pvalues = binom.sf(counts_np.ravel() - 1, N, TAU)
    holm_ms = timed(lambda: multipletests(pvalues, ALPHA, method="holm"), slow, sync, args.stat)

    subset = counts_np.ravel()[: args.loop_pixels].tolist()
    start = time.perf_counter()
    loop = [binomtest(c, N, TAU, alternative="greater").pvalue for c in subset]
    loop_ms = 1000 * (time.perf_counter() - start) * pixels / len(subset)

    ours = reject_counts(counts, N, TAU, ALPHA, "holm").cpu().numpy().ravel()
    reference = multipletests(pvalues, ALPHA, method="holm")[0]
    same_decisions = bool(np.array_equal(ours, reference))
    loop_gap = float(np.max(np.abs(np.array(loop) - pvalues[: len(loop)])))

    print(f"\n### Statistics for one {HEIGHT}x{WIDTH} image (n={N}, tau={TAU}, alpha={ALPHA})\n")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"device for ours: {device}; {args.stat} of {args.repeats} runs (scipy paths: {slow}); "
        f"load average before: {load}\n"
    )
    print("| path | p-values (ms) | Holm (ms) | total (ms) | total / ours |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("ours: p-value table + Holm on the count histogram", table_ms, ours_ms - table_ms),
        ("ours + per-pixel p-value map (not needed)", map_ms, ours_ms - table_ms),
        ("scipy vectorised: binom.sf per pixel + multipletests", sf_ms, holm_ms),
        (
            f"reference loop: binomtest per pixel ({len(subset):,} px timed, x"
            f"{pixels / len(subset):.1f} extrapolated) + multipletests",
            loop_ms,
            holm_ms,
        ),
    ]
    for name, pv_ms, h_ms in rows:
        total = pv_ms + h_ms
        print(f"| {name} | {pv_ms:,.1f} | {h_ms:,.1f} | {total:,.1f} | {total / ours_ms:,.1f} |")
    certified = float(ours.mean())
    print(
        f"\nours total {ours_ms:.1f} ms (target < 50 ms: {'met' if ours_ms < 50 else 'NOT met'}); "
        f"decisions identical to statsmodels on all {pixels:,} pixels: {same_decisions}; "
        f"max |binomtest - table| on the loop's pixels: {loop_gap:.1e}; certified {certified:.3f}"
    )
    gc_start = time.perf_counter()
    gc.collect()
    print(
        f"(multipletests' holm branch calls gc.collect(), which alone takes "
        f"{1000 * (time.perf_counter() - gc_start):.0f} ms in this process)"
    )


class TinySegmenter(nn.Module):
    """A 1x1 convolution to 19 classes on [0, 1] inputs, computed channels-last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.contiguous(memory_format=torch.channels_last))


def read_status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_child(config: dict) -> None:
    """Runs one ``segcertify`` call and prints its memory growth as one JSON line."""
    device = torch.device(config["device"])
    torch.manual_seed(0)
    model = TinySegmenter().to(device).eval()
    x = torch.rand(3, HEIGHT, WIDTH, device=device)
    with torch.inference_mode():
        model(x[None, :, :8, :8])  # load the kernels before measuring
    generator = torch.Generator(device=device).manual_seed(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    rss_before = read_status("VmRSS")
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    n0, n, batch_size = config["n0"], config["n"], config["batch_size"]
    classes, _ = segcertify(model, x, SIGMA, n0, n, TAU, ALPHA, "holm", batch_size, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    result = {
        "rss": read_status("VmHWM") - rss_before,
        "cuda": torch.cuda.max_memory_allocated() - cuda_before if device.type == "cuda" else 0,
        "seconds": time.perf_counter() - start,
        "certified": float((classes >= 0).float().mean()),
    }
    print(json.dumps(result))


def measure_memory(device: str, batch_size: int, n0: int, n: int) -> dict:
    config = {"device": device, "batch_size": batch_size, "n0": n0, "n": n}
    command = [sys.executable, __file__, "--memory-child", json.dumps(config)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {**config, **json.loads(done.stdout.strip().splitlines()[-1])}


def memory_table(args: argparse.Namespace) -> None:
    runs = [measure_memory(args.device, args.batch_size, args.n0, args.memory_n)]
    runs += [measure_memory(args.device, b, args.n0, args.sweep_n) for b in args.sweep]
    print(f"\n### Peak memory of segcertify on a [3, {HEIGHT}, {WIDTH}] image, 1x1 conv -> 19\n")
    print(
        "| n0 | n | batch size | peak RSS growth (MiB) | CUDA peak growth (MiB) | of 1 GiB "
        "| wall (s) | samples/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        peak = max(r["rss"], r["cuda"])
        print(
            f"| {r['n0']} | {r['n']} | {r['batch_size']} | {r['rss'] / 2**20:,.0f} "
            f"| {r['cuda'] / 2**20:,.0f} | {peak / GIB:.0%} | {r['seconds']:.1f} "
            f"| {(r['n0'] + r['n']) / r['seconds']:.1f} |"
        )
    counts_mib = NUM_CLASSES * HEIGHT * WIDTH * 4 / 2**20
    print(
        f"\nFor scale: the [19, {HEIGHT}, {WIDTH}] int32 class counts of the n0 phase are "
        f"{counts_mib:.0f} MiB; one noisy batch element costs {3 * HEIGHT * WIDTH * 4 / 2**20:.0f}"
        f" MiB of input and {NUM_CLASSES * HEIGHT * WIDTH * 4 / 2**20:.0f} MiB of float32 logits."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the fast paths")
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="summary of the repeats; min (best run) resists CPU contention on shared machines",
    )
    parser.add_argument("--loop-pixels", type=int, default=20_000, help="pixels timed in the loop")
    parser.add_argument("--n0", type=int, default=10, help="memory: selection samples")
    parser.add_argument("--memory-n", type=int, default=1000, help="memory: estimation samples")
    parser.add_argument("--batch-size", type=int, default=1, help="memory: batch of the full call")
    parser.add_argument("--sweep", default="1,2,4", help="memory: batch sizes at --sweep-n")
    parser.add_argument("--sweep-n", type=int, default=20)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2,000 loop pixels, n=20, no sweep")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.loop_pixels, args.memory_n, args.sweep = 3, 2_000, 20, ""
    args.sweep = [int(b) for b in args.sweep.split(",") if b]
    return args


def main() -> None:
    args = parse_args()
    if args.memory_child is not None:
        memory_child(json.loads(args.memory_child))
        return
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"statsmodels {statsmodels.__version__}, torch threads {torch.get_num_threads()}"
    )
    statistics_table(args)
    if not args.skip_memory:
        memory_table(args)


if __name__ == "__main__":
    main()
