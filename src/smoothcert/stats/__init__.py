"""Statistics of certification: binomial bounds and tests (scipy and statsmodels are the oracles
in the tests)."""
