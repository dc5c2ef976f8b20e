"""report.html: what a search found and why, on one self-contained page.

Written at the end of every search (search.run) and on demand by `scripts/report.py
EXPERIMENT_DIR`. Everything comes from the experiment folder: summary.json, each trial's
result.json, settings.json and the Optuna study. The figures (search.plots) are PNGs embedded
as data URIs, so the page opens offline and loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from search.config.settings import METRIC
from search.importance import EVALUATORS, ImportanceGroup, param_importance
from search.layout import REPORT_FILE, SETTINGS_FILE
from search.plots import (
    STOP_COLOURS,
    TrialPoints,
    importance_bars,
    learning_curves,
    versus_parameters,
)
from search.storage import read_summary
from search.summary import (
    STOP_REASONS,
    SUMMARY_FILE,
    fmt,
    searched_params,
    shown_path,
)
from search.usage import UsageError
from trainable import metrics
from trainable.catalog import BACKBONES

# Settings two experiments must share for one's best val_acc to be a reference for the other's
COMPARABLE = ("data", "backbone", "image_size", "shots", "val_fraction", "seed", "max_epochs")


def asha_rungs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace_period * reduction_factor**k < max_t."""
    rungs, rung = [], grace_period
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs


def trial_history(trial_dir: Path) -> tuple[list[tuple[int, float]], float | None]:
    """(epoch, val_acc) of each epoch the trial reported, and its training seconds."""
    curve: dict[int, float] = {}
    seconds = None
    for row in metrics.result_rows(trial_dir):
        if METRIC in row and metrics.EPOCH in row:
            curve[int(row[metrics.EPOCH])] = float(row[METRIC])  # a resumed epoch: latest
            seconds = row.get("time_total_s", seconds)
    return sorted(curve.items()), seconds


def transfer_gain(summary: dict, full_depth: int | None) -> dict[str, Any] | None:
    """Fine-tuning against the linear probe: the best trial that trained some backbone stage
    against the best with every stage frozen. When the best trial fine-tunes, that is the best
    trial against the best linear probe. None without both kinds of trial in the sweep."""
    reported = [t for t in summary["trials"] if t["best_val_acc"] is not None]
    probes = [t for t in reported if t["config"].get("freeze_depth") == full_depth]
    tuned = [t for t in reported if t["config"].get("freeze_depth") != full_depth]
    if full_depth is None or not probes or not tuned:
        return None
    probe = max(probes, key=lambda t: t["best_val_acc"])
    best = max(tuned, key=lambda t: t["best_val_acc"])
    return {
        "ours": f"best fine-tuned trial {best['trial_id']}",
        "ours_value": best["best_val_acc"],
        "reference": f"best linear probe {probe['trial_id']}",
        "reference_value": probe["best_val_acc"],
        "gain": best["best_val_acc"] - probe["best_val_acc"],
        "is_linear_probe": True,  # the reference is in this sweep: drawn on its scatter plots
        "title": "Fine-tuning vs linear probe",
        "differences": [],
    }


def reference_gain(summary: dict, other: Path) -> dict[str, Any]:
    """The best trial against the best of another experiment (e.g. one run with --weights
    none: training from scratch)."""
    theirs = read_summary(other)
    if not theirs or not theirs.get("best"):
        raise UsageError(f"--reference {other} has no summary.json with a best trial")
    if summary.get("best") is None:
        raise UsageError("this experiment has no best trial to compare")
    ours_fixed, their_fixed = summary.get("fixed", {}), theirs.get("fixed", {})
    weights = their_fixed.get("weights", "?")
    differences = [
        f"{key} {their_fixed.get(key)!r} vs {ours_fixed.get(key)!r}"
        for key in COMPARABLE
        if their_fixed.get(key) != ours_fixed.get(key)
    ]
    return {
        "ours": f"best trial {summary['best']['trial_id']}",
        "ours_value": summary["best"][METRIC],
        "reference": f"experiment {theirs['experiment']}'s best (weights {weights!r})",
        "reference_value": theirs["best"][METRIC],
        "gain": summary["best"][METRIC] - theirs["best"][METRIC],
        "is_linear_probe": False,
        "title": "Transfer gain",
        # what else differs between the two searches besides the weights, named on the page
        "differences": differences,
    }


def _shortfall(counts: dict[str, int]) -> str:
    """Why fewer trial-epochs ran than planned, from how the trials ended."""
    causes = {"asha": "ASHA stopped", "error": "failed", "interrupted": "interrupted"}
    named = [f"{counts[r]} {what}" for r, what in causes.items() if counts.get(r)]
    return ", ".join(named) if named else "every trial ran its full budget"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _e(value: Any) -> str:
    return html.escape(str(value))


CSS = """
body{font:13px/1.35 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:14px 18px;
color:#222;background:#fff}
h1{font-size:18px;margin:0 0 2px}h2{font-size:14px;margin:10px 0 4px}
.sub{color:#666;margin-bottom:8px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin-bottom:8px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-width:180px}
.card b{font-size:16px}.card div{color:#555;font-size:12px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:2px 6px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f6f6f6;position:sticky;top:0}td.l,th.l{text-align:left}
tr.best td{font-weight:600;background:#f3faf6}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:4px}
img{max-width:100%;display:block}
.note{color:#666;font-size:11.5px;margin:2px 0 8px}
code{background:#f4f4f4;padding:0 3px;border-radius:3px;font-size:11.5px}
footer{margin-top:10px;color:#555;font-size:12px}
"""


def _trials_table(
    summary: dict, searched: list[str], seconds: dict[str, float | None], max_epochs: int
) -> str:
    best_id = (summary.get("best") or {}).get("trial_id")
    scores = [f"best {METRIC}", f"last {METRIC}"]
    head = ["#", "trial", *searched, *scores, "epochs", "stopped", "time"]
    rows = []
    for rank, t in enumerate(summary["trials"], start=1):
        colour = STOP_COLOURS.get(t["stop_reason"], "#999")
        reason = f'<span class="dot" style="background:{colour}"></span>{_e(t["stop_reason"])}'
        title = f' title="{_e(t["error"])}"' if "error" in t else ""
        cells = [
            str(rank),
            _e(t["trial_id"]),
            *(_e(fmt(t["config"].get(k))) for k in searched),
            _e(fmt(t["best_val_acc"])),
            _e(fmt(t["val_acc"])),
            f"{t['epochs']}/{max_epochs}",
            reason,
            f"{seconds[t['trial_id']]:.1f} s" if seconds.get(t["trial_id"]) else "-",
        ]
        klass = ' class="best"' if t["trial_id"] == best_id else ""
        tds = "".join(
            f'<td class="l"{title}>{c}</td>' if i in (1, len(cells) - 2) else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        rows.append(f"<tr{klass}>{tds}</tr>")
    ths = "".join(
        f'<th class="l">{_e(h)}</th>' if h in ("trial", "stopped") else f"<th>{_e(h)}</th>"
        for h in head
    )
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _importance_section(importance: list[ImportanceGroup] | str) -> str:
    """The importance figure and what it was computed on, or why there is none."""
    title = "<h2>Hyperparameter importance</h2>"
    if isinstance(importance, str):
        return f'{title}<p class="note">Not computed: {_e(importance)}.</p>'
    drawn = [
        (f"{g.label} ({g.trials})", g.params, {m: v for m, v in g.by_method.items()
                                               if not isinstance(v, str)})
        for g in importance
    ]  # fmt: skip
    drawn = [group for group in drawn if group[2]]
    failed = "".join(
        f" {_e(m.split(' (')[0])} on {_e(g.label)} gave none: {_e(v)}."
        for g in importance
        for m, v in g.by_method.items()
        if isinstance(v, str)
    )
    groups = " and ".join(f"{g.label} ({g.trials}, over {', '.join(g.params)})" for g in importance)
    figure = _img(importance_bars(drawn), "importance") if drawn else ""
    return (
        title
        + figure
        + f'<p class="note">Optuna\'s evaluators: {"; ".join(_e(m) for m in EVALUATORS)}. '
        f"Computed on {_e(groups)}; each trial scored by its best {METRIC} (ASHA-stopped "
        f"trials at their last epoch).{failed} With few trials, a hint.</p>"
    )


def render_report(
    root: Path,
    summary: dict,
    settings: dict[str, Any],
    gain: dict[str, Any] | None,
    importance: list[ImportanceGroup] | str,
) -> str:
    """The whole page, as a string."""
    max_epochs = int(summary["budget"]["max_epochs"])
    histories = {t["trial_id"]: trial_history(root / t["path"]) for t in summary["trials"]}
    seconds = {trial_id: h[1] for trial_id, h in histories.items()}
    best = summary.get("best")
    best_id = best["trial_id"] if best else None
    points = [
        TrialPoints(
            trial_id=t["trial_id"],
            stop_reason=t["stop_reason"],
            config=t["config"],
            best_val_acc=t["best_val_acc"],
            curve=histories[t["trial_id"]][0],
            is_best=t["trial_id"] == best_id,
        )
        for t in summary["trials"]
    ]
    searched = searched_params(summary)
    shown = shown_path(root).as_posix()  # the experiment folder as the user types it
    rungs = asha_rungs(
        int(settings.get("grace_period", 1)), int(settings.get("reduction_factor", 3)), max_epochs
    )
    fixed = summary.get("fixed", {})
    budget = summary["budget"]
    planned = budget["num_samples"] * max_epochs
    ran = budget["trial_epochs_run"]
    counts = {r: sum(t["stop_reason"] == r for t in summary["trials"]) for r in STOP_REASONS}
    outcome = ", ".join(f"{n} {r}" for r, n in counts.items() if n)
    trial_seconds = sum(s for s in seconds.values() if s)
    wall = summary.get("wall_seconds")
    cards = []
    if best:
        config = ", ".join(f"{k}={fmt(v)}" for k, v in best["config"].items())
        cards.append(
            f'<div class="card">Best {METRIC}<br><b>{fmt(best[METRIC])}</b>'
            f"<div>trial {_e(best_id)}, epoch {best['epoch']}<br>{_e(config)}</div></div>"
        )
    cards.append(
        f'<div class="card">Budget used<br><b>{ran} / {planned}</b> trial-epochs '
        f"({ran / planned:.0%})<div>{budget['num_samples']} trials x {max_epochs} epochs planned; "
        f"{_e(_shortfall(counts))}<br>{trial_seconds:.0f} s in trials"
        + (f", {wall:.0f} s wall" if wall else "")
        + "</div></div>"
    )
    if gain is not None:
        cards.append(
            f'<div class="card">{_e(gain["title"])}<br><b>{gain["gain"]:+.3f}</b> {METRIC}'
            f"<div>{_e(gain['ours'])}: {fmt(gain['ours_value'])}<br>"
            f"{_e(gain['reference'])}: {fmt(gain['reference_value'])}"
            + (
                f"<br><b>not comparable:</b> {_e('; '.join(gain['differences']))}"
                if gain["differences"]
                else ""
            )
            + "</div></div>"
        )
    else:
        cards.append(
            '<div class="card">Fine-tuning vs linear probe<br><b>-</b><div>the sweep lacks '
            "a linear probe or a fine-tuned trial; for the transfer gain over a from-scratch "
            "search:<br><code>scripts/report.py "
            f"{_e(shown)} --reference runs/SCRATCH</code></div></div>"
        )
    cards.append(f'<div class="card">Trials<br><b>{len(summary["trials"])}</b><div>{_e(outcome)}'
                 "</div></div>")  # fmt: skip
    curves = learning_curves(points, rungs, max_epochs, METRIC) if points else b""
    # the best linear probe as a line across the scatter plots (not another experiment's)
    probe_line = gain["reference_value"] if gain and gain["is_linear_probe"] else None
    versus = versus_parameters(points, searched, METRIC, probe_line) if points and searched else b""
    has_checkpoint = bool(best and best["checkpoint"])
    checkpoint = f"{shown}/{best['checkpoint']}/checkpoint.pt" if has_checkpoint else "-"
    export_hint = (
        f" · export it: <code>python scripts/export.py {_e(shown)} --out model.pt</code>"
        if has_checkpoint
        else ""
    )
    when = datetime.fromtimestamp((root / SUMMARY_FILE).stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    subtitle = (
        f"space {summary['space']} · backbone {fixed.get('backbone')} · "
        f"data {fixed.get('data')} · weights {fixed.get('weights')} · seed {fixed.get('seed')} · "
        f"sampler {settings.get('sampler', '?')} · {when}"
    )
    rung_text = ", ".join(map(str, rungs)) or "none"
    factor = settings.get("reduction_factor", "?")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{_e(summary["experiment"])}: transfer-tune report</title>
<style>{CSS}</style></head>
<body>
<h1>{_e(summary["experiment"])}</h1>
<div class="sub">{_e(subtitle)}</div>
<div class="cards">{"".join(cards)}</div>
<div class="grid">
<div>
<h2>Trials, best {METRIC} first</h2>
{_trials_table(summary, searched, seconds, max_epochs)}
<p class="note">best {METRIC}: the epoch whose checkpoint is kept; stopped: completed (ran all
{max_epochs} epochs), asha (stopped at a rung), error (hover for the reason), interrupted.
time: seconds the trial trained.</p>
{_importance_section(importance)}
</div>
<div>
<h2>Learning curves</h2>
{_img(curves, "learning curves") if curves else ""}
<p class="note">Coloured by how each trial ended; the best is black. ASHA compared trials at
epoch(s) {rung_text} (grace period {settings.get("grace_period", "?")}, reduction factor
{factor}) and kept the best 1/{factor} at each.</p>
<h2>{METRIC} against each hyperparameter</h2>
{_img(versus, "val_acc against hyperparameters") if versus else ""}
</div>
</div>
<footer>
Best checkpoint: <code>{_e(checkpoint)}</code>{export_hint} ·
all numbers: <code>summary.json</code> · per-epoch curves in TensorBoard:
<code>python scripts/board.py {_e(shown)}</code>
</footer>
</body></html>
"""


def write_report(root: Path, reference: Path | None = None) -> Path:
    """Write report.html into the experiment folder `root`; return its path."""
    summary = read_summary(root)
    if not summary or "trials" not in summary:
        raise UsageError(
            f"{root} has no readable {SUMMARY_FILE}: give the folder of a search that ran "
            "(runs/NAME)"
        )
    settings_file = root / SETTINGS_FILE
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    backbone = summary.get("fixed", {}).get("backbone")
    full_depth = BACKBONES[backbone].max_freeze_depth if backbone in BACKBONES else None
    if reference is not None:
        gain = reference_gain(summary, reference)
    else:
        gain = transfer_gain(summary, full_depth)
    searched = searched_params(summary)
    study = summary.get("study") or {}
    importance: list[ImportanceGroup] | str = (
        param_importance(root / study["file"], study["name"], searched)
        if study and searched
        else "no Optuna study in this experiment (optuna.db)"
    )
    page = render_report(root, summary, settings, gain, importance)
    path = root / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
