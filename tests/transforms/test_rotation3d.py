"""Rotations of point clouds (paper 003, App. B.5): the matrices (scipy as the oracle), normals,
exact composition about one axis and its failure about three, and the soundness of SegCertify's
per-point certificate under real rotations, which a broken composition fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation as ScipyRotation
from scipy.stats import norm

from callbacks.certification.segcertify import SegCertifyCertification
from callbacks.reporting import check_keys
from lightning_modules.run.config_checks import check_perturbation_used
from smoothcert.certifiers.segmentation import score_segmentation, segcertify
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise
from smoothcert.outcomes import ABSTAIN
from smoothcert.records import BASE, Row
from smoothcert.report.segcertify import segcertify_section
from smoothcert.transforms import AxisAngleRotation3D, AxisRotation3D
from smoothcert.transforms.rotation3d import axis_angle_rotation, axis_rotation, rotate_clouds

SIGMA, TAU, ALPHA = 0.25, 0.75, 1e-3
RADIUS = SIGMA * norm.ppf(TAU)  # radians (paper: 0.17)
GRID = 1000  # equal-probability quadrature nodes of N(0, sigma^2): error <= 1 / GRID per step


def sphere_cloud(points: int, seed: int = 0, extra: int = 0) -> torch.Tensor:
    """``[6 + extra, points]``: unit-sphere points, their normals (the points themselves) and
    ``extra`` further channels."""
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.randn(3, points, generator=gen, dtype=torch.float64)
    xyz = xyz / xyz.norm(dim=0)
    return torch.cat([xyz, xyz, torch.rand(extra, points, generator=gen, dtype=torch.float64)])


class SignOfX(torch.nn.Module):
    """Per point: class 1 where the x coordinate is positive. Rotated about the up axis y by
    ``t``, a point at azimuth ``phi`` (``x = rho sin phi``) has class ``[sin(phi + t) > 0]``: the
    decision depends on the angle."""

    def forward(self, clouds: torch.Tensor) -> torch.Tensor:
        return torch.stack([-clouds[:, 0], clouds[:, 0]], dim=1)


class SecondAxisSwappedIn(AxisRotation3D):
    """A broken smoothing transformation: about y by t, then about a second axis (x) by t.
    ``psi_s . psi_t != psi_(s+t)``, so the parameter-space theorem does not apply."""

    def matrices(self, params: torch.Tensor) -> torch.Tensor:
        return axis_rotation(params[:, 0], 0) @ axis_rotation(params[:, 0], 1)


def turned(cloud: torch.Tensor, angle: float, axis: int) -> torch.Tensor:
    """The attack: ``cloud`` rotated by ``angle`` about ``axis``, normals too."""
    matrix = axis_rotation(torch.tensor([angle], dtype=cloud.dtype), axis)
    return rotate_clouds(cloud[None], matrix, normals=True)[0]


def smoothed_class_one(perturbation, model, cloud: torch.Tensor) -> torch.Tensor:
    """Each point's probability of class 1 under the smoothing at ``cloud``, by quadrature over
    the angle with the perturbation's own transformation (nodes at the N(0, sigma^2) quantiles
    of (j + 1/2) / GRID: a decision that steps once per point is off by at most 1 / GRID)."""
    nodes = SIGMA * norm.ppf((np.arange(GRID) + 0.5) / GRID)
    draws = torch.tensor(nodes, dtype=cloud.dtype)[:, None]
    return model(perturbation.apply(cloud, draws)).argmax(dim=1).double().mean(dim=0)


def soundness_violations(perturbation, attack, model, cloud, classes) -> int:
    """Certified points (``classes`` not ABSTAIN) whose class breaks what the certificate says
    under the attack ``attack(cloud, t)`` for angles ``|t| <= RADIUS``: that the class keeps
    probability above 1/2 and, as Cohen's theorem gives it, at least ``Phi(Phi^-1(p_A) -
    |t| / sigma)`` (p_A its probability at the clean cloud); tolerance 2 / GRID + slack."""
    certified = classes != ABSTAIN
    p_one = smoothed_class_one(perturbation, model, cloud)
    p_clean = torch.where(classes == 1, p_one, 1 - p_one)[certified].numpy()
    assert (p_clean > TAU - 0.01).all()  # SegCertify's own statement (alpha = 1e-3)
    violations = np.zeros(len(p_clean), dtype=bool)
    for angle in np.linspace(-RADIUS, RADIUS, 9):
        p_one = smoothed_class_one(perturbation, model, attack(cloud, float(angle)))
        p_class = torch.where(classes == 1, p_one, 1 - p_one)[certified].numpy()
        bound = norm.cdf(norm.ppf(np.minimum(p_clean, 1 - 1e-9)) - abs(angle) / SIGMA)
        violations |= (p_class <= 0.5 - 0.005) | (p_class < bound - 0.01)
    return int(violations.sum())


AXIS_Y = AxisRotation3D(GaussianNoise(SIGMA), axis="y")
SOUNDNESS = [  # (smoothing, attack, whether composition holds)
    ("one axis: y smoothing, y attack", AXIS_Y, lambda c, t: turned(c, t, 1), True),
    ("second axis attack: y smoothing, z attack", AXIS_Y, lambda c, t: turned(c, t, 2), False),
    (
        "broken composition: y then x smoothing, its own attack",
        SecondAxisSwappedIn(GaussianNoise(SIGMA)),
        lambda c, t: SecondAxisSwappedIn(GaussianNoise(SIGMA)).apply(c, torch.tensor([[t]]))[0],
        False,
    ),
]


@pytest.mark.parametrize(
    ("perturbation", "attack", "composes"),
    [case[1:] for case in SOUNDNESS],
    ids=[case[0] for case in SOUNDNESS],
)
def test_segcertify_certificate_holds_under_real_rotations_and_fails_when_composition_breaks(
    perturbation, attack, composes
):
    cloud, model = sphere_cloud(200), SignOfX()
    gen = torch.Generator().manual_seed(1)
    classes, radius = segcertify(
        model, cloud, SIGMA, 100, 1000, TAU, ALPHA, batch_size=1100, generator=gen,
        perturbation=perturbation,
    )  # fmt: skip
    assert radius == pytest.approx(RADIUS)  # radians
    assert (classes != ABSTAIN).sum() > 150  # most points are certified
    violations = soundness_violations(perturbation, attack, model, cloud, classes)
    assert (violations == 0) if composes else (violations > 0), violations


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_one_axis_rotations_compose_exactly_and_match_scipy(axis):
    angles = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    matrices = axis_rotation(angles, "xyz".index(axis))
    oracle = ScipyRotation.from_euler(axis, angles.numpy()[:, None]).as_matrix()
    np.testing.assert_allclose(matrices.numpy(), oracle, atol=1e-12)
    rotate = AxisRotation3D(GaussianNoise(SIGMA), axis=axis)
    cloud = sphere_cloud(50)
    first, second = torch.tensor([[0.4]]).double(), torch.tensor([[-1.1]]).double()
    twice = rotate.apply(rotate.apply(cloud, first)[0], second)
    once = rotate.apply(cloud, first + second)
    torch.testing.assert_close(twice, once, atol=1e-12, rtol=0)


def test_axis_angle_matches_scipy_and_does_not_compose_so_it_is_a_heuristic():
    vectors = torch.tensor([[0.3, -0.2, 0.5], [1e-7, 2e-7, 0.0], [0.0, 0.0, 0.0]]).double()
    oracle = ScipyRotation.from_rotvec(vectors.numpy()).as_matrix()
    np.testing.assert_allclose(axis_angle_rotation(vectors).numpy(), oracle, atol=1e-12)
    rotate, cloud = AxisAngleRotation3D(GaussianNoise(SIGMA)), sphere_cloud(50)
    u, v = torch.tensor([[0.3, 0.0, 0.0]]), torch.tensor([[0.0, 0.3, 0.0]])
    twice = rotate.apply(rotate.apply(cloud, v)[0], u)
    assert (twice - rotate.apply(cloud, u + v)).abs().max() > 0.01  # R(u) R(v) != R(u + v)
    assert not rotate.certified and "heuristic" in rotate.name
    assert "not a certificate" in rotate.axis_label


def test_normals_turn_with_the_points_and_other_channels_stay():
    cloud = sphere_cloud(30, extra=2)  # normals = the points themselves on the unit sphere
    for rotate, draw in [
        (AxisRotation3D(GaussianNoise(SIGMA), axis="z"), [[0.7]]),
        (AxisAngleRotation3D(GaussianNoise(SIGMA)), [[0.2, -0.5, 0.9]]),
    ]:
        out = rotate.apply(cloud, torch.tensor(draw))[0]
        torch.testing.assert_close(out[3:6], out[:3], atol=1e-12, rtol=0)
        torch.testing.assert_close(out[:3].norm(dim=0), torch.ones(30, dtype=torch.float64))
        assert (out[:3] - cloud[:3]).abs().max() > 0.1
        torch.testing.assert_close(out[6:], cloud[6:], atol=0, rtol=0)
    without = AxisRotation3D(GaussianNoise(SIGMA), normals=False)
    torch.testing.assert_close(without.apply(cloud, torch.ones(1, 1))[0, 3:], cloud[3:])
    about = AxisRotation3D(GaussianNoise(SIGMA), axis="z", center=0.5)
    fixed = torch.full((3, 1), 0.5, dtype=torch.float64)
    torch.testing.assert_close(about.apply(fixed, torch.tensor([[2.0]]))[0], fixed)


@pytest.mark.parametrize(
    ("make", "shape", "message"),
    [
        (lambda n: AxisRotation3D(n, axis="w"), None, "perturbation.axis='w' must be one of"),
        (lambda n: AxisRotation3D(n, normals="yes"), None, "perturbation.normals='yes' must be"),
        (lambda n: AxisRotation3D(n), (3, 8, 8), "rotates point clouds [C, N]"),
        (lambda n: AxisRotation3D(n, normals=True), (3, 40), "set perturbation.normals=false"),
    ],
)
def test_bad_rotation3d_settings_are_one_line(make, shape, message):
    with pytest.raises(ConfigError) as info:
        make(GaussianNoise(SIGMA)).check_input(shape)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_segcertify_callback_smooths_over_rotations_and_a_heuristic_writes_no_cert_keys(tmp_path):
    for rotate, root in [
        (AxisRotation3D(GaussianNoise(SIGMA)), "cert"),
        (AxisAngleRotation3D(GaussianNoise(SIGMA)), "heuristic"),
    ]:
        callback = SegCertifyCertification(SIGMA, str(tmp_path), perturbation=rotate, tau=TAU)
        assert callback.prefix == f"{root}/{rotate.name}/"
        assert callback.config.prepare(callback.prefix) == f"{root}/miou"
        assert callback.radius(TAU) == pytest.approx(RADIUS)
        header = callback.config.header([RADIUS], callback)
        assert header["perturbation"] == rotate.name and header["units"].startswith("radians")
        assert callback.config.certifier(SIGMA, 8, *(None, None, rotate)).keywords[
            "perturbation"
        ] is rotate  # fmt: skip
    check_keys([callback.config.prepare(callback.prefix)], sound=callback.sound)
    assert "heuristic" in header["units"]


def test_segcertify_report_of_a_heuristic_has_no_cert_keys():
    labels = torch.tensor([0, 1, ABSTAIN, 1])
    scores = score_segmentation(labels, torch.tensor([0, 1, 1, 0]), 2)
    rows = [Row(TAU, 0, RADIUS, 1.0, scores), Row(BASE, 0, 0.0, 0.1, scores)]
    section = segcertify_section(rows, [TAU], "heuristic/rotation3d_heuristic_radians/", "r", str)
    assert section.scalars["heuristic/pixel_acc"] == pytest.approx(0.5)
    assert section.scalars["heuristic/rotation3d_heuristic_radians/radius"] == pytest.approx(RADIUS)
    check_keys(section.scalars, sound=False)  # raises for any cert/ key
    assert section.curve.stem == "heuristic_pixel_accuracy"
    assert "not a certificate" in section.curve.x_label
    assert "NOT certified" in section.lines[0] and "certified pixel" not in " ".join(section.lines)
    certified = segcertify_section(rows, [TAU], "cert/", "l2", str).scalars
    renamed = {k.replace("rotation3d_heuristic_radians/", "") for k in section.scalars}
    assert {k.replace("heuristic/", "cert/") for k in renamed} == set(certified)


def test_a_certifier_with_its_own_perturbation_passes_the_config_check(make_cfg):
    cfg = make_cfg("+experiment=shapes3d_rotation_seg")  # trains on xyz, certifies rotations
    check_perturbation_used(cfg, {})
    assert cfg.certify.perturbation.noise.sigma == cfg.certify.sigma
    with pytest.raises(ConfigError, match="does not smooth over perturbation"):
        check_perturbation_used(make_cfg("+experiment=shapes3d_seg", "~certify.perturbation"), {})
