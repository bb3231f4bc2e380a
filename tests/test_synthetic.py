"""synthetic/library.py: the library decodes as stated, in SoccerNet's layouts, and labels match the pixels."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from synthetic.library import (
    LEAGUE,
    MARKERS,
    SEASON,
    TEAM_COLOURS,
    library_splits,
    parse_fps,
    render_library,
    split_counts,
)
from util.soccernet import CLASSES, LABEL_FILE


def _videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".mp4", ".mkv"))


@pytest.fixture(scope="module")
def game_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_game")
    splits = render_library(root, games=3, seconds=8, seed=1, layout="game")
    return root, splits


@pytest.fixture(scope="module")
def halves_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_halves")
    splits = render_library(root, games=1, seconds=4, seed=2, layout="halves")
    return root, splits


def test_game_layout(game_library):
    root, splits = game_library
    games = [g for split in splits.values() for g in split]
    assert len(games) == 3 and all(g.startswith(f"{LEAGUE}/{SEASON}/") for g in games)
    assert json.loads((root / "splits.json").read_text()) == splits
    assert splits["test"] and splits["train"]
    for game in games:
        files = sorted(p.name for p in (root / game).iterdir())
        assert files == ["224p.mp4", LABEL_FILE]


def test_halves_layout(halves_library):
    root, splits = halves_library
    (game,) = splits["train"]
    files = sorted(p.name for p in (root / game).iterdir())
    assert files == ["1_224p.mkv", "2_224p.mkv", LABEL_FILE]
    labels = json.loads((root / game / LABEL_FILE).read_text())["annotations"]
    halves = {a["gameTime"].split(" - ")[0] for a in labels}
    assert halves == {"1", "2"}


@pytest.mark.parametrize("lib", ["game_library", "halves_library"])
def test_decodes_with_opencv_and_pyav(lib, request):
    root, _ = request.getfixturevalue(lib)
    seconds = 8 if lib == "game_library" else 4
    for path in _videos(root):
        cap = cv2.VideoCapture(str(path))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
        n_cv = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (224, 398, 3)
            n_cv += 1
        assert n_cv == seconds * 25
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert float(stream.average_rate) == pytest.approx(25.0)
            assert sum(1 for _ in container.decode(stream)) == seconds * 25


def test_decodes_with_moviepy(game_library):
    from moviepy import VideoFileClip

    root, _ = game_library
    with VideoFileClip(str(_videos(root)[0]), audio=False) as clip:
        assert clip.fps == pytest.approx(25.0)
        assert clip.size == [398, 224] or tuple(clip.size) == (398, 224)
        assert sum(1 for _ in clip.iter_frames()) == 8 * 25


def test_labels_are_soccernet_json(game_library):
    root, splits = game_library
    for game in (g for s in splits.values() for g in s):
        doc = json.loads((root / game / LABEL_FILE).read_text())
        assert set(doc) >= {"UrlLocal", "annotations"}
        ann = doc["annotations"]
        assert ann, "every game has events"
        positions = [int(a["position"]) for a in ann]
        assert positions == sorted(positions)
        for a in ann:
            assert set(a) == {"gameTime", "label", "position", "team", "visibility"}
            assert isinstance(a["position"], str) and a["position"].isdigit()
            assert a["label"] in CLASSES
            assert a["team"] in ("left", "right") and a["visibility"] in ("visible", "not shown")
            half, clock = a["gameTime"].split(" - ")
            minutes, seconds = clock.split(":")
            assert half == "1" and int(minutes) * 60 + int(seconds) == int(a["position"]) // 1000


def test_class_imbalance_and_coverage(tmp_path):
    render_library(tmp_path, games=1, seconds=240, seed=3, resolution="224p", fps=5)
    labels = json.loads(next(tmp_path.rglob(LABEL_FILE)).read_text())["annotations"]
    counts = {c: sum(a["label"] == c for a in labels) for c in MARKERS}
    assert len(MARKERS) >= 6 and sum(v > 0 for v in counts.values()) >= 6
    others = [v for c, v in counts.items() if c not in ("PASS", "DRIVE")]
    assert min(counts["PASS"], counts["DRIVE"]) > max(others)
    assert counts["PASS"] + counts["DRIVE"] > 0.35 * len(labels)
    assert {a["team"] for a in labels} == {"left", "right"}


def _marker_pixels(frame_rgb: np.ndarray, colour) -> int:
    diff = np.abs(frame_rgb.astype(np.int16) - np.array(colour, np.int16)).sum(axis=2)
    return int((diff < 90).sum())


def _first_train_game(library) -> tuple[list[np.ndarray], list[dict]]:
    """Decoded RGB frames and annotations of the first train game of a library fixture."""
    root, splits = library
    game = splits["train"][0]
    with av.open(str(root / game / "224p.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, json.loads((root / game / LABEL_FILE).read_text())["annotations"]


def test_position_matches_the_drawn_frame(game_library):
    """The marker of each event first appears at frame int(fps * position_ms / 1000), not one frame earlier."""
    frames, labels = _first_train_game(game_library)
    hits = 0
    for a in labels:
        f = int(25 * (int(a["position"]) / 1000))
        colour = MARKERS[a["label"]][1]
        before = [_marker_pixels(frames[k], colour) for k in (f - 2, f - 1)]
        at = _marker_pixels(frames[f], colour)
        hits += at - before[1] > max(6, 3 * abs(before[1] - before[0]))
    assert hits >= 0.9 * len(labels), f"only {hits}/{len(labels)} events appear at their labelled frame"


def test_deterministic(tmp_path):
    render_library(tmp_path / "a", games=1, seconds=2, seed=5)
    render_library(tmp_path / "b", games=1, seconds=2, seed=5)
    la = sorted((tmp_path / "a").rglob(LABEL_FILE))[0].read_text()
    lb = sorted((tmp_path / "b").rglob(LABEL_FILE))[0].read_text()
    assert la == lb


@pytest.mark.parametrize("fps, rate", [("29.97", Fraction(30000, 1001)), ("50", Fraction(50))])
def test_other_frame_rates(tmp_path, fps, rate):
    assert parse_fps(fps) == rate
    render_library(tmp_path, games=1, seconds=2, seed=0, fps=fps)
    (path,) = _videos(tmp_path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == rate
        assert sum(1 for _ in container.decode(stream)) == round(2 * float(rate))
    labels = json.loads(next(tmp_path.rglob(LABEL_FILE)).read_text())["annotations"]
    for a in labels:  # the position maps back to a whole frame at the video's own rate
        pos = int(a["position"])
        f = int(float(rate) * (pos / 1000))
        assert abs(pos - (f + 0.5) * 1000 / float(rate)) <= 0.51


def test_720p(tmp_path):
    render_library(tmp_path, games=1, seconds=1, seed=0, resolution="720p")
    (path,) = _videos(tmp_path)
    assert path.name == "720p.mp4"
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    assert ok and frame.shape == (720, 1280, 3)


def test_split_counts():
    assert split_counts(9) == {"train": 4, "val": 1, "test": 2, "challenge": 2}
    assert split_counts(2) == {"train": 1, "val": 0, "test": 1, "challenge": 0}
    for n in range(1, 30):
        assert sum(split_counts(n).values()) == n and split_counts(n)["train"] >= 1


def test_every_video_has_each_class_and_split_counts_are_configurable(tmp_path):
    counts = {"train": 2, "val": 0, "test": 1, "challenge": 0}
    splits = render_library(tmp_path, games=3, seconds=60, seed=4, fps=5, counts=counts, num_workers=2)
    assert {k: len(v) for k, v in splits.items()} == counts
    assert splits == library_splits(3, seed=4, counts=counts)  # known before rendering
    for game in splits["train"] + splits["test"]:
        labels = json.loads((tmp_path / game / LABEL_FILE).read_text())["annotations"]
        assert {a["label"] for a in labels} == set(MARKERS), game  # ~24 events: every class gets its share
    with pytest.raises(ValueError, match="do not add up"):
        library_splits(4, counts=counts)


def test_parallel_rendering_writes_the_same_library(tmp_path):
    render_library(tmp_path / "one", games=2, seconds=3, seed=6, num_workers=1)
    render_library(tmp_path / "two", games=2, seconds=3, seed=6, num_workers=2)
    for path in sorted((tmp_path / "one").rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes()


def test_marker_is_outlined_in_the_acting_team_colour(game_library):
    """The class marker carries a border in the acting club's colour (red defends the left goal here)."""
    frames, labels = _first_train_game(game_library)
    agree = 0
    for a in labels:
        f = int(25 * (int(a["position"]) / 1000))
        if f + 1 >= len(frames):
            continue
        grew = {
            club: _marker_pixels(frames[f + 1], TEAM_COLOURS[club])
            - _marker_pixels(frames[f - 1], TEAM_COLOURS[club])
            for club in ("red", "blue")
        }
        agree += max(grew, key=grew.get) == ("red" if a["team"] == "left" else "blue")
    assert agree >= 0.8 * len(labels)


def test_cli(tmp_path):
    from synthetic.library import get_args, main

    assert main(get_args([str(tmp_path), "--games", "1", "--seconds", "1", "--layout", "halves"])) == 0
    assert len(_videos(tmp_path)) == 2
    args = get_args([str(tmp_path / "b"), "--split_counts", "1,0,1,0", "--seconds", "1", "-j", "2"])
    assert args.games == 2 and main(args) == 0
    assert json.loads((tmp_path / "b/splits.json").read_text())["test"]
    with pytest.raises(SystemExit):
        get_args([str(tmp_path), "--split_counts", "1,2"])
