"""Step 2: Labels-ball.json -> parsed splits, and predictions -> results_spotting.json / submission zip."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import parse_soccernet_ball as script
from util.frame_folder import read_frame_folder
from util.io import DataError, load_json, store_json
from util.parse import (
    ParseNotes,
    detect_label_format,
    infer_classes,
    labels_table,
    parse_library,
    write_parsed,
)
from util.soccernet import (
    CLASSES,
    CLASSES_2023,
    CLASSES_V2,
    LABEL_FILE,
    LABEL_FILE_V2,
    PREDICTION_FILE,
    SPLITS,
    default_splits,
    frame_to_position_ms,
    game_time,
    load_labels,
    position_to_frame,
)
from util.submission import write_labels, write_results_spotting, zip_results

GAME_A = "league_a/2024-2025/2024-09-01 - A - B"
GAME_B = "league_a/2024-2025/2024-09-02 - C - D"
GAME_C = "league_a/2024-2025/2024-09-03 - E - F"


# ---- a tiny library written by hand ------------------------------------------------------------------------------


def write_frames(folder: Path, num_frames: int, fps: float = 25.0, size: tuple[int, int] = (16, 12)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 120, 40)).save(folder / "000000.jpg")
    for i in range(1, num_frames):
        shutil.copyfile(folder / "000000.jpg", folder / f"{i:06d}.jpg")
    (folder / "fps.txt").write_text(f"{fps}\n")


def annotation(
    half: int, position_ms: int, label: str = "PASS", team: str = "left", visibility: str = "visible"
):
    return {
        "gameTime": game_time(half, position_ms),
        "label": label,
        "position": str(position_ms),
        "team": team,
        "visibility": visibility,
    }


def write_game(
    label_dir: Path,
    frame_dir: Path,
    game: str,
    annotations: list[dict] | None,
    layout: str = "game",
    num_frames: int = 60,
    fps: float = 25.0,
) -> None:
    (label_dir / game).mkdir(parents=True, exist_ok=True)
    if annotations is not None:
        store_json(label_dir / game / LABEL_FILE, {"UrlLocal": game, "annotations": annotations})
    videos = [game] if layout == "game" else [f"{game}/1", f"{game}/2"]
    for video in videos:
        write_frames(frame_dir / video, num_frames, fps)


# Positions chosen to hit float-rounding edges: int(25 * (2280 / 1000)) is 56, not 57.
ANNOTATIONS_ONE = [
    annotation(1, 2280, "PASS", "left"),
    annotation(1, 40, "DRIVE", "right", "not shown"),
    annotation(1, 1000, "HEADER", "right"),
    annotation(1, 2359, "GOAL", "left"),
]
ANNOTATIONS_HALVES = [
    annotation(1, 2280, "PASS", "left"),
    annotation(2, 0, "DRIVE", "right"),
    annotation(2, 1999, "PASS", "right", "not shown"),
    annotation(1, 520, "DRIVE", "left"),
]


@pytest.fixture
def library(tmp_path):
    """label_dir, frame_dir and splits of a 3-game library: a one-video game, a halves game, a challenge game."""
    label_dir, frame_dir = tmp_path / "videos", tmp_path / "frames"
    write_game(label_dir, frame_dir, GAME_A, ANNOTATIONS_ONE)
    write_game(label_dir, frame_dir, GAME_B, ANNOTATIONS_HALVES, layout="halves", num_frames=70)
    write_game(label_dir, frame_dir, GAME_C, None)  # challenge: no labels
    splits = {"train": [GAME_A], "val": [], "test": [GAME_B], "challenge": [GAME_C]}
    store_json(label_dir / "splits.json", splits)
    return label_dir, frame_dir, splits


def run_script(*argv) -> int:
    return script.run_main(script.main, script.get_args([str(a) for a in argv]))


# ---- positions and frames --------------------------------------------------------------------------------------


def test_frame_of_a_position_is_the_evaluators_expression():
    assert position_to_frame(2280, 25) == 56  # float rounding, as SoccerNet's evaluator does it
    assert position_to_frame(2300, 25) == 57


@pytest.mark.parametrize("fps", [25.0, 12.5, 29.97, 50.0])
def test_position_of_a_frame_maps_back_to_its_25fps_frame(fps):
    for frame in range(0, 3000, 7):
        position_ms = frame_to_position_ms(frame, fps)
        expected = int(np.floor(frame * 25 / fps + 1e-9))
        assert position_to_frame(position_ms, 25) == expected
        if fps == 25.0:
            assert position_to_frame(position_ms, fps) == frame


def test_label_positions_round_trip_through_frames_exactly_at_25fps():
    positions = np.arange(0, 400_000, 13)
    back = [frame_to_position_ms(position_to_frame(p, 25), 25) for p in positions]
    assert [position_to_frame(p, 25) for p in back] == [position_to_frame(p, 25) for p in positions]


# ---- labels ------------------------------------------------------------------------------------------------------


def test_load_labels_reads_every_field(tmp_path):
    file = tmp_path / LABEL_FILE
    anns = [
        annotation(2, 192040, "THROW IN", "right", "not shown"),
        {"gameTime": "1 - 00:03", "label": "PASS"},
    ]
    store_json(file, {"annotations": anns})
    events = load_labels(file)
    assert events[0] == {
        "half": 2,
        "position_ms": 192040,
        "game_time": "2 - 03:12",
        "label": "THROW IN",
        "team": "right",
        "visibility": "not shown",
    }
    # No position: second precision from gameTime; no team: no key; no visibility: visible (as the evaluator reads it).
    assert events[1] == {
        "half": 1,
        "position_ms": 3000,
        "game_time": "1 - 00:03",
        "label": "PASS",
        "visibility": "visible",
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"gameTime": "3 - 00:01", "label": "PASS", "position": "1000"}, "unknown half 3"),
        ({"gameTime": "first half", "label": "PASS", "position": "1000"}, "not 'HALF - MM:SS'"),
        ({"gameTime": "1 - 00:01", "label": "PASS", "position": "soon"}, "position 'soon'"),
        ({"gameTime": "1 - 00:01", "label": "PASS", "team": "home"}, "team 'home'"),
        ({"gameTime": "1 - 00:01", "position": "1000"}, "has no label"),
    ],
)
def test_load_labels_names_the_file_and_the_bad_annotation(tmp_path, bad, message):
    file = tmp_path / LABEL_FILE
    store_json(file, {"annotations": [annotation(1, 0), bad]})
    with pytest.raises(DataError, match=message) as info:
        load_labels(file)
    assert str(file) in str(info.value) and "annotation 1" in str(info.value)


# ---- parsing a library -------------------------------------------------------------------------------------------


def test_parse_writes_the_documented_format(library, tmp_path):
    label_dir, frame_dir, _ = library
    out = tmp_path / "data"
    assert run_script(label_dir, frame_dir, "-o", out, "--splits", label_dir / "splits.json") == 0
    # The classes the labels use, in SoccerNet's order (a subset of the 12 here).
    written = (out / "class.txt").read_text().splitlines()
    assert written == [c for c in CLASSES if c in written] and len(written) >= 2
    parsed = {split: load_json(out / f"{split}.json") for split in SPLITS}
    assert parsed["val"] == []
    (one,) = parsed["train"]
    assert one == {
        "video": GAME_A,
        "num_frames": 60,
        "fps": 25.0,
        "width": 16,
        "height": 12,
        "events": [
            {"frame": 1, "label": "DRIVE", "position_ms": 40, "team": "right", "visibility": "not shown"},
            {"frame": 25, "label": "HEADER", "position_ms": 1000, "team": "right", "visibility": "visible"},
            {"frame": 56, "label": "PASS", "position_ms": 2280, "team": "left", "visibility": "visible"},
            {"frame": 58, "label": "GOAL", "position_ms": 2359, "team": "left", "visibility": "visible"},
        ],
    }
    half1, half2 = parsed["test"]
    assert (half1["video"], half2["video"]) == (f"{GAME_B}/1", f"{GAME_B}/2")
    assert [(e["frame"], e["label"]) for e in half1["events"]] == [(13, "DRIVE"), (56, "PASS")]
    assert [(e["frame"], e["label"]) for e in half2["events"]] == [(0, "DRIVE"), (49, "PASS")]
    (challenge,) = parsed["challenge"]
    assert challenge["video"] == GAME_C and challenge["events"] == []


def test_summary_table_counts_videos_and_events_per_class(library):
    label_dir, frame_dir, splits = library
    classes, parsed, _ = parse_library(label_dir, frame_dir, splits)
    rows = {
        line.split("  ")[0].strip(): line.split()[-5:] for line in labels_table(classes, parsed).splitlines()
    }
    # columns: train val test challenge total
    assert rows["videos"] == ["1", "0", "2", "1", "4"]
    assert rows["PASS"][-5:] == ["1", "0", "2", "0", "3"]
    assert rows["all events"] == ["4", "0", "4", "0", "8"]


def test_frame_rate_comes_from_fps_txt(tmp_path):
    label_dir, frame_dir = tmp_path / "v", tmp_path / "f"
    write_game(label_dir, frame_dir, GAME_A, [annotation(1, 2280)], num_frames=30, fps=12.5)
    _, parsed, _ = parse_library(label_dir, frame_dir, {"train": [GAME_A]})
    (video,) = parsed["train"]
    assert video["fps"] == 12.5 and video["events"][0]["frame"] == int(12.5 * (2280 / 1000)) == 28


def test_soccernet_classes_keep_soccernets_order():
    assert infer_classes(["GOAL", "PASS", "SHOT", "PASS"]) == ["PASS", "SHOT", "GOAL"]
    assert infer_classes(list(reversed(CLASSES))) == CLASSES
    assert infer_classes(["DRIVE", "PASS"]) == CLASSES_2023


def test_classes_outside_soccernets_are_sorted_and_a_class_file_fixes_them(tmp_path):
    label_dir, frame_dir = tmp_path / "v", tmp_path / "f"
    write_game(label_dir, frame_dir, GAME_A, [annotation(1, 0, "ZAP"), annotation(1, 40, "BOUNCE")])
    classes, _, _ = parse_library(label_dir, frame_dir, {"train": [GAME_A]})
    assert classes == ["BOUNCE", "ZAP"]
    classes, _, _ = parse_library(
        label_dir, frame_dir, {"train": [GAME_A]}, classes=["ZAP", "BOUNCE", "KICK"]
    )
    assert classes == ["ZAP", "BOUNCE", "KICK"]


# ---- bad input ---------------------------------------------------------------------------------------------------


def _break_malformed_json(label_dir, frame_dir):
    (label_dir / GAME_A / LABEL_FILE).write_text('{"annotations": [')
    return "malformed JSON"


def _break_missing_frame_folder(label_dir, frame_dir):
    shutil.rmtree(frame_dir / GAME_A)
    return "frame folder not found"


def _break_missing_half_folder(label_dir, frame_dir):
    shutil.rmtree(frame_dir / GAME_B / "2")
    return "frame folder not found"


def _break_missing_fps(label_dir, frame_dir):
    (frame_dir / GAME_A / "fps.txt").unlink()
    return "fps.txt: not found"


def _break_half_2_in_one_video(label_dir, frame_dir):
    store_json(label_dir / GAME_A / LABEL_FILE, {"annotations": [annotation(2, 1000)]})
    return "unknown half 2"


def _break_past_the_end(label_dir, frame_dir):
    store_json(label_dir / GAME_A / LABEL_FILE, {"annotations": [annotation(1, 2400)]})  # frame 60 of 60
    return "past the end"


def _break_unknown_label(label_dir, frame_dir):
    store_json(label_dir / GAME_A / LABEL_FILE, {"annotations": [annotation(1, 0, "CORNER")]})
    return "unknown label"


def _break_missing_labels_outside_challenge(label_dir, frame_dir):
    (label_dir / GAME_A / LABEL_FILE).unlink()
    return "only challenge games"


# One bad annotation: the game is refused with --strict, else that annotation alone is dropped (below).
BAD_ANNOTATIONS = [_break_half_2_in_one_video, _break_past_the_end, _break_unknown_label]


@pytest.mark.parametrize(
    "breaker",
    [
        _break_malformed_json,
        _break_missing_frame_folder,
        _break_missing_half_folder,
        _break_missing_fps,
        *BAD_ANNOTATIONS,
        _break_missing_labels_outside_challenge,
    ],
)
def test_bad_input_names_file_and_game_and_writes_nothing(library, tmp_path, capsys, breaker):
    label_dir, frame_dir, _ = library
    message = breaker(label_dir, frame_dir)
    bad_game = GAME_B if breaker is _break_missing_half_folder else GAME_A
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"{c}\n" for c in CLASSES))
    out = tmp_path / "data"
    argv = [label_dir, frame_dir, "-o", out, "--splits", label_dir / "splits.json", "--classes", classes]
    if breaker in BAD_ANNOTATIONS:
        argv.append("--strict")
    assert run_script(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and f"game {bad_game}" in err
    assert str(label_dir / bad_game) in err or str(frame_dir / bad_game) in err
    assert not out.exists()

    # --skip_bad reports the bad game and writes the others.
    assert run_script(*argv, "--skip_bad") == 0
    assert f"skipped game {bad_game}" in capsys.readouterr().err
    videos = [v["video"] for split in SPLITS for v in load_json(out / f"{split}.json")]
    assert videos and not any(v.startswith(bad_game) for v in videos)


@pytest.mark.parametrize("breaker", BAD_ANNOTATIONS)
def test_one_bad_annotation_costs_that_event_alone(library, tmp_path, capsys, breaker):
    label_dir, frame_dir, _ = library
    good = load_json(label_dir / GAME_A / LABEL_FILE)["annotations"]
    breaker(label_dir, frame_dir)
    bad = load_json(label_dir / GAME_A / LABEL_FILE)["annotations"]
    store_json(label_dir / GAME_A / LABEL_FILE, {"annotations": good + bad})
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"{c}\n" for c in CLASSES))
    out = tmp_path / "data"
    argv = [label_dir, frame_dir, "-o", out, "--splits", label_dir / "splits.json", "--classes", classes]
    assert run_script(*argv) == 0
    err = capsys.readouterr().err
    assert "1 annotation(s) dropped" in err
    (video,) = [v for split in SPLITS for v in load_json(out / f"{split}.json") if v["video"] == GAME_A]
    assert len(video["events"]) == len(good) and good  # the game's other events are all there


def test_one_bad_annotation_is_named_with_its_game_label_and_reason(library, caplog):
    label_dir, frame_dir, splits = library
    _break_past_the_end(label_dir, frame_dir)
    notes = ParseNotes()
    caplog.set_level("WARNING")
    _, parsed, problems = parse_library(label_dir, frame_dir, splits, notes=notes)
    assert problems == [] and len(notes.dropped_events) == 1
    (note,) = notes.dropped_events
    assert (
        str(label_dir / GAME_A / LABEL_FILE) in note and "'PASS' dropped" in note and "past the end" in note
    )
    assert note in caplog.text
    with pytest.raises(DataError, match="past the end"):
        parse_library(label_dir, frame_dir, splits, strict=True)


def test_games_of_the_split_lists_not_in_the_library_are_left_out_and_counted(library, tmp_path, capsys):
    label_dir, frame_dir, splits = library
    absent = {"train": ["league_x/2024-2025/2024-10-01 - X - Y", "league_x/2024-2025/2024-10-02 - X - Z"]}
    lists = {split: list(splits.get(split, [])) + absent.get(split, []) for split in SPLITS}
    store_json(tmp_path / "splits.json", lists)
    notes = ParseNotes()
    _, parsed, problems = parse_library(label_dir, frame_dir, lists, notes=notes)
    assert problems == [] and notes.missing_games == absent
    assert sorted(v["video"] for s in SPLITS for v in parsed[s]) == sorted(
        v["video"] for s in SPLITS for v in parse_library(label_dir, frame_dir, splits)[1][s]
    )
    out = tmp_path / "data"
    assert run_script(label_dir, frame_dir, "-o", out, "--splits", tmp_path / "splits.json") == 0
    assert "not in the library, left out: train 2" in capsys.readouterr().err
    assert (
        run_script(
            label_dir, frame_dir, "-o", tmp_path / "d2", "--splits", tmp_path / "splits.json", "--strict"
        )
        == 2
    )
    assert "league_x/2024-2025/2024-10-01 - X - Y" in capsys.readouterr().err


def test_a_failed_write_leaves_the_parsed_set_whole(tmp_path, monkeypatch):
    out = tmp_path / "data"
    write_parsed(out, ["PASS"], {"train": [{"video": "a"}]})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import util.parse as parse_module

    real = parse_module.store_json

    def failing(path, obj, *args, **kwargs):
        if Path(path).name == "test.json":
            raise OSError("disk full")
        return real(path, obj, *args, **kwargs)

    monkeypatch.setattr(parse_module, "store_json", failing)
    with pytest.raises(OSError, match="disk full"):
        write_parsed(out, ["PASS", "DRIVE"], {"train": [{"video": "b"}]})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no mix of old and new, no leftovers


def test_every_bad_game_is_reported_at_once(library):
    label_dir, frame_dir, splits = library
    _break_missing_fps(label_dir, frame_dir)
    _break_missing_half_folder(label_dir, frame_dir)
    with pytest.raises(DataError, match="2 bad game") as info:
        parse_library(label_dir, frame_dir, splits)
    assert GAME_A in str(info.value) and GAME_B in str(info.value)


def test_frame_folder_checks(tmp_path):
    write_frames(tmp_path / "v", 5)
    assert read_frame_folder(tmp_path / "v") == {"fps": 25.0, "num_frames": 5, "width": 16, "height": 12}
    (tmp_path / "v" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="not numbered"):
        read_frame_folder(tmp_path / "v")
    (tmp_path / "v" / "fps.txt").write_text("fast")
    with pytest.raises(DataError, match="not a frame rate"):
        read_frame_folder(tmp_path / "v")


# ---- splits ------------------------------------------------------------------------------------------------------


def test_default_splits_are_soccernets_ball_lists():
    splits = default_splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 1, "test": 2, "challenge": 2}
    assert "england_efl/2019-2020/2019-10-01 - Reading - Fulham" in splits["test"]
    assert splits["val"] == ["england_efl/2019-2020/2019-10-01 - Middlesbrough - Preston North End"]


def test_no_flag_parses_the_soccernet_games(tmp_path):
    label_dir, frame_dir, out = tmp_path / "v", tmp_path / "f", tmp_path / "data"
    splits = default_splits()
    for split, games in splits.items():
        for game in games:
            write_game(
                label_dir,
                frame_dir,
                game,
                None if split == "challenge" else [annotation(1, 80)],
                num_frames=4,
            )
    write_game(label_dir, frame_dir, GAME_A, [annotation(1, 40)], num_frames=4)  # in no split: ignored
    assert run_script(label_dir, frame_dir, "-o", out) == 0
    for split, games in splits.items():
        assert [v["video"] for v in load_json(out / f"{split}.json")] == games


def test_no_flag_on_another_library_points_to_splits(library, tmp_path, capsys):
    label_dir, frame_dir, _ = library
    assert run_script(label_dir, frame_dir, "-o", tmp_path / "data") == 2
    assert f"--splits {label_dir / 'splits.json'}" in capsys.readouterr().err


def test_bad_splits_file(library, tmp_path, capsys):
    label_dir, frame_dir, _ = library
    bad = tmp_path / "splits.json"
    store_json(bad, {"train": [GAME_A], "test": [GAME_A]})
    assert run_script(label_dir, frame_dir, "-o", tmp_path / "data", "--splits", bad) == 2
    assert "is in both 'train' and 'test'" in capsys.readouterr().err


# ---- submissions -------------------------------------------------------------------------------------------------


def predictions_from(parsed: dict) -> list[dict]:
    """Perfect predictions: every label event, with a score and the team."""
    return [
        {
            "video": v["video"],
            "fps": v["fps"],
            "events": [
                {"frame": e["frame"], "label": e["label"], "score": 0.5 + 0.01 * i, "team": e["team"]}
                for i, e in enumerate(v["events"])
            ],
        }
        for split in SPLITS
        for v in parsed[split]
    ]


def test_labels_to_results_spotting_round_trip_in_both_layouts(library, tmp_path):
    from SoccerNet.Evaluation.ActionSpotting import label2vector, predictions2vector

    label_dir, frame_dir, splits = library
    classes, parsed, _ = parse_library(label_dir, frame_dir, splits)
    paths = write_results_spotting(predictions_from(parsed), tmp_path / "results")
    assert paths == [tmp_path / "results" / g / PREDICTION_FILE for g in sorted([GAME_A, GAME_B, GAME_C])]
    dictionary = {c: i for i, c in enumerate(classes)}
    for game, anns in [(GAME_A, ANNOTATIONS_ONE), (GAME_B, ANNOTATIONS_HALVES)]:
        results = load_json(tmp_path / "results" / game / PREDICTION_FILE)
        assert results["UrlLocal"] == game
        row = results["predictions"][0]
        assert set(row) == {"gameTime", "label", "position", "half", "confidence", "team"}
        assert all(isinstance(row[k], str) for k in ("position", "half", "confidence"))
        assert sorted((r["half"], r["label"], r["team"]) for r in results["predictions"]) == sorted(
            (str(a["gameTime"][0]), a["label"], a["team"]) for a in anns
        )
        # The official evaluator puts every prediction on its label's 25 fps frame.
        labels = label2vector({"annotations": anns}, len(classes), 25, 2, dictionary)
        preds = predictions2vector(results, len(classes), 2, 25, dictionary)
        for label_half, pred_half in zip(labels, preds, strict=True):
            assert np.array_equal(np.nonzero(label_half), np.nonzero(pred_half >= 0))
    assert load_json(tmp_path / "results" / GAME_C / PREDICTION_FILE)["predictions"] == []


def test_round_trip_at_another_frame_rate_agrees_within_one_frame(tmp_path):
    label_dir, frame_dir = tmp_path / "v", tmp_path / "f"
    anns = [annotation(1, p) for p in range(0, 4800, 37)]
    write_game(label_dir, frame_dir, GAME_A, anns, num_frames=60, fps=12.5)
    _, parsed, _ = parse_library(label_dir, frame_dir, {"train": [GAME_A]})
    (path,) = write_results_spotting(predictions_from(parsed), tmp_path / "results")
    back = sorted(int(r["position"]) for r in load_json(path)["predictions"])
    for original, position_ms in zip(sorted(int(a["position"]) for a in anns), back, strict=True):
        assert abs(position_ms - original) < 1000 / 12.5


def test_results_rows_keep_the_prediction_files_order_on_a_shared_frame(tmp_path):
    video = {"video": GAME_A, "fps": 50.0, "events": []}
    video["events"] = [
        {"frame": 30, "label": "PASS", "score": 0.5},
        {"frame": 11, "label": "PASS", "score": 0.2},
        {"frame": 10, "label": "PASS", "score": 0.9},
    ]
    (path,) = write_results_spotting([video], tmp_path)
    rows = load_json(path)["predictions"]
    # Rows go by position; frames 10 and 11 both land on 25 fps frame 5 and keep the file's order, so the row the
    # evaluator keeps (the last of a frame and class) is the file's later one, as when it reads the file itself.
    assert [(r["position"], r["confidence"]) for r in rows] == [
        ("220", "0.2"),
        ("220", "0.9"),
        ("620", "0.5"),
    ]
    assert "team" not in rows[0]


def test_results_reject_mixed_layouts_and_repeated_videos(tmp_path):
    one = {"video": GAME_A, "fps": 25, "events": []}
    with pytest.raises(DataError, match="both a one-video id and half ids"):
        write_results_spotting([one, {**one, "video": f"{GAME_A}/2"}], tmp_path)
    with pytest.raises(DataError, match="appears twice"):
        write_results_spotting([one, one], tmp_path)
    with pytest.raises(DataError, match="needs 'label' and 'score'"):
        write_results_spotting([{**one, "events": [{"frame": 3, "label": "PASS"}]}], tmp_path)


def test_write_labels_round_trips_through_load_labels(library, tmp_path):
    label_dir, frame_dir, splits = library
    _, parsed, _ = parse_library(label_dir, frame_dir, splits)
    write_labels(parsed["test"], tmp_path / "labels")
    events = load_labels(tmp_path / "labels" / GAME_B / LABEL_FILE)
    expected = sorted(
        (a["gameTime"][0], position_to_frame(int(a["position"]), 25)) for a in ANNOTATIONS_HALVES
    )
    assert sorted((str(e["half"]), position_to_frame(e["position_ms"], 25)) for e in events) == expected


def test_zip_is_laid_out_for_the_evaluation_server(library, tmp_path):
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    label_dir, frame_dir, splits = library
    classes, parsed, _ = parse_library(label_dir, frame_dir, splits)
    write_results_spotting(predictions_from(parsed), tmp_path / "results")
    zip_path = zip_results(tmp_path / "results", tmp_path / "submission.zip")
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert sorted(names) == sorted(f"{g}/{PREDICTION_FILE}" for g in [GAME_A, GAME_B, GAME_C])
        assert json.loads(archive.read(f"{GAME_A}/{PREDICTION_FILE}"))["UrlLocal"] == GAME_A

    # SoccerNet's own evaluator reads the zip and finds perfect predictions perfect.
    labelled = tmp_path / "gt"
    for game in (GAME_A, GAME_B):
        (labelled / game).mkdir(parents=True)
        shutil.copy(label_dir / game / LABEL_FILE, labelled / game / LABEL_FILE)
    used = sorted({a["label"] for a in ANNOTATIONS_ONE + ANNOTATIONS_HALVES})
    result = evaluate(
        SoccerNet_path=str(labelled),
        Predictions_path=str(zip_path),
        prediction_file=PREDICTION_FILE,
        label_files=LABEL_FILE,
        dataset=None,
        framerate=25,
        metric="at1",
        EVENT_DICTIONARY={c: i for i, c in enumerate(used)},
    )
    assert result["a_mAP"] == pytest.approx(1.0)


def test_zip_of_nothing_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no results_spotting.json"):
        zip_results(tmp_path, tmp_path / "x.zip")


# ---- the synthetic library, end to end ---------------------------------------------------------------------------


def extract_frames(video_file: Path, folder: Path) -> int:
    """Stand-in for step 1: every decoded frame as a JPEG (the first one real, the rest copies) plus fps.txt."""
    import cv2

    capture = cv2.VideoCapture(str(video_file))
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = 0
    folder.mkdir(parents=True)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if count == 0:
            cv2.imwrite(str(folder / "000000.jpg"), frame)
        else:
            shutil.copyfile(folder / "000000.jpg", folder / f"{count:06d}.jpg")
        count += 1
    capture.release()
    (folder / "fps.txt").write_text(f"{fps}\n")
    return count


@pytest.mark.parametrize("layout", ["game", "halves"])
def test_synthetic_library_parses_end_to_end(tmp_path, layout):
    synthetic = pytest.importorskip("synthetic.library")
    library_dir, frame_dir, out = tmp_path / "lib", tmp_path / "frames", tmp_path / "data"
    splits = synthetic.render_library(library_dir, games=2, seconds=6, seed=0, layout=layout)
    for video_file in sorted(library_dir.rglob("*.m[kp][v4]")):
        game = video_file.parent.relative_to(library_dir).as_posix()
        video = game if layout == "game" else f"{game}/{video_file.name[0]}"
        assert extract_frames(video_file, frame_dir / video) == 150
    assert run_script(library_dir, frame_dir, "-o", out, "--splits", library_dir / "splits.json") == 0
    for split in SPLITS:
        entries = load_json(out / f"{split}.json")
        games = splits.get(split, [])
        assert len(entries) == len(games) * (1 if layout == "game" else 2)
        for game in games:
            anns = load_labels(library_dir / game / LABEL_FILE)
            events = [e for v in entries if v["video"].startswith(game) for e in v["events"]]
            assert len(events) == len(anns) > 0
            assert sorted(e["label"] for e in events) == sorted(a["label"] for a in anns)
    all_games = [g for split in splits.values() for g in split]
    used = {a["label"] for game in all_games for a in load_labels(library_dir / game / LABEL_FILE)}
    assert (out / "class.txt").read_text().splitlines() == [c for c in CLASSES if c in used]


# ---- SoccerNet-v2 action spotting (Labels-v2.json, the pretraining source) -------------------------------------

GAME_V2 = "league_b/2015-2016/2015-08-08 - 19-30 Home FC 2 - 2 Away FC"


def annotation_v2(
    half: int, position_ms: int, label: str = "Throw-in", team: str = "home", visibility="visible"
):
    """``annotation`` with v2's defaults (a v2 class, a club as the team)."""
    return annotation(half, position_ms, label, team, visibility)


ANNOTATIONS_V2 = [
    annotation_v2(1, 2280, "Ball out of play", "not applicable"),
    annotation_v2(2, 1000, "Corner", "away", "not shown"),
    annotation_v2(1, 40, "Kick-off", "home"),
    annotation_v2(2, 2359, "Yellow->red card", "home"),
]


def write_v2_game(label_dir: Path, frame_dir: Path, game: str, annotations: list[dict] | None, **kw) -> None:
    """A SoccerNet-v2 game: Labels-v2.json (unless None) and two half frame folders."""
    write_game(label_dir, frame_dir, game, None, layout="halves", **kw)
    if annotations is not None:
        store_json(label_dir / game / LABEL_FILE_V2, {"UrlLocal": game, "annotations": annotations})


@pytest.fixture
def v2_hand_library(tmp_path):
    """label_dir, frame_dir and splits.json of a 2-game SoccerNet-v2 library (one train game, one challenge)."""
    label_dir, frame_dir = tmp_path / "v2_videos", tmp_path / "v2_frames"
    write_v2_game(label_dir, frame_dir, GAME_V2, ANNOTATIONS_V2)
    write_v2_game(label_dir, frame_dir, GAME_C, None)
    store_json(label_dir / "splits.json", {"train": [GAME_V2], "challenge": [GAME_C]})
    return label_dir, frame_dir, label_dir / "splits.json"


def test_v2_classes_are_soccernets_in_its_order():
    from SoccerNet.Evaluation.utils import EVENT_DICTIONARY_V2

    assert sorted(EVENT_DICTIONARY_V2, key=EVENT_DICTIONARY_V2.get) == CLASSES_V2
    assert len(CLASSES_V2) == 17 and LABEL_FILE_V2 == "Labels-v2.json"
    assert infer_classes(["Corner", "Penalty", "Foul"], CLASSES_V2) == ["Penalty", "Foul", "Corner"]


def test_v2_default_splits_are_soccernets_v2_lists():
    from SoccerNet.utils import getListGames

    splits = default_splits("v2")
    assert {k: len(v) for k, v in splits.items()} == {"train": 300, "val": 100, "test": 100, "challenge": 50}
    assert splits["val"] == getListGames("valid", task="spotting")
    assert splits["train"][0] == "england_epl/2014-2015/2015-02-21 - 18-00 Chelsea 1 - 1 Burnley"
    assert not set(splits["train"]) & set(splits["test"])
    assert default_splits() == default_splits("ball")  # the Ball lists stay the default


def test_load_labels_v2_keeps_home_away_apart_from_team(tmp_path):
    file = tmp_path / LABEL_FILE_V2
    store_json(file, {"annotations": ANNOTATIONS_V2})
    events = load_labels(file, "v2")
    assert events[0] == {
        "half": 1,
        "position_ms": 2280,
        "game_time": "1 - 00:02",
        "label": "Ball out of play",
        "visibility": "visible",
    }
    assert events[1]["home_away"] == "away" and events[2]["home_away"] == "home"
    assert not any("team" in e for e in events)  # never the team head's left / right
    with pytest.raises(DataError, match="team 'not applicable'"):  # the Ball reader refuses v2's teams
        load_labels(file)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"gameTime": "3 - 00:01", "label": "Goal", "position": "1000"}, "unknown half 3"),
        ({"gameTime": "1 - 00:01", "label": "Goal", "position": "1000", "team": "left"}, "team 'left'"),
        ({"gameTime": "1 - 00:01", "label": "Goal", "position": "-5"}, "negative position"),
        ({"gameTime": "1 - 00:01", "label": "Goal", "visibility": "hidden"}, "visibility 'hidden'"),
    ],
)
def test_load_labels_v2_names_the_file_and_the_bad_annotation(tmp_path, bad, message):
    file = tmp_path / LABEL_FILE_V2
    store_json(file, {"annotations": [annotation_v2(1, 0), bad]})
    with pytest.raises(DataError, match=message) as info:
        load_labels(file, "v2")
    assert str(file) in str(info.value) and "annotation 1" in str(info.value)
    store_json(file, {"labels": []})
    with pytest.raises(DataError, match=f"{LABEL_FILE_V2}\\?"):
        load_labels(file, "v2")


@pytest.mark.parametrize(
    "flag", [["--labels", "v2"], []]
)  # chosen, or detected from the Labels-v2.json files
def test_parse_v2_writes_halves_and_v2_classes(v2_hand_library, tmp_path, capsys, flag):
    label_dir, frame_dir, splits_file = v2_hand_library
    out = tmp_path / "data"
    assert run_script(label_dir, frame_dir, "-o", out, "--splits", splits_file, *flag) == 0
    if not flag:
        assert "labels: SoccerNet-v2 (Labels-v2.json found" in capsys.readouterr().out
    assert (out / "class.txt").read_text().splitlines() == [
        "Kick-off",
        "Ball out of play",
        "Corner",
        "Yellow->red card",
    ]
    half1, half2 = load_json(out / "train.json")
    assert (half1["video"], half2["video"]) == (f"{GAME_V2}/1", f"{GAME_V2}/2")
    assert half1["events"] == [
        {"frame": 1, "label": "Kick-off", "position_ms": 40, "home_away": "home", "visibility": "visible"},
        {"frame": 56, "label": "Ball out of play", "position_ms": 2280, "visibility": "visible"},
    ]
    assert half2["events"] == [
        {"frame": 25, "label": "Corner", "position_ms": 1000, "home_away": "away", "visibility": "not shown"},
        {
            "frame": 58,
            "label": "Yellow->red card",
            "position_ms": 2359,
            "home_away": "home",
            "visibility": "visible",
        },
    ]
    assert [v["video"] for v in load_json(out / "challenge.json")] == [f"{GAME_C}/1", f"{GAME_C}/2"]
    assert all(v["events"] == [] for v in load_json(out / "challenge.json"))


def test_v2_games_are_always_in_halves(tmp_path):
    """A v2 game whose frames were extracted as one video is an error naming the missing half folder."""
    label_dir, frame_dir = tmp_path / "v", tmp_path / "f"
    write_game(label_dir, frame_dir, GAME_V2, None)  # frame_dir/GAME_V2, no 1/ and 2/
    store_json(label_dir / GAME_V2 / LABEL_FILE_V2, {"annotations": [annotation_v2(1, 40)]})
    with pytest.raises(DataError, match="frame folder not found") as info:
        parse_library(label_dir, frame_dir, {"train": [GAME_V2]}, label_format="v2")
    assert str(frame_dir / GAME_V2 / "1") in str(info.value)


@pytest.mark.parametrize("broken", ['{"annotations": [', '{"annotations": [{"gameTime": "1 - 00:01"}]}'])
def test_bad_labels_v2_names_file_and_game_and_writes_nothing(v2_hand_library, tmp_path, capsys, broken):
    label_dir, frame_dir, splits_file = v2_hand_library
    (label_dir / GAME_V2 / LABEL_FILE_V2).write_text(broken)
    out = tmp_path / "data"
    assert run_script(label_dir, frame_dir, "-o", out, "--splits", splits_file, "--labels", "v2") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"game {GAME_V2}" in err
    assert str(label_dir / GAME_V2 / LABEL_FILE_V2) in err
    assert "malformed JSON" in err or "has no label" in err
    assert not out.exists()


def test_v2_without_splits_uses_soccernets_v2_lists(v2_hand_library, tmp_path, capsys):
    label_dir, frame_dir, _ = v2_hand_library
    assert run_script(label_dir, frame_dir, "-o", tmp_path / "data", "--labels", "v2") == 2
    err = capsys.readouterr().err
    assert "none of the 550 games" in err and "england_epl/2014-2015/" in err
    assert f"--splits {label_dir / 'splits.json'}" in err
    (label_dir / "splits.json").unlink()
    assert run_script(label_dir, frame_dir, "-o", tmp_path / "data", "--labels", "v2") == 2
    assert "for a library other than SoccerNet-v2" in capsys.readouterr().err


def test_label_format_detection_keeps_ball_the_default(library, v2_hand_library, tmp_path):
    label_dir, frame_dir, splits = library
    assert detect_label_format(label_dir) == "ball"
    assert detect_label_format(v2_hand_library[0]) == "v2"
    assert detect_label_format(v2_hand_library[0], [GAME_V2]) == "v2"
    assert detect_label_format(v2_hand_library[0], [GAME_C]) == "ball"  # no labels at all: Ball, as before
    assert detect_label_format(tmp_path / "nothing") == "ball"
    # A Ball library with a stray Labels-v2.json is still Ball, and parses exactly as with --labels ball.
    store_json(label_dir / GAME_A / LABEL_FILE_V2, {"annotations": ANNOTATIONS_V2})
    assert detect_label_format(label_dir) == "ball" == detect_label_format(label_dir, [GAME_A])
    out_auto, out_ball = tmp_path / "auto", tmp_path / "ball"
    assert run_script(label_dir, frame_dir, "-o", out_auto, "--splits", label_dir / "splits.json") == 0
    argv = [label_dir, frame_dir, "-o", out_ball, "--splits", label_dir / "splits.json", "--labels", "ball"]
    assert run_script(*argv) == 0
    for name in ["class.txt", *(f"{s}.json" for s in SPLITS)]:
        assert (out_auto / name).read_bytes() == (out_ball / name).read_bytes()
    assert parse_library(label_dir, frame_dir, splits) == parse_library(
        label_dir, frame_dir, splits, label_format="ball"
    )
    # Ball events keep "team" and never get "home_away".
    (one,) = load_json(out_ball / "train.json")
    assert all("team" in e and "home_away" not in e for e in one["events"])


def test_synthetic_v2_library_parses_end_to_end(v2_library, tmp_path):
    """A v2 library of synthetic.library: class.txt in v2's order, halves as <game>/1 and <game>/2, every label at
    the frame int(fps * position_ms / 1000) of its half, home / away kept apart from the team."""
    library_dir, splits = v2_library
    frame_dir, out = tmp_path / "frames", tmp_path / "data"
    for video_file in sorted(library_dir.rglob("*.mkv")):
        game = video_file.parent.relative_to(library_dir).as_posix()
        assert extract_frames(video_file, frame_dir / f"{game}/{video_file.name[0]}") == 200
    assert run_script(library_dir, frame_dir, "-o", out, "--splits", library_dir / "splits.json") == 0
    used = set()
    for split in SPLITS:
        entries = {v["video"]: v for v in load_json(out / f"{split}.json")}
        games = splits.get(split, [])
        assert sorted(entries) == sorted(f"{g}/{h}" for g in games for h in (1, 2))
        for game in games:
            raw = load_json(library_dir / game / LABEL_FILE_V2)["annotations"]
            assert raw and {a["team"] for a in raw} <= {"home", "away"}
            expected = sorted(
                (f"{game}/{a['gameTime'][0]}", int(25 * (int(a["position"]) / 1000)), a["label"], a["team"])
                for a in raw
            )
            got = sorted(
                (video, e["frame"], e["label"], e["home_away"])
                for video in (f"{game}/1", f"{game}/2")
                for e in entries[video]["events"]
            )
            assert got == expected
            assert not any("team" in e for v in entries.values() for e in v["events"])
            used |= {a["label"] for a in raw}
    classes = (out / "class.txt").read_text().splitlines()
    assert classes == [c for c in CLASSES_V2 if c in used] and not set(classes) & set(CLASSES)


def test_a_partial_v2_library_parses_the_games_it_holds(v2_hand_library, tmp_path, capsys):
    """A subset of SoccerNet-v2 downloaded (for pretraining): the split lists' other games are not bad games."""
    label_dir, frame_dir, splits_file = v2_hand_library
    lists = load_json(splits_file)
    held = [g for split in SPLITS for g in lists.get(split, [])]
    lists["train"] = list(lists.get("train", [])) + [f"england_epl/2014-2015/game {i}" for i in range(5)]
    lists["challenge"] = list(lists.get("challenge", [])) + ["europe_uefa/2016-2017/withheld"]
    store_json(tmp_path / "splits.json", lists)
    out = tmp_path / "data"
    assert run_script(label_dir, frame_dir, "-o", out, "--splits", tmp_path / "splits.json") == 0
    assert "not in the library, left out: train 5, challenge 1" in capsys.readouterr().err
    parsed = sorted(
        v["video"].rsplit("/", 1)[0] for split in SPLITS for v in load_json(out / f"{split}.json")
    )
    assert sorted(set(parsed)) == sorted(held)


def test_three_games_of_soccernet_v2_parse_with_the_packages_split_lists(tmp_path, capsys):
    """The usual pretraining download: 3 of v2's 550 games on disk, parsed with SoccerNet's own lists."""
    lists = default_splits("v2")
    held = {"train": lists["train"][0], "val": lists["val"][0], "test": lists["test"][0]}
    label_dir, frame_dir = tmp_path / "v2_videos", tmp_path / "v2_frames"
    for game in held.values():
        write_v2_game(label_dir, frame_dir, game, ANNOTATIONS_V2)
    out = tmp_path / "data"
    assert run_script(label_dir, frame_dir, "-o", out, "--labels", "v2") == 0
    assert "left out: train 299, val 99, test 99, challenge 50" in capsys.readouterr().err
    for split, game in held.items():
        assert [v["video"] for v in load_json(out / f"{split}.json")] == [f"{game}/1", f"{game}/2"]
    assert load_json(out / "challenge.json") == []
