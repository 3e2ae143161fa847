"""Silences the known, harmless noise of a run's console, each by its own message (nothing else
is hidden): Lightning's advertising tips, a deprecation inside Lightning's pytree helper, and in
certify.py the checkpoint-restore warnings that do not apply to certifying."""

from __future__ import annotations

import logging
import warnings

# Warnings of the libraries, by the start of their message (regular expressions).
LIBRARY_WARNINGS = (
    # Lightning 2.6 calls a torch pytree API that torch 2.10+ deprecates; nothing to fix here.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
# certify.py restores only the weights: the checkpoint's callbacks and their directory do not
# matter, so Lightning's warnings about them are noise.
CERTIFY_WARNINGS = (
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint",
    r"The dirpath has changed from",
)
TIP = "💡 Tip:"  # Lightning's suggestions to install its cloud products (litlogger, litmodels)


class DropLightningTips(logging.Filter):
    """Drops Lightning's ``💡 Tip:`` info lines; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP)


def quiet_known_noise(certifying: bool = False) -> None:
    """Installs the filters (idempotent). ``certifying``: also the certify.py-only warnings."""
    for message in LIBRARY_WARNINGS + (CERTIFY_WARNINGS if certifying else ()):
        warnings.filterwarnings("ignore", message=message)
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, DropLightningTips) for f in logger.filters):
        logger.addFilter(DropLightningTips())
