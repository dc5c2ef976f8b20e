"""How good a model the embedded default finds: the figures of BENCHMARKS.md's quality table.

- `default_search_bests`: the default search (`scripts/search.py --space resnet_small`, digits,
  16 trials of up to 9 epochs, ASHA, TPE) run as a user runs it, one process per seed, and the
  best `val_acc` it reports, with its wall time. `--weights none` gives the same search from
  scratch: the transfer effect is the difference.
- `grid_ceiling`: every config of a grid over the default space (freeze_depth x backbone_lr x
  head_lr) trained the full `max_epochs` with the harness's own trial code
  (trainable.loop.run_trial), in one process, no search: the best a search of that space can
  find, and how much freeze_depth matters (the best and median per depth).

    python scripts/benchmark.py --quality              # both, seeds 0 1 2: about 20 minutes
    python -m benchmarks.quality --no-grid --seeds 0   # one seed of each search: ~3 minutes
    python -m benchmarks.quality --json quality.json

Each search pretrains nothing: the source backbone is pretrained once into --cache-dir first
(its time is reported apart), and every search reads it from there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEARCH_SCRIPT = ROOT / "scripts" / "search.py"

# A coarse grid over resnet_small's ranges (spaces/resnet.py): every freeze depth, and learning
# rates 10x apart in the middle of each range, where the good ones lie (the extremes barely
# move or diverge): 5 x 3 x 3 + 3 linear probes = 48 configs, about 10 minutes on 2 CPU cores.
GRID_DEPTHS = (0, 1, 2, 3, 4, 5)
GRID_BACKBONE_LRS = (3e-4, 3e-3, 3e-2)
GRID_HEAD_LRS = (3e-3, 3e-2, 3e-1)

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def default_search_bests(
    seeds: Iterable[int] = (0, 1, 2),
    weights: str = "source",
    cache_dir: str | None = None,
    work: Path | None = None,
    extra_args: Sequence[str] = (),
    log: Log = _stderr,
) -> list[dict[str, Any]]:
    """Run the default search once per seed, each in its own process as a user runs it (W&B
    disabled, experiments in `work`, a temporary folder when None); per seed its best val_acc,
    the best trial's config and epoch, and the wall seconds of the whole process.

    `weights` "source" is the default; "none" trains from scratch. `extra_args` go to
    scripts/search.py as they are (other flags of the search to compare).
    """
    if cache_dir is None:
        from trainable.config import default_cache_dir

        cache_dir = default_cache_dir()
    if weights == "source":  # pretrained once, before the clocks start
        _pretrained(cache_dir, log)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        results = []
        for seed in seeds:
            name = f"quality-{weights if '/' not in weights else 'file'}-seed{seed}"
            command = [
                sys.executable, str(SEARCH_SCRIPT),
                "--space", "resnet_small",
                "--weights", weights,
                "--seed", str(seed),
                "--wandb", "disabled",
                "--name", name,
                "--storage-path", scratch,
                "--cache-dir", cache_dir,
                *extra_args,
            ]  # fmt: skip
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - began
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
            best = json.loads((Path(scratch) / name / "summary.json").read_text())["best"]
            results.append(
                {
                    "seed": seed,
                    "weights": weights,
                    "best_val_acc": best["val_acc"],
                    "config": best["config"],
                    "epoch": best["epoch"],
                    "wall_s": round(seconds, 1),
                }
            )
            log(f"  search --weights {weights} --seed {seed}: best val_acc {best['val_acc']:.3f}"
                f" ({_config_text(best['config'])}) in {seconds:.0f} s")  # fmt: skip
    return results


def _pretrained(cache_dir: str, log: Log) -> float:
    """Pretrain the source backbone into `cache_dir` unless it is there; the seconds spent."""
    from trainable.defaults import DEFAULT_BACKBONE, DIGITS_IMAGE_SIZE
    from trainable.pretrain import ensure_source_weights

    began = time.perf_counter()
    ensure_source_weights(DEFAULT_BACKBONE, "digits", DIGITS_IMAGE_SIZE, cache_dir, log=log)
    return time.perf_counter() - began


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in config.items()
    )


def grid_configs(
    depths: Iterable[int] = GRID_DEPTHS,
    backbone_lrs: Iterable[float] = GRID_BACKBONE_LRS,
    head_lrs: Iterable[float] = GRID_HEAD_LRS,
) -> list[dict[str, Any]]:
    """The grid's configs: a linear probe (depth 5) has no backbone_lr, so it has one config
    per head_lr."""
    backbone_lrs, head_lrs = tuple(backbone_lrs), tuple(head_lrs)
    configs = []
    for depth in depths:
        rates = (None,) if depth == 5 else backbone_lrs
        for backbone_lr, head_lr in itertools.product(rates, head_lrs):
            configs.append({"freeze_depth": depth, "backbone_lr": backbone_lr, "head_lr": head_lr})
    return configs


def grid_ceiling(
    configs: Sequence[dict[str, Any]] | None = None,
    seed: int = 0,
    weights: str = "source",
    cache_dir: str | None = None,
    num_threads: int = 1,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Train every config (default: `grid_configs()`) for the default max_epochs with
    trainable.loop.run_trial, on the data and split of `seed`, in this process; the best
    val_acc of each (its best epoch, as a search reports it; a diverged trial counts 0.2,
    chance), their max and median, and the max and median per freeze_depth."""
    import torch

    from trainable.config import TrialConfig
    from trainable.datasets import build_data
    from trainable.loop import DivergedError, run_trial
    from trainable.weights import load_weights

    torch.set_num_threads(num_threads)
    base = TrialConfig(weights=weights, seed=seed, num_threads=num_threads)
    if cache_dir is not None:
        base = TrialConfig.from_dict({**base.to_dict(), "cache_dir": cache_dir})
    if weights == "source":
        _pretrained(base.cache_dir, log)
    state = load_weights(weights, base.backbone, base.data, base.image_size, base.cache_dir)
    data = build_data(base)
    chance = 1 / len(data.classes)
    trials = []
    began = time.perf_counter()
    for params in configs if configs is not None else grid_configs():
        cfg = TrialConfig.from_dict({**base.to_dict(), **params})
        best = chance
        try:
            for result, _ in run_trial(cfg, data=data, backbone_state=state):
                best = result["best_val_acc"]
        except DivergedError:
            pass  # the best epoch before it diverged, or chance
        trials.append({**params, "best_val_acc": best})
        log(f"  grid {len(trials):3d}: {_config_text(params)}: {best:.3f}")
    accs = [t["best_val_acc"] for t in trials]
    per_depth = {}
    for depth in sorted({t["freeze_depth"] for t in trials}):
        at = [t["best_val_acc"] for t in trials if t["freeze_depth"] == depth]
        per_depth[depth] = {"max": max(at), "median": statistics.median(at), "configs": len(at)}
    best = max(trials, key=lambda t: t["best_val_acc"])
    return {
        "seed": seed,
        "weights": weights,
        "max_epochs": base.max_epochs,
        "configs": len(trials),
        "max": max(accs),
        "median": statistics.median(accs),
        "best": best,
        "per_depth": per_depth,
        "seconds": round(time.perf_counter() - began, 1),
        "trials": trials,
    }


def format_markdown(report: dict[str, Any]) -> str:
    """The quality tables of BENCHMARKS.md from `run_quality`'s report."""
    lines = []
    searches = report.get("searches", {})
    if searches:
        lines += ["| default search | " + " | ".join(f"seed {r['seed']}" for r in
                  next(iter(searches.values()))) + " | mean | wall s (median) |"]  # fmt: skip
        lines += ["| --- " * (len(next(iter(searches.values()))) + 3) + "|"]
        for weights, runs in searches.items():
            accs = [r["best_val_acc"] for r in runs]
            wall = statistics.median(r["wall_s"] for r in runs)
            cells = " | ".join(f"{a:.3f}" for a in accs)
            lines.append(f"| `--weights {weights}` | {cells} | {statistics.mean(accs):.3f} | "
                         f"{wall:.0f} |")  # fmt: skip
    grid = report.get("grid")
    if grid:
        lines += [
            "",
            f"Grid of {grid['configs']} configs, each trained {grid['max_epochs']} epochs "
            f"(seed {grid['seed']}, `--weights {grid['weights']}`): max {grid['max']:.3f} "
            f"({_config_text({k: v for k, v in grid['best'].items() if k != 'best_val_acc'})}), "
            f"median {grid['median']:.3f}.",
            "",
            "| `freeze_depth` | configs | best val_acc | median val_acc |",
            "| --- | --- | --- | --- |",
        ]
        for depth, row in grid["per_depth"].items():
            lines.append(f"| {depth} | {row['configs']} | {row['max']:.3f} | {row['median']:.3f} |")
    return "\n".join(lines)


def run_quality(
    seeds: Sequence[int] = (0, 1, 2),
    grid: bool = True,
    scratch: bool = True,
    cache_dir: str | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Every figure: the default search per seed with source weights and (`scratch`) from
    scratch, and (`grid`) the grid ceiling on seed 0's split."""
    from trainable.config import default_cache_dir

    cache_dir = cache_dir or default_cache_dir()
    report: dict[str, Any] = {"pretrain_s": round(_pretrained(cache_dir, log), 1)}
    report["searches"] = {"source": default_search_bests(seeds, "source", cache_dir, log=log)}
    if scratch:
        report["searches"]["none"] = default_search_bests(seeds, "none", cache_dir, log=log)
    if grid:
        report["grid"] = grid_ceiling(cache_dir=cache_dir, log=log)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-grid", action="store_true", help="skip the grid ceiling")
    parser.add_argument("--no-scratch", action="store_true", help="skip --weights none")
    parser.add_argument("--cache-dir", default="", help="pretrained-backbone cache")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    report = run_quality(args.seeds, not args.no_grid, not args.no_scratch, args.cache_dir or None)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
