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
    MARKERS_V2,
    SEASON,
    SEASON_V2,
    TEAM_COLOURS,
    library_splits,
    parse_fps,
    render_library,
    split_counts,
)
from util.soccernet import CLASSES, CLASSES_V2, LABEL_FILE, LABEL_FILE_V2


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


# ---- the SoccerNet-v2-style library (label_format="v2", the pretraining source) -------------------------------


def test_v2_library_layout_and_labels(v2_library):
    root, splits = v2_library
    games = [g for split in splits.values() for g in split]
    assert len(games) == 2 and all(g.startswith(f"{LEAGUE}/{SEASON_V2}/{SEASON_V2[:4]}-") for g in games)
    assert json.loads((root / "splits.json").read_text()) == splits == library_splits(2, 0, label_format="v2")
    info = json.loads((root / "synthetic.json").read_text())
    assert info["label_format"] == "v2" and info["layout"] == "halves" and info["classes"] == list(MARKERS_V2)
    for game in games:
        assert sorted(p.name for p in (root / game).iterdir()) == ["1_224p.mkv", "2_224p.mkv", LABEL_FILE_V2]
        doc = json.loads((root / game / LABEL_FILE_V2).read_text())
        _, home, away = game.rsplit("/", 1)[1].split(" - ")
        assert (doc["gameHomeTeam"], doc["gameAwayTeam"]) == (home, away) and home.startswith("Red ")
        ann = doc["annotations"]
        assert {a["gameTime"][0] for a in ann} == {"1", "2"}
        for a in ann:
            assert set(a) == {"gameTime", "label", "position", "team", "visibility"}
            assert a["label"] in MARKERS_V2 and a["team"] in ("home", "away")
            assert a["visibility"] in ("visible", "not shown") and a["position"].isdigit()


def test_v2_classes_are_other_classes_with_markers_of_their_own():
    """Pretraining on the v2 library teaches to see markers, not the Ball classes: other classes (SoccerNet-v2's),
    other shapes, colours far from every Ball class's and team's."""
    assert set(MARKERS_V2) <= set(CLASSES_V2) and not set(MARKERS_V2) & set(CLASSES)
    assert len(MARKERS_V2) >= 6 and sum(w for w, _, _ in MARKERS_V2.values()) == pytest.approx(1.0)
    ball_shapes = {shape for _, _, shape in MARKERS.values()}
    v2_shapes = [shape for _, _, shape in MARKERS_V2.values()]
    assert len(set(v2_shapes)) == len(v2_shapes) and not set(v2_shapes) & ball_shapes
    others = [c for _, c, _ in MARKERS.values()] + list(TEAM_COLOURS.values())
    colours = [c for _, c, _ in MARKERS_V2.values()]
    for i, colour in enumerate(colours):
        for other in others + colours[:i]:
            assert np.abs(np.subtract(colour, other)).sum() >= 100, (colour, other)


def test_v2_markers_appear_at_their_labelled_frame_outlined_in_the_clubs_colour(v2_library):
    """Each event's v2 marker first appears at frame int(fps * position_ms / 1000) of its half, outlined in the
    acting club's colour: red is home in both halves, though the clubs swap ends at half time."""
    root, splits = v2_library
    hits = agree = total = 0
    for game in (g for split in splits.values() for g in split):
        frames = {}
        for half in "12":
            with av.open(str(root / game / f"{half}_224p.mkv")) as container:
                frames[half] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for a in json.loads((root / game / LABEL_FILE_V2).read_text())["annotations"]:
            video, f = frames[a["gameTime"][0]], int(25 * (int(a["position"]) / 1000))
            colour = MARKERS_V2[a["label"]][1]
            before = [_marker_pixels(video[k], colour) for k in (f - 2, f - 1)]
            hits += _marker_pixels(video[f], colour) - before[1] > max(6, 3 * abs(before[1] - before[0]))
            grew = {
                club: _marker_pixels(video[f + 1], TEAM_COLOURS[club])
                - _marker_pixels(video[f - 1], TEAM_COLOURS[club])
                for club in ("red", "blue")
            }
            agree += max(grew, key=grew.get) == ("red" if a["team"] == "home" else "blue")
            total += 1
    assert total >= 8
    assert hits >= 0.9 * total, f"only {hits}/{total} events appear at their labelled frame"
    assert agree >= 0.8 * total, f"only {agree}/{total} markers are outlined in the acting club's colour"


def test_v2_library_is_deterministic_and_not_the_ball_librarys_matches(tmp_path):
    a = render_library(tmp_path / "a", games=1, seconds=3, seed=5, fps=5, label_format="v2")
    b = render_library(tmp_path / "b", games=1, seconds=3, seed=5, fps=5, label_format="v2")
    ball = render_library(tmp_path / "ball", games=1, seconds=3, seed=5, fps=5, layout="halves")
    (game,) = a["train"]
    assert a == b and ball["train"] != a["train"]
    labels = (tmp_path / "a" / game / LABEL_FILE_V2).read_text()
    assert labels == (tmp_path / "b" / game / LABEL_FILE_V2).read_text()
    (ball_game,) = ball["train"]
    ball_labels = json.loads((tmp_path / "ball" / ball_game / LABEL_FILE).read_text())["annotations"]
    positions = [a["position"] for a in json.loads(labels)["annotations"]]
    assert positions != [a["position"] for a in ball_labels]  # other random draws than the Ball library's


# SHA-256 of the Labels-ball.json, splits.json and synthetic.json files (sorted by path) of two small Ball libraries,
# taken before the v2 library existed: adding it changed nothing in a Ball library.
BALL_LIBRARY_DIGESTS = {
    ("game", 3, 25): "36f23fd4845e79377b59798199614d11135f790534ff0e3a97e8afdd3a5eaa6b "
    "03ea3807e0640787908ed21bea6b46937e098419cbd3536e96d755f3fd492a9a "
    "aec50004b9e81b6f1251d2c70910f3f81878294e62e911f75a57b073a298fa5d "
    "5518667f9bf72b9b7151154c7f3b21f202d5d8db8016e115abf6ca0dc7c81247",
    ("halves", 4, 5): "0f503283dc20c54c47237c0bb19630297c6682027032c4257fc7c258d4cb2781 "
    "babca182f8c3d131ad739457cbc41a8ed5b25284466ee2cb63f973c56eb6422c "
    "dad034841415be85167f9b010c8db7e52fbddf3833ca853c0d42f8de88a07252 "
    "ba657746e56555816b689a4e2e47e622a6ccfa70f8273c9da5c8d39df894a577",
}


@pytest.mark.parametrize("layout, seed, fps", list(BALL_LIBRARY_DIGESTS))
def test_ball_library_files_are_unchanged(tmp_path, layout, seed, fps):
    import hashlib

    render_library(tmp_path, games=2, seconds=3, seed=seed, layout=layout, fps=fps)
    files = sorted(tmp_path.rglob(LABEL_FILE)) + [tmp_path / "splits.json", tmp_path / "synthetic.json"]
    digests = " ".join(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    assert digests == BALL_LIBRARY_DIGESTS[(layout, seed, fps)]


def test_v2_cli(tmp_path):
    from synthetic.library import get_args, main

    args = get_args([str(tmp_path), "--games", "1", "--seconds", "1", "--fps", "5", "--label_format", "v2"])
    assert args.layout == "halves" and main(args) == 0
    assert sorted(p.name for p in _videos(tmp_path)) == ["1_224p.mkv", "2_224p.mkv"]
    assert len(list(tmp_path.rglob(LABEL_FILE_V2))) == 1 and not list(tmp_path.rglob(LABEL_FILE))
    assert get_args([str(tmp_path)]).layout == "game"  # the Ball default is unchanged
    with pytest.raises(SystemExit):
        get_args([str(tmp_path), "--label_format", "v2", "--layout", "game"])
    with pytest.raises(ValueError, match="halves layout"):
        render_library(tmp_path / "x", games=1, seconds=1, layout="game", label_format="v2")
