"""Ingest one matrix file into a new dataset version: compute, write, verify, publish.

The version is built in ``<storage>/staging/<version>``, verified there, moved to
``<storage>/datasets/<name>/<version>`` and only then published by one catalog transaction.
Any failure marks the version failed with the reason, removes its folders and leaves the
live version untouched.

    >>> ingest("pbmc.h5ad", dataset="pbmc", groupbys=["cell_type", "cell_type,donor"])  # doctest: +SKIP
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..catalog import Catalog, VersionRecord
from ..compute import compute_moments, default_groupbys, parse_groupbys
from ..config import Settings
from ..errors import InputError, WidecubeError
from ..io import open_matrix
from ..snapshot import Snapshot, SnapshotWriter, sha256_file
from ..views import BuildContext, views
from ._verify import verify_snapshot

__all__ = ["Progress", "ingest"]

Progress = Callable[[str, float], None]
"""``progress(step, fraction_of_step_done)``; steps: read, compute, write, verify, publish."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _quiet(step: str, done: float) -> None:
    pass


def ingest(
    path: str | Path,
    *,
    dataset: str,
    groupbys: Sequence[str] | None = None,
    layer: str | None = None,
    format: str | None = None,
    settings: Settings | None = None,
    catalog: Catalog | None = None,
    progress: Progress | None = None,
) -> VersionRecord:
    """Build, verify and publish a new version of ``dataset`` from the file at ``path``."""
    settings = settings or Settings()
    progress = progress or _quiet
    if not _NAME.match(dataset):
        raise InputError(
            f"dataset name {dataset!r} must be letters, digits, '_', '.' or '-' (max 128)"
        )
    path = Path(path)
    own_catalog = catalog is None
    catalog = catalog or Catalog(settings.catalog_url)
    version = uuid.uuid4().hex
    params: dict[str, Any] = {"groupbys": list(groupbys or []), "layer": layer, "format": format}
    catalog.create_version(dataset, version, input_name=path.name, input_sha256=None, params=params)
    staging = settings.storage / "staging" / version
    work = settings.storage / "work" / version
    final_rel = f"datasets/{dataset}/{version}"
    final = settings.storage / final_rel
    try:
        manifest = _build(path, dataset, version, groupbys, layer, format, settings, staging,
                          work, progress)  # fmt: skip
        progress("verify", 0.0)
        verify_snapshot(Snapshot(staging))
        progress("verify", 1.0)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
        info = {
            "groupbys": manifest["parameters"]["groupbys"],
            "views": {k: v["encoding"] for k, v in manifest["views"].items()},
            "input": manifest["input"],
        }
        catalog.mark_verified(dataset, version, path=final_rel, n_cells=manifest["n_cells"],
                              n_genes=manifest["n_genes"], info=info)  # fmt: skip
        record = catalog.publish(dataset, version)  # the last step that may fail
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, WidecubeError) else f"{type(exc).__name__}: {exc}"
        try:
            catalog.mark_failed(dataset, version, reason)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own_catalog:
            catalog.close()
    progress("publish", 1.0)
    return record


def _build(
    path: Path,
    dataset: str,
    version: str,
    groupbys: Sequence[str] | None,
    layer: str | None,
    format: str | None,
    settings: Settings,
    staging: Path,
    work: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Stream the input once and write every registered view into ``staging``."""
    with open_matrix(path, format=format, layer=layer) as source, ThreadPoolExecutor(1) as pool:
        digest = pool.submit(sha256_file, path) if path.is_file() else None
        progress("read", 0.0)
        obs, var = source.obs(), source.var()
        progress("read", 1.0)
        keys = parse_groupbys(groupbys) or default_groupbys(obs, max_categories=settings.max_categories)
        ctx = BuildContext(dataset, version, obs, var, keys, settings.max_categories)
        needed = list(dict.fromkeys(k for view in views() for k in view.needs(ctx)))
        groupings = [ctx.grouping(k) for k in needed]
        done = 0.0

        def advance(fraction: float) -> None:
            nonlocal done
            done += fraction
            progress("compute", min(done, 1.0))

        moments = compute_moments(
            source, groupings, obs_names=obs.index, var_names=var.index,
            memory=settings.memory, block_nnz=settings.block_nnz, workdir=work,
            threads=settings.threads, progress=advance,
        )  # fmt: skip
        out = SnapshotWriter(staging, dataset=dataset, version=version)
        out.write_table("dataset/obs.parquet", obs)
        out.write_table("dataset/var.parquet", var)
        obsm = source.obsm()
        for key, values in obsm.items():
            out.write_array(f"dataset/obsm.zarr/{key}", values)
        registered = views()
        for i, view in enumerate(registered):
            view.write(ctx, moments, out)
            progress("write", (i + 1) / len(registered))
        n_cells, n_genes = source.shape
        return out.finish(
            n_cells=n_cells,
            n_genes=n_genes,
            obsm={k: {"path": f"dataset/obsm.zarr/{k}", "shape": list(v.shape)} for k, v in obsm.items()},
            input={
                "name": path.name,
                "sha256": digest.result() if digest is not None else None,
                "size": path.stat().st_size if path.is_file() else None,
                "format": source.format,
                "layer": layer,
            },
            parameters={"groupbys": keys, "layer": layer, "block_nnz": settings.block_nnz,
                        "memory": settings.memory},  # fmt: skip
        )
