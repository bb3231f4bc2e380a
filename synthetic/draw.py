"""Drawing one synthetic video's frames: a broadcast-like camera, the pitch, the players, the markers, the ball.

What is drawn: a pitch seen from a broadcast-like camera (perspective, mowing stripes, lines, stands) that pans to
follow the ball; two teams of seven players in distinct colours (red and blue); the ball. An event's class-specific
marker (a colour and a shape, see ``MARKERS`` in synthetic/match.py) appears on the acting player for ``MARKER_S``
seconds from the event's frame. The acting player's team is visible from the shirt: a team's colour, with a white
stripe on the side away from the goal it defends, so "left" (the team defending the left goal) stays recognisable
under a horizontal flip, which swaps the stripe side and the label together. In the halves layout the clubs swap
ends at half time (colours follow the club, "left"/"right" follow the side, as in SoccerNet's annotations).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from synthetic.encode import VideoSpec
from synthetic.match import ALL_MARKERS, PITCH_H_M, PITCH_W_M, Event, Match, ball_track

MARKER_S = 0.4  # how long an event's marker stays on screen
# Marker radius and outline width, relative to the acting player's height and the radius: large enough that a
# small CNN trained from scratch on 112-pixel-high frames learns the classes and teams in minutes on a CPU.
MARKER_SCALE = 1.6
MARKER_BORDER = 0.15
TEAM_COLOURS = {"red": (205, 35, 40), "blue": (35, 70, 215)}
SHORTS_COLOUR = (80, 80, 90)


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


def render_frames(spec: VideoSpec, match: Match, events: list[Event], rng: np.random.Generator):
    """Yield RGB frames (height, width, 3) of one video."""
    fps = float(spec.fps)
    cam = Camera(spec.width, spec.height)
    pano = _render_panorama(cam, rng)
    ball, lift = ball_track(match, events, spec.num_frames, fps)
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
