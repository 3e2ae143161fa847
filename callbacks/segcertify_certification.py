"""Moved to ``callbacks.certification.segcertify``. Hydra configs and checkpoints name
``callbacks.segcertify_certification.SegCertifyCertification``,
so this path stays importable: it is the very same module object (not a copy), and
patching a name here patches what the callback calls."""

import sys

from callbacks.certification import segcertify

sys.modules[__name__] = segcertify
