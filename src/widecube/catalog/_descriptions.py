"""What people know about a dataset, and full-text search with facet counts over it.

A dataset's metadata is a title, a description, its organism, tissue, assay and disease (each
one or more values), license, citation, DOI, contact, tags and free key/values
(:data:`FIELDS`). It is kept in ``dataset_metadata`` (the fields as JSON, plus ``document``: the
words search matches) and ``dataset_terms`` (one row per faceted value: organism, tissue,
assay, disease, tag).

Search is the database's own full-text index: SQLite's FTS5 table ``dataset_fts``, PostgreSQL's
GIN index on ``to_tsvector('simple', document)`` (both made by the 0006 migration). Both must
find the same datasets for the same query, so nothing is left to their tokenizers: the words
of a document and of a query are normalized here, once, by :func:`words` (Unicode NFC, letters
and digits, lower case; everything else separates words), the document is stored as those
words joined by spaces, and a query is every word as a prefix, all required (``"cd4"* AND
"blood"*`` in FTS5, ``cd4:* & blood:*`` in PostgreSQL). Facet filters (``organism=human``)
keep a dataset holding any of the values asked for a field (OR within a field, AND across
fields); the count of each facet value is taken over the hits of every other filter, so a
browser can offer the alternatives to what it selected.

    >>> store.update("pbmc", {"title": "PBMC 3k", "organism": "human", "tags": ["demo"]}, by="ana")
    >>> store.search("pbmc", {"organism": ["human"]}, among=["pbmc"]).datasets
    ['pbmc']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from widecube.catalog import _queries as q
from widecube.catalog._changes import ChangeToken
from widecube.catalog._grants import Transaction
from widecube.catalog._schema import dataset_metadata, dataset_terms, datasets
from widecube.errors import InvalidQuery

__all__ = [
    "FACETS",
    "FIELDS",
    "LIST_FIELDS",
    "TEXT_FIELDS",
    "MetadataStore",
    "SearchHits",
    "check_fields",
    "words",
]

TEXT_FIELDS = ("title", "description", "license", "citation", "doi", "contact")
"""One string each."""
LIST_FIELDS = ("organism", "tissue", "assay", "disease", "tags")
"""One or more strings each (a single string is a list of one)."""
FIELDS = (*TEXT_FIELDS[:2], *LIST_FIELDS[:4], *TEXT_FIELDS[2:], "tags", "extra")
"""Every field, in the order they are shown; ``extra`` holds free key/values (strings)."""
FACETS = ("organism", "tissue", "assay", "disease", "tag")
"""The fields searches filter and count by (``tag`` is one of ``tags``)."""

_FACET_OF = {
    "organism": "organism",
    "tissue": "tissue",
    "assay": "assay",
    "disease": "disease",
    "tags": "tag",
}
_LIMITS = {"description": 20_000, "citation": 2_000}
_TEXT_MAX = 500
_VALUE_MAX = 255  # a faceted value (dataset_terms.value)
_LIST_MAX = 50
_EXTRA_MAX = 50
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WORD = re.compile(r"[^\W_]+")
_WORD_MAX = 100  # longer "words" (sequences, hashes) are not indexed: PostgreSQL drops > 2 KB ones
_QUERY_WORDS = 32
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_M = dataset_metadata.c
_T = dataset_terms.c
_D = datasets.c


def words(*texts: str) -> list[str]:
    """The words full-text search sees in ``texts``: NFC-normalized, lower-cased runs of
    letters and digits (``_``, ``-``, ``.``, ``/`` and every other character separate words),
    at most 100 characters each.

    >>> words("CD4+ T-cells, 10.1038/s41586", "Café")
    ['cd4', 't', 'cells', '10', '1038', 's41586', 'café']
    """
    out: list[str] = []
    for text in texts:
        normal = unicodedata.normalize("NFC", text).lower()
        out.extend(w for w in _WORD.findall(normal) if len(w) <= _WORD_MAX)
    return out


@dataclass(frozen=True, slots=True)
class SearchHits:
    """What a search found: dataset names (sorted) and, per facet, ``{value: datasets}``."""

    datasets: list[str]
    facets: dict[str, dict[str, int]] = field(hash=False)


@dataclass(frozen=True, slots=True)
class _Described:
    """Every dataset's metadata and faceted values, read at once (remembered while the
    catalog is unchanged)."""

    fields: dict[str, dict[str, Any]]  # by dataset name
    terms: dict[str, dict[str, frozenset[str]]]  # by dataset name, then facet


def check_fields(dataset: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` made canonical (strings stripped, list fields as lists without repeats,
    empty values left out), or :class:`InvalidQuery` naming the dataset and the field at fault.

    >>> check_fields("pbmc", {"organism": "human", "title": " PBMC ", "extra": {"donors": "6"}})
    {'title': 'PBMC', 'organism': ['human'], 'extra': {'donors': '6'}}
    """
    unknown = [k for k in fields if k not in FIELDS]
    if unknown:
        raise InvalidQuery(
            f"metadata of dataset {dataset!r}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)}; "
            "put anything else under extra)"
        )
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if name in TEXT_FIELDS:
            text = _text(dataset, name, value, _LIMITS.get(name, _TEXT_MAX))
            if text:
                out[name] = text
        elif name in LIST_FIELDS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list | tuple):
                raise InvalidQuery(
                    f"metadata of dataset {dataset!r}: {name} must be a string or a list of strings"
                )
            kept = list(dict.fromkeys(t for t in (_text(dataset, name, v, _VALUE_MAX) for v in items) if t))
            if len(kept) > _LIST_MAX:
                raise InvalidQuery(
                    f"metadata of dataset {dataset!r}: {name} has {len(kept)} values (at most {_LIST_MAX})"
                )
            if kept:
                out[name] = kept
        else:
            extra = _extra(dataset, value)
            if extra:
                out[name] = extra
    return out


def _text(dataset: str, name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidQuery(
            f"metadata of dataset {dataset!r}: {name} must be a string, not {type(value).__name__}"
        )
    text = value.strip()
    if len(text) > limit:
        raise InvalidQuery(
            f"metadata of dataset {dataset!r}: {name} is {len(text):,} characters long (at most {limit:,})"
        )
    if _CONTROL.search(text) or (name != "description" and ("\n" in text or "\r" in text)):
        raise InvalidQuery(f"metadata of dataset {dataset!r}: {name} holds a control character")
    return text


def _extra(dataset: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidQuery(f"metadata of dataset {dataset!r}: extra must be a mapping of names to strings")
    if len(value) > _EXTRA_MAX:
        raise InvalidQuery(
            f"metadata of dataset {dataset!r}: extra has {len(value)} keys (at most {_EXTRA_MAX})"
        )
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidQuery(
                f"metadata of dataset {dataset!r}: extra key {str(key)[:80]!r} is not a name "
                "(letters, digits, _ . -; at most 64, a letter or digit first)"
            )
        if item is None:
            continue
        text = _text(dataset, f"extra.{key}", item if isinstance(item, str) else str(item), _TEXT_MAX)
        if text:
            out[key] = text
    return out


def merge(old: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` with ``changes`` applied as a JSON merge patch (RFC 7386): a field set to None
    is removed; ``extra`` merges key by key (a key set to None is removed)."""
    new = dict(old)
    for name, value in changes.items():
        if value is None:
            new.pop(name, None)
        elif name == "extra" and isinstance(value, Mapping):
            extra = {**new.get("extra", {}), **value}
            new["extra"] = {k: v for k, v in extra.items() if v is not None}
        else:
            new[name] = value
    return new


def document(dataset: str, fields: Mapping[str, Any]) -> str:
    """The words of a dataset that search matches: its name and every field's text."""
    texts = [dataset]
    for name in FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(value)
        elif isinstance(value, Mapping):
            texts.extend(f"{k} {v}" for k, v in value.items())
    return " ".join(words(*texts))


class MetadataStore:
    """Datasets' metadata in one catalog: read, change, search."""

    def __init__(self, write: Transaction, read: Transaction, changes: ChangeToken, dialect: str) -> None:
        self._write, self._read, self._changes, self._dialect = write, read, changes, dialect
        self._remembered: tuple[int, _Described] | None = None

    def get(self, dataset: str) -> dict[str, Any]:
        """The fields of ``dataset`` (empty when it has none)."""
        return dict(self._described().fields.get(dataset, {}))

    def all(self) -> dict[str, dict[str, Any]]:
        """Every described dataset's fields, by name."""
        return dict(self._described().fields)

    def update(self, dataset: str, changes: Mapping[str, Any], *, by: str | None) -> dict[str, Any]:
        """Apply ``changes`` (a merge patch: None removes a field) to ``dataset``'s metadata,
        creating the dataset's row if it has none yet (metadata given before its first
        version); the new fields. Refused whole, naming the field, if any value is bad."""
        check_fields(dataset, {k: v for k, v in changes.items() if v is not None and k != "extra"})
        with self._write() as conn:
            dataset_id = q.ensure_dataset(conn, dataset, _now())
            row = conn.execute(sa.select(_M.fields).where(_M.dataset_id == dataset_id)).first()
            old = dict(row.fields) if row is not None else {}
            new = check_fields(dataset, merge(old, changes))
            values = dict(fields=new, document=document(dataset, new), updated_at=_now(), updated_by=by)
            if row is None:
                conn.execute(sa.insert(dataset_metadata).values(dataset_id=dataset_id, **values))
            else:
                conn.execute(sa.update(dataset_metadata).where(_M.dataset_id == dataset_id).values(**values))
            conn.execute(sa.delete(dataset_terms).where(_T.dataset_id == dataset_id))
            terms = [
                {"dataset_id": dataset_id, "field": _FACET_OF[name], "value": v}
                for name in LIST_FIELDS
                for v in new.get(name, [])
            ]
            if terms:
                conn.execute(sa.insert(dataset_terms), terms)
            if self._dialect == "sqlite":
                conn.execute(sa.text("DELETE FROM dataset_fts WHERE rowid = :id"), {"id": dataset_id})
                conn.execute(
                    sa.text("INSERT INTO dataset_fts (rowid, document) VALUES (:id, :doc)"),
                    {"id": dataset_id, "doc": values["document"]},
                )
        return new

    def search(
        self, text: str, filters: Mapping[str, Sequence[str]], *, among: Collection[str]
    ) -> SearchHits:
        """The datasets among ``among`` that match ``text`` (every word, as a prefix, in the
        name or any field) and ``filters`` (``{facet: [values]}``), and the facet counts.

        ``among`` is what the caller may see: nothing else is matched or counted."""
        unknown = [f for f in filters if f not in FACETS]
        if unknown:
            raise InvalidQuery(f"cannot filter datasets by {unknown[0]!r} (facets: {', '.join(FACETS)})")
        terms = words(text)
        if len(terms) > _QUERY_WORDS:
            raise InvalidQuery(f"the search has {len(terms)} words (at most {_QUERY_WORDS})")
        described = self._described()
        candidates = set(among)
        if terms:
            found = self._matching(terms)
            # a dataset nobody described has no document: its name alone is matched
            bare = {n for n in candidates if n not in described.fields and _prefixes(terms, words(n))}
            candidates &= found | bare
        wanted = {f: set(v) for f, v in filters.items() if v}

        def keeps(name: str, skip: str | None) -> bool:
            have = described.terms.get(name, {})
            return all(have.get(f, frozenset()) & values for f, values in wanted.items() if f != skip)

        hits = sorted(n for n in candidates if keeps(n, None))
        facets: dict[str, dict[str, int]] = {}
        for facet in FACETS:
            counts: dict[str, int] = {}
            for name in candidates:
                if keeps(name, facet):
                    for value in described.terms.get(name, {}).get(facet, ()):
                        counts[value] = counts.get(value, 0) + 1
            facets[facet] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return SearchHits(hits, facets)

    def _matching(self, terms: list[str]) -> set[str]:
        """Names of the described datasets whose document holds every term as a prefix, by
        the database's full-text index."""
        if self._dialect == "sqlite":
            sql = (
                "SELECT d.name FROM dataset_fts f JOIN datasets d ON d.id = f.rowid "
                "WHERE dataset_fts MATCH :query"
            )
            query = " AND ".join(f'"{t}"*' for t in terms)
        elif self._dialect == "postgresql":
            sql = (
                "SELECT d.name FROM dataset_metadata m JOIN datasets d ON d.id = m.dataset_id "
                "WHERE to_tsvector('simple', m.document) @@ to_tsquery('simple', :query)"
            )
            query = " & ".join(f"{t}:*" for t in terms)
        else:  # any other database: the same matching, without an index
            return {n for n, doc in self._documents() if _prefixes(terms, doc.split())}
        with self._read() as conn:
            return {str(r[0]) for r in conn.execute(sa.text(sql), {"query": query})}

    def _documents(self) -> Iterable[tuple[str, str]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_D.name, _M.document).select_from(
                    dataset_metadata.join(datasets, _D.id == _M.dataset_id)
                )
            )
            return [(str(r.name), str(r.document)) for r in rows]

    def _described(self) -> _Described:
        """Every dataset's fields and terms: two SELECTs, skipped while nothing was committed."""
        token = self._changes.read()
        hit = self._remembered
        if token is not None and hit is not None and hit[0] == token:
            return hit[1]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_D.name, _M.fields).select_from(
                    dataset_metadata.join(datasets, _D.id == _M.dataset_id)
                )
            )
            fields = {str(r.name): dict(r.fields) for r in rows}
            found: dict[str, dict[str, set[str]]] = {}
            for r in conn.execute(
                sa.select(_D.name, _T.field, _T.value).select_from(
                    dataset_terms.join(datasets, _D.id == _T.dataset_id)
                )
            ):
                found.setdefault(str(r.name), {}).setdefault(str(r.field), set()).add(str(r.value))
        terms = {n: {f: frozenset(v) for f, v in by.items()} for n, by in found.items()}
        described = _Described(fields, terms)
        if token is not None:
            self._remembered = (token, described)
        return described


def _prefixes(terms: Iterable[str], have: Sequence[str]) -> bool:
    """Whether every term starts some word of ``have``."""
    return all(any(w.startswith(t) for w in have) for t in terms)


def _now() -> datetime:
    return datetime.now(UTC)
