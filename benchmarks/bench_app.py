"""The web app on whole matches: an hour of 224p synthetic video uploaded through the JSON API of a real server.

Inputs (made once, cached under bench-out/app/): synthetic matches of 10 and 60 minutes (224p, 25 fps, H.264), and
an untrained model of the demo's size (rny002 + gru, 10 fps, 112 rows, its classifier scaled so that it finds
actions). The server is ``python app/app.py`` (waitress, one worker); each match is sent with ``POST /api/jobs``
(annotated video "auto": a highlight reel past 10 minutes) and its status polled every 2 s. Printed per match:
wall time from upload to done, source frames/s over it, the peak RSS of the server and of its job process (read
from /proc: how memory grows with the match's length), and the ETA's error after the first minute (|ETA - the time
that was really left| / the time really left, over the polls with at least 30 s left). The matches share one jobs
folder, each on a freshly started server, shortest first: the first runs on what the server knows before any job,
the next on the stage times it recorded (``timing.json``). ``--quick``: one match of 8 s (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

CACHE = Path("bench-out") / "app"
REPO = Path(__file__).resolve().parents[1]
POLL_S = 2.0
QUICK_POLL_S = 0.25  # --quick: a match of seconds, whose end a 2-s poll would find up to 2 s late


def make_match(seconds: float) -> Path:
    from synthetic.library import render_library

    root = CACHE / f"match-{seconds:g}s"
    found = sorted(root.rglob("224p.mp4")) if root.is_dir() else []
    if not found:
        print(f"rendering a {seconds:g} s synthetic match (once; cached in {root})", flush=True)
        render_library(root, games=1, seconds=seconds, seed=7)
        found = sorted(root.rglob("224p.mp4"))
    return found[0]


def make_model() -> Path:
    import torch

    from benchmarks.bench_allocator import demo_model_config
    from model.common import build_model, save_checkpoint, save_config

    folder = CACHE / "model"
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    config = demo_model_config()
    model = build_model(config)
    with torch.no_grad():
        model.head.fc.weight.mul_(60)
    save_config(folder, config)
    save_checkpoint(folder, 0, model)
    return folder


def _rss_kib(pid: int, key: str = "VmHWM") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _upload(url: str, video: Path) -> str:
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="slowmo"\r\n\r\n1\r\n'
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{video.name}"\r\n'
    head += "Content-Type: video/mp4\r\n\r\n"
    body = head.encode() + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(url + "/api/jobs", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.load(reply)["id"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.load(reply)


def run_match(video: Path, model_dir: Path, work: Path, poll_s: float = POLL_S) -> dict:
    from util.video import probe_video

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(REPO / "app" / "app.py"), "--model_dir", str(model_dir), "--port", str(port)]
    argv += ["--jobs_dir", str(work / "jobs")]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                _get(url + "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        started = time.monotonic()
        job_id = _upload(url, video)
        samples, peak_server, peak_job = [], 0, 0
        while True:
            status = _get(f"{url}/api/jobs/{job_id}")
            now = time.monotonic() - started
            samples.append((now, status.get("eta_s"), status["state"], status.get("stage")))
            peak_server = max(peak_server, _rss_kib(server.pid))
            peak_job = max([peak_job] + [_rss_kib(c) for c in _children(server.pid)])
            if status["state"] in ("done", "failed", "interrupted"):
                break
            time.sleep(poll_s)
        wall = time.monotonic() - started
        if status["state"] != "done":
            raise RuntimeError(f"the job ended {status['state']}: {status.get('error')}")
    finally:
        server.terminate()
        server.wait(30)
    store_polls(video, wall, samples)
    errors = [abs(eta - (wall - t)) / (wall - t) for t, eta, state, _ in samples
              if state == "running" and eta is not None and t >= 60 and wall - t >= 30]  # fmt: skip
    stage_starts = {}
    for t, _, _, stage in samples:
        stage_starts.setdefault(stage, t)
    info = probe_video(video)
    frames = round(info.duration_s * info.fps)
    return {
        "minutes": info.duration_s / 60,
        "wall_s": wall,
        "frames_per_s": frames / wall,
        "server_peak_mib": peak_server / 1024,
        "job_peak_mib": peak_job / 1024,
        "eta_max_error": max(errors) if errors else None,
        "eta_median_error": sorted(errors)[len(errors) // 2] if errors else None,
        "events": len(status.get("events") or []),
        "detect_s": stage_starts.get("rendering", wall) - stage_starts.get("detecting", 0.0),
        "render_s": wall - stage_starts["rendering"] if "rendering" in stage_starts else 0.0,
        "video": "video" in (status.get("files") or {}),
    }


def store_polls(video: Path, wall: float, samples: list) -> None:
    """Every poll (seconds since upload, ETA, state, stage) and the real time left, for reading the ETA's errors."""
    rows = [{"t": round(t, 1), "eta_s": eta, "left_s": round(wall - t, 1), "state": state, "stage": stage}
            for t, eta, state, stage in samples]  # fmt: skip
    match = video.relative_to(CACHE).parts[0] if video.is_relative_to(CACHE) else video.stem
    path = CACHE / f"polls-{match}.json"
    path.write_text(json.dumps({"wall_s": wall, "polls": rows}, indent=1))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def main(argv: list[str] | None = None) -> None:
    import tempfile

    from tabulate import tabulate

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one match of 8 s (a smoke test)")
    args = parser.parse_args(argv if argv is not None else [])
    lengths = (8,) if args.quick else (600, 3600)
    poll_s = QUICK_POLL_S if args.quick else POLL_S
    model_dir = make_model()
    rows = []
    # One jobs folder for all matches, each on a freshly started server: the longer match's ETA starts from the
    # render/detect ratio the server recorded for the shorter one (timing.json), as a club's server would.
    work = tempfile.TemporaryDirectory(prefix="bench-app-")
    for seconds in lengths:
        video = make_match(seconds)
        r = run_match(video, model_dir, Path(work.name), poll_s)
        rows.append([f"{r['minutes']:.1f} min", f"{r['wall_s']:.0f}", f"{r['frames_per_s']:.0f}",
                     f"{r['server_peak_mib']:.0f}", f"{r['job_peak_mib']:.0f}", _pct(r["eta_median_error"]),
                     _pct(r["eta_max_error"]), r["events"], "highlights" if seconds > 600 else "whole",
                     f"{r['detect_s']:.0f} / {r['render_s']:.0f}"])  # fmt: skip
    headers = ["match", "wall s", "source frames/s", "server peak MiB", "job peak MiB", "ETA error (median)",
               "ETA error (max)", "actions", "annotated video", "detect / render s"]  # fmt: skip
    work.cleanup()
    print(tabulate(rows, headers=headers))
    print(f"{os.cpu_count()} CPUs; upload to done through POST /api/jobs, polled every {poll_s:g} s; "
          f"every poll in {CACHE}/polls-*.json")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
