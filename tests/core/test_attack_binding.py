"""attack=: the attack is bound to its certifier by configuration (``attack.certifier``, a
``certify=`` name), not by the order of the callbacks: it finds it wherever it stands, runs after
it, and a certifier that is missing or does not fit is one line in setup, before training."""

from __future__ import annotations

import pytest

from callbacks.attack import EmpiricalRobustness
from callbacks.certification.cohen import CohenCertification
from conftest import TINY
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

SMALL = ["certify.num_examples=2", "certify.n=100", "attack.n=50", "attack.m=2", "attack.steps=2"]


def attack_and_certifier(run):
    (attack,) = [c for c in run.callbacks if isinstance(c, EmpiricalRobustness)]
    (cohen,) = [c for c in run.callbacks if isinstance(c, CohenCertification)]
    return attack, cohen


def test_the_attack_finds_its_certifier_before_it_and_runs_after_it(make_cfg, tmp_path):
    run = build_run(make_cfg(*TINY, *SMALL, "attack=smoothed_pgd"))
    attack, cohen = attack_and_certifier(run)
    before = list(run.trainer.callbacks)
    run.trainer.callbacks = [attack, *(c for c in before if c is not attack)]  # attack first
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert attack.certifier is cohen
    order = run.trainer.callbacks
    assert sorted(map(id, order)) == sorted(map(id, before))  # each callback once
    assert order.index(attack) == order.index(cohen) + 1
    assert [r.idx for r in attack.records] == [r.idx for r in cohen.records] == [0, 1]
    assert all((tmp_path / name).is_file() for name in ("empirical.tsv", "empirical_summary.json"))


def test_an_attack_behind_its_certifier_stays_where_it_is(make_cfg):
    run = build_run(make_cfg(*TINY, "attack=smoothed_pgd"))
    attack, cohen = attack_and_certifier(run)
    before = list(run.trainer.callbacks)
    assert before.index(attack) > before.index(cohen)
    attack.prepare(run.trainer, run.module)
    assert attack.certifier is cohen and run.trainer.callbacks == before


NOT_THERE = [
    (
        ["certify=none", "attack=smoothed_pgd"],
        "attack=smoothed_pgd attacks at multiples of Cohen's certified radii: use certify=cohen "
        "(the run has none)",
    ),
    (
        ["attack=smoothed_pgd", "attack.certifier=lipschitz"],
        "use certify=lipschitz (the run has certify=cohen)",
    ),
    (
        ["certify=lipschitz", "attack=smoothed_pgd", "attack.certifier=lipschitz"],
        "attack.certifier=lipschitz: attack=smoothed_pgd attacks what certify=cohen certified, "
        "not certify=lipschitz",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), NOT_THERE, ids=["none", "other", "unfit"])
def test_a_missing_or_unfit_certifier_is_one_line_in_setup(make_cfg, tmp_path, overrides, message):
    run = build_run(make_cfg(*TINY, *overrides))
    with pytest.raises(Exception) as info:
        run.trainer.fit(run.module, datamodule=run.datamodule)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and message in str(error), repr(info.value)
    assert "\n" not in str(error)
    assert not (tmp_path / "checkpoints").exists() and not list(tmp_path.glob("*.tsv"))
