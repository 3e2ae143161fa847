"""The constructors of the DataModules and task modules are declared once (settings groups, see
``lightning_modules/settings.py``); what they take and what they save did not change.

For every data config, model config and experiment, the fixture ``hparams_before_settings.json``
(written by this file's ``__main__`` from the code before the declared constructors) holds the
saved hparams (keys in order, each value's type and value), ``hparams_name`` (stored in
checkpoints) and the constructor's signature as ``config_checks`` reads it (names, defaults,
type hints). Regenerate only for an intended change: ``python tests/test_declared_settings.py``.
"""

from __future__ import annotations

import inspect
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CONF, compose_config  # noqa: E402
from lightning_modules.settings import DeclaredSettings  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "hparams_before_settings.json"
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if "denoiser" not in p.stem)
EXPERIMENTS = sorted(
    p.stem for p in (CONF / "experiment").glob("*.yaml") if "denoiser" not in p.stem
)
CASES = (
    [f"data={d}" for d in DATA]
    + [f"model={m}" for m in MODELS]
    + [f"+experiment={e}" for e in EXPERIMENTS]
)


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):  # data_dir: the same in every checkout
        return value.replace(str(CONF.parent), "<root>")
    return value


def _signature(cls: type) -> list[list[str]]:
    hints = typing.get_type_hints(cls.__init__)
    return [
        [name, repr(p.default), repr(hints.get(name)), p.kind.name]
        for name, p in inspect.signature(cls).parameters.items()
    ]


def _described(obj: Any) -> dict[str, Any]:
    return {
        "class": type(obj).__name__,
        "hparams": [[k, type(v).__name__, _plain(v)] for k, v in obj.hparams.items()],
        "hparams_name": obj._hparams_name,
        "signature": _signature(type(obj)),
    }


def describe(override: str, tmp_path: Path) -> dict[str, Any]:
    """The data module's (and, but for ``data=``, the task module's) hparams and signature for
    the config ``override`` gives; datasets are not looked for (their checks are patched)."""
    import lightning_modules.data.classification as classification
    import lightning_modules.data.pointclouds as pointclouds
    import lightning_modules.data.segmentation as segmentation

    cfg = compose_config([override], tmp_path)
    saved = classification.check_dataset, segmentation.check_segmentation_dataset
    saved_points = pointclouds.check_pointcloud_dataset
    classification.check_dataset = segmentation.check_segmentation_dataset = lambda *a: None
    pointclouds.check_pointcloud_dataset = lambda *a: None
    try:
        described = {"data": _described(hydra.utils.instantiate(cfg.data, _convert_="object"))}
    finally:
        classification.check_dataset, segmentation.check_segmentation_dataset = saved
        pointclouds.check_pointcloud_dataset = saved_points
    if not override.startswith("data="):  # the network itself is no hyper-parameter
        # (a cifar_stem needs the real ResNet, whose stem it replaces)
        tiny = {} if cfg.model.get("cifar_stem") else {"net": nn.Identity()}
        module = hydra.utils.instantiate(cfg.model, _convert_="object", **tiny)
        described["model"] = _described(module)
    return described


@dataclass
class First:
    name: str
    size: int = 1


@dataclass
class Second:
    size: float = 2.5  # named again: keeps its place and type (int), takes this default
    extra: bool = False


def made_with(size: int = 4, other: str = "x") -> None:
    """A function whose parameters a group may name."""


class Declared(DeclaredSettings):
    settings = (First, Second, (made_with, "other"))

    def __init__(self, **settings: Any) -> None:
        self.received = settings


def test_a_declared_constructor_binds_fills_in_and_orders_its_settings():
    signature = inspect.signature(Declared)
    assert list(signature.parameters) == ["name", "size", "extra", "other"]
    assert signature.parameters["size"].default == 2.5
    assert typing.get_type_hints(Declared.__init__)["size"] is int
    assert Declared("a", other="y").received == dict(name="a", size=2.5, extra=False, other="y")
    assert list(Declared(other="z", name="b").received) == ["name", "size", "extra", "other"]
    with pytest.raises(TypeError, match="unexpected keyword argument 'sise'"):
        Declared("a", sise=3)
    with pytest.raises(TypeError, match="missing a required argument: 'name'"):
        Declared()


@pytest.mark.parametrize("override", CASES)
def test_hparams_and_signatures_are_those_before_the_declared_settings(override, tmp_path):
    expected = json.loads(FIXTURE.read_text())[override]
    assert describe(override, tmp_path) == expected


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = {case: describe(case, Path(tmp)) for case in CASES}
    FIXTURE.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {len(found)} cases to {FIXTURE}")
