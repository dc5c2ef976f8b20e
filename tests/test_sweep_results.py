"""What a user does with a finished mini sweep: read report.html, export the best model, and
classify images with it. Uses the session's sweep (fixture `sweep`); export and predict run as
the user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from helpers import ROOT, Sweep

from search.cli import export, predict, report
from search.experiment.layout import REPORT_FILE
from search.experiment.outcomes import trial_label
from trainable.exported import CONFIG_KEYS, EXPORT_KEYS

pytestmark = pytest.mark.sweep
CHROMIUM = shutil.which("chromium")


class PageParser(HTMLParser):
    """Collects what a test needs of a page: its tags, attributes and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        self._in_cell = tag == "td"

    def handle_endtag(self, tag: str) -> None:
        self._in_cell = False if tag == "td" else self._in_cell

    def handle_data(self, data: str) -> None:
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def _parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text())
    parser.close()
    return parser


def _script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


def test_the_search_writes_a_self_contained_report(sweep: Sweep) -> None:
    page_file = sweep.root / REPORT_FILE
    assert sweep.summary["report"] == REPORT_FILE and page_file.is_file()
    assert "Report:  runs/mini/report.html" in sweep.stdout
    assert "python scripts/export.py runs/mini --out model.pt" in sweep.stdout
    page = _parse(page_file)
    images = [v for tag, name, v in page.attributes if tag == "img" and name == "src"]
    # learning curves, val_acc against each hyperparameter, and importance when computed
    assert len(images) >= 2 and all(src.startswith("data:image/png;base64,") for src in images)
    labels = [trial_label(t["number"], t["trial_id"]) for t in sweep.summary["trials"]]
    for label in labels:
        assert label in page.cells, label
    # Nothing loaded from anywhere: no scripts, stylesheets, frames or remote addresses.
    assert not {"script", "link", "iframe"} & set(page.tags)
    for tag, name, value in page.attributes:
        if name in ("src", "href"):
            assert value.startswith("data:"), (tag, name, value[:80])
    text = page_file.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    alts = [v for tag, name, v in page.attributes if tag == "img" and name == "alt"]
    # 6 trials are too few for a reliable importance: it says so instead of drawing bars.
    assert "importance" not in alts and {"learning curves"} <= set(alts), alts
    assert "<b>Not shown</b> for all trials: 6 trials are too few for a reliable importance" in text
    assert "PED-ANOVA" in text and "fANOVA" not in text
    budget = sweep.summary["budget"]
    planned = budget["num_samples"] * budget["max_epochs"]
    assert f"<b>{budget['trial_epochs_run']} / {planned}</b> trial-epochs" in text
    rows = [c for c in page.cells if c in set(labels)]
    assert rows == labels  # once each, ranked


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (.ci/run installs it)",
)
def test_the_report_renders_offline_in_chromium_on_one_screen(sweep: Sweep, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is missing: .ci/run installs Debian's chromium package"
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            page.goto((sweep.root / REPORT_FILE).as_uri())
            # every figure decoded: a broken data URI has no natural width
            widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
            height = page.evaluate("document.documentElement.scrollHeight")
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    assert requested == [(sweep.root / REPORT_FILE).as_uri()]  # the page, nothing else
    assert len(widths) >= 2 and all(w > 300 for w in widths), widths
    assert height <= 1100, f"the report should fit about one screen, but is {height} px tall"


def test_report_py_rewrites_it_and_refuses_a_folder_that_is_no_experiment(
    sweep: Sweep, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert report.main([str(sweep.root)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert report.main([str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("report.py: error:") and "summary.json" in error
    assert len(error.splitlines()) == 1


def test_export_then_predict_agree_on_the_test_accuracy(sweep: Sweep, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    done = _script(
        "export.py", str(sweep.root), "--out", str(model), "--test-images", "test", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    exported = torch.load(model, weights_only=True)
    assert set(EXPORT_KEYS) <= set(exported) and set(CONFIG_KEYS) <= set(exported["config"])
    assert exported["classes"] == ["5", "6", "7", "8", "9"]
    assert exported["source"]["trial_id"] == sweep.summary["best"]["trial_id"]
    metrics = exported["metrics"]
    assert metrics["test_images"] > 500 and 0.2 < metrics["test_acc"] <= 1

    predicted = _script("predict.py", str(model), "test", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = [line.split("\t") for line in predicted.stdout.splitlines()]
    assert len(rows) == metrics["test_images"]
    for _path, name, probability in rows:
        assert name in exported["classes"] and 0 < float(probability) <= 1
    correct = sum(Path(path).parent.name == name for path, name, _ in rows)
    assert correct / len(rows) == metrics["test_acc"]


def test_export_retrains_on_train_and_validation(
    sweep: Sweep, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "retrained.pt"
    assert export.main([str(sweep.root), "--out", str(model), "--retrain"]) == 0
    out = capsys.readouterr().out
    assert "on 100 train + 250 validation images for 3 epochs" in out
    assert "retrain epoch 3/3" in out
    exported = torch.load(model, weights_only=True)
    assert exported["source"]["retrained"] is True
    assert exported["source"]["epochs"] == exported["config"]["trial"]["max_epochs"]
    assert exported["metrics"]["val_acc"] is None  # it trained on the validation images
    assert 0 <= exported["metrics"]["test_acc"] <= 1


def test_export_never_overwrites(
    sweep: Sweep, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    taken = tmp_path / "model.pt"
    taken.write_text("mine")
    assert export.main([str(sweep.root), "--out", str(taken)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("export.py: error: --out") and "exists" in error
    assert taken.read_text() == "mine"
    assert export.main([str(tmp_path), "--out", str(tmp_path / "other.pt")]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_predict_names_an_unreadable_image_and_classifies_the_rest(
    sweep: Sweep, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model, images = tmp_path / "model.pt", tmp_path / "images"
    assert export.main([str(sweep.root), "--out", str(model), "--test-images", str(images)]) == 0
    broken = images / "5" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    capsys.readouterr()
    assert predict.main([str(model), str(tmp_path / "gone.png"), str(images / "5")]) == 2
    out, err = capsys.readouterr()
    assert f"cannot read image {broken}" in err and "Traceback" not in err
    assert f"no image or folder at {tmp_path / 'gone.png'}" in err
    assert len(out.splitlines()) == len(list((images / "5").iterdir())) - 1
    assert predict.main([str(tmp_path / "missing.pt"), str(images)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert predict.main([str(broken), str(images)]) == 2
    assert "not a readable model file" in capsys.readouterr().err
