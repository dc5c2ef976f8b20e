"""The GPU run (`scripts/benchmark.py --gpu --json PATH`): what a GPU user of the harness sees.

Fine-tuning throughput (all stages trained, bf16 autocast, channels-last, batch of the space)
through the harness's own trial code (trainable.loop.build_trial_model, build_optimizer,
train_seeded_epoch, fed by trainable.pipeline from a folder of 500x375 JPEGs with
augmentation), measured in processes of their own as Ray runs trials:

- one trial on the GPU (`--gpus-per-trial 1`) with every CPU's loader worker, and 2 or 4
  packed on it (`--gpus-per-trial 0.5`, `0.25`), the CPUs shared: aggregate images per second
  and the GPU's utilisation (nvidia-smi, sampled while they train);
- the ceiling: the same model fed from in-memory tensors, no decoding at all.

ResNet-50 at 224 px (the throughput NVIDIA's examples quote) and ResNet-18 (where packing
should pay: one small trial cannot fill a large GPU). Each trial trains warm-up epochs (worker
start, cuDNN's kernel choice) before the timed ones; packed trials start their timed epochs
together (a barrier file).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GPU_VARIANTS = {  # backbone: (batch size, packings measured): the spaces' batch sizes
    "resnet50": (32, (1, 2, 4)),
    "resnet18": (16, (1, 2)),
}
PER_CLASS = 512  # 4 classes: 2,048 JPEGs, ~1,950 training images


class NoGPU(Exception):
    """This machine has no GPU torch can use."""


def gpu_name() -> str:
    """The GPU's name; NoGPU when torch sees none."""
    import torch

    if not torch.cuda.is_available():
        raise NoGPU("--gpu needs a GPU, but torch sees none on this machine")
    return torch.cuda.get_device_name(0)


def train_rate(argv: list[str]) -> None:
    """One trial's training throughput, printed as JSON: images, seconds and the wall-clock
    window of its timed epochs. `argv`: the folder, backbone, batch size, loader workers,
    device, "1" to train from memory, image size, warm-up and timed epochs, and a barrier file
    to wait for before the timed epochs ("": none); see `measure_packing`."""
    folder, backbone, device, barrier = argv[0], argv[1], argv[4], argv[9]
    batch_size, workers, image_size, warmup, epochs = (int(argv[i]) for i in (2, 3, 6, 7, 8))
    in_memory = argv[5] == "1"
    import torch

    from trainable.config import TrialConfig
    from trainable.data import Split
    from trainable.datasets import build_data
    from trainable.loop import (
        build_optimizer,
        build_trial_model,
        train_seeded_epoch,
        trial_pipeline,
    )

    cfg = TrialConfig(
        backbone=backbone, freeze_depth=0, backbone_lr=1e-3, head_lr=1e-2, weights="none",
        data=f"imagefolder:{folder}", image_size=image_size, shots=0, val_fraction=0.05,
        batch_size=batch_size, loader_workers=workers, device=device, feature_cache=False,
        num_threads=1, max_epochs=warmup + epochs, cache_dir=str(Path(folder).parent / "cache"),
    )  # fmt: skip
    torch.set_num_threads(1)
    data = build_data(cfg)
    train = trial_pipeline(cfg, data).split("train")
    if in_memory:  # the ceiling: the same number of images, already decoded, in memory
        pixels = torch.stack([data.train.image(i) for i in range(min(256, len(data.train)))])
        reps = -(-len(data.train) // len(pixels))
        images = pixels.repeat(reps, 1, 1, 1)[: len(data.train)]
        train = Split(images.pin_memory() if device == "cuda" else images, data.train.labels)
    model = build_trial_model(cfg, len(data.classes)).to(device)
    amp = device == "cuda"
    if amp:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)

    def sync() -> None:
        if amp:
            torch.cuda.synchronize()

    for epoch in range(1, warmup + 1):
        train_seeded_epoch(model, optimizer, train, cfg, epoch, amp)
    sync()
    if barrier:
        Path(barrier + f".ready-{os.getpid()}").touch()
        while not Path(barrier).exists():
            time.sleep(0.01)
    began = time.time()
    for epoch in range(warmup + 1, warmup + epochs + 1):
        train_seeded_epoch(model, optimizer, train, cfg, epoch, amp)
    sync()
    ended = time.time()
    images = len(train) - len(train) % batch_size  # full batches only (trainable.data)
    print(json.dumps({"images": images * epochs, "began": began, "ended": ended}))


def _utilisation(stop: threading.Event, samples: list[float]) -> None:
    """GPU utilisation in %, sampled every 200 ms by nvidia-smi until `stop`."""
    query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-i", "0", "-lms", "200"]  # fmt: skip
    try:
        process = subprocess.Popen(query, stdout=subprocess.PIPE, text=True)
    except OSError:
        return
    assert process.stdout is not None
    while not stop.is_set():
        line = process.stdout.readline()
        if not line:
            break
        try:
            samples.append(float(line.strip()))
        except ValueError:
            continue
    process.terminate()


def measure_packing(
    folder: Path,
    backbone: str,
    batch_size: int,
    trials: int,
    device: str,
    in_memory: bool = False,
    image_size: int = 224,
    warmup: int = 1,
    epochs: int = 2,
    cpus: int | None = None,
) -> dict[str, Any]:
    """`trials` trials of `backbone` training at once on the device, each with an equal share
    of the CPUs as loader workers: aggregate images per second while all train, each trial's
    rate, and the GPU's mean utilisation meanwhile (None: nvidia-smi unavailable)."""
    cpus = cpus or os.cpu_count() or 1
    workers = 0 if in_memory else max(1, cpus // trials)
    with tempfile.TemporaryDirectory() as scratch:
        barrier = str(Path(scratch) / "go")
        code = "import sys; from benchmarks.gpu import train_rate; train_rate(sys.argv[1:])"
        args = [
            str(folder),
            backbone,
            str(batch_size),
            str(workers),
            device,
            "1" if in_memory else "",
            str(image_size),
            str(warmup),
            str(epochs),
            barrier,
        ]
        command = [sys.executable, "-c", code, *args]  # fmt: skip
        processes = [
            subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for _ in range(trials)
        ]
        while len(list(Path(scratch).glob("go.ready-*"))) < trials:
            if any(p.poll() not in (None, 0) for p in processes):
                break  # one failed: its error is reported below
            time.sleep(0.05)
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_utilisation, args=(stop, samples), daemon=True)
        if device == "cuda":
            sampler.start()
        Path(barrier).touch()
        outputs = [p.communicate() for p in processes]
        stop.set()
    runs = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"a {backbone} trial failed ({process.returncode}): {err[-1500:]}")
        runs.append(json.loads(out.strip().splitlines()[-1]))
    window = max(r["ended"] for r in runs) - min(r["began"] for r in runs)
    return {
        "img_s": round(sum(r["images"] for r in runs) / window, 1),
        "per_trial_img_s": [round(r["images"] / (r["ended"] - r["began"]), 1) for r in runs],
        "gpu_util": round(statistics.fmean(samples), 1) if samples else None,
        "loader_workers": workers,
    }


def run_gpu_benchmark(work: Path, log: Any = print) -> dict[str, Any]:
    """Every GPU figure, as one JSON-ready dict (NoGPU without a GPU)."""
    from benchmarks.costs import make_jpeg_folder

    report: dict[str, Any] = {"gpu": gpu_name(), "cpus": os.cpu_count()}
    log(f"GPU: {report['gpu']}; making {4 * PER_CLASS} JPEGs ...")
    folder = make_jpeg_folder(work / "photos", 4, PER_CLASS)
    # Every image decoded once here (the check trials read back from the cache, as a search's)
    from trainable.config import TrialConfig
    from trainable.datasets import build_data

    build_data(TrialConfig(data=f"imagefolder:{folder}", shots=0, cache_dir=str(work / "cache")))
    for backbone, (batch, packings) in GPU_VARIANTS.items():
        log(f"{backbone}: the in-memory ceiling ...")
        ceiling = measure_packing(folder, backbone, batch, 1, "cuda", in_memory=True)
        results: dict[str, Any] = {"batch_size": batch, "ceiling": ceiling, "packed": {}}
        for trials in packings:
            log(f"{backbone}: {trials} trial(s) on the GPU, fed from the JPEG folder ...")
            results["packed"][str(trials)] = measure_packing(folder, backbone, batch, trials,
                                                             "cuda")  # fmt: skip
        one = results["packed"]["1"]["img_s"]
        results["harness_vs_ceiling"] = round(one / ceiling["img_s"], 3)
        results["packing_gain"] = {
            n: round(r["img_s"] / one, 3) for n, r in results["packed"].items() if n != "1"
        }
        report[backbone] = results
    return report


def format_gpu_markdown(report: dict[str, Any]) -> str:
    """The BENCHMARKS.md table of a GPU report."""
    lines = [
        f"GPU: {report['gpu']}, {report['cpus']} CPUs",
        "",
        "| backbone | trials on the GPU | loader workers each | aggregate img/s "
        "| per trial img/s | GPU util % | / in-memory ceiling |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backbone in GPU_VARIANTS:
        results = report[backbone]
        ceiling = results["ceiling"]["img_s"]
        rows = [("ceiling (in memory)", results["ceiling"])]
        rows += [(trials, run) for trials, run in results["packed"].items()]
        for trials, run in rows:
            per = ", ".join(f"{rate:.0f}" for rate in run["per_trial_img_s"])
            util = "-" if run["gpu_util"] is None else f"{run['gpu_util']:.0f}"
            lines.append(
                f"| {backbone} | {trials} | {run['loader_workers']} | {run['img_s']:.0f} "
                f"| {per} | {util} | {run['img_s'] / ceiling:.2f} |"
            )
    return "\n".join(lines)
