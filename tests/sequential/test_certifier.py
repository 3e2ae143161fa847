"""Sequential CERTIFY (``smoothcert.certifiers.sequential``) on the linear model: outcomes do not
depend on the batch size or the packing, interrupts and budgets stop with valid bounds, the
futility stop ends examples whose radius the cap cannot reach, and top-k uses anytime bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.sequential import (
    CertificationInterrupted,
    SharedBudget,
    certify_sequential_many,
    check_times,
    parse_budget,
)
from smoothcert.certifiers.topk import (
    anytime_simultaneous_bounds,
    topk_radius,
    topk_records_sequential,
)
from smoothcert.errors import ConfigError
from smoothcert.records import SEQUENTIAL_SCHEMA, SequentialRecord
from smoothcert.stats.sequential import confidence_sequence
from tests.sequential.linear import Linear2, at_distance

SIGMA, RADII = 0.5, [0.0, 0.25, 0.5, 1.0]
MARGINS = [-0.3, 0.0, 0.2, 0.45, 0.7, 3.0]


def run(batch_size: int, margins=MARGINS, model=None, seeds=None, **options):
    smooth = Smooth(model or Linear2(), 2, SIGMA, input_range=None)
    seeds = range(100, 100 + len(margins)) if seeds is None else seeds
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    xs = [at_distance(m) for m in margins]
    return certify_sequential_many(
        smooth, xs, 30, 3000, 0.001, batch_size, generators, RADII, **options
    )


def key(outcome):
    return (outcome.predict, outcome.radius, outcome.samples, outcome.count, outcome.stop)


def test_outcomes_depend_on_neither_the_batch_size_nor_the_packing():
    packed = [key(o) for o in run(8192)]
    assert [key(o) for o in run(101)] == packed
    alone = [key(run(1000, [MARGINS[i]], seeds=[100 + i])[0]) for i in (1, 3, 5)]
    assert alone == [packed[i] for i in (1, 3, 5)]


def test_stops_are_decided_and_each_bound_is_the_sequence_at_its_samples():
    outcomes = run(512)
    for o in outcomes:
        assert o.stop in ("decided", "cap") and o.samples in check_times(3000)
        assert o.p_lower <= o.count / o.samples <= o.p_upper
    far = outcomes[-1]  # p_A = Phi(6): radius 1 certified in a few hundred samples
    assert far.grid_radius == 1.0 and far.samples < 500 and far.stop == "decided"
    boundary = outcomes[1]  # p_A = 1/2 exactly: nothing certified; stops once even radius 0 is
    assert boundary.predict == -1 and np.isnan(boundary.grid_radius)  # out of reach by the cap
    assert boundary.stop == "cap" and 2000 < boundary.samples < 3000
    assert outcomes[0].c_hat == 0  # the other side of the boundary: class 0 selected


def test_an_unreachable_radius_stops_the_example_early():
    # Every sample is class 1 (p_A = 1), but radius 20 needs far more than 3000 samples: without
    # the futility stop the example would run to the cap for it.
    smooth = Smooth(Linear2(), 2, SIGMA, input_range=None)
    generator = [torch.Generator().manual_seed(0)]
    (o,) = certify_sequential_many(
        smooth, [at_distance(50.0)], 30, 3000, 0.001, 512, generator, [0.0, 1.0, 20.0]
    )
    assert o.stop == "cap" and o.grid_radius == 1.0 and o.samples < 1000


def test_an_interrupt_stops_at_the_last_check_with_valid_bounds():
    checks = iter(range(100))
    with pytest.raises(CertificationInterrupted) as info:
        run(512, interrupted=lambda: next(checks) == 3)
    outcomes = info.value.outcomes
    assert {o.stop for o in outcomes} <= {"interrupted", "decided"}
    assert any(o.stop == "interrupted" for o in outcomes)
    for o in outcomes:
        lower, _ = confidence_sequence(o.count, o.samples, 0.001)
        assert o.p_lower >= lower  # the running intersection's lower end at the last check

    class StopsOnThe12thCall(Linear2):
        calls = 0

        def forward(self, x):
            type(self).calls += 1
            if type(self).calls == 12:
                raise KeyboardInterrupt
            return super().forward(x)

    with pytest.raises(CertificationInterrupted) as info:
        run(512, model=StopsOnThe12thCall())
    assert {o.stop for o in info.value.outcomes} <= {"interrupted", "decided"}


def test_a_budget_caps_and_deadlines_stop_with_the_reason_budget():
    outcomes = run(512, caps=[100] * len(MARGINS))
    assert all(o.samples <= 100 for o in outcomes)
    assert outcomes[1].stop == "budget"  # p_A = 1/2: undecided at its share
    late = run(512, deadline=0.0)  # already past: one check each, then stop
    assert all(o.samples == check_times(3000)[0] or o.stop == "decided" for o in late)
    assert {o.stop for o in late} <= {"budget", "decided"}


def test_the_shared_budget_gives_each_group_an_equal_share_of_what_is_left():
    budget = SharedBudget(samples=10_000, seconds=None, n0=100, n=100_000)
    budget.start(examples=2, world=2)  # this process: 5000 for its 2 examples
    assert budget.plan(1) == ((2400,), None)  # (5000 - 2 * 100) / 2
    budget.spend(1, 100 + 400)  # an easy example stopped after 400
    assert budget.plan(1) == ((4400,), None)  # the rest goes to the last one
    assert parse_budget("10m") == (None, 600.0) and parse_budget(5) == (5, None)
    for bad in ("ten", "-3m", 0, True):
        with pytest.raises(ConfigError, match="certify.budget"):
            parse_budget(bad)


def test_top_k_from_sequential_counts_uses_anytime_bounds():
    counts = [[5, 900, 95], [300, 300, 400]]
    records = [SequentialRecord(0, 1, 1, 0.5, 1, 0.0), SequentialRecord(1, 2, 2, 0.0, 1, 0.0)]
    topk = topk_records_sequential(records, counts, [1, 2, 3], 0.5, 0.001)
    for record, row, out in zip(records, counts, topk, strict=True):
        expected = tuple(
            topk_radius(row, record.label, k, 0.5, 0.001, bounds=anytime_simultaneous_bounds)
            for k in (1, 2, 3)
        )
        assert out.radii == expected
    fixed = topk_radius(counts[0], 1, 1, 0.5, 0.001)  # Clopper-Pearson at n fixed: larger
    assert 0 < topk[0].radii[0] < fixed


def test_sequential_records_round_trip(tmp_path):
    record = SequentialRecord(3, 1, 1, 0.25, 1, 0.5, 2272, 2100, 0.75, "decided", 0.25)
    path = tmp_path / "certify.tsv"
    header = "# certifier: cohen\n" + "\t".join(SEQUENTIAL_SCHEMA.columns)
    path.write_text(f"{header}\n{record.to_row()}\n")
    _, (back,) = SEQUENTIAL_SCHEMA.read(path)
    assert back == record


def test_default_stopping_settings_are_todays_rule():
    assert [key(o) for o in run(4096, stop_alpha=0.001, futility="cap")] == [
        key(o) for o in run(4096)
    ]
    for bad in ({"futility": "never"}, {"stop_alpha": 0.0001}, {"stop_alpha": 1.0}):
        with pytest.raises(ConfigError, match="certify.(futility|stop_alpha)="):
            run(4096, **bad)


@pytest.mark.parametrize("stop_alpha", [None, 0.05])
def test_the_projected_futility_stop_keeps_an_example_the_cap_would_certify(stop_alpha):
    # p_A = Phi(2.56) ~ 0.995 at sigma 0.5: radius 1 (p* = Phi(2) ~ 0.977) is certified well
    # before the cap of 3000 (the lower bound there, from the expected count, is ~0.99). The
    # projected stop can give it up only when the upper bound at stop_alpha falls below p_A
    # (probability <= stop_alpha, over the whole run): over 200 runs, at most that fraction
    # (plus sampling error) lose radius 1; every other run is exactly today's.
    level, runs = stop_alpha or 0.001, 200
    seeds, margins = range(runs), [1.28] * runs
    projected = run(4096, margins, seeds=seeds, stop_alpha=stop_alpha, futility="projected")
    today = run(4096, margins, seeds=seeds)
    assert all(o.grid_radius == 1.0 and o.stop == "decided" for o in today)
    kept = [key(p) == key(t) for p, t in zip(projected, today, strict=True)]
    assert np.mean(kept) >= 1 - level - 3 * np.sqrt(level * (1 - level) / runs)
    assert all(o.grid_radius < 1.0 for o, k in zip(projected, kept, strict=True) if not k)
    # ... while an example just below radius 1's threshold is given up sooner.
    (near,) = run(4096, [0.95], stop_alpha=stop_alpha, futility="projected")
    (slow,) = run(4096, [0.95])
    assert near.grid_radius == 0.5 and near.samples < slow.samples


@pytest.mark.parametrize(
    "stopping",
    [{"stop_alpha": 0.9}, {"futility": "projected"}, {"stop_alpha": 0.05, "futility": "projected"}],
)
def test_the_stopping_settings_change_only_when_an_example_stops(stopping):
    # Each variant stops no later than today's rule, so today's rule interrupted at the check
    # where the variant stopped has the same counts and the same certificate (the lower bound
    # at alpha), whatever the stopping level.
    variant = run(512, **stopping)
    for margin, seed, v in zip(MARGINS, range(100, 200), variant, strict=False):
        rounds = iter(range(check_times(3000).index(v.samples), -1, -1))
        with pytest.raises(CertificationInterrupted) as info:
            run(512, [margin], seeds=[seed], interrupted=lambda rounds=rounds: next(rounds) == 0)
        (t,) = info.value.outcomes
        assert (v.samples, v.count, v.p_lower, v.radius, v.predict) == (
            t.samples, t.count, t.p_lower, t.radius, t.predict
        )  # fmt: skip
    assert sum(o.samples for o in variant) < sum(o.samples for o in run(512))  # and stops sooner
