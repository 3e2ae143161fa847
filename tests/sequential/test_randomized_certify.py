"""certify.bound=randomized_cp: CERTIFY's samples with the randomized Clopper-Pearson bound at a
uniform draw fixed by (seed, index): never a smaller radius than Clopper-Pearson's, and the
records carry the draw."""

from __future__ import annotations

import torch

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import certify_group
from smoothcert.certifiers.randomized import certify_group_randomized, example_uniform
from smoothcert.stats.randomized import randomized_cp_lower
from tests.sequential.linear import Linear2, at_distance

MARGINS = [-0.2, 0.05, 0.3, 0.8, 2.0]


def test_randomized_records_are_the_bound_at_each_example_s_draw():
    smooth = Smooth(Linear2(), 2, 0.5, input_range=None)
    xs, labels, indices = [at_distance(m) for m in MARGINS], [1] * 5, list(range(10, 15))

    def generators():
        return [torch.Generator().manual_seed(i) for i in indices]

    settings = (20, 500, 0.01, 256)
    plain = certify_group(smooth, indices, xs, labels, generators(), *settings)
    randomized = certify_group_randomized(
        smooth, indices, xs, labels, generators(), *settings, seed=3
    )
    _, counts = smooth.selected_counts(xs, 20, 500, 0.01, 256, generators())
    for p, r, idx, row in zip(plain, randomized, indices, counts.tolist(), strict=True):
        assert r.u == example_uniform(3, idx) and 0 <= r.u <= 1
        assert r.radius >= p.radius and (p.predict == -1 or r.predict == p.predict)
        c_hat = r.predict if r.predict != -1 else p.predict
        if c_hat != -1:
            bound = randomized_cp_lower(row[c_hat], 500, 0.01, r.u)
            assert smooth.lower_bound_to_certificate(bound, c_hat, 2) == (r.predict, r.radius)
    assert any(r.radius > p.radius for p, r in zip(plain, randomized, strict=True))
    assert example_uniform(3, 10) != example_uniform(3, 11) != example_uniform(4, 11)
