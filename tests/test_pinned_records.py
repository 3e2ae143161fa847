"""Pinned records of every certifier, bit for bit (issue 22: a refactor must change no record).

Each test runs one certifier in-process on CPU, through the same core entry points the callbacks
call (``(seed, index)`` generators from ``example_generator`` / ``attack_generators``), with tiny
models built under ``torch.manual_seed`` and tiny inputs, and compares every field of the records
(floats as ``float.hex()``, tensors with dtype and shape; the wall-clock ``time`` fields are left
out) with ``tests/fixtures/pinned/<name>.json``. A missing fixture fails.

Regenerate the fixtures (only when a change of records is intended and explained):

    SMOOTHCERT_REGENERATE_PINS=1 pytest -n 0 tests/test_pinned_records.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.run.checkpoints import upgrade_config
from smoothcert.attacks.empirical import attack_example, attack_generators
from smoothcert.attacks.segmentation import segmentation_pgd_l2
from smoothcert.certifiers.cccert import CCCert
from smoothcert.certifiers.center import CenterSmooth, certify_example
from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.distspt import DistSPT
from smoothcert.certifiers.examples import certify_examples, certify_group
from smoothcert.certifiers.in_range import certify_group_in_range
from smoothcert.certifiers.lipschitz import lipschitz_bound, lipschitz_radius
from smoothcert.certifiers.median import PercentileSmooth, as_output_vectors, bound_alpha
from smoothcert.certifiers.median_detection import SLOT, DetectionLayout, smoothed_detections
from smoothcert.certifiers.median_expectation import expectation_bounds, mean_interval
from smoothcert.certifiers.segmentation import (
    indivclass,
    jointclass,
    score_segmentation,
    segcertify,
)
from smoothcert.certifiers.topk import certify_group_topk
from smoothcert.noise import GaussianNoise, LaplaceNoise, RayleighNoise, example_generator
from smoothcert.transforms import Brightness, Gamma, Rotation

PINS = Path(__file__).parent / "fixtures" / "pinned"
REGENERATE = os.environ.get("SMOOTHCERT_REGENERATE_PINS") == "1"
SEED, CLASSES, SIDE = 7, 3, 8
UNTIMED = {"time", "seconds", "elapsed"}


@pytest.fixture(autouse=True)
def one_thread():
    """Pins are bit for bit, and a multi-threaded CPU kernel may sum in another order (the
    segmentation attack's gradients differ in the last bits at 2 threads): every pin is computed
    on one thread, whatever the machine or OMP_NUM_THREADS."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- encoding and comparison -------------------------------------------------------------------


def encode(value):
    """JSON of ``value`` that keeps every bit: floats as ``float.hex()``, tensors and arrays with
    dtype and shape, dataclasses field by field (without wall-clock times)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value).hex()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return {"dtype": str(value.dtype), "shape": list(value.shape), "data": _flat(value)}
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape), "data": _flat(value)}
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        kept = {f.name: getattr(value, f.name) for f in fields if f.name not in UNTIMED}
        return {"__type__": type(value).__name__, **{k: encode(v) for k, v in kept.items()}}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    raise TypeError(f"cannot pin a {type(value).__name__}")


def _flat(array) -> list:
    return [encode(v) for v in np.asarray(array).reshape(-1).tolist()]


def pinned(name: str, value) -> None:
    """Compares ``value`` with fixture ``name`` (rewrites it with SMOOTHCERT_REGENERATE_PINS=1)."""
    path = PINS / f"{name}.json"
    got = encode(value)
    if REGENERATE:
        PINS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, separators=(",", ":")) + "\n")
        return
    assert path.exists(), f"{path} is missing: SMOOTHCERT_REGENERATE_PINS=1 writes it"
    want = json.loads(path.read_text())
    assert got == want, f"the records of {name} changed (fixture {path.name})"


def assert_not_trivial(*values: float) -> None:
    """Guards the pins' power: some radius must be positive and finite."""
    assert any(v is not None and 0 < v < math.inf for v in values), values


# --- tiny models and inputs --------------------------------------------------------------------


def classifier(scale: float = 6.0) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * (SIDE // 2) ** 2, CLASSES),
    )
    with torch.no_grad():
        net[-1].weight.mul_(scale)
    return net.eval()


class LinearClassifier(nn.Module):
    """``scale * W (x - 0.5)``: classes that depend on the input (ties and abstentions too)."""

    def __init__(self, scale: float = 3.0) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.linear = nn.Linear(SIDE * SIDE, CLASSES, bias=False)
        self.scale = scale

    def forward(self, x):
        return self.scale * self.linear((x - 0.5).flatten(1))


def segmenter() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, CLASSES, 1))
    with torch.no_grad():
        net[-1].weight.mul_(8.0)
    return net.eval()


def images(count: int, seed: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, SIDE, SIDE, generator=generator) for _ in range(count)]


def labels_of(model: nn.Module, xs) -> list[int]:
    """The model's classes, the second one moved to another class (a wrong record too)."""
    with torch.no_grad():
        labels = [int(model(x[None]).argmax()) for x in xs]
    labels[1] = (labels[1] + 1) % CLASSES
    return labels


class Denoiser(nn.Module):
    """Image to image in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x) * 3.0)


class BoxHead(nn.Module):
    """Image to one box ``[B, 4]`` (x1, y1, x2, y2 in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.linear = nn.Linear(SIDE * SIDE, 4)

    def forward(self, x):
        a = torch.sigmoid(self.linear(x.flatten(1)))
        return torch.cat([torch.minimum(a[:, :2], a[:, 2:]), torch.maximum(a[:, :2], a[:, 2:])], 1)


# --- classification: Cohen CERTIFY, PREDICT, top-k, parametric perturbations --------------------


def group(count: int, n0=30, n=200, alpha=0.01, batch=64):
    indices = list(range(10, 10 + count))
    generators = [example_generator(SEED, idx, "cpu") for idx in indices]
    return indices, generators, (n0, n, alpha, batch)


def test_cohen_gaussian_l2_and_laplace_l1():
    model, xs = classifier(), images(4)
    labels = labels_of(model, xs)
    for name, noise in [("cohen_gaussian_l2", None), ("cohen_laplace_l1", LaplaceNoise(0.25))]:
        smooth = Smooth(model, CLASSES, 0.25, noise=noise)
        indices, generators, settings = group(len(xs))
        records = certify_group(smooth, indices, xs, labels, generators, *settings)
        assert_not_trivial(*(r.radius for r in records))
        pinned(name, records)


def test_cohen_certify_examples_one_by_one():
    model, xs = classifier(), images(3, seed=5)
    dataset = list(zip(xs, labels_of(model, xs), strict=True))
    smooth = Smooth(model, CLASSES, 0.5)
    records = list(certify_examples(smooth, dataset, [0, 2], 20, 150, 0.001, 50, SEED, "cpu"))
    pinned("cohen_certify_examples", records)


def test_predict():
    model, xs = LinearClassifier(1.0).eval(), images(16, seed=23)
    smooth = Smooth(model, CLASSES, 0.25)
    guesses = [
        smooth.predict(x, 100, 0.01, 40, example_generator(SEED, idx, "cpu"))
        for idx, x in enumerate(xs)
    ]
    pinned("predict", guesses)


def test_topk():
    model, xs = LinearClassifier().eval(), images(6)
    labels = labels_of(model, xs)
    smooth = Smooth(model, CLASSES, 0.5)
    indices, generators, settings = group(len(xs))
    pairs = certify_group_topk(smooth, indices, xs, labels, generators, settings, [1, 2])
    assert_not_trivial(*(r for _, topk in pairs for r in topk.radii))
    pinned("topk", pairs)


def test_brightness_in_range():
    model, xs = LinearClassifier(1.0).eval(), images(4)
    labels = labels_of(model, xs)
    smooth = Smooth(model, CLASSES, 0.3, perturbation=Brightness(GaussianNoise(0.3)))
    indices, generators, settings = group(len(xs))
    pairs = certify_group_in_range(smooth, indices, xs, labels, generators, settings)
    assert_not_trivial(*(r.radius for r, _ in pairs))
    pinned("brightness_in_range", pairs)


def test_gamma():
    model, xs = classifier(scale=1.0), images(4)
    labels = labels_of(model, xs)
    perturbation = Gamma(RayleighNoise(0.5))
    smooth = Smooth(model, CLASSES, 0.5, perturbation=perturbation)
    indices, generators, settings = group(len(xs))
    records = certify_group(smooth, indices, xs, labels, generators, *settings)
    assert_not_trivial(*(r.radius for r in records))
    radii = [r.radius for r in records]
    at = {g: perturbation.certified_at(radii, g) for g in (0.8, 1.25)}
    pinned("gamma", {"records": records, "certified_at": at})


# --- segmentation: SegCertify and its baselines -------------------------------------------------


def test_segcertify_holm_bonferroni_and_baselines():
    model, xs = segmenter(), images(2, seed=11)
    mask = torch.randint(0, CLASSES, (SIDE, SIDE), generator=torch.Generator().manual_seed(12))
    out = {}
    for idx, x in enumerate(xs):
        for correction, joint in (("holm", False), ("bonferroni", False), ("holm", True)):
            generator = example_generator(SEED, idx, "cpu")
            classes, radii = segcertify(
                model, x, 0.25, 20, 120, [0.75, 0.95], 0.01, correction, 64, generator, 0, joint
            )
            scores = [score_segmentation(c, mask, CLASSES) for c in classes]
            assert_not_trivial(*radii)
            key = f"{idx}/{correction}{'/joint' if joint else ''}"
            out[key] = {"classes": classes, "radii": radii, "scores": scores}
        for name, baseline in (("indivclass", indivclass), ("jointclass", jointclass)):
            generator = example_generator(SEED, idx, "cpu")
            out[f"{idx}/{name}"] = baseline(model, x, 0.02, 20, 120, 0.01, 64, generator)
    pinned("segcertify", out)


# --- center smoothing ---------------------------------------------------------------------------


def center_records(smoother: CenterSmooth, xs, eps_in) -> list:
    rows = []
    for idx, x in enumerate(xs):
        with torch.inference_mode():
            base = smoother.base_function(x[None])
        record, center = certify_example(smoother, x, idx, eps_in, SEED, base)
        rows.append({"record": record, "center": center})
    return rows


@pytest.mark.parametrize("candidates", [None, 10])
def test_center_image_output(candidates):
    denoiser, xs = Denoiser().eval(), images(2, seed=13)
    smoother = CenterSmooth(
        denoiser, "l2", 0.12, n=100, m=300, delta=0.3, alpha1=0.01, alpha2=0.01,
        batch_size=64, candidates=candidates,
    )  # fmt: skip
    rows = center_records(smoother, xs, [0.05, 0.1])
    assert_not_trivial(*(e for row in rows for e in row["record"].eps_out))
    pinned(f"center_image_{'candidates' if candidates else 'full'}", rows)


def test_center_box_output():
    head, xs = BoxHead().eval(), images(2, seed=14)
    smoother = CenterSmooth(head, "jaccard_box", 0.12, n=100, m=300, delta=0.3, batch_size=64)
    rows = center_records(smoother, xs, [0.05])
    pinned("center_box", rows)


# --- median smoothing ---------------------------------------------------------------------------


def median_one(smoother: PercentileSmooth, x, idx, output_range=None) -> dict:
    """The median callback's ``certify_one`` on one example, without the callback."""
    generator = example_generator(SEED, idx, x.device)
    stream = smoother.noise.stream(tuple(x.shape), generator, x.device, x.dtype)
    values = smoother.sorted_outputs(x, stream)
    result = smoother.certify_sorted(values)
    out = {"median": result}
    if output_range is not None:
        low, high = output_range
        rounding = torch.Generator().manual_seed(generator.initial_seed() + 1)
        alpha = 2 * bound_alpha(
            smoother.alpha, values.shape[1], smoother.guarantee, smoother.box_size
        )
        mean_lo, mean_hi = mean_interval(values.T, low, high, alpha, "clopper_pearson", rounding)
        lower, upper = expectation_bounds(mean_lo, mean_hi, low, high, smoother.noise, result.eps)
        out["expectation"] = (values.double().mean(0), lower.T, upper.T)
    return out


def test_median_percentile_boxes_and_expectation():
    head, xs = BoxHead().eval(), images(2, seed=15)
    noise, eps = GaussianNoise(0.25), (0.1, 0.2)
    out = {}
    for guarantee, box_size in (("per_coordinate", None), ("per_box", 4)):
        smoother = PercentileSmooth(
            lambda x: as_output_vectors(head(x)), noise, eps, 200, 0.01, 0.5, guarantee, 64,
            box_size,
        )  # fmt: skip
        for idx, x in enumerate(xs):
            out[f"{guarantee}/{idx}"] = median_one(smoother, x, idx, (0.0, 1.0))
    pinned("median_boxes", out)


def test_median_detection():
    layout = DetectionLayout(num_labels=2, grid=2, capacity=1)
    torch.manual_seed(5)
    proj = nn.Linear(SIDE * SIDE, 2 * 6)

    def detector(x):
        raw = torch.sigmoid(proj(x.flatten(1)) * 4).view(-1, 2, 6)
        lo, hi = (
            torch.minimum(raw[..., :2], raw[..., 2:4]),
            torch.maximum(raw[..., :2], raw[..., 2:4]),
        )
        boxes = torch.cat([lo, hi], -1)
        labels = torch.where(raw[..., 5] > 0.3, 1 + (raw[..., 4] > 0.5).long(), 0)
        return layout.to_vector(boxes, raw[..., 4], labels)

    smoother = PercentileSmooth(
        detector, GaussianNoise(0.1), (0.05,), 200, 0.01, 0.5, None, 64, SLOT
    )
    out = {}
    with torch.no_grad():
        for idx, x in enumerate(images(2, seed=16)):
            result = median_one(smoother, x, idx)["median"]
            details = smoothed_detections(layout, result.estimate, result.lower[0], result.upper[0])
            out[str(idx)] = {"median": result, "detections": details}
    pinned("median_detection", out)


# --- DistSPT, CC-Cert, Lipschitz ----------------------------------------------------------------


def test_distspt():
    model, xs = classifier(), images(2, seed=17)
    distspt = DistSPT(model, CLASSES, Rotation(GaussianNoise(10.0)), (-5.0, 5.0), 0.05, 0.25, 4, 1)
    results = [
        distspt.certify(x, 5, 10, 30, 40, 60, (0.01, 0.01, 0.01), 128, example_generator(SEED, i))
        for i, x in enumerate(xs)
    ]
    assert_not_trivial(*(r.radius for r in results))
    pinned("distspt", results)


def test_cccert():
    model, xs = classifier(scale=1.0), images(3, seed=18)
    labels = labels_of(model, xs)
    cert = CCCert(model, Gamma(GaussianNoise(0.3)), [0.2], [5.0], nsamples=50, nbounds=2)
    results = [
        cert.certify(x, label, example_generator(SEED, i))
        for i, (x, label) in enumerate(zip(xs, labels, strict=True))
    ]
    pinned("cccert", results)


def test_lipschitz():
    model, xs = classifier(), images(4, seed=19)
    bound = lipschitz_bound(model, (1, SIDE, SIDE))
    with torch.no_grad():
        predict, radius = lipschitz_radius(model(torch.stack(xs)), bound.constant)
    pinned("lipschitz", {"bound": bound, "predict": predict, "radius": radius})


# --- attacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["smoothed_pgd", "base"])
def test_empirical_attack(kind):
    model, xs = LinearClassifier(1.0).eval(), images(4, seed=20)
    labels = labels_of(model, xs)
    smooth = Smooth(model, CLASSES, 0.25, noise=None, norm="l2")
    predicts = [
        attack_example(
            smooth,
            kind,
            x,
            label,
            [0.0, 0.3, 1.0],
            (3, 8, 60, 0.01, 64),
            attack_generators(SEED, idx, "cpu"),
        )  # fmt: skip
        for idx, (x, label) in enumerate(zip(xs, labels, strict=True))
    ]
    pinned(f"attack_{kind}", predicts)


def test_segmentation_attack():
    model, xs = segmenter(), torch.stack(images(2, seed=21))
    masks = torch.randint(0, CLASSES, (2, SIDE, SIDE), generator=torch.Generator().manual_seed(22))
    masks[0, 0, :3] = 255
    generator = attack_generators(SEED, 3, "cpu")[0]
    eps = torch.tensor([0.5, 1.0])
    adversarial = segmentation_pgd_l2(model, xs, masks, eps, 5, 255, generator)
    with torch.no_grad():
        scores = [
            score_segmentation(p, m, CLASSES)
            for p, m in zip(model(adversarial).argmax(1), masks, strict=True)
        ]
    pinned("attack_segmentation", {"adversarial": adversarial, "scores": scores})


# --- the pre-move checkpoint (tests/fixtures/pre_move) -------------------------------------------

PRE_MOVE = Path(__file__).parent / "fixtures" / "pre_move"


def test_pre_move_checkpoint_rows(tmp_path):
    """The rows certify.py wrote for it (its README's settings: sigma 0.25, n0 50, n 500, alpha
    0.001, seed 0, batch 250: one example per group), recomputed in-process from the upgraded
    config: equal to ``pre_move/certify.tsv`` (radii as written, repr) and to the pin."""
    checkpoint = torch.load(PRE_MOVE / "digits_last.ckpt", map_location="cpu", weights_only=True)
    config = {g: upgrade_config(g, node) for g, node in checkpoint["smoothcert"]["config"].items()}
    config["data"]["data_dir"] = str(tmp_path)
    module = hydra.utils.instantiate(config["model"])
    module.load_state_dict(checkpoint["state_dict"])
    data = hydra.utils.instantiate(config["data"])
    data.setup("test")
    dataset = data.dataset("test")
    smooth = Smooth(module.eval().base_function(), 10, 0.25)
    records = []
    for idx in range(6):
        x, label = dataset[idx]
        generator = example_generator(0, idx, "cpu")
        args = ([idx], [torch.as_tensor(x)], [int(label)], [generator], 50, 500, 0.001, 250)
        records += certify_group(smooth, *args)
    lines = (PRE_MOVE / "certify.tsv").read_text().splitlines()
    table = [line.split("\t") for line in lines if not line.startswith("#")][1:]
    written = [(int(i), int(y), int(p), float(r), int(c)) for i, y, p, r, c, _ in table]
    assert [(r.idx, r.label, r.predict, r.radius, r.correct) for r in records] == written
    pinned("pre_move_checkpoint", records)
