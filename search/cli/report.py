"""`scripts/report.py EXPERIMENT_DIR`: write (again) an experiment's report.html."""

from __future__ import annotations

import argparse
import sys

from search.layout import REPORT_FILE
from search.usage import EXPERIMENT_HELP, OneLineErrorParser, UsageError


def build_parser() -> argparse.ArgumentParser:
    """The flags of scripts/report.py."""
    p = OneLineErrorParser(
        prog="report.py",
        description=f"Write an experiment's {REPORT_FILE}: ranked trials, learning curves, "
        "val_acc against each hyperparameter, their importance, budget and transfer gain.",
    )
    p.add_argument("experiment", help=EXPERIMENT_HELP)
    p.add_argument(
        "--reference",
        metavar="EXPERIMENT_DIR",
        help="another experiment (e.g. one run with --weights none) to measure the transfer "
        "gain against; default: the best linear probe of this sweep",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Write the report; exit 2 on bad input (one line)."""
    try:
        args = build_parser().parse_args(argv)
        from search.storage import local_experiment

        root = local_experiment(args.experiment)
        if not root.is_dir():
            raise UsageError(f"no experiment folder at {root}")
        reference = local_experiment(args.reference) if args.reference else None
        from search.report import write_report  # matplotlib and Optuna: the input is good

        try:
            path = write_report(root, reference)
        except UsageError:
            raise
        except (OSError, ValueError) as error:  # a read-only folder, a damaged settings.json
            raise UsageError(f"cannot write the report of {root}: {error}") from None
    except UsageError as error:
        print(f"report.py: error: {error}", file=sys.stderr)
        return 2
    print(f"Report: {path}")
    return 0
