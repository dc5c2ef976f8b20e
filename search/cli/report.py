"""`scripts/report.py EXPERIMENT_DIR`: write (again) an experiment's report.html."""

from __future__ import annotations

import argparse
import sys

from search.config.usage import EXPERIMENT_HELP, OneLineErrorParser, UsageError
from search.experiment.layout import REPORT_FILE


def build_parser(prog: str = "report.py") -> argparse.ArgumentParser:
    """The flags of scripts/report.py."""
    p = OneLineErrorParser(
        prog=prog,
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


def main(argv: list[str] | None = None, prog: str = "report.py") -> int:
    """Write the report; exit 2 on bad input (one line)."""
    try:
        args = build_parser(prog).parse_args(argv)
        from search.experiment.storage import local_experiment

        root = local_experiment(args.experiment)
        if not root.is_dir():
            raise UsageError(f"no experiment folder at {root}")
        reference = local_experiment(args.reference) if args.reference else None
        from search.results.report import write_report  # matplotlib and Optuna: the input is good

        try:
            path = write_report(root, reference)
        except UsageError:
            raise
        except (OSError, ValueError) as error:  # a read-only folder, a damaged settings.json
            raise UsageError(f"cannot write the report of {root}: {error}") from None
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"Report: {path}")
    return 0
