"""The synthetic videos' format and encoding: frame sizes, frame rates, and H.264 with repeatable bytes."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from util.io import atomic_open

FRAME_SIZES = {"224p": (398, 224), "720p": (1280, 720)}


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
