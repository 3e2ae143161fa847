"""Moved to ``callbacks.certification.cohen``. Hydra configs and checkpoints name
``callbacks.cohen_certification.CohenCertification``,
so this path stays importable: it is the very same module object (not a copy), and
patching a name here patches what the callback calls."""

import sys

from callbacks.certification import cohen

sys.modules[__name__] = cohen
