"""A small emulation of the CIC download portal and of a plain mirror, for tests only.

Serves on 127.0.0.1 at a free port, in a background thread, until :meth:`PortalServer.close`:

* ``POST /portal/insert.php`` -- the registration form; answers ``{"ok": true}`` and a
  ``Token`` session cookie when every required field is filled.
* ``GET /portal/download.php?file=PREFIX/PATH`` -- the file, only with a valid cookie; without
  one, an HTML page asking to register (as the real portal does).
* ``GET /portal/browse.php?p=PREFIX/DIR`` -- a listing of ``download.php`` links.
* ``GET /mirror/PATH`` -- the file, no cookie needed; ``GET /mirror/DIR/`` an index page.

Files carry validators derived from their content (``validators``: "both" ETag and
Last-Modified, "etag", "last-modified", "weak" -- a ``W/`` ETag and Last-Modified -- or
"none"), so replacing ``files[path]`` between requests changes them, as on a real server.
They honour ``Range: bytes=N-`` (206, or 416 with ``Content-Range: bytes */N`` past the end)
unless ``ignore_range`` is set, and ``If-Range`` (a stale validator gets the whole file, 200)
unless ``honour_if_range`` is False. ``cut[path] = n`` makes the next response for ``path``
announce the full length but close the connection after ``n`` bytes (once).
``script[path]`` is a list of :class:`Reply` sent, one per request and in order, in place of
the normal answer for a mirror path (``DIR/`` for a folder index): odd statuses, headers,
bodies (lazily generated ones too), redirects, slow drips. Every request is recorded in
``requests`` for the tests to inspect. ``host`` may be any loopback address (127.0.0.2 stands
in for "another host").
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

REQUIRED_FIELDS = ("first_name", "last_name", "email", "institution", "job_title", "country")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    """A scripted answer. ``length``: the Content-Length header ("auto": the body's length,
    None: none, the body ends when the connection closes). ``chunks`` generates the body
    lazily instead of ``body``; ``drip`` sends the body a byte at a time, that many seconds
    apart; ``stall`` waits that long before the body. The connection is always closed
    afterwards."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: str | None = "auto"
    ctype: str = "application/octet-stream"
    chunks: Callable[[], Iterable[bytes]] | None = None
    drip: float = 0.0
    stall: float = 0.0  # seconds of silence between the headers and the body


@dataclass
class PortalServer:
    """The emulated portal; construct, use ``.url``, then ``close()`` (or use as a context)."""

    files: dict[str, bytes] = field(default_factory=dict)
    prefix: str = "DS/"
    host: str = "127.0.0.1"
    validators: str = "both"
    honour_if_range: bool = True
    script: dict[str, list[Reply]] = field(default_factory=dict)
    ignore_range: bool = False
    set_cookie: bool = True
    cut: dict[str, int] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    registrations: list[dict[str, str]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        handler = type("Handler", (_Handler,), {"portal": self})
        self.httpd = ThreadingHTTPServer((self.host, 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def portal_url(self) -> str:
        return self.url + "/portal"

    @property
    def mirror_url(self) -> str:
        return self.url + "/mirror"

    def etag(self, rel: str) -> str:
        tag = '"' + hashlib.md5(self.files[rel]).hexdigest()[:16] + '"'
        return "W/" + tag if self.validators == "weak" else tag

    def last_modified(self, rel: str) -> str:
        # A fixed epoch moved by the content, so that new content has a new date.
        stamp = 1_500_000_000 + int(hashlib.md5(self.files[rel]).hexdigest()[:6], 16)
        return email.utils.formatdate(stamp, usegmt=True)

    def validator_headers(self, rel: str) -> dict[str, str]:
        out = {}
        if self.validators in ("both", "etag", "weak"):
            out["ETag"] = self.etag(rel)
        if self.validators in ("both", "last-modified", "weak"):
            out["Last-Modified"] = self.last_modified(rel)
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    portal: PortalServer
    timeout = 5  # seconds: a stuck client never holds a server thread for long
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # silence stderr
        pass

    def _record(self, body: bytes = b"") -> None:
        self.portal.requests.append(Request(self.command, self.path, dict(self.headers), body))

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None,
              ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self._record(body)
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/portal/insert.php":
            return self._send(404, b"not found", "text/plain")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        self.portal.registrations.append(form)
        if any(not form.get(k) for k in REQUIRED_FIELDS):
            return self._send(200, json.dumps({"ok": False, "error": "missing field"}).encode(),
                              "application/json")
        extra = {}
        if self.portal.set_cookie:
            token = secrets.token_hex(12)
            self.portal.tokens.add(token)
            extra["Set-Cookie"] = f"Token={token}; Path=/"
        self._send(200, json.dumps({"ok": True}).encode(), "application/json", extra)

    def do_GET(self) -> None:
        self._record()
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        p = self.portal
        if url.path in ("/portal/download.php", "/portal/browse.php"):
            if not self._has_token():
                page = (b"<!DOCTYPE html><html><body><form action='insert.php'>Please "
                        b"register to download</form></body></html>")
                return self._send(200, page, "text/html; charset=UTF-8")
            if url.path == "/portal/browse.php":
                folder = query.get("p", [""])[0]
                links = [f"download.php?file={urllib.parse.quote(name, safe='')}"
                         for name in (p.prefix + k for k in sorted(p.files))
                         if name.rsplit("/", 1)[0] == folder]
                return self._index(links)
            name = query.get("file", [""])[0]
            if not name.startswith(p.prefix):
                return self._send(404, b"not found", "text/plain")
            return self._file(name[len(p.prefix):])
        if url.path.startswith("/mirror/"):
            rel = urllib.parse.unquote(url.path[len("/mirror/"):])
            if p.script.get(rel):
                return self._scripted(p.script[rel].pop(0))
            if rel.endswith("/"):
                folder = rel.rstrip("/")
                names = [k.rsplit("/", 1)[1] for k in sorted(p.files)
                         if k.rsplit("/", 1)[0] == folder]
                if not names:
                    return self._send(404, b"not found", "text/plain")
                return self._index(["../", "?C=N;O=D"] + [urllib.parse.quote(n) for n in names])
            return self._file(rel)
        self._send(404, b"not found", "text/plain")

    def _has_token(self) -> bool:
        cookies = self.headers.get("Cookie", "")
        sent = {c.split("=", 1)[1] for c in cookies.split("; ") if c.startswith("Token=")}
        return bool(sent & self.portal.tokens)

    def _index(self, links: list[str]) -> None:
        anchors = "".join(f'<a href="{html.escape(h)}">{html.escape(h)}</a><br>' for h in links)
        body = f"<html><body>{anchors}</body></html>"
        self._send(200, body.encode(), "text/html")

    def _scripted(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.ctype)
        length = (str(len(reply.body)) if reply.length == "auto" and reply.chunks is None
                  else None if reply.length == "auto" else reply.length)
        if length is not None:
            self.send_header("Content-Length", length)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.flush()
            time.sleep(reply.stall)
            if reply.chunks is not None:
                for chunk in reply.chunks():
                    self.wfile.write(chunk)
            elif reply.drip:
                for i in range(len(reply.body)):
                    self.wfile.write(reply.body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(reply.drip)
            else:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def _if_range_holds(self, rel: str) -> bool:
        cond = self.headers.get("If-Range")
        if cond is None or not self.portal.honour_if_range:
            return True
        etag = self.portal.etag(rel)
        tags = self.portal.validator_headers(rel)
        # Strong comparison: a weak ETag never satisfies If-Range.
        return (cond == tags.get("ETag") and not etag.startswith("W/")) or \
            cond == tags.get("Last-Modified")

    def _file(self, rel: str) -> None:
        p = self.portal
        if rel not in p.files:
            return self._send(404, b"not found", "text/plain")
        data = p.files[rel]
        tags = p.validator_headers(rel)
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and not p.ignore_range and self._if_range_holds(rel):
            start = int(rng[len("bytes="):].split("-")[0])
            if start >= len(data):
                return self._send(416, b"", "text/plain",
                                  {"Content-Range": f"bytes */{len(data)}", **tags})
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in tags.items():
            self.send_header(k, v)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "none" if p.ignore_range else "bytes")
        if rel in p.cut:
            # Announce everything, send a part, hang up: a cut connection mid-file.
            n = p.cut.pop(rel)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        self.wfile.write(body)
