"""Statistics of certification: binomial bounds and tests, multiple testing, order statistics and
concentration slacks (scipy and statsmodels are the oracles in the tests). Imports nothing of
smoothcert but ``errors`` (``tests/test_layering.py``)."""
