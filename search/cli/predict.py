"""`scripts/predict.py MODEL.pt IMAGE_OR_FOLDER...`: classify image files with an exported model.

Prints `path<TAB>class<TAB>probability` per image on stdout, in the order given (a folder's
images below it, sorted). An unreadable image, a missing path or a folder without images gets
one error line on stderr naming it; the others are still classified, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from search.config.usage import OneLineErrorParser, UsageError
from search.results.predict import image_paths
from trainable.catalog import DataError


def build_parser(prog: str = "predict.py") -> argparse.ArgumentParser:
    """The arguments of scripts/predict.py."""
    p = OneLineErrorParser(
        prog=prog,
        description="Classify images with a model written by scripts/export.py. Prints "
        "path<TAB>class<TAB>probability per image.",
    )
    p.add_argument("model", help="the exported model file (scripts/export.py --out)")
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files, or folders whose images (any depth, sorted) are classified",
    )
    return p


def main(argv: list[str] | None = None, prog: str = "predict.py") -> int:
    """Classify; exit 0, or 2 on bad input or any unreadable image or path (one line each)."""
    try:
        args = build_parser(prog).parse_args(argv)
        if not Path(args.model).is_file():  # before torch is imported: a typo answers at once
            raise UsageError(f"model file {args.model} does not exist")
        from trainable.exported import load_export, model_from_export, predict_files

        export = load_export(Path(args.model))
        model = model_from_export(export)
    except (UsageError, ValueError) as error:  # ExportError is a ValueError
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    for warning in export["source"].get("warnings", []):  # on stderr: stdout stays tab-separated
        print(f"{prog}: warning (from the search): {warning}", file=sys.stderr)
    paths, problems = image_paths(args.images)
    for problem in problems:  # the other arguments are still classified
        print(f"{prog}: error: {problem}", file=sys.stderr)
    failed = 0
    try:
        for outcome in predict_files(model, export, paths):
            if isinstance(outcome, DataError):
                failed += 1
                print(f"{prog}: error: {outcome}", file=sys.stderr)
            else:
                path, name, probability = outcome
                print(f"{path}\t{name}\t{probability:.4f}", flush=True)
    except BrokenPipeError:  # the reader stopped (`| head`): no more output is wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if failed:
        print(f"{prog}: {failed} of {len(paths)} images could not be read", file=sys.stderr)
    return 2 if failed or problems else 0
