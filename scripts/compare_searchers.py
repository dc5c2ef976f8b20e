"""Compare the ASHA-Optuna bridge with Ray's stock OptunaSearch and random search.

    python scripts/compare_searchers.py            # 5 seeds x 3 searchers: ~20 min on 2 CPUs
    python scripts/compare_searchers.py --quick    # smoke run: 1 seed, 2 trials of 1 epoch

One experiment per (searcher, seed) under --out, with its console output in a .log beside it;
the report as JSON (--json) and as the Markdown table BENCHMARKS.md shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# scripts/search.py would shadow the `search` package: drop this folder from the import path;
# the benchmarks are not installed with the packages: import them from this clone.
HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from search.config.usage import UsageError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Flags: the budget of each run, how many seeds, and where results go."""
    p = argparse.ArgumentParser(prog="compare_searchers.py", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    p.add_argument("--num-samples", type=int, default=16, help="trials per run (default: 16)")
    p.add_argument("--max-epochs", type=int, default=9, help="ASHA max_t (default: 9)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 trials of 1 epoch")
    p.add_argument("--out", default="runs/compare-searchers", help="folder of the runs")
    p.add_argument("--json", default="", help="report path (default: OUT/compare.json)")
    p.add_argument("--cache-dir", default="", help="pretrained-backbone cache")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print the Markdown table; exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    seeds, samples, epochs = (
        (1, 2, 1) if args.quick else (args.seeds, args.num_samples, args.max_epochs)
    )
    if min(seeds, samples, epochs) < 1:
        print(
            "compare_searchers.py: error: --seeds, --num-samples and --max-epochs must be >= 1",
            file=sys.stderr,
        )
        return 2
    from benchmarks.searchers import compare, format_markdown
    from search.config.settings import SearchSettings
    from trainable.config import default_cache_dir

    base = SearchSettings(
        num_samples=samples,
        max_epochs=epochs,
        storage_path=args.out,
        wandb="disabled",  # a comparison, not something to browse run by run
        cache_dir=str(Path(args.cache_dir).resolve()) if args.cache_dir else default_cache_dir(),
    )
    try:
        report = compare(base, list(range(seeds)))
    except UsageError as error:
        print(f"compare_searchers.py: error: {error}", file=sys.stderr)
        return 2
    path = Path(args.json or Path(args.out) / "compare.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(format_markdown(report))
    print(f"\nReport: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
