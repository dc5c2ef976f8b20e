"""The command line of scripts/search.py: parse, validate, run; exit codes as documented.

0 done; 1 anything unexpected; 2 bad input (one line, no traceback); 130 interrupted.
"""

from __future__ import annotations

import sys

from search.run import run_search
from search.settings import UsageError, parse_settings


def main(argv: list[str] | None = None) -> int:
    """Run a search from command-line arguments; return the process exit code."""
    try:
        run_search(parse_settings(argv))  # every input is checked before Ray starts
    except UsageError as error:
        print(f"search.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    return 0
