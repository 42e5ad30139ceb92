"""The catalog of datasets, their versions, and which version of each is live.

Every dataset version is an immutable snapshot folder; the catalog (any SQLAlchemy URL:
a SQLite file by default, PostgreSQL too) records the versions and a pointer per dataset
naming the published one. Publishing and rolling back move that pointer in one transaction.
The schema is managed by Alembic and upgraded whenever a :class:`Catalog` is opened.

Example::

    >>> from widecube.catalog import Catalog
    >>> catalog = Catalog("sqlite:////srv/widecube/catalog.sqlite")
    >>> catalog.current("pbmc").path
    'pbmc/3f2a...'
"""

from __future__ import annotations

from widecube.catalog._audit import AuditCheck, AuditEvent, AuditRecord
from widecube.catalog._catalog import Catalog, PointerMoved
from widecube.catalog._descriptions import (
    FACETS,
    FIELDS,
    LIST_FIELDS,
    TEXT_FIELDS,
    MetadataStore,
    SearchHits,
    check_fields,
    words,
)
from widecube.catalog._grants import (
    NAME_PATTERN,
    GrantRecord,
    Lookup,
    NotInMemory,
    Policy,
    TokenNotFound,
    TokenRecord,
)
from widecube.catalog._jobstore import AttemptsUsed, JobNotFound, JobRecord, JobState, LeaseLost
from widecube.catalog._lifecycle import DEFAULT_POLICY, Purge, RetentionPolicy, VersionFacts
from widecube.catalog._records import DatasetRecord, VersionRecord, VersionStatus
from widecube.catalog._releases import ReleaseNotFound, ReleaseRecord

__all__ = [
    "FACETS",
    "FIELDS",
    "LIST_FIELDS",
    "TEXT_FIELDS",
    "MetadataStore",
    "SearchHits",
    "check_fields",
    "words",
    "DEFAULT_POLICY",
    "NAME_PATTERN",
    "Purge",
    "ReleaseNotFound",
    "ReleaseRecord",
    "RetentionPolicy",
    "VersionFacts",
    "AttemptsUsed",
    "AuditCheck",
    "AuditEvent",
    "AuditRecord",
    "GrantRecord",
    "Lookup",
    "NotInMemory",
    "Policy",
    "TokenNotFound",
    "TokenRecord",
    "Catalog",
    "DatasetRecord",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "LeaseLost",
    "PointerMoved",
    "VersionRecord",
    "VersionStatus",
]
