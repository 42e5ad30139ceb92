"""Dataset metadata and search: what people know about a dataset, set by its owners, found
by anyone who may read it.

The catalog keeps the fields and the full-text index (:class:`widecube.catalog.MetadataStore`);
this is the door in front of it. Reading a dataset's metadata needs ``read``; changing it
``describe`` (owners). A search sees only the live datasets the caller may read: the others
are neither found nor counted in the facets.

    >>> wc.describe("pbmc", {"organism": "Homo sapiens", "tags": ["demo"]}, actor=owner)  # doctest: +SKIP
    >>> wc.search("pbmc", {"organism": ["Homo sapiens"]}).total                           # doctest: +SKIP
    1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..access import ANONYMOUS, SERVER, Actor
from ..catalog import check_fields
from ..errors import InputNotFound, InvalidQuery
from ._resolve import Resolver
from .results import DatasetHit, DatasetMetadata, DatasetSearch

__all__ = ["Described", "read_metadata"]


class Described(Resolver):
    """Read, change and search datasets' metadata."""

    def metadata(self, dataset: str, *, actor: Actor = ANONYMOUS) -> DatasetMetadata:
        """The metadata of ``dataset`` (only the fields that are set)."""
        self.door.authorize(actor, "read", dataset)
        return DatasetMetadata(dataset=dataset, metadata=self.catalog.metadata.get(dataset))

    def describe(
        self, dataset: str, changes: Mapping[str, Any], *, actor: Actor = ANONYMOUS
    ) -> DatasetMetadata:
        """Change the metadata of ``dataset`` (owners): ``changes`` is a merge patch, a field
        set to None is removed and ``extra`` merges key by key. Refused whole, naming the
        field, when a value is bad (:class:`~widecube.errors.InvalidQuery`)."""
        with self.door.act(actor, "describe", dataset, fields=sorted(changes)):
            fields = self.catalog.metadata.update(dataset, changes, by=actor.user)
        return DatasetMetadata(dataset=dataset, metadata=fields)

    def search(
        self,
        query: str = "",
        filters: Mapping[str, Sequence[str]] | None = None,
        *,
        actor: Actor = ANONYMOUS,
    ) -> DatasetSearch:
        """Live datasets the caller may read that match ``query`` (each word a prefix of a
        word of the name or of any field) and ``filters`` (``{facet: [values]}``: organism,
        tissue, assay, disease, tag; any value of a facet, every facet), by name, with the
        facet counts."""
        self.door.authorize(actor, "read", SERVER)
        live = {d.name: d.current for d in self.catalog.datasets() if d.current is not None}
        shown = self.door.visible(actor, live)
        spec = {str(f): sorted({str(v) for v in values}) for f, values in (filters or {}).items() if values}
        hits = self.catalog.metadata.search(query, spec, among=shown)
        described = self.catalog.metadata.all()
        found = []
        for name in hits.datasets:
            record = live[name]
            found.append(
                DatasetHit(
                    name=name,
                    version=record.version,
                    n_cells=record.n_cells,
                    n_genes=record.n_genes,
                    groupbys=list(record.info.get("groupbys", [])),
                    created=record.created,
                    metadata=described.get(name, {}),
                )
            )
        return DatasetSearch(query=query, filters=spec, total=len(found), datasets=found, facets=hits.facets)


def read_metadata(path: Path, dataset: str) -> dict[str, Any]:
    """The metadata in a YAML (or JSON) file, as ``widecube ingest --meta`` takes it: a
    mapping of fields (``title``, ``organism``, ..., ``tags``, ``extra``), checked; errors name
    the file (and the line of a YAML error).

    >>> read_metadata(Path("meta.yaml"), "pbmc")                              # doctest: +SKIP
    {'title': 'PBMC 3k', 'organism': ['Homo sapiens'], 'tags': ['demo']}
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputNotFound(f"{path}: no such metadata file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidQuery(f"{path}: cannot read the metadata file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InvalidQuery(f"{path.name}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidQuery(
            f"{path.name}: a metadata file holds a mapping of fields, not a {type(data).__name__}"
        )
    try:
        return check_fields(dataset, data)
    except InvalidQuery as exc:
        raise InvalidQuery(f"{path.name}: {exc}") from exc
