"""Tests of janus/download.py and janus/archive.py against an emulated portal on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import zipfile
from pathlib import Path

import pytest
from portal_server import REQUIRED_FIELDS, PortalServer

from janus import archive
from janus.datasets import Dataset, LabelRule, RemoteFile
from janus.download import (
    ENV_VARS,
    ChecksumError,
    DownloadError,
    MirrorSource,
    PortalSource,
    RefusedError,
    download_dataset,
    fetch,
    main,
    parse_md5_file,
)
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
    assert not list(out.rglob("*.part"))


# --------------------------------------------------------------------------- portal
def test_portal_registration_cookie_and_download(server, tmp_path):
    source = PortalSource(base=server.portal_url, prefix="DS/", details=DETAILS,
                          cookie_file=tmp_path / "cookies.txt")
    result = download_dataset(TOY, tmp_path / "out", source=source, echo=lambda s: None,
                              **FAST)
    assert len(server.registrations) == 1
    form = server.registrations[0]
    assert set(form) == set(REQUIRED_FIELDS)
    assert form["first_name"] == "Ada" and form["last_name"] == "Lovelace"
    assert form["job_title"] == "Researcher"
    downloads = [r for r in server.requests if "download.php" in r.path]
    assert downloads and all("Token=" in r.headers.get("Cookie", "") for r in downloads)
    assert "Token" in (tmp_path / "cookies.txt").read_text()  # kept for the next run
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
def test_range_resume_after_a_cut_connection(server, tmp_path):
    server.cut["PCAPs/day.pcap"] = 5000
    dest = fetch(f"{server.mirror_url}/PCAPs/day.pcap", tmp_path / "day.pcap",
                 md5=_md5(CAPTURE), **FAST)
    assert dest.read_bytes() == CAPTURE
    gets = [r for r in server.requests if r.path.endswith("day.pcap")]
    assert [r.headers.get("Range") for r in gets] == [None, "bytes=5000-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    server.ignore_range = True
    part = tmp_path / "day.pcap.part"
    part.write_bytes(b"garbage from an older run")
    dest = fetch(f"{server.mirror_url}/PCAPs/day.pcap", tmp_path / "day.pcap",
                 md5=_md5(CAPTURE), **FAST)
    assert dest.read_bytes() == CAPTURE and not part.exists()


def test_complete_part_is_finished_without_refetching(server, tmp_path):
    (tmp_path / "day.pcap.part").write_bytes(CAPTURE)  # the server answers 416
    dest = fetch(f"{server.mirror_url}/PCAPs/day.pcap", tmp_path / "day.pcap",
                 md5=_md5(CAPTURE), **FAST)
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


# --------------------------------------------------------------------------- archives
def _tar(tmp_path: Path, name: str, add) -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:xz" if name.endswith(".xz") else "w") as tf:
        add(tf)
    return path


def _tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data))


def test_zip_slip_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    path.write_bytes(_zip({"ok.txt": b"fine", "../escaped.txt": b"gotcha"}))
    with pytest.raises(archive.UnsafeArchiveError, match=r"'\.\./escaped\.txt'"):
        archive.extract(path)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "evil").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.zip"]  # no temp folder left


@pytest.mark.parametrize("name, member, needle", [
    ("abs.tar", {"name": "/tmp/janus-abs-test"}, "'/tmp/janus-abs-test'"),
    ("up.tar.xz", {"name": "a/../../up"}, "'a/../../up'"),
    ("sym.tar", {"name": "link", "type": tarfile.SYMTYPE, "linkname": "../../etc"}, "symlink"),
    ("absym.tar", {"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "symlink"),
    ("hard.tar", {"name": "hl", "type": tarfile.LNKTYPE, "linkname": "../outside"}, "hardlink"),
    ("dev.tar", {"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "device"),
    ("fifo.tar", {"name": "pipe", "type": tarfile.FIFOTYPE}, "device"),
])
def test_malicious_tar_is_refused(tmp_path, name, member, needle):
    member = dict(member)
    mname = member.pop("name")
    path = _tar(tmp_path, name, lambda tf: (_tar_member(tf, "ok.txt", b"fine"),
                                             _tar_member(tf, mname, **member)))
    with pytest.raises(archive.UnsafeArchiveError) as err:
        archive.extract(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    assert not archive.extraction_dir(path).exists()
    assert not Path("/tmp/janus-abs-test").exists()


def test_tar_with_inner_links_extracts_atomically_once(tmp_path):
    def add(tf):
        _tar_member(tf, "NonTor/a.pcap", b"pcap-a")
        _tar_member(tf, "NonTor/latest.pcap", type=tarfile.SYMTYPE, linkname="a.pcap")
    path = _tar(tmp_path, "NonTor.tar.xz", add)
    dest = archive.extract(path)
    assert dest == tmp_path / "NonTor"
    assert (dest / "NonTor/latest.pcap").read_bytes() == b"pcap-a"
    (dest / "NonTor/a.pcap").write_bytes(b"edited")  # a second call must not touch it
    assert archive.extract(path) == dest
    assert (dest / "NonTor/a.pcap").read_bytes() == b"edited"


def test_changed_archive_is_extracted_again(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(_zip({"one": b"1"}))
    dest = archive.extract(path)
    path.write_bytes(_zip({"two": b"22"}))
    assert archive.extract(dest.with_suffix(".zip")) == dest
    assert sorted(p.name for p in dest.iterdir()) == [archive.MARKER, "two"]


def test_truncated_archive_says_download_again(tmp_path):
    path = tmp_path / "cut.zip"
    path.write_bytes(_zip({"a": b"x" * 1000})[:50])
    with pytest.raises(archive.JanusError, match="download it again"):
        archive.extract(path)


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
    from janus.download import write_captures_list

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
