"""Send a video file as a live feed: MPEG-TS over UDP (or any URL FFmpeg writes), paced in real time.

For trying ``inference_spot.py --live`` without a camera, and for its tests and benchmark. The packets are copied,
not encoded again, at the pace of their timestamps. ``pause=(at_s, for_s)`` stops sending at ``at_s`` seconds of
the video for ``for_s`` seconds and goes on from where the video is by then (the keyframe at or after it), as a
live feed whose network dropped: what was sent in the pause is lost, and the timestamps go on from the same clock.

    python -m util.live_send match.mp4 udp://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import av

from util.io import DataError


def send_video(
    path: str | Path,
    url: str,
    *,
    realtime: bool = True,
    pause: tuple[float, float] | None = None,
    stop: threading.Event | None = None,
    on_start: threading.Event | None = None,
) -> int:
    """Send ``path``'s video stream to ``url`` (MPEG-TS); returns the number of packets sent."""
    stop = stop or threading.Event()
    if url.startswith("udp://") and "pkt_size" not in url:  # seven TS packets a datagram
        url += ("&" if "?" in url else "?") + "pkt_size=1316"
    source = av.open(str(path))
    try:
        video = source.streams.video[0]
        sent, out = 0, None
        started = None
        resume_s = None
        for packet in source.demux(video):
            if stop.is_set():
                break
            if packet.pts is None or packet.dts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if resume_s is not None:
                if t < resume_s or not packet.is_keyframe:
                    continue  # sent during the pause: lost
                resume_s = None
            if pause is not None and out is not None and t >= pause[0]:
                # The feed drops: nothing is sent, the encoder's clock runs on (the same muxer goes on after it)
                stop.wait(pause[1])
                resume_s, pause = pause[0] + pause[1], None
                if t < resume_s or not packet.is_keyframe:
                    continue
            if out is None:
                out = av.open(url, "w", format="mpegts")
                stream = out.add_stream_from_template(video)
                if started is None:
                    started = time.monotonic() - t
                if on_start is not None:
                    on_start.set()
            if realtime:
                wait = started + t - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
            packet.stream = stream
            out.mux(packet)
            sent += 1
        if out is not None:
            out.close()
        return sent
    finally:
        source.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", type=Path, help="the video file to send")
    parser.add_argument(
        "url", help="where to: udp://HOST:PORT (MPEG-TS), or any URL FFmpeg writes MPEG-TS to"
    )
    parser.add_argument("--fast", action="store_true", help="as fast as possible, not in real time")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        raise DataError(f"{args.video}: no such video file")
    print(f"sending {args.video} to {args.url} in {'no' if args.fast else 'real'} time (Ctrl-C stops)")
    sent = send_video(args.video, args.url, realtime=not args.fast)
    print(f"sent {sent} packets")
    return 0


if __name__ == "__main__":
    from util.cli import run_main

    sys.exit(run_main(lambda _: main(), None))
