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
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog, VersionRecord
from ..compute import default_groupbys, parse_groupbys, spill_by_gene
from ..config import Settings
from ..errors import InputError, WidecubeError
from ..io import ArchiveLimits, open_input
from ..snapshot import Snapshot, SnapshotWriter, sha256_file
from ..views import NORMALIZED, RAW, BuildContext, views
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
    obs: str | Path | None = None,
    var: str | Path | None = None,
    allow_missing_metadata: bool = False,
    max_unpacked: int | None = None,
) -> VersionRecord:
    """Build, verify and publish a new version of ``dataset`` from the file at ``path``.

    ``path`` is a matrix in any registered format, an MTX folder, or an archive holding one
    (:func:`widecube.io.open_input`); ``obs``/``var`` name cell/gene metadata files joined on
    id; ``max_unpacked`` caps an archive's expanded size in bytes (default 20 × its size).
    """
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
    params: dict[str, Any] = {"groupbys": list(groupbys or []), "layer": layer, "format": format,
                              "obs": Path(obs).name if obs else None, "var": Path(var).name if var else None,
                              "allow_missing_metadata": allow_missing_metadata}  # fmt: skip
    inputs: dict[str, Any] = {"obs": obs, "var": var, "allow_missing_metadata": allow_missing_metadata,
                              "archive_limits": ArchiveLimits(max_bytes=max_unpacked)}  # fmt: skip
    catalog.create_version(dataset, version, input_name=path.name, input_sha256=None, params=params)
    progress = _saving(progress, catalog, dataset, version)
    staging = settings.storage / "staging" / version
    work = settings.storage / "work" / version
    final_rel = f"datasets/{dataset}/{version}"
    final = settings.storage / final_rel
    try:
        manifest = _build(path, dataset, version, groupbys, layer, format, settings, staging,
                          work, progress, inputs)  # fmt: skip
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
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """Pass 1 spills the input by gene; pass 2 feeds gene slabs to every registered view."""
    with open_input(path, workdir=work, format=format, layer=layer, max_categories=settings.max_categories,
                    **inputs) as source, ThreadPoolExecutor(1) as pool:  # fmt: skip
        digest = pool.submit(sha256_file, path) if path.is_file() else None
        obs, var = source.obs(), source.var()
        _check_unique(path, obs.index, "cell id")
        _check_unique(path, var.index, "gene name")
        keys = parse_groupbys(groupbys) or default_groupbys(obs, max_categories=settings.max_categories)
        ctx = BuildContext(dataset, version, obs, var, keys, settings.max_categories,
                           quantiles=tuple(settings.quantiles), target_sum=settings.target_sum)  # fmt: skip
        for key in keys:
            ctx.grouping(key)  # a bad --groupby fails before the long pass
        spill = spill_by_gene(source, obs_names=obs.index, var_names=var.index, workdir=work,
                              block_nnz=settings.block_nnz, slab_bytes=settings.memory // 16,
                              progress=_accumulate("read", progress))  # fmt: skip
        out: SnapshotWriter | None = None
        try:
            counts_like = not spill.negative and not spill.non_integer
            ctx.layers = [RAW, NORMALIZED] if counts_like and settings.normalize else [RAW]
            ctx.cell_total, ctx.nnz, ctx.slab_width = spill.cell_total, spill.nnz, spill.width
            ctx.value_dtype = spill.dtype
            ctx.obs = obs.assign(total_counts=spill.cell_total, n_genes_by_counts=spill.cell_nnz)
            out = SnapshotWriter(staging, dataset=dataset, version=version)
            out.write_table("dataset/obs.parquet", ctx.obs)
            out.write_table("dataset/var.parquet", var)
            obsm = source.obsm()
            for key, values in obsm.items():
                out.write_array(f"dataset/obsm.zarr/{key}", values)
            registered = views()
            for view in registered:
                view.begin(ctx, out)
            step = _accumulate("compute", progress)
            for slab in spill.slabs():
                stats = ctx.slab_stats(slab)
                for view in registered:
                    view.consume(ctx, stats, out)
                step(slab.width / ctx.n_genes)
            for i, view in enumerate(registered):
                view.finish(ctx, out)
                progress("write", (i + 1) / len(registered))
        finally:
            spill.cleanup()
            if out is not None:
                out.close()
        n_cells, n_genes = source.shape
        return out.finish(
            n_cells=n_cells,
            n_genes=n_genes,
            layers=ctx.layers,
            default_layer=ctx.layers[-1],
            obsm={k: {"path": f"dataset/obsm.zarr/{k}", "shape": list(v.shape)} for k, v in obsm.items()},
            input={
                "name": path.name,
                "sha256": digest.result() if digest is not None else None,
                "size": path.stat().st_size if path.is_file() else None,
                "format": source.format,
                "layer": layer,
                "counts": counts_like,
            },
            parameters={"groupbys": keys, "layer": layer, "block_nnz": settings.block_nnz,
                        "memory": settings.memory, "quantiles": list(settings.quantiles),
                        "normalize": settings.normalize, "target_sum": settings.target_sum},  # fmt: skip
        )


def _saving(progress: Progress, catalog: Catalog, dataset: str, version: str,
            every: float = 1.0) -> Progress:  # fmt: skip
    """``progress`` that also saves the step and fraction in the catalog, at most once a second."""
    last = [0.0]
    started = time.monotonic()

    def report(step: str, done: float) -> None:
        progress(step, done)
        now = time.monotonic()
        if now - last[0] >= every or done >= 1.0:
            last[0] = now
            catalog.report_progress(dataset, version, {"step": step, "fraction": round(done, 4),
                                                       "elapsed_s": round(now - started, 1)})  # fmt: skip

    return report


def _accumulate(step: str, progress: Progress) -> Callable[[float], None]:
    done = 0.0

    def advance(fraction: float) -> None:
        nonlocal done
        done += fraction
        progress(step, min(done, 1.0))

    return advance


def _check_unique(path: Path, index: Any, what: str) -> None:
    dup = index.duplicated()
    if dup.any():
        name = index[int(np.argmax(dup))]
        where = np.flatnonzero(index == name)[:2]
        raise InputError(f"{path.name}: duplicate {what} {name!r} at positions {where[0]} and {where[1]}")
