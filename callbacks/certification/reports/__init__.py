"""Each certifier's report, next to it: what its callback's ``report`` writes and logs (rank 0)
from the kept records: curves (TSV, PNG, wandb), summary scalars, lines and figures. The parts
without Lightning or wandb live in ``smoothcert.report.<certifier>``."""
