"""Attacks on smoothed and base classifiers: PGD on the smoothed soft classifier (Salman et
al.; l2, and l1 / linf), Foolbox's PGD on the base model (L2PGD, LinfPGD, SparseL1Descent),
PREDICT at the adversarial points, and l2 PGD on a base segmentation model (paper 003 App. C.1)."""

from smoothcert.attacks.segmentation import segmentation_pgd_l2
from smoothcert.attacks.smoothed_pgd import smoothed_nll, smoothed_pgd, smoothed_pgd_l2

__all__ = ["segmentation_pgd_l2", "smoothed_nll", "smoothed_pgd", "smoothed_pgd_l2"]
