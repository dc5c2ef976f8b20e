"""Does searching the backbone pay? `--backbones` over three families against each family
searched alone, at the same planned budget, on the embedded task and on an image folder.

Per task and seed, four searches run as a user runs them (scripts/search.py, one process each,
W&B disabled): `--backbones resnet18,mobilenet_v3_large,efficientnet_b0` (the pre-screen on)
and each family alone in its own registered space. All four have the same `--num-samples` and
`--max-epochs`, so the same planned trial-epochs; ASHA decides how many of them run
(summary.json's `budget.trial_epochs_run`). Reported per search: the best val_acc and its
backbone, the trial-epochs run, the wall seconds, and for `--backbones` the pre-screen's
seconds, its Kendall's tau against the trials' results, and the backbones it kept and dropped.

- digits (`--weights source`): each family is pretrained once on the digits source task into
  --cache-dir before the clocks start; its held-out source accuracy is reported.
- an image folder of coloured squares (tests/helpers.py's make_image_folder), `--weights
  imagenet` from RANDOM state dicts put where torch's hub cache keeps ImageNet weights (no
  download here): it measures the machinery (pre-screen time, tau, how the budget is split),
  not transfer.

    python scripts/benchmark.py --backbones                  # 3 + 1 seeds: about 17 minutes
    python -m benchmarks.backbones --seeds 0 --image-seeds   # one digits seed: ~4 minutes
    python -m benchmarks.backbones --num-samples 12 --max-epochs 6   # a smaller budget
    python -m benchmarks.backbones --json backbones.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEARCH_SCRIPT = ROOT / "scripts" / "search.py"
HELPERS = ROOT / "tests" / "helpers.py"

# Each family and the registered space made for it (spaces.registry.SPACES): a family searched
# alone uses its own space, as `--backbones` gives each candidate its own ranges.
FAMILIES = {
    "resnet18": "resnet_small",
    "mobilenet_v3_large": "mobilenet",
    "efficientnet_b0": "efficientnet",
}
MULTI = "backbones"  # the variant searching the backbone too
WALL_FILE = "benchmark_wall.json"  # beside a search's summary.json: the seconds its process took

# The image folder: 3 classes of 40 images, 8 of each for validation (--val-fraction 0.2),
# 40 px squares read at 32 px as digits are.
FOLDER_PER_CLASS = 40
FOLDER_SIZE = 40
FOLDER_IMAGE_SIZE = 32

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def variants(families: Sequence[str] = tuple(FAMILIES)) -> dict[str, list[str]]:
    """The searches compared, by name: `--backbones` over `families`, then each alone."""
    runs = {MULTI: ["--backbones", ",".join(families)]}
    for family in families:
        runs[family] = ["--space", FAMILIES[family]]
    return runs


def search_result(summary: Mapping[str, Any], wall_s: float) -> dict[str, Any]:
    """What the comparison reads from one search's summary.json."""
    best = summary["best"] or {}
    config = best.get("config", {})
    fixed = summary["fixed"].get("backbone")  # one family: no trial's config names it
    per_backbone: dict[str, int] = {}
    for trial in summary["trials"]:
        name = trial["config"].get("backbone", fixed)
        per_backbone[name] = per_backbone.get(name, 0) + trial["epochs"]
    screen = summary.get("prescreen")
    return {
        "best_val_acc": best.get("val_acc"),
        "backbone": config.get("backbone", fixed),
        "config": config,
        "trials": len(summary["trials"]),
        "trial_epochs_run": summary["budget"]["trial_epochs_run"],
        "trial_epochs_planned": summary["budget"]["num_samples"] * summary["budget"]["max_epochs"],
        "epochs_per_backbone": per_backbone,
        "wall_s": round(wall_s, 1),
        "prescreen": None
        if not screen
        else {
            "seconds": screen["seconds"],
            "kendall_tau": screen["kendall_tau"],
            "pairs_compared": screen["pairs_compared"],
            "kept": screen["kept"],
            "dropped": sorted(screen["dropped"]),
            "warm_start": screen["warm_start"],
        },
    }


def run_search(
    name: str,
    flags: Sequence[str],
    storage: Path,
    cache_dir: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One search in its own process; its `search_result`. A search `storage` already holds
    (a rerun with the same --work) is read, not run again."""
    done_file = storage / name / WALL_FILE
    if done_file.exists():
        summary = json.loads((storage / name / "summary.json").read_text())
        return search_result(summary, json.loads(done_file.read_text())["wall_s"])
    command = [
        sys.executable, str(SEARCH_SCRIPT),
        *flags,
        "--wandb", "disabled",
        "--name", name,
        "--storage-path", str(storage),
        "--cache-dir", cache_dir,
    ]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-3000:]}")
    (storage / name / "stdout.txt").write_text(done.stdout)
    done_file.write_text(json.dumps({"wall_s": round(seconds, 1)}) + "\n")
    summary = json.loads((storage / name / "summary.json").read_text())
    return search_result(summary, seconds)


def compare(
    task: str,
    task_flags: Sequence[str],
    seeds: Iterable[int],
    storage: Path,
    cache_dir: str,
    families: Sequence[str] = tuple(FAMILIES),
    env: Mapping[str, str] | None = None,
    log: Log = _stderr,
) -> list[dict[str, Any]]:
    """Per seed, every variant's search on the task given by `task_flags`."""
    rows = []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed, "searches": {}}
        for variant, flags in variants(families).items():
            name = f"{task}-{variant}-seed{seed}"
            result = run_search(name, [*task_flags, *flags, "--seed", str(seed)], storage,
                                cache_dir, env)  # fmt: skip
            row["searches"][variant] = result
            log(f"  {name}: best val_acc {result['best_val_acc']:.3f} ({result['backbone']}), "
                f"{result['trial_epochs_run']} trial-epochs, {result['wall_s']:.0f} s")  # fmt: skip
        rows.append(row)
    return rows


def pretrain_families(
    families: Iterable[str], cache_dir: str, image_size: int, log: Log = _stderr
) -> dict[str, dict[str, Any]]:
    """Each family pretrained on the digits source task into `cache_dir` unless cached: its
    held-out source accuracy and the seconds spent (None when it was cached)."""
    import torch

    from trainable.pretrain import ensure_source_weights, source_weights_path

    report = {}
    for family in families:
        cached = source_weights_path(family, "digits", image_size, cache_dir).exists()
        began = time.perf_counter()
        path = ensure_source_weights(family, "digits", image_size, cache_dir, log=log)
        seconds = None if cached else round(time.perf_counter() - began, 1)
        acc = torch.load(path, weights_only=True)["source_acc"]
        report[family] = {"source_acc": round(float(acc), 4), "pretrain_s": seconds}
    return report


def put_random_imagenet_weights(torch_home: Path, families: Iterable[str], seed: int = 0) -> None:
    """A randomly initialised 1000-class state dict of each family, saved where torchvision
    keeps its ImageNet weights under `torch_home` (trainable.catalog.hub_weights_file)."""
    import torch

    from trainable.backbones import build_model
    from trainable.catalog import get_backbone

    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for family in families:
        torch.manual_seed(seed)
        state = build_model(family, 1000).state_dict()
        torch.save(state, checkpoints / get_backbone(family).imagenet_file)


def make_image_folder(root: Path, seed: int = 0) -> Path:
    """The test suite's image folder of coloured squares (tests/helpers.py), imported by path:
    the tests are not a package."""
    spec = importlib.util.spec_from_file_location("transfer_tune_test_helpers", HELPERS)
    helpers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = helpers  # its dataclasses look their module up there
    spec.loader.exec_module(helpers)
    return helpers.make_image_folder(root, FOLDER_PER_CLASS, FOLDER_SIZE, seed)


def run_backbones(
    seeds: Sequence[int] = (0, 1, 2),
    image_seeds: Sequence[int] = (0,),
    num_samples: int | None = None,
    max_epochs: int | None = None,
    cache_dir: str | None = None,
    work: Path | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Every figure: the families' source pretraining, then the comparison on digits (`seeds`)
    and on the image folder (`image_seeds`), each search with `num_samples` trials of up to
    `max_epochs` (None: the search's defaults). Searches are kept in `work` when given."""
    from trainable.config import default_cache_dir
    from trainable.defaults import DIGITS_IMAGE_SIZE, default

    cache_dir = cache_dir or default_cache_dir()
    num_samples = num_samples or default("num_samples")
    max_epochs = max_epochs or default("max_epochs")
    budget = ["--num-samples", str(num_samples), "--max-epochs", str(max_epochs)]
    report: dict[str, Any] = {
        "families": list(FAMILIES),
        "num_samples": num_samples,
        "max_epochs": max_epochs,
        "cpus": os.cpu_count(),
        "pretrain": pretrain_families(FAMILIES, cache_dir, DIGITS_IMAGE_SIZE, log),
    }
    began = time.perf_counter()
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        storage = Path(work or scratch)
        if seeds:
            task = f"digits-{num_samples}x{max_epochs}"
            report["digits"] = compare(task, budget, seeds, storage, cache_dir, log=log)
        if image_seeds:
            torch_home = Path(scratch) / "torch"
            put_random_imagenet_weights(torch_home, FAMILIES)
            folder = make_image_folder(Path(scratch) / "squares")
            flags = [
                "--data", f"imagefolder:{folder}",
                "--weights", "imagenet",
                "--image-size", str(FOLDER_IMAGE_SIZE),
                *budget,
            ]  # fmt: skip
            home = {"TORCH_HOME": str(torch_home)}
            task = f"imagefolder-{num_samples}x{max_epochs}"
            report["imagefolder"] = compare(
                task, flags, image_seeds, storage, cache_dir, env=home, log=log
            )
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def _acc(value: float | None) -> str:
    return _number(value, "{:.3f}")


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def seed_table(rows: Sequence[dict[str, Any]], families: Sequence[str]) -> list[str]:
    """Per seed: the best val_acc of `--backbones` (and its backbone) and of each family
    alone, then the pre-screen's seconds, tau (pairs), and what it dropped; a mean row."""
    short = {f: f.split("_")[0] for f in families}
    head = ["seed", "`--backbones` best (backbone)", *(f"{f} alone" for f in families),
            "pre-screen s", "tau (pairs)", "dropped"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        multi = row["searches"][MULTI]
        screen = multi["prescreen"] or {}
        tau = screen.get("kendall_tau")
        cells = [
            str(row["seed"]),
            f"{_acc(multi['best_val_acc'])} ({short.get(multi['backbone'], multi['backbone'])})",
            *(_acc(row["searches"][f]["best_val_acc"]) for f in families),
            f"{screen['seconds']:.1f}" if screen else "-",
            f"{tau:+.2f} ({screen['pairs_compared']})" if tau is not None else "-",
            ", ".join(short[d] for d in screen.get("dropped", [])) or "none",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    screens = [r["searches"][MULTI]["prescreen"] or {} for r in rows]
    means = [
        "mean",
        _acc(_mean(r["searches"][MULTI]["best_val_acc"] for r in rows)),
        *(_acc(_mean(r["searches"][f]["best_val_acc"] for r in rows)) for f in families),
        _number(_mean(screen.get("seconds") for screen in screens), "{:.1f}"),
        _number(_mean(screen.get("kendall_tau") for screen in screens), "{:+.2f}"),
        "",
    ]
    lines.append("| " + " | ".join(means) + " |")
    return lines


def cost_table(rows: Sequence[dict[str, Any]], families: Sequence[str]) -> list[str]:
    """Per variant: trial-epochs planned and run (mean), wall seconds (median), and for
    `--backbones` how its trial-epochs split among the families (summed over seeds)."""
    lines = ["| search | trial-epochs planned | run (mean) | wall s (median) | epochs by family |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for variant in (MULTI, *families):
        runs = [r["searches"][variant] for r in rows]
        split: dict[str, int] = {}
        for run in runs:
            for name, epochs in run["epochs_per_backbone"].items():
                split[name] = split.get(name, 0) + epochs
        text = ", ".join(f"{name} {n}" for name, n in sorted(split.items(), key=lambda i: -i[1]))
        label = "`--backbones`" if variant == MULTI else f"{variant} alone"
        lines.append(
            f"| {label} | {runs[0]['trial_epochs_planned']} | "
            f"{statistics.fmean(r['trial_epochs_run'] for r in runs):.1f} | "
            f"{statistics.median(r['wall_s'] for r in runs):.0f} | "
            f"{text if variant == MULTI else '-'} |"
        )
    return lines


def format_markdown(report: dict[str, Any]) -> str:
    """The tables of BENCHMARKS.md's backbone-search section from `run_backbones`' report."""
    families = report["families"]
    lines = ["| family | source held-out acc (digits 0-4) | pretrain s |", "| --- | --- | --- |"]
    for family, row in report["pretrain"].items():
        seconds = "cached" if row["pretrain_s"] is None else f"{row['pretrain_s']:.0f}"
        lines.append(f"| {family} | {row['source_acc']:.3f} | {seconds} |")
    for task, title in (("digits", "digits, `--weights source`"),
                        ("imagefolder", "image folder, random `imagenet` weights")):  # fmt: skip
        rows = report.get(task)
        if not rows:
            continue
        lines += ["", f"{title}: best val_acc", "", *seed_table(rows, families)]
        lines += ["", f"{title}: cost", "", *cost_table(rows, families)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="digits seeds")
    parser.add_argument("--image-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--num-samples", type=int, default=None, help="default: the search's")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the search's")
    parser.add_argument("--cache-dir", default="", help="pretrained-backbone cache")
    parser.add_argument("--work", default="", help="keep the searches here")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    report = run_backbones(
        args.seeds,
        args.image_seeds,
        args.num_samples,
        args.max_epochs,
        args.cache_dir or None,
        Path(args.work) if args.work else None,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
