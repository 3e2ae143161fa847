"""Attacks on smoothed and base classifiers: l2 PGD on the smoothed soft classifier (Salman et
al.), Foolbox's L2PGD on the base model, PREDICT at the adversarial points, and l2 PGD on a base
segmentation model (paper 003 App. C.1)."""

from smoothcert.attacks.segmentation import segmentation_pgd_l2
from smoothcert.attacks.smoothed_pgd import smoothed_nll, smoothed_pgd_l2

__all__ = ["segmentation_pgd_l2", "smoothed_nll", "smoothed_pgd_l2"]
