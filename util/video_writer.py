"""Writing video: ``H264Writer`` writes an MP4 that browsers play (H.264 High, yuv420p, moov atom in front) through
PyAV's libx264, and can carry the audio of a source video over, kept in step with slowed-down stretches by
silence. Reading is ``util.video``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from util.io import DataError

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# H.264 writer (and the source's audio)


def _fraction(fps: float) -> Fraction:
    """The exact rate behind a float fps (29.97 -> 30000/1001)."""
    for base in (24, 30, 60):
        if abs(fps - base * 1000 / 1001) < 1e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


class H264Writer:
    """Write RGB frames to a browser-playable MP4: libx264, yuv420p, ``+faststart``; atomically on ``close``.

    ``audio`` = ``(source video, segments)`` copies the source's audio (if it has any) with ``segments`` from
    ``repeat_segments``: a stretch slowed ``r`` times plays its audio once, then ``r - 1`` times as long in silence,
    so sound and picture meet again after each slowed stretch. The video is encoded to a temporary file first and
    the audio muxed in afterwards (so a long video is never held in memory to interleave the streams).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        crf: int = 23,
        preset: str = "veryfast",
        audio: tuple[Path, list[tuple[int, int, int]]] | None = None,
    ):
        import av

        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs an even frame size, not {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        # A source without an audio stream needs no second pass.
        self.audio = audio if audio is not None and _audio_stream_info(audio[0]) is not None else None
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.video.tmp.mp4")
        options = {} if self.audio else {"movflags": "+faststart"}
        self._container = av.open(str(self._tmp), "w", format="mp4", options=options)
        self._stream = self._container.add_stream("libx264", rate=_fraction(self.fps))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset, "profile": "high"}

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) RGB uint8 frame."""
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def close(self) -> Path:
        """Flush and finish the file; returns its path."""
        self._container.mux(self._stream.encode())
        self._container.close()
        if self.audio is None:
            os.replace(self._tmp, self.path)
            return self.path
        import av

        final_tmp = self.path.with_name(f".{self.path.stem}.av.tmp.mp4")
        try:
            _mux_audio(self._tmp, self.audio[0], self.audio[1], self.fps, final_tmp)
        except (av.FFmpegError, DataError) as e:  # the picture matters more than the sound
            log.warning("%s: the audio could not be copied (%s); the video has no sound", self.audio[0], e)
            _mux_audio(self._tmp, None, [], self.fps, final_tmp)
        finally:
            self._tmp.unlink(missing_ok=True)
        os.replace(final_tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop a half-written file (on an error)."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the container may already be broken; the file goes anyway
            log.debug("closing a broken video writer", exc_info=True)
        self._tmp.unlink(missing_ok=True)


def _audio_stream_info(source: Path) -> tuple[int, str] | None:
    """``(sample rate, channel layout)`` of the source's first audio stream, or None when it has none."""
    import av

    try:
        with av.open(str(source)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            layout = stream.layout.name if stream.layout.nb_channels <= 2 else "stereo"
            return stream.rate or 48000, layout
    except av.FFmpegError as e:
        raise DataError(f"{source}: cannot read the audio ({e})") from None


def _source_audio(source: Path, rate: int, layout: str) -> Iterator[np.ndarray]:
    """The source's audio from the video stream's start, as float32 (channels, n) chunks at ``rate``."""
    import av

    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    with av.open(str(source)) as container:
        audio = container.streams.audio[0]
        video = container.streams.video[0] if container.streams.video else None
        start_s = float(video.start_time * video.time_base) if video and video.start_time else 0.0
        skip = None
        for frame in container.decode(audio):
            if skip is None:  # samples before the first video frame are cut; a late start is padded
                t0 = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                skip = int(round((start_s - t0) * rate))
                if skip < 0:
                    yield np.zeros((len(resampler.layout.channels), -skip), np.float32)
                    skip = 0
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().astype(np.float32, copy=False)
                if skip:
                    cut = min(skip, chunk.shape[1])
                    chunk, skip = chunk[:, cut:], skip - cut
                if chunk.shape[1]:
                    yield chunk


def _audio_track(
    source: Path, segments: list[tuple[int, int, int]], fps: float, rate: int, layout: str
) -> Iterator[np.ndarray]:
    """The output's audio, chunk by chunk: each segment's source audio, then silence for its slowed extra time."""
    chunks = _source_audio(source, rate, layout)
    pending = np.zeros((2 if layout == "stereo" else 1, 0), np.float32)
    for first, end, repeats in segments:
        need = int(round(end * rate / fps)) - int(round(first * rate / fps))
        parts, have = [], 0
        while have < need:
            if pending.shape[1] == 0:
                pending = next(chunks, None)
                if pending is None:  # the audio ended before the picture: silence
                    pending = np.zeros((parts[0].shape[0] if parts else 1, need - have), np.float32)
            take = pending[:, : need - have]
            pending = pending[:, take.shape[1] :]
            parts.append(take)
            have += take.shape[1]
        if parts and repeats > 0:  # a segment left out (a highlight reel's gaps) is read past, not played
            yield from parts
        silence = need * (repeats - 1) if repeats > 1 else 0
        if silence:
            yield np.zeros((parts[0].shape[0] if parts else 1, silence), np.float32)


def _mux_audio(
    video_file: Path, source: Path | None, segments: list[tuple[int, int, int]], fps: float, out_path: Path
) -> None:
    """Copy ``video_file``'s H.264 stream and add the source's audio (AAC) into ``out_path`` with faststart
    (``source=None``: no audio, just the copy)."""
    import av

    rate, layout = _audio_stream_info(source) if source is not None else (48000, "mono")
    channels = 2 if layout == "stereo" else 1
    if out_path.exists():
        out_path.unlink()
    with (
        av.open(str(video_file)) as vin,
        av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        v_in = vin.streams.video[0]
        v_out = out.add_stream_from_template(v_in)
        a_out = out.add_stream("aac", rate=rate, layout=layout) if source is not None else None
        track = _audio_track(source, segments, fps, rate, layout) if source is not None else iter(())
        written = 0  # audio samples sent to the encoder

        def feed(until_s: float | None) -> None:
            nonlocal written
            while a_out is not None and (until_s is None or written < until_s * rate):
                chunk = next(track, None)
                if chunk is None:
                    break
                if chunk.shape[0] != channels:
                    chunk = np.repeat(chunk[:1], channels, axis=0)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
                frame.sample_rate, frame.pts = rate, written
                written += chunk.shape[1]
                out.mux(a_out.encode(frame))

        for packet in vin.demux(v_in):
            if packet.dts is None:
                continue
            feed(float(packet.pts * v_in.time_base) + 0.5)
            packet.stream = v_out
            out.mux(packet)
        feed(None)
        if a_out is not None:
            out.mux(a_out.encode(None))
