"""Certifiers: classification (``Smooth``: PREDICT and CERTIFY), segmentation (SegCertify and its
baselines) and center smoothing; each is noise + sampler + statistics, with the radius from the
noise (``smoothcert.noise``)."""
