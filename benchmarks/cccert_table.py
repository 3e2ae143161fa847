"""CC-Cert (Pautov et al.) on trained digits checkpoints: ERA and PCA(eps) under a random
transformation drawn uniformly from a parameter range, the table of paper 000's CC-Cert slide.

PCA(eps) is a heuristic estimate (the chance that a random transformation from the range changes
the answer is estimated below eps, with no stated confidence), not a certificate. With m =
nsamples * nbounds samples per image no probability below 1/m is resolved, so eps must exceed
1/m (the paper's 1e-10 .. 1e-4 are refused at m = 1,000); "est. < 1/m" counts the images whose
estimate sits at that floor. Ranges are in the transformation's units (brightness shift, pixels,
degrees); transformed images are clipped to [0, 1] as in the reference (``--no-clip``: not).
Example:

    python benchmarks/cccert_table.py --transform brightness --low -0.4 --high 0.4 \
        plain=outputs/r14a/plain/checkpoints/last.ckpt \
        smoothing=outputs/r14a/brightness/checkpoints/last.ckpt
    python benchmarks/cccert_table.py --transform rotation --low -10 --high 10 \
        plain=PLAIN32/checkpoints/last.ckpt rotation=ROT32/checkpoints/last.ckpt

Rotation (degrees) goes through the checkpoint's own pipeline (vignette, bilinear rotation,
Gaussian filter) when it was trained with ``perturbation=rotation``, so the clean image sees the
same pipeline at angle 0; otherwise (or with ``--bare``) it is the bare bilinear rotation.
"""

from __future__ import annotations

import argparse

import torch

from smoothcert.certifiers.cccert import CCCert, era, pca
from smoothcert.data.classification import digits32_splits, digits_splits
from smoothcert.models import DigitsCNN
from smoothcert.models.classifiers import NormalizedClassifier
from smoothcert.noise import GaussianNoise
from smoothcert.perturbation import ParameterPerturbation
from smoothcert.transforms import Brightness, Rotation, Translation

EPSILONS = (0.01, 0.05, 0.1)


def load(checkpoint: str) -> tuple[torch.nn.Module, str, dict]:
    """The normalized digits CNN of a smoothcert classification checkpoint (built with the
    checkpoint's own net settings, e.g. ``stem_stride``), its dataset and its training
    perturbation's settings (empty when it had none)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = state["hyper_parameters"]
    config = state.get("smoothcert", {}).get("config", {}).get("model", {})
    net_kwargs = {k: v for k, v in config.get("net", {}).items() if k != "_target_"}
    net_kwargs = net_kwargs or {
        "num_classes": hparams["num_classes"],
        "in_channels": 1,
        "width": 16,
    }
    net = DigitsCNN(**net_kwargs)
    model = NormalizedClassifier(net, hparams["mean"], hparams["std"])
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("objective")})
    perturbation = (config.get("objective") or {}).get("perturbation") or {}
    return model.eval(), hparams.get("dataset", "digits"), dict(perturbation)


def transformation(name: str, trained: dict, bare: bool) -> ParameterPerturbation:
    """The transformation CC-Cert draws (its noise is unused): rotation through the pipeline of
    the run that trained with it (unless ``bare``), else the bare transformation."""
    if name != "rotation":
        return {"brightness": Brightness, "translation": Translation}[name](GaussianNoise(1.0))
    keys = ("vignette", "radius_decrease", "edge", "blur_size", "blur_sigma", "filter_sigma")
    if not bare and trained.get("_target_", "").endswith("Rotation"):
        return Rotation(GaussianNoise(1.0), **{k: trained[k] for k in keys if k in trained})
    return Rotation(GaussianNoise(1.0), vignette=False, blur_sigma=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="name=checkpoint.ckpt")
    parser.add_argument(
        "--transform", choices=["brightness", "translation", "rotation"], default="brightness"
    )
    parser.add_argument("--bare", action="store_true", help="rotation without any pipeline")
    parser.add_argument("--low", type=float, default=-0.4)
    parser.add_argument("--high", type=float, default=0.4)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--nsamples", type=int, default=100)
    parser.add_argument("--nbounds", type=int, default=10)
    parser.add_argument("--delta", type=float, default=0.9)
    parser.add_argument("--no-clip", action="store_true", help="keep images outside [0, 1]")
    parser.add_argument(
        "--epsilons", type=lambda s: [float(v) for v in s.split(",")], default=list(EPSILONS)
    )
    args = parser.parse_args()
    floor = 1 / (args.nsamples * args.nbounds)
    k = transformation(args.transform, {}, True).num_params
    print(
        f"{args.transform} U[{args.low}, {args.high}]^{k}, nsamples={args.nsamples}, "
        f"nbounds={args.nbounds}, delta={args.delta}, t in [1e-4, 1e4] (500 points), "
        f"{'unclipped' if args.no_clip else 'clipped to [0, 1]'}; estimates, not certificates"
    )
    columns = [f"est. PCA({e:g})" for e in args.epsilons] + [f"est. < 1/{round(1 / floor)}"]
    print("| model | ERA | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for run in args.runs:
        name, checkpoint = run.split("=", 1)
        model, dataset, trained = load(checkpoint)
        perturbation = transformation(args.transform, trained, args.bare)
        splits = (digits32_splits if dataset == "digits32" else digits_splits)()
        cert = CCCert(
            model,
            perturbation,
            [args.low] * k,
            [args.high] * k,
            args.nsamples,
            args.nbounds,
            args.delta,
            identity=[0.0] * k,
            clip=not args.no_clip,
        )
        test = splits.test
        results = [
            cert.certify(
                torch.as_tensor(test[i][0]), int(test[i][1]), torch.Generator().manual_seed(i)
            )
            for i in range(min(args.examples, len(test)))
        ]
        at_floor = sum(r.correct and r.probability <= r.resolution for r in results)
        cells = " | ".join(f"{100 * pca(results, e):.1f}%" for e in args.epsilons)
        cells += f" | {100 * at_floor / len(results):.1f}%"
        what = perturbation.pipeline if args.transform == "rotation" else args.transform
        print(
            f"| {name} ({len(results)} test images, {what}) | {100 * era(results):.1f}% | {cells} |"
        )


if __name__ == "__main__":
    main()
