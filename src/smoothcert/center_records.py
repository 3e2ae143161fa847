"""Moved to ``smoothcert.records.center``; this module re-exports its names."""

from smoothcert.records.center import *  # noqa: F403
from smoothcert.records.center import __all__  # noqa: F401
