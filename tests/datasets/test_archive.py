"""Tests of janus/datasets/archive.py: every archive is built here, with crafted TarInfo / ZipInfo."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import stat
import tarfile
import time
import tracemalloc
import unicodedata
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from janus.datasets import archive
from janus.datasets.archive import CorruptArchiveError, UnsafeArchiveError
from janus.errors import JanusError

SENTINEL = b"sentinel: must never change\n"
OK = ("ok.txt", b"fine")  # a harmless first member, so that refusals come mid-archive


# --------------------------------------------------------------------------- builders
def _ti(name: str, data: bytes = b"", **attrs) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def _tar(path: Path, members, fmt: int = tarfile.PAX_FORMAT) -> Path:
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".xz": "w:xz", ".bz2": "w:bz2"}.get(path.suffix, "w")
    with tarfile.open(path, mode, format=fmt) as tf:
        for member in members:
            info, data = member if isinstance(member, tuple) and not isinstance(member[0], str) \
                else _ti(*member)
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _zi(name: str, mode: int | None = None, **attrs) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6))
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.external_attr = mode << 16
        info.create_system = 3
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _zip(path: Path, members) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members:
            zf.writestr(member if isinstance(member, zipfile.ZipInfo) else _zi(member), data)
    return path


def _snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root``: file bytes, 'dir', or a link's target."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            out[rel] = ("link", os.readlink(p)) if p.is_symlink() else \
                "dir" if p.is_dir() else p.read_bytes()
    return out


@pytest.fixture
def box(tmp_path):
    """``tmp_path/work`` for archives, a sentinel file beside it, and a check that a failed
    extraction changed nothing anywhere under ``tmp_path`` (no target, no temp folder)."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "sentinel.txt").write_bytes(SENTINEL)
    return work


def _refused(path: Path, cls: type[JanusError], *needles: str, **kwargs) -> str:
    """Extract ``path``, expect ``cls`` with a one-line message naming it and ``needles``,
    and check nothing was created or modified outside (or inside) its folder."""
    root = path.parent.parent
    before = _snapshot(root)
    with pytest.raises(cls) as err:
        archive.extract(path, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 600, msg
    assert msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, msg
    assert _snapshot(root) == before  # nothing written, nothing left behind
    assert (root / "sentinel.txt").read_bytes() == SENTINEL
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return msg


# --------------------------------------------------------------------------- links and types
SENT = "../../sentinel.txt"


@pytest.mark.parametrize("members, needles", [
    # The no-filter escape (Python < 3.11.4 without tarfile.data_filter): a -> ., a/b -> ..
    pytest.param([OK, _ti("a", type=tarfile.SYMTYPE, linkname="."),
                  _ti("a/b", type=tarfile.SYMTYPE, linkname=".."),
                  _ti("a/b/sentinel.txt", b"overwritten")], ["'a' is a symlink to '.'"],
                 id="symlink-chain"),
    pytest.param([OK, _ti("out", type=tarfile.SYMTYPE, linkname=SENT),
                  _ti("out", b"overwritten")], ["'out' is a symlink to '../../sentinel.txt'"],
                 id="symlink-outside"),
    pytest.param([OK, _ti("abs", type=tarfile.SYMTYPE, linkname="/etc/passwd")],
                 ["symlink to '/etc/passwd'"], id="symlink-absolute"),
    pytest.param([OK, _ti("inner", type=tarfile.SYMTYPE, linkname="ok.txt")],
                 ["'inner' is a symlink"], id="symlink-inside-too"),
    pytest.param([OK, _ti("hl", type=tarfile.LNKTYPE, linkname=SENT), _ti("hl", b"overwritten")],
                 ["'hl' is a hardlink to '../../sentinel.txt'"], id="hardlink-outside"),
    pytest.param([OK, _ti("hl", type=tarfile.LNKTYPE, linkname="ok.txt")],
                 ["'hl' is a hardlink to 'ok.txt'"], id="hardlink-inside-too"),
    pytest.param([OK, _ti("h", type=tarfile.LNKTYPE, linkname="s"),
                  _ti("s", type=tarfile.SYMTYPE, linkname=SENT)], ["'h' is a hardlink"],
                 id="hardlink-to-symlink"),
    pytest.param([OK, _ti("s", type=tarfile.SYMTYPE, linkname=SENT),
                  _ti("h", type=tarfile.LNKTYPE, linkname="s")], ["'s' is a symlink"],
                 id="symlink-then-hardlink"),
    pytest.param([OK, _ti("deep", type=tarfile.SYMTYPE, linkname="d/" * 2100 + "x")],
                 ["'deep' is a symlink to 'd/d/", "4201 characters"], id="link-over-PATH_MAX"),
    pytest.param([OK, _ti("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)],
                 ["'null' is a device"], id="char-device"),
    pytest.param([OK, _ti("sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0)],
                 ["'sda' is a device"], id="block-device"),
    pytest.param([OK, _ti("pipe", type=tarfile.FIFOTYPE)], ["'pipe' is a FIFO"], id="fifo"),
    pytest.param([OK, _ti("vol", type=b"V")], ["'vol' is of type b'V'"], id="unknown-type"),
    pytest.param([OK, _ti("d", type=tarfile.DIRTYPE, size=0), _ti("x", type=tarfile.DIRTYPE,
                                                                  size=512)],
                 ["'x' is a folder that holds 512 bytes"], id="dir-with-data"),
])
def test_tar_links_devices_and_odd_types_are_refused(box, members, needles):
    msg = _refused(_tar(box / "evil.tar", members), UnsafeArchiveError, *needles)
    assert "only regular files and folders" in msg or "folder that holds" in msg


def test_long_link_in_gnu_format_is_refused(box):
    path = _tar(box / "gnu.tar.gz", [OK, _ti("l", type=tarfile.SYMTYPE, linkname="x" * 5000)],
                fmt=tarfile.GNU_FORMAT)
    _refused(path, UnsafeArchiveError, "'l' is a symlink to 'xxx", "5000 characters")


@pytest.mark.parametrize("mode, needle", [
    (stat.S_IFLNK | 0o777, "is a symlink"),
    (stat.S_IFCHR | 0o644, "is a device"),
    (stat.S_IFBLK | 0o644, "is a device"),
    (stat.S_IFIFO | 0o644, "is a FIFO"),
    (stat.S_IFSOCK | 0o644, "is a socket"),
])
def test_zip_links_and_devices_are_refused_from_their_attributes(box, mode, needle):
    path = _zip(box / "evil.zip", [(_zi("ok.txt"), b"fine"), (_zi("m", mode), SENT)])
    _refused(path, UnsafeArchiveError, f"'m' {needle}", "only regular files and folders")


def test_zip_symlink_with_a_huge_target_is_refused_unread(box, monkeypatch):
    # 64 MiB of 'target' deflates to ~64 KiB; reading it (as the old code did) costs the RAM
    # of the whole target. It must be refused from its attributes without opening it.
    path = _zip(box / "huge.zip", [(_zi("link", stat.S_IFLNK | 0o777), b"a" * (64 << 20))])
    assert path.stat().st_size < 200_000
    opened: list[str] = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(str(name))
                        or real_open(self, name, *a, **k))
    tracemalloc.start()
    try:
        _refused(path, UnsafeArchiveError, "'link' is a symlink")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert opened == []
    assert peak < 4 << 20, f"peak {peak} bytes"


# --------------------------------------------------------------------------- names
LONG_PART = "p" * 256
LONG_PATH = "/".join(["d" * 200] * 25)  # 5024 bytes


@pytest.mark.parametrize("name, needle", [
    ("/tmp/janus-abs-test", "is an absolute path"),
    ("C:/windows/x", "is an absolute path"),
    ("../escaped.txt", "has a '..' component"),
    ("a/../../up", "has a '..' component"),
    ("a/b/..", "has a '..' component"),
    ("a\\..\\..\\x", "has a backslash"),
    ("ok\\x", "has a backslash"),
    ("nul\x00.txt", "has a NUL byte"),
    ("new\nline", "has a control character"),
    (LONG_PART, "name component longer than 255 bytes"),
    (LONG_PATH, "has a path longer than"),
    (archive.MARKER, "completion marker"),
    ("./" + archive.MARKER, "completion marker"),
])
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_bad_names_are_refused(box, kind, name, needle):
    if kind == "tar":
        info, data = _ti("placeholder", b"bad")
        info.pax_headers = {"path": name}  # the pax path carries any byte, NUL included
        path = _tar(box / "bad.tar.gz", [OK, (info, data)])
        with tarfile.open(path) as tf:
            assert tf.getnames()[1] == name
    else:
        path = box / "bad.zip"
        _zip(path, [(_zi("ok.txt"), b"fine"), (_zi("X" * len(name.encode())), b"bad")])
        # zipfile cuts a name at a NUL when writing it: patch the bytes (both headers).
        raw = path.read_bytes().replace(b"X" * len(name.encode()), name.encode())
        path.write_bytes(raw)
    _refused(path, UnsafeArchiveError, needle)


@pytest.mark.parametrize("names, needle", [
    (["a", "a"], "'a' clashes with the file 'a'"),
    (["d/x", "./d/x"], "'./d/x' clashes with the file 'd/x'"),
    (["a", "a/"], "clashes with the file 'a'"),  # tar drops a folder's trailing '/'

    (["a/", "a"], "'a' clashes with the dir 'a'"),
    (["a", "a/b"], "'a/b' clashes with the file 'a'"),
    (["a/b", "a"], "'a' clashes with the dir 'a'"),
    (["Data.pcap", "data.PCAP"], "up to case"),
    ([unicodedata.normalize("NFC", "caf\u00e9"), unicodedata.normalize("NFD", "caf\u00e9")],
     "Unicode normalisation"),
])
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_name_clashes_are_refused(box, kind, names, needle):
    if kind == "tar":
        members = [_ti(n.rstrip("/"), type=tarfile.DIRTYPE) if n.endswith("/") else _ti(n, b"x")
                   for n in names]
        path = _tar(box / "clash.tar", members)
    else:
        path = box / "clash.zip"
        with pytest.warns(UserWarning) if names[0] == names[1] else _nothing():
            _zip(path, [(n, b"" if n.endswith("/") else b"x") for n in names])
    _refused(path, UnsafeArchiveError, needle)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- bombs and disk
def test_zip_bomb_is_refused_by_its_declared_sizes(box):
    path = _zip(box / "bomb.zip", [(_zi("zeros"), bytes(16 << 20))])
    _refused(path, UnsafeArchiveError, "declares 16777216 bytes", "decompression bomb",
             max_ratio=100)


def test_zip_member_ratio_is_measured_while_streaming(box):
    # The declared total passes (half the archive is incompressible), the zero member not.
    noise = random.Random(0).randbytes(2 << 20)
    path = _zip(box / "mixed.zip", [(_zi("noise"), noise), (_zi("zeros"), bytes(4 << 20))])
    _refused(path, UnsafeArchiveError, "'zeros' expands more than 50 times", max_ratio=50)
    # Under the default cap the same archive is fine.
    dest = archive.extract(path)
    assert (dest / "noise").read_bytes() == noise and (dest / "zeros").read_bytes() == bytes(4 << 20)


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.xz", ".tar.bz2"])
def test_tar_bomb_member_ratio(box, suffix):
    path = _tar(box / f"bomb{suffix}", [OK, ("zeros", bytes(8 << 20))])
    _refused(path, UnsafeArchiveError, "'zeros' expands more than 100 times", max_ratio=100)


def test_tar_bomb_of_small_members_trips_the_archive_ratio(box):
    # Each member stays within RATIO_GRACE on its own; together they expand 20 MiB.
    path = _tar(box / "many.tar.gz", [(f"z{i:02d}", bytes(512 << 10)) for i in range(40)])
    _refused(path, UnsafeArchiveError, "expands more than 50 times (", "decompression bomb",
             max_ratio=50)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_member_count_cap(box, kind):
    names = [(f"f{i}", b"x") for i in range(12)]
    path = _tar(box / "n.tar", names) if kind == "tar" else _zip(box / "n.zip", names)
    _refused(path, UnsafeArchiveError, "more than 10 members" if kind == "tar" else
             "12 members, more than 10", max_members=10)
    assert archive.extract(path, max_members=12).is_dir()


Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_no_room_on_disk_is_refused_before_writing(box, monkeypatch, kind):
    members = [("a", bytes(3000)), ("b", bytes(3000))]
    path = _tar(box / "d.tar", members) if kind == "tar" else _zip(box / "d.zip", members)
    # 100 MB disk, 5 % (5 MB) must stay free. A zip's total (6000 bytes) is checked up front;
    # a tar's members one by one (3000 bytes), before each is written.
    free = 5_004_000 if kind == "zip" else 5_002_000
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100_000_000, 0, free))
    msg = _refused(path, archive.ArchiveError, f"{free} are free", "5000000 must stay free",
                   "free some space")
    assert msg.endswith("d.zip: needs 6000 more bytes" + msg.split("needs 6000 more bytes")[-1]) \
        if kind == "zip" else "member 'a': needs 3000 more bytes" in msg
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100_000_000, 0, 5_006_000))
    assert (archive.extract(path) / "b").read_bytes() == bytes(3000)


def test_disk_filling_up_while_writing_is_caught(box, monkeypatch):
    path = _tar(box / "big.tar", [("big", random.Random(1).randbytes(1 << 20))])
    calls = []

    def usage(p):  # another process fills the disk once extraction has started
        calls.append(p)
        return Usage(100 << 30, 0, (10 << 30) if len(calls) == 1 else (1 << 30) - 1)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    monkeypatch.setattr(archive, "DISK_CHECK_BYTES", 256 << 10)
    _refused(path, archive.ArchiveError, "member 'big': needs", "1073741824 must stay free")
    assert len(calls) == 2  # before the member, then after the first 256 KiB


def test_member_yielding_more_than_declared_is_an_error(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    from tqdm import tqdm
    sink = archive._Sink(root, tmp_path / "a.tar", 10**6, tqdm(disable=True), max_members=10,
                         max_ratio=1000, min_free=0)
    src = io.BytesIO(b"y" * 100)
    try:
        with pytest.raises(CorruptArchiveError, match="yields more than the 10 bytes"):
            sink.write_file(("f",), src.read, 10, "f")
        with pytest.raises(CorruptArchiveError, match="ends after 3 of its 10 bytes"):
            sink.write_file(("g",), io.BytesIO(b"abc").read, 10, "g")
    finally:
        sink.close()


# --------------------------------------------------------------------------- corrupt input
def _gz_tar(box: Path) -> Path:
    return _tar(box / "t.tar.gz", [OK, ("data.bin", random.Random(2).randbytes(200_000))])


@pytest.mark.parametrize("cut", ["half", "trailer"])
def test_truncated_tar_gz(box, cut):
    path = _gz_tar(box)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if cut == "half" else raw[:-4])
    _refused(path, CorruptArchiveError, "download it again")


def test_tar_gz_with_a_corrupt_crc(box):
    path = _gz_tar(box)
    raw = bytearray(path.read_bytes())
    raw[-8] ^= 0xFF  # the gzip CRC-32 of the uncompressed data
    path.write_bytes(bytes(raw))
    _refused(path, CorruptArchiveError, "CRC", "download it again")


def test_tar_cut_at_a_member_boundary(box):
    path = _tar(box / "cut.tar", [OK, ("b", b"x" * 512)])
    raw = path.read_bytes()
    path.write_bytes(raw[: 4 * 512])  # ok.txt header + data, b header + data: no end marker
    _refused(path, CorruptArchiveError, "no end-of-archive marker", "after member 'b'")


def test_truncated_tar_xz(box):
    path = _tar(box / "t.tar.xz", [OK, ("data.bin", random.Random(3).randbytes(100_000))])
    path.write_bytes(path.read_bytes()[:-30])
    _refused(path, CorruptArchiveError, "download it again")


def test_not_a_tar_at_all(box):
    path = box / "junk.tar.gz"
    path.write_bytes(gzip.compress(b"this is not a tar archive\n" * 40))
    _refused(path, CorruptArchiveError, "cannot be read at its start")


def _craft_header(name: bytes, size_field: bytes, typeflag: bytes = b"0") -> bytes:
    block = bytearray(tarfile.BLOCKSIZE)
    block[0:len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = size_field
    block[136:148] = b"00000000000\0"
    block[156:157] = typeflag
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


@pytest.mark.timeout(30)
def test_negative_size_does_not_loop(box):
    # Base-256 size -1024: tarfile (< 3.11.14) would seek back and loop for ever.
    size = b"\xff" + (2 ** 88 - 1024).to_bytes(11, "big")
    path = box / "neg.tar"
    path.write_bytes(_craft_header(b"ok.txt", b"%011o\0" % 4) + b"fine".ljust(512, b"\0")
                     + _craft_header(b"neg", size) + bytes(2048))
    _refused(path, CorruptArchiveError, "member 'neg' declares -1024 bytes", "download it again")


@pytest.mark.timeout(30)
def test_pax_header_redos_is_refused_quickly(box):
    # 60 KiB of digits in a pax value: Python < 3.11.10 takes minutes over it (quadratic).
    info, data = _ti("x", b"1")
    info.pax_headers = {"comment": "1" * 60_000}
    path = _tar(box / "redos.tar", [OK, (info, data)])
    start = time.perf_counter()
    _refused(path, CorruptArchiveError, "malformed pax header")
    assert time.perf_counter() - start < 5


def test_oversized_header_extension_is_refused(box):
    path = _tar(box / "long.tar", [OK, ("n" * 100_000, b"x")], fmt=tarfile.GNU_FORMAT)
    _refused(path, CorruptArchiveError, "header extension of 100352 bytes")


def test_corrupt_crc_zip(box):
    path = box / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("data.bin", b"PAYLOAD-" * 100)
    raw = path.read_bytes()
    i = raw.index(b"PAYLOAD-")
    path.write_bytes(raw[:i] + b"X" + raw[i + 1:])
    _refused(path, CorruptArchiveError, "member 'data.bin'", "CRC", "download it again")


def test_encrypted_zip_member_is_refused(box):
    path = _zip(box / "enc.zip", [(_zi("ok.txt"), b"fine"), (_zi("secret"), b"x" * 100)])
    # zipfile cannot write encrypted members: set the flag in both headers of "secret".
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("secret")
    raw[info.header_offset + 6] |= 0x1
    central = raw.rindex(b"PK\x01\x02")  # the last central entry is "secret"'s
    raw[central + 8] |= 0x1
    path.write_bytes(bytes(raw))
    assert zipfile.ZipFile(path).getinfo("secret").flag_bits & 0x1
    _refused(path, UnsafeArchiveError, "'secret' is encrypted")


def test_truncated_zip_says_download_again(box):
    path = box / "cut.zip"
    _zip(path, [(_zi("a"), b"x" * 1000)])
    path.write_bytes(path.read_bytes()[:50])
    _refused(path, CorruptArchiveError, "cannot open the archive", "download it again")


def test_zip_with_a_truncated_member(box):
    path = box / "cutm.zip"
    _zip(path, [(_zi("a"), random.Random(4).randbytes(50_000))])
    raw = path.read_bytes()
    cd = raw.rindex(b"PK\x01\x02")
    path.write_bytes(raw[:cd - 20_000] + raw[cd:])  # the central directory still names it
    _refused(path, CorruptArchiveError, "download it again")


# --------------------------------------------------------------------------- good archives
TREE = {"./": None, "./PCAPs/": None, "./PCAPs/a.pcap": b"\xd4\xc3\xb2\xa1" + bytes(range(256)),
        "./PCAPs/sub/b.pcap": b"b" * 70_000, "./empty": b"", "./" + "n" * 120: b"long name"}


def _good(path: Path) -> Path:
    if path.suffix == ".zip":
        members = [(_zi(n[2:] or "root/", 0o40755 if d is None else 0o104777), d or b"")
                   for n, d in TREE.items() if n != "./"]
        return _zip(path, members)
    members = [_ti(n.rstrip("/") or ".", type=tarfile.DIRTYPE, mode=0o777) if d is None
               else _ti(n, d, mode=0o4777) for n, d in TREE.items()]
    return _tar(path, members)


def _expected_files() -> dict[str, bytes]:
    return {n[2:]: d for n, d in TREE.items() if d is not None}


@pytest.mark.parametrize("name", ["g.tar", "g.tar.gz", "g.tgz", "g.tar.xz", "g.tar.bz2", "g.zip"])
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0])  # 0: the modes as written
def test_good_archive_extracts_with_normal_modes(box, name, umask):
    path = _good(box / name)
    old = os.umask(umask)
    try:
        dest = archive.extract(path, progress=False)
    finally:
        os.umask(old)
    assert dest == box / name.split(".")[0]
    files = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
             if p.is_file() and p.name != archive.MARKER}
    assert files == _expected_files()
    for p in [dest, *dest.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert not p.is_symlink()
        assert mode == ((0o755 if p.is_dir() else 0o644) & ~umask), (p, oct(mode))
    stamp = json.loads((dest / archive.MARKER).read_text())
    st = path.stat()
    assert stamp == {"archive": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "members": len(TREE) - (name.endswith(".zip"))}
    assert sorted(p.name for p in box.iterdir()) == sorted([name, dest.name])


def test_extracts_once_and_again_when_the_archive_changes(box):
    path = _zip(box / "x.zip", [("one", b"1")])
    dest = archive.extract(path)
    (dest / "one").write_bytes(b"edited")  # a second call must not touch it
    assert archive.extract(path) == dest and (dest / "one").read_bytes() == b"edited"
    _zip(path, [("two", b"22")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert archive.extract(path) == dest
    assert sorted(p.name for p in dest.iterdir()) == [archive.MARKER, "two"]
    assert sorted(p.name for p in box.iterdir()) == ["x", "x.zip"]  # the old copy is gone


def test_failed_re_extraction_keeps_the_old_folder(box):
    path = _zip(box / "x.zip", [("one", b"1")])
    dest = archive.extract(path)
    before = _snapshot(dest)
    _zip(path, [("one", b"1"), ("../up", b"2")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(UnsafeArchiveError, match="'../up' has a '..' component"):
        archive.extract(path)
    assert _snapshot(dest) == before
    assert sorted(p.name for p in box.iterdir()) == ["x", "x.zip"]


def test_failed_swap_puts_the_old_folder_back(box, monkeypatch):
    path = _zip(box / "x.zip", [("one", b"1")])
    dest = archive.extract(path)
    before = _snapshot(dest)
    _zip(path, [("two", b"2")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".extracting"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(archive.ArchiveError, match="cannot move the extracted folder into place"):
        archive.extract(path)
    assert _snapshot(dest) == before
    assert sorted(p.name for p in box.iterdir()) == ["x", "x.zip"]


def test_folder_not_made_here_is_left_alone(box, caplog):
    path = _zip(box / "x.zip", [("one", b"1")])
    (box / "x").mkdir()
    (box / "x" / "mine").write_bytes(b"user data")
    assert archive.extract(path) == box / "x"
    assert sorted(p.name for p in (box / "x").iterdir()) == ["mine"]
    assert "was not extracted by janus" in caplog.text


def test_failure_midway_leaves_no_partial_tree(box):
    # The first members are written before the bad one is met: all of it must go.
    members = [("a/1", b"1" * 5000), ("a/2", b"2" * 5000),
               _ti("a/3", type=tarfile.SYMTYPE, linkname=SENT)]
    _refused(_tar(box / "mid.tar.gz", members), UnsafeArchiveError, "'a/3' is a symlink")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_extract(box, fmt):
    # A GNU long name whose byte 156 (a header's type flag) is 'x' is a name, not a pax header.
    names = ["a" * 156 + "x" + "b" * 50, "d" * 99 + "/" + "g" * 200, "h" * 255]
    path = _tar(box / "long.tar.gz", [(n, n.encode()) for n in names], fmt=fmt)
    dest = archive.extract(path)
    assert all((dest / n).read_bytes() == n.encode() for n in names)


def test_duplicate_directories_and_dot_root_are_fine(box):
    path = _tar(box / "d.tar", [_ti(".", type=tarfile.DIRTYPE), _ti("d", type=tarfile.DIRTYPE),
                                _ti("./d/", type=tarfile.DIRTYPE), ("d/f", b"f")])
    dest = archive.extract(path)
    assert (dest / "d" / "f").read_bytes() == b"f"


def test_errors_and_suffixes(box):
    assert archive.archive_suffix("A.TAR.GZ") == ".tar.gz" and archive.is_archive("x.tgz")
    assert not archive.is_archive("x.pcap") and archive.extraction_dir("a/b.zip") == Path("a/b")
    with pytest.raises(JanusError, match="not an archive"):
        archive.extraction_dir("x.pcap")
    with pytest.raises(JanusError, match="archive not found"):
        archive.extract(box / "missing.zip")
    assert issubclass(UnsafeArchiveError, archive.ArchiveError)
    assert issubclass(CorruptArchiveError, archive.ArchiveError)
