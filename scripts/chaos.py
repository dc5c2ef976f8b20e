"""The fault matrix: kills, signals and storage faults through the real CLI, and what each
left (docs/reliability.md).

    python scripts/chaos.py                  # every fault (about 20 minutes on 2 CPU cores)
    python scripts/chaos.py --only kill      # the faults whose name contains "kill"
    python scripts/chaos.py --list
"""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts scripts/ first on the import path; drop it, as scripts/search.py explains.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed

from benchmarks.chaos import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
