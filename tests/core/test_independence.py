"""Every core certifier gives one answer for a network in train mode, however the base function
reaches it: the network held by a wrapper object, a ``functools.partial``, a global read by a
lambda, or an object the search does not look into, runs in eval mode (certificate identical to
the eval-mode network's, mode and buffers unchanged afterwards); a batch coupling or randomness
that is no module (functional batch norm or dropout in train mode) is refused in one line.

Before the shared probe, center smoothing and percentile smoothing certified these networks in
train mode (other certificates, running statistics overwritten) and ``Smooth`` and ``segcertify``
crashed on a callable that is no ``nn.Module``."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert import CenterSmooth, Smooth, segcertify
from smoothcert.certifiers.median import PercentileSmooth
from smoothcert.errors import ConfigError
from smoothcert.independence import EvalModes, _differs, called_modules, certification_mode
from smoothcert.noise import GaussianNoise

NETWORK: nn.Module | None = None  # read by the lambda of the "global" case


class Wrapper:
    """A plain callable object holding the network."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def __call__(self, z: Tensor) -> Tensor:
        return self.network(z)


class Slotted:
    """Holds the network where the search does not look (no ``__dict__``)."""

    __slots__ = ("network",)

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def __call__(self, z: Tensor) -> Tensor:
        return self.network(z)


def run_network(network: nn.Module, z: Tensor) -> Tensor:
    return network(z)


def wrap(how: str, network: nn.Module) -> Callable[[Tensor], Tensor]:
    if how == "wrapper object":
        return Wrapper(network)
    if how == "partial":
        return functools.partial(run_network, network)
    if how == "global read by a lambda":
        globals()["NETWORK"] = network
        return lambda z: NETWORK(z)
    return Slotted(network)


def with_statistics(network: nn.Module) -> nn.Module:
    """Running statistics far from a batch's own, so train and eval mode give other outputs."""
    generator = torch.Generator().manual_seed(0)
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    return network.train()


def image_classifier() -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()]
    return with_statistics(nn.Sequential(*layers, nn.Dropout(0.5), nn.Linear(64, 3)))


def image_segmenter() -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.5)]
    return with_statistics(nn.Sequential(*layers, nn.Conv2d(4, 3, 1)))


class Twice(nn.Module):
    """Each feature seen twice, so that train-mode BatchNorm1d runs on a batch of one."""

    def forward(self, z: Tensor) -> Tensor:
        return z.unsqueeze(-1).expand(-1, -1, 2)


def vector_network() -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(4, 4), Twice(), nn.BatchNorm1d(4), nn.Flatten(), nn.ReLU(), nn.Dropout()]
    return with_statistics(nn.Sequential(*layers, nn.Linear(8, 3)))


IMAGE = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))
VECTOR = torch.rand(4, generator=torch.Generator().manual_seed(1))


def smooth(function) -> list:
    certifier = Smooth(function, 3, 0.25)
    return list(certifier.certify(IMAGE, 10, 100, 0.01, 32, torch.Generator().manual_seed(2)))


def seg(function) -> list:
    classes, radius = segcertify(
        function, IMAGE, 0.25, 10, 60, 0.75, 0.01, batch_size=32,
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    return [classes, radius]


def percentile(function) -> list:
    certifier = PercentileSmooth(function, GaussianNoise(0.5), 0.1, n=300, alpha=0.01)
    result = certifier.certify(VECTOR, torch.Generator().manual_seed(2))
    return [result.estimate, result.lower, result.upper]


def center(function) -> list:
    settings = {"n": 300, "m": 2000, "delta": 0.2, "batch_size": 128}
    certifier = CenterSmooth(function, "l2", 0.5, **settings)
    result = certifier.certify_details(VECTOR, 0.1, torch.Generator().manual_seed(2))
    return [result.center, result.eps_out, result.smoothed.radius]


CERTIFIERS = {
    "Smooth": (smooth, image_classifier),
    "segcertify": (seg, image_segmenter),
    "PercentileSmooth": (percentile, vector_network),
    "CenterSmooth": (center, vector_network),
}
HOLDERS = ["wrapper object", "partial", "global read by a lambda", "object without __dict__"]


def same(a: list, b: list) -> bool:
    return all(
        torch.equal(u, v) if isinstance(u, Tensor) else u == v for u, v in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize("certifier", list(CERTIFIERS))
def test_train_mode_network_reached_indirectly_runs_in_eval_mode(certifier, holder) -> None:
    run, build = CERTIFIERS[certifier]
    network = build()
    reference = run(copy.deepcopy(network).eval())
    buffers = [b.clone() for b in network.buffers()]
    assert same(run(wrap(holder, network)), reference)
    assert network.training and all(m.training for m in network.modules())
    assert all(torch.equal(a, b) for a, b in zip(buffers, network.buffers(), strict=True))


def batch_norm_of_the_batch(network: nn.Module) -> Callable[[Tensor], Tensor]:
    """Batch statistics without a module: nothing to put in eval mode."""
    return lambda z: F.batch_norm(network(z), None, None, training=True)


def dropout_without_module(network: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda z: F.dropout(network(z), 0.5, training=True)


@pytest.mark.parametrize(
    "coupling, message",
    [(batch_norm_of_the_batch, "BatchNorm in train mode"), (dropout_without_module, "dropout")],
    ids=["batch norm", "dropout"],
)
@pytest.mark.parametrize("certifier", list(CERTIFIERS))
def test_coupling_or_randomness_that_is_no_module_is_refused(certifier, coupling, message):
    run, build = CERTIFIERS[certifier]
    network = build().eval()
    state = torch.get_rng_state()
    with pytest.raises(ConfigError, match=f"{message}.*call .eval\\(\\).*modules="):
        run(coupling(network))
    assert torch.equal(state, torch.get_rng_state())  # the probe used no global randomness


def test_search_follows_attributes_partials_wrapped_globals_and_defaults() -> None:
    a, b, c, d, e = (nn.Linear(1, 1) for _ in range(5))
    globals()["NETWORK"] = c

    @functools.wraps(run_network)
    def wrapped(z: Tensor) -> Tensor:
        return z

    wrapped.__wrapped__ = functools.partial(run_network, z=None, network=d)

    def uses_default(z: Tensor, net: nn.Module = e) -> Tensor:
        return net(z)

    roots = [Wrapper(a), functools.partial(run_network, b), lambda z: NETWORK(z), wrapped]
    assert {id(m) for m in called_modules(*roots, uses_default)} == {id(m) for m in (a, b, c, d, e)}
    assert called_modules(Slotted(a)) == []  # found by the probe's forward hook instead


@pytest.mark.parametrize("outer", [True, False], ids=["outer train", "outer eval"])
def test_each_submodule_runs_in_eval_mode_and_its_own_mode_is_restored(outer: bool) -> None:
    network = image_classifier().train(outer)
    network[1].train(not outer)  # a frozen BatchNorm in a network in train mode, or the reverse
    modes = [m.training for m in network.modules()]
    with certification_mode(Wrapper(network), IMAGE, GaussianNoise(0.25)):
        assert not any(m.training for m in network.modules())
    assert [m.training for m in network.modules()] == modes


class Counter(nn.Module):
    """Counts its calls in a buffer: state that changes in eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, z: Tensor) -> Tensor:
        self.calls += 1
        return z.flatten(1)[:, :3]


def test_a_buffer_changed_in_eval_mode_is_refused_and_put_back() -> None:
    counter = Counter()
    with pytest.raises(ConfigError, match=r"changed the buffers Counter\.calls \(put back\)"):
        smooth(counter)
    assert int(counter.calls) == 0


def under_bf16_autocast(function: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """As a callback with certify.bf16=true calls a model: autocast inside, float outputs."""

    def run(z: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return function(z).float()

    return run


def test_bf16_autocast_widens_the_tolerance_to_its_rounding_only() -> None:
    a = torch.tensor([[1.0, 0.5, -0.25]])
    off = a + torch.tensor([[0.02, 0.0, 0.0]])  # 2 % of the row's largest |output|
    assert _differs(a, off) > 0  # float32: more than PROBE_RTOL
    assert _differs(a, off, {torch.bfloat16}) == 0  # within 8 bfloat16 ulps (0.0625)
    assert _differs(a, a + 0.5, {torch.bfloat16}) > 0  # what train-mode layers do

    seen = EvalModes()
    with seen.discovering():
        under_bf16_autocast(vector_network().eval())(VECTOR[None])
    assert seen.autocast == {torch.bfloat16}
    seen.restore()


@pytest.mark.parametrize(
    "coupling", [batch_norm_of_the_batch, dropout_without_module], ids=["batch norm", "dropout"]
)
def test_coupling_is_still_refused_under_bf16_autocast(coupling) -> None:
    network = vector_network().eval()
    with pytest.raises(ConfigError, match="call .eval"):
        percentile(under_bf16_autocast(coupling(network)))
