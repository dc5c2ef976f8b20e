"""Search freeze depth and learning rates for fine-tuning: `python scripts/search.py --help`."""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the `search` package; Python puts scripts/ first on the import path,
# so drop it, or `import search` would import this file instead of the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from search.cli.search import command  # noqa: E402

if __name__ == "__main__":
    command()  # see search/cli/search.py for the flags and exit codes
