"""Write a frozen snapshot of the tiny input with today's encodings (run by hand, then commit).

Each folder beside this script (``widecube-<version>/``, with ``manifest.json`` at its root)
is a whole snapshot as some widecube wrote it; ``tests/snapshot/test_snapshot_compat.py`` reads every
one through the view read registry and checks its values against numpy on ``input/``. When a
view's encoding changes, keep the old reader registered, run this script under a new name and
commit both folders, so old snapshots stay readable::

    PYTHONPATH=src python tests/data/snapshots/make.py widecube-0.2.0

``input/`` (40 cells × 12 genes of counts, two groupings) is written once and then kept, so
every frozen snapshot holds the same numbers.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from widecube.config import Settings
from widecube.pipeline import ingest

HERE = Path(__file__).resolve().parent
INPUT = HERE / "input"
GROUPBYS = ["cell_type", "donor"]
DATASET = "tiny"


def make_input(seed: int = 10) -> None:
    """``input/x.npy`` (dense counts), ``input/obs.csv`` and ``input/var.csv``, if absent."""
    if (INPUT / "x.npy").exists():
        return
    rng = np.random.default_rng(seed)
    n_cells, n_genes = 40, 12
    x = np.where(
        rng.random((n_cells, n_genes)) < 0.35, rng.negative_binomial(2, 0.3, (n_cells, n_genes)) + 1, 0
    )
    types = np.repeat(["B", "Mono", "T"], [10, 12, 18])
    obs = pd.DataFrame(
        {"cell_type": rng.permutation(types), "donor": rng.choice(["d1", "d2"], n_cells)},
        index=pd.Index([f"cell{i}" for i in range(n_cells)], name="cell"),
    )
    var = pd.DataFrame(index=pd.Index([f"Gene{j}" for j in range(n_genes)], name="gene"))
    INPUT.mkdir(parents=True, exist_ok=True)
    np.save(INPUT / "x.npy", x.astype(np.int32))
    obs.to_csv(INPUT / "obs.csv")
    var.to_csv(INPUT / "var.csv")


def read_input() -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The tiny input: dense counts (cells × genes), obs (categorical groupings), var."""
    x = np.load(INPUT / "x.npy")
    obs = pd.read_csv(INPUT / "obs.csv", index_col=0).astype("category")
    var = pd.read_csv(INPUT / "var.csv", index_col=0)
    return x, obs, var


def freeze(name: str) -> Path:
    """Ingest the tiny input and copy its snapshot to ``<here>/<name>/``."""
    make_input()
    x, obs, var = read_input()
    target = HERE / name
    if target.exists():
        raise SystemExit(f"{target} exists: frozen snapshots are never rewritten; pick a new name")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.h5ad"
        ad.AnnData(x.astype(np.float32), obs=obs, var=var).write_h5ad(path)
        settings = Settings(storage=Path(tmp) / "store")
        record = ingest(path, dataset=DATASET, groupbys=GROUPBYS, settings=settings)
        shutil.copytree(settings.storage / str(record.path), target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="folder name of the new frozen snapshot, e.g. widecube-0.2.0")
    print(freeze(parser.parse_args().name))


if __name__ == "__main__":
    main()
