"""What the harness itself costs a trial: checkpoint bytes, the input pipeline's images per
second, the frozen-feature cache on augmented photos, and the command line's start.

- `checkpoint_bytes`: one ResNet-18 checkpoint (digits, source weights, after epoch 1 of 9,
  momentum included) per `freeze_depth`, next to what a whole-model checkpoint (model and
  optimizer state, as the harness wrote before lean checkpoints) of the same trial takes.
- `input_pipeline_img_s`: images per second the trial's pipeline delivers at 224 px from a
  folder of 500x375 JPEGs with augmentation, in a process pinned to 1 or 2 CPUs: in the trial's
  own process (`inproc_1cpu`, the path before loader workers), and with the workers a trial
  of 1 or 2 CPUs gets (`workers_1cpu`, `workers_2cpu`). Steady state: the first pass, which
  starts the workers, is not timed.
- `augmented_cache_speedup`: per `freeze_depth`, the median epoch time of a ResNet-18 trial on
  that folder (augmentation on, random weights, one thread) recomputing its frozen stages over
  a second trial with the same prefix that reads the views the first one cached.
- `help_seconds`: the wall time of `scripts/search.py --help`, median of 3.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PHOTO_SIZE = (500, 375)  # width, height: a typical photo data set's (Pets, VOC)
PIPELINE_BATCH = 32


def make_jpeg_folder(root: Path, classes: int, per_class: int) -> Path:
    """ROOT/<class>/<n>.jpg: 500x375 JPEGs (quality 90) of smooth random scenes with noise,
    about the size and decoding cost of real photos, and a class-coloured square."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = PHOTO_SIZE
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for n in range(per_class):
            coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
            scene = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), float)
            scene += rng.normal(0, 12, scene.shape)
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            scene[top : top + height // 3, left : left + width // 3] = colour
            pixels = np.clip(scene, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{n:03d}.jpg", quality=90)
    return root


def _photo_config(folder: Path, cache: str, **changes: Any) -> Any:
    from trainable.config import TrialConfig

    recipe = {"data": f"imagefolder:{folder}", "image_size": 224, "shots": 0,
              "augment": True, "weights": "none", "cache_dir": cache}  # fmt: skip
    return TrialConfig(**{**recipe, **changes})


def checkpoint_bytes(cache_dir: str, work: Path) -> dict[str, Any]:
    """Bytes of a lean checkpoint per freeze depth, and of the whole-model one it replaces."""
    import torch

    from trainable.checkpoint import save_checkpoint
    from trainable.config import TrialConfig
    from trainable.datasets import build_data
    from trainable.loop import build_trial_model, run_trial

    lean, whole = {}, {}
    data = build_data(TrialConfig(cache_dir=cache_dir))
    for depth in range(6):
        cfg = TrialConfig(freeze_depth=depth, backbone_lr=None if depth == 5 else 3e-3,
                          head_lr=3e-2, cache_dir=cache_dir)  # fmt: skip
        _, state = next(run_trial(cfg, data=data))
        path = work / f"depth{depth}.pt"
        save_checkpoint(path, state)
        lean[str(depth)] = path.stat().st_size
        # The whole model with the same optimizer state: what a checkpoint held before.
        model = build_trial_model(cfg, len(data.classes))
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "optimizer": state["optimizer"]}, buffer)
        whole[str(depth)] = len(buffer.getvalue())
    return {"checkpoint_bytes": lean, "checkpoint_bytes_whole": whole}


def folder_mb(folder: Path) -> float:
    """The size of everything below `folder`, in MB."""
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6, 1)


def pipeline_rate(folder: str, cache: str, workers: int, cpus: int, passes: int) -> None:
    """Prints images per second the pipeline delivers for the folder's training images, in
    this process pinned to its first `cpus` CPUs (run by `input_pipeline_rates`)."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cpus])
    import torch

    from trainable.datasets import build_data
    from trainable.loop import trial_pipeline

    torch.set_num_threads(1)
    cfg = _photo_config(Path(folder), cache, loader_workers=workers)
    data = build_data(cfg)
    pipeline = trial_pipeline(cfg, data)
    train = pipeline.split("train")
    seconds = []
    for epoch in range(passes + 1):  # the first pass starts the workers: not timed
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(epoch)
        images = sum(len(labels) for _, labels in train.batches(PIPELINE_BATCH, generator, epoch))
        if epoch:
            seconds.append(time.perf_counter() - began)
    print(json.dumps({"img_s": images / statistics.median(seconds)}))


def input_pipeline_rates(folder: Path, cache: str, passes: int, repeats: int) -> dict[str, Any]:
    """`input_pipeline_img_s`, each variant in its own pinned process, alternated."""
    variants = {"inproc_1cpu": (0, 1), "workers_1cpu": (1, 1), "workers_2cpu": (2, 2)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            workers, cpus = variants[name]
            code = (
                "import sys; from benchmarks.costs import pipeline_rate; "
                "pipeline_rate(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]))"
            )
            command = [sys.executable, "-c", code, str(folder), cache, str(workers), str(cpus),
                       str(passes)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
            rates[name].append(json.loads(done.stdout.strip().splitlines()[-1])["img_s"])
    return {
        "input_pipeline_img_s": {n: round(statistics.median(r), 1) for n, r in rates.items()},
        "input_pipeline_runs": rates,
    }


def augmented_cache_speedup(
    folder: Path, depths: list[int], epochs: int, cache: str
) -> dict[str, Any]:
    """Per depth: median uncached epoch seconds over the median epoch seconds of a trial that
    reads the views a first trial with the same prefix cached; and that first trial's extra
    time (building the views)."""
    import torch

    from trainable import metrics
    from trainable.datasets import build_data
    from trainable.loop import run_trial

    torch.set_num_threads(1)
    speedup, seconds, build = {}, {}, {}
    for depth in depths:
        probe = depth == 5  # every stage frozen: no backbone learning rate
        base = _photo_config(folder, cache, freeze_depth=depth, max_epochs=epochs,
                             backbone_lr=None if probe else 3e-3, head_lr=3e-2)  # fmt: skip
        data = build_data(base)

        def epoch_seconds(cfg: Any, data: Any = data) -> list[float]:
            return [r[metrics.EPOCH_SECONDS] for r, _ in run_trial(cfg, data=data)]

        uncached = epoch_seconds(base.__class__(**{**base.to_dict(), "feature_cache": False}))
        first = epoch_seconds(base)  # builds the views of its epochs
        other = base.__class__(**{**base.to_dict(), "head_lr": 1e-2})  # the same prefix
        cached = epoch_seconds(other)
        speedup[str(depth)] = round(statistics.median(uncached) / statistics.median(cached), 1)
        seconds[str(depth)] = {
            "uncached": round(statistics.median(uncached), 4),
            "cached": round(statistics.median(cached), 4),
        }
        build[str(depth)] = round(sum(first) - sum(cached), 2)
    return {
        "augmented_cache_speedup": speedup,
        "augmented_cache_epoch_seconds": seconds,
        "augmented_cache_build_seconds": build,
    }


def help_seconds(repeats: int = 3) -> float:
    """Median wall time of `scripts/search.py --help`, a process each."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "search.py"), "--help"],
                       capture_output=True, check=True)  # fmt: skip
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3)
