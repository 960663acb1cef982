"""Safe, atomic, idempotent extraction of zip and tar archives.

Every member is checked before anything is written: a member whose path is absolute or
climbs out of the target ('..'), a link (symlink or hardlink) whose target resolves outside
the target folder, and a device file or FIFO are refused with an :class:`UnsafeArchiveError`
naming the member. The archive is unpacked into a temporary folder beside the target and
renamed into place only when the whole archive was extracted, so an interrupted extraction
never leaves a half folder that looks whole. A marker file records which archive (size and
modification time) produced the folder; extracting the same archive again is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .errors import JanusError

log = logging.getLogger(__name__)

#: Marker written inside an extracted folder (JSON: archive name, size, mtime_ns, members).
MARKER = ".janus-extracted.json"

#: Archive suffixes, longest first, and their kind.
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".tar.gz", "tar"), (".tgz", "tar"), (".tar.xz", "tar"), (".txz", "tar"),
    (".tar.bz2", "tar"), (".tar", "tar"), (".zip", "zip"),
)

_CHUNK = 1 << 20


class UnsafeArchiveError(JanusError):
    """An archive member would land outside the target folder, or is a device file."""


@dataclass(frozen=True)
class _Member:
    """What the checks need to know of one member, whatever the archive format."""

    name: str
    size: int
    kind: str  # "file", "dir", "symlink", "hardlink", "device"
    link: str = ""


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
            *, progress: bool | None = None) -> Path:
    """Extract ``archive`` into ``dest`` (default :func:`extraction_dir`) safely and atomically.

    Returns ``dest``. Skips the work when ``dest`` holds a marker of this very archive (same
    size and mtime); re-extracts when the archive changed. A ``dest`` that exists without a
    marker was not made here: it is left alone, with a warning. ``progress`` shows a byte
    progress bar (None: only on a terminal).
    """
    archive = Path(archive)
    dest = Path(dest) if dest is not None else extraction_dir(archive)
    if not archive.is_file():
        raise JanusError(f"{archive}: archive not found")
    st = archive.stat()
    stamp = {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    marker = dest / MARKER
    if dest.exists():
        if not marker.is_file():
            log.warning("%s exists but was not extracted by janus; using it as it is "
                        "(delete it to extract %s again)", dest, archive)
            return dest
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        if all(done.get(k) == v for k, v in stamp.items()):
            log.info("%s: already extracted into %s", archive.name, dest)
            return dest
        log.info("%s changed since it was extracted; extracting it again", archive)

    kind = dict(SUFFIXES)[archive_suffix(archive) or ".tar"]
    opener = _ZipReader if kind == "zip" else _TarReader
    try:
        reader = opener(archive)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise JanusError(f"{archive}: cannot open the archive ({exc}); the download may be "
                         "incomplete: delete it and download it again") from exc
    with reader:
        members = reader.members()
        check_members(members, archive)
        total = sum(m.size for m in members if m.kind == "file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest.parent).free
        if total > free:
            raise JanusError(f"{archive}: needs {total} bytes to extract, only {free} free "
                             f"in {dest.parent}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting",
                                    dir=dest.parent))
        try:
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"extract {archive.name}",
                      disable=None if progress is None else not progress) as bar:
                reader.extract_all(tmp, bar)
            (tmp / MARKER).write_text(json.dumps({**stamp, "members": len(members)}) + "\n")
            _replace_dir(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("%s: extracted %d members into %s", archive.name, len(members), dest)
    return dest


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished folder ``tmp`` to ``dest``, replacing an older extraction."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def check_members(members: list[_Member], archive: str | os.PathLike) -> None:
    """Raise :class:`UnsafeArchiveError` for the first member that could escape the target."""
    for m in members:
        where = f"{archive}: member {m.name!r}"
        if m.kind == "device":
            raise UnsafeArchiveError(f"{where} is a device file or FIFO; refusing to extract")
        path = _inside(m.name)
        if path is None:
            raise UnsafeArchiveError(f"{where} would be written outside the target folder "
                                     "(absolute path or '..'); refusing to extract")
        # A symlink target is relative to the link's own folder (absolute ones escape); a
        # hardlink target is a member name, relative to the archive root.
        if m.kind == "symlink" and (
                m.link.startswith(("/", "\\"))
                or _inside(str(PurePosixPath(path).parent / m.link)) is None):
            raise UnsafeArchiveError(f"{where} is a symlink to {m.link!r}, outside the "
                                     "target folder; refusing to extract")
        if m.kind == "hardlink" and _inside(m.link) is None:
            raise UnsafeArchiveError(f"{where} is a hardlink to {m.link!r}, outside the "
                                     "target folder; refusing to extract")


def _inside(name: str) -> str | None:
    """``name`` normalised to a relative POSIX path, or None if it leaves its root."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class _ZipReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.zf = zipfile.ZipFile(path)

    def __enter__(self) -> _ZipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zf.close()

    def members(self) -> list[_Member]:
        out = []
        for info in self.zf.infolist():
            mode = info.external_attr >> 16  # Unix mode bits, when the zip was made on Unix
            if stat.S_ISLNK(mode):
                out.append(_Member(info.filename, 0, "symlink",
                                   self.zf.read(info).decode("utf-8", "replace")))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                out.append(_Member(info.filename, 0, "device"))
            else:
                out.append(_Member(info.filename, info.file_size,
                                   "dir" if info.is_dir() else "file"))
        return out

    def extract_all(self, dest: Path, bar: tqdm) -> None:
        for info in self.zf.infolist():
            rel = _inside(info.filename)
            if not rel:
                continue
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Symlinks (already checked to stay inside) are written as small files holding
            # their target, as zipfile does: no link is ever created from a zip.
            with self.zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))


class _TarReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tf = tarfile.open(path, "r:*")

    def __enter__(self) -> _TarReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tf.close()

    def members(self) -> list[_Member]:
        out = []
        for info in self.tf.getmembers():
            if info.issym():
                out.append(_Member(info.name, 0, "symlink", info.linkname))
            elif info.islnk():
                out.append(_Member(info.name, 0, "hardlink", info.linkname))
            elif info.isdev():  # character, block device or FIFO
                out.append(_Member(info.name, 0, "device"))
            elif info.isdir():
                out.append(_Member(info.name, 0, "dir"))
            else:
                out.append(_Member(info.name, info.size, "file"))
        return out

    def extract_all(self, dest: Path, bar: tqdm) -> None:
        # Belt and braces: the 'data' filter (Python >= 3.11.4) re-checks what we checked and
        # also drops set-uid bits and ownership.
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for info in self.tf.getmembers():
            self.tf.extract(info, dest, **kwargs)
            if info.isfile():
                bar.update(info.size)
