"""The small annotations of the demo data: obs (types, donors, barcodes), var, a 2-D embedding."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._model import Model

__all__ = ["obs_table", "umap_embedding", "var_table"]

_Array = npt.NDArray[Any]


def _barcodes(n: int, rng: np.random.Generator) -> _Array:
    """``n`` distinct 10x-style barcodes, ``AAACCTGAGAAACCAT-1``."""
    code = rng.choice(2**32, size=n, replace=False).astype(np.uint64)
    digits = (code[:, None] >> np.arange(30, -1, -2, dtype=np.uint64)) & np.uint64(3)
    letters = np.frombuffer(b"ACGT", np.uint8)[digits.astype(np.intp)]
    suffix = np.broadcast_to(np.frombuffer(b"-1", np.uint8), (n, 2))
    raw = np.ascontiguousarray(np.hstack([letters, suffix])).view("S18").ravel()
    return raw.astype(str).astype(object)


def obs_table(
    cell_type: _Array,
    cell_donor: _Array,
    treated: _Array,
    female: _Array,
    type_names: list[str],
    type_key: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    donors = [f"D{i + 1}" for i in range(treated.size)]
    sex = np.where(female, "female", "male")[cell_donor]
    condition = np.where(treated, "treated", "control")[cell_donor]
    return pd.DataFrame(
        {
            type_key: pd.Categorical.from_codes(cell_type, type_names),
            "donor": pd.Categorical.from_codes(cell_donor, donors),
            "sex": pd.Categorical(sex, categories=["female", "male"]),
            "condition": pd.Categorical(condition, categories=["control", "treated"]),
        },
        index=pd.Index(_barcodes(cell_type.size, rng), dtype=object),
    )


def var_table(symbols: list[str], rng: np.random.Generator) -> pd.DataFrame:
    n = len(symbols)
    ids = rng.choice(np.arange(1_000, max(300_000, 3 * n)), size=n, replace=False)
    return pd.DataFrame(
        {
            "gene_ids": pd.array([f"ENSG{i:011d}" for i in ids], dtype=object),
            "feature_types": pd.Categorical(["Gene Expression"] * n),
        },
        index=pd.Index(symbols, dtype=object),
    )


def umap_embedding(cell_type: _Array, model: Model, rng: np.random.Generator) -> _Array:
    """One anisotropic Gaussian blob per type; types of a lineage sit next to each other."""
    prop, lineage = model.proportions, model.lineage
    radius = 0.3 + 1.2 * np.sqrt(prop / prop.max())
    centre = np.zeros((prop.size, 2))
    n_lin = int(lineage.max()) + 1
    extent = np.array([1.6 * np.sqrt(((radius[lineage == k] + 0.4) ** 2).sum()) for k in range(n_lin)])
    lin_centre = _scatter(extent, 1.5, rng)
    for k in range(n_lin):
        members = np.flatnonzero(lineage == k)
        centre[members] = lin_centre[k] + _scatter(radius[members], 0.4, rng)
    angle = rng.uniform(0, np.pi, prop.size)
    stretch = rng.uniform(0.6, 1.4, prop.size)
    z = rng.standard_normal((cell_type.size, 2)) * (radius / 2.2)[cell_type, None]
    z[:, 0] *= stretch[cell_type]
    z[:, 1] /= stretch[cell_type]
    cos, sin = np.cos(angle)[cell_type], np.sin(angle)[cell_type]
    xy = np.stack([cos * z[:, 0] - sin * z[:, 1], sin * z[:, 0] + cos * z[:, 1]], axis=1)
    xy += centre[cell_type] + 4.0
    return xy.astype(np.float32)


def _scatter(radius: _Array, gap: float, rng: np.random.Generator) -> _Array:
    """Place discs of the given radii near the origin without overlap (dart throwing)."""
    placed = np.zeros((radius.size, 2))
    room = np.sqrt(((radius + gap) ** 2).sum())
    order = np.argsort(-radius, kind="stable")
    for n_done, i in enumerate(order):
        done = order[:n_done]
        for attempt in range(10_000):
            point = rng.uniform(-room, room, 2) * (1.0 + attempt / 200)
            dist = np.hypot(*(placed[done] - point).T)
            if np.all(dist >= radius[done] + radius[i] + gap):
                break
        placed[i] = point
    centred: _Array = placed - placed.mean(0)
    return centred
