"""FRAME_DIR: step 1's frame folders, or the video library itself (frames decoded on the fly, no JPEG dump).

Every step that reads frames (parse, train, eval, inference, the feature writer) finds a video's frames through
``FrameDir.locate``: ``FRAME_DIR/<video id>/`` when it is a finished frame folder (it holds ``fps.txt``), else the
file of that video id in the library under FRAME_DIR (``util.soccernet.find_videos``: ``<game>/224p.mp4`` for id
``<game>``, ``<game>/1_224p.mkv`` for ``<game>/1``). A video file's frames are step 1's frames: resampled by
timestamp to the labels' frame rate and resized to their frame size, by the same code (``util.video_index``).
"""

from __future__ import annotations

import os
from pathlib import Path

from util.frame_folder import FPS_FILE, read_frame_folder
from util.io import DataError
from util.soccernet import NoVideosError, find_videos

VIDEO_FILE = (
    "video_file"  # a parsed-label key: the library file step 2 counted the frames of, relative to FRAME_DIR
)


class FrameDir:
    """Where the frames of each video id are under one FRAME_DIR (frame folders and/or a video library)."""

    def __init__(self, root: str | os.PathLike, resolution: str = "224p"):
        self.root = Path(root)
        self.resolution = resolution
        self._library: dict[str, Path] | None = None

    @classmethod
    def of(cls, where: str | os.PathLike | FrameDir) -> FrameDir:
        """``where`` itself when it is a FrameDir already (its library listed once per run), else a new one."""
        return where if isinstance(where, FrameDir) else cls(where)

    def library(self) -> dict[str, Path]:
        """Video id -> file of the video library under the root (empty when it holds no videos)."""
        if self._library is None:
            try:  # frame folders are not listed: a JPEG FRAME_DIR costs one look per folder, not per frame
                entries = find_videos(self.root, self.resolution, skip_folder=FPS_FILE)
                self._library = {e.video_id: e.path for e in entries}
            except NoVideosError:
                self._library = {}
        return self._library

    def locate(self, video: str, video_file: str | None = None) -> Path:
        """The frame folder of ``video`` or its video file (``video_file``, relative to the root, when the parsed
        labels name the one step 2 counted); an unfinished frame folder when that is all there is (its reader
        reports it); DataError when there is nothing."""
        folder = self.root / video
        if (folder / FPS_FILE).is_file():
            return folder
        if video_file and (self.root / video_file).is_file():
            return self.root / video_file
        path = self.library().get(video)
        if path is not None:
            return path
        if folder.is_dir():
            return folder  # an unfinished frame folder: its reader says what is wrong (no fps.txt, no frames)
        raise DataError(
            f"{folder}: frame folder not found, and no video {video!r} in a library under {self.root}; extract the "
            f"frames (frames_as_jpg_soccernet_ball.py), or point FRAME_DIR at the video library"
        )

    def has(self, video: str, video_file: str | None = None) -> bool:
        try:
            self.locate(video, video_file)
        except DataError:
            return False
        return True

    def is_video(self, video: str, video_file: str | None = None) -> bool:
        return self.locate(video, video_file).is_file()

    def frame_info(self, video: str, sample_fps: float, height: int | None) -> dict:
        """``{fps, num_frames, width, height}`` of a video's frames, plus ``video_file`` for a library file: read from
        its frame folder, or for a video file the frames step 1 would write at ``sample_fps`` and ``height``."""
        from util.video import output_size
        from util.video_index import VideoIndex

        path = self.locate(video)
        if path.is_dir():
            return read_frame_folder(path)
        if sample_fps <= 0:
            raise DataError(f"{path}: reading a video directly needs a frame rate (--sample_fps > 0)")
        index = VideoIndex.load(path)
        num_frames = len(index.sample(sample_fps))
        width, out_height = output_size(index.width, index.height, height, None, index.sample_aspect_ratio)
        return {
            "fps": float(sample_fps),
            "num_frames": num_frames,
            "width": width,
            "height": out_height,
            VIDEO_FILE: path.relative_to(self.root).as_posix(),
        }
