"""Step 4's evaluation report (``eval_soccernet_ball.py --report DIR``): ``report.html``, one self-contained page
(its figures embedded, so it opens offline and can be mailed), the figures as PNGs beside it, and ``report.json``
with every number the page shows.

The page: the headline metrics with their bootstrap intervals (util.metrics.analysis), per-class AP against the
tolerance delta, precision-recall curves at delta = 1 s, per-class timing offsets of the matched events, the
class confusion under SoccerNet's matching and the left/right confusion of the teams, and the worst false alarms
and misses with their times. Every AP on it is the evaluator's (``spotting_results``), not a recomputation.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from util.io import atomic_write_bytes, atomic_write_text, store_json
from util.metrics.analysis import bootstrap_intervals, error_analysis, precision_recall
from util.metrics.spotting import EventsByGame
from util.visualize import class_colors, format_clock

AT_METRICS = ("at1", "at2", "at3", "at4", "at5")
FIGURES = ("ap_vs_delta", "pr_curves", "offsets", "confusion", "bootstrap")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _rgb(classes: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    return {c: tuple(v / 255 for v in rgb) for c, rgb in class_colors(classes).items()}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buffer.getvalue()


def figure_ap_vs_delta(results: Mapping[str, Any], classes: Sequence[str]) -> bytes:
    plt, colors = _plt(), _rgb(classes)
    deltas = [int(m[2:]) for m in AT_METRICS if m in results]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for c in classes:
        ax.plot(deltas, [results[f"at{d}"]["per_class"][c] for d in deltas], "o-", color=colors[c], lw=1.2,
                ms=3, label=c)  # fmt: skip
    ax.plot(deltas, [results[f"at{d}"]["mAP"] for d in deltas], "k-", lw=3, label="mAP")
    ax.set(
        xlabel="tolerance delta (s): a hit is within +-delta/2",
        ylabel="AP",
        ylim=(-0.02, 1.02),
        xticks=deltas,
    )
    ax.set_title("AP against the tolerance (SoccerNet mAP@delta)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def figure_pr_curves(pr: Mapping[str, Any], classes: Sequence[str]) -> bytes:
    plt, colors = _plt(), _rgb(classes)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for c in classes:
        some = pr["predictions"][c] > 0  # above the highest confidence, precision is undefined: not drawn
        recall, precision = pr["recall"][c][some], pr["precision"][c][some]
        if recall.max(initial=0) > 0:
            ax.plot(recall, precision, color=colors[c], lw=1.4, label=f"{c} (AP {pr['ap'][c]:.2f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.set_title("Precision-recall at delta = 1 s (one point per confidence threshold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def figure_offsets(errors: Mapping[str, Any], classes: Sequence[str]) -> bytes:
    plt, colors = _plt(), _rgb(classes)
    shown = [c for c in classes if errors["offsets"][c]] or list(classes[:1])
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False, sharex=True)
    half = errors["offset_delta_s"] / 2
    bins = np.linspace(-half, half, 21)
    for ax, c in zip(axes.flat, shown, strict=False):
        values = errors["offsets"][c]
        ax.hist(values, bins=bins, color=colors[c])
        ax.axvline(0, color="k", lw=0.8)
        median = f", median {np.median(values):+.2f} s" if values else ""
        ax.set_title(f"{c} (n={len(values)}{median})", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(f"prediction - ground truth (s) of the pairs matched within +-{half:g} s", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _png(fig)


def figure_confusion(errors: Mapping[str, Any], classes: Sequence[str]) -> bytes:
    plt = _plt()
    rows, cols = [*classes, "missed"], [*classes, "none"]
    table = np.array([[errors["confusion"][r][c] for c in cols] for r in rows], float)
    fig, ax = plt.subplots(figsize=(0.5 * len(cols) + 3, 0.4 * len(rows) + 2))
    ax.imshow(np.log1p(table), cmap="Blues")
    for (i, j), v in np.ndenumerate(table):
        if v:
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7,
                    color="white" if np.log1p(v) > 0.6 * np.log1p(table.max()) else "black")  # fmt: skip
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set(xlabel="ground truth it sat on", ylabel="predicted (confidence >= threshold)")
    ax.set_title(
        f"Confusion at delta = {errors['delta_s']:g} s, threshold {errors['threshold']:g}", fontsize=9
    )
    return _png(fig)


def figure_bootstrap(intervals: Mapping[str, Any], point: Mapping[str, float]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, len(intervals), figsize=(3.6 * len(intervals), 2.6), squeeze=False)
    for ax, (name, iv) in zip(axes.flat, intervals.items(), strict=True):
        ax.hist(iv["values"], bins=30, color="#9ab")
        ax.axvline(point[name], color="k", lw=1.5, label="on the games")
        for x in (iv["low"], iv["high"]):
            ax.axvline(x, color="#c33", ls="--", lw=1)
        ax.set_title(
            f"{_METRIC_NAMES[name]}: {point[name]:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]", fontsize=8
        )
        ax.tick_params(labelsize=7)
    return _png(fig)


_METRIC_NAMES = {"at1": "mAP@1", "team_at1": "Team mAP@1", "tight": "tight mAP"}


def figure_training(history: Sequence[Mapping[str, Any]], selected: int | None = None) -> bytes:
    """A model's loss.json drawn (training writes it each epoch as training.png): train and val loss, the val
    metrics (mAP@1, Team mAP@1, frame mAP) with the best epoch by mAP@1 marked, and the learning rate."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, metric_ax, lr_ax) = plt.subplots(1, 3, figsize=(12, 3.2))

    def series(key: str) -> tuple[list, list]:
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    for key, style in (("train", "o-"), ("val", "s-")):
        loss_ax.plot(*series(key), style, ms=3, label=key)
    loss_ax.set(title="loss", xlabel="epoch")
    for key, label in (
        ("val_mAP", "val mAP@1"),
        ("val_team_mAP", "val Team mAP@1"),
        ("val_frame_mAP", "val frame mAP"),
    ):
        x, y = series(key)
        if x:
            metric_ax.plot(x, y, "o-", ms=3, label=label)
    x, y = series("val_mAP")
    if x:
        best = x[int(np.argmax(y))] if selected is None else selected
        metric_ax.axvline(best, color="k", ls=":", lw=1, label=f"best mAP@1: epoch {best}")
    metric_ax.set(title="validation", xlabel="epoch", ylim=(-0.02, 1.02))
    lr_ax.plot(*series("lr"), ".-")
    lr_ax.set(title="learning rate (end of epoch)", xlabel="epoch")
    for ax in (loss_ax, metric_ax, lr_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xlim(min(epochs) - 0.3, max(epochs) + 0.3)
    loss_ax.legend(fontsize=7)
    if metric_ax.lines:
        metric_ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


# ---- the page


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def fmt(x: float | None) -> str:
    """A metric as the page shows it (3 decimals)."""
    return "-" if x is None else f"{x:.3f}"


def _event_rows(rows: Sequence[Mapping[str, Any]], key: str, near: bool) -> list[list[Any]]:
    out = []
    for r in rows:
        value = r.get(key)
        row = [r["game"], r["half"], format_clock(r["time_s"]), r["label"], r["team"] or "-",
               "-" if value is None else f"{value:.3f}"]  # fmt: skip
        out.append([*row, r.get("near") or "-"] if near else row)
    return out


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ccc;padding:.2em .5em}
th{background:#f3f3f3} td:not(:first-child){text-align:right} img{max-width:100%;display:block;margin:.5em 0}
.note{color:#555;font-size:.9em}
"""


def display_threshold_rows(pr: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each recorded per-class display threshold, with the precision and recall it gave on val (recorded) and
    gives on this split at delta = 1 s."""
    rows = []
    rules = recorded.get("class_threshold_rules") or {}
    for c, t in (recorded.get("class_thresholds") or {}).items():
        if c not in pr["precision"]:
            continue
        k = min(int(np.searchsorted(pr["thresholds"], t - 1e-12)), len(pr["thresholds"]) - 1)
        here = bool(pr["predictions"][c][k] > 0)
        rows.append({"class": c, "threshold": float(t), "rule": (rules.get(c) or {}).get("rule"),
                     "val_precision": (rules.get(c) or {}).get("precision"),
                     "precision": float(pr["precision"][c][k]) if here else None,
                     "recall": float(pr["recall"][c][k])})  # fmt: skip
    return rows


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    classes, results = report["classes"], report["results"]
    intervals, errors = report["intervals"], report["errors"]
    summary = []
    for name in ("at1", "team_at1", "tight"):
        if name in results:
            iv = intervals.get(name)
            ci = f"[{fmt(iv['low'])}, {fmt(iv['high'])}]" if iv else "-"
            summary.append([_METRIC_NAMES[name], fmt(results[name]["mAP"]), ci])
    per_class = [[c, *(fmt(results[m]["per_class"][c]) for m in AT_METRICS if m in results)] for c in classes]
    per_class.append(["mAP", *(fmt(results[m]["mAP"]) for m in AT_METRICS if m in results)])
    first = next(iter(intervals.values()), None)
    interval_note = (
        f"95 % percentile bootstrap over {first['rounds']} resamples of the {first['chunks']} chunks of "
        f"{first['chunk_s']:g} s (of one half) that the games hold, drawn with replacement and each scored as a "
        "split of its own. The interval says how much the number could move on other minutes of similar play; "
        "with two test games it is wide, and two models whose intervals overlap are not shown apart by it."
        + (
            f" The games were too short for {first['chunk_s_asked']:g} s chunks: shorter ones were used, so "
            "the interval is narrower than the play would justify."
            if first["chunk_s"] < first["chunk_s_asked"]
            else ""
        )
        if first
        else "no intervals: the games hold no events"
    )
    team = errors["team_confusion"]
    team_rows = [[f"true {t}", *(team[t][p] for p in ("left", "right"))] for t in ("left", "right")]
    figures = {
        "ap_vs_delta": "Per-class AP against delta. A class that gains a lot from 1 to 5 s is found, but late or "
        "early; one flat and low is missed or confused.",
        "pr_curves": "Precision and recall as the confidence threshold falls; the 11-point AP is the area the "
        "curve's upper envelope covers.",
        "offsets": "Timing offsets of the matched pairs (a wider window than the metric's); a median away from 0 "
        "is a systematic delay.",
        "confusion": "Rows: what was predicted; columns: the ground truth it sat on within the window (the "
        "diagonal are hits, 'none' is background); the 'missed' row counts the events nobody matched.",
        "bootstrap": "The bootstrap distributions, the value on the games (black) and the interval (red).",
    }
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Evaluation report: {html.escape(report['split'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Evaluation report: {html.escape(report['split'])} split</h1>",
        f"<p class=note>{report['games']} game(s), {errors['ground_truth']} ground-truth events, "
        f"{report['num_predictions']} predictions; predictions: {html.escape(report['source'])}</p>",
        "<h2>Headline metrics</h2>",
        _table(["metric", "value", "95 % interval"], summary, "summary"),
        f"<p class=note>{html.escape(interval_note)}</p>",
        "<h2>Per-class AP (SoccerNet mAP at delta = 1 ... 5 s)</h2>",
        _table(["class", *(f"delta {m[2:]} s" for m in AT_METRICS if m in results)], per_class, "per-class"),
    ]
    for name in FIGURES:
        if name in images:
            data = base64.b64encode(images[name]).decode()
            parts.append(
                f"<h2>{html.escape(name.replace('_', ' '))}</h2><p class=note>{html.escape(figures[name])}</p>"
            )
            parts.append(f'<img id="fig-{name}" alt="{name}" src="data:image/png;base64,{data}">')
    shown = report.get("display_thresholds") or []
    if shown:
        target = report.get("target_precision")
        parts.append(
            f"<h2>Display thresholds recorded on val{f' (target precision {target:g})' if target else ''}</h2>"
        )
        parts.append(_table(["class", "threshold", "rule", "val precision", "precision here", "recall here"],
                            [[r["class"], f"{r['threshold']:.3f}", r["rule"] or "-", fmt(r["val_precision"]),
                              fmt(r["precision"]), fmt(r["recall"])] for r in shown], "display-thresholds"))  # fmt: skip
    parts += [
        f"<h2>Teams: who acted, on the hits (delta = {errors['delta_s']:g} s, confidence >= {errors['threshold']:g})</h2>",
        _table(["", "predicted left", "predicted right"], team_rows, "team-confusion"),
        f"<h2>The worst false alarms (confidence >= {errors['threshold']:g})</h2>",
        _table(
            ["game", "half", "time", "predicted", "team", "confidence", "ground truth near"],
            _event_rows(errors["false_alarms"], "confidence", True),
            "false-alarms",
        ),  # fmt: skip
        "<h2>Misses (ground truth no prediction above the threshold matched)</h2>",
        "<p class=note>best confidence: the highest any prediction of the class had within the window.</p>",
        _table(
            ["game", "half", "time", "class", "team", "best confidence"],
            _event_rows(errors["misses"], "best_confidence", False),
            "misses",
        ),  # fmt: skip
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    out_dir: Path,
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str],
    results: Mapping[str, Any],
    split: str,
    source: str,
    threshold: float = 0.5,
    rounds: int = 500,
    chunk_s: float = 60.0,
    recorded: Mapping[str, Any] | None = None,
) -> Path:
    """Write report.html, its PNGs and report.json into ``out_dir``; returns the page's path. ``results`` are
    the evaluator's (``spotting_results`` on the same ground truth and predictions). ``recorded``: the model's
    selection.json, whose per-class display thresholds are then listed with their precision and recall here."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pr = precision_recall(ground_truth, predictions, classes, 1)
    errors = error_analysis(ground_truth, predictions, classes, threshold=threshold)
    intervals = bootstrap_intervals(ground_truth, predictions, classes, chunk_s=chunk_s, rounds=rounds)
    point = {name: results[name]["mAP"] for name in intervals}
    images = {
        "ap_vs_delta": figure_ap_vs_delta(results, classes),
        "pr_curves": figure_pr_curves(pr, classes),
        "offsets": figure_offsets(errors, classes),
        "confusion": figure_confusion(errors, classes),
    }
    if intervals:
        images["bootstrap"] = figure_bootstrap(intervals, point)
    report = {
        "split": split,
        "source": source,
        "games": len(ground_truth),
        "num_predictions": sum(len(v) for v in predictions.values()),
        "classes": list(classes),
        "results": results,
        "intervals": intervals,
        "errors": errors,
        "pr_ap_at1": pr["ap"],
        "display_thresholds": display_threshold_rows(pr, recorded or {}),
        "target_precision": (recorded or {}).get("target_precision"),
    }
    for name, data in images.items():
        atomic_write_bytes(out_dir / f"{name}.png", data)
    compact = {**report, "intervals": {k: {kk: vv for kk, vv in v.items() if kk != "values"}
                                       for k, v in intervals.items()}}  # fmt: skip
    store_json(out_dir / "report.json", compact)
    page = out_dir / "report.html"
    atomic_write_text(page, render_html(report, images))
    return page
