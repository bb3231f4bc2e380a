"""SoccerNet's action-spotting mAP and Team mAP, vectorised (E2E-Spot's frame mAP is ``util.metrics.frame``).

``soccernet_maps`` gives the numbers of ``SoccerNet.Evaluation.ActionSpotting.evaluate`` (called with
``framerate=25``, ``version=2`` and the classes' dictionary) on the same ground truth and predictions, following
every rule of that code (SoccerNet package 0.2.0):

- each half is a vector of 120 * 60 * 25 frames; a position becomes frame ``int(25 * (ms / 1000))`` in floating
  point (2280 ms is frame 56); frames past the vector's end go to its last frame; an event at the same half,
  frame and class as an earlier one replaces it (ground truth and predictions alike); labels outside the classes
  are ignored; a prediction counts only when its confidence is >= 0;
- a ground-truth event is "not shown" (-1) or visible (+1); each prediction inherits the visibility of the
  nearest ground-truth event of its class in its half (the official ``closest`` vector), or "not shown" when the
  half has none;
- per half and class, ground-truth events in frame order each take the highest-confidence prediction not yet
  taken with |frame difference| <= delta * 25 / 2 (ties: the earliest frame);
- precision and recall at the 200 thresholds ``linspace(0, 1, 200)`` (confidence >= threshold), then the
  11-point interpolated AP; mAP is the mean over all classes (a class without ground truth has AP 0);
- ``at1`` ... ``at5`` use delta = 1 ... 5 s; ``tight`` (1 ... 5 s) and ``loose`` (5 ... 60 s by 5) integrate over
  delta with the trapezoidal rule; the "not shown" mAP of tight/loose is scaled by 17 / 13 as the official code
  does (its per-class values are not).

Team mAP (``team_maps``; SoccerNet-Ball 2025): one AP per (class, team) pair with the machinery above; a class's
team AP is the average of its left and right APs weighted by their ground-truth counts (the sums of their label
vectors: visible +1, not shown -1); Team mAP is the mean over classes. Where the official code divides 0 by 0
(a class whose two counts sum to 0) this gives 0.

Inputs are plain data: ``{game: [event, ...]}``, where an event is a dict with ``label``; a position as
``position`` or ``position_ms`` (ms, number or string, the official rounding applies) or ``frame`` (already at
25 fps); ``half`` (else the first character of ``gameTime``, else 1; halves other than 1 and 2 are ignored, as
officially); ground truth: ``visibility`` (default visible), predictions: ``confidence`` or ``score``; ``team``
("left" / "right") for Team mAP. Labels-ball.json annotations and results_spotting.json predictions can be passed
as they are; ``labels_by_game`` / ``predictions_by_game`` convert the per-video formats of this toolkit.

One idea, over 500 lines on purpose: the official evaluator's rules above, step by step (events to frames, the greedy
matching, per-delta APs, the averages over deltas and teams), which only hold together and are checked together
against SoccerNet's own code (tests/test_score.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from util.io import DataError
from util.soccernet import CLASSES, TEAMS

log = logging.getLogger(__name__)

SOCCERNET_FPS = 25
HALF_MINUTES = 120  # the official evaluator's per-half vector covers 120 minutes
SOCCERNET_HALVES = (1, 2)
METRIC_DELTAS_S: dict[str, tuple[int, ...]] = {
    "at1": (1,),
    "at2": (2,),
    "at3": (3,),
    "at4": (4,),
    "at5": (5,),
    "tight": (1, 2, 3, 4, 5),
    "loose": tuple(range(5, 65, 5)),
}
METRICS = tuple(METRIC_DELTAS_S)
TEAM_METRICS = ("team_at1", "team_at2", "team_at3", "team_at4", "team_at5", "team_tight")
NUM_THRESHOLDS = 200
UNSHOWN_SCALE = 17 / 13  # a SoccerNet-v2 leftover in the official code, applied to tight/loose only
_CHUNK_PREDICTIONS = 1 << 18  # bounds the memory of the range-maximum tables

EventsByGame = Mapping[str, Sequence[Mapping[str, Any]]]


# ---- events -> deduplicated (segment, frame, value) arrays


def _half_of_game_time(event: Mapping[str, Any]) -> int:
    game_time = event.get("gameTime")
    return int(str(game_time)[0]) if game_time else 1


def _frame_without_position(event: Mapping[str, Any], framerate: int) -> int:
    if event.get("frame") is not None:
        return int(event["frame"])
    game_time = str(event.get("gameTime", ""))
    if len(game_time) >= 5:  # second precision, as the official label reader does without a position
        return framerate * (int(game_time[-2:]) + 60 * int(game_time[-5:-3]))
    raise ValueError("has no position, frame or gameTime")


@dataclass
class _Spots:
    """Deduplicated events of every (game, half, class) segment, sorted by segment then frame."""

    seg: np.ndarray  # unit * num_classes + class, unit = game index * 2 + half - 1
    frame: np.ndarray
    value: np.ndarray  # ground truth: +1 visible / -1 not shown; predictions: confidence


def _flatten(
    events_by_game: EventsByGame,
    games: Mapping[str, int],
    index: Mapping[str, int],
    by_team: bool,
    framerate: int,
    truth: bool,
) -> _Spots:
    """Events -> spots; with ``by_team`` the class is the (class, team) pair ``2 * class + team``."""
    num_classes = len(index) * (2 if by_team else 1)
    team_index = {t: i for i, t in enumerate(TEAMS)}
    segs: list[int] = []
    frames: list[int] = []
    values: list[float] = []
    for game, events in events_by_game.items():
        if game not in games:
            continue
        unit = games[game] * 2
        for i, event in enumerate(events):
            try:  # one loop with the common cases inline: this is most of the metric's time
                cls = index.get(event["label"])
                if cls is None:
                    continue
                if by_team:
                    team = team_index.get(event.get("team"))
                    if team is None:
                        continue
                    cls = 2 * cls + team
                half = event.get("half")
                half = int(half) if half is not None else _half_of_game_time(event)
                if half not in SOCCERNET_HALVES:
                    continue
                position = event.get("position")
                if position is None:
                    position = event.get("position_ms")
                if position is None:
                    frame = _frame_without_position(event, framerate)
                else:
                    try:
                        position = int(position)
                    except ValueError:
                        position = int(float(position))
                    # The official expression, float rounding included (2280 ms -> frame 56).
                    frame = int(framerate * (position / 1000))
                if truth:
                    value = -1.0 if event.get("visibility") == "not shown" else 1.0
                else:
                    value = event.get("confidence")
                    value = float(value if value is not None else event["score"])
            except (KeyError, TypeError, ValueError) as e:
                what = "ground truth" if truth else "prediction"
                raise DataError(f"{what} of game {game!r}, event {i} ({dict(event)}): {e}") from None
            segs.append((unit + half - 1) * num_classes + cls)
            frames.append(frame)
            values.append(value)
    seg, frame = np.array(segs, np.int64), np.array(frames, np.int64)
    return _dedupe(seg, frame, np.array(values, np.float64), framerate)


def _dedupe(seg: np.ndarray, frame: np.ndarray, value: np.ndarray, framerate: int) -> _Spots:
    size = HALF_MINUTES * 60 * framerate
    frame = np.where(
        frame < 0, frame + size, frame
    )  # the official vectors index negative frames from the end
    frame = np.clip(frame, 0, size - 1)
    key = seg * size + frame
    # The last event written at a (segment, frame) wins: unique over the reversed list keeps the last one.
    unique, first_in_reversed = np.unique(key[::-1], return_index=True)
    last = len(key) - 1 - first_in_reversed
    return _Spots(seg=unique // size, frame=unique % size, value=value[last])


# ---- matching


def _range_argmax_table(scores: np.ndarray, max_len: int) -> list[np.ndarray]:
    """table[k][i] = index of the maximum of scores[i : i + 2**k] (ties: the earliest)."""
    table = [np.arange(len(scores), dtype=np.int64)]
    k = 1
    while (1 << k) <= max_len:
        prev, half = table[-1], 1 << (k - 1)
        n = len(scores) - (1 << k) + 1
        a, b = prev[:n], prev[half : half + n]
        table.append(np.where(scores[b] > scores[a], b, a))
        k += 1
    return table


def _range_argmax(scores: np.ndarray, table: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Index of the maximum of scores[lo:hi] per window (ties: the earliest); -1 for an empty window."""
    length = hi - lo
    best = np.full(len(lo), -1, np.int64)
    some = length > 0
    if not some.any():
        return best
    lo, hi, length = lo[some], hi[some], length[some]
    k = np.floor(np.log2(length)).astype(np.int64)
    k = np.where((1 << k) > length, k - 1, k)  # guard the float log at powers of two
    k = np.where((1 << (k + 1)) <= length, k + 1, k)
    a = np.empty(len(lo), np.int64)
    b = np.empty(len(lo), np.int64)
    for level in np.unique(k):
        at = k == level
        a[at] = table[level][lo[at]]
        b[at] = table[level][hi[at] - (1 << level)]
    pick = np.where(scores[b] > scores[a], b, np.where(scores[a] > scores[b], a, np.minimum(a, b)))
    best[some] = pick
    return best


def _match_chunk(gt_key: np.ndarray, pred_key: np.ndarray, scores: np.ndarray, radius: int) -> np.ndarray:
    """Greedy matching of sorted ground-truth keys to sorted prediction keys; True for each matched prediction."""
    taken = bytearray(len(pred_key))
    taken_np = np.frombuffer(taken, dtype=np.uint8)
    if len(gt_key) == 0 or len(pred_key) == 0:
        return taken_np.astype(bool)
    lo = np.searchsorted(pred_key, gt_key - radius, "left")
    hi = np.searchsorted(pred_key, gt_key + radius, "right")
    table = _range_argmax_table(scores, int((hi - lo).max()))
    best = _range_argmax(scores, table, lo, hi)
    # Until some ground-truth event's best prediction was already the best of an earlier one, each takes its own.
    valid = np.flatnonzero(best >= 0)
    _, first = np.unique(best[valid], return_index=True)
    repeated = np.ones(len(valid), bool)
    repeated[first] = False
    start = int(valid[np.argmax(repeated)]) if repeated.any() else len(best)
    taken_np[best[valid[valid < start]]] = 1
    best_l, lo_l, hi_l = best.tolist(), lo.tolist(), hi.tolist()
    for i in range(start, len(best_l)):
        b = best_l[i]
        if b < 0:
            continue
        if not taken[b]:
            taken[b] = 1
            continue
        lo_i, hi_i = lo_l[i], hi_l[i]
        window = np.where(taken_np[lo_i:hi_i] != 0, -1.0, scores[lo_i:hi_i])  # scores are >= 0
        j = int(window.argmax())
        if window[j] >= 0:
            taken[lo_i + j] = 1
    return taken_np.astype(bool)


# ---- per-delta APs


@dataclass
class _Prepared:
    num_classes: int
    size: int  # frames of the official per-half vector
    gt: _Spots
    pred: _Spots
    counts: np.ndarray  # (C,) sum of label-vector values per class
    n_visible: np.ndarray  # (C,)
    n_unshown: np.ndarray  # (C,)
    order: np.ndarray  # predictions sorted by class, then confidence
    ends: np.ndarray  # (C, 1) end of each class in ``order``
    at_threshold: np.ndarray  # (C, T) first position in ``order`` of each class with confidence >= threshold
    visible: np.ndarray  # (P,) prediction's closest ground truth is visible, in ``order``
    unshown: np.ndarray  # (P,) ... is not shown (or the half has none), in ``order``


def _closest_values(gt: _Spots, pred: _Spots, size: int) -> np.ndarray:
    """Visibility (+1/-1) of the ground-truth region each prediction falls in; -1 where the segment has none."""
    out = np.full(len(pred.seg), -1.0)
    if len(gt.seg) == 0 or len(pred.seg) == 0:
        return out
    span = 2 * size  # (f[k] + f[k+1]) // 2 < size: a segment's keys stay below the next segment's
    pred_key = pred.seg * span + pred.frame
    same = gt.seg[1:] == gt.seg[:-1]
    # The official regions: event k of a segment owns [(f[k-1] + f[k]) // 2, (f[k] + f[k+1]) // 2).
    bounds = (gt.seg[1:] * span + (gt.frame[:-1] + gt.frame[1:]) // 2)[same]
    seg_first = np.searchsorted(gt.seg, pred.seg, "left")
    has_gt = (seg_first < len(gt.seg)) & (gt.seg[np.minimum(seg_first, len(gt.seg) - 1)] == pred.seg)
    inside = np.searchsorted(bounds, pred_key, "right") - np.searchsorted(bounds, pred.seg * span, "left")
    idx = np.minimum(seg_first + inside, len(gt.seg) - 1)
    out[has_gt] = gt.value[idx[has_gt]]
    return out


def _prepare(gt: _Spots, pred: _Spots, num_classes: int, framerate: int) -> _Prepared:
    # The official code reads only predictions with confidence >= 0 (NaN drops out too).
    keep = pred.value >= 0
    pred = _Spots(pred.seg[keep], pred.frame[keep], pred.value[keep])
    gt_cls = gt.seg % num_classes
    counts = np.bincount(gt_cls, weights=gt.value, minlength=num_classes)
    n_visible = np.bincount(gt_cls[gt.value > 0], minlength=num_classes)
    n_unshown = np.bincount(gt_cls[gt.value < 0], minlength=num_classes)
    size = HALF_MINUTES * 60 * framerate
    closest = _closest_values(gt, pred, size)
    cls = pred.seg % num_classes
    order = np.lexsort((pred.value, cls))
    sorted_cls, sorted_scores = cls[order], pred.value[order]
    starts = np.searchsorted(sorted_cls, np.arange(num_classes), "left")
    ends = np.searchsorted(sorted_cls, np.arange(num_classes), "right")
    thresholds = np.linspace(0, 1, NUM_THRESHOLDS)
    at_threshold = (
        np.stack(
            [
                s + np.searchsorted(sorted_scores[s:e], thresholds, "left")
                for s, e in zip(starts, ends, strict=True)
            ]
        )
        if num_classes
        else np.zeros((0, NUM_THRESHOLDS), np.int64)
    )
    return _Prepared(
        num_classes=num_classes,
        size=size,
        gt=gt,
        pred=pred,
        counts=counts,
        n_visible=n_visible,
        n_unshown=n_unshown,
        order=order,
        ends=ends[:, None],
        at_threshold=at_threshold,
        visible=closest[order] > 0.5,
        unshown=closest[order] < -0.5,
    )


def _match(prep: _Prepared, radius: int) -> np.ndarray:
    """Matched flag of every prediction (in ``prep.pred`` order) for a window of +-radius frames."""
    gt, pred = prep.gt, prep.pred
    stride = prep.size + 2 * radius + 1  # keeps every window inside its own segment
    gt_key, pred_key = gt.seg * stride + gt.frame, pred.seg * stride + pred.frame
    matched = np.zeros(len(pred_key), bool)
    # Chunks of whole segments bound the memory of the range-maximum tables.
    seg_ends = np.flatnonzero(np.diff(pred.seg)) + 1
    cuts = [0]
    for end in seg_ends.tolist():
        if end - cuts[-1] >= _CHUNK_PREDICTIONS:
            cuts.append(end)
    cuts.append(len(pred_key))
    for p0, p1 in zip(cuts[:-1], cuts[1:], strict=False):
        if p1 <= p0:
            continue
        g0 = np.searchsorted(gt.seg, pred.seg[p0], "left")
        g1 = np.searchsorted(gt.seg, pred.seg[p1 - 1], "right")
        matched[p0:p1] = _match_chunk(gt_key[g0:g1], pred_key[p0:p1], pred.value[p0:p1], radius)
    return matched


def _interpolated_ap(tp: np.ndarray, n_pred: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """11-point interpolated AP per class from (C, T) true-positive and prediction counts at each threshold."""
    tp = tp.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / n_pred)
        recall = np.nan_to_num(tp / n_gt[:, None])
    levels = np.arange(11) / 10
    reached = recall[None] >= levels[:, None, None]
    best = np.where(reached, precision[None], 0.0).max(axis=2, initial=0.0)
    return best.sum(axis=0) / 11


def _counts(prep: _Prepared, matched: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(C, T) true positives and predictions at each threshold, of the predictions in ``mask`` (all: None);
    ``matched`` is in ``prep.order``."""
    counted = np.ones(len(matched), bool) if mask is None else mask
    cum_pred = np.concatenate([[0], np.cumsum(counted)])
    cum_tp = np.concatenate([[0], np.cumsum(matched & counted)])
    return cum_tp[prep.ends] - cum_tp[prep.at_threshold], cum_pred[prep.ends] - cum_pred[prep.at_threshold]


def _delta_aps(prep: _Prepared, delta_frames: int) -> dict[str, np.ndarray]:
    """Per-class AP (all, visible, not shown) at one delta in frames."""
    radius = math.floor(delta_frames / 2)
    matched = _match(prep, radius)[prep.order]
    out = {}
    for name, mask, n_gt in (
        ("all", None, prep.n_visible + prep.n_unshown),
        ("visible", prep.visible, prep.n_visible),
        ("unshown", prep.unshown, prep.n_unshown),
    ):
        out[name] = _interpolated_ap(*_counts(prep, matched, mask), n_gt)
    return out


def _threshold_counts(
    prep: _Prepared, delta_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(C, T) true positives and predictions at each threshold, (C,) ground-truth counts and the (C,) APs
    they give, at one delta (every prediction, visible or not): what the precision-recall curves draw."""
    matched = _match(prep, math.floor(delta_frames / 2))[prep.order]
    tp, n_pred = _counts(prep, matched, None)
    n_gt = prep.n_visible + prep.n_unshown
    return tp, n_pred, n_gt, _interpolated_ap(tp, n_pred, n_gt)


def _combine(per_delta: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """One metric from its deltas' per-class APs, as the official ``average_mAP`` combines them."""
    means = {k: [float(np.mean(d[k])) for d in per_delta] for k in ("all", "visible", "unshown")}
    if len(per_delta) == 1:
        d = per_delta[0]
        return {
            "mAP": means["all"][0],
            "per_class": d["all"],
            "mAP_visible": means["visible"][0],
            "per_class_visible": d["visible"],
            "mAP_unshown": means["unshown"][0],
            "per_class_unshown": d["unshown"],
        }

    def trapezoid(values: list) -> Any:
        integral = 0.0
        for i in range(len(values) - 1):
            integral += (values[i] + values[i + 1]) / 2
        return integral / (len(values) - 1)

    return {
        "mAP": trapezoid(means["all"]),
        "per_class": trapezoid([d["all"] for d in per_delta]),
        "mAP_visible": trapezoid(means["visible"]),
        "per_class_visible": trapezoid([d["visible"] for d in per_delta]),
        "mAP_unshown": trapezoid(means["unshown"]) * UNSHOWN_SCALE,
        "per_class_unshown": trapezoid([d["unshown"] for d in per_delta]),
    }


# ---- public API: SoccerNet mAP and Team mAP


def _game_index(ground_truth: EventsByGame) -> dict[str, int]:
    return {game: i for i, game in enumerate(ground_truth)}


def _check_metrics(metrics: Sequence[str], known: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(known)}")


def _metric_results(
    prep: _Prepared, metrics: Sequence[str], framerate: int, delta_of: Callable[[str], tuple[int, ...]]
) -> dict[str, dict[str, Any]]:
    cache: dict[int, dict[str, np.ndarray]] = {}
    out = {}
    for metric in metrics:
        per_delta = []
        for delta_s in delta_of(metric):
            if delta_s not in cache:
                cache[delta_s] = _delta_aps(prep, delta_s * framerate)
            per_delta.append(cache[delta_s])
        out[metric] = _combine(per_delta)
    return out


def _per_class_dict(values: Any, classes: Sequence[str]) -> dict[str, float]:
    return {c: float(v) for c, v in zip(classes, values, strict=True)}


def soccernet_maps(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str] = CLASSES,
    metrics: Sequence[str] = METRICS,
    framerate: int = SOCCERNET_FPS,
) -> dict[str, dict[str, Any]]:
    """SoccerNet action-spotting mAP for each of ``metrics`` (``at1`` ... ``at5``, ``tight``, ``loose``).

    ``ground_truth`` and ``predictions``: ``{game: [event, ...]}`` (module docstring); the games evaluated are the
    keys of ``ground_truth`` (a game without predictions has none; predictions of other games are ignored).
    Returns ``{metric: {"mAP", "per_class": {class: AP}, "mAP_visible", "per_class_visible", "mAP_unshown",
    "per_class_unshown"}}`` with fractions in [0, 1].
    """
    _check_metrics(metrics, METRICS)
    games = _game_index(ground_truth)
    index = {c: i for i, c in enumerate(classes)}
    gt = _flatten(ground_truth, games, index, False, framerate, truth=True)
    pred = _flatten(predictions, games, index, False, framerate, truth=False)
    prep = _prepare(gt, pred, len(classes), framerate)
    results = _metric_results(prep, metrics, framerate, METRIC_DELTAS_S.__getitem__)
    for r in results.values():
        for key in ("per_class", "per_class_visible", "per_class_unshown"):
            r[key] = _per_class_dict(r[key], classes)
    return {m: _ordered(r) for m, r in results.items()}


def soccernet_map(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str] = CLASSES,
    metric: str = "at1",
    framerate: int = SOCCERNET_FPS,
) -> dict[str, Any]:
    """One metric of ``soccernet_maps``."""
    return soccernet_maps(ground_truth, predictions, classes, (metric,), framerate)[metric]


def _ordered(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("mAP", "per_class", "mAP_visible", "per_class_visible", "mAP_unshown", "per_class_unshown")
    return {k: (float(result[k]) if k.startswith("mAP") else result[k]) for k in keys}


def _team_weighted(per_pair: np.ndarray, counts: np.ndarray) -> np.ndarray:
    weighted = np.asarray(per_pair, np.float64) * counts
    total = counts[0::2] + counts[1::2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (weighted[0::2] + weighted[1::2]) / total
    return np.where(total != 0, out, 0.0)


def team_maps(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str] = CLASSES,
    metrics: Sequence[str] = TEAM_METRICS,
    framerate: int = SOCCERNET_FPS,
) -> dict[str, dict[str, Any]]:
    """Team mAP (SoccerNet-Ball 2025) for each of ``metrics`` (``team_at1`` ... ``team_at5``, ``team_tight``;
    ``team_loose`` works too). Events need ``team``: those without one (or with another value) are ignored.

    Returns ``{metric: {"mAP", "per_class": {class: team AP}, "mAP_visible", "per_class_visible", "mAP_unshown",
    "per_class_unshown"}}``, each class's value the count-weighted average of its left and right APs.
    """
    team_known = tuple(f"team_{m}" for m in METRICS)
    _check_metrics(metrics, team_known)
    games = _game_index(ground_truth)
    index = {c: i for i, c in enumerate(classes)}
    gt = _flatten(ground_truth, games, index, True, framerate, truth=True)
    pred = _flatten(predictions, games, index, True, framerate, truth=False)
    prep = _prepare(gt, pred, 2 * len(classes), framerate)
    results = _metric_results(prep, metrics, framerate, lambda m: METRIC_DELTAS_S[m.removeprefix("team_")])
    out = {}
    for metric, r in results.items():
        entry = {}
        for name, per_class in (
            ("", "per_class"),
            ("_visible", "per_class_visible"),
            ("_unshown", "per_class_unshown"),
        ):
            team_ap = _team_weighted(r[per_class], prep.counts)
            entry[f"mAP{name}"] = float(np.mean(team_ap)) if len(team_ap) else 0.0
            entry[per_class] = _per_class_dict(team_ap, classes)
        out[metric] = _ordered(entry)
    return out


def team_map(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str] = CLASSES,
    metric: str = "team_at1",
    framerate: int = SOCCERNET_FPS,
) -> dict[str, Any]:
    """One metric of ``team_maps``."""
    return team_maps(ground_truth, predictions, classes, (metric,), framerate)[metric]
