"""The fault matrix: drive the real CLI through kills, signals and storage faults, then check
what each left. Prints a table: fault, exit code, epochs lost, epochs run twice, whether the
study and summary.json agree with the trials, and notes.

    python scripts/chaos.py                  # every fault (about 20 minutes on 2 CPU cores)
    python scripts/chaos.py --only kill      # the faults whose name contains "kill"
    python scripts/chaos.py --list

Each fault runs a small search of its own (4 trials of 4 epochs, 2 at a time, on the embedded
digits, without the frozen-feature cache so that epochs take a moment), strikes it, continues it
with --resume where that is the way forward, and checks the experiment:
    lost     epochs logged (in the experiment's result.json) when the fault struck that are
             missing at the end, plus gaps in a trial's epochs
    twice    epochs with more than one row in a trial's result.json
    agree    summary.json holds --num-samples trials, one per trial folder; the Optuna study
             holds one trial per Tune trial, COMPLETE, PRUNED or FAIL by how far it got;
             summary.json's epochs are the trial's logged epochs; nothing 'interrupted'
The results are in docs/reliability.md. Needs no GPU; the full-volume fault needs root (a small
tmpfs) and is skipped without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEARCH = [sys.executable, str(ROOT / "scripts" / "search.py")]
SAMPLES, EPOCHS = 4, 4
CANARY = "chaos" + "0123456789abcdef" * 2 + "wandbkey"


def base_flags(name: str, storage: Path, seed: int) -> list[str]:
    return [
        "--space", "resnet_small", "--num-samples", str(SAMPLES), "--max-epochs", str(EPOCHS),
        "--grace-period", "1", "--reduction-factor", "2", "--max-concurrent", "2",
        "--no-feature-cache", "--shots", "100", "--seed", str(seed), "--wandb", "offline",
        "--name", name, "--storage-path", str(storage),
    ]  # fmt: skip


def resume_flags(name: str, storage: Path) -> list[str]:
    return ["--resume", "--name", name, "--storage-path", str(storage)]


@dataclass
class Row:
    fault: str
    exit: str
    lost: int | None = None
    twice: int | None = None
    agree: bool | None = None
    seconds: float | None = None  # from the signal to the exit, where that is the point
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        def show(value: object) -> str:
            if value is None:
                return "-"
            if isinstance(value, bool):
                return "yes" if value else "NO"
            return str(value)

        seconds = f"{self.seconds:.1f}" if self.seconds is not None else "-"
        return [self.fault, self.exit, show(self.lost), show(self.twice), show(self.agree),
                seconds, "; ".join(self.notes)]  # fmt: skip


class Driver:
    """scripts/search.py in a session (process group) of its own, its output read as it comes."""

    def __init__(self, flags: list[str], work: Path, env: dict[str, str]) -> None:
        self.began = time.monotonic()
        self.process = subprocess.Popen(
            [*SEARCH, *flags], cwd=work, env=env, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_line(self, pattern: str, timeout: float = 300) -> float | None:
        """The time the first line matching `pattern` came; None when the driver ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in list(self.lines):
                if re.search(pattern, line):
                    return when
            if self.process.poll() is not None and not self._reader.is_alive():
                return None
            time.sleep(0.02)
        return None

    def wait(self, timeout: float = 600) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            code = self.process.wait()
        self._reader.join(10)
        return code

    def kill_driver(self) -> None:
        """SIGKILL the driver alone; the rest of its group (Ray's processes, the trials) gets
        15 s to notice and end, then is killed too."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.group_alive():
            time.sleep(0.2)
        self.kill_all()

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Lab:
    """A work folder, a Ray temporary folder per run, and the environment of the runs."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.storage = work / "runs"
        self.ray_dirs: list[Path] = []

    def env(self, **extra: str) -> dict[str, str]:
        ray_dir = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # Ray's sockets: short paths
        self.ray_dirs.append(ray_dir)
        return {
            **os.environ, "RAY_ADDRESS": "local", "WANDB_MODE": "", "RAY_TMPDIR": str(ray_dir),
            # this checkout's code, also where another one is installed
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "WANDB_API_KEY": CANARY, **extra,
        }  # fmt: skip

    def start(self, flags: list[str], **extra: str) -> Driver:
        return Driver(flags, self.work, self.env(**extra))

    def run(self, flags: list[str], **extra: str) -> tuple[int, str]:
        driver = self.start(flags, **extra)
        return driver.wait(), driver.output

    def until_epochs(self, flags: list[str], name: str, epochs: int) -> tuple[Driver, bool]:
        """Start the CLI with `flags`; return once its driver has logged `epochs` epoch rows of
        experiment `name` (in its Ray staging copy): the driver, and whether it got there
        before it ended."""
        driver = self.start(flags)
        ray_dir = self.ray_dirs[-1]
        return driver, wait_for(lambda: staged_epochs(ray_dir, name) >= epochs, driver)

    def clean(self) -> None:
        for folder in self.ray_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self.ray_dirs.clear()


# --- what an experiment holds -------------------------------------------------------------


def trial_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("train_transfer_*") if p.is_dir())


def logged_epochs(root: Path) -> dict[str, list[int]]:
    """Each trial folder's epochs in its result.json, in order (a cut-off line is skipped)."""
    epochs: dict[str, list[int]] = {}
    for folder in trial_folders(root):
        rows = []
        result = folder / "result.json"
        if result.is_file():
            for line in result.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    rows.append(int(json.loads(line)["epoch"]))
        epochs[folder.name] = rows
    return epochs


def staged_epochs(ray_dir: Path, name: str) -> int:
    """Rows the driver has logged so far, in its staging copy of the experiment (Ray writes
    result.json there first, and copies it into the experiment at its next state save)."""
    return sum(len(path.read_text().splitlines()) for path in staged_results(ray_dir, name))


def staged_results(ray_dir: Path, name: str) -> list[Path]:
    return list(ray_dir.glob(f"ray/session_*/artifacts/*/{name}/driver_artifacts/*/result.json"))


def study_trials(root: Path, name: str) -> list[tuple[str, str | None]]:
    """(state, tune trial id) of each trial of the experiment's study, read with sqlite3."""
    with contextlib.closing(sqlite3.connect(root / "optuna.db")) as db:
        rows = db.execute(
            "SELECT t.state, a.value_json FROM trials t JOIN studies s USING (study_id) "
            "LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
            "AND a.key = 'tune_trial_id' WHERE s.study_name = ? ORDER BY t.number",
            (name,),
        ).fetchall()
    return [(state, json.loads(value) if value else None) for state, value in rows]


def check(root: Path, name: str, before: dict[str, list[int]], row: Row, output: str = "") -> None:
    """Fill row.lost, row.twice and row.agree from what the experiment holds now, and the
    console `output` of the run that finished it."""
    after = logged_epochs(root)
    lost = twice = 0
    for folder, epochs in after.items():
        counts = Counter(epochs)
        twice += sum(n - 1 for n in counts.values())
        lost += len(set(range(1, max(epochs, default=0) + 1)) - set(epochs))  # gaps
        lost += len(set(before.get(folder, [])) - set(epochs))
    lost += sum(len(set(e)) for f, e in before.items() if f not in after)  # a folder gone
    row.lost, row.twice = lost, twice
    problems = []
    summary_file = root / "summary.json"
    if not summary_file.is_file():
        row.agree = False
        row.notes.append("no summary.json")
        return
    summary = json.loads(summary_file.read_text())
    trials = summary["trials"]
    if len(trials) != SAMPLES:
        problems.append(f"{len(trials)} trials in summary.json")
    paths = {t["path"] for t in trials}
    orphans = sorted(set(after) - paths)
    if orphans:
        problems.append(f"trial folders not in summary.json: {orphans}")
    study = study_trials(root, name)
    if len(study) != SAMPLES:
        states = Counter(state for state, _ in study)
        problems.append(f"study holds {len(study)} trials ({dict(states)})")
    by_id = {trial_id: state for state, trial_id in study}
    for trial in trials:
        epochs = after.get(trial["path"], [])
        if trial["stop_reason"] == "interrupted":
            problems.append(f"{trial['trial_id']} interrupted")
        if trial["epochs"] != max(epochs, default=0):
            problems.append(f"{trial['trial_id']}: summary says {trial['epochs']} epochs, "
                            f"result.json {max(epochs, default=0)}")  # fmt: skip
        wanted = (
            "FAIL" if trial["status"] == "ERROR"
            else "COMPLETE" if trial["epochs"] >= EPOCHS else "PRUNED"
        )  # fmt: skip
        if by_id.get(trial["trial_id"]) != wanted:
            problems.append(
                f"{trial['trial_id']}: study {by_id.get(trial['trial_id'])}, expected {wanted}"
            )
        if trial["status"] == "ERROR":
            problems.append(f"{trial['trial_id']} error: {trial.get('error', '')[:80]}")
    said = {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"\((\w+)\) (?:completed|stopped by ASHA) after (\d+)/", output)
    }
    for trial in trials:
        if trial["trial_id"] in said and said[trial["trial_id"]] != trial["epochs"]:
            problems.append(f"console: {trial['trial_id']} after {said[trial['trial_id']]} epochs")
    row.agree = not problems
    row.notes.extend(problems)


def resume_and_check(lab: Lab, name: str, row: Row, before: dict[str, list[int]]) -> None:
    code, output = lab.run(resume_flags(name, lab.storage))
    if code != 0:
        row.notes.append(f"--resume exit {code}: {last_line(output)}")
    if tracebacks(output):
        row.notes.append(f"--resume printed {tracebacks(output)} tracebacks")
    check(lab.storage / name, name, before, row, output)


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def tracebacks(output: str) -> int:
    return output.count("Traceback (most recent call last)")


# --- the faults ---------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], driver: Driver, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if driver.process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def kill_fault(label: str, trigger: str, amount: float, seed: int) -> Callable[[Lab], Row]:
    """SIGKILL the driver at a moment, then --resume to the end.

    trigger "time": `amount` seconds after the first trial started (mid-epoch, mostly);
    "rows": as the driver logs its `amount`-th epoch row (in its staging copy);
    "checkpoint": as the `amount`-th checkpoint folder appears in the experiment;
    "state": as the experiment's state file is replaced for the `amount`-th time.
    """

    def fault(lab: Lab) -> Row:
        name = f"kill-{seed}"
        root = lab.storage / name
        row = Row(f"SIGKILL driver, {label}", "")
        driver = lab.start(base_flags(name, lab.storage, seed))
        ray_dir = lab.ray_dirs[-1]
        started = driver.wait_line(r"trial +1/\d+ .* started")
        if started is None:
            row.exit = f"{driver.wait()} before the first trial"
            row.notes.append(last_line(driver.output))
            return row
        if trigger == "time":
            hit = wait_for(lambda: time.monotonic() >= started + amount, driver)
        elif trigger == "rows":
            hit = wait_for(lambda: staged_epochs(ray_dir, name) >= amount, driver)
        elif trigger == "checkpoint":
            hit = wait_for(lambda: len(list(root.glob("*/checkpoint_*"))) >= amount, driver)
        else:
            seen: set[float] = set()

            def saved() -> bool:
                for state in root.glob("experiment_state-*.json"):
                    with contextlib.suppress(OSError):
                        seen.add(state.stat().st_mtime)
                return len(seen) >= amount

            hit = wait_for(saved, driver)
        if not hit:
            row.exit = f"{driver.wait()} (ended before the kill)"
            return row
        driver.kill_driver()
        row.exit = "killed"
        before = logged_epochs(root)
        row.notes.append(f"{sum(map(len, before.values()))} epochs logged at the kill")
        resume_and_check(lab, name, row, before)
        return row

    return fault


def kill_during_resume(lab: Lab) -> Row:
    """SIGKILL the driver twice: mid-search, then mid-resume; a second --resume finishes."""
    name = "kill-twice"
    root = lab.storage / name
    row = Row("SIGKILL driver, then again during --resume", "killed")
    driver, hit = lab.until_epochs(base_flags(name, lab.storage, 11), name, 3)
    if not hit:
        row.exit = f"{driver.wait()} (ended before the kill)"
        return row
    driver.kill_driver()
    before = logged_epochs(root)
    driver, hit = lab.until_epochs(resume_flags(name, lab.storage), name, 2)
    if not hit:
        row.notes.append(f"resume ended first: exit {driver.wait()}")
    driver.kill_driver()
    for folder, epochs in logged_epochs(root).items():
        before[folder] = sorted(set(before.get(folder, [])) | set(epochs))
    resume_and_check(lab, name, row, before)
    return row


def sigterm_group(lab: Lab) -> Row:
    """SIGTERM to the whole process group mid-search (timeout, Slurm, Kubernetes)."""
    name = "sigterm-group"
    root = lab.storage / name
    row = Row("SIGTERM to the process group, mid-search", "")
    driver, hit = lab.until_epochs(base_flags(name, lab.storage, 12), name, 3)
    if not hit:
        row.exit = f"{driver.wait()} (ended before the signal)"
        return row
    sent = time.monotonic()
    os.killpg(driver.process.pid, signal.SIGTERM)
    code = driver.wait(120)
    row.seconds = time.monotonic() - sent
    row.exit = str(code)
    output = driver.output
    if "--resume" not in output:
        row.notes.append("no resume line")
    if tracebacks(output):
        row.notes.append(f"{tracebacks(output)} tracebacks")
    driver.kill_all()
    before = logged_epochs(root)
    resume_and_check(lab, name, row, before)
    return row


def sigterm_before_trials(lab: Lab) -> Row:
    """SIGTERM to the process group while the search prepares (before its first trial)."""
    name = "sigterm-early"
    row = Row("SIGTERM to the process group, before the first trial", "")
    driver = lab.start(base_flags(name, lab.storage, 13))
    driver.wait_line(r"^Data ", timeout=120)
    sent = time.monotonic()
    os.killpg(driver.process.pid, signal.SIGTERM)
    code = driver.wait(120)
    row.seconds = time.monotonic() - sent
    row.exit = str(code)
    driver.kill_all()
    output = driver.output.strip().splitlines()
    if tracebacks(driver.output):
        row.notes.append(f"{tracebacks(driver.output)} tracebacks")
    row.notes.append(f"said: {output[-1][:120] if output else ''}")
    root = lab.storage / name
    if root.exists():  # what it left must be resumable, or a new search of the name must run
        code, _ = lab.run(resume_flags(name, lab.storage))
        row.notes.append(f"left a folder; --resume exit {code}")
        if code == 0:
            check(root, name, {}, row)
    else:
        code, _ = lab.run(base_flags(name, lab.storage, 13))
        row.notes.append(f"left nothing; the same name ran again: exit {code}")
        if code == 0:
            check(root, name, {}, row)
    return row


def interrupt_on_last_epoch(reported: int) -> Callable[[Lab], Row]:
    """Ctrl-C (SIGINT to the driver) as a trial reports epoch `reported`, then --resume:
    EPOCHS - 1 lands during the last epoch, EPOCHS as it reports."""

    def fault(lab: Lab) -> Row:
        name = f"ctrl-c-{reported}"
        root = lab.storage / name
        row = Row(f"Ctrl-C as a trial reports epoch {reported} of {EPOCHS}", "")
        driver = lab.start([*base_flags(name, lab.storage, 14), "--max-concurrent", "1"])
        ray_dir = lab.ray_dirs[-1]

        def logged() -> bool:
            for path in staged_results(ray_dir, name):
                with contextlib.suppress(OSError):
                    if f'"epoch": {reported},' in path.read_text():
                        return True
            return False

        if not wait_for(logged, driver):
            row.exit = f"{driver.wait()} (no trial reached epoch {reported})"
            return row
        driver.process.send_signal(signal.SIGINT)
        row.exit = str(driver.wait(120))
        driver.kill_all()
        before = logged_epochs(root)
        resume_and_check(lab, name, row, before)
        return row

    return fault


def truncated_checkpoint(newest: bool) -> Callable[[Lab], Row]:
    """SIGKILL mid-search, then cut checkpoint files to 100 bytes: every trial's newest (the
    one its state resumes from), or all but the newest."""

    def fault(lab: Lab) -> Row:
        name = "truncated-newest" if newest else "truncated-older"
        root = lab.storage / name
        which = "each trial's newest checkpoint" if newest else "all but the newest checkpoints"
        row = Row(f"Truncated {which} after a SIGKILL", "killed")
        driver, _ = lab.until_epochs(base_flags(name, lab.storage, 15), name, 5)
        driver.kill_driver()
        cut = 0
        for folder in trial_folders(root):
            checkpoints = sorted(folder.glob("checkpoint_*"))
            for checkpoint in checkpoints[-1:] if newest else checkpoints[:-1]:
                for file in checkpoint.glob("*.pt"):
                    with open(file, "r+b") as handle:
                        handle.truncate(100)
                    cut += 1
        row.notes.append(f"{cut} checkpoint files cut")
        resume_and_check(lab, name, row, logged_epochs(root))
        return row

    return fault


def two_resumes(lab: Lab) -> Row:
    """Two --resume of one experiment at once: one runs, the other is refused (exit 2)."""
    name = "two-resumes"
    root = lab.storage / name
    row = Row("Two --resume at once", "")
    driver, _ = lab.until_epochs(base_flags(name, lab.storage, 16), name, 2)
    driver.kill_driver()
    before = logged_epochs(root)
    first = lab.start(resume_flags(name, lab.storage))
    second = lab.start(resume_flags(name, lab.storage))
    codes = sorted([first.wait(), second.wait()])
    row.exit = " and ".join(map(str, codes))
    refused = first.output if first.process.returncode == 2 else second.output
    row.notes.append(f"refused: {last_line(refused)[:100]}")
    check(root, name, before, row)
    return row


def tampered_pickle(lab: Lab) -> Row:
    """A searcher-state pickle that runs os.system when loaded, then --resume."""
    name = "tampered"
    root = lab.storage / name
    row = Row("Tampered searcher-state pickle, --resume", "")
    driver, _ = lab.until_epochs(base_flags(name, lab.storage, 17), name, 2)
    driver.kill_driver()
    marker = lab.work / "pwned"
    payload = (
        b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    )  # os.system("touch ...") when unpickled
    states = sorted(root.glob("searcher-state-*.pkl"))
    if not states:
        row.exit = "-"
        row.notes.append("no searcher-state file to tamper with")
        return row
    states[-1].write_bytes(payload)
    code, output = lab.run(resume_flags(name, lab.storage))
    row.exit = str(code)
    row.notes.append("code ran" if marker.exists() else "no code ran")
    row.notes.append(last_line(output)[:120])
    return row


def full_volume(lab: Lab) -> Row:
    """A 1.2 GB volume (tmpfs; root only) that another process fills up at once, as the
    first trial starts; then --resume once that room is made again."""
    row = Row("Full volume mid-search", "")
    if os.geteuid() != 0:
        row.exit = "skipped"
        row.notes.append("needs root to mount a small tmpfs")
        return row
    mount = Path(tempfile.mkdtemp(prefix="full", dir=lab.work))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "tmpfs", str(mount)], check=True)
    try:
        name = "full"
        storage = mount / "runs"
        storage.mkdir()
        flags = base_flags(name, storage, 18)
        driver = lab.start(flags)
        started = driver.wait_line(r"trial +1/\d+ .* started")
        if started is not None:  # fill what is left
            with contextlib.suppress(OSError), open(mount / "filler", "wb") as filler:
                while True:
                    filler.write(b"\0" * (1 << 20))
        code = driver.wait(300)
        output = driver.output
        row.exit = str(code)
        row.notes.append(f"{tracebacks(output)} tracebacks; said: {last_line(output)[:140]}")
        before = logged_epochs(storage / name)
        (mount / "filler").unlink(missing_ok=True)
        code, _ = lab.run(resume_flags(name, storage))
        row.notes.append(f"--resume after room was made: exit {code}")
        check(storage / name, name, before, row)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    return row


def wandb_unreachable(lab: Lab) -> Row:
    """--wandb auto with a W&B key that cannot log online (a wrong key, or no network: W&B's
    server at a port where nothing listens): the runs are kept offline, and the output says so
    and claims no online runs."""
    name = "wandb-bad-key"
    root = lab.storage / name
    row = Row("W&B cannot log online (--wandb auto, a key)", "")
    flags = [*base_flags(name, lab.storage, 20), "--wandb", "auto"]
    code, output = lab.run(flags, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    row.exit = str(code)
    offline = len(list(root.glob("wandb/offline-run-*")))
    told = [line for line in output.splitlines() if "could not log online" in line]
    claims = "grouped as" in output
    row.agree = code == 0 and len(told) == 1 and not claims and offline >= SAMPLES
    row.notes.append(f"{offline} runs offline; told: {told[0][:110] if told else 'nothing'}")
    if claims:
        row.notes.append("claims online runs")
    return row


def credentials(lab: Lab) -> Row:
    """Every file the runs left (experiments and Ray's temporary folders) that other users can
    read, searched for the W&B key the runs were given."""
    row = Row("W&B key in files others can read", "-")
    leaks = []
    for top in [lab.storage, *lab.ray_dirs]:
        for path in top.rglob("*"):
            with contextlib.suppress(OSError):
                if not path.is_file() or path.is_symlink():
                    continue
                if CANARY.encode() in path.read_bytes() and path.stat().st_mode & 0o004:
                    leaks.append(str(path))
    row.lost = None
    row.agree = not leaks
    row.notes.append(f"{len(leaks)} readable files hold it" + (f": {leaks[:3]}" if leaks else ""))
    return row


KILLS = [
    kill_fault("1 s into the first trial", "time", 1.0, 1),
    kill_fault("2.5 s into the first trial", "time", 2.5, 2),
    kill_fault("4 s into the first trial", "time", 4.0, 3),
    kill_fault("6 s into the first trial", "time", 6.0, 4),
    kill_fault("as epoch row 1 is logged", "rows", 1, 5),
    kill_fault("as epoch row 4 is logged", "rows", 4, 6),
    kill_fault("as epoch row 7 is logged", "rows", 7, 7),
    kill_fault("as checkpoint 1 appears", "checkpoint", 1, 8),
    kill_fault("as checkpoint 3 appears", "checkpoint", 3, 9),
    kill_fault("as the state is saved the 2nd time", "state", 2, 10),
    kill_fault("as the state is saved the 4th time", "state", 4, 19),
]
FAULTS: dict[str, Callable[[Lab], Row]] = {
    **{f"kill-{i + 1}": fault for i, fault in enumerate(KILLS)},
    "kill-twice": kill_during_resume,
    "sigterm-group": sigterm_group,
    "sigterm-early": sigterm_before_trials,
    "ctrl-c-in-last-epoch": interrupt_on_last_epoch(EPOCHS - 1),
    "ctrl-c-as-last-epoch-reports": interrupt_on_last_epoch(EPOCHS),
    "truncated-older": truncated_checkpoint(newest=False),
    "truncated-newest": truncated_checkpoint(newest=True),
    "two-resumes": two_resumes,
    "tampered-pickle": tampered_pickle,
    "full-volume": full_volume,
    "wandb-unreachable": wandb_unreachable,
}


def table(rows: list[Row]) -> str:
    head = ["fault", "exit", "lost", "twice", "agree", "s", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen faults; print their table (scripts/chaos.py)."""
    parser = argparse.ArgumentParser(prog="chaos.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the faults whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--work", type=Path, help="keep the experiments here (default: a temp)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(FAULTS))
        return 0
    chosen = {k: f for k, f in FAULTS.items() if args.only in k}
    if not chosen:
        parser.error(f"--only {args.only!r} matches no fault; faults: {', '.join(FAULTS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    lab = Lab(work)
    rows = []
    for key, fault in chosen.items():
        began = time.monotonic()
        row = fault(lab)
        print(f"[{time.monotonic() - began:5.0f}s] {key}: " + " | ".join(row.cells()[1:]),
              flush=True)  # fmt: skip
        rows.append(row)
    rows.append(credentials(lab))
    lab.clean()
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2) + "\n")
    print(f"\nExperiments kept in {work}")
    return 0
