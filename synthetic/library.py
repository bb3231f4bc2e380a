"""A synthetic SoccerNet-Ball library: real video files and Labels-ball.json in SoccerNet's layouts.

The real SoccerNet-Ball data needs an NDA and the internet; every test and the demo use this instead.

What is drawn: a pitch seen from a broadcast-like camera (perspective, mowing stripes, lines, stands) that pans to
follow the ball; two teams of seven players in distinct colours (red and blue), running all the time; a ball that
travels from one acting player to the next. Each event happens at one exact frame: the ball is at the acting
player's feet and a class-specific marker (a colour and a shape, see ``MARKERS``) appears on that player for
``MARKER_S`` seconds. The acting player's team is visible from the shirt: a team's colour, with a white stripe on
the side away from the goal it defends, so "left" (the team defending the left goal) stays recognisable under a
horizontal flip, which swaps the stripe side and the label together. In the halves layout the clubs swap ends at
half time (colours follow the club, "left"/"right" follow the side, as in SoccerNet's annotations).

Labels: an event drawn first at video frame ``f`` gets ``position = round((f + 0.5) * 1000 / fps)`` ms, the middle
of that frame's interval, so ``int(fps * (position / 1000))`` (the official evaluator's expression) gives ``f``
back at the video's own frame rate.

``label_format="v2"`` makes a SoccerNet-v2-style library instead, to pretrain on before fine-tuning on the Ball
library: Labels-v2.json with eight of SoccerNet-v2's classes (``MARKERS_V2``), each drawn with its own marker (shapes
and colours none of the Ball classes uses), in the halves layout, season ``SEASON_V2`` and other random draws than
the Ball library of the same seed; ``team`` is the acting club, "home" (the red club, named first) or "away".

Usage: ``python -m synthetic.library OUT_DIR [--games N --seconds S --seed K --layout game|halves
--resolution 224p|720p --fps F --label_format ball|v2]``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from util.io import atomic_open, store_json
from util.soccernet import CLASSES_V2, LABEL_FILE, LABEL_FILE_V2, game_time, half_video_name, one_video_name

log = logging.getLogger(__name__)

LEAGUE = "synthetic_league"
SEASON = "2024-2025"
SEASON_V2 = "2015-2016"  # the v2 library's season, so its game ids never clash with the Ball library's
LABEL_FORMATS = ("ball", "v2")
PITCH_W_M, PITCH_H_M = 105.0, 68.0
PLAYERS_PER_TEAM = 7
MARKER_S = 0.4  # how long an event's marker stays on screen
# Marker radius and outline width, relative to the acting player's height and the radius: large enough that a
# small CNN trained from scratch on 112-pixel-high frames learns the classes and teams in minutes on a CPU.
MARKER_SCALE = 1.6
MARKER_BORDER = 0.15
MIN_GAP_S = 1.2  # minimum time between two events (real data: about 1-3 s between ball actions)
MEAN_EXTRA_GAP_S = 1.3
FRAME_SIZES = {"224p": (398, 224), "720p": (1280, 720)}

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
TEAM_COLOURS = {"red": (205, 35, 40), "blue": (35, 70, 215)}
SHORTS_COLOUR = (80, 80, 90)
CLUB_NAMES = ["Rovers", "Athletic", "United", "Wanderers", "Albion", "City", "Town", "Rangers", "County"]


@dataclass(frozen=True)
class Event:
    frame: int  # first frame (at the video's fps) on which the event is drawn
    label: str
    team: str  # "left" | "right"
    player: int  # index of the acting player within its team
    visibility: str


@dataclass(frozen=True)
class VideoSpec:
    width: int
    height: int
    fps: Fraction
    num_frames: int


def parse_fps(text: str | float) -> Fraction:
    """'25' -> 25, '29.97' -> 30000/1001, '59.94' -> 60000/1001, '12.5' -> 25/2."""
    value = float(text)
    for base in (24, 30, 60):
        if abs(value - base * 1000 / 1001) < 0.01:
            return Fraction(base * 1000, 1001)
    return Fraction(value).limit_denominator(1000)


# ---- geometry ------------------------------------------------------------------------------------------------


class Camera:
    """World metres (X along the pitch, Y from the far touchline) -> panorama pixels, with perspective."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pano_w = int(round(width * 2.4))
        self.y_far, self.y_near = 0.24 * height, 0.97 * height
        self.s_near = self.pano_w * 0.94 / PITCH_W_M
        self.s_far = self.s_near * 0.62

    def depth(self, y_m: np.ndarray | float) -> np.ndarray | float:
        return np.clip(np.asarray(y_m) / PITCH_H_M, -0.1, 1.1)

    def scale(self, y_m):
        return self.s_far + (self.s_near - self.s_far) * self.depth(y_m)

    def project(self, x_m, y_m):
        t = self.depth(y_m)
        px = self.pano_w / 2 + (np.asarray(x_m) - PITCH_W_M / 2) * self.scale(y_m)
        py = self.y_far + (self.y_near - self.y_far) * t
        return px, py


def _render_panorama(cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """The static background (stands, striped pitch, lines), wider than the frame so the camera can pan."""
    h, w = cam.height, cam.pano_w
    pano = np.zeros((h, w, 3), np.uint8)
    # Stands: blocky crowd texture, so that a pan moves visible structure.
    crowd = rng.integers(40, 150, size=(max(2, h // 12), max(2, w // 6), 3), dtype=np.uint8)
    crowd = cv2.resize(crowd, (w, h), interpolation=cv2.INTER_NEAREST)
    pano[:] = crowd
    ad_top = int(cam.y_far - 0.06 * h)
    pano[ad_top : int(cam.y_far) - 1] = (60, 60, 70)
    base = np.array([46, 125, 50]) + rng.integers(-8, 9, size=3)
    # Mowing stripes: bands of 1/20 of the pitch length, alternately lighter and darker, drawn in perspective.
    n_bands = 20
    for i in range(n_bands):
        x0, x1 = i * PITCH_W_M / n_bands, (i + 1) * PITCH_W_M / n_bands
        corners = [
            cam.project(x0 - (5 if i == 0 else 0), -3),
            cam.project(x1 + (5 if i == n_bands - 1 else 0), -3),
        ]
        corners += [
            cam.project(x1 + (5 if i == n_bands - 1 else 0), 72),
            cam.project(x0 - (5 if i == 0 else 0), 72),
        ]
        poly = np.array([[int(px), int(py)] for px, py in corners], np.int32)
        colour = base + (10 if i % 2 else -6)
        cv2.fillPoly(pano, [poly], tuple(int(c) for c in np.clip(colour, 0, 255)))
    noise = rng.normal(0, 5, size=(h, w, 1))
    grass = pano[int(cam.y_far) :].astype(np.float32) + noise[int(cam.y_far) :]
    pano[int(cam.y_far) :] = np.clip(grass, 0, 255).astype(np.uint8)
    _draw_lines(pano, cam)
    return pano


def _draw_lines(pano: np.ndarray, cam: Camera) -> None:
    white = (235, 235, 235)
    thick = max(1, cam.height // 200)

    def poly(points, closed=False):
        pts = np.array(
            [[int(round(px)), int(round(py))] for px, py in (cam.project(x, y) for x, y in points)]
        )
        cv2.polylines(pano, [pts.astype(np.int32)], closed, white, thick, cv2.LINE_AA)

    poly([(0, 0), (PITCH_W_M, 0), (PITCH_W_M, PITCH_H_M), (0, PITCH_H_M)], closed=True)
    poly([(PITCH_W_M / 2, 0), (PITCH_W_M / 2, PITCH_H_M)])
    angles = np.linspace(0, 2 * np.pi, 48)
    poly([(PITCH_W_M / 2 + 9.15 * np.cos(a), PITCH_H_M / 2 + 9.15 * np.sin(a)) for a in angles], closed=True)
    for x0, sign in ((0.0, 1), (PITCH_W_M, -1)):
        poly([(x0, 13.85), (x0 + sign * 16.5, 13.85), (x0 + sign * 16.5, 54.15), (x0, 54.15)])
        poly([(x0, 24.85), (x0 + sign * 5.5, 24.85), (x0 + sign * 5.5, 43.15), (x0, 43.15)])


# ---- the match: players, events, ball --------------------------------------------------------------------------


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


def _sample_events(
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


def _ball_track(
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


# ---- drawing ----------------------------------------------------------------------------------------------------


def _shirt_colours(match: Match, team: str) -> tuple[int, int, int]:
    club = match.left_club if team == "left" else ("blue" if match.left_club == "red" else "red")
    return TEAM_COLOURS[club]


def _draw_player(img, x: float, y: float, h: float, shirt, team: str) -> None:
    """A player standing at (x, y) (feet), h pixels tall; the white stripe is on the side away from its goal."""
    w = max(2, int(round(h * 0.5)))
    x0, top = int(round(x - w / 2)), int(round(y - h))
    shirt_bottom = int(round(y - h * 0.45))
    cv2.rectangle(img, (x0, int(round(y - h * 0.45))), (x0 + w - 1, int(round(y)) - 1), SHORTS_COLOUR, -1)
    cv2.rectangle(img, (x0, int(round(top + h * 0.22))), (x0 + w - 1, shirt_bottom), shirt, -1)
    stripe_w = max(1, w // 3)
    sx = x0 + w - stripe_w if team == "left" else x0
    cv2.rectangle(
        img, (sx, int(round(top + h * 0.22))), (sx + stripe_w - 1, shirt_bottom), (245, 245, 245), -1
    )
    cv2.circle(
        img, (int(round(x)), int(round(top + h * 0.12))), max(1, int(round(h * 0.12))), (225, 180, 140), -1
    )


def _draw_marker(img, label: str, x: float, y: float, h: float, team_colour) -> None:
    """The cue of an event on the acting player (feet at x, y; h pixels tall): the class's shape in the class's
    colour, outlined in the acting team's colour."""
    _, colour, shape = ALL_MARKERS[label]
    mask = np.zeros(img.shape[:2], np.uint8)
    r = _marker_shape(mask, shape, x, y, h)
    border = max(1, int(round(r * MARKER_BORDER)))
    outline = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * border + 1, 2 * border + 1)))
    img[outline > 0] = team_colour
    img[mask > 0] = colour


def _marker_shape(img, shape: str, x: float, y: float, h: float, colour: int = 255) -> float:
    """Draw a class's shape (``MARKERS``, ``MARKERS_V2``) into ``img``; returns its radius in pixels."""
    r = max(3.0, h * MARKER_SCALE)
    cx, cy = int(round(x)), int(round(y - h * 0.5))
    t = max(1, int(round(r / 3)))
    ri = int(round(r))
    if shape == "bar":
        cv2.rectangle(img, (cx - ri, int(y) - t), (cx + ri, int(y) + t), colour, -1)
    elif shape == "ring":
        cv2.ellipse(img, (cx, int(y)), (ri, max(2, ri // 2)), 0, 0, 360, colour, t)
    elif shape == "disc_high":
        cv2.circle(img, (cx, int(round(y - h - r * 0.6))), max(2, ri // 2 + 1), colour, -1)
    elif shape == "triangle":
        top = y - h - r * 0.4
        pts = np.array([[cx, top - r], [cx - r, top], [cx + r, top]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    elif shape == "square":
        cv2.rectangle(img, (cx - ri, cy - ri), (cx + ri, cy + ri), colour, t)
    elif shape == "diagonal":
        cv2.line(img, (cx - ri, cy + ri), (cx + ri, cy - ri), colour, t + 1)
        cv2.line(img, (cx - ri, cy + ri - 2 * t), (cx + ri, cy - ri - 2 * t), colour, t + 1)
    elif shape == "arms":
        top = int(round(y - h - r * 0.8))
        cv2.rectangle(img, (cx - ri, top), (cx - ri + t, cy), colour, -1)
        cv2.rectangle(img, (cx + ri - t, top), (cx + ri, cy), colour, -1)
    elif shape == "star":
        for a in (0, 60, 120):
            dx, dy = r * math.cos(math.radians(a)), r * math.sin(math.radians(a))
            p0 = (int(round(cx - dx)), int(round(cy - dy)))
            p1 = (int(round(cx + dx)), int(round(cy + dy)))
            cv2.line(img, p0, p1, colour, t + 1)
    elif shape == "box":
        cv2.rectangle(img, (cx - ri, cy - ri // 2), (cx + ri, cy + ri // 2), colour, -1)
    elif shape == "ellipse":
        cv2.ellipse(img, (cx, int(y)), (ri + ri // 2, max(2, ri // 2)), 0, 0, 360, colour, -1)
    # The v2 library's shapes (MARKERS_V2).
    elif shape == "plus":
        cv2.rectangle(img, (cx - ri, cy - t), (cx + ri, cy + t), colour, -1)
        cv2.rectangle(img, (cx - t, cy - ri), (cx + t, cy + ri), colour, -1)
    elif shape == "twin_dots":
        top = int(round(y - h - r * 0.5))
        for dx in (-ri * 0.6, ri * 0.6):
            cv2.circle(img, (int(round(cx + dx)), top), max(2, ri // 3 + 1), colour, -1)
    elif shape == "hourglass":
        upper = np.array([[cx - ri, cy - ri], [cx + ri, cy - ri], [cx, cy]], np.int32)
        lower = np.array([[cx - ri, cy + ri], [cx + ri, cy + ri], [cx, cy]], np.int32)
        cv2.fillPoly(img, [upper, lower], colour)
    elif shape == "hexagon":
        pts = [
            (cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a)))
            for a in range(0, 360, 60)
        ]
        cv2.polylines(img, [np.array(pts).round().astype(np.int32)], True, colour, t)
    elif shape == "chevron":
        tip = int(round(y - h - r * 0.3))
        pts = np.array([[cx - ri, tip - ri], [cx, tip], [cx + ri, tip - ri]], np.int32)
        cv2.polylines(img, [pts], False, colour, t + 1)
    elif shape == "arrow":
        base, tip = int(round(y - h - r * 0.2)), int(round(y - h - r * 1.6))
        cv2.arrowedLine(img, (cx, base), (cx, tip), colour, t + 1, tipLength=0.5)
    elif shape == "diamond":
        pts = np.array([[cx, cy - ri], [cx + ri, cy], [cx, cy + ri], [cx - ri, cy]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    elif shape == "flag":
        pole, top = cx + ri, int(round(y - h - r * 0.6))
        cv2.rectangle(img, (pole - max(1, t // 2), top), (pole, int(y)), colour, -1)
        pennant = np.array([[pole, top], [pole - ri, top + ri // 2], [pole, top + ri]], np.int32)
        cv2.fillPoly(img, [pennant], colour)
    else:  # pragma: no cover - MARKERS is a closed table
        raise ValueError(shape)
    return r


def _render_frames(spec: VideoSpec, match: Match, events: list[Event], rng: np.random.Generator):
    """Yield RGB frames (height, width, 3) of one video."""
    fps = float(spec.fps)
    cam = Camera(spec.width, spec.height)
    pano = _render_panorama(cam, rng)
    ball, lift = _ball_track(match, events, spec.num_frames, fps)
    ball_px, ball_py = cam.project(ball[:, 0], ball[:, 1])
    # The camera follows the ball with an exponential lag, as a broadcast operator does.
    cam_x = np.empty(spec.num_frames)
    half_w = spec.width / 2
    alpha = 1 - math.exp(-1.5 / fps)
    x = ball_px[0] if spec.num_frames else 0.0
    for i in range(spec.num_frames):
        x += alpha * (ball_px[i] - x)
        cam_x[i] = x
    cam_x = np.clip(cam_x - half_w, 0, cam.pano_w - spec.width).astype(int)
    marker_frames = max(1, int(round(MARKER_S * fps)))
    active: dict[int, Event] = {}
    for e in events:
        for f in range(e.frame, min(spec.num_frames, e.frame + marker_frames)):
            active[f] = e
    player_h = spec.height * 0.095
    for i in range(spec.num_frames):
        t = i / fps
        off = cam_x[i]
        img = pano[:, off : off + spec.width].copy()
        people = []
        for team in ("left", "right"):
            pos = match.players(team, t)
            px, py = cam.project(pos[:, 0], pos[:, 1])
            for j in range(len(pos)):
                people.append((py[j], px[j] - off, team, j, pos[j, 1]))
        people.sort()  # far players first, so near ones are drawn over them
        event = active.get(i)
        for py, px, team, j, y_m in people:
            h = player_h * cam.scale(y_m) / cam.s_near
            if event is not None and event.team == team and event.player == j:
                # Behind the player, so the acting player's shirt (its team) stays visible.
                _draw_marker(img, event.label, px, py, h, _shirt_colours(match, team))
            _draw_player(img, px, py, h, _shirt_colours(match, team), team)
        bx, by = ball_px[i] - off, ball_py[i]
        br = max(2, int(round(spec.height * 0.013 * cam.scale(ball[i, 1]) / cam.s_near)))
        cv2.ellipse(img, (int(bx), int(by)), (br, max(1, br // 2)), 0, 0, 360, (20, 60, 20), -1)
        lift_px = lift[i] * spec.height * 0.12
        cv2.circle(img, (int(bx), int(by - br - lift_px)), br, (250, 250, 250), -1)
        yield img


def _x264_options() -> dict[str, str]:
    """x264's settings for the library: repeatable bytes for the same frames.

    One encoder thread: x264 with several is not repeatable (the same frames gave other bytes on some runs), and
    the renderer, not the encoder, is the bottleneck (2 games x 30 s: 2.4 s vs 2.8 s). On a CPU with AVX-512,
    x264's AVX-512 code is not repeatable either: encoding the same 75 frames six times in one process gave two
    different streams (frames differing by up to 51 grey levels), while x264 held to its AVX2 code gave one,
    as fast. So such CPUs get the AVX2 instruction set (every AVX-512 CPU has it); others keep x264's choice.
    """
    options = {"crf": "20", "preset": "veryfast", "threads": "1"}
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return options
    if "avx512f" in flags and "avx2" in flags:
        options["x264-params"] = "asm=MMX2,SSE2Fast,SSSE3,SSE4.2,AVX,FMA3,BMI2,AVX2"
    return options


X264_OPTIONS = _x264_options()


def write_video(path: Path, frames, spec: VideoSpec) -> None:
    """Encode RGB frames as H.264 (yuv420p) into ``path`` (.mp4 or .mkv), atomically."""
    import av  # local import: only the generator and video helpers need PyAV

    fmt = "matroska" if path.suffix == ".mkv" else "mp4"
    with atomic_open(path, "wb") as f, av.open(f, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.options = X264_OPTIONS
        for img in frames:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# ---- the library ------------------------------------------------------------------------------------------------


def split_counts(games: int) -> dict[str, int]:
    """How many games go to each split, in SoccerNet-Ball's proportions (4 train, 1 val, 2 test, 2 challenge)."""
    if games <= 1:
        return {"train": games, "val": 0, "test": 0, "challenge": 0}
    test = max(1, round(games * 2 / 9))
    val = max(1, round(games / 9)) if games >= 3 else 0
    challenge = round(games * 2 / 9) if games >= 5 else 0
    return {"train": games - test - val - challenge, "val": val, "test": test, "challenge": challenge}


def game_names(games: int, seed: int, year: int = 2024) -> list[str]:
    """Game folder names, ``"2024-09-01 - Red Rovers - Blue City"`` (from September of ``year``): the red club is the
    home club (named first)."""
    rng = np.random.default_rng([seed, 7])
    names = []
    for i in range(games):
        a, b = rng.choice(len(CLUB_NAMES), size=2, replace=False)
        names.append(
            f"{year}-{9 + i // 28:02d}-{1 + i % 28:02d} - Red {CLUB_NAMES[a]} - Blue {CLUB_NAMES[b]}"
        )
    return names


def render_video(
    path: Path, spec: VideoSpec, seed: int | list[int], left_club: str = "red", markers: dict = MARKERS
) -> list[Event]:
    """Render one video to ``path`` and return its events (frames at the video's fps) of ``markers``' classes."""
    rng = np.random.default_rng(seed)
    fps = float(spec.fps)
    match = Match(rng, spec.num_frames / fps, left_club)
    events = _sample_events(rng, spec.num_frames, fps, markers)
    write_video(path, _render_frames(spec, match, events, rng), spec)
    return events


def annotations(
    events: list[Event], fps: Fraction, half: int, label_format: str = "ball", left_club: str = "red"
) -> list[dict]:
    """SoccerNet annotations for one video: the position is the middle of the event's first frame (ms).

    ``team`` is the side ("left" / "right") in Ball labels and the club in v2 labels: "home" for the red club (the
    one defending the left goal when ``left_club`` is "red"), "away" for the blue one."""
    out = []
    for e in events:
        position_ms = int(round((e.frame + 0.5) * 1000 / fps))
        team = e.team
        if label_format == "v2":
            team = "home" if (e.team == "left") == (left_club == "red") else "away"
        out.append(
            {
                "gameTime": game_time(half, position_ms),
                "label": e.label,
                "position": str(position_ms),
                "team": team,
                "visibility": e.visibility,
            }
        )
    return out


SPLITS = ("train", "val", "test", "challenge")


def library_splits(
    games: int, seed: int = 0, counts: dict[str, int] | None = None, label_format: str = "ball"
) -> dict[str, list[str]]:
    """The games of a library of ``games`` games and ``seed``, by split (what ``splits.json`` will hold);
    ``counts`` ({split: games}, summing to ``games``) replaces SoccerNet's proportions. A v2 library's games are in
    season ``SEASON_V2``."""
    season = SEASON_V2 if label_format == "v2" else SEASON
    names = game_names(games, seed, int(season[:4]))
    counts = split_counts(games) if counts is None else {s: int(counts.get(s, 0)) for s in SPLITS}
    if sum(counts.values()) != games:
        raise ValueError(f"split counts {counts} do not add up to {games} games")
    splits, k = {}, 0
    for split in SPLITS:
        splits[split] = [f"{LEAGUE}/{season}/{n}" for n in names[k : k + counts[split]]]
        k += counts[split]
    return splits


def _render_job(job: tuple[Path, VideoSpec, int | list[int], str, str]) -> list[Event]:
    path, spec, seed, left_club, label_format = job
    return render_video(path, spec, seed=seed, left_club=left_club, markers=MARKER_TABLES[label_format])


def render_library(
    out_dir: str | Path,
    games: int = 2,
    seconds: float = 60.0,
    seed: int = 0,
    layout: str | None = None,
    resolution: str = "224p",
    fps: float | str = 25,
    progress=None,
    num_workers: int = 1,
    counts: dict[str, int] | None = None,
    label_format: str = "ball",
) -> dict:
    """Render a whole library into ``out_dir``; returns its splits ({split: [game, ...]}).

    ``progress``, if given, is called with (done_videos, total_videos) after each video; ``num_workers`` > 1
    renders that many videos at once in separate processes (the same library, only sooner); ``counts``
    ({split: games}) replaces SoccerNet-Ball's proportions of train, val, test and challenge games.
    ``label_format="v2"`` writes a SoccerNet-v2-style library (``MARKERS_V2``' classes, Labels-v2.json, season
    ``SEASON_V2``, halves only); ``layout`` defaults to "game" for Ball and "halves" for v2.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {list(LABEL_FORMATS)}, not {label_format!r}")
    if layout is None:
        layout = "halves" if label_format == "v2" else "game"
    if label_format == "v2" and layout != "halves":
        raise ValueError(f"a SoccerNet-v2 library is in the halves layout, not {layout!r}")
    if layout not in ("game", "halves"):
        raise ValueError(f"layout must be 'game' or 'halves', not {layout!r}")
    if resolution not in FRAME_SIZES:
        raise ValueError(f"resolution must be one of {sorted(FRAME_SIZES)}, not {resolution!r}")
    out_dir = Path(out_dir)
    fps_q = parse_fps(fps)
    width, height = FRAME_SIZES[resolution]
    spec = VideoSpec(width, height, fps_q, int(round(seconds * float(fps_q))))
    splits = library_splits(games, seed, counts, label_format)
    season = SEASON_V2 if label_format == "v2" else SEASON
    names = game_names(games, seed, int(season[:4]))
    halves = (1, 2) if layout == "halves" else (1,)
    jobs = []
    for g, name in enumerate(names):
        for half in halves:
            file = half_video_name(half, resolution) if layout == "halves" else one_video_name(resolution)
            left_club = "red" if half == 1 else "blue"  # the clubs swap ends at half time
            job_seed = seed * 100003 + g * 101 + half
            # A v2 library draws other matches than the Ball library of the same seed (pretraining data that is
            # not the fine-tuning data in other colours).
            video_seed = [job_seed, 2] if label_format == "v2" else job_seed
            jobs.append((out_dir / LEAGUE / season / name / file, spec, video_seed, left_club, label_format))
    events = _run_jobs(jobs, num_workers, progress)
    for g, name in enumerate(names):
        labels = []
        for i, half in enumerate(halves):
            left_club = "red" if half == 1 else "blue"
            labels += annotations(events[g * len(halves) + i], fps_q, half, label_format, left_club)
        labels_doc = {"UrlLocal": f"{LEAGUE}/{season}/{name}/", "UrlYoutube": "", "annotations": labels}
        label_file = LABEL_FILE
        if label_format == "v2":
            _, home, away = name.split(" - ")
            labels_doc = {**labels_doc, "gameHomeTeam": home, "gameAwayTeam": away}
            label_file = LABEL_FILE_V2
        store_json(out_dir / LEAGUE / season / name / label_file, labels_doc, indent=4)
    store_json(out_dir / "splits.json", splits)
    info = {
        "generator": "synthetic.library",
        "games": games,
        "seconds": seconds,
        "seed": seed,
        "layout": layout,
        "resolution": resolution,
        "fps": str(fps_q),
        "classes": list(MARKER_TABLES[label_format]),
    }
    if label_format != "ball":  # (a Ball library's synthetic.json stays as it was)
        info["label_format"] = label_format
    store_json(out_dir / "synthetic.json", info)
    return splits


def _run_jobs(jobs: list, num_workers: int, progress) -> list[list[Event]]:
    """Events of each rendering job, in the order of ``jobs``."""
    if num_workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(_render_job(job))
            if progress is not None:
                progress(len(results), len(jobs))
        return results
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: list = [None] * len(jobs)
    with ProcessPoolExecutor(min(num_workers, len(jobs))) as pool:
        futures = {pool.submit(_render_job, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(jobs))
    return results


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m synthetic.library",
        description="Render a synthetic SoccerNet-Ball library (videos + Labels-ball.json + splits.json), or with "
        "--label_format v2 a SoccerNet-v2-style one (Labels-v2.json) to pretrain on.",
    )
    p.add_argument("out_dir", type=Path, help="where to write the library")
    p.add_argument("--games", type=int, default=2, help="number of games (default 2)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each video in seconds (default 60)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same library")
    p.add_argument(
        "--layout",
        choices=("game", "halves"),
        default=None,
        help="'game': one video per game (SoccerNet-Ball 2024/2025, <game>/224p.mp4; the default); "
        "'halves': two videos per game (2023 / SoccerNet-v2, <game>/1_224p.mkv, 2_224p.mkv; the only one of v2)",
    )
    p.add_argument(
        "--label_format",
        choices=LABEL_FORMATS,
        default="ball",
        help="'ball' (default): SoccerNet-Ball classes and Labels-ball.json; 'v2': a SoccerNet-v2-style library to "
        f"pretrain on: Labels-v2.json with {len(MARKERS_V2)} of v2's classes, each drawn with a marker no Ball "
        "class uses, team home/away, in halves, in season " + SEASON_V2,
    )
    p.add_argument("--resolution", choices=tuple(FRAME_SIZES), default="224p", help="398x224 or 1280x720")
    p.add_argument("--fps", default="25", help="frame rate of the videos, e.g. 25, 29.97, 50 (default 25)")
    p.add_argument(
        "-j",
        "--num_workers",
        type=int,
        default=1,
        help="videos rendered at once, one process each (default 1)",
    )
    p.add_argument(
        "--split_counts",
        metavar="T,V,E,C",
        help="games in train, val, test and challenge (e.g. 8,1,2,0; default: SoccerNet-Ball's proportions "
        "4:1:2:2 of --games); sets --games to their sum",
    )
    args = p.parse_args(argv)
    if args.layout is None:
        args.layout = "halves" if args.label_format == "v2" else "game"
    elif args.label_format == "v2" and args.layout != "halves":
        p.error("--label_format v2: a SoccerNet-v2 library is in the halves layout (leave --layout out)")
    args.counts = None
    if args.split_counts:
        try:
            values = [int(x) for x in args.split_counts.split(",")]
        except ValueError:
            values = []
        if len(values) != len(SPLITS) or min(values) < 0 or sum(values) < 1:
            p.error(f"--split_counts: four non-negative counts T,V,E,C, not {args.split_counts!r}")
        args.counts = dict(zip(SPLITS, values, strict=True))
        args.games = sum(values)
    return args


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.games < 1 or args.seconds <= 0:
        print("error: --games must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    per_game = 2 if args.layout == "halves" else 1
    with tqdm(total=args.games * per_game, desc="rendering videos", unit="video") as bar:
        splits = render_library(
            args.out_dir,
            games=args.games,
            seconds=args.seconds,
            seed=args.seed,
            layout=args.layout,
            resolution=args.resolution,
            fps=args.fps,
            progress=lambda done, total: bar.update(done - bar.n),
            num_workers=args.num_workers,
            counts=args.counts,
            label_format=args.label_format,
        )
    print(
        f"wrote {args.games} games to {args.out_dir}: " + json.dumps({k: len(v) for k, v in splits.items()})
    )
    return 0


if __name__ == "__main__":
    from util.allocator import use_fast_allocator

    use_fast_allocator()
    sys.exit(main(get_args()))
