"""CC-Cert (Pautov et al.) on trained digits checkpoints: ERA and PCA(eps) under a random
transformation drawn uniformly from a parameter range, the table of paper 000's CC-Cert slide.

PCA(eps) is probabilistic (the chance that a random transformation from the range changes the
answer is estimated below eps), not a worst-case certificate. Example:

    python benchmarks/cccert_table.py --transform brightness --low -0.4 --high 0.4 \
        plain=outputs/r14a/plain/checkpoints/last.ckpt \
        smoothing=outputs/r14a/brightness/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse

import torch

from smoothcert.certifiers.cccert import CCCert, era, pca
from smoothcert.data.classification import digits32_splits, digits_splits
from smoothcert.models import DigitsCNN
from smoothcert.models.classifiers import NormalizedClassifier
from smoothcert.noise import GaussianNoise
from smoothcert.transforms import Brightness, Translation

EPSILONS = (1e-10, 1e-7, 1e-4)


def load(checkpoint: str) -> tuple[torch.nn.Module, str]:
    """The normalized digits CNN of a smoothcert classification checkpoint, and its dataset."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = state["hyper_parameters"]
    net = DigitsCNN(num_classes=hparams["num_classes"], in_channels=1, width=16)
    model = NormalizedClassifier(net, hparams["mean"], hparams["std"])
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("objective")})
    return model.eval(), hparams.get("dataset", "digits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="name=checkpoint.ckpt")
    parser.add_argument("--transform", choices=["brightness", "translation"], default="brightness")
    parser.add_argument("--low", type=float, default=-0.4)
    parser.add_argument("--high", type=float, default=0.4)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--nsamples", type=int, default=100)
    parser.add_argument("--nbounds", type=int, default=10)
    parser.add_argument("--delta", type=float, default=0.9)
    args = parser.parse_args()
    transform = {"brightness": Brightness, "translation": Translation}[args.transform]
    perturbation = transform(GaussianNoise(1.0))  # only its transform is used
    k = perturbation.num_params
    print(
        f"{args.transform} U[{args.low}, {args.high}]^{k}, nsamples={args.nsamples}, "
        f"nbounds={args.nbounds}, delta={args.delta}, t in [1e-4, 1e4] (500 points)"
    )
    print("| model | ERA | " + " | ".join(f"PCA({e:g})" for e in EPSILONS) + " |")
    print("|---|---|" + "---|" * len(EPSILONS))
    for run in args.runs:
        name, checkpoint = run.split("=", 1)
        model, dataset = load(checkpoint)
        splits = (digits32_splits if dataset == "digits32" else digits_splits)()
        cert = CCCert(
            model,
            perturbation,
            [args.low] * k,
            [args.high] * k,
            args.nsamples,
            args.nbounds,
            args.delta,
        )
        test = splits.test
        results = [
            cert.certify(
                torch.as_tensor(test[i][0]), int(test[i][1]), torch.Generator().manual_seed(i)
            )
            for i in range(min(args.examples, len(test)))
        ]
        cells = " | ".join(f"{100 * pca(results, e):.1f}%" for e in EPSILONS)
        print(f"| {name} ({len(results)} test images) | {100 * era(results):.1f}% | {cells} |")


if __name__ == "__main__":
    main()
