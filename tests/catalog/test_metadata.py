"""Dataset metadata and full-text search in the catalog, on SQLite (FTS5) and PostgreSQL
(tsvector + GIN).

The issue's test: 200 datasets with generated metadata, the same queries on both backends,
the same hits. The hits are also checked against a brute-force reference written here
(every query word a prefix of some word of the dataset's texts, split on anything that is
not a letter or digit), and a few by hand.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from _pg import postgres_schema
from widecube.catalog import FACETS, Catalog
from widecube.errors import InvalidQuery

ORGANISMS = ["Homo sapiens", "Mus musculus", "Danio rerio", "Macaca mulatta"]
TISSUES = ["blood", "bone marrow", "lung", "liver", "brain", "kidney", "skin", "gut"]
ASSAYS = ["10x 3' v3", "10x 5' v2", "Smart-seq2", "sci-RNA-seq3", "Drop-seq"]
DISEASES = ["normal", "COVID-19", "type 2 diabetes", "lung adenocarcinoma", "Alzheimer's disease"]
TAGS = ["atlas", "pilot", "CD4+", "T-cells", "naïve", "Müller-glia", "time_course", "donor-3", "v2.1"]
WORDS = [
    "single",
    "cell",
    "transcriptomics",
    "of",
    "human",
    "immune",
    "Café",
    "résumé",
    "10.1038/s41586-020-2157-4",
    "macrophages",
    "organoid",
    "IL-2",
    "TNFα",
    "donor",
    "co-culture",
    "perturb_seq",
    "e.g.",
    "Lab",
    "3k",
    "PBMC",
]
QUERIES = [
    "cell",
    "cel",
    "CELL",
    "human immune",
    "blood",
    "bone",
    "bone marrow",
    "10x",
    "v3",
    "smart",
    "seq",
    "covid 19",
    "covid-19",
    "alzheimer",
    "type 2",
    "cd4",
    "cd4+",
    "t-cells",
    "naive",
    "naïve",
    "müller",
    "muller",
    "café",
    "cafe",
    "résumé",
    "10.1038",
    "s41586",
    "1038 2157",
    "time_course",
    "course",
    "tnf",
    "tnfα",
    "il 2",
    "perturb",
    "e.g",
    "lab 3k",
    "pbmc",
    "ds1",
    "ds12",
    "mus",
    "sapiens",
    "danio",
    "zzz",
    "macro",
    "organoid culture",
    "co",
    "v2.1",
    "donor 3",
]
FILTERS: list[dict[str, list[str]]] = [
    {},
    {"organism": ["Homo sapiens"]},
    {"organism": ["Homo sapiens", "Mus musculus"]},
    {"tissue": ["blood"], "tag": ["atlas"]},
    {"assay": ["Smart-seq2"], "disease": ["normal"]},
    {"tag": ["CD4+", "naïve"]},
]


def _metadata(rng: random.Random, i: int) -> dict[str, Any]:
    def pick(pool: list[str], most: int) -> list[str]:
        return rng.sample(pool, rng.randint(1, most))

    return {
        "title": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) + f" {i}",
        "description": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))),
        "organism": pick(ORGANISMS, 1),
        "tissue": pick(TISSUES, 2),
        "assay": pick(ASSAYS, 1),
        "disease": pick(DISEASES, 2),
        "tags": pick(TAGS, 3),
        "license": rng.choice(["CC-BY-4.0", "CC0"]),
        "doi": f"10.5555/ds.{i}",
        "extra": {"lab": rng.choice(["Teichmann", "Regev", "Satija"]), "batch": str(rng.randint(1, 9))},
    }


GENERATED = {f"ds{i}": _metadata(random.Random(i), i) for i in range(200)}


def _reference(query: str, filters: dict[str, list[str]], among: set[str]) -> list[str]:
    """Brute force: every query word is a prefix of a word of the name or of some field's text;
    every filter keeps a dataset holding one of its values."""

    def split(text: str) -> list[str]:
        return [w for w in re.split(r"[\W_]+", text.lower()) if w]

    terms = split(query)
    hits = []
    for name in sorted(among):
        meta = GENERATED[name]
        texts = [name]
        for value in meta.values():
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(value)
            else:
                texts.extend(f"{k} {v}" for k, v in value.items())
        have = [w for t in texts for w in split(t)]
        if not all(any(w.startswith(t) for w in have) for t in terms):
            continue
        held = {f: set(meta.get("tags" if f == "tag" else f, [])) for f in FACETS}
        if all(held[f] & set(values) for f, values in filters.items()):
            hits.append(name)
    return hits


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Catalog]]:
    root: Path = tmp_path_factory.mktemp("metadata")
    with postgres_schema() as (url, _):
        opened = {"sqlite": Catalog(f"sqlite:///{root / 'c.sqlite'}"), "postgresql": Catalog(url)}
        try:
            for catalog in opened.values():
                for name, meta in GENERATED.items():
                    catalog.metadata.update(name, meta, by="gen")
            yield opened
        finally:
            for catalog in opened.values():
                catalog.close()


@pytest.mark.postgres
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_sqlite_and_postgresql_find_the_same_datasets(
    catalogs: dict[str, Catalog], filters: dict[str, list[str]]
) -> None:
    among = set(GENERATED)
    found_any = 0
    for query in QUERIES:
        want = _reference(query, filters, among)
        got = {name: c.metadata.search(query, filters, among=among) for name, c in catalogs.items()}
        assert got["sqlite"].datasets == want, query
        assert got["postgresql"].datasets == want, query
        assert got["sqlite"].facets == got["postgresql"].facets, query
        found_any += bool(want)
    assert found_any >= len(QUERIES) // 2  # the queries find something, not only nothing


@pytest.mark.postgres
def test_facet_counts_by_hand(catalogs: dict[str, Catalog]) -> None:
    among = set(GENERATED)
    for catalog in catalogs.values():
        everything = catalog.metadata.search("", {}, among=among)
        assert len(everything.datasets) == 200
        by_organism = {o: sum(o in m["organism"] for m in GENERATED.values()) for o in ORGANISMS}
        assert everything.facets["organism"] == {k: v for k, v in by_organism.items() if v} | {}
        assert sum(everything.facets["organism"].values()) == 200
        # a filter on organism still counts the other organisms (the alternatives), but narrows tissue
        human = catalog.metadata.search("", {"organism": ["Homo sapiens"]}, among=among)
        assert human.facets["organism"] == everything.facets["organism"]
        humans = [n for n, m in GENERATED.items() if "Homo sapiens" in m["organism"]]
        assert sorted(human.datasets) == sorted(humans)
        blood = sum("blood" in GENERATED[n]["tissue"] for n in humans)
        assert human.facets["tissue"]["blood"] == blood > 0


@pytest.mark.postgres
def test_only_what_the_caller_may_see_is_found_or_counted(catalogs: dict[str, Catalog]) -> None:
    among = {"ds1", "ds2", "ds3"}
    for catalog in catalogs.values():
        hits = catalog.metadata.search("", {}, among=among)
        assert hits.datasets == ["ds1", "ds2", "ds3"]
        assert sum(hits.facets["organism"].values()) == 3
        assert catalog.metadata.search("ds4", {}, among=among).datasets == []


def test_fields_are_checked_and_merged(tmp_path: Path) -> None:
    with Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}") as catalog:
        store = catalog.metadata
        first = store.update(
            "pbmc", {"title": " PBMC 3k ", "organism": "human", "extra": {"donors": "6"}}, by="ana"
        )
        assert first == {"title": "PBMC 3k", "organism": ["human"], "extra": {"donors": "6"}}
        second = store.update(
            "pbmc", {"title": None, "tags": ["a", "a", "b"], "extra": {"site": "x"}}, by="ana"
        )
        assert second == {"organism": ["human"], "tags": ["a", "b"], "extra": {"donors": "6", "site": "x"}}
        assert store.get("pbmc") == second
        assert store.search("site x", {}, among=["pbmc"]).datasets == ["pbmc"]  # extra is searched
        assert store.search("pbmc", {}, among=["pbmc"]).datasets == ["pbmc"]  # the name too
        for bad, says in (
            ({"titel": "x"}, "unknown field 'titel'"),
            ({"title": 3}, "title must be a string"),
            ({"title": "a\nb"}, "title holds a control character"),
            ({"description": "x" * 20_001}, "description is 20,001 characters long"),
            ({"tags": [str(i) for i in range(51)]}, "tags has 51 values"),
            ({"extra": {"bad key": "x"}}, "extra key 'bad key' is not a name"),
        ):
            with pytest.raises(InvalidQuery, match=re.escape(says)):
                store.update("pbmc", bad, by="ana")
        assert store.get("pbmc") == second  # nothing of a refused change was kept
        with pytest.raises(InvalidQuery, match="cannot filter datasets by 'title'"):
            store.search("", {"title": ["x"]}, among=["pbmc"])


def test_the_fts_table_follows_every_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    with Catalog(url) as catalog:
        catalog.metadata.update("a", {"title": "kidney atlas"}, by=None)
        catalog.metadata.update("a", {"title": "liver atlas"}, by=None)
        assert catalog.metadata.search("kidney", {}, among=["a"]).datasets == []
        assert catalog.metadata.search("liv atl", {}, among=["a"]).datasets == ["a"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT rowid, document FROM dataset_fts")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "a liver atlas")]
