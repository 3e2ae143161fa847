"""Certification callbacks: one base (``CertificationCallback``, the shared loop) and one short
callback per certifier."""

from callbacks.certification.base import CertificationCallback
from callbacks.certification.center import CenterCertification
from callbacks.certification.checks import CERTIFIER_FOR_TASK, check_task, sigma_levels
from callbacks.certification.cohen import CohenCertification
from callbacks.certification.segcertify import SegCertifyCertification

__all__ = [
    "CERTIFIER_FOR_TASK",
    "CenterCertification",
    "CertificationCallback",
    "CohenCertification",
    "SegCertifyCertification",
    "check_task",
    "sigma_levels",
]
