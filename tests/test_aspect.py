"""Another aspect ratio than the model's (issue 33 item 3): letterboxed by default, cropped or stretched on request,
and said in a note (a log warning and the result's ``notes``), never stretched silently; the model's own aspect
(SoccerNet's 16:9, within ``ASPECT_TOLERANCE``) is read exactly as before.

The model here reads 114x64 frames (16:9 within 0.2 %, as ``tests.conftest.write_tiny_model``'s). The pictures are
a grey field with a white square in the middle: its width over its height in the frames the model reads tells
whether the picture kept its shape (1) or was stretched (4:3 into 16:9: 1.34).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import frame_value, write_video_file, write_video_frames

FPS = 25.0
MODEL = {"fps": FPS, "source_width": 114, "source_height": 64, "frame_width": 112, "frame_height": 64}
NUM_FRAMES = 6


def _square(side_share: float = 0.5, sar: float = 1.0):
    """A ``draw`` for the fixtures: a white square as shown (pixels ``sar`` wide), ``side_share`` of the
    picture's height, in its middle."""

    def draw(image: np.ndarray, frame: int) -> None:
        height, width = image.shape[:2]
        side, stored_w = round(side_share * height), round(side_share * height / sar)
        top, left = (height - side) // 2, (width - stored_w) // 2
        image[top : top + side, left : left + stored_w] = 255

    return draw


def _box(frame: np.ndarray, threshold: float = 150) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the white square in an (H, W, 3) frame."""
    rows, cols = np.nonzero(frame.mean(axis=2) > threshold)
    return cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1


def _video(path: Path, size: tuple[int, int], draw=None, sar: Fraction | None = None) -> Path:
    """An H.264 video of ``NUM_FRAMES`` grey frames (``frame_value``) with a white square, its pixels ``sar``
    wide."""
    if sar is None:
        write_video_file(path, NUM_FRAMES, FPS, draw or _square(), size)
        return path
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.sample_aspect_ratio = sar
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for i in range(NUM_FRAMES):
            image = np.full((size[1], size[0], 3), frame_value(i), np.uint8)
            (draw or _square())(image, i)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return path


def _read(path: Path, config: dict = MODEL, **kwargs) -> tuple[np.ndarray, list[str]]:
    """The frames the model reads of ``path`` (open_source, as step 5 opens it), and the notes."""
    from dataset.source import resolve_input
    from model.inference import open_source

    video, frame_dir = (path, None) if path.is_file() else (None, path)
    item = resolve_input(video, frame_dir, None, None)
    notes: list[str] = []
    source = open_source(config, item, None, notes, **kwargs)
    return np.concatenate(list(source.iter_chunks(4))), notes


def _old_reading(path: Path, size: tuple[int, int]) -> np.ndarray:
    """What step 5 read before: the decoder's frames resized to ``size``, whatever their aspect."""
    from util.video import read_frames

    return np.stack([image for _, image in read_frames(path, FPS, height=size[1], width=size[0])])


def _check_letterboxed(frames: np.ndarray, image_w: int) -> None:
    """Black bars left and right, the picture between them ``image_w`` wide, centred, its square square."""
    width = frames.shape[2]
    left = (width - image_w) // 2  # the odd column, if any, goes to the right bar
    assert (frames[:, :, :left] == 0).all() and (frames[:, :, left + image_w :] == 0).all()
    for i, frame in enumerate(frames):
        field = frame[:, left : left + image_w].astype(int)
        assert field.min() > 0, "the picture fills the space between the bars"
        # The grey field at the picture's edges: the picture itself, not a blend with the bars.
        assert abs(np.median(field[:, :3]) - frame_value(i)) <= 3
        assert abs(np.median(field[:, -3:]) - frame_value(i)) <= 3
        box_left, _, box_w, box_h = _box(frame)
        assert abs(box_w - box_h) <= 1, f"the square is {box_w}x{box_h}: stretched"
        assert abs(box_left + box_w / 2 - width / 2) <= 1, "the picture is centred"


def test_a_4_3_video_is_letterboxed_with_a_note(tmp_path):
    path = _video(tmp_path / "4x3.mp4", (160, 120))
    frames, notes = _read(path)
    assert frames.shape == (NUM_FRAMES, 64, 114, 3)
    # 160x120 at the model's height 64 is 85 wide (4:3 within 0.4 %): bars of 14 and 15 columns.
    _check_letterboxed(frames, 85)
    assert len(notes) == 1
    assert "160x120" in notes[0] and "4:3" in notes[0] and "114x64" in notes[0]
    assert "letterboxed" in notes[0] and "85x64" in notes[0] and "left and right" in notes[0]


def test_a_4_3_video_through_run_inference_warns_and_the_model_reads_letterboxed_frames(
    tiny_model_dir, tmp_path, monkeypatch, caplog
):
    import model.predict
    from model.inference import run_inference

    path = _video(tmp_path / "4x3.mp4", (160, 120))
    read: list[np.ndarray] = []
    run_batch = model.predict._run_batch

    def recording(net, windows, config, *args, **kwargs):
        read.extend(w for w in windows)
        return run_batch(net, windows, config, *args, **kwargs)

    monkeypatch.setattr(model.predict, "_run_batch", recording)
    with caplog.at_level(logging.WARNING, logger="model.inference"):
        result = run_inference(tiny_model_dir, tmp_path / "out", video=path, labels="none")
    (note,) = [n for n in result["notes"] if "letterboxed" in n]
    assert any(r.levelno == logging.WARNING and r.getMessage() == note for r in caplog.records)
    # The tiny model reads 114x64 at 5 fps: the 6 frames at 25 fps are 2, each window of 8 padded past them.
    frames = np.stack(read)[:, : result["num_frames"]].reshape(-1, 64, 114, 3)
    assert len(frames) >= 2
    left, image_w = (114 - 85) // 2, 85
    assert (frames[:, :, :left] == 0).all() and (frames[:, :, left + image_w :] == 0).all()
    box_left, _, box_w, box_h = _box(frames[0])
    assert abs(box_w - box_h) <= 1 and abs(box_left + box_w / 2 - 57) <= 1


def test_a_16_9_video_is_read_exactly_as_before_without_a_note(tmp_path):
    path = _video(tmp_path / "16x9.mp4", (160, 90))  # 1.778 against the model's 1.781: the same aspect
    frames, notes = _read(path)
    assert notes == []
    assert np.array_equal(frames, _old_reading(path, (114, 64)))
    # So is the model's own aspect in every mode: crop and stretch change nothing either.
    for mode in ("crop", "stretch"):
        again, notes = _read(path, aspect=mode)
        assert notes == [] and np.array_equal(again, frames)


def test_crop_mode_covers_the_frame_and_cuts_top_and_bottom(tmp_path):
    def draw(image: np.ndarray, frame: int) -> None:
        _square()(image, frame)
        image[:12] = 255  # a white band at the top: cut off

    path = _video(tmp_path / "4x3.mp4", (160, 120), draw)
    frames, notes = _read(path, aspect="crop")
    assert frames.shape == (NUM_FRAMES, 64, 114, 3)
    assert frames.mean(axis=3).min() > 10, "no black bars"
    # 160x120 covering 114x64 is 114x86 (the width fits): 11 rows cut at the top, 11 at the bottom.
    assert frames[:, :3].mean() < 100, "the top band is cut off"
    box_left, box_top, box_w, box_h = _box(frames[0])
    assert abs(box_w - box_h) <= 1 and abs(box_w - 0.5 * 86) <= 1.5
    assert abs(box_left + box_w / 2 - 57) <= 1 and abs(box_top + box_h / 2 - 32) <= 1
    assert len(notes) == 1 and "cropped" in notes[0] and "114x86" in notes[0] and "top and bottom" in notes[0]


def test_stretch_mode_resizes_as_before_and_says_so(tmp_path):
    path = _video(tmp_path / "4x3.mp4", (160, 120))
    frames, notes = _read(path, aspect="stretch")
    assert np.array_equal(frames, _old_reading(path, (114, 64)))
    _, _, box_w, box_h = _box(frames[0])
    assert box_w > 1.25 * box_h  # what a stretch does: the square is 43x32
    assert len(notes) == 1 and "stretched to 114x64" in notes[0] and "25% narrower" not in notes[0]
    assert "34% wider" in notes[0]  # (114 / 64) / (160 / 120) = 1.336


def test_a_vertical_phone_video_is_pillarboxed(tmp_path):
    path = _video(tmp_path / "9x16.mp4", (90, 160), _square(0.25))
    frames, notes = _read(path)
    assert frames.shape == (NUM_FRAMES, 64, 114, 3)
    _check_letterboxed(frames, 36)  # 90x160 at height 64
    assert len(notes) == 1 and "9:16" in notes[0] and "letterboxed" in notes[0]


def test_the_display_aspect_counts_the_sample_aspect_ratio(tmp_path):
    # 160x90 stored, pixels 3/4 wide: shown 120x90 (4:3), letterboxed.
    narrow = _video(tmp_path / "anamorphic-4x3.mp4", (160, 90), _square(0.5, 3 / 4), sar=Fraction(3, 4))
    frames, notes = _read(narrow)
    _check_letterboxed(frames, 85)
    assert len(notes) == 1 and "shown 120x90" in notes[0] and "4:3" in notes[0]
    # 120x90 stored, pixels 4/3 wide: shown 160x90 (16:9), the model's aspect: read at its size, no note.
    wide = _video(tmp_path / "anamorphic-16x9.mp4", (120, 90), _square(0.5, 4 / 3), sar=Fraction(4, 3))
    frames, notes = _read(wide)
    assert notes == [] and frames.shape == (NUM_FRAMES, 64, 114, 3)
    _, _, box_w, box_h = _box(frames[0])
    assert abs(box_w - box_h) <= 1  # drawn 34 pixels wide (45 shown) by 45: square as shown


def test_a_4_3_frame_folder_is_letterboxed_too(tmp_path):
    folder = tmp_path / "frames"
    write_video_frames(folder, NUM_FRAMES, FPS, _square(), (160, 120))
    frames, notes = _read(folder)
    _check_letterboxed(frames, 85)
    assert len(notes) == 1 and "letterboxed" in notes[0]
    # A folder at the model's aspect (step 1's frames) is resized as before.
    same = tmp_path / "same"
    write_video_frames(same, NUM_FRAMES, FPS, _square(), (228, 128))
    frames, notes = _read(same)
    assert notes == [] and frames.shape == (NUM_FRAMES, 64, 114, 3)


def test_a_config_without_its_frame_size_fits_only_a_narrower_video(tmp_path):
    """An old config (no source_width/height): a video is read at the model's height, its aspect kept, as
    before; one narrower than the model's input (frame_width) is letterboxed into it."""
    legacy = {k: v for k, v in MODEL.items() if not k.startswith("source_")}
    wide = _video(tmp_path / "16x9.mp4", (160, 90))
    frames, notes = _read(wide, legacy)
    assert notes == [] and np.array_equal(frames, _old_reading(wide, (114, 64)))
    narrow = _video(tmp_path / "4x3.mp4", (160, 120))
    frames, notes = _read(narrow, legacy)
    assert frames.shape == (NUM_FRAMES, 64, 112, 3)
    _check_letterboxed(frames, 85)
    assert len(notes) == 1 and "112x64" in notes[0]


def test_frame_fit_pads_and_cuts_about_the_centre():
    from dataset.source import FrameFit, aspect_fit
    from util.io import DataError

    image = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)  # two 5x3 frames
    padded = FrameFit((9, 4), (5, 3)).apply(image)
    assert padded.shape == (2, 4, 9, 3)
    assert np.array_equal(padded[:, 0:3, 2:7], image) and padded.sum() == image.sum()
    cut = FrameFit((3, 3), (5, 3)).apply(image)
    assert np.array_equal(cut, image[:, :, 1:4])
    assert aspect_fit((160, 120), (114, 64), "letterbox") == FrameFit((114, 64), (85, 64))
    assert aspect_fit((160, 120), (114, 64), "crop") == FrameFit((114, 64), (114, 86))
    assert aspect_fit((160, 120), (114, 64), "stretch") is None
    with pytest.raises(DataError, match="letterbox, crop, stretch"):
        aspect_fit((160, 120), (114, 64), "squash")
