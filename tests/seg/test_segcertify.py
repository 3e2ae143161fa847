"""SegCertify: statistics against scipy/statsmodels, soundness against analytic truth, power."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from scipy.stats import binom, binomtest, norm
from statsmodels.stats.multitest import multipletests
from torch import nn

from callbacks.certification.segcertify import SegCertifyCertification
from seg.toy import ThresholdOracle, certified_rates, toy_probabilities
from smoothcert import ABSTAIN, ConfigError, segcertify
from smoothcert.certifiers.segmentation import (
    guarantee,
    indivclass,
    jointclass,
    sample_modes_and_counts,
    tau_alpha,
)
from smoothcert.records.legacy import RecordStore
from smoothcert.records.segmentation import (
    SEG_COLUMNS,
    SEG_RESUME_KEYS,
    Row,
    SegImage,
    seg_image_reader,
)
from smoothcert.stats.multiple_testing import pvalue_table, reject_counts, reject_levels

STATSMODELS = {"holm": "holm", "bonferroni": "bonferroni", "fdr": "fdr_bh", "fdr_by": "fdr_by"}


@pytest.fixture(autouse=True)
def no_full_gc_per_call(monkeypatch):
    """statsmodels' Holm calls gc.collect() every time (0.2 s with torch loaded): skip it here."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)


def decisions(pvalues: np.ndarray, alpha: float, correction: str, budget: int = 0) -> np.ndarray:
    levels, inverse, sizes = np.unique(pvalues, return_inverse=True, return_counts=True)
    rejected = reject_levels(torch.tensor(levels), torch.tensor(sizes), alpha, correction, budget)
    return rejected.numpy()[inverse]


def random_pvalues(rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(1, 80))
    if rng.random() < 0.5:  # many ties: few distinct values
        return rng.choice(rng.uniform(0, 0.02, size=int(rng.integers(1, 6))), size=size)
    return rng.uniform(0, 0.05, size=size) ** rng.uniform(1, 3)


def test_pvalue_table_equals_binom_sf_and_binomtest():
    for n, tau in [(1, 0.5), (100, 0.75), (1000, 0.95), (37, 0.6)]:
        table = pvalue_table(n, tau).numpy()
        expected = np.array([binom.sf(k - 1, n, tau) for k in range(n + 1)])
        assert np.array_equal(table, expected)
    for k in (0, 50, 75, 76, 90, 100):
        greater = binomtest(k, 100, 0.75, alternative="greater").pvalue
        assert pvalue_table(100, 0.75)[k].item() == pytest.approx(greater, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("correction", ["holm", "bonferroni", "fdr", "fdr_by"])
def test_corrections_equal_statsmodels_multipletests_ties_included(correction):
    rng = np.random.default_rng(1)
    for _ in range(400):
        pvalues, alpha = random_pvalues(rng), float(rng.choice([0.001, 0.05, 0.1, 0.3]))
        expected = multipletests(pvalues, alpha, STATSMODELS[correction])[0]
        assert np.array_equal(decisions(pvalues, alpha, correction), expected)


def test_count_histogram_path_equals_statsmodels_on_the_pixel_pvalues():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n, tau = int(rng.integers(20, 300)), float(rng.uniform(0.5, 0.95))
        counts = torch.as_tensor(rng.binomial(n, rng.uniform(0.6, 1.0), size=(12, 9)))
        pvalues = pvalue_table(n, tau).numpy()[counts.numpy()].ravel()
        for correction, name in STATSMODELS.items():
            expected = multipletests(pvalues, 0.01, name)[0].reshape(12, 9)
            got = reject_counts(counts, n, tau, 0.01, correction).numpy()
            assert np.array_equal(got, expected)


def lehmann_romano_reference(pvalues: np.ndarray, alpha: float, k: int) -> np.ndarray:
    """Generalized Holm step-down of Lehmann & Romano (2005, Thm 2.2), written plainly."""
    order = np.argsort(pvalues, kind="stable")
    total, rejected = len(pvalues), np.zeros(len(pvalues), dtype=bool)
    for i, index in enumerate(order, start=1):
        critical = k * alpha / total if i <= k else k * alpha / (total + k - i)
        if pvalues[index] > critical:
            break
        rejected[index] = True
    # Ties share one decision: a hypothesis tied with a rejected one is rejected too.
    return rejected | np.isin(pvalues, pvalues[rejected])


def test_kfwer_equals_lehmann_romano_and_holm_at_budget_zero():
    rng = np.random.default_rng(3)
    for _ in range(300):
        pvalues, alpha = random_pvalues(rng), 0.05
        budget = int(rng.integers(0, 5))
        got = decisions(pvalues, alpha, "kfwer", budget)
        assert np.array_equal(got, lehmann_romano_reference(pvalues, alpha, budget + 1))
        assert np.array_equal(
            decisions(pvalues, alpha, "kfwer", 0), decisions(pvalues, alpha, "holm")
        )


def test_holm_rejects_a_superset_of_bonferroni_and_kfwer_of_holm():
    rng = np.random.default_rng(4)
    strictly = 0
    for _ in range(300):
        pvalues = random_pvalues(rng)
        holm, bonferroni = decisions(pvalues, 0.05, "holm"), decisions(pvalues, 0.05, "bonferroni")
        assert np.all(holm >= bonferroni)
        assert np.all(decisions(pvalues, 0.05, "kfwer", 2) >= holm)
        strictly += int(holm.sum() > bonferroni.sum())
    assert strictly > 0


def false_certificate_rates(corrections, trials: int = 1000, tau: float = 0.75):
    """Over ``trials`` SegCertify runs on the oracle (10 pixels at p = tau, the worst case for H0,
    30 at p = 0.99), how often the certificate names >= 1 (or >= 3) pixels with p <= tau, and the
    mean fraction of such pixels among the certified ones (0 when none is certified)."""
    p = torch.cat([torch.full((10,), tau), torch.full((30,), 0.99)]).view(4, 10)
    model, x, alpha = ThresholdOracle(p, 0.25), torch.zeros(1, 4, 10), 0.1
    generator = torch.Generator().manual_seed(0)
    any_false = dict.fromkeys(corrections, 0)
    three_false = dict.fromkeys(corrections, 0)
    fraction = dict.fromkeys(corrections, 0.0)
    for _ in range(trials):
        modes, counts = sample_modes_and_counts(model, x, 0.25, 20, 100, 140, generator)
        for name, budget in corrections:
            rejected = reject_counts(counts, 100, tau, alpha, name, budget)
            false = int(rejected[0].sum())
            any_false[(name, budget)] += false >= 1
            three_false[(name, budget)] += false >= 3
            fraction[(name, budget)] += false / max(int(rejected.sum()), 1)
    rates = (any_false, three_false, fraction)
    return alpha, *({c: v / trials for c, v in rate.items()} for rate in rates)


@pytest.mark.slow  # a statistical test of several seconds
def test_family_wise_error_rate_stays_within_alpha_on_the_oracle():
    trials = 1000
    corrections = [("holm", 0), ("bonferroni", 0), ("kfwer", 2), ("fdr", 0), ("fdr_by", 0)]
    alpha, any_false, three_false, fdr = false_certificate_rates(corrections, trials)
    slack = 3 * np.sqrt(alpha * (1 - alpha) / trials)  # three standard errors of the rate
    print(
        f"FWER over {trials} trials (alpha={alpha}): {any_false}; P(>=3 false): {three_false}; "
        f"mean false fraction: {fdr}"
    )
    assert any_false[("holm", 0)] <= alpha + slack
    assert any_false[("bonferroni", 0)] < any_false[("holm", 0)]
    assert three_false[("kfwer", 2)] <= alpha + slack  # k-FWER with k = budget + 1 = 3
    assert any_false[("kfwer", 2)] >= any_false[("holm", 0)]
    # The test can fail: Benjamini-Hochberg is not family-wise and breaks the bound here.
    assert any_false[("fdr", 0)] > alpha + slack
    # What BH (PRDS holds here: independent pixels) and BY do bound: the mean false fraction.
    assert fdr[("fdr", 0)] <= alpha + slack and fdr[("fdr_by", 0)] <= alpha + slack
    assert fdr[("fdr_by", 0)] <= fdr[("fdr", 0)]  # BY is BH at a smaller level


def test_toy_power_study_reproduces_the_papers_ordering():
    rates = {
        gamma: certified_rates(toy_probabilities(100, 1, gamma), 100, 100, 0.75, 0.001, 60)
        for gamma in (0.0, 0.02, 0.05, 0.08)
    }
    print({g: {m: round(v, 3) for m, v in r.items()} for g, r in rates.items()})
    assert all(r == 1.0 for r in rates[0.0].values())
    for gamma, r in rates.items():
        assert r["holm"] >= r["bonferroni"]  # same samples: Holm rejects a superset
        if gamma > 0:
            assert r["jointclass"] == 0.0  # a single bad component breaks JointClass
    for gamma in (0.05, 0.08):
        assert rates[gamma]["bonferroni"] > rates[gamma]["indivclass"]
    assert rates[0.08]["holm"] > 0.4 and rates[0.08]["indivclass"] < 0.1


class TinySegmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))

    def forward(self, x):
        return self.net(x * 4 - 2)


def test_results_do_not_depend_on_batch_size_and_taus_share_one_pass():
    model, x = TinySegmenter(), torch.rand(3, 12, 10)

    def run(batch_size, tau):
        generator = torch.Generator().manual_seed(7)
        return segcertify(
            model, x, 0.25, 10, 150, tau, 0.01, batch_size=batch_size, generator=generator
        )

    classes, radius = run(1000, [0.6, 0.75])
    for batch_size in (1, 7, 64):
        assert torch.equal(run(batch_size, [0.6, 0.75])[0], classes)
    single, single_radius = run(33, 0.75)
    assert torch.equal(single, classes[1]) and single_radius == radius[1]
    assert radius[1] == pytest.approx(0.25 * norm.ppf(0.75))
    assert classes.dtype == torch.long and classes.shape == (2, 12, 10)
    assert (classes[0] != ABSTAIN).sum() >= (classes[1] != ABSTAIN).sum() > 0


def test_baselines_fail_on_a_single_bad_component_where_segcertify_does_not():
    p = torch.full((5, 8), 0.999)
    p[0, 0] = 0.6  # one unstable pixel
    model, x = ThresholdOracle(p, 0.25), torch.zeros(1, 5, 8)
    gen = torch.Generator().manual_seed(1)
    classes, _ = segcertify(model, x, 0.25, 50, 500, 0.75, 0.001, generator=gen)
    assert classes[0, 0] == ABSTAIN and (classes == 0).sum() == 39
    # Both certify all pixels or none. The unstable pixel caps the radius of every pixel at its own
    # sigma * Phi^-1(0.6) = 0.063 (JointClass: the whole map's probability, 0.577, is lower still),
    # below SegCertify's 0.169 for the 39 stable pixels.
    for baseline in (jointclass, indivclass):
        classes, radius = baseline(model, x, 0.25, 50, 500, 0.001, generator=gen)
        if (classes != ABSTAIN).any():
            assert (classes == 0).all() and 0 < radius < 0.25 * norm.ppf(0.6)
        else:
            assert radius == 0.0
    stable = ThresholdOracle(torch.ones(5, 8), 0.25)
    for baseline in (jointclass, indivclass):
        classes, radius = baseline(stable, x, 0.25, 10, 100, 0.001, generator=gen)
        assert (classes == 0).all() and radius > 0


BAD = [
    (dict(tau=0.4), "tau=0.4 must lie in [0.5, 1)"),
    (dict(tau=1.0), "tau=1.0 must lie in [0.5, 1)"),
    (dict(tau=[0.75, 1.2]), "tau=1.2"),
    (dict(alpha=0.0), "alpha=0.0 must lie in (0, 1)"),
    (dict(n0=0), "n0=0 must be an integer >= 1"),
    (dict(n=0), "n=0 must be an integer >= 1"),
    (dict(sigma=0.0), "sigma=0.0 must be > 0"),
    (dict(correction="sidak"), "correction='sidak' is unknown"),
    (dict(correction="kfwer", budget=-1), "budget=-1 must be an integer >= 0"),
    (dict(budget=2), "budget=2 needs correction=kfwer"),
    (dict(x=torch.full((3, 4, 4), 2.0)), "must lie in [0, 1]"),
]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_input_is_a_one_line_config_error(override, message):
    kwargs = dict(x=torch.rand(3, 4, 4), sigma=0.25, n0=5, n=10, tau=0.75, alpha=0.01)
    kwargs.update(override)
    with pytest.raises(ConfigError) as info:
        segcertify(TinySegmenter(), **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_nan_logits_raise_floating_point_error():
    class NaNModel(TinySegmenter):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(FloatingPointError, match="NaN or infinite logits"):
        segcertify(NaNModel(), torch.rand(3, 4, 4), 0.25, 5, 10, 0.75, 0.01)


def test_guarantee_line_and_curve_title_say_per_tau_or_joint(tmp_path):
    per_tau = guarantee("holm", 0, 3, joint=False)
    assert per_tau.startswith("family-wise per tau:") and "not jointly" in per_tau
    assert "certify.joint=true" in per_tau and "no certified pixel" in per_tau
    assert "never becomes another class" in per_tau and "may abstain" in per_tau
    joint = guarantee("holm", 0, 3, joint=True)
    assert joint.startswith("family-wise joint over tau:") and "each tested at alpha/3" in joint
    assert "at most 2 certified pixels" in guarantee("kfwer", 2, 1, joint=False)
    bh, by = guarantee("fdr", 0, 2, joint=False), guarantee("fdr_by", 0, 2, joint=False)
    assert bh.startswith("FDR only (Benjamini-Hochberg, assumes PRDS") and "not family-wise" in bh
    assert "Benjamini-Yekutieli, any dependence" in by and "not jointly" in by
    assert tau_alpha(0.3, 3, joint=True) == pytest.approx(0.1) and tau_alpha(0.3, 3, False) == 0.3

    class Module:  # what the title reads of the LightningModule
        hparams = {"dataset": "shapes"}

    def title(**settings) -> str:
        callback = SegCertifyCertification(0.25, str(tmp_path), tau=[0.6, 0.75], **settings)
        protocol = callback.protocol_text(Module(), 3, n0=callback.n0, n=callback.n)
        return callback.config.title(callback.noise.name, callback.sigma, protocol)

    # Three short lines (one long line was cut off): procedure, protocol, scope and level.
    head, protocol, level = title(n0=10, n=200).splitlines()
    assert head == "SegCertify holm, gaussian sigma=0.25"
    assert protocol.startswith("shapes ") and protocol.endswith(", 3 images, n0=10, n=200")
    assert level == "per tau, alpha=0.001"
    assert title(joint=True).splitlines()[-1] == "joint over tau, alpha=0.001 (alpha/2 each)"
    assert "FDR only, per tau" in title(correction="fdr_by")


def test_resume_refuses_records_certified_with_another_joint_setting(tmp_path):
    """``joint`` changes every certificate (alpha / T per tau), so it is a resume setting."""
    row = Row(0.75, 0, 0.17, 1.0, torch.zeros(4 + 2 * 2, dtype=torch.float64))
    metadata = {"certifier": "segcertify", "tau": [0.75, 0.9], "alpha": 0.01}

    def store(joint: bool) -> RecordStore:
        reader = seg_image_reader(base=False)
        settings = {**metadata, "joint": joint}
        return RecordStore(
            tmp_path, settings, "segcertify.tsv", SEG_COLUMNS, reader, SEG_RESUME_KEYS
        )

    with store(joint=False).writer(0, 1) as writer:
        writer.write(SegImage(0, (row, Row(0.9, 0, 0.32, 1.0, row.scores))))
    assert [image.idx for image in store(joint=False).existing()] == [0]
    with pytest.raises(
        ConfigError, match="it was written with joint=False, this run has joint=True"
    ):
        store(joint=True).existing()


def test_segcertify_reads_the_models_contract_not_its_attributes(tmp_path):
    """A segmenter with no ``inference_model`` of its own, only a contract stating its
    ``logits_at`` and ``num_classes``, gives the rows of the segmenter itself (issue 22)."""
    import pytorch_lightning as pl
    from center.toy import trainer
    from test_pinned_callback_records import SegData, ToySegmenter

    class ContractOnly(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.inner = ToySegmenter()
            self.save_hyperparameters(dict(self.inner.hparams))  # ignore_index, for the header

        def contract(self):
            return self.inner.contract()

        def test_step(self, batch, batch_idx):
            return None

    rows = {}
    for name, module in (("contract", ContractOnly()), ("module", ToySegmenter())):
        callback = SegCertifyCertification(0.25, str(tmp_path / name), n0=10, n=40, num_examples=2)
        trainer(callbacks=[callback]).test(module, datamodule=SegData(), verbose=False)
        rows[name] = [(r.idx, repr(r.tau), r.radius, r.scores) for r in callback.records]
    assert rows["contract"] == rows["module"] and len(rows["module"]) == 4
