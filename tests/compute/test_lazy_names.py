"""``widecube.compute``, ``widecube.pipeline`` and ``widecube.snapshot`` load their names on first
use: the map behind each names every public name and the right module, reading snapshots does
not import the two passes, and a job worker waiting for jobs imports none of the engine."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import widecube.compute as compute
import widecube.pipeline as pipeline
import widecube.snapshot as snapshot


@pytest.mark.parametrize("package", [compute, pipeline, snapshot], ids=lambda p: p.__name__)
def test_every_public_name_resolves_from_the_module_that_defines_it(package: object) -> None:
    where = package._WHERE  # type: ignore[attr-defined]
    assert len(where) > 10
    assert sorted(where) == sorted(package.__all__)  # type: ignore[attr-defined]
    for name, module in where.items():
        relative = module if module.startswith(".") else f".{module}"
        defined = importlib.import_module(relative, package.__name__)  # type: ignore[attr-defined]
        assert getattr(package, name) is getattr(defined, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        package.nothing  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.subprocess
def test_the_query_facade_does_not_import_the_passes_or_the_input_readers() -> None:
    """Nor scipy's clustering (and the linear algebra under it): the dendrogram route imports it."""
    probe = (
        "import json, sys, widecube.query; "
        "print(json.dumps([m for m in ('widecube.compute._pass', 'widecube.io', 'anndata', 'dask', "
        "'scipy.cluster', 'scipy.spatial') if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.subprocess
def test_the_cli_and_the_jobs_facade_import_anndata_dask_and_psycopg_only_when_used() -> None:
    """anndata (and the dask it imports) cost about a second of start-up; the h5ad reader
    imports it when it reads obs or var, so ``widecube jobs`` or a CSV ingest never pays it.
    psycopg (0.14 s) is imported by a PostgreSQL catalog's change listener, not by SQLite's."""
    probe = (
        "import json, sys, widecube.cli, widecube.pipeline, widecube.io; "
        "print(json.dumps([m for m in ('anndata', 'dask', 'psycopg') if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


_ENGINE = ("widecube.views", "widecube.compute._kernels", "widecube.io", "zarr", "pandas", "numba", "h5py")


@pytest.mark.subprocess
def test_a_worker_waiting_for_jobs_imports_none_of_the_engine(tmp_path: Path) -> None:
    """``serve`` keeps a ``widecube work`` process; until a job comes it needs the catalog and
    the runner only (the engine's imports cost 1.9 CPU-s per process)."""
    probe = (
        "import json, sys, threading, widecube.cli as cli, widecube.pipeline as p; "
        f"threading.Timer(2.0, lambda: (print(json.dumps([m for m in {_ENGINE!r} if m in sys.modules]), "
        "flush=True), "
        "__import__('os')._exit(0))).start(); "
        "sys.argv = ['widecube', 'work']; cli.app()"
    )
    env = {**os.environ, "WIDECUBE_STORAGE": str(tmp_path / "store")}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began >= 2.0  # it waited for jobs, it did not exit at once
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert (tmp_path / "store").is_dir()  # it opened the catalog
