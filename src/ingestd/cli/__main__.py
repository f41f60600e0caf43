"""`python -m ingestd.cli`: the `ingestd` command without its console script."""

import sys

from ingestd.cli.main import main

sys.exit(main())
