"""Uploads: files that arrive over HTTP, written to disk as they stream, then one job each.

Each upload is a folder ``<storage>/uploads/<id>/`` holding ``upload.json`` (file name, size
declared, sha256 expected, ingest parameters, the job once made) and the bytes received so far
in ``data.part``. The bytes on disk are the truth about progress: a resumed upload continues
at the size of ``data.part``. When the last byte is in, the sha256 is checked, the part file
takes the upload's file name, and a job is made under the key ``upload:<id>``, so finishing
twice (a retried request) makes one job. The job's worker removes the folder when the job ends.

Writers are kept apart by an exclusive ``flock`` on the part file: a second request writing
the same upload at once is refused (:class:`UploadBusy`) instead of interleaving bytes.

Bounds: a file name must be a plain name a file system takes (no NUL or control character, no
folder, at most 255 bytes; :class:`InputError`, HTTP 400, before anything is written); one
client address may have ``upload_max_open`` unfinished uploads (:class:`TooManyUploads`,
HTTP 429); an unfinished upload that received nothing for ``upload_expiry`` seconds is
removed by :func:`sweep_uploads` (run by the server's upkeep loop), as is the folder of an
upload whose job ended but whose worker died before removing it.

    >>> store = Uploads(settings, runner)
    >>> up = store.create("pbmc.h5ad", size=None, sha256=None, params={}, dataset="pbmc")
    >>> with store.writer(up.id, offset=0) as w:
    ...     w.write(b"...")                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import shutil
import time
import unicodedata
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from ..access import ANONYMOUS, SERVER, Actor, Door
from ..catalog import Catalog, JobRecord, JobState, check_fields
from ..config import Settings
from ..errors import InputError, NotFound, WidecubeError
from ..snapshot import sha256_file
from ._runner import JobRunner
from ._watch import dataset_name

__all__ = [
    "TooManyUploads",
    "Upload",
    "UploadBusy",
    "UploadConflict",
    "UploadNotFound",
    "UploadTooLarge",
    "Uploads",
    "plain_file_name",
    "sweep_uploads",
]

log = logging.getLogger("widecube.uploads")
_NAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems
_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadNotFound(NotFound):
    """No upload with that id (never started, or finished and cleaned up)."""


class UploadTooLarge(InputError):
    """The upload is larger than ``upload_max_bytes``."""


class UploadConflict(WidecubeError):
    """A chunk does not start where the upload stands, or the upload is finished already."""


class UploadBusy(UploadConflict):
    """Another request is writing this upload right now."""


class TooManyUploads(WidecubeError):
    """This client has ``upload_max_open`` unfinished uploads already (HTTP 429)."""


def plain_file_name(filename: str) -> str:
    """The last part of ``filename`` (``/`` and ``\\`` separate folders), if it is a name any
    file system takes; else :class:`InputError` naming what is wrong with it.

    >>> plain_file_name("C:\\data\\pbmc.h5ad")
    'pbmc.h5ad'
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    shown = repr(name[:80] + ("…" if len(name) > 80 else ""))
    if not name or name.startswith(".") or name in ("upload.json", "data.part"):
        raise InputError(f"upload file name {shown} is not a plain file name")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise InputError(f"upload file name {shown} holds a NUL, control or invalid character")
    if len(name.encode("utf-8")) > _NAME_BYTES:
        raise InputError(f"upload file name {shown} is longer than {_NAME_BYTES} bytes")
    return name


@dataclass
class Upload:
    """One upload's record (``upload.json``)."""

    id: str
    filename: str
    dataset: str
    size: int | None
    sha256: str | None
    params: dict[str, Any] = field(default_factory=dict)
    job: str | None = None
    client: str | None = None  # the address that started it (for the per-client limit)
    offset: int = 0


class Writer:
    """Appends to an upload's part file, hashing and counting as it goes."""

    def __init__(self, file: IO[bytes], hasher: Any, offset: int, limit: int) -> None:
        self.file, self.hasher, self.offset, self.limit = file, hasher, offset, limit

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self.limit:
            raise UploadTooLarge(f"upload larger than {self.limit:,} bytes")
        self.file.write(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.offset += len(data)


class Uploads:
    """The uploads under ``<storage>/uploads``; finished ones are submitted through ``runner``."""

    def __init__(self, runner: JobRunner, door: Door) -> None:
        self.runner, self.door = runner, door
        self.root = runner.settings.local / "uploads"
        self.limit = runner.settings.upload_max_bytes
        self.max_open = runner.settings.upload_max_open

    def create(
        self,
        filename: str,
        *,
        size: int | None,
        sha256: str | None,
        params: dict[str, Any],
        dataset: str | None = None,
        client: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: Actor = ANONYMOUS,
    ) -> Upload:
        """Start an upload of ``filename`` (``size`` bytes when known) for ``client`` (an
        address; None: not counted against a limit).

        ``metadata`` (title, organism, tags, ... as ``ingest --meta`` takes them) is checked
        here, before anything is kept (:class:`~widecube.errors.InvalidQuery` naming the field),
        needs the right to describe the dataset, and is set by the job when it publishes."""
        name = plain_file_name(filename)
        target = dataset or dataset_name(name)
        if metadata:
            params = {**params, "metadata": check_fields(target, metadata)}
        with self.door.act(actor, "upload", target, file=name) as act:
            if metadata:  # after the upload's own check: a caller creating the dataset owns it
                self.door.authorize(actor, "describe", target)
            upload = self._create(name, target, size=size, sha256=sha256, params=params, client=client)
            act.detail["upload"] = upload.id
            return upload

    def _create(
        self,
        name: str,
        dataset: str,
        *,
        size: int | None,
        sha256: str | None,
        params: dict[str, Any],
        client: str | None,
    ) -> Upload:
        if size is not None and size > self.limit:
            raise UploadTooLarge(f"{name}: {size:,} bytes is more than the limit of {self.limit:,}")
        if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise InputError(f"sha256 {sha256[:80]!r} is not 64 hexadecimal digits")
        upload = Upload(
            uuid.uuid4().hex,
            name,
            dataset,
            size,
            sha256.lower() if sha256 else None,
            params,
            client=client,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / ".uploads.lock", "a") as lock:  # counting and adding: one at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            if client is not None:
                open_now = sum(1 for up in self._records() if up.job is None and up.client == client)
                if open_now >= self.max_open:
                    raise TooManyUploads(
                        f"client {client} has {open_now} unfinished uploads open, the "
                        f"most allowed (finish or abandon one; unfinished uploads expire "
                        f"after {self.runner.settings.upload_expiry:g} s)"
                    )
            (self.root / upload.id).mkdir()
            (self.root / upload.id / "data.part").touch()
            self._save(upload)
        return upload

    def sweep(self, now: float | None = None, *, actor: Actor = ANONYMOUS) -> list[str]:
        """Remove expired uploads now (see :func:`sweep_uploads`)."""
        self.door.authorize(actor, "upkeep", SERVER)
        return sweep_uploads(self.runner.settings, self.runner.catalog, now=now)

    def _records(self) -> Iterator[Upload]:
        for folder in self.root.iterdir():
            if _ID.match(folder.name):
                with contextlib.suppress(UploadNotFound, ValueError, TypeError, OSError):
                    yield self._load(folder.name)

    def get(self, upload_id: str, *, actor: Actor = ANONYMOUS) -> Upload:
        """An upload's record, with ``offset``: the bytes received so far."""
        upload = self._load(upload_id)
        self.door.authorize(actor, "upload", upload.dataset)
        return upload

    def _load(self, upload_id: str) -> Upload:
        path = self._folder(upload_id) / "upload.json"
        try:
            upload = Upload(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise UploadNotFound(f"no upload {upload_id!r} (never started, or its job has ended)") from None
        part = path.with_name("data.part")
        upload.offset = part.stat().st_size if part.exists() else (upload.size or 0)
        return upload

    @contextlib.contextmanager
    def writer(
        self, upload_id: str, *, offset: int, hash: bool = False, actor: Actor = ANONYMOUS
    ) -> Iterator[Writer]:
        """Append from ``offset``, which must be where the upload stands; one writer at a time.

        ``hash``: the writer also computes the sha256 (for uploads sent in one piece).
        """
        upload = self.get(upload_id, actor=actor)
        if upload.job is not None:
            raise UploadConflict(f"upload {upload_id} is complete (job {upload.job})")
        limit = min(upload.size if upload.size is not None else self.limit, self.limit)
        with open(self._folder(upload_id) / "data.part", "r+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadBusy(f"upload {upload_id} is being written by another request") from None
            stands = f.seek(0, 2)
            if offset != stands:
                raise UploadConflict(f"upload {upload_id} stands at byte {stands}, not {offset}")
            writer = Writer(f, hashlib.sha256() if hash else None, stands, limit)
            try:
                yield writer
            finally:
                f.flush()

    def finish(self, upload_id: str, *, sha256: str | None = None, actor: Actor = ANONYMOUS) -> JobRecord:
        """Check the whole file, give it its name, and submit its job (once; see the module doc).

        ``sha256`` is the digest computed while streaming, if it was; otherwise the file is read.
        """
        upload = self.get(upload_id, actor=actor)
        if upload.job is not None:
            return self.runner.catalog.jobs.get(upload.job)
        folder = self._folder(upload_id)
        part = folder / "data.part"
        if upload.size is not None and upload.offset != upload.size:
            raise UploadConflict(f"upload {upload_id} has {upload.offset:,} of {upload.size:,} bytes")
        digest = sha256 or sha256_file(part)
        if upload.sha256 is not None and digest != upload.sha256:
            shutil.rmtree(folder, ignore_errors=True)
            raise InputError(
                f"{upload.filename}: sha256 of the bytes received is {digest}, "
                f"not {upload.sha256} as declared; the upload is discarded"
            )
        part.replace(folder / upload.filename)
        upload.size = upload.offset
        params = {**upload.params, "sha256": digest, "submitted_by": actor.user}
        with self.door.act(actor, "submit", upload.dataset, upload=upload_id) as act:
            job = self.runner.submit(
                folder / upload.filename,
                dataset=upload.dataset,
                source="upload",
                params=params,
                input_key=f"upload:{upload_id}",
            )
            act.detail["job"] = job.id
        upload.job = job.id
        self._save(upload)
        return job

    def job(self, job_id: str, *, actor: Actor = ANONYMOUS) -> JobRecord:
        """The job a finished upload became."""
        job = self.runner.catalog.jobs.get(job_id)
        self.door.authorize(actor, "upload", job.dataset)
        return job

    def remove(self, upload_id: str, *, actor: Actor = ANONYMOUS) -> None:
        """Discard an upload and its bytes (nothing to do if it is gone already)."""
        try:
            self.get(upload_id, actor=actor)
        except UploadNotFound:
            return
        shutil.rmtree(self._folder(upload_id), ignore_errors=True)

    def _folder(self, upload_id: str) -> Path:
        if len(upload_id) != 32 or any(c not in "0123456789abcdef" for c in upload_id):
            raise UploadNotFound(f"no upload {upload_id!r}")
        return self.root / upload_id

    def _save(self, upload: Upload) -> None:
        record = asdict(upload)
        record.pop("offset")
        tmp = self._folder(upload.id) / ".upload.json.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(tmp.with_name("upload.json"))


def sweep_uploads(settings: Settings, catalog: Catalog, *, now: float | None = None) -> list[str]:
    """Remove the uploads that expired: unfinished ones that received no byte for
    ``upload_expiry`` seconds (and are not being written), and finished ones whose job has
    ended as long ago (their worker died before removing them). Returns their ids.
    """
    root = settings.local / "uploads"
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in root.iterdir():
        if not _ID.match(folder.name):
            continue
        try:
            idle = now - max(p.stat().st_mtime for p in (folder, *folder.iterdir()))
        except (OSError, ValueError):  # gone meanwhile, or empty (then the folder's own time)
            continue
        if idle < settings.upload_expiry or not _ended(folder, catalog):
            continue
        if not _remove_idle(folder):
            continue
        removed.append(folder.name)
    if removed:
        log.info("removed %d expired uploads: %s", len(removed), ", ".join(removed))
    return removed


def _remove_idle(folder: Path) -> bool:
    """Remove ``folder`` unless a writer holds its part file (then it is not idle after all)."""
    try:
        with open(folder / "data.part", "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(folder, ignore_errors=True)
    except BlockingIOError:
        return False
    except FileNotFoundError:  # finished (the part file has its name now), or half made
        shutil.rmtree(folder, ignore_errors=True)
    return True


def _ended(folder: Path, catalog: Catalog) -> bool:
    """Whether an upload may go: no job made yet, or its job has ended (or is unknown)."""
    try:
        job = json.loads((folder / "upload.json").read_text()).get("job")
    except (OSError, ValueError):
        return True  # a folder without a readable record is debris
    if job is None:
        return True
    try:
        return JobState(catalog.jobs.get(job).state).final
    except NotFound:
        return True
