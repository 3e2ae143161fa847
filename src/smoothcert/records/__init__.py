"""Certification records: one schema per certifier (TSV columns, resume keys, the ``#`` header),
one TSV writer and reader, one pack/unpack between processes and one store per record file.

Cohen's classification records keep the reference implementation's columns
``idx label predict radius correct time``.
"""

from smoothcert.records import center, cohen, schema, segmentation, store, tsv
from smoothcert.records.center import *  # noqa: F403
from smoothcert.records.cohen import *  # noqa: F403
from smoothcert.records.schema import *  # noqa: F403
from smoothcert.records.segmentation import *  # noqa: F403
from smoothcert.records.store import *  # noqa: F403
from smoothcert.records.tsv import *  # noqa: F403

__all__ = [
    name for module in (tsv, schema, store, cohen, segmentation, center) for name in module.__all__
]
