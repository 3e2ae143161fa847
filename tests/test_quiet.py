"""The known noise is silenced by its message only: other warnings and info lines still show."""

from __future__ import annotations

import logging
import warnings

import pytest
from pytorch_lightning.utilities import rank_zero_info

from lightning_modules.run.quiet import DropLightningTips, quiet_known_noise

PYTREE = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`"
DIRPATH = "The dirpath has changed from '/a/checkpoints' to '/b/checkpoints', therefore ..."
CKPT = "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be"


@pytest.fixture
def rank_zero_logger():
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    yield logger
    for f in [f for f in logger.filters if isinstance(f, DropLightningTips)]:
        logger.removeFilter(f)


@pytest.mark.parametrize("certifying", [False, True])
def test_only_the_known_warnings_are_dropped(certifying, rank_zero_logger):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise(certifying=certifying)
        for message in (PYTREE, DIRPATH, CKPT, "The dirpath is wrong", "something else"):
            warnings.warn(message, UserWarning, stacklevel=1)
    shown = [str(w.message) for w in caught]
    assert PYTREE not in shown and "something else" in shown and "The dirpath is wrong" in shown
    assert (DIRPATH in shown) == (CKPT in shown) == (not certifying)  # certify.py only


def test_lightning_tips_are_dropped_and_other_info_lines_kept(rank_zero_logger, caplog):
    quiet_known_noise()
    quiet_known_noise()  # idempotent
    assert sum(isinstance(f, DropLightningTips) for f in rank_zero_logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=rank_zero_logger.name):
        rank_zero_info("💡 Tip: For seamless cloud uploads and versioning, try installing ...")
        rank_zero_info("certified: acc@0.00=1.000")
    assert [r.getMessage() for r in caplog.records] == ["certified: acc@0.00=1.000"]
