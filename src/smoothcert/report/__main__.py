"""``python -m smoothcert.report``: curves and tables from certification TSV files."""

from smoothcert.report import main

raise SystemExit(main())
