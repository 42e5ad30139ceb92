"""Inputs for the reader benchmarks, generated once into ``benchmarks/data/`` (git-ignored).

* a **wide CSV**: cells as rows, 50,000 gene columns, Smart-seq-like read counts (each
  gene detected in a Beta-distributed share of cells, ~60 % of fields ``0``, non-zeros
  log-normal with a median of a few hundred), written row by row by a numba formatter —
  about 3 GB for 20,000 cells;
* one **demo matrix** in the formats of its readers' peers: the h5ad from ``widecube
  demo-data``, and the same counts as Cell Ranger writes them: a 10x v3 HDF5 with
  shuffle+gzip chunks (h5py, Cell Ranger's settings), a plain 10x v2 MTX folder and a gzip
  10x v3 MTX folder (``scipy.io.mmwrite``, entries in cell order).

Each file is reused while a sidecar ``*.params.json`` matches its parameters; files are
written under a ``.partial`` name and renamed once complete.

    >>> ensure_wide_csv(WideCsvSpec(n_cells=200, n_genes=5_000), Path("benchmarks/data"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numba
import numpy as np

__all__ = ["DemoSpec", "WideCsvSpec", "ensure_demo_formats", "ensure_wide_csv"]


@dataclass(frozen=True)
class WideCsvSpec:
    n_cells: int = 20_000
    n_genes: int = 50_000
    seed: int = 0

    @property
    def name(self) -> str:
        return f"wide_{self.n_cells}x{self.n_genes}"


@dataclass(frozen=True)
class DemoSpec:
    n_cells: int = 50_000
    n_genes: int = 20_000
    seed: int = 0

    @property
    def name(self) -> str:
        return f"demo_{self.n_cells}x{self.n_genes}"


def _cached(target: Path, params: dict[str, Any], build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build(partial_path)`` unless it exists with the same parameters."""
    sidecar = target.with_name(target.name + ".params.json")
    if target.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == params:
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    build(partial)
    shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    partial.rename(target)
    sidecar.write_text(json.dumps(params))
    return target


@numba.njit(cache=True)
def _format_rows(values: np.ndarray, first_id: int, out: np.ndarray) -> int:
    """Write rows ``c<id>,v,v,…\\n`` of non-negative integers into ``out``; return bytes used."""
    digits = np.empty(20, np.uint8)
    p = 0
    for r in range(values.shape[0]):
        out[p] = 99  # 'c'
        p += 1
        v = first_id + r
        n = 0
        while True:
            digits[n] = 48 + v % 10
            v //= 10
            n += 1
            if v == 0:
                break
        for k in range(n - 1, -1, -1):
            out[p] = digits[k]
            p += 1
        for c in range(values.shape[1]):
            out[p] = 44  # ','
            p += 1
            v = values[r, c]
            n = 0
            while True:
                digits[n] = 48 + v % 10
                v //= 10
                n += 1
                if v == 0:
                    break
            for k in range(n - 1, -1, -1):
                out[p] = digits[k]
                p += 1
        out[p] = 10
        p += 1
    return p


def _write_wide_csv(spec: WideCsvSpec, path: Path, chunk: int = 250) -> None:
    rng = np.random.default_rng(spec.seed)
    detect = rng.beta(2.0, 3.0, spec.n_genes).astype(np.float32)  # share of cells detecting each gene
    level = rng.normal(5.8, 0.8, spec.n_genes).astype(np.float32)  # log mean read count per gene
    buf = np.empty(chunk * spec.n_genes * 8 + 64, np.uint8)
    with path.open("wb") as fh:
        fh.write(("cell," + ",".join(f"G{j:05d}" for j in range(spec.n_genes)) + "\n").encode())
        for start in range(0, spec.n_cells, chunk):
            k = min(chunk, spec.n_cells - start)
            hit = rng.random((k, spec.n_genes), dtype=np.float32) < detect
            reads = np.exp(level + rng.standard_normal((k, spec.n_genes), dtype=np.float32) * 1.2)
            values = np.where(hit, reads.astype(np.int64) + 1, 0)
            used = _format_rows(values, start, buf)
            fh.write(buf[:used].data)


def ensure_wide_csv(spec: WideCsvSpec, folder: Path) -> Path:
    """The wide CSV of ``spec`` in ``folder`` (generated on first use)."""
    return _cached(folder / f"{spec.name}.csv", asdict(spec), lambda p: _write_wide_csv(spec, p))


CELLRANGER_H5 = {"chunks": 80_000, "compression": "gzip", "compression_opts": 4, "shuffle": True}
"""How Cell Ranger (``cellranger/matrix.py``, ``save_h5_group``) stores ``matrix/{data,indices,
indptr}``: 80,000-value chunks, the shuffle filter, then gzip at h5py's default level (4)."""
MTX_GZIP_LEVEL = 6
"""The ``gzip`` tool's default level, used for ``matrix.mtx.gz`` and the TSVs."""
LAYOUT = "cellranger-v3, 80k chunks, shuffle+gzip-4; mtx plain as v2 (genes.tsv), gzip as v3"
"""Recorded with each file's parameters, so that files written by an older layout are rebuilt."""


def ensure_demo_formats(spec: DemoSpec, folder: Path) -> dict[str, Path]:
    """The demo matrix as ``h5ad``, ``10x-h5-gzip`` (Cell Ranger's chunked shuffle+gzip 10x v3
    HDF5), ``mtx`` (a plain Cell Ranger v2 MTX folder: ``matrix.mtx``, ``genes.tsv``,
    ``barcodes.tsv``) and ``mtx-gzip`` (a Cell Ranger v3 folder: ``matrix.mtx.gz``,
    ``features.tsv.gz``, ``barcodes.tsv.gz``); the matrices are genes × cells with entries
    sorted by cell, as Cell Ranger writes them."""
    from widecube.demo import make_demo

    params = asdict(spec)
    laid_out = {**params, "layout": LAYOUT}

    def demo(path: Path) -> None:
        make_demo(path, n_cells=spec.n_cells, n_genes=spec.n_genes, seed=spec.seed)

    h5ad = _cached(folder / f"{spec.name}.h5ad", params, demo)
    name = folder / spec.name
    return {
        "h5ad": h5ad,
        "10x-h5-gzip": _cached(Path(f"{name}.cellranger.h5"), laid_out, lambda p: _write_10x(h5ad, p)),
        "mtx": _cached(Path(f"{name}_mtx_v2"), laid_out, lambda p: _write_mtx(h5ad, p, gzip=False)),
        "mtx-gzip": _cached(Path(f"{name}_mtx_v3"), laid_out, lambda p: _write_mtx(h5ad, p, gzip=True)),
    }


def _names(h5ad: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import anndata

    with h5py.File(h5ad, "r") as f:
        obs, var = anndata.io.read_elem(f["obs"]), anndata.io.read_elem(f["var"])
    ids = var["gene_ids"].to_numpy() if "gene_ids" in var else var.index.to_numpy()
    return obs.index.to_numpy().astype(str), var.index.to_numpy().astype(str), np.asarray(ids).astype(str)


def _write_10x(h5ad: Path, path: Path) -> None:
    """Cell Ranger's v3 layout and storage; the h5ad's CSR (cells × genes) is the 10x CSC (genes × cells)."""
    cells, genes, ids = _names(h5ad)
    with h5py.File(h5ad, "r") as src, h5py.File(path, "w") as out:
        x = src["X"]
        n = int(x["indptr"][-1])
        g = out.create_group("matrix")
        opts: dict[str, Any] = {
            "chunks": (CELLRANGER_H5["chunks"],),
            "maxshape": (None,),
            "compression": CELLRANGER_H5["compression"],
            "compression_opts": CELLRANGER_H5["compression_opts"],
            "shuffle": CELLRANGER_H5["shuffle"],
        }
        data = g.create_dataset("data", shape=(n,), dtype=np.int32, **opts)
        indices = g.create_dataset("indices", shape=(n,), dtype=np.int64, **opts)
        step = 1 << 24
        for s in range(0, n, step):
            data[s : s + step] = x["data"][s : s + step].astype(np.int32)
            indices[s : s + step] = x["indices"][s : s + step]
        g.create_dataset("indptr", data=x["indptr"][...].astype(np.int64), **opts)
        g["shape"] = np.array([len(genes), len(cells)], dtype=np.int32)
        g["barcodes"] = cells.astype("S")
        feats = g.create_group("features")
        feats["id"], feats["name"] = ids.astype("S"), genes.astype("S")
        feats["feature_type"] = np.full(len(genes), b"Gene Expression")
        feats["genome"] = np.full(len(genes), b"GRCh38")


def _write_mtx(h5ad: Path, folder: Path, *, gzip: bool) -> None:
    """A 10x MTX folder written by ``scipy.io.mmwrite`` from the genes × cells CSC (entries in
    cell order): plain files named as Cell Ranger 2 names them, or gzip files as Cell Ranger 3."""
    import gzip as gz

    import anndata
    import pandas as pd
    import scipy.io
    import scipy.sparse as sp

    folder.mkdir(parents=True)
    cells, genes, ids = _names(h5ad)
    with h5py.File(h5ad, "r") as f:
        x = anndata.io.read_elem(f["X"])
    genes_by_cells = sp.csc_matrix(
        (x.data.astype(np.int32), x.indices, x.indptr), shape=(len(genes), len(cells))
    )
    del x
    scipy.io.mmwrite(folder / "matrix.mtx", genes_by_cells, field="integer")
    features = pd.DataFrame({"id": ids, "name": genes, "type": "Gene Expression"})
    if not gzip:
        features.to_csv(folder / "genes.tsv", sep="\t", header=False, index=False)
        pd.Series(cells).to_csv(folder / "barcodes.tsv", header=False, index=False)
        return
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(cells).to_csv(folder / "barcodes.tsv.gz", header=False, index=False)
    plain, packed = folder / "matrix.mtx", folder / "matrix.mtx.gz"
    with plain.open("rb") as src, gz.open(packed, "wb", compresslevel=MTX_GZIP_LEVEL) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    plain.unlink()
