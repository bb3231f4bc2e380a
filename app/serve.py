"""Serving the web app with waitress until SIGINT / SIGTERM, then stopping its jobs cleanly: the running job is
interrupted (its process killed), queued ones stay queued for the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from flask import Flask

from app.jobs import JobRunner

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 4.0


def serve(app: Flask, host: str, port: int, threads: int, trusted_proxy: str | None = None) -> None:
    """Serve with waitress until SIGINT / SIGTERM, then stop the jobs (running: interrupted; queued: kept)."""
    from waitress import create_server

    runner: JobRunner = app.extensions["spot_jobs"]
    proxy = {}
    if trusted_proxy:
        headers = "x-forwarded-proto x-forwarded-host x-forwarded-for"
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": headers}
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="spot", **proxy)
    except OSError:
        runner.stop(0)  # the jobs recovered at start-up must not run without a server
        raise

    def on_signal(signum, _frame):
        log.info("%s: stopping (queued jobs are kept for the next start)", signal.Signals(signum).name)
        runner.stop(STOP_TIMEOUT_S)  # first the jobs (fast: their processes are killed), then the requests
        raise SystemExit(0)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stopping = time.monotonic()
        clean = runner.stop(STOP_TIMEOUT_S)
        server.close()
        log.info("stopped in %.1f s after %.0f s of serving", time.monotonic() - stopping, stopping - started)
        if not clean:  # a worker stuck in a long call: its job is marked interrupted, do not wait for it
            logging.shutdown()
            os._exit(0)
