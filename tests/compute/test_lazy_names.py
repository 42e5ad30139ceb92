"""``widecube.compute`` loads its names on first use: the map behind it names every public name
and the right module, and reading snapshots does not import the two passes."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import widecube.compute as compute


def test_every_public_name_resolves_from_the_module_that_defines_it() -> None:
    where = compute._WHERE
    assert sorted(where) == sorted(compute.__all__)
    for name, module in where.items():
        defined = importlib.import_module(f"widecube.compute.{module}")
        assert getattr(compute, name) is getattr(defined, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        compute.nothing  # noqa: B018


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
