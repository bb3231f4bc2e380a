"""Who may use the web app, and how it answers a refusal.

With a token (``--token`` / ``SPOT_APP_TOKEN``) every route but ``/healthz`` and the static assets needs it: a visit
with ``?token=...`` sets a cookie, scripts send ``Authorization: Bearer ...``. Without one on a loopback address, a
request for another host name (DNS rebinding) is refused. Requests that change something (uploads, retries,
deletes) from a browser must come from the app's own pages (same origin). Every response carries headers that keep
the pages out of frames and scripts from elsewhere.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlencode, urlsplit

from flask import current_app, jsonify, redirect, render_template, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

TOKEN_COOKIE = "spot_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/healthz", "/static/")  # no data behind them: reachable without the token
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wants_json() -> bool:
    """Whether this request's client reads JSON (the API, scripts, the page's XHR), not an HTML page."""
    return wants_json_for(
        request.path, request.headers.get("Accept", ""), request.headers.get("X-Requested-With")
    )


def wants_json_for(path: str, accept: str, requested_with: str | None) -> bool:
    """``wants_json`` from the request's path and headers (the waitress parser has no Flask request)."""
    best = parse_accept_header(accept, MIMEAccept).best
    return path.startswith("/api/") or best == "application/json" or requested_with == "XHR"


def refuse(status: int, message: str):
    """The refusal as the client reads it: ``{"error": message}`` for the API and scripts, else the error page."""
    if wants_json():
        return jsonify(error=message), status
    return render_template("error.html", code=status, message=message), status


def _given_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.args.get("token") or request.cookies.get(TOKEN_COOKIE)


def _same_origin() -> bool:
    """A browser's request from the app's own pages (or not from a browser at all: no Origin, no Referer)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return source is None
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def check_access():
    """Before every request: the token when one is set, and same-origin for requests that change something."""
    if request.path.startswith(OPEN_PATHS):
        return None
    token = current_app.config["TOKEN"]
    if token:
        given = _given_token()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return refuse(
                401, "This server needs its access token: open the link you were given (…?token=…)."
            )
        if request.args.get("token") and request.method == "GET":
            # Set the cookie and drop the token from the address bar (and from the history): the same path,
            # relative, with the other arguments as they came.
            rest = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
            response = redirect(request.path + (f"?{rest}" if rest else ""), code=303)
            # Lax, not Strict: a shared link opened from a mail or a chat must arrive with the cookie.
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Lax", secure=request.is_secure)
            return response
    elif (
        current_app.config.get("LOOPBACK_ONLY")
        and request.host.rsplit(":", 1)[0].strip("[]") not in LOOPBACK_NAMES
    ):
        # No token on a loopback address: a page elsewhere whose name points here (DNS rebinding) is refused.
        return refuse(403, "This server answers to localhost only (start it with --token to share it).")
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not _same_origin():
        return refuse(403, "Uploads and changes are accepted from this app's own pages only.")
    return None


def security_headers(response):
    """After every request: no sniffing, no framing, no referrer elsewhere, the app's own scripts only."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response
