"""What each task module declares it logs (the checkpoint monitor is checked against it before
training) is what its validation really logs."""

from __future__ import annotations

import hydra
import pytest
import torch
from pytorch_lightning import Trainer

from conftest import TINY


@pytest.mark.parametrize(
    "experiment", [None, "digits_autoencoder_tv", "shapes_seg", "shapes_box_center"]
)
def test_declared_evaluation_metrics_are_the_logged_ones(make_cfg, experiment):
    cfg = make_cfg(*TINY, *([f"+experiment={experiment}"] if experiment else []))
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    trainer = Trainer(
        accelerator="cpu",
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    logged = {key for key in trainer.callback_metrics if key.startswith("val/")}
    assert logged == {f"val/{name}" for name in module.evaluation_metrics}
    assert cfg.callbacks.best_checkpoint.monitor in module.monitorable()


CONTRACTS = [  # experiment, task, output kind, training sigma, what the base function returns
    (None, "classification", "class_logits", 0.25, (10,)),
    ("digits_clean", "classification", "class_logits", 0.0, (10,)),
    ("digits_autoencoder_tv", "reconstruction", "image", [0.12, 0.25, 0.5], (1, 8, 8)),
    ("shapes_seg", "segmentation", "label_map", 0.25, None),
    ("shapes_box_center", "box_regression", "box", 0.25, (4,)),
    ("shapes_size_median", "box_regression", "vector", 0.25, (1,)),
    ("shapes_detection_median", "detection", "detection", 0.25, None),
]


@pytest.mark.parametrize(("experiment", "task", "kind", "sigma", "shape"), CONTRACTS)
def test_every_module_declares_its_contract(make_cfg, experiment, task, kind, sigma, shape):
    """Task, output kind, base function, monitorable metrics and the training noise: the last
    from the noise the model really trains with (digits_clean's regime trains at sigma 0)."""
    cfg = make_cfg(*TINY, *([f"+experiment={experiment}"] if experiment else []))
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    contract = module.contract()
    assert (contract.task, contract.output_kind) == (task, kind)
    assert contract.noise is module.training_noise and module.train_sigma == sigma
    assert cfg.callbacks.best_checkpoint.monitor in contract.monitorable
    datamodule.setup("fit")
    x = torch.as_tensor(datamodule.dataset("train")[0][0])[None]
    with torch.no_grad():
        out = contract.base_function(x)
    if shape is not None:
        assert tuple(out.shape[1:]) == shape
    elif task == "segmentation":  # per-pixel logits at full resolution
        assert tuple(out.shape[2:]) == tuple(x.shape[2:])
    else:  # a detector's detections as one vector
        assert tuple(out.shape[1:]) == (contract.detection_layout.length,)
    classes = getattr(module.hparams, "num_classes", None)
    assert contract.num_classes == (None if kind in ("box", "image", "detection") else classes)
    if contract.structured_output is not None:  # what center and median smoothing smooth
        with torch.no_grad():
            assert contract.structured_output(x).shape[0] == 1
    assert (contract.logits_at is not None) == (task == "segmentation")
    assert (contract.detection_layout is not None) == (task == "detection")
    assert contract.ignore_index == (
        module.hparams.ignore_index if task == "segmentation" else None
    )
    assert (contract.target_of is not None) == (kind == "vector")


def test_a_module_without_its_contract_is_refused_before_training(make_cfg):
    from callbacks.certification.cohen import CohenCertification
    from smoothcert.errors import ConfigError

    module = hydra.utils.instantiate(make_cfg(*TINY).model, _convert_="object")
    module.output_kind = ""
    with pytest.raises(ConfigError, match="does not declare output_kind"):
        module.contract()
    certifier = CohenCertification(0.25, "unused")
    with pytest.raises(ConfigError, match="does not declare output_kind"):
        certifier.check_model(module)
