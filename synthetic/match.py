"""The match of one synthetic video: the classes drawn, the players' running, the events and the ball.

Two teams of seven players run all the time; a ball travels from one acting player to the next. Each event happens
at one exact frame, with the ball at the acting player's feet. ``MARKERS`` holds the Ball classes (how often each
happens, and the colour and shape of its marker, drawn by synthetic/draw.py); ``MARKERS_V2`` the eight
SoccerNet-v2 classes of a v2 library, in shapes and colours none of the Ball classes uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from util.soccernet import CLASSES_V2

PITCH_W_M, PITCH_H_M = 105.0, 68.0
PLAYERS_PER_TEAM = 7
MIN_GAP_S = 1.2  # minimum time between two events (real data: about 1-3 s between ball actions)
MEAN_EXTRA_GAP_S = 1.3

# Class -> (relative frequency, RGB colour, shape). PASS and DRIVE dominate, as in SoccerNet-Ball; FREE KICK and
# GOAL (rare in the real data too) are left out so that every class drawn has enough examples in a short library.
MARKERS: dict[str, tuple[float, tuple[int, int, int], str]] = {
    "PASS": (0.30, (255, 230, 0), "bar"),
    "DRIVE": (0.22, (0, 235, 235), "ring"),
    "HEADER": (0.07, (235, 0, 235), "disc_high"),
    "HIGH PASS": (0.07, (255, 140, 0), "triangle"),
    "OUT": (0.06, (15, 15, 15), "square"),
    "CROSS": (0.06, (160, 255, 60), "diagonal"),
    "THROW IN": (0.06, (130, 50, 210), "arms"),
    "SHOT": (0.06, (255, 120, 190), "star"),
    "BALL PLAYER BLOCK": (0.05, (140, 85, 30), "box"),
    "PLAYER SUCCESSFUL TACKLE": (0.05, (235, 205, 150), "ellipse"),
}
# SoccerNet-v2 classes of the v2 library (label_format="v2"), with SoccerNet-v2-like imbalance (Ball out of play and
# Throw-in dominate): the same kind of cue as the Ball classes (a class-specific marker on the acting player) but in
# shapes and colours that none of them uses, so that pretraining on it teaches to see markers, not the Ball classes.
MARKERS_V2: dict[str, tuple[float, tuple[int, int, int], str]] = {
    "Shots on target": (0.08, (255, 60, 100), "arrow"),
    "Shots off target": (0.08, (0, 110, 255), "diamond"),
    "Clearance": (0.10, (110, 0, 80), "chevron"),
    "Ball out of play": (0.26, (0, 150, 130), "plus"),
    "Throw-in": (0.16, (130, 200, 255), "twin_dots"),
    "Foul": (0.13, (170, 170, 20), "hourglass"),
    "Indirect free-kick": (0.12, (190, 110, 255), "hexagon"),
    "Corner": (0.07, (140, 255, 210), "flag"),
}
assert set(MARKERS_V2) <= set(CLASSES_V2) and not set(MARKERS_V2) & set(MARKERS)
MARKER_TABLES = {"ball": MARKERS, "v2": MARKERS_V2}
ALL_MARKERS = {**MARKERS, **MARKERS_V2}


@dataclass(frozen=True)
class Event:
    frame: int  # first frame (at the video's fps) on which the event is drawn
    label: str
    team: str  # "left" | "right"
    player: int  # index of the acting player within its team
    visibility: str


class Match:
    """Everything that moves in one video, as functions of time (seconds)."""

    def __init__(self, rng: np.random.Generator, duration_s: float, left_club: str):
        self.duration_s = duration_s
        self.left_club = left_club  # colour name of the club defending the left goal in this video
        n = PLAYERS_PER_TEAM
        # Formation anchors: the left team spreads over the left 2/3, the right team mirrored.
        self.anchor = {}
        self.amp = {}
        self.freq = {}
        self.phase = {}
        for team, (lo, hi) in (("left", (8.0, 70.0)), ("right", (35.0, 97.0))):
            self.anchor[team] = np.stack([rng.uniform(lo, hi, n), rng.uniform(8.0, 60.0, n)], axis=1)
            self.amp[team] = rng.uniform(3.0, 11.0, size=(n, 2, 2))
            self.freq[team] = rng.uniform(0.08, 0.35, size=(n, 2, 2))
            self.phase[team] = rng.uniform(0, 2 * np.pi, size=(n, 2, 2))

    def players(self, team: str, t: float) -> np.ndarray:
        """(n, 2) positions in metres at time t: anchors plus two sinusoids per axis (smooth running)."""
        wave = self.amp[team] * np.sin(2 * np.pi * self.freq[team] * t + self.phase[team])
        pos = self.anchor[team] + wave.sum(axis=2)
        return np.clip(pos, [1.0, 1.0], [PITCH_W_M - 1.0, PITCH_H_M - 1.0])


def _class_quota(num_events: int, rng: np.random.Generator, markers: dict = MARKERS) -> list[str]:
    """``num_events`` labels in the proportions of ``markers`` (largest remainders), shuffled: every video gets
    its share of each class, so a short library still has examples of the rare ones in every split."""
    labels = list(markers)
    weights = np.array([markers[c][0] for c in labels])
    share = weights / weights.sum() * num_events
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: num_events - counts.sum()]:
        counts[i] += 1
    sequence = [label for label, n in zip(labels, counts, strict=True) for _ in range(n)]
    rng.shuffle(sequence)
    return sequence


def sample_events(
    rng: np.random.Generator, num_frames: int, fps: float, markers: dict = MARKERS
) -> list[Event]:
    t = 1.0 + rng.uniform(0, 1.0)
    end_s = num_frames / fps - 1.0
    times = []
    while t < end_s:
        times.append(t)
        t += MIN_GAP_S + rng.exponential(MEAN_EXTRA_GAP_S)
    team = str(rng.choice(["left", "right"]))
    events = []
    for t, label in zip(times, _class_quota(len(times), rng, markers), strict=True):
        if rng.random() > 0.7:  # possession changes now and then
            team = "right" if team == "left" else "left"
        visibility = "not shown" if rng.random() < 0.03 else "visible"
        frame = int(round(t * fps))
        events.append(Event(frame, label, team, int(rng.integers(PLAYERS_PER_TEAM)), visibility))
    return events


def ball_track(
    match: Match, events: list[Event], num_frames: int, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ball position (metres) and height (0..1, for lofted balls) at every frame.

    At each event frame the ball is at the acting player's feet; in between it travels to the next actor (a
    DRIVE keeps it at the feet for most of the interval; lofted classes fly in an arc).
    """
    times = np.arange(num_frames) / fps
    pos = np.zeros((num_frames, 2))
    lift = np.zeros(num_frames)
    pos[:] = (PITCH_W_M / 2, PITCH_H_M / 2)
    keys = [(e.frame, match.players(e.team, e.frame / fps)[e.player] + (0.6, 0.4), e.label) for e in events]
    if not keys:
        return pos, lift
    pos[: keys[0][0]] = np.linspace((PITCH_W_M / 2, PITCH_H_M / 2), keys[0][1], keys[0][0], axis=0)
    for (f0, p0, label), (f1, p1, _) in zip(keys, keys[1:] + [(num_frames, keys[-1][1], "")], strict=True):
        span = max(1, f1 - f0)
        u = np.arange(span) / span
        if label == "DRIVE":
            u = np.clip((u - 0.7) / 0.3, 0, 1)
        pos[f0:f1] = p0 + (p1 - p0) * u[: f1 - f0, None]
        if label in ("HIGH PASS", "CROSS", "SHOT"):
            lift[f0:f1] = np.sin(np.pi * u[: f1 - f0]) * (1.0 if label != "SHOT" else 0.4)
    # DRIVE: the ball follows its carrier's feet until it is released.
    for e, (f0, _, _), nxt in zip(events, keys, keys[1:] + [(num_frames, None, "")], strict=True):
        if e.label != "DRIVE":
            continue
        hold = f0 + int(0.7 * (nxt[0] - f0))
        for f in range(f0, hold):
            pos[f] = match.players(e.team, times[f])[e.player] + (0.6, 0.4)
    return pos, lift
