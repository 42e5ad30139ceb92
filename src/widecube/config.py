"""Typed settings, read from ``WIDECUBE_*`` environment variables.

Example::

    >>> from widecube.config import Settings
    >>> Settings(storage="/data/widecube").catalog_url
    'sqlite:////data/widecube/catalog.sqlite'

``storage`` is a local folder (by default the user's data folder, see :func:`default_storage`) or an
object-store URL (``s3://bucket/prefix``);
what must stay on a local disk (job work folders, spill, uploads, the decoded cache) is under
``work`` and ``cache``, which default to the storage folder when it is local, so a local
storage's layout is the same as before object stores were supported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ARCHIVE_STORAGE_CLASSES", "OBJECT_SCHEMES", "ArchiveClass", "Settings", "default_storage"]

OBJECT_SCHEMES = ("s3://",)
"""URL schemes of the object stores ``WIDECUBE_STORAGE`` may name."""

ArchiveClass = Literal[
    "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
]
ARCHIVE_STORAGE_CLASSES: tuple[str, ...] = get_args(ArchiveClass)
"""The S3 storage classes ``widecube archive`` writes in (``WIDECUBE_ARCHIVE_STORAGE_CLASS``)."""


def default_storage() -> Path:
    """Where widecube keeps its data when ``WIDECUBE_STORAGE`` does not say: the user's data
    folder (platformdirs; ``$XDG_DATA_HOME/widecube`` or ``~/.local/share/widecube`` on Linux),
    the same from every current folder, so a command run elsewhere finds the same catalog."""
    return platformdirs.user_data_path("widecube")


class Settings(BaseSettings):
    """Where widecube keeps things and how much it may use."""

    model_config = SettingsConfigDict(env_prefix="WIDECUBE_", extra="ignore")

    storage: Path | str = Field(
        default_factory=default_storage,
        description="Root of snapshots (one immutable folder per dataset version): a local folder, "
        "or an object-store URL `s3://bucket/prefix` (endpoint, region, credentials and "
        "server-side encryption from the standard AWS_* environment variables, never from here). "
        "Default: the user's data folder (`$XDG_DATA_HOME/widecube`, `~/.local/share/widecube` on "
        "Linux), whatever the current folder.",
    )
    catalog_url: str = Field(
        default="",
        description="SQLAlchemy URL of the catalog; default: a SQLite file under a local storage "
        "root (required with an object-store storage).",
    )
    cache: Path | None = Field(
        default=None,
        description="Local folder of decoded, memory-mapped view arrays for serving; default: "
        "<storage>/.cache, or $XDG_CACHE_HOME/widecube/<bucket>/<prefix> for an object store.",
    )
    cache_max_bytes: int = Field(
        default=0,
        ge=0,
        description="Bound of the decoded cache in bytes (0: none); least recently used arrays are "
        "evicted, and an array larger than the bound is still served (decoded again when needed).",
    )
    work: Path | None = Field(
        default=None,
        description="Local folder for what stays on local disk whatever the storage: jobs' work "
        "folders and spill (work/), staging snapshots (staging/), uploads (uploads/) and the "
        "session key; default: the storage folder when it is local, else <cache>/.work.",
    )
    memory: int = Field(
        default=2 * 1024**3,
        description="Memory budget of an ingest job, in bytes (blocks and accumulators).",
    )
    block_nnz: int = Field(
        default=8_000_000,
        description="Non-zeros per streamed row block; bounds the reader's buffers.",
    )
    spill_direct: bool | None = Field(
        default=None,
        description="true: write pass 1's spill around the page cache (O_DIRECT) and read it back "
        "so, where the file system allows it; false: through the page cache (a work folder on a "
        "spinning disk, where small direct writes are slow); unset: through the page cache when "
        "the spill (4 bytes a stored value at most) fits in a quarter of the memory available, "
        "else around it (a spill for an object store, `spill`: around it, as its local files "
        "are only read back once for the upload).",
    )
    spill: str | None = Field(
        default=None,
        description="Object-store URL (`s3://bucket/prefix`) where pass 1 leaves its gene buckets "
        "for pass 2, instead of the job's work folder: each range of rows is uploaded as one "
        "object under <prefix>/<job id>/ once spilled, and pass 2 reads it back by byte ranges, "
        "so a cluster's workers need no shared folder and a process's local disk holds only the "
        "ranges it is spilling. Removed with the job (a killed job's, when widecube next starts). "
        "None: the work folder (shared by a cluster's workers at the same path).",
    )
    max_categories: int = Field(
        default=10_000,
        description="Categorical obs columns with more categories are not grouped by default.",
    )
    threads: int = Field(
        default=0,
        ge=0,
        description="Threads of an ingest in this process (pass 1's ranges of rows); 0: every core "
        "the process may run on.",
    )
    cluster: str | None = Field(
        default=None,
        description="Address of a Dask scheduler (tcp://host:8786) whose workers run the ingest's "
        "pass 2; they must see the storage folder at the same path. None: this process.",
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="Run the ingest's pass 2 on a local Dask cluster of this many single-threaded "
        "worker processes (0: none; ignored when `cluster` is set).",
    )
    quantiles: list[float] = Field(
        default=[0.1, 0.25, 0.5, 0.75, 0.9],
        description="Per-group quantiles to precompute (0.5 is served as 'median', 0.1 as 'q10').",
    )
    normalize: bool = Field(
        default=True, description="Also build the normalized layer (counts per target_sum, log1p)."
    )
    target_sum: float = Field(default=1e4, description="Counts per cell after normalization.")
    job_attempts: int = Field(
        default=3,
        ge=1,
        description="Tries of a job step, each counted as it starts: transient (I/O) errors and "
        "workers that died during the step alike; then the job fails.",
    )
    job_backoff: float = Field(
        default=1.0,
        ge=0,
        description="Seconds before the first retry of a step, and before a job worker that died "
        "young is started again; doubled each time.",
    )
    job_lease: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a worker's claim on a job lasts unless renewed; "
        "a job whose worker died is resumed by another after this long.",
    )
    job_poll: float = Field(default=2.0, gt=0, description="Seconds between a worker's looks for jobs.")
    serve_jobs: bool = Field(
        default=True,
        description="`widecube serve` runs waiting jobs (uploads) in a supervised `widecube work` process.",
    )
    watch_quiet: float = Field(
        default=10.0,
        ge=0,
        description="Seconds an inbox entry must stay unchanged before it is "
        "ingested (a folder with a _SUCCESS file is taken at once).",
    )
    watch_poll: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between scans of the inbox (besides file events).",
    )
    upload_max_bytes: int = Field(
        default=100 * 1024**3, gt=0, description="Largest file `POST /api/v1/uploads` accepts, in bytes."
    )
    upload_expiry: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Seconds an unfinished upload may receive no byte before the server's upkeep "
        "removes it (and its bytes).",
    )
    upload_max_open: int = Field(
        default=20,
        ge=1,
        description="Unfinished uploads one client address may have open at once (429 beyond). "
        "Behind a reverse proxy, run uvicorn with --proxy-headers so that each client has its address.",
    )

    # -- lifecycle (see ``widecube.query._gc``) ---------------------------------------
    archive_storage: Path | str | None = Field(
        default=None,
        description="Cold storage of archived versions (`widecube archive`): a local folder or "
        "`s3://bucket/prefix`; None: archiving is refused (unless WIDECUBE_ARCHIVE_STORAGE_CLASS "
        "is set on an s3:// WIDECUBE_STORAGE: then its prefix `cold/`).",
    )
    archive_storage_class: ArchiveClass | None = Field(
        default=None,
        description="The S3 storage class archived versions are written in (`widecube archive "
        "--storage-class` overrides it): STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR "
        "(read at once) or GLACIER, DEEP_ARCHIVE (S3 must thaw them before `widecube restore` can "
        "read them). Needs an object store: an s3:// WIDECUBE_ARCHIVE_STORAGE, or, when that is "
        "unset, the prefix `cold/` of an s3:// WIDECUBE_STORAGE. None: the store's default (STANDARD).",
    )
    gc_grace: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between removing (or archiving) a version in the catalog and deleting "
        "its hot files, so that requests that resolved it just before finish on intact files.",
    )
    gc_interval: float = Field(
        default=600.0,
        ge=0,
        description="Seconds between the garbage collections the server's upkeep runs (0: none; "
        "`widecube gc` runs one by hand).",
    )

    # -- access (see ``widecube.access``) ---------------------------------------------------
    auth: bool = Field(
        default=True,
        description="Require credentials (API tokens, OIDC) and check grants on every request. "
        "Off: single-user mode, every caller is an admin; `serve` then refuses any address but "
        "loopback.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="OpenID Connect issuer URL whose bearer JWTs are accepted (None: no OIDC).",
    )
    oidc_audience: str | None = Field(
        default=None, description="The `aud` every accepted OIDC token must carry (required with an issuer)."
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="The issuer's key set; default: `jwks_uri` from its /.well-known/openid-configuration.",
    )
    oidc_user_claim: str = Field(
        default="preferred_username", description="The claim naming the user (falls back to `sub`)."
    )
    oidc_groups_claim: str = Field(default="groups", description="The claim listing the user's groups.")
    oidc_client_id: str | None = Field(
        default=None,
        description="The web UI's client id at the issuer, for its 'Sign in with your institute' "
        "button (authorization code flow with PKCE); default: the audience. Register "
        "<server>/api/v1/session/oidc/callback as its redirect URI.",
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="The UI client's secret (None: a public client, PKCE only)."
    )
    oidc_scopes: str = Field(
        default="openid profile email",
        description="The scopes the UI's sign-in asks for ('openid' is required).",
    )
    oidc_session_seconds: int = Field(
        default=3600,
        ge=60,
        le=43200,
        description="How long a UI session opened through the identity provider lasts before the UI "
        "signs in again (a user disabled at the IdP keeps a session at most this long; local grants "
        "and groups are checked on every request).",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the web UI's session cookie; default: a random key kept in "
        "<storage>/.session-key (mode 0600), so every process of one storage shares it.",
    )
    cors_origins: list[str] = Field(
        default=[], description="Origins allowed to call the API from a browser (CORS is off when empty)."
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed "
        "(none by default: the peer address is the client).",
    )
    rate_limit: str = Field(
        default="1200/minute",
        description="Requests one identity (token, user, or client address when anonymous) may make, "
        "in the `limits` library's notation (429 with Retry-After beyond).",
    )

    @property
    def compute_threads(self) -> int:
        """:attr:`threads`, or the cores this process may run on when it is 0."""
        if self.threads:
            return self.threads
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity is not None else os.cpu_count() or 1

    @property
    def object_storage(self) -> bool:
        """Whether ``storage`` is an object-store URL rather than a local folder."""
        return isinstance(self.storage, str)

    @field_validator("storage", "archive_storage", mode="before")
    @classmethod
    def _storage(cls, value: Any) -> Any:
        if isinstance(value, str) and "://" not in value:
            return Path(value)
        if isinstance(value, str) and not value.startswith(OBJECT_SCHEMES):
            raise ValueError(
                f"storage {value!r}: a local folder or {' or '.join(OBJECT_SCHEMES)}bucket/prefix"
            )
        return value

    @field_validator("spill", mode="before")
    @classmethod
    def _spill(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        if not str(value).startswith(OBJECT_SCHEMES):
            raise ValueError(
                f"spill {value!r}: an object-store URL ({' or '.join(OBJECT_SCHEMES)}bucket/prefix); "
                "a shared folder for the spill is the work folder (WIDECUBE_WORK)"
            )
        return str(value).rstrip("/")

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if isinstance(self.storage, str):  # an object store: nothing of ours may default into it
            if not self.catalog_url:
                raise ValueError(
                    f"storage {self.storage}: an object store holds no catalog; set "
                    "WIDECUBE_CATALOG_URL (or --catalog) to a SQLAlchemy URL, e.g. a PostgreSQL "
                    "database or sqlite:////var/lib/widecube/catalog.sqlite"
                )
            if self.cache is None:
                base = platformdirs.user_cache_path("widecube")
                self.cache = base / self.storage.partition("://")[2].strip("/")
            self.cache = self.cache.expanduser().resolve()
            if self.work is None:
                self.work = self.cache / ".work"
            self.work = self.work.expanduser().resolve()
            return self
        self.storage = self.storage.expanduser().resolve()
        if not self.catalog_url:
            self.catalog_url = f"sqlite:///{self.storage / 'catalog.sqlite'}"
        if self.cache is None:
            self.cache = self.storage / ".cache"
        if self.work is None:
            self.work = self.storage
        return self

    @property
    def local(self) -> Path:
        """The local folder of work folders, staging, uploads and the session key (``work``)."""
        assert self.work is not None  # set by the validator
        return self.work
