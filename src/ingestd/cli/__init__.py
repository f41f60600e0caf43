"""The `ingestd` command line: `main` parses and dispatches, `parser` builds the argument
parser (the commands are cli/main.py, cli/dlq.py, cli/backup.py)."""

from ingestd.cli.main import main, parser

__all__ = ["main", "parser"]
