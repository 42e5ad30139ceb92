"""Shared fixtures: settings on a temporary storage root, and an .h5ad maker."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import pytest

from _data import MakeH5ad, small_adata, write_h5ad
from widecube.config import Settings

# The suite before governed access tests the data path in single-user mode (every caller an
# admin, as `serve` allows on loopback only); tests of access itself turn authentication on
# explicitly (tests/test_access*.py). Servers the tests start inherit this.
os.environ.setdefault("WIDECUBE_AUTH", "off")
# and without a rate limit that load tests would run into (tests/api/test_http_hardening.py sets one)
os.environ.setdefault("WIDECUBE_RATE_LIMIT", "1000000000/minute")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage=tmp_path / "store")


@pytest.fixture
def make_h5ad(tmp_path: Path) -> MakeH5ad:
    def make(adata: ad.AnnData | None = None, name: str = "in.h5ad", **kw: str) -> Path:
        return write_h5ad(adata if adata is not None else small_adata(), tmp_path / name, **kw)

    return make
