"""Shared fixtures: settings on a temporary storage root, and an .h5ad maker.

And one collection shortcut: under ``-m`` (the fast layer, ``make test-unit``), a test module
whose module-level ``pytestmark`` already rules out every test in it is not imported at all
(see :func:`pytest_ignore_collect`).
"""

from __future__ import annotations

import ast
import itertools
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


def _module_marks(path: Path) -> frozenset[str] | None:
    """The mark names of a test module's ``pytestmark = pytest.mark.x`` (or a list of them),
    read from its source without importing it; None when it has none or another form."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "pytestmark"
        ):
            continue
        values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
        names = set()
        for value in values:
            if not (  # exactly pytest.mark.<name>
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Attribute)
                and value.value.attr == "mark"
                and isinstance(value.value.value, ast.Name)
                and value.value.value.id == "pytest"
            ):
                return None
            names.add(value.attr)
        return frozenset(names)
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m EXPR``, skip importing a test module none of whose tests EXPR can select.

    Every test of a module carries the module's marks and maybe more, so the module is
    skipped only when EXPR is false for its marks together with any combination of the other
    names EXPR mentions: exactly the tests ``-m`` would deselect after collecting them. This
    keeps the fast layer from importing (and, for the OpenAPI contract, generating) what it
    then throws away. Without ``-m``, or with an expression this cannot reason about
    (keyword arguments), everything is collected as usual.
    """
    markexpr = config.getoption("markexpr", default="")
    if not markexpr or not (collection_path.suffix == ".py" and collection_path.name.startswith("test_")):
        return None
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
        mentioned = expression.idents()
    except Exception:  # another pytest's private API, or a malformed EXPR: pytest reports it
        return None
    if "=" in markexpr:  # marks with keyword arguments: not decided from names alone
        return None
    marks = _module_marks(collection_path)
    if not marks:
        return None
    others = sorted(mentioned - marks)
    for extra in itertools.chain.from_iterable(
        itertools.combinations(others, k) for k in range(len(others) + 1)
    ):
        present = marks | set(extra)
        if expression.evaluate(lambda name, /, present=present, **kw: name in present):
            return None  # some test of the module could still be selected
    return True


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage=tmp_path / "store")


@pytest.fixture
def make_h5ad(tmp_path: Path) -> MakeH5ad:
    def make(adata: ad.AnnData | None = None, name: str = "in.h5ad", **kw: str) -> Path:
        return write_h5ad(adata if adata is not None else small_adata(), tmp_path / name, **kw)

    return make
