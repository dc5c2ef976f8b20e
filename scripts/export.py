"""Export the best model of an experiment: `python scripts/export.py runs/NAME --out model.pt`."""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts scripts/ first on the import path; drop it, as scripts/search.py explains.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from search.cli.export import main as export_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Entry point; see search/cli/export.py for the flags and exit codes."""
    return export_main(argv)


if __name__ == "__main__":
    sys.exit(main())
