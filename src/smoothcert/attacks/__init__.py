"""Attacks on smoothed and base classifiers: l2 PGD on the smoothed soft classifier (Salman et
al.), Foolbox's L2PGD on the base model, and PREDICT at the adversarial points."""

from smoothcert.attacks.smoothed_pgd import smoothed_nll, smoothed_pgd_l2

__all__ = ["smoothed_nll", "smoothed_pgd_l2"]
