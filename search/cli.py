"""The command line of scripts/search.py: parse, validate, run; exit codes as documented.

0 done; 1 anything unexpected; 2 bad input (one line, no traceback); 130 interrupted.
"""

from __future__ import annotations

import sys

from search.resume import parse_resume
from search.run import SearchInterrupted, run_search
from search.settings import UsageError, build_parser, given_flags, parse_settings


def main(argv: list[str] | None = None) -> int:
    """Run a search from command-line arguments; return the process exit code."""
    try:
        # Every input, and on --resume the saved state, is checked before Ray starts.
        given = given_flags(argv)
        if given.get("help"):
            build_parser().print_help()
            return 0
        if given.get("resume") or given.get("extend"):
            run_search(parse_resume(argv), resume=True)
        else:
            run_search(parse_settings(argv))
    except UsageError as error:
        print(f"search.py: error: {error}", file=sys.stderr)
        return 2
    except SearchInterrupted as stopped:
        print(f"\n{stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # a second Ctrl-C during Tune's shutdown
        print("\nInterrupted before the state was saved.", file=sys.stderr)
        return 130
    return 0
