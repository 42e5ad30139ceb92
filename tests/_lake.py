"""Helpers of the lifecycle tests: tiny inputs with known answers, and cheap copies of an
ingested version under new version ids (so a test can publish fifty versions in seconds).

A copy is a real snapshot: the source's files copied through the store, its manifest
rewritten to name the new dataset and version, recorded in the catalog as verified with the
new manifest's sha256, as an ingest would record it. Its numbers are the source's, so a
reader knows exactly what each version must answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import anndata as ad
import numpy as np

from _data import small_adata, write_h5ad
from widecube.catalog import Catalog, VersionRecord
from widecube.config import Settings
from widecube.snapshot import open_storage

__all__ = ["GENE", "TYPES", "clone_version", "expected_means", "tiny_input"]

GENE = "Gene3"
TYPES = ["T", "B", "NK", "Mono", "solo"]


def tiny_input(root: Path, seed: int, *, n_cells: int = 60, n_genes: int = 8) -> tuple[Path, ad.AnnData]:
    """A small counts .h5ad whose numbers differ with ``seed`` (scaled by seed + 1)."""
    adata = small_adata(n_cells, n_genes, seed=seed)
    adata.X = adata.X * (seed + 1)
    return write_h5ad(adata, root / f"in{seed}.h5ad"), adata


def expected_means(adata: ad.AnnData) -> list[float]:
    """Mean raw count of :data:`GENE` per cell type (numpy, from the input itself)."""
    x = np.asarray(adata.X)[:, list(adata.var_names).index(GENE)]
    types = adata.obs["cell_type"].astype(str).to_numpy()
    return [float(x[types == t].mean()) for t in TYPES]


def clone_version(
    settings: Settings,
    catalog: Catalog,
    source: VersionRecord,
    *,
    dataset: str | None = None,
    extra: dict[str, dict[str, object]] | None = None,
) -> str:
    """A new verified version of ``dataset`` (default: the source's) holding ``source``'s data;
    ``extra`` adds manifest entries (``{path: {"sha256", "size"}}``) of files the caller writes."""
    assert source.path is not None
    target = dataset or source.dataset
    version = uuid.uuid4().hex
    # recorded first, as an ingest does: garbage collection leaves a building version's folder alone
    catalog.create_version(
        target, version, input_name=source.input_name, input_sha256=None, params=source.params
    )
    store = open_storage(settings.storage)
    src, dst = store.sub(source.path), store.sub(f"datasets/{target}/{version}")
    for rel in src.list():
        if rel != "manifest.json":
            dst.put(rel, src.get(rel))
    manifest = json.loads(src.get("manifest.json"))
    manifest["dataset"], manifest["version"] = target, version
    manifest["files"].update(extra or {})
    data = json.dumps(manifest, indent=1).encode()
    dst.put("manifest.json", data)
    info = {**source.info, "manifest_sha256": hashlib.sha256(data).hexdigest()}
    assert source.n_cells is not None and source.n_genes is not None
    catalog.mark_verified(
        target,
        version,
        path=f"datasets/{target}/{version}",
        n_cells=source.n_cells,
        n_genes=source.n_genes,
        info=info,
    )
    return version
