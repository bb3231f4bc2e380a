"""The frame folder, step 1's output and what training, evaluation and inference read: ``000000.jpg`` ... plus
``fps.txt`` (the frame rate of the frames). One reader of ``fps.txt`` (``read_fps``) serves every step.

Step 1 writes a folder into a hidden ``.<name>.partial`` beside its place and renames it into place once complete
(``util.extract``), so a folder holding ``fps.txt`` is finished (``is_extracted``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

from util.io import DataError

log = logging.getLogger(__name__)

FPS_FILE = "fps.txt"
FRAME_NAME = "{:06d}.jpg"
EXTRACT_HINT = "extract the frames first (frames_as_jpg_soccernet_ball.py)"


# ---- frame folders


def read_fps(frame_dir: str | os.PathLike) -> float:
    """The frame rate stored in a frame folder's fps.txt; a missing, malformed or non-positive one is a
    DataError naming the file."""
    path = Path(frame_dir) / FPS_FILE
    try:
        fps = float(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise DataError(
            f"{path}: not found (the frame rate of the extracted frames); {EXTRACT_HINT}"
        ) from None
    except ValueError:
        raise DataError(f"{path}: not a frame rate (expected one number such as 25.0)") from None
    if not math.isfinite(fps) or fps <= 0:
        raise DataError(f"{path}: frame rate {fps} is not positive")
    return fps


def is_extracted(frame_dir: str | os.PathLike) -> bool:
    """A frame folder is complete once it holds fps.txt (only finished folders are renamed into place)."""
    return (Path(frame_dir) / FPS_FILE).is_file()


def count_frames(frame_dir: str | os.PathLike) -> int:
    with os.scandir(frame_dir) as entries:
        return sum(1 for e in entries if e.name.endswith(".jpg"))


def partial_dir(frame_dir: Path) -> Path:
    return frame_dir.parent / f".{frame_dir.name}.partial"


def _old_dir(frame_dir: Path) -> Path:
    return frame_dir.parent / f".{frame_dir.name}.old"


def clean_stale(frame_dir: str | os.PathLike) -> bool:
    """Remove what an interrupted run left beside ``frame_dir``; True when there was something."""
    found = False
    for stale in (partial_dir(Path(frame_dir)), _old_dir(Path(frame_dir))):
        if stale.exists():
            shutil.rmtree(stale)
            found = True
    return found


def read_frame_folder(folder: str | os.PathLike) -> dict:
    """``{fps, num_frames, width, height}`` of one video's frame folder (``000000.jpg``... and ``fps.txt``)."""
    from PIL import Image  # Pillow comes with torchvision; only the JPEG header is read

    folder = Path(folder)
    hint = EXTRACT_HINT
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder not found; {hint}")
    fps = read_fps(folder)
    names = {entry.name for entry in os.scandir(folder) if entry.name.endswith(".jpg")}
    num_frames = len(names)
    if num_frames == 0:
        raise DataError(f"{folder}: no JPEG frames; {hint}")
    if any(f"{i:06d}.jpg" not in names for i in range(num_frames)):  # a gap would shift every later frame
        raise DataError(f"{folder}: frames are not numbered 000000.jpg to {num_frames - 1:06d}.jpg; {hint}")
    try:
        with Image.open(folder / f"{0:06d}.jpg") as image:
            width, height = image.size
    except OSError as e:
        raise DataError(f"{folder / '000000.jpg'}: cannot read the image ({e})") from None
    return {"fps": fps, "num_frames": num_frames, "width": width, "height": height}
