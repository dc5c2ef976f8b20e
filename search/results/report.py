"""report.html: what a search found and why, on one self-contained page.

Written at the end of every search (search.run.search) and on demand by `scripts/report.py
EXPERIMENT_DIR`. Everything comes from the experiment folder: summary.json, each trial's
result.json, settings.json and the Optuna study. The figures (search.results.plots) are PNGs
embedded as data URIs, so the page opens offline and loads nothing from the network.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from search.config.settings import METRIC, asha_rungs
from search.config.usage import UsageError
from search.experiment.layout import REPORT_FILE, SETTINGS_FILE, SUMMARY_FILE
from search.experiment.outcomes import STOP_REASONS, fmt, shown_path, trial_label
from search.experiment.storage import read_summary
from search.results.gain import reference_gain, transfer_gain
from search.results.importance import (
    METHOD,
    METHOD_NOTE,
    MIN_TRIALS,
    ImportanceGroup,
    param_importance,
)
from search.results.plots import (
    STOP_COLOURS,
    TrialPoints,
    importance_bars,
    learning_curves,
    versus_parameters,
)
from search.results.summary import best_per_pair, searched_params
from search.results.trust import interval_text
from trainable import metrics
from trainable.catalog import BACKBONES


def trial_history(trial_dir: Path) -> tuple[list[tuple[int, float]], float | None]:
    """(epoch, val_acc) of each epoch the trial reported, and its training seconds."""
    curve: dict[int, float] = {}
    seconds = None
    for row in metrics.result_rows(trial_dir):
        if METRIC in row and metrics.EPOCH in row:
            curve[int(row[metrics.EPOCH])] = float(row[METRIC])  # a resumed epoch: latest
            seconds = row.get("time_total_s", seconds)
    return sorted(curve.items()), seconds


def _shortfall(counts: dict[str, int]) -> str:
    """Why fewer trial-epochs ran than planned, from how the trials ended."""
    causes = {
        "asha": "ASHA stopped", "plateau": "stopped on a plateau", "error": "failed",
        "interrupted": "interrupted",
    }  # fmt: skip
    named = [f"{counts[r]} {what}" for r, what in causes.items() if counts.get(r)]
    return ", ".join(named) if named else "every trial ran its full budget"


def _png(data: bytes) -> str:
    """A PNG as the base64 text of a data URI."""
    return base64.b64encode(data).decode() if data else ""


def _trials_table(
    summary: dict, searched: list[str], seconds: dict[str, float | None], max_epochs: int
) -> dict[str, Any]:
    best_id = (summary.get("best") or {}).get("trial_id")
    head = [
        "#", "trial", *searched, f"best {METRIC}", "95% interval", f"last {METRIC}", "epochs",
        "stopped",
    ]  # fmt: skip
    rows = []
    for rank, t in enumerate(summary["trials"], start=1):
        colour = STOP_COLOURS.get(t["stop_reason"], "#999")
        reason = Markup('<span class="dot" style="background:{}"></span>{}').format(
            colour, t["stop_reason"]
        )
        cells = [
            str(rank),
            trial_label(t.get("number"), t["trial_id"]),
            *(fmt(t["config"].get(k)) for k in searched),
            fmt(t["best_val_acc"]),
            interval_text(t.get("val_acc_interval"))
            + (" (tie)" if t.get("tie_with_best") and rank > 1 else ""),
            fmt(t["val_acc"]),
            f"{t['epochs']}/{max_epochs}",
            reason,
            f"{seconds[t['trial_id']]:.1f} s" if seconds.get(t["trial_id"]) else "-",
        ]
        rows.append({"cells": cells, "best": t["trial_id"] == best_id, "error": t.get("error")})
    return {"head": [*head, "time"], "rows": rows}


def _importance(importance: list[ImportanceGroup] | str) -> dict[str, Any]:
    """The importance figure (the groups with enough trials) and what it rests on, or why
    there is none."""
    if isinstance(importance, str):
        return {"reason": importance}
    drawn = [(f"{g.label}: {g.trials} trials", g.importances) for g in importance if g.importances]
    return {
        "reason": None,
        "figure": _png(importance_bars(drawn)) if drawn else "",
        "method": f"{METHOD} ({METHOD_NOTE})",
        "shown": [
            f"{g.label} ({g.trials}, over {', '.join(g.params)})"
            for g in importance
            if g.importances
        ],
        "notes": [f"{g.label}: {g.note}" for g in importance if g.note],
        "min_trials": MIN_TRIALS,
    }


def _budget_lines(summary: dict) -> list[str]:
    """What --time-budget did in each run that had one."""
    lines = []
    for run in summary.get("time_budget") or []:
        stopped = len(run.get("stopped", []))
        ended = "ended the search" if run.get("ended_search") else "was not reached"
        lines.append(
            f"--time-budget {run['seconds']:g} s {ended}"
            + (f", stopping {stopped} running trial(s)" if stopped else "")
        )
    return lines


def _prescreen(summary: dict) -> dict[str, Any] | None:
    """The pre-screen's rows (best score first) beside the best val_acc of the trials with
    each (backbone, freeze_depth), and how far the two rankings agreed."""
    screen = summary.get("prescreen")
    if not screen:
        return None
    found = best_per_pair(summary["trials"])
    rows = [
        {
            "backbone": r["backbone"], "freeze_depth": r["freeze_depth"],
            "knn": fmt(r["knn_acc"]), "ridge": fmt(r["ridge_acc"]), "score": fmt(r["score"]),
            "found": fmt(found.get((r["backbone"], r["freeze_depth"]))),
            "dropped": r["backbone"] in screen.get("dropped", {}),
        }
        for r in sorted(screen.get("scores", []), key=lambda r: -r["score"])
    ]  # fmt: skip
    tau = screen.get("kendall_tau")
    agreement = (
        f"Kendall's tau between the probe scores and the trials' best {METRIC}: {tau:+.2f} over "
        f"{screen['pairs_compared']} pairs some trial tried (1: the same order, 0: unrelated)"
        if tau is not None
        else "Too few pairs were tried by trials to compare the rankings (Kendall's tau)"
    )
    starts = ", ".join(
        f"{w['backbone']} at depth {w['freeze_depth']}" for w in screen.get("warm_start", [])
    )
    return {
        "rows": rows,
        "note": f"{agreement}. Took {screen.get('seconds', 0):.0f} s. "
        f"Rule: {screen.get('rule', '')}. First trials: {starts or 'none'}.",
    }


@cache
def _template() -> jinja2.Template:
    """report.html's template, autoescaped: every value is escaped unless built as Markup."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("search.results", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests, not the page
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2")


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
        int(settings.get("grace_period") or 1), int(settings.get("reduction_factor", 3)), max_epochs
    )
    fixed = summary.get("fixed", {})
    budget = summary["budget"]
    planned = budget["num_samples"] * max_epochs
    ran = budget["trial_epochs_run"]
    counts = {r: sum(t["stop_reason"] == r for t in summary["trials"]) for r in STOP_REASONS}
    outcome = ", ".join(f"{n} {r}" for r, n in counts.items() if n)
    trial_seconds = sum(s for s in seconds.values() if s)
    wall = summary.get("wall_seconds")
    cards: list[dict[str, Any]] = []
    if best:
        config = ", ".join(f"{k}={fmt(v)}" for k, v in best["config"].items())
        cards.append(
            {
                "title": f"Best {METRIC}",
                "value": fmt(best[METRIC]),
                "unit": "",
                "lines": [
                    f"trial {trial_label(best.get('number'), best_id)}, epoch {best['epoch']}",
                    *(
                        [
                            f"95% interval {interval_text(best['val_acc_interval'])} on "
                            f"{summary['val_images']} validation images"
                        ]
                        if best.get("val_acc_interval")
                        else []
                    ),
                    config,
                ],
            }
        )
    cards.append(
        {
            "title": "Budget used",
            "value": f"{ran} / {planned}",
            "unit": f" trial-epochs ({ran / planned:.0%})",
            "lines": [
                f"{budget['num_samples']} trials x {max_epochs} epochs planned; "
                + _shortfall(counts),
                f"{trial_seconds:.0f} s in trials" + (f", {wall:.0f} s wall" if wall else ""),
                *_budget_lines(summary),
            ],
        }
    )
    if gain is not None:
        lines = [
            f"{gain['ours']}: {fmt(gain['ours_value'])}",
            f"{gain['reference']}: {fmt(gain['reference_value'])}",
        ]
        if gain["differences"]:
            lines.append(Markup("<b>not comparable:</b> ") + "; ".join(gain["differences"]))
        cards.append(
            {
                "title": gain["title"],
                "value": f"{gain['gain']:+.3f}",
                "unit": f" {METRIC}",
                "lines": lines,
            }
        )
    else:
        cards.append(
            {
                "title": "Fine-tuning vs linear probe",
                "value": "-",
                "unit": "",
                "lines": [
                    "the sweep lacks a linear probe or a fine-tuned trial; for the transfer "
                    "gain over a from-scratch search:",
                    Markup("<code>{}</code>").format(
                        f"scripts/report.py {shown} --reference runs/SCRATCH"
                    ),
                ],
            }
        )
    cards.append(
        {"title": "Trials", "value": str(len(summary["trials"])), "unit": "", "lines": [outcome]}
    )
    curves = learning_curves(points, rungs, max_epochs, METRIC) if points else b""
    # the best linear probe as a line across the scatter plots (not another experiment's)
    probe_line = gain["reference_value"] if gain and gain["is_linear_probe"] else None
    versus = versus_parameters(points, searched, METRIC, probe_line) if points and searched else b""
    has_checkpoint = bool(best and best["checkpoint"])
    when = datetime.fromtimestamp((root / SUMMARY_FILE).stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return _template().render(
        experiment=summary["experiment"],
        subtitle=(
            f"space {summary['space']} · "
            + (
                f"backbones {settings['backbones'].replace(',', ', ')} · "
                if settings.get("backbones")
                else f"backbone {fixed.get('backbone')} · "
            )
            + f"data {fixed.get('data')} · weights {fixed.get('weights')} · "
            f"seed {fixed.get('seed')} · sampler {settings.get('sampler', '?')} · {when}"
        ),
        metric=METRIC,
        max_epochs=max_epochs,
        cards=cards,
        warnings=summary.get("warnings", []),
        table=_trials_table(summary, searched, seconds, max_epochs),
        importance=_importance(importance),
        prescreen=_prescreen(summary),
        curves=_png(curves),
        versus=_png(versus),
        rungs=", ".join(map(str, rungs)) or "none",
        grace_period=settings.get("grace_period", "?"),
        factor=settings.get("reduction_factor", "?"),
        checkpoint=f"{shown}/{best['checkpoint']}/checkpoint.pt" if has_checkpoint else "-",
        export_command=f"python scripts/export.py {shown} --out model.pt" if has_checkpoint else "",
        shown=shown,
    )


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
