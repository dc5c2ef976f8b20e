"""The command line of scripts/search.py: parse, validate, run; exit codes as documented.

0 done; 1 anything unexpected; 2 bad input (one line, no traceback); 130 interrupted.
Torch, Ray and Optuna are imported only once the input has been checked: `--help`,
`--version` and a typo answer at once.
"""

from __future__ import annotations

import sys

from search.config.parse import build_parser, given_flags, package_version
from search.config.preflight import checked_settings
from search.usage import SearchInterrupted, UsageError


def main(argv: list[str] | None = None) -> int:
    """Run a search from command-line arguments; return the process exit code."""
    try:
        # Every input, and on --resume the saved state, is checked before Ray starts.
        given = given_flags(argv)
        if given.get("help"):
            build_parser().print_help()
            return 0
        if given.get("version"):
            print(f"transfer-tune {package_version()}")
            return 0
        resume = bool(given.get("resume") or given.get("extend"))
        if resume:
            from search.resume import parse_resume

            settings = parse_resume(argv)
        else:
            settings = checked_settings(argv)
        from search.run import run_search  # Ray, torch and Optuna: the input is good

        run_search(settings, resume=resume)
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
