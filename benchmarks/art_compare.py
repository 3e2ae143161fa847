"""Side by side: IBM ART 1.20's PyTorchSmoothMix and PyTorchMACER against smoothcert's regimes, on
the same digits model, data, optimizer and certifier.

Every row trains the digits CNN of ``conf/model/digits_cnn.yaml`` (width 16, its normalization as
its first layer) from the same initialization on the same 1257 training images (``data=digits``,
``seed=0`` split) with the digits recipe (Adam lr 0.005, cosine schedule stepped once per epoch,
``--epochs`` epochs, loader batch 64), then certifies the first ``--num-examples`` test images with
smoothcert's CERTIFY (n0 100, n 10,000, alpha 0.001, noise seeded by (seed, image index)): the
rows differ only in their training loss and loop.

Rows (``--rows``):

- ``gaussian``: smoothcert ``regime=gaussian`` (Cohen et al.), our loop.
- ``smoothmix``: smoothcert ``regime=smoothmix`` at the paper's settings (m 2, T 4, eta 5,
  alpha = 2 sigma, 10 warm-up epochs), our loop with batch 64 / m (the reference's per-chunk step).
- ``art-smoothmix-shipped``: ART's ``PyTorchSmoothMix`` with its defaults (eta 1, m 1, T 10,
  warm-up 1, mix_step 0) and ``alpha`` its default 0.001, which ART uses as the PGD step size.
- ``art-smoothmix-paper``: ART with the paper's settings (m 2, T 4, eta 5, warm-up 10) but the
  step still ART's ``alpha`` 0.001: the step-size bug alone.
- ``art-smoothmix-fixed``: the same with ``alpha`` = 2 sigma while training (reset to 0.001
  afterwards; we certify with our certifier, so ART's use of alpha as the failure probability does
  not enter): ART's loop with a corrected step, which should match ``smoothmix``.
- ``art-smoothmix-preprocessing``: ``art-smoothmix-fixed`` used as ART's docs suggest, the
  normalization given as ART's ``preprocessing=(mean, std)`` instead of inside the model: ART then
  adds its training noise after normalizing, i.e. sigma * std in pixel units, while the certificate
  (ours, or ART's ``certify``) adds sigma in pixel units before it.
- ``art-macer``: ART's ``PyTorchMACER`` with its defaults (k 16, beta 16, gamma 8, lambda 12) and
  ``scale`` = sigma.
- ``macer``: smoothcert ``regime=macer`` with its defaults (the reference's: lambda 12 at sigma
  0.25, 4 above; ART keeps 12).

ART gets the model with its normalization inside and ``preprocessing=(0, 1)``, so its training
noise is added in [0, 1] pixel space as in certification (ART adds training noise after its
``preprocessing``, certification noise before it: with ``preprocessing=(mean, std)`` the two noise
levels would differ by the factor std).

Needs the optional extra: ``pip install -e ".[art]"`` (adversarial-robustness-toolbox >= 1.20.1).
Usage: ``OMP_NUM_THREADS=1 python benchmarks/art_compare.py --sigma 0.25 [--rows a,b] [--epochs
40]``. Each row's records go to ``--out/sigma_<s>/<row>.tsv`` and are reused when present, so an
interrupted run continues; the table (certified accuracy, ACR, training seconds, McNemar against
``gaussian`` / ``smoothmix``) is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import certify_examples
from smoothcert.data.classification import build_splits
from smoothcert.metrics.certified import summarize
from smoothcert.models import DigitsCNN, NormalizedClassifier
from smoothcert.noise import GaussianNoise
from smoothcert.records import CohenRecord
from smoothcert.regimes import GaussianAugmentation, SmoothMix

MEAN, STD, CLASSES = [0.3053], [0.3760], 10
RADII = [0.0, 0.25, 0.5, 0.75, 1.0]
ROWS = [
    "gaussian",
    "smoothmix",
    "art-smoothmix-shipped",
    "art-smoothmix-paper",
    "art-smoothmix-fixed",
    "art-smoothmix-preprocessing",
    "art-macer",
    "macer",
]


def digits(seed: int) -> tuple[Tensor, Tensor, object]:
    """The training images and labels (as tensors) and the test split of ``data=digits``."""
    splits = build_splits("digits", "data", seed=seed, val_size=180, test_size=360, channels=1)
    pairs = [splits.train[i] for i in range(len(splits.train))]
    x = torch.stack([torch.as_tensor(p[0]) for p in pairs]).float()
    y = torch.tensor([int(p[1]) for p in pairs])
    return x, y, splits.test


def fresh_model(seed: int) -> nn.Module:
    """The same initialization for every row; the global RNG (noise, shuffling) continues from
    the seed, so each row's run is reproducible."""
    torch.manual_seed(seed)
    return NormalizedClassifier(DigitsCNN(CLASSES, 1, width=16), MEAN, STD)


def optimizer_and_schedule(model: nn.Module, epochs: int):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


def train_ours(objective: nn.Module, x: Tensor, y: Tensor, args, batch_size: int) -> nn.Module:
    """What the Lightning module runs, as a plain loop: one Adam step per batch, the schedule and
    the regime's ``on_epoch_start`` once per epoch."""
    model = fresh_model(args.seed).train()
    optimizer, schedule = optimizer_and_schedule(model, args.epochs)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    for epoch in range(args.epochs):
        objective.on_epoch_start(epoch)
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            objective(model, xb, yb).backward()
            optimizer.step()
        schedule.step()
    return model.eval()


def train_art(kind: str, x: Tensor, y: Tensor, args) -> nn.Module:
    """ART's own ``fit`` loop on the same model, data, optimizer and schedule."""
    from art.estimators.certification.randomized_smoothing import PyTorchMACER, PyTorchSmoothMix

    model = fresh_model(args.seed).train()
    trained = model
    preprocessing = (0.0, 1.0)  # the model normalizes; see the module docstring
    if kind == "art-smoothmix-preprocessing":  # the same weights, normalized by ART instead
        model = NormalizedClassifier(model.net, [0.0], [1.0])
        preprocessing = (np.float32(MEAN[0]), np.float32(STD[0]))
    optimizer, schedule = optimizer_and_schedule(model, args.epochs)
    common = dict(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=CLASSES,
        optimizer=optimizer,
        clip_values=(0.0, 1.0),
        preprocessing=preprocessing,
        device_type="cpu",
        scale=args.sigma,
    )
    if kind == "art-macer":
        estimator = PyTorchMACER(**common)
    elif kind == "art-smoothmix-shipped":
        estimator = PyTorchSmoothMix(**common)
    else:
        paper = dict(eta=5.0, num_noise_vec=2, num_steps=4, warmup=10, mix_step=0)
        estimator = PyTorchSmoothMix(**common, **paper)
        if kind in ("art-smoothmix-fixed", "art-smoothmix-preprocessing"):
            estimator.alpha = 2 * args.sigma  # the step size; ART also reads it as certify's alpha
    estimator.fit(x.numpy(), y.numpy(), batch_size=64, nb_epochs=args.epochs, scheduler=schedule)
    estimator.alpha = 0.001
    return trained.eval()


def trainer_for(row: str, args) -> Callable[[Tensor, Tensor], nn.Module]:
    noise = GaussianNoise(args.sigma)
    if row == "gaussian":
        return lambda x, y: train_ours(GaussianAugmentation(noise), x, y, args, 64)
    if row == "smoothmix":
        regime = SmoothMix(noise, m=2, steps=4, eta=5.0, warmup_epochs=10)
        return lambda x, y: train_ours(regime, x, y, args, 64 // regime.m)
    if row == "macer":
        from smoothcert.regimes.macer import MACER  # only on trees with regime=macer

        regime = MACER(noise)  # its defaults: k 16, beta 16, gamma 8, lbd 12 (sigma <= 0.25) or 4
        return lambda x, y: train_ours(regime, x, y, args, 64)
    return lambda x, y: train_art(row, x, y, args)


def certify(model: nn.Module, test, args) -> list[CohenRecord]:
    smooth = Smooth(model, CLASSES, args.sigma)
    indices = range(args.num_examples)
    records = certify_examples(
        smooth, test, indices, 100, args.n, 0.001, args.batch_size, args.seed, "cpu"
    )
    return list(records)


def write(path: Path, records: list[CohenRecord], seconds: float) -> None:
    lines = [f"# train_seconds\t{seconds:.1f}", "idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    lines += [
        f"{r.idx}\t{r.label}\t{r.predict}\t{r.radius!r}\t{r.correct}\t{r.time}" for r in records
    ]
    path.write_text("\n".join(lines) + "\n")


def read(path: Path) -> tuple[list[CohenRecord], float]:
    lines = path.read_text().splitlines()
    seconds = float(lines[0].split("\t")[1])
    records = []
    for line in lines[2:]:
        idx, label, predict, radius, correct, elapsed = line.split("\t")
        records.append(
            CohenRecord(
                int(idx), int(label), int(predict), float(radius), int(correct), float(elapsed)
            )
        )
    return records, seconds


def mcnemar(a: list[CohenRecord], b: list[CohenRecord], radius: float) -> str:
    """``+won/-lost, p`` of row a against row b at ``radius`` (exact two-sided McNemar)."""
    hit_a = np.array([r.correct and r.radius >= radius for r in a])
    hit_b = np.array([r.correct and r.radius >= radius for r in b])
    won, lost = int((hit_a & ~hit_b).sum()), int((~hit_a & hit_b).sum())
    p = binomtest(won, won + lost, 0.5).pvalue if won + lost else 1.0
    return f"+{won}/-{lost}, p={p:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--num-examples", type=int, default=200)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/art_compare"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = args.out / f"sigma_{args.sigma}"
    out.mkdir(parents=True, exist_ok=True)
    x, y, test = digits(args.seed)
    results = {}
    for row in args.rows.split(","):
        path = out / f"{row}.tsv"
        if not path.exists():
            try:
                train = trainer_for(row, args)
            except ImportError as error:
                print(f"skipping {row}: {error}", file=sys.stderr)
                continue
            start = time.perf_counter()
            model = train(x, y)
            seconds = time.perf_counter() - start
            write(path, certify(model, test, args), seconds)
            print(f"{row}: trained in {seconds:.0f} s", file=sys.stderr)
        results[row] = read(path)
    print(f"sigma = {args.sigma}, {args.epochs} epochs, {args.num_examples} test images\n")
    print("| training | " + " | ".join(f"r={r}" for r in RADII) + " | ACR | train s |")
    print("|---|" + "---:|" * (len(RADII) + 2))
    for row, (records, seconds) in results.items():
        s = summarize(records, RADII)
        cells = " | ".join(f"{100 * s[f'cert/acc@{r:.2f}']:.1f}" for r in RADII)
        print(f"| {row} | {cells} | {s['cert/acr']:.3f} | {seconds:.0f} |")
    print()
    for row, (records, _) in results.items():
        for ref in ("gaussian", "smoothmix"):
            if ref in results and ref != row:
                tests = [mcnemar(records, results[ref][0], r) for r in (0.25, 0.5, 0.75)]
                print(f"{row} vs {ref}: r=0.25 {tests[0]}; r=0.5 {tests[1]}; r=0.75 {tests[2]}")


if __name__ == "__main__":
    main()
