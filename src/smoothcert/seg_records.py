"""Moved to ``smoothcert.records.segmentation``; this module re-exports its names."""

from smoothcert.records.segmentation import *  # noqa: F403
from smoothcert.records.segmentation import __all__  # noqa: F401
