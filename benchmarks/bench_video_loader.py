"""Training clips read straight from the video files against step 1's JPEG folders: clips/s per worker, decode work,
disk per hour and index cost.

One synthetic match (``synthetic.library``) is rendered twice from the same seed, at 224p (398x224) and at 720p
(1280x720); step 1 (``util.extract.extract_video``, quality 90, 4:2:0) writes the JPEG folder of the 224p video.
``FrameClipDataset`` then reads the SAME clip keys ``(epoch 0, i)`` from three sources, in this process (one
loader worker, ``num_workers=0``): the JPEG folder (the baseline), the 224p file decoded on the fly, and the 720p
file decoded and scaled to the same frame size on the fly. Each source first reads a few warm-up clips of another
epoch (not timed); the sources are then timed in turn, ``--rounds`` times interleaved, and the best round counts
(the machine may be shared). Two settings:

- train: 25 fps, clips of 50 frames, 224 px high (398x224), uniform random clips (``fg_upsample`` 0, seed 0);
- demo: 5 fps, clips of 20 frames, 112 px high (200x112): the JPEGs are extracted at 5 fps / 112 px and the videos
  decoded at 5 fps / 112 px, so most decoded frames are not used.

Printed: a table with clips/s and frames/s of each source and its ratio to the JPEG loader, and for the video sources
the frames decoded per frame used (``VideoFrames.decoded / used``), also with ``skip_unused=False`` (what skipping
frames that nothing references saves); disk per hour of video (the 224p and 720p files, the JPEG folders) of this
synthetic library; ``VideoIndex.build`` (the demux per video and process) and a read from the index cache
(``VideoIndex.load`` of a file indexed before), in seconds per hour of video; and
a conclusion line per source. Decoding runs on the CPU (PyAV); no GPU decoder is timed.

Run: ``python -m benchmarks video_loader`` (part of ``make bench``), ``python -m benchmarks.bench_video_loader
--seconds 90 --clips 40``, or with ``--quick`` for a smoke test (a 4-s match, a handful of clips).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate


@dataclass(frozen=True)
class Setting:
    name: str
    sample_fps: float
    height: int
    clip_len: int


SETTINGS = (Setting("train", 25.0, 224, 50), Setting("demo", 5.0, 112, 20))


@dataclass
class Result:
    setting: str
    source: str
    clips_s: float
    clip_len: int
    decoded: int = 0  # frames the decoder produced in one timed pass (video sources)
    used: int = 0  # frames the video reader returned in that pass


# ---- inputs -----------------------------------------------------------------------------------------------------


def render(root: Path, seconds: float, resolution: str) -> tuple[str, Path]:
    """(video id, file) of a one-game library of ``resolution`` rendered under ``root`` (seed 0)."""
    from synthetic.library import render_library
    from util.soccernet import find_videos

    render_library(root, games=1, seconds=seconds, seed=0, resolution=resolution)
    (entry,) = find_videos(root, resolution)
    return entry.video_id, entry.path


def render_both(tmp: Path, seconds: float) -> dict[str, tuple[Path, str, Path]]:
    """Render the 720p library in a second process while this one renders the 224p one (the same seed, so the same
    match): {resolution: (library root, video id, file)}."""
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    roots = {r: tmp / f"library-{r}" for r in ("224p", "720p")}
    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(render, roots["720p"], seconds, "720p")
        video_id, path = render(roots["224p"], seconds, "224p")
        libraries = {"224p": (roots["224p"], video_id, path)}
        video_id, path = future.result()
        libraries["720p"] = (roots["720p"], video_id, path)
    print(f"  rendered the match at 224p and 720p in {time.perf_counter() - start:.1f} s")
    return libraries


def reencode(libraries: dict, keyint: int) -> None:
    """Add ``libraries["224p, key every N"]``: the 224p match re-encoded with a keyframe every ``keyint`` frames (x264
    veryfast, crf 20, as the library; the frame count and times are kept, the pixels are a new encode's)."""
    import av

    root, video_id, src = libraries["224p"]
    name = f"224p, key every {keyint}"
    dst_root = root.parent / f"library-key{keyint}"
    dst = dst_root / video_id / src.name
    dst.parent.mkdir(parents=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        source = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=source.average_rate)
        stream.width, stream.height, stream.pix_fmt = source.width, source.height, "yuv420p"
        stream.options = {
            "crf": "20",
            "preset": "veryfast",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}",
        }
        for frame in inp.decode(source):
            frame.pict_type = av.video.frame.PictureType.NONE  # let x264 place the keyframes
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    libraries[name] = (dst_root, video_id, dst)


def label_events(video_file: Path, sample_fps: float, num_frames: int, classes: list[str]) -> list[dict]:
    """The game's Labels-ball.json events as parsed-label events at ``sample_fps`` (only their targets use them)."""
    from util.soccernet import LABEL_FILE

    doc = json.loads((video_file.parent / LABEL_FILE).read_text())
    events = []
    for a in doc["annotations"]:
        frame = int(sample_fps * int(a["position"]) / 1000)
        if a["label"] in classes and frame < num_frames:
            events.append({"frame": frame, "label": a["label"], "team": a.get("team")})
    return events


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.jpg"))


# ---- timing -----------------------------------------------------------------------------------------------------


def dataset(frame_dir: Path, entry: dict, classes: list[str], setting: Setting, clips: int):
    """Training clips of one video: uniform random clips (``fg_upsample`` 0), seed 0, as in training."""
    from dataset.frame import FrameClipDataset

    return FrameClipDataset(
        frame_dir, [entry], classes, clip_len=setting.clip_len, num_clips=clips, seed=0, fg_upsample=0.0
    )


class Source:
    """One clip source of a setting: a ``FrameClipDataset`` over a JPEG folder or a video file."""

    def __init__(self, name: str, data, clips: int):
        self.name = name
        self.data = data
        self.clips = clips
        self.best = float("inf")
        self.decoded = self.used = 0
        self.starts: list[int] = []

    def frames(self):
        """The video's ``VideoFrames`` in the dataset's cache (None for a JPEG folder)."""
        data = self.data
        if not data.is_video[0]:
            return None
        return data.video_frames.get(data.paths[0], data.fps[0], data.frame_size)

    def warm_up(self, clips: int) -> None:
        for i in range(clips):
            self.data[(1, i)]  # another epoch: other clips than the timed ones

    def time_pass(self) -> None:
        video = self.frames()
        decoded, used = (video.decoded, video.used) if video is not None else (0, 0)
        start = time.perf_counter()
        starts = [self.data[(0, i)]["start"] for i in range(self.clips)]
        elapsed = time.perf_counter() - start
        self.best = min(self.best, elapsed)
        self.starts = starts
        if video is not None:
            self.decoded, self.used = video.decoded - decoded, video.used - used

    def result(self, setting: Setting) -> Result:
        return Result(
            setting.name, self.name, self.clips / self.best, setting.clip_len, self.decoded, self.used
        )


def run_setting(
    setting: Setting,
    tmp: Path,
    libraries: dict[str, tuple[Path, str, Path]],
    classes: list[str],
    clips: int,
    rounds: int,
    warm_clips: int,
    disk: dict,
    no_skip: tuple[str, ...] = ("video 224p", "video 720p"),
) -> list[Result]:
    from util.extract import extract_video
    from util.frame_dir import FrameDir

    _, video_id, file224 = libraries["224p"]
    jpeg_root = tmp / f"jpeg-{setting.name}"
    extract_video(file224, jpeg_root / video_id, sample_fps=setting.sample_fps, height=setting.height)
    jpeg_folder = jpeg_root / video_id
    entries = {
        "JPEG (step 1)": (jpeg_root, {"video": video_id, **FrameDir(jpeg_root).frame_info(video_id, 0, None)})
    }
    for name, (root, vid, path) in libraries.items():
        info = FrameDir(root, path.stem).frame_info(vid, setting.sample_fps, setting.height)
        entries[f"video {name}"] = (root, {"video": vid, **info})
    reference = entries["JPEG (step 1)"][1]
    for name, (_, entry) in entries.items():  # the same frames, so the same clips, from every source
        for key in ("num_frames", "width", "height"):
            if entry[key] != reference[key]:
                raise RuntimeError(
                    f"{name}: {key} {entry[key]} differs from the JPEG folder's {reference[key]}"
                )
        entry["events"] = label_events(libraries["224p"][2], setting.sample_fps, entry["num_frames"], classes)
    seconds = reference["num_frames"] / setting.sample_fps
    disk[f"JPEG folder, {setting.sample_fps:g} fps {reference['width']}x{reference['height']}"] = (
        folder_bytes(jpeg_folder) / seconds
    )

    sources = [Source(name, dataset(*entries[name], classes, setting, clips), clips) for name in entries]
    for name in no_skip:  # the same video sources without skipping unreferenced frames
        plain = Source(f"{name}, no skip", dataset(*entries[name], classes, setting, clips), clips)
        plain.frames().skip_unused = False
        sources.append(plain)
    for s in sources:
        s.warm_up(warm_clips)
    for _ in range(rounds):
        for s in sources:
            s.time_pass()
    for s in sources[1:]:
        if s.starts != sources[0].starts:
            raise RuntimeError(f"{s.name}: other clips than the JPEG loader's")
    return [s.result(setting) for s in sources]


def index_rates(
    libraries: dict[str, tuple[Path, str, Path]], repeats: int, notes: list[str]
) -> dict[str, float]:
    """``VideoIndex.build`` seconds per hour of video of each file (best of ``repeats``); adds the keyframe spacing
    of each file to ``notes``."""
    import numpy as np

    from util.video_index import VideoIndex

    out = {}
    for resolution, (_, _, path) in libraries.items():
        index = None
        for how, fn in (("VideoIndex.build", VideoIndex.build), ("from the index cache", VideoIndex.load)):
            VideoIndex.load(path)  # the cache holds this file's index from here on
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                index = fn(path)
                best = min(best, time.perf_counter() - start)
            duration = index.end_s - float(index.pts[0]) * index.time_base
            out[f"{how} {resolution}"] = best / duration * 3600
        keys = np.flatnonzero(index.keyframe)
        spacing = f"every {int(np.median(np.diff(keys)))} frames" if len(keys) > 1 else "only the first frame"
        notes.append(
            f"{resolution} file: keyframes {spacing} of {index.num_source_frames} (a clip is decoded from the "
            "keyframe before it)"
        )
    return out


# ---- report -----------------------------------------------------------------------------------------------------


def report(results: list[Result], disk: dict[str, float], index: dict[str, float], notes: list[str]) -> None:
    rows, conclusions = [], []
    for setting in SETTINGS:
        mine = [r for r in results if r.setting == setting.name]
        if not mine:
            continue
        base = mine[0].clips_s
        for r in mine:
            work = f"{r.decoded / r.used:.2f}" if r.used else ""
            rows.append(
                [
                    f"{setting.name}: {setting.sample_fps:g} fps, {setting.height} px, clips of {setting.clip_len}",
                    r.source,
                    f"{r.clips_s:.2f}",
                    f"{r.clips_s * r.clip_len:.0f}",
                    f"{r.clips_s / base:.2f}x",
                    work,
                ]
            )
            if r is not mine[0]:
                line = f"{setting.name}, {r.source}: {r.clips_s / base:.2f}x the JPEG loader"
                conclusions.append(
                    line + (f" (decoding {r.decoded / r.used:.1f} frames per frame used)" if r.used else "")
                )
    headers = ["setting", "source", "clips/s", "frames/s", "vs JPEG", "decoded/used"]
    print(tabulate(rows, headers=headers))
    print()
    print(
        tabulate(
            [[name, f"{bytes_s * 3600 / 1e9:.2f}"] for name, bytes_s in disk.items()],
            headers=["synthetic library, disk per hour of video", "GB/hour"],
        )
    )
    print(
        "  (the synthetic pitch compresses far better than broadcast video: real JPEGs and files are larger; no "
        "SoccerNet figure is quoted)"
    )
    print()
    print(
        tabulate(
            [[name, f"{s:.3f}"] for name, s in index.items()],
            headers=["index of a video, once per process", "s per hour of video"],
        )
    )
    print()
    for line in conclusions:
        print(line)
    for line in dict.fromkeys(notes):
        print(line)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"one process (num_workers=0), best of the rounds; {os.cpu_count()} CPUs, load average {load}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="length of the synthetic match (default 60)"
    )
    parser.add_argument(
        "--clips", type=int, default=24, help="timed clips per source and setting (default 24)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed passes per source, interleaved; best counts"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 4-s match, a handful of clips, train setting only"
    )
    args = parser.parse_args(argv if argv is not None else [])
    settings, warm_clips, no_skip = SETTINGS, 2, ("video 224p", "video 720p")
    if args.quick:
        args.seconds, args.clips, args.rounds, warm_clips = 4.0, 3, 1, 1
        settings, no_skip = SETTINGS[:1], ("video 224p",)

    from synthetic.library import MARKERS

    classes = list(MARKERS)
    print(
        f"bench_video_loader: a {args.seconds:g}-s synthetic match, {args.clips} clips per source, "
        f"{args.rounds} round(s)"
    )
    from util.video_index import INDEX_CACHE_ENV

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ[INDEX_CACHE_ENV] = str(tmp / "index-cache")  # the benchmark's own, not the user's cache
        libraries = render_both(tmp, args.seconds)
        if not args.quick:  # what a shorter keyframe spacing buys: one every second at 25 fps
            reencode(libraries, 25)
        disk = {
            f"video file {r}": path.stat().st_size / args.seconds for r, (_, _, path) in libraries.items()
        }
        results, notes = [], []
        for setting in settings:
            results += run_setting(
                setting, tmp, libraries, classes, args.clips, args.rounds, warm_clips, disk, no_skip
            )
        index = index_rates(libraries, 1 if args.quick else 3, notes)
    report(results, disk, index, notes)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
