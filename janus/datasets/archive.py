"""Safe, atomic, idempotent extraction of zip and tar archives.

The datasets need regular files and folders only, so that is all an archive may hold: a
symlink, hardlink, device, FIFO or any other kind of member refuses the whole archive, and so
does a name that is absolute, has a '..' component, a backslash, a NUL or control character,
is too long, clashes with another member's (also up to case and Unicode normalisation) or is
the completion marker's. Files are written here, never by ``tarfile``/``zipfile``'s own
extraction: each below a fresh folder that holds no link, one path component at a time
(``O_NOFOLLOW``), created with ``O_EXCL`` and modes 0o644 (files) and 0o755 (folders), both
under the user's umask. Zip members are classified from their attributes alone; nothing is
read of a refused member.

Decompression bombs are capped while streaming, on bytes actually read and written, not on
what headers claim: each member's expansion (uncompressed bytes per compressed byte read,
:data:`MAX_RATIO`, plus :data:`RATIO_GRACE` bytes) and the whole archive's, the number of
members (:data:`MAX_MEMBERS`), and the free space left on the target disk (never below
:data:`MIN_FREE_BYTES`, or 5 % of the disk where that is less), checked before and while
writing. A member may not yield more bytes than it declares, nor fewer.

The archive is unpacked into a temporary folder beside the target and renamed into place only
when every member succeeded, so a failure leaves nothing that looks whole. A marker file
(:data:`MARKER`) records which archive (size and modification time) produced the folder;
extracting the same archive again is skipped. Every fault is a one-line
:class:`~janus.errors.JanusError` naming the archive and the member.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import os
import re
import secrets
import shutil
import stat
import tarfile
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from janus.errors import JanusError

log = logging.getLogger(__name__)

#: Marker written inside an extracted folder (JSON: archive name, size, mtime_ns, members).
MARKER = ".janus-extracted.json"

#: Archive suffixes, longest first, and their kind (a tar's compression is read from its
#: first bytes: gzip, bzip2, xz or none).
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".tar.gz", "tar"), (".tgz", "tar"), (".tar.xz", "tar"), (".txz", "tar"),
    (".tar.bz2", "tar"), (".tar", "tar"), (".zip", "zip"),
)

#: Most members (files and folders) an archive may hold.
MAX_MEMBERS = 100_000
#: Most uncompressed bytes per compressed byte read, per member and for the whole archive.
MAX_RATIO = 1000
#: Bytes a member (and the archive) may expand to beyond MAX_RATIO: tiny files compress
#: extremely well, and decompressors read ahead.
RATIO_GRACE = 1 << 20
#: Free bytes to leave on the target disk (or 5 % of the disk, where that is less).
MIN_FREE_BYTES = 1 << 30
#: Free space is checked again after this many bytes written.
DISK_CHECK_BYTES = 64 << 20
#: Longest path component and relative member path, in bytes (Linux NAME_MAX, PATH_MAX).
NAME_MAX = 255
PATH_MAX = 4096
#: Largest tar header extension (pax records, GNU long name): Python < 3.11.10 parses pax
#: records with regular expressions that take quadratic time on crafted input.
MAX_HEADER_BYTES = 64 << 10
#: Largest run of bytes after a compressed tar's end-of-archive marker (record padding).
MAX_TRAILING_BYTES = 16 << 20

_CHUNK = 64 << 10
_FILE_MODE = 0o644
_DIR_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ONLY = "janus extracts only regular files and folders (unpack it by hand if you trust it)"
_AGAIN = "the download may be incomplete or corrupt: delete it and download it again"


class ArchiveError(JanusError):
    """An archive cannot be extracted (see the subclasses)."""


class UnsafeArchiveError(ArchiveError):
    """A member is not a plain file or folder, has a dangerous name, or expands too much."""


class CorruptArchiveError(ArchiveError):
    """An archive is truncated, fails its checksums, or cannot be parsed."""


def archive_suffix(path: str | os.PathLike) -> str | None:
    """The archive suffix of ``path`` (``.zip``, ``.tar.xz``, ...), or None for other files."""
    name = Path(path).name.lower()
    for suffix, _ in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def is_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a suffix :func:`extract` understands."""
    return archive_suffix(path) is not None


def extraction_dir(path: str | os.PathLike) -> Path:
    """The default target of ``path``: beside it, named without the archive suffix."""
    path = Path(path)
    suffix = archive_suffix(path)
    if suffix is None:
        raise JanusError(f"{path}: not an archive (expected one of "
                         + ", ".join(s for s, _ in SUFFIXES) + ")")
    return path.with_name(path.name[: -len(suffix)])


def extract(archive: str | os.PathLike, dest: str | os.PathLike | None = None,
            *, progress: bool | None = None, max_members: int | None = None,
            max_ratio: float | None = None, min_free: int | None = None) -> Path:
    """Extract ``archive`` into ``dest`` (default :func:`extraction_dir`) safely and atomically.

    Returns ``dest``. Skips the work when ``dest`` holds a marker of this very archive (same
    size and mtime); re-extracts when the archive changed. A ``dest`` that exists without a
    marker was not made here: it is left alone, with a warning. ``progress`` shows a progress
    bar over the archive's bytes (None: only on a terminal). ``max_members``, ``max_ratio``
    and ``min_free`` (bytes) override :data:`MAX_MEMBERS`, :data:`MAX_RATIO` and
    :data:`MIN_FREE_BYTES`. Raises :class:`UnsafeArchiveError` or
    :class:`CorruptArchiveError` (both :class:`~janus.errors.JanusError`); then ``dest`` is
    as it was and nothing else is left behind.
    """
    archive = Path(archive)
    dest = Path(dest) if dest is not None else extraction_dir(archive)
    if not archive.is_file():
        raise JanusError(f"{archive}: archive not found")
    st = archive.stat()
    stamp = {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if dest.exists() or dest.is_symlink():
        marker = dest / MARKER
        if not marker.is_file():
            log.warning("%s exists but was not extracted by janus; using it as it is "
                        "(delete it to extract %s again)", dest, archive)
            return dest
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        if isinstance(done, dict) and all(done.get(k) == v for k, v in stamp.items()):
            log.info("%s: already extracted into %s", archive.name, dest)
            return dest
        log.info("%s changed since it was extracted; extracting it again", archive)

    kind = dict(SUFFIXES)[archive_suffix(archive) or ".tar"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_dir_beside(dest, "extracting")
    try:
        with tqdm(total=st.st_size, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=f"extract {archive.name}",
                  disable=None if progress is None else not progress) as bar:
            sink = _Sink(tmp, archive, st.st_size, bar,
                         max_members=MAX_MEMBERS if max_members is None else max_members,
                         max_ratio=MAX_RATIO if max_ratio is None else max_ratio,
                         min_free=MIN_FREE_BYTES if min_free is None else min_free)
            try:
                with open(archive, "rb") as raw:
                    counted = _Counted(raw)
                    sink.consumed = lambda: counted.n
                    (_unzip if kind == "zip" else _untar)(counted, sink)
                sink.write_marker(json.dumps({**stamp, "members": sink.members}) + "\n")
            finally:
                sink.close()
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s: extracted %d members into %s", archive.name, sink.members, dest)
    return dest


def _make_dir_beside(dest: Path, what: str) -> Path:
    """A new, empty, hidden folder beside ``dest`` (mode 0o755 under the umask)."""
    while True:
        path = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.{what}")
        try:
            os.mkdir(path, _DIR_MODE)
            return path
        except FileExistsError:
            continue


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished folder ``tmp`` to ``dest``, replacing an older extraction."""
    try:
        if not (dest.exists() or dest.is_symlink()):
            os.rename(tmp, dest)
            return
        old = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.old")
        os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            os.rename(old, dest)  # put the previous extraction back
            raise
    except OSError as exc:
        raise ArchiveError(f"{dest}: cannot move the extracted folder into place "
                           f"({exc.strerror}); remove {dest} and run again") from exc
    shutil.rmtree(old, ignore_errors=True)


def _show(name: str) -> str:
    """``name`` quoted for a one-line message, cut when long."""
    text = repr(name)
    return text if len(text) <= 120 else f"{text[:100]}...' ({len(name)} characters)"


class _Counted:
    """A binary file that counts the bytes read from it (the compressed side)."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.n += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class _Sink:
    """Writes the members of one archive below ``root``, enforcing every cap.

    ``root`` was made by :func:`_make_dir_beside` and nothing but this class writes below it,
    so it holds no link; every path is still walked one component at a time with
    ``O_NOFOLLOW`` and every file created with ``O_EXCL``, so a link or clash could not be
    followed or overwritten even if one appeared.
    """

    def __init__(self, root: Path, archive: Path, archive_size: int, bar: tqdm, *,
                 max_members: int, max_ratio: float, min_free: int) -> None:
        self.root, self.archive, self.archive_size, self.bar = root, archive, archive_size, bar
        self.max_members, self.max_ratio, self.min_free = max_members, max_ratio, min_free
        self.consumed: Callable[[], int] = lambda: 0
        self.members = 0
        self.written = 0
        self._unchecked = 0  # bytes written since free space was last checked
        self._seen: dict[str, tuple[str, str]] = {}  # clash key -> (kind, path)
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._dir: tuple[tuple[str, ...], int] | None = None  # last folder opened, and fd
        self._shown = 0

    def close(self) -> None:
        self._forget_dir()
        os.close(self._root_fd)

    def where(self, name: str) -> str:
        return f"{self.archive}: member {_show(name)}"

    # ----------------------------------------------------------------- checks
    def admit(self, name: str, kind: str) -> tuple[str, ...]:
        """Count one member and check its name; its path components (empty: the root)."""
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchiveError(f"{self.archive}: more than {self.max_members} members "
                                     f"(at {_show(name)}); refusing to extract")
        parts = self._parts(name, kind)
        if parts:
            self._claim(parts, kind, name)
        return parts

    def _parts(self, name: str, kind: str) -> tuple[str, ...]:
        where = self.where(name)
        if "\x00" in name:
            raise UnsafeArchiveError(f"{where} has a NUL byte in its name; refusing to extract")
        if re.search(r"[\x01-\x1f\x7f]", name):
            raise UnsafeArchiveError(f"{where} has a control character in its name; "
                                     "refusing to extract")
        if "\\" in name:
            raise UnsafeArchiveError(f"{where} has a backslash in its name (a Windows path?); "
                                     "refusing to extract")
        if name.startswith("/") or re.match(r"[A-Za-z]:", name):
            raise UnsafeArchiveError(f"{where} is an absolute path (or a Windows drive path); "
                                     "refusing to extract")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise UnsafeArchiveError(f"{where} has a '..' component; refusing to extract")
        if not parts and kind != "dir":
            raise UnsafeArchiveError(f"{where} has an empty name; refusing to extract")
        for part in parts:
            if len(os.fsencode(part)) > NAME_MAX:
                raise UnsafeArchiveError(f"{where} has a name component longer than "
                                         f"{NAME_MAX} bytes; refusing to extract")
        room = PATH_MAX - len(os.fsencode(self.root)) - 1
        if len(os.fsencode("/".join(parts))) > room:
            raise UnsafeArchiveError(f"{where} has a path longer than {room} bytes (the limit "
                                     f"below {self.root.parent}); refusing to extract")
        if parts == (MARKER,):
            raise UnsafeArchiveError(f"{where} has the name of janus's completion marker; "
                                     "refusing to extract")
        return parts

    def _claim(self, parts: tuple[str, ...], kind: str, name: str) -> None:
        """Record ``parts``; refuse a second member of the same path (up to case and Unicode
        normalisation) or a file where another member needs a folder, or the reverse."""
        key = ""
        for i, part in enumerate(parts):
            key += "/" + unicodedata.normalize("NFC", part).casefold()
            mine = kind if i == len(parts) - 1 else "dir"
            path = "/".join(parts[: i + 1])
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = (mine, path)
            elif mine != "dir" or seen[0] != "dir":
                how = "" if seen[1] == path else \
                    " (the same path up to case or Unicode normalisation)"
                raise UnsafeArchiveError(f"{self.where(name)} clashes with the {seen[0]} "
                                         f"{_show(seen[1])} of another member{how}; "
                                         "refusing to extract")

    def room(self, need: int, name: str | None = None) -> None:
        """Refuse when writing ``need`` more bytes would leave too little free disk."""
        usage = shutil.disk_usage(self.root)
        keep = min(self.min_free, usage.total // 20)
        if usage.free - need < keep:
            what = self.where(name) if name is not None else str(self.archive)
            raise ArchiveError(f"{what}: needs {need} more bytes, {usage.free} are free in "
                               f"{self.root.parent} and {keep} must stay free; free some "
                               "space (or extract elsewhere) and run again")
        self._unchecked = 0

    def check_total(self, declared: int) -> None:
        """Refuse an archive whose declared content already breaks the caps."""
        limit = self.max_ratio * self.archive_size + RATIO_GRACE
        if declared > limit:
            raise UnsafeArchiveError(
                f"{self.archive}: declares {declared} bytes of content, more than "
                f"{self.max_ratio:g} times its {self.archive_size} bytes; refusing to extract "
                "(a decompression bomb?)")
        self.room(declared)

    # ----------------------------------------------------------------- writing
    def _forget_dir(self) -> None:
        if self._dir is not None:
            os.close(self._dir[1])
            self._dir = None

    def _open_dir(self, parts: tuple[str, ...]) -> int:
        """An fd of the folder ``parts`` below the root, creating each missing component;
        an existing component that is not a folder (a link included) is an error."""
        if self._dir is not None and self._dir[0] == parts:
            return self._dir[1]
        self._forget_dir()
        fd = os.dup(self._root_fd)
        try:
            for part in parts:
                try:
                    os.mkdir(part, _DIR_MODE, dir_fd=fd)
                except FileExistsError:
                    pass
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = sub
        except BaseException:
            os.close(fd)
            raise
        self._dir = (parts, fd)
        return fd

    def mkdir(self, parts: tuple[str, ...], name: str) -> None:
        try:
            self._open_dir(parts)
        except OSError as exc:
            raise ArchiveError(f"{self.where(name)}: cannot create the folder "
                               f"({exc.strerror})") from exc

    def write_file(self, parts: tuple[str, ...], read: Callable[[int], bytes], declared: int,
                   name: str) -> None:
        """Create ``parts`` and fill it from ``read(n)``, which must yield ``declared`` bytes."""
        where = self.where(name)
        self.room(declared, name)
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, _FILE_MODE, dir_fd=self._open_dir(parts[:-1]))
        except FileExistsError as exc:
            raise UnsafeArchiveError(f"{where} clashes with an earlier member; refusing to "
                                     "extract") from exc
        except OSError as exc:
            raise ArchiveError(f"{where}: cannot create the file ({exc.strerror})") from exc
        start = self.consumed()
        got = 0
        with open(fd, "wb", closefd=True) as out:
            while True:
                try:
                    chunk = read(min(_CHUNK, declared - got + 1))
                except JanusError:
                    raise
                except Exception as exc:
                    raise CorruptArchiveError(f"{where}: cannot be read ({_reason(exc)}); "
                                              f"{_AGAIN}") from exc
                if not chunk:
                    break
                got += len(chunk)
                if got > declared:
                    raise CorruptArchiveError(f"{where} yields more than the {declared} bytes "
                                              f"it declares; {_AGAIN}")
                self._count(len(chunk), got - len(chunk), start, declared, name)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise ArchiveError(f"{where}: cannot write ({exc.strerror})") from exc
        if got < declared:
            raise CorruptArchiveError(f"{where} ends after {got} of its {declared} bytes; "
                                      f"{_AGAIN}")

    def _count(self, n: int, before: int, start: int, declared: int, name: str) -> None:
        """Account ``n`` more bytes of member ``name`` (``before`` written so far)."""
        now = self.consumed()
        got = before + n
        if got > self.max_ratio * (now - start) + RATIO_GRACE:
            raise UnsafeArchiveError(
                f"{self.where(name)} expands more than {self.max_ratio:g} times "
                f"({got} bytes from {now - start} compressed); refusing to extract "
                "(a decompression bomb?)")
        self.written += n
        if self.written > self.max_ratio * now + RATIO_GRACE:
            raise UnsafeArchiveError(
                f"{self.archive}: expands more than {self.max_ratio:g} times ({self.written} "
                f"bytes from {now} read, at member {_show(name)}); refusing to extract "
                "(a decompression bomb?)")
        self._unchecked += n
        if self._unchecked >= DISK_CHECK_BYTES:
            self.room(declared - got, name)
        self.bar.update(now - self._shown)
        self._shown = now

    def write_marker(self, text: str) -> None:
        fd = os.open(MARKER, _FILE_FLAGS, _FILE_MODE, dir_fd=self._root_fd)
        with open(fd, "w", closefd=True) as out:
            out.write(text)


def _reason(exc: BaseException) -> str:
    """A one-line reason for ``exc``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


# ---------------------------------------------------------------------------------- zip
def _unzip(raw: _Counted, sink: _Sink) -> None:
    archive = sink.archive
    try:
        zf = zipfile.ZipFile(raw)
    except Exception as exc:
        raise CorruptArchiveError(f"{archive}: cannot open the archive ({_reason(exc)}); "
                                  f"{_AGAIN}") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > sink.max_members:
            raise UnsafeArchiveError(f"{archive}: {len(infos)} members, more than "
                                     f"{sink.max_members}; refusing to extract")
        # Everything that can be known from the central directory is checked before a byte
        # is written; nothing is read of a member that is refused.
        plan = []
        for info in infos:
            kind = _zip_kind(info, sink)
            # orig_filename: zipfile cuts a name at its first NUL, which must be refused.
            plan.append((info, kind, sink.admit(info.orig_filename, kind)))
        sink.check_total(sum(info.file_size for info, kind, _ in plan if kind == "file"))
        for info, kind, parts in plan:
            if kind == "dir":
                sink.mkdir(parts, info.orig_filename)
                continue
            try:
                src = zf.open(info)
            except Exception as exc:
                raise CorruptArchiveError(f"{sink.where(info.orig_filename)}: cannot be read "
                                          f"({_reason(exc)}); {_AGAIN}") from exc
            with src:
                sink.write_file(parts, src.read, info.file_size, info.orig_filename)


def _zip_kind(info: zipfile.ZipInfo, sink: _Sink) -> str:
    """"file" or "dir", from the member's attributes alone; refuses anything else."""
    where = sink.where(info.orig_filename)
    mode = info.external_attr >> 16  # Unix st_mode, when the zip was made on Unix
    ftype = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{where} is a symlink; {_ONLY}")
    if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
        what = "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else \
            f"file of type {ftype:#o}"
        raise UnsafeArchiveError(f"{where} is a {what}; {_ONLY}")
    if info.flag_bits & 0x1:
        raise UnsafeArchiveError(f"{where} is encrypted; decrypt the archive by hand")
    kind = "dir" if info.orig_filename.endswith("/") or ftype == stat.S_IFDIR else "file"
    if kind == "dir" and info.file_size:
        raise UnsafeArchiveError(f"{where} is a folder that holds {info.file_size} bytes; "
                                 "refusing to extract")
    if kind == "file" and info.compress_type not in (
            zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise UnsafeArchiveError(f"{where} uses compression method {info.compress_type}, "
                                 "which Python cannot read; unpack the archive by hand")
    return kind


# ---------------------------------------------------------------------------------- tar
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_GNU_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _TarStream:
    """The uncompressed tar stream as ``tarfile`` reads it: forward only, reads capped.

    A backward seek (a negative size, CVE-2025-8194) or an oversized header read is an
    error, and pax records are checked to be well formed before ``tarfile`` parses them.
    """

    def __init__(self, inner, archive: Path) -> None:
        self.inner, self.archive = inner, archive
        self.pos = 0
        self.data = False  # True while member data is read, not headers
        self.last = b""  # the last header read
        self._pending = b""  # typeflag of an extension header whose payload is the next read

    def read(self, size: int = -1) -> bytes:
        cap = _CHUNK if self.data else MAX_HEADER_BYTES
        if size is None or size < 0 or size > cap:
            raise tarfile.ReadError(f"a header extension of {size} bytes at byte {self.pos} "
                                    f"(at most {cap})")
        data = self.inner.read(size)
        self.pos += len(data)
        if not self.data:
            if self._pending:
                if self._pending in _PAX_TYPES:
                    _check_pax(data, self.pos - len(data))
                self._pending = b""
            elif size == tarfile.BLOCKSIZE:
                self.last = data
                if data[156:157] in _PAX_TYPES + _GNU_LONG_TYPES:
                    self._pending = data[156:157]
        return data

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            pos += self.pos
        if whence == os.SEEK_END or pos < self.pos:
            raise tarfile.ReadError(f"a header points back to byte {pos} from byte {self.pos}")
        while self.pos < pos:
            if not self.read_data(min(_CHUNK, pos - self.pos)):
                break
        return self.pos

    def read_data(self, size: int) -> bytes:
        data = self.inner.read(size)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos


def _check_pax(buf: bytes, offset: int) -> None:
    """Refuse pax records that are not ``"LEN KEY=VALUE\\n"`` back to back (then NULs)."""
    pos = 0
    while pos < len(buf) and buf[pos] != 0:
        space = buf.find(b" ", pos, pos + 21)
        length = int(buf[pos:space]) if space > pos and buf[pos:space].isdigit() else 0
        end = pos + length
        if length <= space - pos + 3 or end > len(buf) or buf[end - 1] != 0x0A \
                or b"=" not in buf[space + 2:end]:
            raise tarfile.ReadError(f"malformed pax record at byte {offset + pos}")
        pos = end
    if buf[pos:].strip(b"\0") or re.search(rb"\d{64}", buf):
        raise tarfile.ReadError(f"malformed pax header at byte {offset}")


def _open_stream(raw: _Counted):
    """The decompressed stream of ``raw``, by its first bytes; None for a plain tar."""
    head = raw.read(6)
    raw.seek(0)
    raw.n = 0
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return None


def _untar(raw: _Counted, sink: _Sink) -> None:
    archive = sink.archive
    decompressed = _open_stream(raw)
    stream = _TarStream(decompressed if decompressed is not None else raw, archive)
    last: str | None = None

    def corrupt(exc: BaseException) -> CorruptArchiveError:
        at = "at its start" if last is None else f"after member {_show(last)}"
        return CorruptArchiveError(f"{archive}: cannot be read {at} ({_reason(exc)}); {_AGAIN}")

    try:
        tf = tarfile.TarFile(fileobj=stream, mode="r")
    except Exception as exc:
        raise corrupt(exc) from exc
    while True:
        try:
            info = tf.next()
        except Exception as exc:
            raise corrupt(exc) from exc
        if info is None:
            break
        tf.members.clear()  # tarfile keeps every TarInfo; nothing here needs them again
        kind = _tar_kind(info, sink)
        parts = sink.admit(info.name, kind)
        last = info.name
        if kind == "dir":
            sink.mkdir(parts, info.name)
            continue
        remaining = info.size

        def read(n: int) -> bytes:
            nonlocal remaining
            data = stream.read_data(min(n, remaining))
            remaining -= len(data)
            return data

        try:
            stream.seek(info.offset_data)
        except Exception as exc:
            raise corrupt(exc) from exc
        stream.data = True
        sink.write_file(parts, read, info.size, info.name)
        stream.data = False
    if stream.last != bytes(tarfile.BLOCKSIZE):
        raise corrupt(EOFError("no end-of-archive marker: the archive is truncated"))
    if decompressed is not None:
        # Read to the end of the compressed stream so that its checksum is verified.
        try:
            extra = 0
            while data := stream.read_data(_CHUNK):
                extra += len(data)
                if extra > MAX_TRAILING_BYTES:
                    raise EOFError(f"more than {MAX_TRAILING_BYTES} bytes after the "
                                   "end-of-archive marker")
        except Exception as exc:
            raise corrupt(exc) from exc


def _tar_kind(info: tarfile.TarInfo, sink: _Sink) -> str:
    """"file" or "dir"; refuses links, devices, FIFOs, sparse and unknown members."""
    where = sink.where(info.name)
    if info.issym():
        raise UnsafeArchiveError(f"{where} is a symlink to {_show(info.linkname)}; {_ONLY}")
    if info.islnk():
        raise UnsafeArchiveError(f"{where} is a hardlink to {_show(info.linkname)}; {_ONLY}")
    if info.ischr() or info.isblk():
        raise UnsafeArchiveError(f"{where} is a device; {_ONLY}")
    if info.isfifo():
        raise UnsafeArchiveError(f"{where} is a FIFO; {_ONLY}")
    if info.size < 0:
        raise CorruptArchiveError(f"{where} declares {info.size} bytes; {_AGAIN}")
    if info.type == tarfile.DIRTYPE:
        if info.size:
            raise UnsafeArchiveError(f"{where} is a folder that holds {info.size} bytes; "
                                     "refusing to extract")
        return "dir"
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) \
            and info.sparse is None:
        return "file"
    what = "a sparse file" if info.issparse() or info.sparse is not None \
        else f"of type {info.type!r}"
    raise UnsafeArchiveError(f"{where} is {what}; {_ONLY}")
