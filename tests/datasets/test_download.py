"""Tests of janus/datasets/download.py against an emulated portal on 127.0.0.1 (archives: test_archive.py)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from portal_server import REQUIRED_FIELDS, PortalServer, Reply

from janus.datasets import archive, download
from janus.datasets.download import (
    DEADLINE_FLOOR,
    DEADLINE_UNKNOWN_SIZE,
    ENV_VARS,
    LISTING_LIMIT,
    ChecksumError,
    DownloadError,
    MirrorSource,
    PortalSource,
    RefusedError,
    SafeRedirectHandler,
    auto_deadline,
    build_opener,
    download_dataset,
    fetch,
    list_folder,
    main,
    parse_md5_file,
    redirect_problem,
)
from janus.datasets.registry import Dataset, LabelRule, RemoteFile
from janus.errors import ConfigError, JanusError

DETAILS = {"name": "Ada Lovelace", "email": "ada@example.org", "institution": "Analytical",
           "job": "Researcher", "country": "United Kingdom"}
FAST = {"retries": 2, "backoff": 0.01, "timeout": 5.0, "progress": False}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


CAPTURE = bytes(range(256)) * 64  # 16 KiB, every byte value
SAT = {"PCAP-03-11/SAT-03-11-2018_0": b"\xd4\xc3\xb2\xa1" + b"a" * 100,
       "PCAP-03-11/SAT-03-11-2018_01": b"\xd4\xc3\xb2\xa1" + b"b" * 100}
FILES = {
    "PCAPs/day.pcap": CAPTURE,
    "PCAPs/day.md5": f"{_md5(CAPTURE)}  day.pcap\n".encode(),
    "PCAPs/03-11/PCAP-03-11.zip": _zip(SAT),
    "PCAP/Attack/a1.pcap": b"attack-1",
    "PCAP/Attack/a2.pcap": b"attack-2",
}
TOY = Dataset(
    name="toy", title="toy", homepage="https://example.invalid/toy", portal_url="unused",
    portal_prefix="DS/",
    files=(RemoteFile("PCAPs/day.pcap", md5_file="PCAPs/day.md5"), RemoteFile("PCAPs/day.md5"),
           RemoteFile("PCAPs/03-11/PCAP-03-11.zip", extract=True)),
    listed_dirs=("PCAP/Attack",),
    capture_globs=("PCAPs/*.pcap", "PCAPs/03-11/PCAP-03-11/**/SAT-*", "PCAP/*/*.pcap"),
    label_rule=LabelRule(method="folder"),
)
EXPECTED_CAPTURES = ["PCAP/Attack/a1.pcap", "PCAP/Attack/a2.pcap",
                     "PCAPs/03-11/PCAP-03-11/PCAP-03-11/SAT-03-11-2018_0",
                     "PCAPs/03-11/PCAP-03-11/PCAP-03-11/SAT-03-11-2018_01", "PCAPs/day.pcap"]


@pytest.fixture
def server():
    srv = PortalServer(files=dict(FILES))
    try:
        yield srv
    finally:
        srv.close()


def _captures(result) -> list[str]:
    return [p.relative_to(result.out).as_posix() for p in result.captures]


def _check_tree(out: Path) -> None:
    for rel in ("PCAPs/day.pcap", "PCAP/Attack/a1.pcap"):
        assert (out / rel).read_bytes() == FILES[rel]
    assert not list(out.rglob("*.part")) and not list(out.rglob("*.part.json"))


# --------------------------------------------------------------------------- portal
def test_portal_registration_cookie_and_download(server, tmp_path):
    source = PortalSource(base=server.portal_url, prefix="DS/", details=DETAILS)
    result = download_dataset(TOY, tmp_path / "out", source=source, echo=lambda s: None,
                              **FAST)
    assert len(server.registrations) == 1
    form = server.registrations[0]
    assert set(form) == set(REQUIRED_FIELDS)
    assert form["first_name"] == "Ada" and form["last_name"] == "Lovelace"
    assert form["job_title"] == "Researcher"
    downloads = [r for r in server.requests if "download.php" in r.path]
    assert downloads and all("Token=" in r.headers.get("Cookie", "") for r in downloads)
    # The session cookie stays in memory: nothing of it lands in the dataset folder.
    state_files = sorted(p.name for p in (result.out / ".janus").iterdir())
    assert state_files == ["verified.json"]
    assert not any("Token" in p.read_text(errors="replace")
                   for p in result.out.rglob("*") if p.is_file() and p.suffix != ".zip")
    _check_tree(result.out)
    assert _captures(result) == EXPECTED_CAPTURES
    assert sorted(result.unverified) == ["PCAP/Attack/a1.pcap", "PCAP/Attack/a2.pcap",
                                         "PCAPs/03-11/PCAP-03-11.zip"]


def test_download_without_cookie_is_refused_clearly(server, tmp_path):
    source = PortalSource(base=server.portal_url, prefix="DS/", details=DETAILS)
    url = source.url_for("PCAPs/day.pcap")  # never registered: no cookie
    with pytest.raises(RefusedError) as err:
        fetch(url, tmp_path / "day.pcap", opener=source.opener, **FAST)
    assert url in str(err.value) and "HTML page" in str(err.value)
    assert not (tmp_path / "day.pcap").exists() and not (tmp_path / "day.pcap.part").exists()


def test_registration_without_cookie_is_an_error(server, tmp_path):
    server.set_cookie = False
    source = PortalSource(base=server.portal_url, prefix="DS/", details=DETAILS)
    with pytest.raises(RefusedError, match="without a session cookie"):
        download_dataset(TOY, tmp_path, source=source, echo=lambda s: None, **FAST)


def test_missing_registration_details_name_the_env_vars(server, tmp_path, monkeypatch):
    for env in ENV_VARS.values():
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("JANUS_CIC_NAME", "Ada Lovelace")
    status = main(["cicids2017", "--out", str(tmp_path), "--portal", server.portal_url])
    assert status == 2
    assert server.requests == []  # nothing was sent without the details


def test_missing_details_message(tmp_path, monkeypatch):
    source = PortalSource(base="http://127.0.0.1:9", details={"name": "Ada"})
    with pytest.raises(ConfigError) as err:
        source.prepare(dry_run=False)
    msg = str(err.value)
    for env in ("JANUS_CIC_EMAIL", "JANUS_CIC_INSTITUTION", "JANUS_CIC_JOB",
                "JANUS_CIC_COUNTRY"):
        assert env in msg
    assert "JANUS_CIC_NAME" not in msg and "--local" in msg


# --------------------------------------------------------------------------- resume, verify
DAY = "PCAPs/day.pcap"
NEW = bytes(reversed(CAPTURE))  # same length, other bytes: a file updated on the server


def _day(server, tmp_path, **kw):
    """fetch() of PCAPs/day.pcap from the mirror into tmp_path/day.pcap."""
    return fetch(f"{server.mirror_url}/{DAY}", tmp_path / "day.pcap", **{**FAST, **kw})


def _interrupted(server, tmp_path, n=5000):
    """A run cut after ``n`` bytes, as a killed job leaves it: a .part and its sidecar."""
    server.cut[DAY] = n
    with pytest.raises(DownloadError, match="connection closed after"):
        _day(server, tmp_path, retries=0)
    assert (tmp_path / "day.pcap.part").stat().st_size == n
    assert (tmp_path / "day.pcap.part.json").is_file() == (server.validators != "none")
    server.requests.clear()


def _gets(server):
    return [r for r in server.requests if r.method == "GET"]


def _no_leftovers(tmp_path, name="day.pcap"):
    assert not (tmp_path / name).exists()
    assert not (tmp_path / f"{name}.part").exists()
    assert not (tmp_path / f"{name}.part.json").exists()


def test_range_resume_after_a_cut_connection(server, tmp_path):
    server.cut[DAY] = 5000
    dest = _day(server, tmp_path, md5=_md5(CAPTURE))
    assert dest.read_bytes() == CAPTURE
    gets = _gets(server)
    assert [r.headers.get("Range") for r in gets] == [None, "bytes=5000-"]
    assert gets[1].headers.get("If-Range") == server.etag(DAY)
    assert not (tmp_path / "day.pcap.part.json").exists()  # gone with the .part


@pytest.mark.parametrize("validators, which", [
    ("both", "etag"), ("etag", "etag"), ("last-modified", "last-modified"),
    ("weak", "last-modified"),  # a weak ETag may not be used in If-Range
])
def test_resume_next_run_sends_if_range(server, tmp_path, validators, which):
    server.validators = validators
    _interrupted(server, tmp_path)
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    (get,) = _gets(server)
    want = server.etag(DAY) if which == "etag" else server.last_modified(DAY)
    assert get.headers.get("Range") == "bytes=5000-" and get.headers.get("If-Range") == want


def test_no_validator_means_no_resume(server, tmp_path):
    server.validators = "none"
    _interrupted(server, tmp_path)
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    (get,) = _gets(server)
    assert "Range" not in get.headers and "If-Range" not in get.headers


@pytest.mark.parametrize("validators", ["both", "last-modified"])
def test_file_changed_between_runs_starts_over(server, tmp_path, validators):
    server.validators = validators
    _interrupted(server, tmp_path)
    server.files[DAY] = NEW  # the server answers the stale If-Range with the whole file
    assert _day(server, tmp_path).read_bytes() == NEW
    (get,) = _gets(server)
    assert get.headers.get("Range") == "bytes=5000-"


@pytest.mark.parametrize("validators", ["both", "last-modified"])
def test_changed_file_behind_a_server_ignoring_if_range(server, tmp_path, validators):
    server.validators = validators
    _interrupted(server, tmp_path)
    server.files[DAY] = NEW
    server.honour_if_range = False  # it answers 206 from the new file: the validator tells
    assert _day(server, tmp_path).read_bytes() == NEW
    assert [r.headers.get("Range") for r in _gets(server)] == ["bytes=5000-", None]


def test_server_answering_200_to_a_range_request_restarts(server, tmp_path):
    _interrupted(server, tmp_path)
    server.ignore_range = True
    assert _day(server, tmp_path, md5=_md5(CAPTURE)).read_bytes() == CAPTURE
    assert [r.headers.get("Range") for r in _gets(server)] == ["bytes=5000-"]
    assert not (tmp_path / "day.pcap.part").exists()


def test_complete_part_is_finished_without_refetching(server, tmp_path):
    _interrupted(server, tmp_path)
    (tmp_path / "day.pcap.part").write_bytes(CAPTURE)  # the rest arrived, the rename did not
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    (get,) = _gets(server)  # answered 416 bytes */16384: nothing to send
    assert get.headers.get("Range") == f"bytes={len(CAPTURE)}-"
    _no_leftovers(tmp_path, "day.pcap.part")


def test_complete_part_of_another_size_than_the_registry_is_an_error(server, tmp_path):
    _interrupted(server, tmp_path)
    (tmp_path / "day.pcap.part").write_bytes(CAPTURE)
    with pytest.raises(DownloadError, match="holds 16384 bytes, not the 16000 expected"):
        _day(server, tmp_path, size=16000)
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("sidecar", ['{"url": 5}', '{"url": "@", "etag": 5}', "[]", "{",
                                     '{"url": "@", "etag": "\\"x\\"", "total": "9"}',
                                     '{"url": "http://elsewhere/day.pcap", "etag": "\\"x\\""}'])
def test_damaged_sidecar_means_a_fresh_start(server, tmp_path, sidecar):
    _interrupted(server, tmp_path)
    url = f"{server.mirror_url}/{DAY}"
    (tmp_path / "day.pcap.part.json").write_text(sidecar.replace("@", url))
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    (get,) = _gets(server)
    assert "Range" not in get.headers


@pytest.mark.parametrize("content_range", ["bytes */99999", "bytes */4000", None])
def test_416_whose_total_is_not_the_part_size_starts_over(server, tmp_path, content_range):
    _interrupted(server, tmp_path)
    server.script[DAY] = [Reply(416, headers={"Content-Range": content_range}
                                if content_range else {})]
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    assert [r.headers.get("Range") for r in _gets(server)] == ["bytes=5000-", None]


def test_stale_longer_part_is_never_renamed_into_place(server, tmp_path):
    # The file shrank on a server that ignores If-Range: 416 says */3000, the .part has 5000.
    _interrupted(server, tmp_path)
    server.files[DAY] = CAPTURE[:3000]
    server.honour_if_range = False
    assert _day(server, tmp_path).read_bytes() == CAPTURE[:3000]
    assert [r.headers.get("Range") for r in _gets(server)] == ["bytes=5000-", None]


def test_part_longer_than_its_recorded_total_is_discarded(server, tmp_path):
    _interrupted(server, tmp_path)
    (tmp_path / "day.pcap.part").write_bytes(CAPTURE + b"stale tail")
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    (get,) = _gets(server)
    assert "Range" not in get.headers


@pytest.mark.parametrize("content_range", [
    f"bytes 0-{len(CAPTURE) - 1}/{len(CAPTURE)}",  # from the start, not from byte 5000
    f"bytes 4000-{len(CAPTURE) - 1}/{len(CAPTURE)}",
    "bytes 5000-5999/16384",  # not the rest of the file
    "garbage",
])
def test_206_that_does_not_continue_the_part_starts_over(server, tmp_path, content_range):
    _interrupted(server, tmp_path)
    server.script[DAY] = [Reply(206, CAPTURE[:1000], {"Content-Range": content_range,
                                                      "ETag": server.etag(DAY)})]
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    assert [r.headers.get("Range") for r in _gets(server)] == ["bytes=5000-", None]


def test_206_with_the_whole_file_to_a_plain_request_is_accepted(server, tmp_path):
    server.script[DAY] = [Reply(206, CAPTURE, {"Content-Range": "bytes 0-16383/16384"})]
    assert _day(server, tmp_path).read_bytes() == CAPTURE
    assert len(_gets(server)) == 1


def test_redirect_loop_is_a_one_line_error(server, tmp_path):
    server.script[DAY] = [Reply(302, headers={"Location": f"/mirror/{DAY}"})] * 20
    with pytest.raises(DownloadError) as err:
        _day(server, tmp_path)
    assert "infinite loop" in str(err.value) and "\n" not in str(err.value)


def test_restarts_are_bounded(server, tmp_path):
    server.script[DAY] = [Reply(206, CAPTURE, {"Content-Range": "bytes 7-9/9"})] * 10
    with pytest.raises(DownloadError, match="fresh starts"):
        _day(server, tmp_path)
    assert len(_gets(server)) == 4
    _no_leftovers(tmp_path)


def test_short_body_is_an_error_and_never_renamed(server, tmp_path):
    server.script[DAY] = [Reply(200, CAPTURE[:-10], length=str(len(CAPTURE)))]
    with pytest.raises(DownloadError, match=f"connection closed after {len(CAPTURE) - 10} of "
                                            f"{len(CAPTURE)} bytes"):
        _day(server, tmp_path, retries=0)
    assert not (tmp_path / "day.pcap").exists()


def test_short_unannounced_body_against_the_registry_size(server, tmp_path):
    server.script[DAY] = [Reply(200, CAPTURE[:-10], length=None)]  # ends when it closes
    with pytest.raises(DownloadError, match="connection closed after"):
        _day(server, tmp_path, retries=0, size=len(CAPTURE))
    assert not (tmp_path / "day.pcap").exists()


@pytest.mark.parametrize("reply, size, needle", [
    # no Content-Length: the body ends at close, 10 bytes past the registry size
    (Reply(200, CAPTURE + b"x" * 10, length=None), len(CAPTURE), "more than the 16384 bytes"),
    # the announced length disagrees with the registry, either way
    (Reply(200, CAPTURE + b"x" * 10), len(CAPTURE), "announces 16394 bytes, the registry says"),
    (Reply(200, CAPTURE[:-10]), len(CAPTURE), "announces 16374 bytes, the registry says"),
])
def test_body_other_than_the_registry_size_is_an_error(server, tmp_path, reply, size, needle):
    server.script[DAY] = [reply]
    with pytest.raises(DownloadError, match=needle):
        _day(server, tmp_path, size=size)
    assert len(_gets(server)) == 1  # final, not retried
    _no_leftovers(tmp_path)


def test_206_longer_than_its_content_range_is_an_error(server, tmp_path):
    _interrupted(server, tmp_path)
    server.script[DAY] = [Reply(206, CAPTURE[5000:] + b"extra", length=None, headers={
        "Content-Range": f"bytes 5000-{len(CAPTURE) - 1}/{len(CAPTURE)}"})]
    with pytest.raises(DownloadError, match="more than the 16384 bytes announced"):
        _day(server, tmp_path)
    _no_leftovers(tmp_path)


def test_registry_size_reaches_fetch(server, tmp_path):
    toy = Dataset(name="toy", title="toy", homepage="https://example.invalid", portal_url="x",
                  portal_prefix="",
                  files=(RemoteFile(DAY, size=len(CAPTURE) - 1),), capture_globs=("*",),
                  label_rule=LabelRule(method="file"))
    with pytest.raises(DownloadError, match="the registry says 16383"):
        download_dataset(toy, tmp_path, source=MirrorSource(base=server.mirror_url),
                         echo=lambda s: None, **FAST)
    assert not (tmp_path / DAY).exists()


@pytest.mark.parametrize("value", ["abc", "-5", "5, 6", "", "1e3", "1\u00b2"])
def test_bad_content_length_is_a_one_line_error(server, tmp_path, value):
    server.script[DAY] = [Reply(200, CAPTURE, length=value)]
    with pytest.raises(DownloadError) as err:
        _day(server, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and f"Content-Length {value!r}" in msg and DAY in msg
    assert len(_gets(server)) == 1
    _no_leftovers(tmp_path)


def _day_registry(tmp_path):
    """A registry override with one dataset 'toy' of the one file PCAPs/day.pcap."""
    override = tmp_path / "registry.yaml"
    override.write_text(
        "datasets:\n  toy:\n    title: toy\n    homepage: https://example.invalid\n"
        "    portal_url: unused\n    portal_prefix: ''\n    files: [PCAPs/day.pcap]\n"
        "    capture_globs: ['PCAPs/*.pcap']\n    label_rule: {method: file}\n")
    return override


def test_bad_content_length_through_the_cli(server, tmp_path, capsys):
    server.script[DAY] = [Reply(200, CAPTURE, length="-5")]
    assert main(["toy", "--out", str(tmp_path / "out"), "--mirror", server.mirror_url,
                 "--registry", str(_day_registry(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "Content-Length '-5', not a byte count" in err.splitlines()[0]
    assert "Traceback" not in err


# --------------------------------------------------------------------------- redirects, TLS
def test_redirect_on_the_same_host_is_followed(server, tmp_path):
    server.script["PCAPs/old.pcap"] = [Reply(302, headers={"Location": f"/mirror/{DAY}"})]
    dest = fetch(f"{server.mirror_url}/PCAPs/old.pcap", tmp_path / "old.pcap", **FAST)
    assert dest.read_bytes() == CAPTURE


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])  # another port, another address
def test_redirect_to_another_host_is_refused_unless_allowed(server, tmp_path, host):
    with PortalServer(files=dict(FILES), host=host) as other:
        allow = other.url.split("//")[1] if host == "127.0.0.1" else host
        server.script[DAY] = [Reply(302, headers={"Location": f"{other.mirror_url}/{DAY}"})] * 2
        with pytest.raises(RefusedError) as err:
            _day(server, tmp_path)
        msg = str(err.value)
        assert "leaves" in msg and f"--allow-host {host}" in msg
        assert other.requests == [] and len(_gets(server)) == 1  # refused, not retried
        _no_leftovers(tmp_path)
        assert _day(server, tmp_path, allow_hosts=[allow]).read_bytes() == CAPTURE
        assert len(other.requests) == 1


def test_allow_host_option_of_the_cli(server, tmp_path):
    with PortalServer(files=dict(FILES), host="127.0.0.2") as other:
        args = ["toy", "--out", str(tmp_path / "out"), "--mirror", server.mirror_url,
                "--registry", str(_day_registry(tmp_path)), "--no-extract"]
        server.script[DAY] = [Reply(302, headers={"Location": f"{other.mirror_url}/{DAY}"})] * 2
        assert main(args) == 2
        assert main(args + ["--allow-host", "127.0.0.9", "--allow-host", "127.0.0.2"]) == 0
        assert (tmp_path / "out" / DAY).read_bytes() == CAPTURE


@pytest.mark.parametrize("current, new, refused", [
    ("https://h.example/a", "http://h.example/a", "downgrades https"),
    ("https://h.example/a", "http://other.example/a", "downgrades https"),
    ("https://h.example/a", "https://h.example/b", None),
    ("http://h.example/a", "https://h.example/a", None),  # an upgrade may change the port
    ("https://h.example/a", "https://h.example:8443/a", "leaves h.example"),
    ("https://h.example/a", "https://cdn.example/a", "--allow-host cdn.example"),
    ("https://h.example/a", "https://H.EXAMPLE:443/a", None),
])
def test_redirect_rules(current, new, refused):
    handler = SafeRedirectHandler()
    req = urllib.request.Request(current, headers={"Range": "bytes=5-"})
    if refused is None:
        follow = handler.redirect_request(req, io.BytesIO(), 302, "Found", {}, new)
        assert follow.full_url == new and follow.get_header("Range") == "bytes=5-"
        assert redirect_problem(current, new, current) is None
    else:
        with pytest.raises(RefusedError, match=refused):
            handler.redirect_request(req, io.BytesIO(), 302, "Found", {}, new)
    # A granted host passes, but never an https -> http downgrade.
    assert (redirect_problem(current, new, current, ["cdn.example", "h.example:8443"]) is None
            ) == (refused is None or "downgrades" not in refused)


def test_redirect_chain_is_judged_against_the_first_host():
    handler = SafeRedirectHandler(allow_hosts=["mirror.example"])
    first = urllib.request.Request("https://h.example/a")
    hop = handler.redirect_request(first, io.BytesIO(), 302, "Found", {},
                                   "https://mirror.example/a")
    with pytest.raises(RefusedError, match="leaves h.example for evil.example"):
        handler.redirect_request(hop, io.BytesIO(), 302, "Found", {}, "https://evil.example/a")
    assert handler.redirect_request(hop, io.BytesIO(), 302, "Found", {},
                                    "https://h.example/b").full_url == "https://h.example/b"


CERT_ERROR = ssl.SSLCertVerificationError(
    1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")


@pytest.mark.parametrize("exc", [urllib.error.URLError(CERT_ERROR), CERT_ERROR])
def test_certificate_errors_are_not_retried(tmp_path, exc):
    calls, waits = [], []
    opener = build_opener()

    def refuse(req, timeout=None):
        calls.append(req.full_url)
        raise exc
    opener.open = refuse
    with pytest.raises(DownloadError) as err:
        fetch("https://127.0.0.1:9/x.pcap", tmp_path / "x.pcap", opener=opener, retries=3,
              backoff=0.01, progress=False, sleep=waits.append)
    msg = str(err.value)
    assert len(calls) == 1 and waits == []
    assert "https://127.0.0.1:9/x.pcap" in msg and "certificate failed verification" in msg
    assert "not retried" in msg and "\n" not in msg


def test_certificate_error_of_a_listing_is_named(tmp_path):
    source = MirrorSource(base="https://127.0.0.1:9/mirror")

    def refuse(req, timeout=None):
        raise urllib.error.URLError(CERT_ERROR)
    source.opener.open = refuse
    with pytest.raises(DownloadError, match="certificate failed verification"):
        list_folder(source, "PCAP/Attack")


# --------------------------------------------------------------------------- limits
def _huge_index(total: int, sent: list[int]):
    """An index page of ``total`` bytes of links, generated as it is sent (counted in sent)."""
    block = "".join(f'<a href="f{n:08d}.pcap">f{n:08d}.pcap</a><br>\n'
                    for n in range(20_000)).encode()  # about 1 MB, repeated

    def chunks():
        yield b"<html><body>"
        while sent[0] < total:
            sent[0] += len(block)
            yield block
    return chunks


@pytest.mark.parametrize("length", [None, "999999999"])
def test_huge_listing_stops_at_the_cap(server, length):
    sent = [0]
    server.script["PCAP/Attack/"] = [Reply(200, ctype="text/html", length=length,
                                           chunks=_huge_index(64 * LISTING_LIMIT, sent))]
    start = time.monotonic()
    with pytest.raises(DownloadError, match="larger than 4 MiB"):
        list_folder(MirrorSource(base=server.mirror_url), "PCAP/Attack")
    assert time.monotonic() - start < 10
    time.sleep(0.2)  # let the server notice the hang-up
    assert sent[0] < 8 * LISTING_LIMIT  # read up to the cap, then hung up


@pytest.mark.parametrize("page", [262_000, 263_000])
def test_listing_cap_boundary(server, monkeypatch, page):
    monkeypatch.setattr(download, "LISTING_LIMIT", 256 << 10)  # 262144 bytes
    line = '<a href="f{:08d}.pcap">f{:08d}.pcap</a><br>\n'
    n = page // len(line.format(0, 0))
    index = "".join(line.format(i, i) for i in range(n)).encode().ljust(page)
    server.script["PCAP/Attack/"] = [Reply(200, index, ctype="text/html", length=None)]
    source = MirrorSource(base=server.mirror_url)
    if page > 256 << 10:
        with pytest.raises(DownloadError, match="larger than 0.25 MiB"):
            list_folder(source, "PCAP/Attack")
        return
    found = list_folder(source, "PCAP/Attack")
    assert found[0] == "PCAP/Attack/f00000000.pcap" and len(found) == n
    assert found[-1] == f"PCAP/Attack/f{n - 1:08d}.pcap"


def test_stalled_body_trips_the_overall_deadline(server, tmp_path):
    # A byte every 50 ms never trips the 5 s read timeout; the 0.5 s deadline stops it.
    server.script[DAY] = [Reply(200, b"x" * 200, drip=0.05)]
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not finished within its deadline of 0\.5 s"):
        _day(server, tmp_path, deadline=0.5, timeout=5.0)
    assert time.monotonic() - start < 2.0
    assert not (tmp_path / "day.pcap").exists()


def test_silent_body_trips_the_deadline_before_the_read_timeout(server, tmp_path):
    # Headers, then 3 s of silence: the socket timeout is cut to what the 0.5 s deadline leaves.
    server.script[DAY] = [Reply(200, b"x" * 10, stall=3.0)]
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"deadline of 0\.5 s"):
        _day(server, tmp_path, deadline=0.5, timeout=5.0)
    assert time.monotonic() - start < 2.0
    assert not (tmp_path / "day.pcap").exists()


def test_no_retry_is_started_past_the_deadline(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(DownloadError, match="no time left for a retry"):
        fetch(f"http://127.0.0.1:{port}/x.pcap", tmp_path / "x.pcap", retries=3, backoff=5.0,
              deadline=2.0, progress=False, sleep=waits.append)
    assert waits == []


def test_default_deadline_scales_with_the_size():
    assert auto_deadline(None) == DEADLINE_UNKNOWN_SIZE
    assert auto_deadline(1000) == DEADLINE_FLOOR
    assert auto_deadline(10 * 10**9) == pytest.approx(10 * 10**9 / (100 * 1024))


def test_cli_rejects_a_bad_deadline(tmp_path, capsys):
    assert main(["cicids2017", "--out", str(tmp_path), "--mirror", "http://127.0.0.1:9",
                 "--deadline", "0"]) == 2
    assert "--deadline" in capsys.readouterr().err


def test_sha256_is_still_verified(server, tmp_path):
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        _day(server, tmp_path, sha256="0" * 64)
    _no_leftovers(tmp_path)
    dest = _day(server, tmp_path, sha256=hashlib.sha256(CAPTURE).hexdigest())
    assert dest.read_bytes() == CAPTURE


def test_md5_mismatch_deletes_the_file(server, tmp_path):
    server.files["PCAPs/day.md5"] = b"0123456789abcdef0123456789abcdef  day.pcap\n"
    with pytest.raises(ChecksumError) as err:
        download_dataset(TOY, tmp_path, source=MirrorSource(base=server.mirror_url),
                         only=["PCAPs/day.pcap"], echo=lambda s: None, **FAST)
    msg = str(err.value)
    assert "PCAPs/day.pcap" in msg and "0123456789abcdef0123456789abcdef" in msg
    assert _md5(CAPTURE) in msg
    assert not (tmp_path / "PCAPs/day.pcap").exists()
    assert not (tmp_path / "PCAPs/day.pcap.part").exists()


def test_parse_md5_file_forms():
    h = "d41d8cd98f00b204e9800998ecf8427e"
    assert parse_md5_file(h.upper() + "\n", "x.pcap") == h
    assert parse_md5_file(f"{'1' * 32}  other.pcap\n{h}  x.pcap\n", "x.pcap") == h
    assert parse_md5_file(f"MD5 (x.pcap) = {h}\n", "x.pcap") == h
    with pytest.raises(ChecksumError, match="x.pcap"):
        parse_md5_file("<html>login</html>", "x.pcap")


# --------------------------------------------------------------------------- sources
def test_mirror_mode_and_rerun_is_a_no_op(server, tmp_path):
    source = MirrorSource(base=server.mirror_url)
    result = download_dataset(TOY, tmp_path, source=source, echo=lambda s: None, **FAST)
    _check_tree(tmp_path)
    assert _captures(result) == EXPECTED_CAPTURES
    marker = tmp_path / "PCAPs/03-11/PCAP-03-11" / archive.MARKER
    assert json.loads(marker.read_text())["members"] == 2
    n = len(server.requests)
    again = download_dataset(TOY, tmp_path, source=source, echo=lambda s: None, **FAST)
    # Only the folder listing is read again; no file is fetched twice.
    assert len(server.requests) == n + 1
    assert _captures(again) == EXPECTED_CAPTURES


def test_local_mode_symlinks_and_verifies(tmp_path):
    local = tmp_path / "by-hand"
    for rel, data in FILES.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    out = tmp_path / "out"
    result = download_dataset(TOY, out, local=local, echo=lambda s: None)
    assert (out / "PCAPs/day.pcap").is_symlink()
    _check_tree(out)
    assert _captures(result) == EXPECTED_CAPTURES
    copied = download_dataset(TOY, tmp_path / "copy", local=local, copy=True,
                              echo=lambda s: None)
    assert not (tmp_path / "copy/PCAPs/day.pcap").is_symlink()
    assert _captures(copied) == EXPECTED_CAPTURES


def test_local_mode_bad_checksum_keeps_the_users_file(tmp_path):
    local = tmp_path / "by-hand"
    for rel, data in FILES.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    (local / "PCAPs/day.pcap").write_bytes(CAPTURE[:-1] + b"\x00")
    with pytest.raises(ChecksumError, match="PCAPs/day.pcap: md5 mismatch"):
        download_dataset(TOY, tmp_path / "out", local=local, echo=lambda s: None)
    assert (local / "PCAPs/day.pcap").exists()


def test_local_mode_missing_files_show_the_layout(tmp_path):
    local = tmp_path / "by-hand"
    (local / "PCAPs").mkdir(parents=True)
    (local / "PCAPs/day.pcap").write_bytes(CAPTURE)
    with pytest.raises(DownloadError) as err:
        download_dataset(TOY, tmp_path / "out", local=local, echo=lambda s: None)
    msg = str(err.value)
    assert "PCAPs/day.md5" in msg and "PCAP/Attack/*" in msg
    assert "DIR/PCAPs/03-11/PCAP-03-11.zip" in msg and "--local DIR" in msg


def test_offline_error_names_the_url_and_the_way_out(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = MirrorSource(base=f"http://127.0.0.1:{port}/mirror")
    with pytest.raises(DownloadError) as err:
        download_dataset(TOY, tmp_path, source=source, only=["PCAPs/03-11/*"],
                         echo=lambda s: None, **FAST)
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/mirror/PCAPs/03-11/PCAP-03-11.zip" in msg
    assert "refused" in msg.lower() and "gave up after 3 attempts" in msg
    assert "--local DIR" in msg


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(RefusedError, match="HTTP 404"):
        fetch(f"{server.mirror_url}/nope.pcap", tmp_path / "nope.pcap", **FAST)
    assert len(server.requests) == 1


# --------------------------------------------------------------------------- CLI
def test_cli_dry_run_prints_the_plan(tmp_path, capsys, monkeypatch):
    for env in ENV_VARS.values():
        monkeypatch.delenv(env, raising=False)
    status = main(["CIC-IDS2017", "--out", str(tmp_path), "--dry-run",
                   "--only", "PCAPs/Wed*.pcap"])
    assert status == 0
    text = capsys.readouterr().out
    assert ("download.php?file=CIC-IDS-2017%2FPCAPs%2FWednesday-workingHours.pcap" in text)
    assert "md5 from PCAPs/Wednesday-workingHours.md5" in text
    assert "Monday" not in text
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_mirror_with_registry_override(server, tmp_path):
    override = tmp_path / "registry.yaml"
    override.write_text(
        "datasets:\n  toy:\n"
        "    title: toy\n    homepage: https://example.invalid\n    portal_url: unused\n"
        "    portal_prefix: ''\n    files: [{path: PCAPs/03-11/PCAP-03-11.zip, extract: true}]\n"
        "    capture_globs: ['PCAPs/03-11/PCAP-03-11/**/SAT-*']\n"
        "    label_rule: {method: file}\n")
    out = tmp_path / "out"
    status = main(["toy", "--out", str(out), "--mirror", server.mirror_url,
                   "--registry", str(override), "--retries", "0"])
    assert status == 0
    assert (out / "PCAPs/03-11/PCAP-03-11/PCAP-03-11/SAT-03-11-2018_01").read_bytes() == \
        SAT["PCAP-03-11/SAT-03-11-2018_01"]


def test_cli_unknown_dataset(tmp_path, capsys):
    assert main(["cicids2071", "--out", str(tmp_path), "--dry-run"]) == 2
    assert "did you mean 'cicids2017'" in capsys.readouterr().err


def test_backoff_doubles_between_retries(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(DownloadError, match="gave up after 4 attempts"):
        fetch(f"http://127.0.0.1:{port}/x.pcap", tmp_path / "x.pcap", retries=3, backoff=0.5,
              timeout=2.0, progress=False, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]


def test_cli_portal_flow_from_environment(server, tmp_path, monkeypatch):
    for key, env in ENV_VARS.items():
        monkeypatch.setenv(env, DETAILS[key])
    override = tmp_path / "registry.yaml"
    override.write_text(
        "datasets:\n  toy:\n"
        "    title: toy\n    homepage: https://example.invalid\n"
        f"    portal_url: {server.portal_url}\n"
        "    portal_prefix: DS/\n"
        "    files: [{path: PCAPs/day.pcap, md5_file: PCAPs/day.md5}, PCAPs/day.md5]\n"
        "    capture_globs: ['PCAPs/*.pcap']\n"
        "    label_rule: {method: file}\n")
    out = tmp_path / "out"
    assert main(["toy", "--out", str(out), "--registry", str(override)]) == 0
    assert (out / "PCAPs/day.pcap").read_bytes() == CAPTURE
    assert server.registrations[0]["email"] == DETAILS["email"]
    state = json.loads((out / ".janus/verified.json").read_text())
    assert state["PCAPs/day.pcap"]["md5"] == _md5(CAPTURE)


def test_missing_checksum_file_only_costs_the_verification(server, tmp_path):
    del server.files["PCAPs/day.md5"]
    result = download_dataset(TOY, tmp_path, source=MirrorSource(base=server.mirror_url),
                              only=["PCAPs/day.pcap"], echo=lambda s: None, **FAST)
    assert (tmp_path / "PCAPs/day.pcap").read_bytes() == CAPTURE
    assert result.unverified == ["PCAPs/day.pcap"]


def test_listing_behind_a_login_page_is_refused(server, tmp_path):
    source = PortalSource(base=server.portal_url, prefix="DS/", details=DETAILS)
    source.prepare = lambda dry_run: None  # no registration, so no session cookie
    with pytest.raises(DownloadError) as err:
        download_dataset(TOY, tmp_path, source=source, only=["PCAP/Attack/*"],
                         echo=lambda s: None, **FAST)
    msg = str(err.value)
    assert f"{server.portal_url}/browse.php?p=DS%2FPCAP%2FAttack" in msg
    assert "login page" in msg and "--local DIR" in msg


def test_captures_list_names_every_capture_one_per_line(tmp_path):
    from janus.datasets.download import write_captures_list

    local = tmp_path / "by-hand"
    for rel, data in FILES.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    result = download_dataset(TOY, tmp_path / "out", local=local, echo=lambda s: None)
    listing = tmp_path / "captures.txt"
    write_captures_list(listing, result.captures)
    lines = listing.read_text().splitlines()
    assert [Path(p).relative_to(tmp_path / "out").as_posix() for p in lines] == EXPECTED_CAPTURES
    with pytest.raises(JanusError, match="newline"):
        write_captures_list(listing, [Path("a\nb.pcap")])
