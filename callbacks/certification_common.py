"""Moved to ``callbacks.certification``; this module re-exports what it held."""

from callbacks.certification.base import CertificationCallback
from callbacks.certification.checks import CERTIFIER_FOR_TASK, check_task, sigma_levels
from callbacks.reporting import log_images, log_locations

__all__ = [
    "CERTIFIER_FOR_TASK",
    "CertificationCallback",
    "check_task",
    "log_images",
    "log_locations",
    "sigma_levels",
]
