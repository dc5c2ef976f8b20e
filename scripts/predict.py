"""Classify images with an exported model: `python scripts/predict.py model.pt IMAGES...`."""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts scripts/ first on the import path; drop it, as scripts/search.py explains.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from search.cli.predict import main as predict_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Entry point; see search/cli/predict.py for the flags and exit codes."""
    return predict_main(argv)


if __name__ == "__main__":
    sys.exit(main())
