"""``janus download``: fetch one of the paper's datasets from the CIC portal, a mirror or a folder.

Three sources, one layout (see :mod:`janus.datasets.registry`):

* the CIC portal (default): it asks for a registration first, an HTML form POST (name,
  email, institution, job title, country) answered with a session cookie, after which
  ``download.php?file=...`` links work. The details come from the command line or from
  ``JANUS_CIC_NAME``, ``JANUS_CIC_EMAIL``, ``JANUS_CIC_INSTITUTION``, ``JANUS_CIC_JOB`` and
  ``JANUS_CIC_COUNTRY``. Endpoints and form field names can be changed in the ``portal:``
  section of a registry override file (defaults: :data:`PORTAL_DEFAULTS`).
* ``--mirror URL``: a plain web folder holding the files at ``URL/<relative path>``.
* ``--local DIR``: files already downloaded by hand into ``DIR/<relative path>``; checked
  (presence, checksums) and linked (or copied) into ``--out``, without any network access.

Three of the four datasets publish no checksum, so the transfer itself must not finish wrong
(:func:`fetch`). Downloads go to ``OUT/<path>.part`` and continue where they stopped only
under ``If-Range`` with the validator (ETag or Last-Modified) of the response the ``.part``
came from, kept beside it in ``<path>.part.json``; anything else (the file changed, a
server ignoring Range, a 206 at the wrong offset, a 416 whose total is not the ``.part``'s
size) starts over from byte 0. A body shorter or longer than announced, or than the
registry's ``size``, never reaches the final name; neither does one whose published MD5 or
SHA-256 (CICIDS2017's sibling ``.md5`` files) differs. Redirects may not leave the host
(``--allow-host``) nor downgrade https; certificate failures are not retried; listing pages
are read up to :data:`LISTING_LIMIT`; each file has an overall deadline (``--deadline``)
besides the per-read timeout. Transient failures are retried with exponential back-off.
Archives are then extracted safely (:mod:`janus.datasets.archive`).
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import http.client
import http.cookiejar
import itertools
import json
import logging
import os
import re
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from janus import __version__
from janus.cli import run_main
from janus.datasets.archive import extract, is_archive
from janus.datasets.registry import (
    DATASETS,
    Dataset,
    RemoteFile,
    get_dataset,
    load_registry,
    matches_any,
    portal_settings,
)
from janus.errors import ConfigError, JanusError
from janus.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

#: Environment variables holding the registration details, by form detail.
ENV_VARS: dict[str, str] = {
    "name": "JANUS_CIC_NAME",
    "email": "JANUS_CIC_EMAIL",
    "institution": "JANUS_CIC_INSTITUTION",
    "job": "JANUS_CIC_JOB",
    "country": "JANUS_CIC_COUNTRY",
}

#: How the portal is spoken to. ``fields`` maps form field -> template over the details
#: {name, first_name, last_name, email, institution, job, country}; the defaults are the
#: field names of the CIC form (its name is asked as first and last name).
PORTAL_DEFAULTS: dict[str, Any] = {
    "register": "insert.php",
    "download": "download.php?file={file}",
    "browse": "browse.php?p={dir}",
    "fields": {
        "first_name": "{first_name}",
        "last_name": "{last_name}",
        "email": "{email}",
        "institution": "{institution}",
        "job_title": "{job}",
        "country": "{country}",
    },
}

#: Folder (under --out) of the downloader's own state: the verified-file records.
STATE_DIR = ".janus"
USER_AGENT = f"janus-nids/{__version__} (+https://github.com/; urllib)"
#: The most bytes read from a folder's listing page (a real index is a few KiB).
LISTING_LIMIT = 4 << 20
#: Default overall deadline of one file: this many seconds, or its size at
#: DEADLINE_MIN_RATE bytes/s, whichever is longer (generous: a 10 GB capture gets 28 h).
DEADLINE_FLOOR = 600.0
DEADLINE_MIN_RATE = 100 * 1024
#: ... and when neither the server nor the registry gives the size.
DEADLINE_UNKNOWN_SIZE = 24 * 3600.0
_MAX_RESTARTS = 3  # fresh starts from byte 0 within one fetch before giving up
_RANGE_RE = re.compile(r"bytes\s+([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,20}|\*)")
_CHUNK = 1 << 20
_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")


class DownloadError(JanusError):
    """A file could not be fetched (offline, refused, not found, cut too often)."""


class ChecksumError(DownloadError):
    """A downloaded or local file does not match its published checksum."""


class RefusedError(DownloadError):
    """The server refused the file (401/403/404 or an HTML page instead of the file)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, None for an HTML page in place of the file


# --------------------------------------------------------------------------- sources
@dataclass
class Source:
    """Where files come from: ``url_for(path)`` for a file, ``listing_url(dir)`` for a folder."""

    opener: urllib.request.OpenerDirector = field(default_factory=lambda: build_opener())
    #: Hosts that redirects may lead to besides the source's own (``host`` or ``host:port``).
    allow_hosts: Sequence[str] = ()

    def url_for(self, path: str) -> str:
        raise NotImplementedError

    def listing_url(self, folder: str) -> str:
        raise NotImplementedError

    def prepare(self, dry_run: bool) -> None:
        """Anything to do before the first file (the portal registers)."""

    def describe(self) -> str:
        raise NotImplementedError


@dataclass
class MirrorSource(Source):
    """A plain web folder: ``base/<path>``; folders are listed from their index page."""

    base: str = ""

    def url_for(self, path: str) -> str:
        return self.base.rstrip("/") + "/" + urllib.parse.quote(path)

    def listing_url(self, folder: str) -> str:
        return self.url_for(folder.rstrip("/")) + "/"

    def describe(self) -> str:
        return f"mirror {self.base}"


@dataclass
class PortalSource(Source):
    """The CIC portal: register once (form POST -> cookie), then ``download.php?file=``."""

    base: str = ""
    prefix: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=lambda: dict(PORTAL_DEFAULTS))
    timeout: float = 60.0

    def __post_init__(self) -> None:
        # The session cookie lives in memory only: each run registers afresh, and nothing
        # of the session is written into the dataset folder.
        self.jar = http.cookiejar.CookieJar()
        self.opener = build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _endpoint(self, key: str, **values: str) -> str:
        return self.base.rstrip("/") + "/" + self.settings[key].format(**values)

    def url_for(self, path: str) -> str:
        return self._endpoint("download", file=urllib.parse.quote(self.prefix + path, safe=""))

    def listing_url(self, folder: str) -> str:
        return self._endpoint("browse", dir=urllib.parse.quote(self.prefix + folder, safe=""))

    def describe(self) -> str:
        return f"CIC portal {self.base}"

    def prepare(self, dry_run: bool) -> None:
        if dry_run:
            return
        missing = [ENV_VARS[k] for k in ENV_VARS if not self.details.get(k)]
        if missing:
            raise ConfigError(
                "the CIC portal asks for a registration before it serves files; set "
                + ", ".join(missing) + " (or pass --name/--email/--institution/--job/"
                "--country), or use --mirror URL or --local DIR")
        self.register()

    def register(self) -> None:
        """POST the registration form and keep the session cookie it answers with."""
        url = self._endpoint("register")
        first, _, last = str(self.details["name"]).strip().partition(" ")
        values = {**self.details, "first_name": first, "last_name": last.strip() or first}
        try:
            form = {k: str(t).format(**values) for k, t in self.settings["fields"].items()}
        except KeyError as exc:
            raise ConfigError(f"portal.fields uses an unknown detail {exc}; known: "
                              + ", ".join(sorted(values))) from exc
        body = urllib.parse.urlencode(form).encode()
        req = _request(url, {"User-Agent": USER_AGENT,
                             "Content-Type": "application/x-www-form-urlencoded"},
                       self.allow_hosts, data=body)
        log.info("registering with %s", url)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                answer = resp.read(65536)
        except urllib.error.HTTPError as exc:
            raise RefusedError(f"registration at {url} was refused: HTTP {exc.code} "
                               f"{exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            cert = _cert_error(exc)
            if cert is not None:
                raise DownloadError(_cert_message(url, cert)) from exc
            raise DownloadError(f"cannot reach the CIC portal at {url}: {_reason(exc)}") from exc
        try:
            verdict = json.loads(answer)
        except ValueError:
            verdict = None
        if isinstance(verdict, dict) and verdict.get("ok") is False:
            raise RefusedError(f"registration at {url} was rejected: {verdict}")
        if not any(True for _ in self.jar):
            raise RefusedError(f"registration at {url} answered without a session cookie; the "
                               "portal may have changed (see the 'portal:' section of the "
                               "registry override file) -- or download by hand and use --local")


# --------------------------------------------------------------------------- redirects
class SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only if it keeps https and stays on the first request's host.

    A host is the same when its name matches and so does its port (a change of port is
    allowed only with an http -> https upgrade). ``allow_hosts`` (and a request's own
    ``janus_allow`` attribute) name further hosts, ``host`` (any port) or ``host:port``.
    A refused redirect raises :class:`RefusedError`, which is never retried.
    """

    handler_order = 400  # before a stock HTTPRedirectHandler that an opener may also hold

    def __init__(self, allow_hosts: Iterable[str] = ()) -> None:
        self.allow_hosts = frozenset(h.strip().lower() for h in allow_hosts)

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        origin = getattr(req, "janus_origin", req.full_url)
        allowed = self.allow_hosts | getattr(req, "janus_allow", frozenset())
        problem = redirect_problem(req.full_url, newurl, origin, allowed)
        if problem:
            fp.close()
            raise RefusedError(f"{origin}: HTTP {code} redirect to {newurl} refused: {problem}",
                               status=code)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.janus_origin = origin  # type: ignore[attr-defined]
            new.janus_allow = allowed  # type: ignore[attr-defined]
        return new


def redirect_problem(current: str, new: str, origin: str,
                     allowed: Iterable[str] = ()) -> str | None:
    """Why a redirect from ``current`` to ``new`` (first request: ``origin``) is refused, or None."""
    cur, nxt, org = (urllib.parse.urlsplit(u) for u in (current, new, origin))
    if cur.scheme == "https" and nxt.scheme != "https":
        return "it downgrades https to an unencrypted connection"
    try:
        same = nxt.hostname == org.hostname and (
            _port(nxt) == _port(org) or (org.scheme, nxt.scheme) == ("http", "https"))
        granted = {h.lower() for h in allowed} & {nxt.hostname, f"{nxt.hostname}:{_port(nxt)}"}
    except ValueError:  # a malformed port
        return "its address is malformed"
    if same or granted:
        return None
    return (f"it leaves {org.netloc} for {nxt.netloc}; if you trust that host, allow it with "
            f"--allow-host {nxt.hostname} (allow_hosts=[{nxt.hostname!r}])")


def _port(url: urllib.parse.SplitResult) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def build_opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """A urllib opener whose redirects are checked by :class:`SafeRedirectHandler`."""
    return urllib.request.build_opener(SafeRedirectHandler(), *handlers)


def _guarded(opener: urllib.request.OpenerDirector | None) -> urllib.request.OpenerDirector:
    """``opener`` (a new one when None) with a :class:`SafeRedirectHandler` in it."""
    if opener is None:
        return build_opener()
    if not any(isinstance(h, SafeRedirectHandler) for h in getattr(opener, "handlers", ())):
        opener.add_handler(SafeRedirectHandler())
    return opener


def _request(url: str, headers: Mapping[str, str], allow_hosts: Iterable[str] = (),
             data: bytes | None = None) -> urllib.request.Request:
    req = urllib.request.Request(url, data=data, headers=dict(headers))
    req.janus_allow = frozenset(h.strip().lower() for h in allow_hosts)  # type: ignore[attr-defined]
    return req


def _cert_error(exc: BaseException) -> BaseException | None:
    """The certificate verification failure behind ``exc``, if that is what it is."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        if isinstance(e, ssl.SSLCertVerificationError) or \
                "CERTIFICATE_VERIFY_FAILED" in str(e):
            return e
        reason = getattr(e, "reason", None)
        todo += [reason if isinstance(reason, BaseException) else None, e.__cause__,
                 e.__context__]
    return None


def _cert_message(url: str, err: BaseException) -> str:
    detail = getattr(err, "verify_message", None) or str(err)
    return (f"{url}: the server's TLS certificate failed verification ({detail}); not retried. "
            "Check the system clock, the CA certificates (SSL_CERT_FILE) or a proxy that "
            "intercepts HTTPS, or use --mirror URL or --local DIR")


# --------------------------------------------------------------------------- fetching
@dataclass
class _Partial:
    """What a ``.part`` holds, kept beside it in ``.part.json``: its source and validators."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None  # bytes the whole file has, as announced

    def if_range(self) -> str | None:
        """The validator for ``If-Range``; a weak ETag may not be used there (RFC 9110)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    @classmethod
    def load(cls, path: Path, url: str) -> _Partial | None:
        try:
            rec = json.loads(path.read_text())
            state = cls(**{k: rec.get(k) for k in ("url", "etag", "last_modified", "total")})
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        texts = (state.url, state.etag, state.last_modified)
        if state.url != url or not all(t is None or isinstance(t, str) for t in texts) or \
                not (state.total is None or type(state.total) is int):
            return None
        return state

    def save(self, path: Path) -> None:
        write_json(path, {"url": self.url, "etag": self.etag,
                          "last_modified": self.last_modified, "total": self.total})


class _Budget:
    """The overall deadline of one file, across its attempts and back-off waits."""

    def __init__(self, deadline: float | None, timeout: float, expected: int | None,
                 clock: Callable[[], float]) -> None:
        self.fixed, self.per_read, self.expected, self.clock = deadline, timeout, expected, clock
        self.start = clock()

    def limit(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if self.expected is None:
            return DEADLINE_UNKNOWN_SIZE
        return max(DEADLINE_FLOOR, self.expected / DEADLINE_MIN_RATE)

    def remaining(self) -> float:
        return self.limit() - (self.clock() - self.start)

    def check(self) -> None:
        if self.remaining() <= 0:
            raise _Expired(self.limit())

    def timeout(self) -> float:
        """The socket timeout: the per-read timeout, cut to what the deadline leaves."""
        return max(0.01, min(self.per_read, self.remaining()))


class _Short(Exception):
    """The server closed the connection before sending all it announced (retried, resumed)."""


class _Restart(Exception):
    """The ``.part`` cannot be continued (the file changed, a bad range): start from byte 0."""


class _Expired(Exception):
    """The file's overall deadline passed."""


def fetch(url: str, dest: str | os.PathLike, *, opener: urllib.request.OpenerDirector | None = None,
          md5: str | None = None, sha256: str | None = None, size: int | None = None,
          retries: int = 3, backoff: float = 1.0, timeout: float = 60.0,
          deadline: float | None = None, allow_hosts: Iterable[str] = (),
          progress: bool | None = None, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, verifying, renaming.

    A ``.part`` is continued only under ``If-Range`` with the ETag (or Last-Modified) of the
    response it came from, kept in ``dest.part.json``; without one, or when the server
    answers 200 (the file changed), a 206 at another offset, or 416 with a total other than
    the ``.part``'s size, the download starts over from byte 0. The body must be exactly
    the announced length (Content-Length / Content-Range) and ``size`` (bytes, from the
    registry) when given; then ``md5``/``sha256`` are checked, and only then is the file
    renamed to ``dest``.

    Transient failures (connection reset or cut, timeouts, 5xx, unreachable host) are tried
    ``retries`` more times, waiting ``backoff * 2**k`` seconds. ``timeout`` (seconds) bounds
    each read, ``deadline`` (seconds, default :func:`auto_deadline` of the size) the whole
    file including retries. Final, never retried: 401/403/404/410, an HTML page in place
    of the file, a refused redirect (https -> http, or to a host not in ``allow_hosts``),
    a certificate verification failure, a malformed Content-Length, a body longer than
    announced, a checksum mismatch. Returns ``dest``.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    side = dest.with_name(dest.name + ".part.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = _guarded(opener)
    allow = tuple(allow_hosts)
    budget = _Budget(deadline, timeout, size, clock)
    attempt = restarts = 0
    while True:
        try:
            budget.check()
            _fetch_once(url, part, side, opener, budget, size, allow, progress, dest.name)
            break
        except _Restart as exc:
            _discard(part, side)
            restarts += 1
            if restarts > _MAX_RESTARTS:
                raise DownloadError(f"{url}: {exc}; gave up after {restarts} fresh starts (the "
                                    "file keeps changing on the server?)") from exc
            log.warning("%s: %s; starting over from byte 0", url, exc)
        except _Expired as exc:
            raise DownloadError(
                f"{url}: not finished within its deadline of {exc.args[0]:g} s "
                f"({_size(part)} bytes kept in {part} for the next run; raise it with "
                "--deadline SECONDS)") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, _Short) as exc:
            cert = _cert_error(exc)
            if cert is not None:
                raise DownloadError(_cert_message(url, cert)) from exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise DownloadError(f"{url}: {_reason(exc)}") from exc
            if attempt >= retries:
                raise DownloadError(
                    f"{url}: {_reason(exc)} (gave up after {attempt + 1} attempts; "
                    f"{_size(part)} bytes kept in {part} for the next run)") from exc
            wait = backoff * 2 ** attempt
            if wait >= budget.remaining():
                raise DownloadError(
                    f"{url}: {_reason(exc)}; no time left for a retry within its deadline of "
                    f"{budget.limit():g} s ({_size(part)} bytes kept in {part}; raise it "
                    "with --deadline SECONDS)") from exc
            attempt += 1
            log.warning("%s: %s; retry %d/%d in %.1f s", url, _reason(exc), attempt, retries,
                        wait)
            sleep(wait)
    state = _Partial.load(side, url)
    want = size if size is not None else state.total if state else None
    have = _size(part)
    if want is not None and have != want:
        _discard(part, side)
        raise DownloadError(f"{url}: the download holds {have} bytes, not the {want} expected; "
                            "it was deleted, run the download again")
    try:
        verify(part, md5=md5, sha256=sha256, name=f"{dest} (from {url})")
    finally:
        if not part.exists():
            side.unlink(missing_ok=True)
    os.replace(part, dest)
    side.unlink(missing_ok=True)
    return dest


def auto_deadline(size: int | None) -> float:
    """The default overall deadline (seconds) of a file of ``size`` bytes (None: unknown)."""
    return _Budget(None, 1.0, size, time.monotonic).limit()


def _discard(part: Path, side: Path) -> None:
    side.unlink(missing_ok=True)
    part.unlink(missing_ok=True)


def _fetch_once(url: str, part: Path, side: Path, opener: urllib.request.OpenerDirector,
                budget: _Budget, size: int | None, allow: Sequence[str],
                progress: bool | None, name: str) -> None:
    offset = _size(part)
    state = _Partial.load(side, url) if offset else None
    if offset and (state is None or state.if_range() is None
                   or (state.total is not None and offset > state.total)):
        log.info("%s: %s cannot be continued safely (no validator kept); starting over",
                 url, part)
        _discard(part, side)
        offset, state = 0, None
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if state is not None:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = state.if_range() or ""
    try:
        resp = opener.open(_request(url, headers, allow), timeout=budget.timeout())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and state is not None:
            value = exc.headers.get("Content-Range", "") if exc.headers else ""
            exc.close()
            total = _unsatisfied_total(value)
            if total == offset and state.total in (None, total):
                return  # nothing past our offset: the .part is the whole file
            raise _Restart(f"HTTP 416 says the file has {total if total is not None else '?'} "
                           f"bytes ({value!r}), {part} holds {offset}") from None
        if exc.code in (401, 403, 404, 410):
            exc.close()
            raise RefusedError(f"{url}: HTTP {exc.code} {exc.reason}", status=exc.code) from exc
        raise
    with resp:
        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        length = None if getattr(resp, "chunked", False) else _content_length(resp.headers, url)
        if resp.status == 206:
            total = _check_partial(resp.headers.get("Content-Range", ""), length, offset, state,
                                   etag, modified, url)
        elif resp.status == 200:
            if offset:
                log.info("%s: the server sent the whole file (it changed, or ignores Range); "
                         "starting over", url)
            offset, total = 0, length
        else:
            raise DownloadError(f"{url}: unexpected answer HTTP {resp.status} {resp.reason}")
        if size is not None and total is not None and total != size:
            _discard(part, side)
            raise DownloadError(
                f"{url}: the server announces {total} bytes, the registry says {size}; this is "
                "not the registered file (if it was updated, fix 'size' with --registry FILE)")
        expected = total if total is not None else size
        budget.expected = expected
        chunks = _chunks(resp, budget)
        first = next(chunks, b"")
        if _looks_like_html(resp.headers.get("Content-Type", ""), first, name):
            raise RefusedError(
                f"{url}: the server sent an HTML page (a login or registration page?) instead "
                f"of {name}")
        if offset == 0:
            side.unlink(missing_ok=True)
            part.write_bytes(b"")
            fresh = _Partial(url, etag, modified, total)
            if fresh.if_range() is not None:
                fresh.save(side)  # before any byte: a .part never outlives its validator
        elif state is not None and state.total is None and total is not None:
            state.total = total
            state.save(side)
        if expected is None and not getattr(resp, "chunked", False):
            log.warning("%s: the server announced no length; a cut connection cannot be told "
                        "from the end of the file", url)
        got = offset
        with open(part, "ab") as out, tqdm(
                total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=None if progress is None else not progress) as bar:
            for chunk in itertools.chain([first], chunks):
                if expected is not None and got + len(chunk) > expected:
                    out.close()
                    _discard(part, side)
                    raise DownloadError(
                        f"{url}: the server sent more than the {expected} bytes "
                        f"{'announced' if total is not None else 'the registry gives'}; the "
                        "download was deleted, run it again")
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if expected is not None and got < expected:
            raise _Short(f"connection closed after {got} of {expected} bytes")


def _check_partial(value: str, length: int | None, offset: int, state: _Partial | None,
                   etag: str | None, modified: str | None, url: str) -> int | None:
    """The file's total size from a 206; :class:`_Restart` when it does not continue the .part."""
    m = _RANGE_RE.fullmatch(value.strip())
    if not m or (state is None and offset):
        raise _Restart(f"HTTP 206 with Content-Range {value!r} to a request for bytes "
                       f"{offset}-")
    start, end = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if start != offset:
        raise _Restart(f"the server resumed at byte {start}, not {offset}")
    if end < start or (total is not None and end >= total):
        raise _Restart(f"HTTP 206 with an impossible Content-Range {value!r}")
    if state is None:  # a 206 for the whole file to a request without Range
        state = _Partial("", etag, modified, total)
    if (state.etag and etag and etag != state.etag) or \
            (state.if_range() == state.last_modified and modified and
             modified != state.last_modified):
        raise _Restart("the file changed on the server (its validator differs from the one "
                       "the .part came from)")
    if total is not None and state.total is not None and total != state.total:
        raise _Restart(f"the file on the server now has {total} bytes, not {state.total}")
    if length is not None and length != end + 1 - start:
        raise DownloadError(f"{url}: Content-Length {length} disagrees with Content-Range "
                            f"{value!r}")
    if total is None:
        total = state.total
    if total is not None and end + 1 != total:
        raise _Restart(f"the server sent bytes {start}-{end} of {total}, not the rest")
    return total


def _chunks(resp: http.client.HTTPResponse, budget: _Budget) -> Iterator[bytes]:
    """The body as it arrives; a cut connection yields what came, then raises :class:`_Short`.

    ``read1`` returns whatever one read brings, so a body that trickles in a byte at a time
    still meets the deadline check between reads.
    """
    read = getattr(resp, "read1", resp.read)
    while True:
        budget.check()
        try:
            chunk = read(_CHUNK)
        except http.client.IncompleteRead as exc:
            if exc.partial:
                yield exc.partial
            raise _Short(f"connection closed early ({exc})") from exc
        if not chunk:
            return
        yield chunk


def _content_length(headers: Any, url: str) -> int | None:
    """The announced body length; :class:`DownloadError` when it is not one byte count."""
    values = headers.get_all("Content-Length") or []
    found = {piece.strip() for v in values for piece in str(v).split(",")}
    if not found:
        return None
    if len(found) > 1 or not re.fullmatch(r"[0-9]{1,20}", next(iter(found))):
        shown = ", ".join(repr(v) for v in values)
        raise DownloadError(f"{url}: the server sent Content-Length {shown}, not a byte count; "
                            "nothing was saved (try again later, or use --mirror URL or "
                            "--local DIR)")
    return int(next(iter(found)))


def _unsatisfied_total(value: str) -> int | None:
    m = re.fullmatch(r"bytes\s+\*/([0-9]{1,20})", value.strip())
    return int(m.group(1)) if m else None


def _looks_like_html(ctype: str, first: bytes, name: str) -> bool:
    if name.lower().endswith((".html", ".htm")):
        return False
    head = first[:512].lstrip().lower()
    return ctype.lower().startswith("text/html") or head.startswith((b"<!doctype html",
                                                                     b"<html"))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _reason(exc: BaseException) -> str:
    """``exc`` in one line (urllib's redirect-loop message spans three)."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        text = str(exc.reason)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def file_digests(path: str | os.PathLike, *, progress: bool | None = None) -> dict[str, str]:
    """MD5 and SHA-256 of a file, read once in 1 MiB chunks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    path = Path(path)
    with open(path, "rb") as fh, tqdm(total=_size(path), unit="B", unit_scale=True,
                                      unit_divisor=1024, desc=f"verify {path.name}",
                                      disable=None if progress is None else not progress) as bar:
        while chunk := fh.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            bar.update(len(chunk))
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify(path: Path, *, md5: str | None, sha256: str | None, name: str,
           delete: bool = True) -> dict[str, str] | None:
    """Check ``path`` against the published digests; on a mismatch delete it and raise.

    Returns the digests computed, or None when nothing was published (nothing to check).
    """
    if not md5 and not sha256:
        return None
    got = file_digests(path)
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want and got[algo] != want.lower():
            if delete:
                path.unlink(missing_ok=True)
            raise ChecksumError(
                f"{name}: {algo} mismatch: expected {want.lower()}, got {got[algo]}"
                + ("; the bad file was deleted, run the download again" if delete else
                   f" ({path})"))
    return got


def parse_md5_file(text: str, name: str) -> str:
    """The MD5 in a published ``.md5`` file (``<hex>`` or ``<hex>  <file>`` lines)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in lines:  # prefer the line naming our file, when there are several
        m = _MD5_RE.search(line)
        if m and name in line:
            return m.group(1).lower()
    for line in lines:
        m = _MD5_RE.search(line)
        if m:
            return m.group(1).lower()
    raise ChecksumError(f"no MD5 found in the checksum file of {name}")


# --------------------------------------------------------------------------- listings
class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def list_folder(source: Source, folder: str, *, timeout: float = 60.0,
                deadline: float | None = None, allow_hosts: Iterable[str] = ()) -> list[str]:
    """Relative paths of the files directly inside ``folder``, read from its listing page.

    Understands both an Apache-style index (``<a href="x.pcap">``) and the portal's
    ``download.php?file=<prefix><folder>/x.pcap`` links. A page over :data:`LISTING_LIMIT`
    bytes, or not read within ``deadline`` seconds (default :data:`DEADLINE_FLOOR`), is an
    error: no real folder index is that large or that slow.
    """
    url = source.listing_url(folder)
    req = _request(url, {"User-Agent": USER_AGENT}, (*source.allow_hosts, *allow_hosts))
    budget = _Budget(DEADLINE_FLOOR if deadline is None else deadline, timeout, None,
                     time.monotonic)
    what = f"(listing of {folder}/)"
    try:
        with _guarded(source.opener).open(req, timeout=budget.timeout()) as resp:
            length = _content_length(resp.headers, url)
            raw = bytearray()
            if length is None or length <= LISTING_LIMIT:
                for chunk in _chunks(resp, budget):
                    raw += chunk
                    if len(raw) > LISTING_LIMIT:
                        break
            if max(len(raw), length or 0) > LISTING_LIMIT:
                raise DownloadError(
                    f"{url}: the listing of {folder}/ is larger than {LISTING_LIMIT / 2**20:g} MiB, "
                    "which no folder index is; stopped reading (a broken or hostile server?)")
            page = raw.decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise RefusedError(f"{url}: HTTP {exc.code} {exc.reason} {what}") from exc
    except _Expired as exc:
        raise DownloadError(f"{url}: not read within {exc.args[0]:g} s {what}; raise the "
                            "limit with --deadline SECONDS") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, _Short) as exc:
        cert = _cert_error(exc)
        if cert is not None:
            raise DownloadError(_cert_message(url, cert)) from exc
        raise DownloadError(f"{url}: {_reason(exc)} {what}") from exc
    parser = _Links()
    parser.feed(page)
    prefix = getattr(source, "prefix", "")
    found: set[str] = set()  # a set: a listing may hold many thousands of links
    for href in parser.hrefs:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
        if "file" in query:
            rel = query["file"][0]
            if not rel.startswith(prefix):
                continue
            rel = rel[len(prefix):]
        else:
            target = urllib.parse.urlsplit(urllib.parse.urljoin(url, href))
            if target.query or target.path.endswith("/"):
                continue  # sort links, sub-folders, the parent folder
            rel = folder.rstrip("/") + "/" + urllib.parse.unquote(target.path.rsplit("/", 1)[1])
            if not urllib.parse.unquote(target.path).endswith("/" + rel):
                continue  # a link leading somewhere else
        if rel.rsplit("/", 1)[0] == folder.rstrip("/"):
            found.add(rel)
    if not found:
        raise DownloadError(f"{url}: the listing of {folder}/ shows no files (a login page?)")
    return sorted(found)


# --------------------------------------------------------------------------- the plan
@dataclass
class DownloadResult:
    """What a download produced: files (final paths), extracted folders and the captures."""

    out: Path
    files: list[Path] = field(default_factory=list)
    extracted: list[Path] = field(default_factory=list)
    captures: list[Path] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)


class _State:
    """``OUT/.janus/verified.json``: files already verified (size + mtime), not re-hashed."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_DIR / "verified.json"
        try:
            self.data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def ok(self, rel: str, path: Path) -> bool:
        rec = self.data.get(rel)
        st = path.stat()
        return bool(rec) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns

    def mark(self, rel: str, path: Path, digests: Mapping[str, str] | None) -> None:
        st = path.stat()
        self.data[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **(digests or {})}
        write_json(self.path, self.data)


def manual_hint(dataset: Dataset, files: Sequence[str] | None = None, limit: int = 12) -> str:
    """How to provide the files by hand: where to get them and the layout --local expects."""
    paths = list(files if files is not None else
                 [f.path for f in dataset.files] + [d + "/*" for d in dataset.listed_dirs])
    shown = "\n".join(f"    DIR/{p}" for p in paths[:limit])
    more = f"\n    ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return (f"To provide the files by hand, download them from {dataset.homepage} (after its "
            f"registration form) into a folder DIR laid out as\n{shown}{more}\n"
            f"and run: janus download {dataset.name} --local DIR --out OUT")


def download_dataset(dataset: Dataset | str, out: str | os.PathLike, *,
                     source: Source | None = None, local: str | os.PathLike | None = None,
                     only: Iterable[str] = (), retries: int = 3, backoff: float = 1.0,
                     timeout: float = 60.0, deadline: float | None = None,
                     allow_hosts: Iterable[str] = (), dry_run: bool = False,
                     do_extract: bool = True, copy: bool = False, progress: bool | None = None,
                     echo: Callable[[str], None] = print) -> DownloadResult:
    """Fetch ``dataset`` into ``out`` from ``source`` (network) or ``local`` (a folder).

    ``only`` restricts to files matching any of the globs (relative paths, ``*`` crosses
    '/'). ``timeout`` (seconds) bounds each read, ``deadline`` (seconds, default
    :func:`auto_deadline`) each file; ``allow_hosts`` are added to ``source.allow_hosts``
    (hosts redirects may lead to). Returns a :class:`DownloadResult`; with ``dry_run``
    nothing is fetched or written and the plan is printed through ``echo``.
    """
    ds = get_dataset(dataset) if isinstance(dataset, str) else dataset
    out = Path(out)
    only = list(only)
    files, dirs = ds.select(only)
    if not files and not dirs:
        raise ConfigError(f"--only {' '.join(only)} matches no file of {ds.name}; its files: "
                          + ", ".join(f.path for f in ds.files))
    if (source is None) == (local is None):
        raise ConfigError("give exactly one source: a Source (portal or mirror) or a local folder")
    result = DownloadResult(out=out)
    if local is not None:
        _from_local(ds, Path(local), out, files, dirs, only, result, copy=copy,
                    dry_run=dry_run, echo=echo)
    else:
        assert source is not None
        source.allow_hosts = tuple(dict.fromkeys((*source.allow_hosts, *allow_hosts)))
        _from_network(ds, source, out, files, dirs, only, result, retries=retries,
                      backoff=backoff, timeout=timeout, deadline=deadline, dry_run=dry_run,
                      progress=progress, echo=echo)
    if dry_run:
        return result
    if do_extract:
        for path in result.files:
            if is_archive(path) and _wants_extract(ds, out, path):
                result.extracted.append(extract(path, progress=progress))
    result.captures = ds.find_captures(out)
    echo(f"{ds.name}: {len(result.files)} files in {out}, {len(result.extracted)} archives "
         f"extracted, {len(result.captures)} captures")
    for rel in result.unverified:
        echo(f"  not verified (no published checksum found): {rel}")
    return result


def _wants_extract(ds: Dataset, out: Path, path: Path) -> bool:
    rel = path.relative_to(out).as_posix()
    return any(f.path == rel and f.extract for f in ds.files)


def _from_network(ds: Dataset, source: Source, out: Path, files: Sequence[RemoteFile],
                  dirs: Sequence[str], only: Sequence[str], result: DownloadResult, *,
                  retries: int, backoff: float, timeout: float, deadline: float | None,
                  dry_run: bool, progress: bool | None, echo: Callable[[str], None]) -> None:
    echo(f"{ds.name}: {len(files)} files and {len(dirs)} listed folders from "
         f"{source.describe()} into {out}")
    if dry_run:
        for f in files:
            check = ("md5 " + f.md5 if f.md5 else "sha256 " + f.sha256 if f.sha256 else
                     "md5 from " + f.md5_file if f.md5_file else "no published checksum")
            echo(f"  {source.url_for(f.path)}\n    -> {out / f.path}  [{check}]"
                 + ("  (then extracted)" if f.extract else ""))
        for d in dirs:
            echo(f"  every file listed at {source.listing_url(d)}\n    -> {out / d}/")
        return
    source.prepare(dry_run)
    state = _State(out)
    hint = manual_hint(ds)

    def get(rel: str, md5: str | None, sha256: str | None, size: int | None = None) -> Path:
        dest = out / rel
        if dest.is_file():
            if (md5 or sha256) and not state.ok(rel, dest):
                state.mark(rel, dest, verify(dest, md5=md5, sha256=sha256, name=rel))
            else:
                log.info("%s: already downloaded", rel)
            return dest
        try:
            fetch(source.url_for(rel), dest, opener=source.opener, md5=md5, sha256=sha256,
                  size=size, retries=retries, backoff=backoff, timeout=timeout,
                  deadline=deadline, allow_hosts=source.allow_hosts, progress=progress)
        except ChecksumError:
            raise
        except RefusedError as exc:
            raise RefusedError(f"{exc}\n{hint}", status=exc.status) from exc
        except DownloadError as exc:
            raise DownloadError(f"{exc}\n{hint}") from exc
        if md5 or sha256:
            state.mark(rel, dest, {k: v for k, v in (("md5", md5), ("sha256", sha256)) if v})
        return dest

    # Checksum files first: the files they describe are verified as they arrive.
    checksum_files = list(dict.fromkeys(f.md5_file for f in files if f.md5_file))
    checksums: dict[str, str] = {}
    for rel in checksum_files:
        try:
            path = get(rel, None, None)
        except RefusedError as exc:
            if exc.status not in (404, 410):
                raise
            log.warning("%s: not on the server (HTTP %s); the file it describes will not be "
                        "verified", rel, exc.status)
            continue
        described = next(f.path for f in files if f.md5_file == rel)
        checksums[rel] = parse_md5_file(path.read_text(errors="replace"),
                                        Path(described).name)
        result.files.append(path)
    for f in files:
        if f.path in checksum_files:
            continue
        md5 = f.md5 or (checksums.get(f.md5_file) if f.md5_file else None)
        if not md5 and not f.sha256 and not any(g.md5_file == f.path for g in ds.files):
            result.unverified.append(f.path)
        result.files.append(get(f.path, md5, f.sha256, f.size))
    for d in dirs:
        try:
            listed = list_folder(source, d, timeout=timeout, deadline=deadline)
        except DownloadError as exc:
            raise type(exc)(f"{exc}\n{hint}") from exc
        for rel in listed:
            if only and not (matches_any(rel, only) or matches_any(d, only)):
                continue
            result.unverified.append(rel)
            result.files.append(get(rel, None, None))


def _from_local(ds: Dataset, local: Path, out: Path, files: Sequence[RemoteFile],
                dirs: Sequence[str], only: Sequence[str], result: DownloadResult, *,
                copy: bool, dry_run: bool, echo: Callable[[str], None]) -> None:
    if not local.is_dir():
        raise ConfigError(f"--local {local}: not a folder\n{manual_hint(ds)}")
    wanted: list[tuple[str, RemoteFile | None]] = [(f.path, f) for f in files]
    missing = [f.path for f in files if not (local / f.path).is_file()
               # An unverified checksum sibling may legitimately be absent.
               and not (not f.verified and f.path.endswith(".md5"))]
    for d in dirs:
        folder = local / d
        found = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        found = [p for p in found
                 if not only or matches_any(f"{d}/{p.name}", only) or matches_any(d, only)]
        if not found:
            missing.append(d + "/*")
        wanted += [(f"{d}/{p.name}", None) for p in found]
    if missing:
        raise DownloadError(f"--local {local}: missing {len(missing)} file(s): "
                            + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
                            + "\n" + manual_hint(ds))
    echo(f"{ds.name}: {len(wanted)} files from {local} into {out} "
         f"({'copy' if copy else 'symlink'})")
    if dry_run:
        for rel, _ in wanted:
            echo(f"  {local / rel} -> {out / rel}")
        return
    same = local.resolve() == out.resolve()
    state = _State(out)
    for rel, f in wanted:
        src = local / rel
        if not src.is_file():
            continue  # an unverified checksum sibling that is absent (allowed above)
        md5 = f.md5 if f else None
        if f and not md5 and f.md5_file and (local / f.md5_file).is_file():
            md5 = parse_md5_file((local / f.md5_file).read_text(errors="replace"),
                                 Path(f.path).name)
        sha256 = f.sha256 if f else None
        dest = _place(src, out / rel, copy, same)
        if md5 or sha256:
            if not state.ok(rel, dest):
                # Never delete the user's own file: name it instead.
                state.mark(rel, dest, verify(src, md5=md5, sha256=sha256, name=rel,
                                             delete=False))
        elif not any(g.md5_file == rel for g in files):
            result.unverified.append(rel)
        result.files.append(dest)


def _place(src: Path, dest: Path, copy: bool, same: bool) -> Path:
    """Link (or copy) ``src`` to ``dest`` atomically; nothing to do when they are one file."""
    if same:
        return dest
    if dest.is_symlink() and not copy and dest.resolve() == src.resolve():
        return dest
    if copy and dest.is_file() and not dest.is_symlink() and \
            dest.stat().st_size == src.stat().st_size:
        return dest
    with atomic_path(dest, suffix="") as tmp:
        tmp.unlink()
        if copy:
            shutil.copyfile(src, tmp)
        else:
            tmp.symlink_to(src.resolve())
    return dest


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``janus download`` command line."""
    names = ", ".join(DATASETS)
    p = argparse.ArgumentParser(
        prog="janus download",
        description="Fetch one of the paper's datasets from the CIC portal (default), a "
                    "mirror or a local folder, verify it and extract its archives.",
        epilog="Portal registration details come from the options above or from "
               + ", ".join(ENV_VARS.values()) + ". Registry fixes (a renamed file, a new "
               "portal address, form field names) go into a YAML/JSON file given with "
               "--registry or $JANUS_DATASETS_FILE; see janus/datasets/registry.py.")
    p.add_argument("dataset", help=f"dataset name ({names}); case and '-'/'_' are ignored")
    p.add_argument("--out", required=True, type=Path,
                   help="download folder; files keep their relative paths under it")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--mirror", metavar="URL",
                     help="plain web folder holding the files at URL/<relative path>")
    src.add_argument("--local", metavar="DIR", type=Path,
                     help="folder of files downloaded by hand (same layout); no network")
    p.add_argument("--portal", metavar="URL",
                   help="the dataset's folder on the CIC portal (default: the registry's)")
    p.add_argument("--only", metavar="GLOB", nargs="+", action="extend", default=[],
                   help="fetch only files whose relative path matches a glob "
                        "('PCAPs/Monday*'; '*' also crosses '/')")
    p.add_argument("--retries", type=int, default=3,
                   help="extra attempts per file after a transient failure (default 3)")
    p.add_argument("--backoff", type=float, default=2.0,
                   help="seconds before the first retry, doubled each time (default 2)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds without data before a connection counts as failed (default 60)")
    p.add_argument("--deadline", type=float, metavar="SECONDS",
                   help="overall limit per file, retries included (default: "
                        f"{DEADLINE_FLOOR:.0f} s or the file's size at "
                        f"{DEADLINE_MIN_RATE // 1024} KiB/s, whichever is longer)")
    p.add_argument("--allow-host", metavar="HOST", action="append", default=[],
                   help="let redirects lead to HOST (or HOST:PORT) besides the source's own "
                        "host; repeat for several. Redirects from https to http are always "
                        "refused")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be fetched from where, and fetch nothing")
    p.add_argument("--no-extract", action="store_true", help="keep archives packed")
    p.add_argument("--captures-list", metavar="FILE", type=Path,
                   help="after a successful download, write the capture files found (one path "
                        "per line, sorted) to FILE, for 'janus extract --captures-from FILE'")
    p.add_argument("--copy", action="store_true",
                   help="with --local: copy files instead of symlinking them")
    p.add_argument("--registry", metavar="FILE", type=Path,
                   help="YAML/JSON registry override (default: $JANUS_DATASETS_FILE)")
    for key, env in ENV_VARS.items():
        p.add_argument(f"--{key}", metavar="TEXT",
                       help=f"portal registration: your {key.replace('job', 'job title')} "
                            f"(default: ${env})")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``janus download`` with parsed arguments."""
    registry = load_registry(args.registry)
    ds = get_dataset(args.dataset, registry)
    if args.retries < 0 or args.backoff < 0 or args.timeout <= 0 or \
            (args.deadline is not None and args.deadline <= 0):
        raise ConfigError("--retries and --backoff must be >= 0, --timeout and --deadline > 0")
    if args.local is not None and args.portal:
        raise ConfigError("--portal and --local exclude each other")
    source: Source | None = None
    if args.mirror:
        if args.portal:
            raise ConfigError("--portal and --mirror exclude each other")
        source = MirrorSource(base=args.mirror)
    elif args.local is None:
        settings = {**PORTAL_DEFAULTS, **portal_settings(args.registry)}
        unknown = set(settings) - set(PORTAL_DEFAULTS)
        if unknown:
            raise ConfigError(f"portal: unknown key(s) {sorted(unknown)}; known: "
                              f"{sorted(PORTAL_DEFAULTS)}")
        details = {k: getattr(args, k) or os.environ.get(env, "") for k, env in ENV_VARS.items()}
        source = PortalSource(base=args.portal or ds.portal_url, prefix=ds.portal_prefix,
                              details=details, settings=settings, timeout=args.timeout)
    result = download_dataset(ds, args.out, source=source, local=args.local, only=args.only,
                              retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                              deadline=args.deadline, allow_hosts=args.allow_host,
                              dry_run=args.dry_run, do_extract=not args.no_extract,
                              copy=args.copy)
    if args.captures_list is not None and not args.dry_run:
        if not result.captures:
            raise JanusError(f"{ds.name}: no capture files found under {args.out} (globs "
                             f"{list(ds.capture_globs)}); nothing to write to {args.captures_list}")
        write_captures_list(args.captures_list, result.captures)
    return 0


def write_captures_list(path: str | os.PathLike, captures: Iterable[Path]) -> None:
    """Write capture paths one per line (atomically); names with a newline are refused."""
    lines = []
    for capture in captures:
        text = str(capture)
        if "\n" in text:
            raise JanusError(f"{text!r}: a capture path with a newline cannot be listed")
        lines.append(text)
    write_text(path, "\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``janus download`` / ``python -m janus.download``."""
    return run_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
