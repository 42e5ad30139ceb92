"""Safe unpacking of .zip, .tar, .tar.gz/.tgz (and .bz2/.xz) and single-file .gz inputs.

Archives come from outside, so nothing in one is trusted. Every member is checked before a
byte of it is written, into a fresh folder in the job's work folder:

* refused: absolute paths, ``..`` components, symlinks and hard links, device files,
  FIFOs and anything else that is not a plain file or a folder, a second member with the
  same path, a file member where others need a folder (``a`` and ``a/b.csv``), names
  longer than the file system allows (a component past ``NAME_MAX``, a path past
  ``PATH_MAX``), and more than ``max_members`` members;
* the expanded size may not exceed the budget (``ratio`` × the archive's size, or
  ``max_bytes``, and never more than the free disk): the sizes members declare are
  checked first, and the bytes actually written are counted too, because a zip bomb's
  headers may lie;
* files are written with fresh permissions (member modes and owners are ignored), and
  macOS ``__MACOSX/`` and ``._*`` junk is skipped.

:func:`archive_kind` recognises archives by their magic bytes. A gzip file whose content
is text (``counts.csv.gz``, ``matrix.mtx.gz``) is not an archive: the text readers
stream it as it is; only gzip around a tar or a binary format is unpacked.

    >>> root = unpack(Path("upload.zip"), Path("work/input"), ArchiveLimits())  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol, cast

from ..errors import InputError, UnreadableInput, UnsafeArchive
from ._sniff import GZIP_MAGIC, HDF5_MAGIC, PARQUET_MAGIC, head, raw_head

__all__ = ["ArchiveLimits", "archive_kind", "unpack"]

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may hold; see the module docstring."""

    max_members: int = 10_000
    ratio: float = 20.0
    max_bytes: int | None = None
    """An explicit cap on the expanded size in bytes (instead of ``ratio`` × archive size)."""

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes < 1:
            raise InputError(
                f"the unpacked size limit must be a positive number of bytes, not {self.max_bytes}"
            )
        if self.max_members < 1 or not self.ratio > 0:
            raise InputError(
                f"archive limits must be positive (members {self.max_members}, ratio {self.ratio})"
            )

    def budget(self, archive: Path, dest: Path) -> int:
        cap = self.max_bytes if self.max_bytes is not None else int(self.ratio * archive.stat().st_size)
        return max(0, min(cap, shutil.disk_usage(dest).free))


def archive_kind(path: Path) -> str | None:
    """``"zip"``, ``"tar"``, ``"gzip"`` (one gzipped binary file) or None (not an archive)."""
    if not path.is_file():
        return None
    magic = raw_head(path, 4)
    if magic[:4] == b"PK\x03\x04" or (magic[:4] == b"PK\x05\x06" and zipfile.is_zipfile(path)):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, zlib.error):
        return None
    if magic[:2] == GZIP_MAGIC:
        inner = head(path, 8)
        if inner[:8] == HDF5_MAGIC or inner[:4] == PARQUET_MAGIC:
            return "gzip"
    return None


class _Budget:
    """Bytes still allowed; raises as soon as an archive would expand past its limit."""

    def __init__(self, archive: Path, limit: int) -> None:
        self.archive, self.limit, self.left = archive, limit, limit

    def spend(self, n: int, member: str) -> None:
        self.left -= n
        if self.left < 0:
            raise UnsafeArchive(
                f"{self.archive}: member {member!r} expands the archive past the limit of "
                f"{self.limit:,} bytes (20 × its size by default, at most the free disk); refused"
            )


def _declared_too_much(archive: Path, declared: int, limit: int) -> UnsafeArchive:
    return UnsafeArchive(
        f"{archive}: members declare {declared:,}+ bytes, more than the limit of "
        f"{limit:,} (20 × the archive's size by default); refused"
    )


def _member_path(archive: Path, name: str) -> PurePosixPath | None:
    """The safe relative path of member ``name``; None for junk; refuses unsafe names."""
    clean = name.replace("\\", "/")
    if "\x00" in clean:
        raise UnsafeArchive(f"{archive}: member {name!r} has a NUL byte in its name; refused")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path; refused")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: member {name!r} has a '..' path component; refused")
    if not parts or parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store":
        return None
    return PurePosixPath(*parts)


def _limit(dest: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(dest, name))
    except (OSError, ValueError):
        return default


class _Members:
    """The files an archive has claimed so far: a member may not be written where another
    one is, nor where another one needs a folder (or the other way round), nor under a name
    the file system cannot hold. Checked before a byte of the member is written."""

    def __init__(self, archive: Path, dest: Path) -> None:
        self.archive, self.dest = archive, dest
        self.files: set[PurePosixPath] = set()
        self.dirs: set[PurePosixPath] = set()
        self.name_max = _limit(dest, "PC_NAME_MAX", 255)
        self.path_max = _limit(dest, "PC_PATH_MAX", 4096)

    def claim(self, rel: PurePosixPath, name: str) -> Path:
        """The target of member ``name`` (relative path ``rel``) inside ``dest``; refuses clashes."""
        shown = name if len(name) <= 120 else f"{name[:100]}…({len(name):,} characters)"
        long = next((p for p in rel.parts if len(os.fsencode(p)) > self.name_max), None)
        if long is not None:
            raise UnsafeArchive(
                f"{self.archive}: member {shown!r} has a name part of "
                f"{len(os.fsencode(long)):,} bytes, longer than the file system allows "
                f"({self.name_max}); refused"
            )
        target = self.dest.joinpath(*rel.parts)
        if len(os.fsencode(str(target.resolve()))) >= self.path_max:
            raise UnsafeArchive(
                f"{self.archive}: member {shown!r} makes a path longer than the file "
                f"system allows ({self.path_max} bytes); refused"
            )
        if not target.resolve().is_relative_to(self.dest.resolve()):
            raise UnsafeArchive(
                f"{self.archive}: member {shown!r} would be written outside the folder; refused"
            )
        parents = [p for p in rel.parents if p != PurePosixPath(".")]
        clash = next((p for p in parents if p in self.files), None)
        if clash is not None:
            raise UnsafeArchive(
                f"{self.archive}: member {shown!r} needs a folder {str(clash)!r} where "
                "another member is a file; refused"
            )
        if rel in self.dirs:
            raise UnsafeArchive(
                f"{self.archive}: member {shown!r} is a file where other members need a "
                "folder of that name; refused"
            )
        if rel in self.files:
            raise UnsafeArchive(f"{self.archive}: member {shown!r} appears twice; refused")
        self.files.add(rel)
        self.dirs.update(parents)
        return target


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


_PERMANENT = {
    errno.EEXIST: "clashes with another member",
    errno.EISDIR: "clashes with a folder",
    errno.ENOTDIR: "clashes with a file",
    errno.ENAMETOOLONG: "has a name too long for the file system",
    errno.EINVAL: "has a name the file system refuses",
    errno.EILSEQ: "has a name the file system refuses",
}


def _copy(src: IO[bytes] | _Readable, target: Path, budget: _Budget, name: str, declared: int) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("xb")
    except OSError as exc:  # what the checks above missed; a full disk stays an OSError (retried)
        if exc.errno not in _PERMANENT:
            raise
        raise UnsafeArchive(
            f"{budget.archive}: member {name[:200]!r} {_PERMANENT[exc.errno]}; refused"
        ) from None
    written = 0
    # one buffer for the whole member: a fresh 1 MiB bytes per read() is a fresh mmap under
    # the ingest's malloc policy (compute._malloc), a page fault per 4 KiB (a 1.5 GB tar
    # member: 735,000 faults, 3.5-6.5 s of system time)
    buffer = memoryview(bytearray(_CHUNK))
    reader = cast(_Readable, src)  # zip, tar and gzip members are io.BufferedIOBase: readinto
    with out:
        while n := reader.readinto(buffer):
            written += n
            budget.spend(n, name)
            if written > declared:
                raise UnsafeArchive(
                    f"{budget.archive}: member {name!r} holds more than the "
                    f"{declared:,} bytes it declares; refused"
                )
            out.write(buffer[:n])


def _unzip(path: Path, dest: Path, limits: ArchiveLimits, budget: _Budget) -> None:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchive(
                f"{path}: {len(infos):,} members, more than the {limits.max_members:,} allowed"
            )
        plan = []
        declared = 0
        members = _Members(path, dest)
        for info in infos:
            rel = _member_path(path, info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise UnsafeArchive(f"{path}: member {info.filename!r} is a symbolic link; refused")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchive(f"{path}: member {info.filename!r} is a device or special file; refused")
            if rel is None or info.is_dir():
                continue
            declared += info.file_size
            if declared > budget.limit:
                raise _declared_too_much(path, declared, budget.limit)
            plan.append((info, members.claim(rel, info.filename)))
        for info, target in plan:
            with zf.open(info) as src:
                _copy(src, target, budget, info.filename, info.file_size)


def _untar(path: Path, dest: Path, limits: ArchiveLimits, budget: _Budget) -> None:
    declared = 0
    members = _Members(path, dest)
    with tarfile.open(path, "r:*") as tf:
        for count, member in enumerate(tf, start=1):
            if count > limits.max_members:
                raise UnsafeArchive(f"{path}: more than the {limits.max_members:,} members allowed")
            rel = _member_path(path, member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchive(
                    f"{path}: member {member.name!r} is a "
                    f"{'symbolic' if member.issym() else 'hard'} link; refused"
                )
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"{path}: member {member.name!r} is a device or special file; refused")
            if rel is None or member.isdir():
                continue
            declared += member.size
            if declared > budget.limit:
                raise _declared_too_much(path, declared, budget.limit)
            target = members.claim(rel, member.name)
            src = tf.extractfile(member)
            if src is not None:
                with src:
                    _copy(src, target, budget, member.name, member.size)


def _gunzip(path: Path, dest: Path, budget: _Budget) -> None:
    name = path.name[:-3] if path.name.lower().endswith(".gz") and len(path.name) > 3 else f"{path.name}.out"
    with gzip.open(path, "rb") as src:
        _copy(src, dest / name, budget, name, budget.limit)


def unpack(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> Path:
    """Unpack archive ``path`` into the new folder ``dest``; returns ``dest``."""
    limits = limits or ArchiveLimits()
    kind = archive_kind(path)
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(path, limits.budget(path, dest))
    try:
        if kind == "zip":
            _unzip(path, dest, limits, budget)
        elif kind == "tar":
            _untar(path, dest, limits, budget)
        elif kind == "gzip":
            _gunzip(path, dest, budget)
        else:
            raise UnreadableInput(f"{path}: not an archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnreadableInput(f"{path}: archive truncated or corrupt ({exc})") from exc
    except RuntimeError as exc:  # zipfile: encrypted member, unsupported compression
        raise UnreadableInput(f"{path}: cannot unpack ({exc})") from exc
    except NotImplementedError as exc:
        raise UnreadableInput(f"{path}: cannot unpack ({exc})") from exc
    return dest
