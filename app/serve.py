"""Serving the web app with waitress until SIGINT / SIGTERM, then stopping its jobs cleanly: the running job is
interrupted (its process killed), queued ones stay queued for the next start.

waitress is told the app's own upload limit (``--max_upload_gb``; its default, 1 GiB, would refuse a real match
before the app sees it), and refuses a body over it from its Content-Length with the app's message, at once: also to
a client that asked ``Expect: 100-continue``, which waitress would otherwise invite to send up to the whole limit
first. waitress receives a whole request before the app sees it: a body over ``inbuf_overflow`` goes to a temporary
file first, so that is set just above a piece of the page's resumable uploads (``app.upload``), which therefore
stay in memory and reach the disk once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from flask import Flask

from app.access import refuse, security_headers, wants_json_for
from app.jobs import JobRunner
from app.upload import CHUNK_BYTES, too_large_message, upload_limit

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 4.0


def waitress_options(app: Flask) -> dict:
    """What waitress is told of uploads: the app's limit (waitress refuses a body of ``max_request_body_size`` bytes
    or more) and a body buffer kept in memory up to a little over a piece of a resumable upload."""
    limit = upload_limit(app)
    chunk = int(app.config.get("UPLOAD_CHUNK_BYTES", CHUNK_BYTES))
    return {
        "max_request_body_size": sys.maxsize if limit is None else limit + 1,
        "inbuf_overflow": chunk + (1 << 20),
    }


def _too_large_pages(app: Flask) -> dict[str, tuple[str, list, bytes]]:
    """The app's 413 (the API's JSON, the pages' HTML) as waitress sends it: (status, headers, body)."""
    message = too_large_message(upload_limit(app) or 0)
    pages = {}
    for kind, path, accept in (("json", "/api/jobs", "application/json"), ("html", "/upload", "text/html")):
        with app.test_request_context(path, method="POST", headers={"Accept": accept}):
            response = security_headers(app.make_response(refuse(413, message)))
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        pages[kind] = ("413 Request Entity Too Large", headers, response.get_data())
    return pages


def _refuse_as_the_app(server_map: dict, app: Flask) -> None:
    """waitress's own refusal of a body over the limit says the app's message, and comes at once, without inviting the
    client to send its body first (``100 Continue``)."""
    try:
        from waitress.channel import HTTPChannel
        from waitress.parser import HTTPRequestParser
        from waitress.server import BaseWSGIServer
        from waitress.utilities import Error, RequestEntityTooLarge
    except ImportError:  # another waitress: its own refusal stands
        log.warning("waitress's refusal of a too-large upload is its own (the app cannot word it)")
        return
    pages = _too_large_pages(app)

    class TooLarge(Error):
        code, reason = 413, "Request Entity Too Large"

        def __init__(self, kind: str) -> None:
            super().__init__(kind)
            self.kind = kind

        def to_response(self, ident=None):
            return pages[self.kind]

    class Parser(HTTPRequestParser):
        def received(self, data):
            consumed = super().received(data)
            if isinstance(self.error, RequestEntityTooLarge):
                self.expect_continue = False  # refused from its headers: no "100 Continue" first
                json = wants_json_for(
                    str(getattr(self, "path", "")),
                    self.headers.get("ACCEPT", ""),
                    self.headers.get("X_REQUESTED_WITH"),
                )
                self.error = TooLarge("json" if json else "html")
            return consumed

    class Channel(HTTPChannel):
        parser_class = Parser

    for server in server_map.values():
        if isinstance(server, BaseWSGIServer):
            server.channel_class = Channel


def serve(app: Flask, host: str, port: int, threads: int, trusted_proxy: str | None = None) -> None:
    """Serve with waitress until SIGINT / SIGTERM, then stop the jobs (running: interrupted; queued: kept)."""
    from waitress import create_server

    runner: JobRunner = app.extensions["spot_jobs"]
    proxy = {}
    if trusted_proxy:
        headers = "x-forwarded-proto x-forwarded-host x-forwarded-for"
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": headers}
    server_map: dict = {}
    try:
        server = create_server(
            app,
            map=server_map,
            host=host,
            port=port,
            threads=threads,
            ident="spot",
            **waitress_options(app),
            **proxy,
        )
    except OSError:
        runner.stop(0)  # the jobs recovered at start-up must not run without a server
        raise
    _refuse_as_the_app(server_map, app)

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
