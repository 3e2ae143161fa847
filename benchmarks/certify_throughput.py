"""Throughput of ``Smooth.certify`` against the base model's raw forward pass and a reference loop.

For each base model, three ways of pushing noise samples through it, at one batch size:

1. ``raw``: batched forward passes on one fixed input tensor (x plus noise drawn once) under
   ``torch.inference_mode``, no noise drawn, no counting: the physical limit of certification.
2. ``certify``: ``Smooth(model, 10, sigma).certify(x, n0, n, alpha, batch_size, generator)``,
   throughput = (n0 + n) / wall time.
3. ``reference``: the loop of Cohen et al.'s ``core.Smooth`` (locuslab/smoothing): per batch
   ``x.repeat``, ``randn_like * sigma``, ``model(batch + noise).argmax(1).cpu().numpy()`` and a
   Python-level count, under ``torch.no_grad``; then statsmodels' Clopper-Pearson bound.

Repeats are interleaved (raw, certify, reference, raw, ...) after one warm-up of each, so a noisy
shared machine slows all three alike; the table reports medians (``--stat max``: best runs) in noise
samples per second.

``--mode batch-size`` measures the default digits run instead (``certify=cohen``: n0=100,
n=10,000, the digits CNN at 1x8x8, random or ``--checkpoint`` weights): certification time per
example at the old fixed ``certify.batch_size=10000`` against the batch size ``auto`` chooses
(with packing where whole certifications fit a batch twice), and, at every batch size of a sweep,
certify's throughput against the raw forward pass, so certify is compared with raw at *its* best
batch size too.

Usage: ``python benchmarks/certify_throughput.py [--device cuda] [--bf16] [--channels-last]``,
``python benchmarks/certify_throughput.py --mode batch-size [--checkpoint CKPT]``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import timm
import torch
from statsmodels.stats.proportion import proportion_confint
from torch import Tensor, nn

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import auto_batch_candidates, group_size
from smoothcert.models import DigitsCNN, NormalizedClassifier
from smoothcert.noise import GaussianNoiseStream

NUM_CLASSES = 10
SIGMA = 0.25
ALPHA = 0.001
MODELS = ("digits", "resnet18")
INPUT_SHAPES = {"digits": (1, 8, 8), "resnet18": (3, 32, 32)}
# Defaults sized so one measurement takes a few seconds: on a 2-core CPU, and on one H100.
DEFAULT_BATCH = {
    "cpu": {"digits": 10000, "resnet18": 256},
    "cuda": {"digits": 10000, "resnet18": 1000},
}
DEFAULT_N = {
    "cpu": {"digits": 100_000, "resnet18": 512},
    "cuda": {"digits": 10_000_000, "resnet18": 100_000},
}


def build_model(name: str) -> nn.Module:
    """The base classifier ``name``, randomly initialized; it takes [0, 1] pixels."""
    if name == "digits":
        return NormalizedClassifier(DigitsCNN(NUM_CLASSES), mean=[0.3053], std=[0.3760])
    net = timm.create_model("resnet18", num_classes=NUM_CLASSES, pretrained=False)
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    return NormalizedClassifier(net, mean=mean, std=std, cifar_stem=True)


class Setup:
    """One model on one device with the options shared by all three paths."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.device = torch.device(args.device)
        self.batch_size, self.n0, self.n = args.batch_size[name], args.n0, args.n[name]
        self.autocast_dtype = torch.bfloat16 if args.bf16 else None
        self.channels_last = args.channels_last
        model = build_model(name).to(self.device).eval()
        if self.channels_last:  # weights too, so every path runs the same kernels
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        seeded = torch.Generator().manual_seed(0)
        self.x = torch.rand(INPUT_SHAPES[name], generator=seeded).to(self.device)
        noise = torch.randn((self.batch_size, *self.x.shape), generator=seeded).to(self.device)
        self.fixed_batch = self.as_input(self.x + SIGMA * noise)
        self.smooth = Smooth(
            model,
            NUM_CLASSES,
            SIGMA,
            autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last,
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def as_input(self, batch: Tensor) -> Tensor:
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def run_raw(s: Setup) -> int:
    """Full batches of the base model on one fixed input, enough to cover n0 + n samples.

    The fixed batch is x plus one draw of noise, made once: identical copies of x would flatter the
    base model (data-dependent kernels such as max-pool run measurably faster on repeated rows).
    """
    batch = s.fixed_batch
    num_batches = -(-(s.n0 + s.n) // s.batch_size)
    with torch.inference_mode(), s.autocast():
        for _ in range(num_batches):
            s.model(batch)
    return num_batches * s.batch_size


def run_certify(s: Setup) -> int:
    generator = torch.Generator(device=s.device).manual_seed(1234)
    s.smooth.certify(s.x, s.n0, s.n, alpha=ALPHA, batch_size=s.batch_size, generator=generator)
    return s.n0 + s.n


def reference_sample_noise(s: Setup, num: int) -> np.ndarray:
    """``core.Smooth._sample_noise`` of locuslab/smoothing, with the same batch size and options."""
    counts = np.zeros(NUM_CLASSES, dtype=int)
    with torch.no_grad(), s.autocast():
        for _ in range(-(-num // s.batch_size)):
            this_batch_size = min(s.batch_size, num)
            num -= this_batch_size
            batch = s.x.repeat((this_batch_size, 1, 1, 1))
            noise = torch.randn_like(batch) * SIGMA
            predictions = s.model(s.as_input(batch + noise)).argmax(1)
            for idx in predictions.cpu().numpy():  # the reference's _count_arr
                counts[idx] += 1
    return counts


def run_reference(s: Setup) -> int:
    """``core.Smooth.certify`` of locuslab/smoothing: select with n0, bound with n."""
    s.model.eval()
    c_hat = reference_sample_noise(s, s.n0).argmax().item()
    count = reference_sample_noise(s, s.n)[c_hat]
    proportion_confint(count, s.n, alpha=2 * ALPHA, method="beta")
    return s.n0 + s.n


def run_noise_only(s: Setup) -> int:
    """What certify spends on noise alone: the stream's draws plus the add of x, n0 + n samples."""
    generator = torch.Generator(device=s.device).manual_seed(1234)
    stream = GaussianNoiseStream(s.x.shape, SIGMA, generator, s.device, torch.float32)
    for num in (s.n0, s.n):
        while num > 0:
            this_batch = min(s.batch_size, num)
            s.as_input(stream.take(this_batch).add_(s.x))
            num -= this_batch
    return s.n0 + s.n


PATHS: dict[str, Callable[[Setup], int]] = {
    "raw": run_raw,
    "certify": run_certify,
    "reference": run_reference,
    "noise": run_noise_only,
}


def timed(s: Setup, path: Callable[[Setup], int]) -> float:
    """Samples per second of one run of ``path``, synchronizing the device around it."""
    s.sync()
    start = time.perf_counter()
    samples = path(s)
    s.sync()
    return samples / (time.perf_counter() - start)


def measure(s: Setup, repeats: int) -> dict[str, list[float]]:
    """One warm-up of every path, then ``repeats`` interleaved rounds; samples/s per run."""
    for path in PATHS.values():
        timed(s, path)
    rates: dict[str, list[float]] = {key: [] for key in PATHS}
    for _ in range(repeats):
        for key, path in PATHS.items():
            rates[key].append(timed(s, path))
    return rates


def load_weights(model: nn.Module, checkpoint: str) -> None:
    """Loads a smoothcert classification checkpoint's ``model.*`` weights into ``model``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})


def timed_examples(s: Setup, batch: int, packed: bool = True) -> float:
    """Seconds per example of CERTIFY at ``batch`` as the Cohen callback runs it: one example,
    or (``packed``) a group sharing forward passes where whole certifications fit the batch
    twice."""
    count = group_size(batch, s.n0, s.n) if packed else 1
    generators = [torch.Generator(device=s.device).manual_seed(1234 + i) for i in range(count)]
    s.sync()
    start = time.perf_counter()
    s.smooth.certify_many([s.x] * count, s.n0, s.n, ALPHA, batch, generators)
    s.sync()
    return (time.perf_counter() - start) / count


def timed_raw(s: Setup, batch: int) -> float:
    """Samples per second of raw forward passes at ``batch`` covering n0 + n samples."""
    fixed = s.fixed_batch[:batch]
    if fixed.shape[0] < batch:
        fixed = fixed.repeat(-(-batch // fixed.shape[0]), *[1] * (fixed.dim() - 1))[:batch]
    num_batches = -(-(s.n0 + s.n) // batch)
    s.sync()
    start = time.perf_counter()
    with torch.inference_mode(), s.autocast():
        for _ in range(num_batches):
            s.model(fixed)
    s.sync()
    return num_batches * batch / (time.perf_counter() - start)


def batch_size_mode(args: argparse.Namespace) -> None:
    """The default digits run: fixed batch 10,000 against ``auto``, and certify against raw
    forward passes over a sweep of batch sizes (interleaved rounds after one warm-up)."""
    args.batch_size = {"digits": max(args.fixed, max(args.sweep))}
    s = Setup(args, "digits")
    if args.checkpoint:
        load_weights(s.model, args.checkpoint)
    candidates = auto_batch_candidates(s.n0, s.n)
    work = args.examples * (s.n0 + s.n)  # as the Cohen callback passes it
    choice = s.smooth.choose_batch_size(s.x, max(candidates), candidates, work=work)
    auto, per = choice.batch_size, s.n0 + s.n
    print(f"certify.batch_size=auto: {choice.describe()}")
    print(
        f"(the choice runs once per run: {choice.seconds * 1000 / args.examples:.1f} ms per "
        f"example over a {args.examples}-example run)\n"
    )
    sizes = sorted({*args.sweep, args.fixed, auto})
    grouped = [b for b in sizes if group_size(b, s.n0, s.n) > 1]
    certify_s: dict[int, list[float]] = {b: [] for b in sizes}
    unpacked: dict[int, list[float]] = {b: [] for b in grouped}
    raw: dict[int, list[float]] = {b: [] for b in sizes}
    for b in sizes:  # warm-up
        timed_examples(s, b), timed_raw(s, b)
    for _ in range(args.repeats):
        for b in sizes:
            certify_s[b].append(timed_examples(s, b))
            raw[b].append(timed_raw(s, b))
            if b in grouped:
                unpacked[b].append(timed_examples(s, b, packed=False))
    # --stat max: the best run, i.e. the fewest seconds and the most samples per second.
    fastest = statistics.median if args.stat == "median" else min
    seconds = {b: fastest(v) for b, v in certify_s.items()}
    alone = {b: fastest(v) for b, v in unpacked.items()}
    raw_rate = {b: (statistics.median if args.stat == "median" else max)(v) for b, v in raw.items()}
    cert_rate = {b: per / seconds[b] for b in sizes}
    best_raw = max(raw_rate, key=raw_rate.__getitem__)
    print(
        "| B | group | certify (ms/example) | one at a time (ms/example) | certify (samples/s) "
        "| raw at B (samples/s) | certify / raw at B | certify / best raw | |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for b in sizes:
        marks = [m for m, hit in (("fixed", b == args.fixed), ("auto", b == auto)) if hit]
        marks += ["best raw"] if b == best_raw else []
        print(
            f"| {b} | {group_size(b, s.n0, s.n)} | {seconds[b] * 1000:.1f} "
            f"| {f'{alone[b] * 1000:.1f}' if b in alone else '(same)'} | {cert_rate[b]:,.0f} "
            f"| {raw_rate[b]:,.0f} | {cert_rate[b] / raw_rate[b]:.3f} "
            f"| {cert_rate[b] / raw_rate[best_raw]:.3f} | {', '.join(marks)} |"
        )
    fixed, chosen = seconds[args.fixed], seconds[auto]
    amortized = chosen + choice.seconds / args.examples
    print(
        f"\nDigits CNN, CERTIFY(n0={s.n0}, n={s.n}), {args.stat} of {args.repeats}:\n\n"
        f"| | ms/example | speed-up over fixed {args.fixed} | certify / best raw |\n"
        "|---|---|---|---|\n"
        f"| fixed batch_size={args.fixed} | {fixed * 1000:.1f} | 1.00x "
        f"| {cert_rate[args.fixed] / raw_rate[best_raw]:.3f} |\n"
        f"| auto (chose {auto}) | {chosen * 1000:.1f} | {fixed / chosen:.2f}x "
        f"| {cert_rate[auto] / raw_rate[best_raw]:.3f} |\n"
        f"| auto + its choice over {args.examples} examples | {amortized * 1000:.1f} "
        f"| {fixed / amortized:.2f}x | |\n"
        f"| best raw forward (B={best_raw}) | {per / raw_rate[best_raw] * 1000:.1f} "
        f"| {fixed * raw_rate[best_raw] / per:.2f}x | 1.000 |"
    )


def per_model(text: str) -> dict[str, int] | int:
    """Parses ``"123"`` (every model) or ``"digits=10000,resnet18=256"``."""
    if "=" not in text:
        return int(text)
    pairs = dict(item.split("=", 1) for item in text.split(","))
    unknown = set(pairs) - set(MODELS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {sorted(unknown)}; known: {MODELS}")
    return {key: int(value) for key, value in pairs.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--batch-size", type=per_model, default={}, help="N or digits=N,resnet18=M")
    parser.add_argument("--n", type=per_model, default={}, help="N or digits=N,resnet18=M")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path")
    parser.add_argument(
        "--stat",
        choices=("median", "max"),
        default="median",
        help="how repeats are summarized; max (best run) resists CPU contention on shared machines",
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on every path")
    parser.add_argument("--channels-last", action="store_true", help="channels_last on every path")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--mode",
        choices=("paths", "batch-size"),
        default="paths",
        help="paths: raw / certify / reference per model; batch-size: the default digits run at "
        "the old fixed batch size against auto, and certify against raw over a sweep",
    )
    parser.add_argument("--checkpoint", help="batch-size mode: digits weights (a .ckpt)")
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(b) for b in text.split(",")],
        default=[64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
        help="batch-size mode: batch sizes of the certify / raw sweep",
    )
    parser.add_argument("--fixed", type=int, default=10_000, help="batch-size mode: old default")
    parser.add_argument(
        "--examples", type=int, default=200, help="batch-size mode: run length for amortizing"
    )
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    if set(args.models) - set(MODELS):
        parser.error(f"--models must be a subset of {MODELS}")
    kind = "cuda" if torch.device(args.device).type == "cuda" else "cpu"
    default_n = {"digits": 10_000} if args.mode == "batch-size" else DEFAULT_N[kind]
    for option, defaults in (("batch_size", DEFAULT_BATCH[kind]), ("n", default_n)):
        given = getattr(args, option)
        values = {m: given for m in MODELS} if isinstance(given, int) else {**defaults, **given}
        setattr(args, option, values)
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, timm {timm.__version__}, numpy {np.__version__}")
    print(f"device: {device} ({device_name(device)}), torch threads: {torch.get_num_threads()}")
    if device.type == "cuda":
        print(
            f"cudnn {torch.backends.cudnn.version()}, "
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}"
        )
    print(
        f"sigma={SIGMA}, alpha={ALPHA}, n0={args.n0}, bf16={args.bf16}, "
        f"channels_last={args.channels_last}, "
        f"repeats={args.repeats} ({args.stat}, after 1 warm-up)\n"
    )
    if args.mode == "batch-size":
        batch_size_mode(args)
        return
    rows = []
    for name in args.models:
        setup = Setup(args, name)
        rates = measure(setup, args.repeats)
        summarize = statistics.median if args.stat == "median" else max
        summary = {key: summarize(values) for key, values in rates.items()}
        spread = max(
            (max(v) - min(v)) / statistics.median(v) for k, v in rates.items() if k != "noise"
        )
        rows.append((name, setup, summary, spread))
    header = (
        "| model | B | n0 + n | raw (samples/s) | certify (samples/s) | reference (samples/s) "
        "| certify / raw | reference / raw | certify / reference | run-to-run spread |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for name, s, summary, spread in rows:
        raw, cert, ref = summary["raw"], summary["certify"], summary["reference"]
        print(
            f"| {name} | {s.batch_size} | {s.n0 + s.n} | {raw:,.0f} | {cert:,.0f} | {ref:,.0f} "
            f"| {cert / raw:.3f} | {ref / raw:.3f} | {cert / ref:.3f} | {spread:.1%} |"
        )
    print(
        "\nWhere certify's time goes (noise = GaussianNoiseStream.take + add of x, per sample):\n"
    )
    print(
        "| model | noise only (samples/s) | noise share of certify time "
        "| forward share (certify / raw) | everything else |"
    )
    print("|---|---|---|---|---|")
    for name, _, summary, _ in rows:
        cert, noise, raw = summary["certify"], summary["noise"], summary["raw"]
        noise_share, forward_share = cert / noise, cert / raw
        other = 1 - noise_share - forward_share
        print(f"| {name} | {noise:,.0f} | {noise_share:.1%} | {forward_share:.1%} | {other:.1%} |")

    print(
        "\nNoise is timed alone, so on GPU (where its kernel launches overlap the forward inside "
        "certify) its share is an upper bound; 'everything else' (counting, checks, the n0 batch, "
        "allocation) absorbs timing noise and can come out negative."
    )


if __name__ == "__main__":
    main()
