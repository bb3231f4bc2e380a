"""Why a model scores what it scores (``eval_soccernet_ball.py --report``): the official matching as (prediction,
ground truth) pairs, precision-recall curves, class and team confusions, the worst false alarms and misses, and
bootstrap intervals of mAP@1 and Team mAP@1.

Everything starts from the evaluator's own spots (``util.metrics.spotting``): the same 25 fps frames, the same
deduplication, predictions with confidence >= 0, and the same greedy matching (ground truth in frame order, each
taking the highest-confidence prediction not yet taken within +-floor(delta * 25 / 2) frames), so a curve's AP is
the printed AP and a pair is what the metric counted as a hit.

The intervals resample contiguous chunks of the games (``chunk_s`` seconds of one half each) with replacement: a
test split of two games holds only a few dozen minutes of play, and events within a chunk are not independent, so
resampling single events would claim far more certainty than two games can give.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from util.metrics.results import has_team
from util.metrics.spotting import (
    NUM_THRESHOLDS,
    SOCCERNET_FPS,
    EventsByGame,
    _delta_aps,
    _flatten,
    _prepare,
    _Spots,
    _team_weighted,
    _threshold_counts,
)
from util.soccernet import TEAMS


@dataclass(frozen=True)
class Spot:
    """One deduplicated event as the evaluator sees it."""

    game: str
    half: int
    frame: int  # at 25 fps (the official rule)
    label: str
    value: float  # ground truth: +1 visible / -1 not shown; a prediction: its confidence
    team: str | None = None

    @property
    def seconds(self) -> float:
        return self.frame / SOCCERNET_FPS


def _spots_of(flat: _Spots, games: Sequence[str], classes: Sequence[str], teams: dict | None) -> list[Spot]:
    out = []
    num_classes = len(classes)
    for seg, frame, value in zip(flat.seg.tolist(), flat.frame.tolist(), flat.value.tolist(), strict=True):
        unit, cls = divmod(seg, num_classes)
        game, half = games[unit // 2], unit % 2 + 1
        team = None if teams is None else teams.get((unit, cls, frame))
        out.append(Spot(game, half, frame, classes[cls], value, team))
    return out


def _team_lookup(flat: _Spots, num_classes: int) -> dict[tuple[int, int, int], str]:
    """(unit, class, frame) -> team of the by-team spots (the last written wins, as in deduplication)."""
    out = {}
    for seg, frame in zip(flat.seg.tolist(), flat.frame.tolist(), strict=True):
        unit, pair = divmod(seg, 2 * num_classes)
        out[(unit, pair // 2, frame)] = TEAMS[pair % 2]
    return out


def evaluator_spots(
    ground_truth: EventsByGame, predictions: EventsByGame, classes: Sequence[str]
) -> tuple[list[Spot], list[Spot]]:
    """Ground truth and predictions (confidence >= 0) as the evaluator reads them, with their teams where given;
    sorted by game, half, class, frame."""
    games = list(ground_truth)
    index_of = {g: i for i, g in enumerate(games)}
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for events, truth in ((ground_truth, True), (predictions, False)):
        flat = _flatten(events, index_of, index, False, SOCCERNET_FPS, truth=truth)
        if not truth:
            keep = flat.value >= 0
            flat = _Spots(flat.seg[keep], flat.frame[keep], flat.value[keep])
        teams = _team_lookup(
            _flatten(events, index_of, index, True, SOCCERNET_FPS, truth=truth), len(classes)
        )
        out.append(_spots_of(flat, games, classes, teams))
    return out[0], out[1]


def _groups(spots: Sequence[Spot]) -> dict[tuple, tuple[list[int], list[int]]]:
    """(game, half, label) -> (frames, indices into ``spots``), in frame order."""
    out: dict[tuple, tuple[list[int], list[int]]] = {}
    for i in sorted(range(len(spots)), key=lambda i: spots[i].frame):
        s = spots[i]
        frames, indices = out.setdefault((s.game, s.half, s.label), ([], []))
        frames.append(s.frame)
        indices.append(i)
    return out


def _near(groups: dict, key: tuple, frame: int, radius: int) -> list[int]:
    """Indices of the spots of group ``key`` within ``radius`` frames of ``frame``, in frame order."""
    frames, indices = groups.get(key, ((), ()))
    return list(
        indices[bisect.bisect_left(frames, frame - radius) : bisect.bisect_right(frames, frame + radius)]
    )


def match_pairs(gt: Sequence[Spot], pred: Sequence[Spot], delta_s: float = 1.0) -> dict[int, int]:
    """The official greedy matching at ``delta_s``: {index in ``pred``: index in ``gt``} of the matched pairs."""
    radius = int(np.floor(delta_s * SOCCERNET_FPS / 2))
    groups = _groups(pred)
    pairs: dict[int, int] = {}
    for g_index, g in sorted(enumerate(gt), key=lambda x: (x[1].game, x[1].half, x[1].label, x[1].frame)):
        best, best_value = -1, -1.0
        for i in _near(groups, (g.game, g.half, g.label), g.frame, radius):
            # In frame order: ">" keeps the earliest of equal confidences, as officially.
            if i not in pairs and pred[i].value > best_value:
                best, best_value = i, pred[i].value
        if best >= 0:
            pairs[best] = g_index
    return pairs


def mark_events(
    truth: Sequence[dict], shown: Sequence[dict], fps: float, delta_s: float = 1.0
) -> tuple[list[bool], list[bool]]:
    """Of one video's ground truth (``position_ms``) and shown events (``frame`` at ``fps``, ``score``, ``label``):
    which events were found and which shown events were right, under SoccerNet's matching at ``delta_s`` (the
    evaluator's 25 fps frames, each event taking the highest-scoring shown event of its class in the window)."""
    from util.soccernet import frame_to_position_ms, position_to_frame

    gt = [
        Spot("v", 1, position_to_frame(int(e["position_ms"]), SOCCERNET_FPS), e["label"], 1.0) for e in truth
    ]
    pred = [Spot("v", 1, position_to_frame(frame_to_position_ms(int(e["frame"]), fps), SOCCERNET_FPS), e["label"],
                 float(e["score"])) for e in shown]  # fmt: skip
    pairs = match_pairs(gt, pred, delta_s)
    found = set(pairs.values())
    return [j in found for j in range(len(gt))], [i in pairs for i in range(len(pred))]


# ---- precision and recall


def precision_recall(
    ground_truth: EventsByGame, predictions: EventsByGame, classes: Sequence[str], delta_s: int = 1
) -> dict[str, Any]:
    """Per class, precision and recall at the evaluator's 200 confidence thresholds (linspace(0, 1, 200)) and the
    11-point AP they give (= the metric's per-class AP at ``delta_s``): {"thresholds", "precision": {class: array},
    "recall": {...}, "predictions": {class: predictions counted at each threshold}, "ap": {class: AP}} (where no
    prediction reaches a threshold, precision is 0, as the evaluator takes it)."""
    games = {g: i for i, g in enumerate(ground_truth)}
    index = {c: i for i, c in enumerate(classes)}
    gt = _flatten(ground_truth, games, index, False, SOCCERNET_FPS, truth=True)
    pred = _flatten(predictions, games, index, False, SOCCERNET_FPS, truth=False)
    prep = _prepare(gt, pred, len(classes), SOCCERNET_FPS)
    tp, n_pred, n_gt, ap = _threshold_counts(prep, delta_s * SOCCERNET_FPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / n_pred)
        recall = np.nan_to_num(tp / n_gt[:, None])
    return {
        "thresholds": np.linspace(0, 1, NUM_THRESHOLDS),
        "precision": {c: precision[i] for i, c in enumerate(classes)},
        "recall": {c: recall[i] for i, c in enumerate(classes)},
        "predictions": {c: n_pred[i] for i, c in enumerate(classes)},
        "ap": {c: float(ap[i]) for i, c in enumerate(classes)},
    }


def precision_thresholds(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str],
    target_precision: float,
    delta_s: int = 1,
) -> dict[str, dict[str, Any]]:
    """Per class, the display threshold that holds ``target_precision`` (at ``delta_s``): the lowest of the
    evaluator's thresholds from which precision stays >= the target at every higher threshold that keeps a
    prediction (the most recall at that precision); a class that never reaches it gets the threshold of its best
    F1 instead. {class: {"threshold", "precision", "recall", "f1", "rule": "precision" | "f1" | "none"}} ("none":
    no prediction of the class was ever right here, e.g. it has no ground truth: no evidence for a threshold, so
    it is None and the caller's default applies)."""
    pr = precision_recall(ground_truth, predictions, classes, delta_s)
    thresholds = pr["thresholds"]
    out = {}
    for c in classes:
        precision, recall, counted = pr["precision"][c], pr["recall"][c], pr["predictions"][c] > 0
        if not counted.any() or recall.max() == 0:
            out[c] = {"threshold": None, "precision": None, "recall": None, "f1": None, "rule": "none"}
            continue
        # held[k]: precision >= target at threshold k and at every higher threshold that keeps a prediction.
        ok = ~counted | (precision >= target_precision)
        held = np.flip(np.logical_and.accumulate(np.flip(ok))) & counted
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        if held.any() and recall[held].max() > 0:
            k, rule = int(np.flatnonzero(held)[0]), "precision"
        else:
            k, rule = int(np.argmax(np.where(counted, f1, -1.0))), "f1"
        out[c] = {"threshold": float(thresholds[k]), "precision": float(precision[k]), "recall": float(recall[k]),
                  "f1": float(f1[k]), "rule": rule}  # fmt: skip
    return out


# ---- errors: confusions, offsets, the worst false alarms and misses


def nearest_other(
    gt: Sequence[Spot], groups: dict, p: Spot, classes: Sequence[str], radius: int
) -> Spot | None:
    """The ground-truth event of another class nearest to ``p`` within ``radius`` frames, if any (``groups``:
    ``_groups(gt)``)."""
    near = [
        gt[j] for c in classes if c != p.label for j in _near(groups, (p.game, p.half, c), p.frame, radius)
    ]
    return min(near, key=lambda g: abs(g.frame - p.frame), default=None)


def error_analysis(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str],
    threshold: float = 0.5,
    delta_s: float = 1.0,
    offset_delta_s: float = 5.0,
    top: int = 20,
) -> dict[str, Any]:
    """What the predictions with confidence >= ``threshold`` hit and miss under the official matching at
    ``delta_s``:

    - ``confusion``: {predicted class: {ground-truth class or "none": count}}: a hit counts on the diagonal; a
      false alarm on the nearest event of another class within the window, else on "none"; plus a "missed" row
      of the ground truth left unmatched, by class;
    - ``team_confusion``: {true team: {predicted team: count}} over the hits whose prediction has a team;
    - ``offsets``: {class: [prediction - ground truth, s]} of the pairs matched at ``offset_delta_s`` (a wider
      window than the metric's, so a model that is systematically late shows it);
    - ``false_alarms`` / ``misses``: the ``top`` highest-confidence false alarms, and the misses with the best
      confidence any same-class prediction had near them (of all predictions, below the threshold too).
    """
    gt, pred_all = evaluator_spots(ground_truth, predictions, classes)
    radius = int(np.floor(delta_s * SOCCERNET_FPS / 2))
    pred = [p for p in pred_all if p.value >= threshold]
    pairs = match_pairs(gt, pred, delta_s)
    gt_groups, pred_groups = _groups(gt), _groups(pred_all)
    confusion = {c: dict.fromkeys([*classes, "none"], 0) for c in [*classes, "missed"]}
    team_confusion = {t: dict.fromkeys(TEAMS, 0) for t in TEAMS}
    false_alarms = []
    for i, p in enumerate(pred):
        if i in pairs:
            g = gt[pairs[i]]
            confusion[p.label][g.label] += 1
            if p.team in TEAMS and g.team in TEAMS:
                team_confusion[g.team][p.team] += 1
            continue
        other = nearest_other(gt, gt_groups, p, classes, radius)
        confusion[p.label][other.label if other else "none"] += 1
        false_alarms.append({**_row(p), "near": other.label if other else None})
    matched = set(pairs.values())
    misses = []
    for j, g in enumerate(gt):
        if j in matched:
            continue
        confusion["missed"][g.label] += 1
        near = [pred_all[i].value for i in _near(pred_groups, (g.game, g.half, g.label), g.frame, radius)]
        misses.append({**_row(g, truth=True), "best_confidence": max(near) if near else None})
    offsets: dict[str, list[float]] = {c: [] for c in classes}
    for i, j in match_pairs(gt, pred, offset_delta_s).items():
        offsets[gt[j].label].append((pred[i].frame - gt[j].frame) / SOCCERNET_FPS)
    false_alarms.sort(key=lambda r: -r["confidence"])
    misses.sort(key=lambda r: -(r["best_confidence"] if r["best_confidence"] is not None else -1.0))
    return {
        "threshold": threshold,
        "delta_s": delta_s,
        "offset_delta_s": offset_delta_s,
        "predictions": len(pred),
        "hits": len(pairs),
        "ground_truth": len(gt),
        "confusion": confusion,
        "team_confusion": team_confusion,
        "offsets": offsets,
        "false_alarms": false_alarms[:top],
        "misses": misses[:top],
    }


def _row(s: Spot, truth: bool = False) -> dict[str, Any]:
    row = {"game": s.game, "half": s.half, "time_s": round(s.seconds, 2), "label": s.label, "team": s.team}
    if truth:
        row["visibility"] = "visible" if s.value > 0 else "not shown"
    else:
        row["confidence"] = s.value
    return row


# ---- bootstrap intervals


@dataclass
class _Chunked:
    """Spots split into chunks: the spots of chunk k are ``order[starts[k]:starts[k + 1]]``."""

    cls: np.ndarray
    frame: np.ndarray  # relative to its chunk's start
    value: np.ndarray
    order: np.ndarray
    starts: np.ndarray


def _chunk(flat: _Spots, num_classes: int, keys: np.ndarray, chunk_frames: int, per_unit: int) -> _Chunked:
    unit, cls = np.divmod(flat.seg, num_classes)
    chunk = flat.frame // chunk_frames
    key = np.searchsorted(keys, unit * per_unit + chunk)
    order = np.lexsort((flat.frame, cls, key))  # by chunk, then class, then frame: the evaluator's order
    starts = np.searchsorted(key[order], np.arange(len(keys) + 1), "left")
    return _Chunked(cls, flat.frame - chunk * chunk_frames, flat.value, order, starts)


def _resampled(c: _Chunked, draw: np.ndarray, num_classes: int) -> _Spots:
    """The spots of the drawn chunks, chunk j of the draw as its own half (unit j)."""
    pieces = [c.order[c.starts[k] : c.starts[k + 1]] for k in draw.tolist()]
    lengths = np.array([len(p) for p in pieces], np.int64)
    idx = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    unit = np.repeat(np.arange(len(draw), dtype=np.int64), lengths)
    return _Spots(unit * num_classes + c.cls[idx], c.frame[idx], c.value[idx])


MIN_CHUNKS = 10  # fewer chunks than this (short games): the chunks are shortened to make this many


def _covered_s(ground_truth: EventsByGame, predictions: EventsByGame, games: dict, index: dict) -> float:
    """Seconds of play the events span: per half, from 0 to its last event (ground truth or prediction)."""
    last: dict[int, int] = {}
    for events, truth in ((ground_truth, True), (predictions, False)):
        flat = _flatten(events, games, index, False, SOCCERNET_FPS, truth=truth)
        for unit, frame in zip((flat.seg // max(1, len(index))).tolist(), flat.frame.tolist(), strict=True):
            last[unit] = max(last.get(unit, 0), frame + 1)
    return sum(last.values()) / SOCCERNET_FPS


def bootstrap_intervals(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str],
    chunk_s: float = 60.0,
    rounds: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Percentile bootstrap intervals of mAP@1 (and Team mAP@1 when both sides carry teams): ``rounds`` times, as
    many chunks as the games hold are drawn with replacement and evaluated as a split of their own. Games too
    short for :data:`MIN_CHUNKS` chunks of ``chunk_s`` get shorter chunks (the length used is returned).

    Returns {"at1": {"low", "high", "level", "rounds", "chunks", "chunk_s", "chunk_s_asked", "values"},
    "team_at1": {...}}
    (``values``: the ``rounds`` resampled values)."""
    games = {g: i for i, g in enumerate(ground_truth)}
    index = {c: i for i, c in enumerate(classes)}
    asked = chunk_s
    chunk_s = min(chunk_s, _covered_s(ground_truth, predictions, games, index) / MIN_CHUNKS) or asked
    chunk_frames = max(1, int(round(chunk_s * SOCCERNET_FPS)))
    rng = np.random.default_rng(seed)
    kinds = {"at1": False}
    if has_team(ground_truth) and has_team(predictions):
        kinds["team_at1"] = True
    out = {}
    for name, by_team in kinds.items():
        n = len(classes) * (2 if by_team else 1)
        gt = _flatten(ground_truth, games, index, by_team, SOCCERNET_FPS, truth=True)
        pred = _flatten(predictions, games, index, by_team, SOCCERNET_FPS, truth=False)
        per_unit = int(max([0, *gt.frame.tolist(), *pred.frame.tolist()])) // chunk_frames + 1
        keys = np.unique(np.concatenate([gt.seg // n * per_unit + gt.frame // chunk_frames,
                                         pred.seg // n * per_unit + pred.frame // chunk_frames]))  # fmt: skip
        if len(keys) == 0:
            continue
        gt_c, pred_c = (
            _chunk(gt, n, keys, chunk_frames, per_unit),
            _chunk(pred, n, keys, chunk_frames, per_unit),
        )
        values = []
        draws = np.random.default_rng(rng.integers(1 << 62)).integers(0, len(keys), (rounds, len(keys)))
        for draw in draws:
            prep = _prepare(_resampled(gt_c, draw, n), _resampled(pred_c, draw, n), n, SOCCERNET_FPS)
            ap = _delta_aps(prep, SOCCERNET_FPS)["all"]
            if by_team:
                ap = _team_weighted(ap, prep.counts)
            values.append(float(np.mean(ap)) if len(ap) else 0.0)
        low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
        out[name] = {"low": float(low), "high": float(high), "level": level, "rounds": rounds,
                     "chunks": int(len(keys)), "chunk_s": chunk_frames / SOCCERNET_FPS, "chunk_s_asked": asked,
                     "values": values}  # fmt: skip
    return out
