"""SoccerNet-Ball facts and formats: classes, library layouts, Labels-ball.json and submissions.

See ../shared/SOCCERNET.md (kept in sync with the SoccerNet package's own code).
"""

from __future__ import annotations

# The 12 classes of SoccerNet-Ball 2024/2025, in SoccerNet's order (its EVENT_DICTIONARY for the 2024 task).
CLASSES = [
    "PASS",
    "DRIVE",
    "HEADER",
    "HIGH PASS",
    "OUT",
    "CROSS",
    "THROW IN",
    "SHOT",
    "BALL PLAYER BLOCK",
    "PLAYER SUCCESSFUL TACKLE",
    "FREE KICK",
    "GOAL",
]
# The 2023 edition's two classes.
CLASSES_2023 = ["PASS", "DRIVE"]

TEAMS = ("left", "right")
VISIBILITIES = ("visible", "not shown")

LABEL_FILE = "Labels-ball.json"
PREDICTION_FILE = "results_spotting.json"
RESOLUTIONS = ("224p", "720p")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def game_time(half: int, position_ms: int) -> str:
    """SoccerNet's ``gameTime`` string, ``"1 - 03:12"`` (minutes are not wrapped at 60)."""
    total_s = int(position_ms) // 1000
    return f"{half} - {total_s // 60:02d}:{total_s % 60:02d}"


def one_video_name(resolution: str = "224p") -> str:
    """File name of a game's single video in the 2024/2025 layout (``224p.mp4``)."""
    return f"{resolution}.mp4"


def half_video_name(half: int, resolution: str = "224p", ext: str = ".mkv") -> str:
    """File name of one half in the 2023 / SoccerNet-v2 layout (``1_224p.mkv``)."""
    return f"{half}_{resolution}{ext}"
