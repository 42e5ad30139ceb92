"""The errors widecube raises, and what each one means.

Every message names the thing at fault (file, row, column, dataset, version), so the CLI
and the API can show it as it is, without a traceback::

    WidecubeError
    ├── InputError (ValueError)           bad input: the job fails, nothing is published
    │   ├── InputNotFound (FileNotFoundError)
    │   ├── UnreadableInput                not HDF5, truncated, no X, unknown layer
    │   ├── InvalidValue                   NaN / inf / null / non-numeric / negative counts at (row, column)
    │   ├── UnsafeArchive                  traversal, links, devices, too many members, bomb
    │   ├── MetadataMismatch               --obs / --var rows do not match the matrix
    │   ├── UnknownGrouping (KeyError)     --groupby names a missing or unusable column
    │   └── UploadTooLarge*                an upload passed WIDECUBE_UPLOAD_MAX_BYTES (413)
    ├── NotFound (KeyError)               the API answers 404
    │   ├── DatasetNotFound
    │   ├── VersionNotFound
    │   ├── VersionGone                    a version garbage collection removed (410)
    │   ├── ReleaseNotFound*
    │   ├── JobNotFound*
    │   └── UploadNotFound*
    ├── InvalidQuery (ValueError)         the API answers 422: unknown gene, groupby, stat
    │   └── ViewMissing*                   a read of a view the version was built without (--views)
    ├── VerificationError                 a snapshot failed its checksums or invariants
    ├── SnapshotCorrupt                   a stored file no longer matches its checksum: the
    │                                      version is out of service (503) until it verifies again
    ├── UnsupportedEncoding               a snapshot's view is stored in an (encoding, version)
    │                                      this widecube has no reader for (503)
    ├── CatalogError                      the catalog refused a state change (409)
    │   ├── LeaseLost*                     a worker's claim on a job ran out; another took it
    │   ├── AttemptsUsed*                  a job's step was tried job_attempts times (workers died)
    │   ├── PointerMoved*                  a job's version was not published: another went live
    │   └── VersionArchived                a version in cold storage: restore it first (409)
    │       └── ArchiveNotThawed           its objects wait for the store to thaw them (409)
    ├── UploadConflict*                   a chunk not at the upload's offset (409)
    │   └── UploadBusy*                    another request is writing that upload
    ├── TooManyUploads*                   a client has WIDECUBE_UPLOAD_MAX_OPEN uploads open (429)
    ├── AuthenticationFailed              credentials were given but are not valid (401): unknown,
    │                                      revoked or expired token, bad JWT signature, issuer, audience
    ├── PermissionDenied                  the caller is known but may not do this (403; a dataset
    │                                      they may not even read answers DatasetNotFound, 404)
    ├── RemoteError*                      client: a server error with no class here (5xx…), or no answer
    └── NotAcceptable*                    no format the client accepts (406)

``*``: defined beside the code that raises it (``catalog._jobstore``, ``catalog._catalog``,
``catalog._releases``,
``pipeline._upload_store``, ``api._responses``, ``views._registry``), so each stays one import
away from its use; listed here so the whole tree is read in one place.
"""

from __future__ import annotations

__all__ = [
    "ArchiveNotThawed",
    "AuthenticationFailed",
    "CatalogError",
    "DatasetNotFound",
    "InputError",
    "InputNotFound",
    "InvalidQuery",
    "InvalidValue",
    "MetadataMismatch",
    "NotFound",
    "PermissionDenied",
    "SnapshotCorrupt",
    "UnknownGrouping",
    "UnreadableInput",
    "UnsafeArchive",
    "UnsupportedEncoding",
    "VerificationError",
    "VersionArchived",
    "VersionGone",
    "VersionNotFound",
    "WidecubeError",
]


class WidecubeError(Exception):
    """Base of every error widecube raises on purpose."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InputError(WidecubeError, ValueError):
    """The input file or the ingest parameters are wrong; retrying will not help."""


class InputNotFound(InputError, FileNotFoundError):
    """The input path does not exist."""


class UnreadableInput(InputError):
    """The input exists but is not a readable matrix (wrong format, truncated, no X)."""


class InvalidValue(InputError):
    """A matrix value is not allowed (NaN, inf); the message names its row and column."""


class UnsafeArchive(InputError):
    """An archive was refused before anything harmful was written (the message names the member)."""


class MetadataMismatch(InputError):
    """A cell or gene metadata file does not match the matrix (missing or duplicate ids)."""


class UnknownGrouping(InputError, KeyError):
    """A requested grouping names an obs column that is missing or not categorical."""


class NotFound(WidecubeError, KeyError):
    """Something looked up by name does not exist."""


class DatasetNotFound(NotFound):
    """No dataset of that name is in the catalog (or none is published)."""


class VersionNotFound(NotFound):
    """No usable version with that id exists for the dataset."""


class VersionGone(NotFound):
    """A version that existed was removed by garbage collection: its row stays in the catalog
    (state ``removed``, when, by which policy) and the API answers 410 naming it."""


class InvalidQuery(WidecubeError, ValueError):
    """A query names a gene, grouping or statistic that the dataset does not have."""


class VerificationError(WidecubeError):
    """A freshly written snapshot does not match its manifest or breaks an invariant."""


class SnapshotCorrupt(WidecubeError):
    """A file of a published snapshot (or its decoded cache) does not match its checksum.

    ``files`` are paths relative to the snapshot folder, never server paths; the service
    answers 503 for that version until a verify passes again.
    """

    def __init__(self, message: str, *, dataset: str, version: str, files: list[str]) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.version = version
        self.files = files


class UnsupportedEncoding(WidecubeError):
    """A view of a snapshot is stored in an encoding (or encoding version) that no reader of
    this widecube reads, or is missing: written by another widecube. The message names the
    dataset, version, view and the stored encoding; the version cannot be served by this
    server (503) until a widecube that reads it serves it, or it is built again."""

    def __init__(
        self,
        message: str,
        *,
        dataset: str,
        version: str,
        view: str,
        encoding: str | None,
        encoding_version: str | None,
    ) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.version = version
        self.view = view
        self.encoding = encoding
        self.encoding_version = encoding_version


class CatalogError(WidecubeError):
    """The catalog refused a state change (e.g. rolling back with no earlier version)."""


class VersionArchived(CatalogError):
    """A version whose snapshot is in cold storage: the message says how to restore it (409)."""


class ArchiveNotThawed(VersionArchived):
    """An archived version whose objects are in a storage class the object store must thaw
    before they can be read (S3 ``GLACIER``, ``DEEP_ARCHIVE``), not thawed yet or still
    thawing: the message names the objects' prefix and how to ask the store (409)."""


class AuthenticationFailed(WidecubeError):
    """Credentials were presented and refused: the message says why (unknown, revoked or
    expired token; a JWT's signature, issuer, audience or expiry) and never repeats a secret."""


class PermissionDenied(WidecubeError):
    """The caller is identified but may not do this; the message names the role it needs."""
