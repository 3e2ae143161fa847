"""Training-step time of each regime relative to Gaussian augmentation, same model and batch.

One step = ``zero_grad``, the objective's loss (every forward pass it needs, attacks included),
``backward`` and an Adam step, exactly what the Lightning module runs per batch. Regimes:

- ``gaussian``: Cohen et al., one noisy copy (the baseline, ratio 1).
- ``consistency``: Jeong & Shin, m noisy copies in one forward pass (expected about m).
- ``smoothadv``: Salman et al., ``steps`` PGD passes on m copies in eval mode, then training on the
  m copies (expected about m * (steps + 1); the attack's backward passes compute no weight
  gradients, so the measured ratio is usually below that).
- ``macer``: Zhai et al., k noisy copies in one forward pass, soft smoothed CE + radius hinge
  (expected about k; the paper's k is 16).
- ``smoothmix``: Jeong et al. 2021, ``steps`` PGD passes on m copies of the soft smoothed
  classifier (eval mode), then CE on m copies of x and KL on m copies of the mixed input (expected
  about m * (steps + 2) in forward passes; the attack computes no weight gradients).
- ``stability``: Li et al., the clean and one noisy copy in one forward pass (expected about 2).
- ``denoiser-mse`` / ``denoiser-stability``: denoised smoothing, a DnCNN trained in front of the
  frozen base model (full access). A different trainable model, so the ratio is only indicative.

Repeats are interleaved (gaussian, consistency, ..., gaussian, ...) after one warm-up each, so a
shared machine slows all regimes alike; the table reports the median milliseconds per step.

Usage: ``python benchmarks/regime_cost.py [--models digits,resnet18] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import timm
import torch
from torch import Tensor, nn

from smoothcert.models import DigitsCNN, NormalizedClassifier
from smoothcert.models.denoisers import (
    DenoisedClassifier,
    DnCNN,
    FrozenClassifier,
    denoiser_loss_terms,
)
from smoothcert.noise import GaussianNoise
from smoothcert.regimes import (
    MACER,
    ConsistencyRegularization,
    GaussianAugmentation,
    SmoothMix,
    StabilityTraining,
)
from smoothcert.regimes.smoothadv import SmoothAdv

SIGMA = 0.25
SHAPES = {"digits": (1, 8, 8), "resnet18": (3, 32, 32)}
BATCH = {"digits": 64, "resnet18": 64}  # the digits config's batch; CIFAR batch kept CPU-sized
DNCNN = {"digits": (5, 16), "resnet18": (17, 64)}  # (depth, width): digits_denoiser and paper


def build_classifier(name: str) -> nn.Module:
    """The base model ``name`` (random weights) taking [0, 1] pixels."""
    if name == "digits":
        return NormalizedClassifier(DigitsCNN(10), [0.3053], [0.3760])
    net = timm.create_model("resnet18", num_classes=10, pretrained=False)
    return NormalizedClassifier(net, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], cifar_stem=True)


def classifier_step(objective: nn.Module, model: nn.Module) -> Callable[[Tensor, Tensor], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        objective(model, x, y).backward()
        optimizer.step()

    return step


def denoiser_step(name: str, objective: str, device: torch.device) -> Callable[..., None]:
    depth, width = DNCNN[name]
    frozen = FrozenClassifier(build_classifier(name))
    model = DenoisedClassifier(DnCNN(SHAPES[name][0], depth, width), frozen).to(device).train()
    optimizer = torch.optim.Adam(model.denoiser.parameters(), lr=1e-3)
    noise = GaussianNoise(SIGMA)

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        denoised = model.denoiser(noise(x))
        denoiser_loss_terms(model.classifier, x, denoised, objective, 1.0)["loss"].backward()
        optimizer.step()

    return step


def regimes(args: argparse.Namespace, name: str) -> list[tuple[str, str, float, Callable]]:
    """(regime, settings, expected ratio, step function) for model ``name``."""
    device = torch.device(args.device)
    noise = GaussianNoise(SIGMA)

    def on_model(objective: nn.Module) -> Callable:
        return classifier_step(objective, build_classifier(name).to(device).train())

    m = args.m
    rows = [
        ("gaussian", "1 copy", 1.0, on_model(GaussianAugmentation(noise))),
        ("consistency", f"m={m}", float(m), on_model(ConsistencyRegularization(noise, m=m))),
    ]
    for steps in args.steps:
        smoothadv = SmoothAdv(noise, epsilon=0.25, steps=steps, m=m, warmup_epochs=0)
        rows.append(("smoothadv", f"m={m} steps={steps}", m * (steps + 1.0), on_model(smoothadv)))
    macer = MACER(noise, k=args.macer_k)
    rows.append(("macer", f"k={args.macer_k}", float(args.macer_k), on_model(macer)))
    smoothmix = SmoothMix(noise, m=m, steps=4, warmup_epochs=0)
    rows.append(("smoothmix", f"m={m} steps=4", m * (4 + 2.0), on_model(smoothmix)))
    rows.append(("stability", "clean + 1 copy", 2.0, on_model(StabilityTraining(noise))))
    depth, width = DNCNN[name]
    for objective in ("mse", "stability"):
        settings = f"DnCNN {depth}x{width}"
        rows.append(
            (
                f"denoiser-{objective}",
                settings,
                float("nan"),
                denoiser_step(name, objective, device),
            )
        )
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, name: str) -> list[tuple[str, str, float, float]]:
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((BATCH[name], *SHAPES[name]), generator=generator).to(device)
    y = torch.randint(0, 10, (BATCH[name],), generator=generator).to(device)
    rows = regimes(args, name)
    times: dict[str, list[float]] = {label + settings: [] for label, settings, _, _ in rows}
    for _, _, _, step in rows:  # warm-up
        step(x, y)
    for _ in range(args.repeats):
        for label, settings, _, step in rows:
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps_per_repeat):
                step(x, y)
            sync(device)
            elapsed = (time.perf_counter() - start) / args.steps_per_repeat
            times[label + settings].append(elapsed * 1000)
    return [(lbl, s, e, statistics.median(times[lbl + s])) for lbl, s, e, _ in rows]


def environment(args: argparse.Namespace) -> str:
    device = args.device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return "\n".join(
        [
            f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}",
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"{platform.machine()} {platform.processor() or platform.platform()}",
            f"device: {device}, torch threads: {torch.get_num_threads()}, "
            f"os.cpu_count: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}",
            f"sigma {SIGMA}; median of {args.repeats} interleaved repeats of "
            f"{args.steps_per_repeat} steps after one warm-up step",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="digits", help="comma-separated: digits,resnet18")
    parser.add_argument("--m", type=int, default=2, help="noise copies (consistency, smoothadv)")
    parser.add_argument(
        "--steps", default="4,10", help="SmoothAdv PGD steps, comma-separated (digits, paper)"
    )
    parser.add_argument("--macer-k", type=int, default=16, help="MACER noise copies (paper: 16)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-per-repeat", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: 1 on CPU, where small ops with several threads are at the "
        "mercy of other processes on a shared machine; all of the device on GPU)",
    )
    args = parser.parse_args()
    args.steps = [int(s) for s in args.steps.split(",")]
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    torch.manual_seed(0)
    print(environment(args))
    for name in args.models.split(","):
        results = measure(args, name)
        baseline = results[0][3]
        print(f"\n{name}: batch {BATCH[name]} x {SHAPES[name]}\n")
        print("| regime | settings | ms / step | ratio to gaussian | expected |")
        print("|---|---|---:|---:|---:|")
        for label, settings, expected, ms in results:
            shown = "n/a" if expected != expected else f"~{expected:g}"
            print(f"| {label} | {settings} | {ms:.1f} | {ms / baseline:.2f} | {shown} |")


if __name__ == "__main__":
    main()
