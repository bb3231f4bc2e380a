"""The web app as a real server process (waitress): clean stops on SIGINT, restarts that keep queued uploads, many
uploads at once through the JSON API, status polls that stay fast while a job runs."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import render_match, write_tiny_model

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python app/app.py`` on a free port, as a user starts it."""

    def __init__(self, model_dir: Path, jobs_dir: Path, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            str(REPO / "app" / "app.py"),
            "--model_dir",
            str(model_dir),
            "--port",
            str(self.port),
        ]
        argv += ["--jobs_dir", str(jobs_dir), *extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/healthz")
                return
            except OSError:
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited: {self.process.stdout.read()}") from None
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.load(reply)

    def upload(self, video: Path, name: str, **options: str) -> str:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in options.items()
        ]
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{name}"\r\n'
        head += "Content-Type: video/mp4\r\n\r\n"
        body = (
            "".join(parts).encode() + head.encode() + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            self.url + "/api/jobs",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 202
            return json.load(reply)["id"]

    def wait(self, job_id: str, states=("done", "failed", "interrupted"), timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        while (status := self.get(f"/api/jobs/{job_id}"))["state"] not in states:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        return status

    def stop(self, sig: int = signal.SIGINT) -> float:
        """Send ``sig``; the seconds until the process exited."""
        started = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def library(tmp_path_factory, match_video, tiny_model_dir) -> dict:
    root = tmp_path_factory.mktemp("server")
    return {
        "short": match_video,
        "brief": render_match(root / "brief", seconds=2),  # what the slow model's queued jobs run on
        # Long enough for the slow model to be still at work after 40 status polls (it runs ~0.6 s per second of
        # video here, after ~3 s starting its process), short enough that its retry is quick.
        "long": render_match(root / "long", seconds=8),
        # A model that takes its time on a CPU: 25 fps, full 398x224 frames.
        "slow_model": write_tiny_model(
            root / "slow", fps=25.0, frame_height=224, frame_width=398, source_width=398, source_height=224
        ),  # fmt: skip
        "fast_model": tiny_model_dir,
    }


@pytest.mark.slow
def test_sigint_stops_within_5_s_interrupts_the_running_job_and_keeps_the_queue(library, tmp_path):
    jobs = tmp_path / "jobs"
    server = Server(library["slow_model"], jobs)
    try:
        running = server.upload(library["long"], "first.mp4", slowmo="1")
        queued = [server.upload(library["brief"], f"then{i}.mp4", slowmo="1") for i in range(2)]
        server.wait(running, states=("running",))
        # Status polls answer fast while the job runs (the model uses the CPU in another thread).
        latencies = []
        while len(latencies) < 40:
            started = time.perf_counter()
            status = server.get(f"/api/jobs/{running}")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
        p95 = float(np.percentile(latencies, 95))
        print(
            f"status polls during a job: median {1000 * np.median(latencies):.1f} ms, p95 {1000 * p95:.1f} ms"
        )
        assert p95 < 0.1 and status["state"] == "running" and status["percent"] < 100
        assert all(server.get(f"/api/jobs/{q}")["state"] == "queued" for q in queued)
    finally:
        seconds = server.stop(signal.SIGINT)
    log = server.process.stdout.read()
    assert seconds < 5, (seconds, log[-2000:])
    assert server.process.returncode == 0, log[-2000:]
    on_disk = json.loads((jobs / running / "status.json").read_text())
    assert on_disk["state"] == "interrupted" and not (jobs / running / "output").exists()

    again = Server(library["slow_model"], jobs)
    try:
        status = again.get(f"/api/jobs/{running}")
        assert status["state"] == "interrupted" and status["can_retry"]
        for job_id in queued:  # the uploads that had not started run after the restart
            assert again.wait(job_id)["state"] == "done"
        # The interrupted one runs again on request, to the end.
        request = urllib.request.Request(again.url + f"/api/jobs/{running}/retry", method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
        done = again.wait(running)
        assert done["state"] == "done" and set(done["files"]) >= {"video", "predictions", "results_spotting"}
    finally:
        assert again.stop(signal.SIGTERM) < 5


@pytest.mark.slow
def test_six_uploads_from_six_threads_all_finish_with_their_own_results(library, tmp_path):
    server = Server(library["fast_model"], tmp_path / "jobs", "--workers", "2")
    ids: dict[str, str] = {}
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            ids[f"match{i}"] = server.upload(library["short"], f"match{i}.mp4", slowmo="1")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and len(set(ids.values())) == 6
        for name, job_id in ids.items():
            status = server.wait(job_id)
            assert status["state"] == "done" and status["original_name"] == f"{name}.mp4"
            with urllib.request.urlopen(server.url + status["files"]["predictions"], timeout=10) as reply:
                assert json.load(reply)["video"] == name  # its own result
    finally:
        assert server.stop() < 5


def _raw_request(url: str, head: str, body: bytes = b"", *, close_after: bool = False) -> str:
    """Send ``head`` (request line and headers) and ``body`` on a socket; what came back until the server closed the
    connection or was silent for a second ("" at once with ``close_after``: the client goes away)."""
    host, port = url.removeprefix("http://").split(":")
    chunks = []
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        if close_after:
            return ""
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                s.settimeout(1.0)
        except TimeoutError:
            pass
    return b"".join(chunks).decode("latin-1")


def _statuses(reply: str) -> list[int]:
    return [int(code) for code in re.findall(r"^HTTP/1\.1 (\d{3}) ", reply, flags=re.MULTILINE)]


def _jobs_left(jobs: Path) -> list[str]:
    return sorted(
        p.relative_to(jobs).as_posix()
        for p in jobs.rglob("*")
        if p.name != ".lock" and not (p.name == ".uploads" and not any(p.iterdir()))
    )


@pytest.mark.slow  # starts the server process
def test_the_server_takes_its_body_limit_from_max_upload_gb(library, tmp_path):
    jobs = tmp_path / "jobs"
    server = Server(library["fast_model"], jobs, "--max_upload_gb", "0.001")  # 1 MiB
    limit = int(0.001 * 1024**3)
    try:
        # Just over the limit, or 5 GB: refused from the headers with the app's own message (JSON for the API, the
        # error page for a form), before a byte of the body is read; a client that asked to continue
        # (Expect: 100-continue, as curl does) is not invited to send it.
        for length, path, said in (
            (
                limit + 1,
                "/api/jobs?name=big.mp4",
                '{"error":"The file is larger than the upload limit of 1 MiB."}',
            ),
            (5 * 10**9, "/api/jobs?name=huge.mp4", "upload limit of 1 MiB."),
            (5 * 10**9, "/upload", "The largest upload this server accepts is <strong>1 MiB</strong>"),
        ):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n"
            )
            reply = _raw_request(server.url, head)
            assert _statuses(reply) == [413] and said in reply, reply[:800]
        # A client that goes away in the middle of the body leaves nothing.
        head = (
            f"POST /api/jobs?name=cut.mp4 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {limit - 10}\r\n"
        )
        _raw_request(server.url, head, b"y" * (limit // 2), close_after=True)
        # A body within the limit lands as one file equal to what was sent.
        data = np.random.default_rng(0).bytes(limit - 10)
        request = urllib.request.Request(
            server.url + "/api/jobs?name=fits.mp4",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            job_id = json.load(reply)["id"]
        assert (jobs / job_id / "input.mp4").read_bytes() == data
        assert server.get("/healthz")["ok"]
        assert {p.split("/")[0] for p in _jobs_left(jobs)} == {job_id}
    finally:
        assert server.stop() < 5


@pytest.mark.slow  # starts the server process
def test_a_limit_above_1_gib_reaches_waitress(library, tmp_path):
    """waitress refuses bodies of 1 GiB or more unless told otherwise: with --max_upload_gb 2, 1.5 GiB is awaited
    (100 Continue), 2.5 GiB refused; no file is left either way."""
    jobs = tmp_path / "jobs"
    server = Server(library["fast_model"], jobs, "--max_upload_gb", "2")
    try:
        for size, answer in ((int(1.5 * 1024**3), [100]), (int(2.5 * 1024**3), [413])):
            head = (
                f"POST /api/jobs?name=match.mp4 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\nExpect: 100-continue\r\n"
            )
            reply = _raw_request(server.url, head)
            assert _statuses(reply) == answer, (size, reply[:300])
        assert "upload limit of 2 GiB" in reply
        assert server.get("/healthz")["ok"] and _jobs_left(jobs) == []
    finally:
        assert server.stop() < 5


def test_serve_gives_waitress_the_apps_limit(tiny_model_dir, tmp_path, monkeypatch):
    import waitress

    from app.serve import serve
    from tests.conftest import make_app

    passed = {}

    def create_server(app, **kw):
        passed.update(kw)
        raise OSError("no socket in this test")

    monkeypatch.setattr(waitress, "create_server", create_server)
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs", MAX_CONTENT_LENGTH=int(4.5 * 1024**3))
    with pytest.raises(OSError):
        serve(flask_app, "127.0.0.1", _free_port(), threads=2)
    assert passed["max_request_body_size"] == int(4.5 * 1024**3) + 1  # waitress refuses this size and more
    # A piece of a resumable upload stays in memory (no spool file): the body is written to disk once.
    from app.upload import CHUNK_BYTES

    assert passed["inbuf_overflow"] > CHUNK_BYTES
