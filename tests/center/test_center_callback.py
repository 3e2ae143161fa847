"""The center-smoothing callback: records, curves, figures, early errors, resume, batch size and
DDP invariance."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

import callbacks.certification.center as center_callback
from center.toy import FAST, ROOT, ToyData, ToyStructured, certify, trainer
from lightning_modules.base import Contract
from smoothcert.certifiers.center import CenterSmooth, smallest_m
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, example_generator
from smoothcert.records.center import (
    CENTER_COLUMNS,
    CenterExample,
    CenterRecord,
    read_center_records,
)

REQUIRED = ("idx", "eps_in", "eps_out", "smoothing_error", "abstain", "time")
SETTINGS = ("sigma", "n", "m", "delta", "alpha1", "alpha2", "gamma", "distance")
HEADER_KEYS = (*SETTINGS, "smoothcert", "seed", "split", "checkpoint", "normalization")


def read(path: Path) -> tuple[dict[str, str], list[str], list[dict[str, str]]]:
    """The ``#`` metadata, the column names and the rows (as strings) of a TSV."""
    lines = path.read_text().splitlines()
    meta = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    table = [line.split("\t") for line in lines if not line.startswith("#")]
    return meta, table[0], [dict(zip(table[0], row, strict=True)) for row in table[1:]]


def without_time(path: Path) -> list[tuple[str, ...]]:
    return [tuple(v for k, v in row.items() if k != "time") for row in read(path)[2]]


def test_certifies_each_distance_into_records_curves_and_figures(tmp_path):
    callback = certify(tmp_path, distance=["l2", "tv"], h=[0.5, 1.0], num_examples=3)
    for name, gamma in (("l2", 1.0), ("tv", 1.0)):
        meta, columns, rows = read(tmp_path / f"center_{name}.tsv")
        assert tuple(columns) == CENTER_COLUMNS and tuple(columns[:6]) == REQUIRED
        assert set(HEADER_KEYS) <= set(meta) and meta["distance"] == name
        assert (meta["sigma"], meta["n"], meta["m"], meta["delta"]) == (
            "0.25",
            "1000",
            "2000",
            "0.2",
        )
        assert meta["eps_in"] == "[0.125, 0.25]" and meta["h"] == "[0.5, 1.0]"
        assert meta["gamma"] == str(gamma) and meta["checkpoint"] == "weights given to trainer.test"
        assert [(r["idx"], r["eps_in"]) for r in rows] == [
            (str(i), e) for i in range(3) for e in ("0.125", "0.25")
        ]
        for row in rows:
            assert row["abstain"] == "0" and float(row["smoothing_error"]) >= 0
            assert float(row["eps_out"]) == 3 * float(row["quantile_radius"])  # gamma (1 + 2 gamma)
        for first, second in zip(rows[::2], rows[1::2], strict=True):
            assert float(first["eps_out"]) <= float(second["eps_out"])  # grows with eps_in
        _, curve_columns, curve = read(tmp_path / f"center_curve_{name}.tsv")
        assert curve_columns == ["eps_in", "eps_out", "smoothing_error"]
        for point, eps in zip(curve, ("0.125", "0.25"), strict=True):
            eps_out = [float(r["eps_out"]) for r in rows if r["eps_in"] == eps]
            errors = [float(r["smoothing_error"]) for r in rows if r["eps_in"] == eps]
            assert float(point["eps_out"]) == pytest.approx(sorted(eps_out)[1])
            assert float(point["smoothing_error"]) == pytest.approx(sorted(errors)[1])
            assert callback.summary[f"cert/{name}/eps_out@{float(eps):g}"] == float(
                point["eps_out"]
            )
        assert (tmp_path / f"center_curve_{name}.png").stat().st_size > 1000
        assert callback.summary[f"cert/{name}/abstain"] == 0.0
        examples = sorted((tmp_path / "center_examples").glob(f"center_{name}_*.png"))
        assert [p.name for p in examples] == [f"center_{name}_0000{i}.png" for i in range(2)]
    assert callback.summary["cert/time_per_example"] > 0
    # What train.py returns: named by h (eps_in = h * sigma), so sigma sweeps share the key.
    assert callback.objective == "cert/l2/eps_out@h0.5"
    assert callback.objective_value() == callback.summary["cert/l2/eps_out@0.125"]


def test_rows_are_the_core_certifier_with_noise_seeded_by_example(tmp_path):
    certify(tmp_path, eps_in=[0.1, 0.2], num_examples=2, seed=7)
    module, data = ToyStructured(), ToyData()
    sampling = {key: FAST[key] for key in ("n", "m", "delta", "batch_size")}
    smoother = CenterSmooth(module.structured_output, "l2", 0.25, **sampling)
    x = data.dataset("test")[1][0]
    with torch.inference_mode():
        expected = smoother.certify_details(x, [0.1, 0.2], example_generator(7, 1))
    rows = [r for r in read(tmp_path / "center_l2.tsv")[2] if r["idx"] == "1"]
    assert [float(r["eps_out"]) for r in rows] == expected.eps_out
    assert float(rows[0]["p_hat"]) == expected.smoothed.p_hat


@pytest.mark.parametrize("kind,distance", [("label_map", "jaccard_labels"), ("box", "jaccard_box")])
def test_label_maps_and_boxes(tmp_path, kind, distance):
    callback = certify(tmp_path, kind, distance=distance, h=[1.0], num_examples=2, num_images=1)
    meta, _, rows = read(tmp_path / f"center_{distance}.tsv")
    assert meta["output_kind"] == kind and len(rows) == 2
    assert ("num_classes" in meta) == (kind == "label_map")
    assert all(0 <= float(r["smoothing_error"]) <= 1 for r in rows if r["abstain"] == "0")
    assert (tmp_path / "center_examples" / f"center_{distance}_00000.png").stat().st_size > 1000
    assert f"cert/{distance}/smoothing_error" in callback.summary


def test_feature_distance_uses_the_configured_network_and_gamma_two(tmp_path):
    certify(tmp_path, distance="feature", feature_network=torch.nn.Flatten(), h=[1.0])
    meta, _, rows = read(tmp_path / "center_feature.tsv")
    assert (meta["gamma"], meta["eps_out_factor"], meta["feature_network"]) == (
        "2.0", "10.0", "Flatten"
    )  # fmt: skip
    assert all(float(r["eps_out"]) == 10 * float(r["quantile_radius"]) for r in rows)


def test_config_composes_with_the_papers_defaults_and_builds_the_network(make_cfg):
    cfg = make_cfg(
        "certify=center",
        "certify.distance=[feature,l2]",
        "certify.feature_network={_target_:torch.nn.Flatten}",
    )
    settings = cfg.certify
    paper = (settings.n, settings.m, settings.delta, settings.alpha1, settings.alpha2)
    assert paper == (10_000, 1_000_000, 0.05, 0.005, 0.005) and settings.sigma == cfg.sigma
    callback = hydra.utils.instantiate(settings)
    assert isinstance(callback.feature_network, torch.nn.Flatten)
    assert callback.distances == ["feature", "l2"] and callback.tasks == ()
    assert callback.grid == [(cfg.sigma, [h * cfg.sigma for h in settings.h])]
    assert settings.eps_in is None and callback.sigmas == [cfg.sigma]


def test_fit_certifies_at_train_end_and_logs_scalars(tmp_path):
    callback = center_callback.CenterCertification(0.25, str(tmp_path), h=[1.0], **FAST)
    logger = CSVLogger(tmp_path, name="csv", version="")
    fit = trainer(max_epochs=1, limit_train_batches=1, logger=logger, callbacks=[callback])
    fit.fit(ToyStructured(), datamodule=ToyData())
    meta, _, rows = read(tmp_path / "center_l2.tsv")
    assert meta["checkpoint"] == "last weights of this run" and len(rows) == 2
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in ("cert/l2/eps_out@0.25", "cert/l2/smoothing_error", "cert/l2/abstain"):
        assert key in header
    assert "cert/time_per_example" in header


BAD_SETTINGS = [
    ({"delta": 0.5}, "certify.delta=0.5 must lie in (0, 0.5)"),
    ({"delta": 0.0}, "certify.delta=0.0"),
    ({"alpha1": 0.0}, "certify.alpha1=0.0 must lie in (0, 1)"),
    ({"alpha2": 1.0}, "certify.alpha2=1.0 must lie in (0, 1)"),
    ({"h": None, "eps_in": [0.1, -0.2]}, "certify.eps_in=-0.2 must be >= 0"),
    ({"h": [-1.0]}, "certify.h=-1.0 must be >= 0"),
    ({"eps_in": [0.1]}, "set exactly one of them"),
    ({"h": None}, "set exactly one of them"),
    ({"n": 0}, "certify.n=0 must be an integer >= 1"),
    ({"n": 50}, "certify.n=50 can never pass the mass check"),
    ({"m": 0}, "certify.m=0 must be an integer >= 1"),
    ({"distance": "hamming"}, "certify.distance='hamming' is not a known distance"),
    ({"distance": ["l2", "l2"]}, "certify.distance=['l2', 'l2']"),
    ({"distance": "jaccard_box"}, "certify.distance=jaccard_box does not fit"),
    ({"distance": "feature"}, "certify.feature_network"),
    ({"gamma": 0.5}, "certify.gamma=0.5"),
    ({"num_examples": 100}, "certify.num_examples=100 exceeds"),
    ({"weights": "first"}, "certify.weights='first'"),
    ({"m": 10}, "certify.m=10 cannot certify any eps_in"),
]


@pytest.mark.parametrize("settings,message", BAD_SETTINGS)
def test_bad_settings_fail_in_one_line_before_training(tmp_path, settings, message):
    module = ToyStructured()
    with pytest.raises(ConfigError) as info:
        options = {**FAST, "h": [1.0], **settings}
        callback = center_callback.CenterCertification(0.25, str(tmp_path), **options)
        trainer(max_epochs=1, callbacks=[callback]).fit(module, datamodule=ToyData())
    assert message in str(info.value) and "\n" not in str(info.value)
    assert module.global_step == 0 and not list(tmp_path.glob("center_*"))


def test_m_too_small_everywhere_names_the_smallest_m_that_works(tmp_path):
    need = smallest_m(0.25, 0.25, FAST["delta"], 0.005)
    with pytest.raises(ConfigError, match=rf"certify.m=100 .* use m >= {need}$"):
        certify(tmp_path, h=[1.0, 2.0], m=100)
    for m, fails in ((need - 1, True), (need, False)):
        smoother = CenterSmooth(torch.nn.Identity(), "l2", 0.25, n=1000, m=m, delta=0.2)
        if fails:
            with pytest.raises(ConfigError):
                smoother.check_certifiable([0.25])
        else:
            smoother.check_certifiable([0.25])
    # q > 1 at some eps_in only: a warning, and eps_out = inf in those rows.
    with pytest.warns(UserWarning, match=r"no certificate .* at eps_in=\[2.0\]"):
        certify(tmp_path / "partial", eps_in=[0.25, 2.0], num_examples=1)
    rows = read(tmp_path / "partial" / "center_l2.tsv")[2]
    assert math.isfinite(float(rows[0]["eps_out"])) and rows[1]["eps_out"] == "inf"


def test_models_without_structured_output_and_inputs_outside_unit_range_fail(tmp_path):
    class Classifier(pl.LightningModule):
        def test_step(self, batch, batch_idx):
            return None

        def contract(self) -> Contract:  # a classifier's: class logits, no structured output
            noise = GaussianNoise(0.25)
            return Contract("classification", "class_logits", self, (), noise, num_classes=2)

    with pytest.raises(ConfigError, match="needs a model with structured_output.*certify=cohen"):
        callback = center_callback.CenterCertification(0.25, str(tmp_path), h=[1.0], **FAST)
        trainer(callbacks=[callback]).test(Classifier(), datamodule=ToyData())
    with pytest.raises(ConfigError, match=r"test example 0 values span .* must lie in \[0, 1\]"):
        callback = center_callback.CenterCertification(0.25, str(tmp_path), h=[1.0], **FAST)
        trainer(callbacks=[callback]).test(ToyStructured(), datamodule=ToyData(scale=3.0))


def test_results_do_not_depend_on_the_batch_size(tmp_path):
    certify(tmp_path / "a", h=[0.5, 1.0], num_examples=3, batch_size=7)
    certify(tmp_path / "b", h=[0.5, 1.0], num_examples=3, batch_size=500)
    assert without_time(tmp_path / "a" / "center_l2.tsv") == without_time(
        tmp_path / "b" / "center_l2.tsv"
    )


def test_resume_skips_finished_examples_and_refuses_to_overwrite(tmp_path, monkeypatch):
    full = tmp_path / "full"
    certify(full, h=[0.5, 1.0], num_examples=3)
    before = (full / "center_l2.tsv").read_bytes()
    with pytest.raises(ConfigError, match="certify.resume=true"):
        certify(full, h=[0.5, 1.0], num_examples=3)
    assert (full / "center_l2.tsv").read_bytes() == before

    # A crash after example 0 and half of example 1's rows: resume certifies examples 1 and 2.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    lines = before.decode().splitlines(keepends=True)
    (crashed / "center_l2.tsv").write_text("".join(lines[:-3]))
    seen = []
    real = center_callback.certify_example

    def spy(smoother, x, idx, *args):
        seen.append(idx)
        return real(smoother, x, idx, *args)

    monkeypatch.setattr(center_callback, "certify_example", spy)
    callback = certify(crashed, h=[0.5, 1.0], num_examples=3, resume=True)
    assert seen == [1, 2]
    assert without_time(crashed / "center_l2.tsv") == without_time(full / "center_l2.tsv")
    assert [r.idx for r in callback.records["l2"]] == [0, 1, 2]

    with pytest.raises(ConfigError, match=r"written with n=1000, this run has n=1500"):
        certify(crashed, h=[0.5, 1.0], num_examples=3, resume=True, n=1500)


def test_several_sigmas_with_h_certify_at_eps_in_h_times_sigma(tmp_path):
    sigmas, h = [0.12, 0.25], [0.5, 1.0]
    with pytest.warns(UserWarning, match=r"certifying at sigma=0.12 a model trained at sigma=0.25"):
        callback = certify(tmp_path, sigma=sigmas, h=h, num_examples=3, seed=7)
    meta, columns, rows = read(tmp_path / "center_l2.tsv")
    assert tuple(columns) == CENTER_COLUMNS and tuple(columns[:6]) == REQUIRED
    assert (meta["sigma"], meta["h"], meta["train_sigma"]) == ("[0.12, 0.25]", "[0.5, 1.0]", "0.25")
    assert meta["eps_in"] == str([[v * s for v in h] for s in sigmas])
    grid = [(s, v * s) for s in sigmas for v in h]
    assert [(r["idx"], float(r["sigma"]), float(r["eps_in"])) for r in rows] == [
        (str(i), s, e) for i in range(3) for s, e in grid
    ]
    # Example 1 at sigma 0.12 is the core certifier's, with the noise seeded by (seed, 1).
    sampling = {key: FAST[key] for key in ("n", "m", "delta", "batch_size")}
    smoother = CenterSmooth(ToyStructured().structured_output, "l2", 0.12, **sampling)
    with torch.inference_mode():
        x = ToyData().dataset("test")[1][0]
        expected = smoother.certify_details(x, [0.06, 0.12], example_generator(7, 1))
    mine = [r for r in rows if (r["idx"], r["sigma"]) == ("1", "0.12")]
    assert [float(r["eps_out"]) for r in mine] == expected.eps_out
    # The same standard normal draws at every sigma: for this linear model under l2, the center
    # is the same sample and every distance scales with sigma.
    for low, high in zip(rows[0::4], rows[2::4], strict=True):
        assert low["p_hat"] == high["p_hat"] and low["abstain"] == high["abstain"] == "0"
        ratio = float(high["smoothing_error"]) / float(low["smoothing_error"])
        assert ratio == pytest.approx(0.25 / 0.12, rel=1e-4)

    _, curve_columns, curve = read(tmp_path / "center_curve_l2.tsv")
    assert curve_columns == ["h", "sigma", "eps_in", "eps_out", "smoothing_error"]
    assert [(float(p["h"]), float(p["sigma"])) for p in curve] == [
        (v, s) for v in h for s in sigmas
    ]
    for point in curve:
        sigma, eps = float(point["sigma"]), float(point["eps_in"])
        assert eps == float(point["h"]) * sigma
        level = [r for r in rows if float(r["sigma"]) == sigma]
        eps_out = sorted(float(r["eps_out"]) for r in level if float(r["eps_in"]) == eps)
        errors = sorted(float(r["smoothing_error"]) for r in level if float(r["eps_in"]) == eps)
        assert (
            float(point["eps_out"]) == eps_out[1] and float(point["smoothing_error"]) == errors[1]
        )
        assert callback.summary[f"cert/l2/eps_out@{eps:g}/sigma{sigma:g}"] == eps_out[1]
        assert callback.summary[f"cert/l2/smoothing_error/sigma{sigma:g}"] == errors[1]
    for first, second in zip(curve[0::2], curve[1::2], strict=True):  # both grow with eps_in
        for key in ("eps_in", "eps_out", "smoothing_error"):
            assert float(first[key]) < float(second[key])
    assert callback.objective == "cert/l2/eps_out@h0.5/sigma0.12"
    assert callback.objective_value() == callback.summary["cert/l2/eps_out@0.06/sigma0.12"]
    assert callback.summary["cert/l2/abstain/sigma0.25"] == 0.0
    assert (tmp_path / "center_curve_l2.png").stat().st_size > 1000
    examples = sorted(p.name for p in (tmp_path / "center_examples").iterdir())
    assert examples == ["center_l2_00000.png", "center_l2_00001.png"]  # at the first sigma only


def test_m_too_small_at_one_sigma_names_it_and_the_m_it_needs(tmp_path):
    need = smallest_m(0.25, 0.1, FAST["delta"], 0.005)
    with pytest.raises(ConfigError) as info:
        certify(tmp_path, sigma=[0.1, 0.25], eps_in=[0.25])
    expected = rf"certify\.m=2000 cannot certify any eps_in at sigma=0\.1 \(q > 1 even at eps_in=0\.25\); use m >= {need}"  # noqa: E501
    assert re.fullmatch(expected, str(info.value))
    assert not list(tmp_path.glob("center_*"))


def test_resume_with_several_sigmas_redoes_examples_missing_a_sigma(tmp_path, monkeypatch):
    settings = {"sigma": [0.12, 0.25], "eps_in": [0.05, 0.1], "num_examples": 3}
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        certify(full, train_sigma=[0.12, 0.25], **settings)
    assert not [w for w in caught if "a model trained at" in str(w.message)]
    meta, _, rows = read(full / "center_l2.tsv")
    assert meta["train_sigma"] == "[0.12, 0.25]" and meta["sigma"] == "[0.12, 0.25]"
    assert meta["eps_in"] == "[[0.05, 0.1], [0.05, 0.1]]" and meta["h"] == "None"
    # With explicit radii, one pair of curves per sigma.
    _, columns, curve = read(full / "center_curve_l2.tsv")
    assert columns == ["sigma", "eps_in", "eps_out", "smoothing_error"]
    assert [(p["sigma"], p["eps_in"]) for p in curve] == [
        (s, e) for s in ("0.12", "0.25") for e in ("0.05", "0.1")
    ]

    # A crash after example 0 and example 1's first sigma: resume redoes 1 and 2 at both sigmas.
    crashed.mkdir()
    lines = (full / "center_l2.tsv").read_text().splitlines(keepends=True)
    (crashed / "center_l2.tsv").write_text("".join(lines[:-6]))
    assert [e.idx for e in read_center_records(crashed / "center_l2.tsv")[1]] == [0]
    seen = []
    real = center_callback.certify_example

    def spy(smoother, x, idx, *args):
        seen.append((idx, smoother.sigma))
        return real(smoother, x, idx, *args)

    monkeypatch.setattr(center_callback, "certify_example", spy)
    callback = certify(crashed, train_sigma=[0.12, 0.25], resume=True, **settings)
    assert seen == [(1, 0.12), (1, 0.25), (2, 0.12), (2, 0.25)]
    assert without_time(crashed / "center_l2.tsv") == without_time(full / "center_l2.tsv")
    assert [(e.idx, len(e.levels)) for e in callback.records["l2"]] == [(0, 2), (1, 2), (2, 2)]

    message = r"written with sigma=\[0.12, 0.25\], this run has sigma=\[0.12, 0.5\]"
    with pytest.raises(ConfigError, match=message):
        certify(crashed, resume=True, **{**settings, "sigma": [0.12, 0.5]})


def test_reading_keeps_complete_examples_only(tmp_path):
    header = "# sigma: [0.1, 0.2]\n# eps_in: [[0.1], [0.1, 0.2]]\n" + "\t".join(CENTER_COLUMNS)

    def lines(idx: int, scale: float) -> list[str]:
        """An example's lines: eps_in 0.1 at sigma 0.1, then eps_in 0.1 and 0.2 at sigma 0.2."""
        grid = ((0.1, 0.1, 3.0), (0.2, 0.1, 1.5), (0.2, 0.2, 3.0))
        return [
            f"{idx}\t{eps}\t{out * scale}\t0.5\t0\t1.000000\t{sigma}\t0.9\t0.4\t{out / 3}\n"
            for sigma, eps, out in grid
        ]

    body = lines(0, 1.0) + lines(1, 9.0)[:1]  # example 1 cut short after its first sigma
    body += lines(2, 2.0) + lines(1, 9.0)[:2] + lines(1, 1.1)  # then within its second sigma
    path = tmp_path / "center_l2.tsv"
    path.write_text(header + "\n" + "".join(body) + "3\t0.1\t3")  # a last line cut short
    _, examples = read_center_records(path)
    assert [(e.idx, [level.eps_out for level in e.levels]) for e in examples] == [
        (0, [(3.0,), (1.5, 3.0)]),
        (2, [(6.0,), (3.0, 6.0)]),
        (1, [(3.0 * 1.1,), (1.5 * 1.1, 3.0 * 1.1)]),
    ]
    first = CenterRecord(0, 0.1, (0.1,), (3.0,), (1.0,), 0.5, 0, 1.0, 0.9, 0.4)
    second = CenterRecord(0, 0.2, (0.1, 0.2), (1.5, 3.0), (0.5, 1.0), 0.5, 0, 1.0, 0.9, 0.4)
    assert examples[0] == CenterExample(0, (first, second))
    assert examples[0].to_row() == "".join(lines(0, 1.0)).rstrip("\n")


@pytest.mark.slow  # DDP: two processes
def test_two_ddp_processes_write_the_single_process_rows(tmp_path):
    settings = ["h=[0.5, 1.0]", "num_examples=5", "distance=['l2', 'tv']", "batch_size=100"]
    settings.append("sigma=[0.12, 0.25]")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "center" / "toy.py"), str(tmp_path / "ddp")]
        + ["image", "2", *settings],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = {"h": [0.5, 1.0], "num_examples": 5, "distance": ["l2", "tv"], "sigma": [0.12, 0.25]}
    certify(tmp_path / "one", **one)
    for name in ("l2", "tv"):
        ddp = without_time(tmp_path / "ddp" / f"center_{name}.tsv")
        assert ddp == without_time(tmp_path / "one" / f"center_{name}.tsv")
        assert [row[0] for row in ddp[::4]] == ["0", "1", "2", "3", "4"]  # 2 sigmas x 2 h each
    assert not list((tmp_path / "ddp").glob("*.rank*.tsv"))
    assert (tmp_path / "ddp" / "center_curve_tv.png").is_file()


class ContractOnly(pl.LightningModule):
    """A model certifiable through its contract alone: no ``structured_output``, ``output_kind``
    or ``num_classes`` of its own (issue 22: callbacks read ``pl_module.contract()``)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.inner = ToyStructured(kind)

    def contract(self) -> Contract:
        return self.inner.contract()

    def test_step(self, batch, batch_idx):
        return None


@pytest.mark.parametrize(("kind", "distance"), [("label_map", "jaccard_labels"), ("box", "l2")])
def test_center_reads_the_models_contract_not_its_attributes(tmp_path, kind, distance):
    settings = {**FAST, "distance": distance, "h": [1.0], "num_images": 1}
    callback = center_callback.CenterCertification(0.25, str(tmp_path / "contract"), **settings)
    trainer(callbacks=[callback]).test(ContractOnly(kind), datamodule=ToyData())
    certify(tmp_path / "module", kind, **settings)
    name = f"center_{distance}.tsv"
    assert without_time(tmp_path / "contract" / name) == without_time(tmp_path / "module" / name)


def test_unknown_settings_and_models_without_a_contract_fail_in_one_line(tmp_path):
    with pytest.raises(TypeError, match="bogus"):
        center_callback.CenterCertification(0.25, str(tmp_path), h=[1.0], bogus=1, **FAST)

    class NoContract(pl.LightningModule):
        def structured_output(self, x):
            return x

        def test_step(self, batch, batch_idx):
            return None

    callback = center_callback.CenterCertification(0.25, str(tmp_path), h=[1.0], **FAST)
    with pytest.raises(ConfigError, match="NoContract declares no contract") as error:
        trainer(callbacks=[callback]).test(NoContract(), datamodule=ToyData())
    assert "\n" not in str(error.value)
