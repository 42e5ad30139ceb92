"""Shared fixtures: settings on a temporary storage root, and an .h5ad maker.

And three things that only save time: under ``-m`` (the fast layer, ``make test-unit``), a test
module whose module-level ``pytestmark`` already rules out every test in it is not imported
(:func:`pytest_ignore_collect`); under xdist, numba's on-disk cache is filled once before
the workers' first test when the kernels changed since it last was (:func:`pytest_configure`,
``_warm.py``); and under xdist the longest test files start first
(:func:`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import ast
import fcntl
import importlib.metadata
import itertools
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import anndata as ad
import pytest

import widecube
from _data import MakeH5ad, small_adata, write_h5ad
from _durations import TABLE
from widecube.config import Settings

# The suite before governed access tests the data path in single-user mode (every caller an
# admin, as `serve` allows on loopback only); tests of access itself turn authentication on
# explicitly (tests/test_access*.py). Servers the tests start inherit this.
os.environ.setdefault("WIDECUBE_AUTH", "off")
# and without a rate limit that load tests would run into (tests/api/test_http_hardening.py sets one)
os.environ.setdefault("WIDECUBE_RATE_LIMIT", "1000000000/minute")


def _import_anyio_whole() -> None:
    """Import every anyio module now, on the main thread, before any test starts a server thread.

    anyio registers a pytest plugin, so pytest rewrites (``ast.parse``) each anyio module it
    imports, and anyio imports most of its names lazily: the first ``anyio.open_file`` of a
    uvicorn server a test runs in a thread (a FileResponse) parsed ``anyio._core._fileio``
    there. CPython 3.11 builds ASTs with interpreter-wide state that two threads building at
    once corrupt (python/cpython#106905: "SystemError: AST constructor recursion depth
    mismatch"), which failed a browser test with a 500 on CI. A probe of the web, API, Dask
    and snapshot tests (a hook logging each module pytest rewrote off the main thread) found
    that module and no other; outside pytest nothing is rewritten.
    """
    import anyio

    for module in pkgutil.walk_packages(anyio.__path__, "anyio."):
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional backend's library (trio) that is not installed
            continue
    for name in dir(anyio):
        getattr(anyio, name)


_import_anyio_whole()


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


_WARM_LOCK = "WIDECUBE_TEST_NUMBA_WARM_LOCK"
"""Names, in the workers' environment, the file the controller holds locked while it warms."""


def _numba_cache_state() -> tuple[Path, dict[str, object]]:
    """Where the warm-up's record lives (beside numba's cache), and what it must say for the
    cache to be warm: the numba and Python versions, the cache folder, and each kernel source
    file's size and mtime (numba's own test of a stale cache entry)."""
    package = Path(widecube.__file__).parent
    sources = sorted(p for p in package.rglob("*.py") if "cache=True" in p.read_text(encoding="utf-8"))
    folder = os.environ.get("NUMBA_CACHE_DIR")
    record = (Path(folder) if folder else package / "__pycache__") / "widecube-tests-numba-warm.json"
    state: dict[str, object] = {
        "numba": importlib.metadata.version("numba"),
        "python": sys.version,
        "cache": folder or "",
        "sources": [[str(p.relative_to(package)), p.stat().st_size, p.stat().st_mtime_ns] for p in sources],
    }
    return record, state


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, warm numba's cache from the controller while the workers start.

    When the record beside the cache does not match the kernels' sources (a fresh checkout,
    an edited kernel), ``_warm.py`` runs in two processes and the workers wait for them before
    their first test (a shared lock on a file the controller holds exclusively meanwhile), so
    the kernels are compiled once rather than by every process that needs them first.
    """
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", default=None):
        return
    if config.getoption("collectonly", default=False):
        return
    record, state = _numba_cache_state()
    try:
        if json.loads(record.read_text()) == state:
            return
    except (OSError, ValueError):
        pass
    folder = Path(tempfile.mkdtemp(prefix="widecube-warm-"))
    lock = folder / "lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.environ[_WARM_LOCK] = str(lock)  # before xdist starts the workers: they inherit it
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(widecube.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    script = str(Path(__file__).with_name("_warm.py"))
    procs = []
    for part in ("ingest", "demo"):
        (folder / part).mkdir()
        with (folder / f"{part}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, script, part, str(folder / part)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def finish() -> None:
        ok = True
        for proc in procs:
            try:
                ok = proc.wait(timeout=900) == 0 and ok
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                ok = False
        try:
            if ok:
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps(state))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            shutil.rmtree(folder, ignore_errors=True)

    thread = threading.Thread(target=finish, name="numba-warm-up", daemon=True)
    thread.start()
    config.stash[_warm_key] = (procs, thread)


_warm_key = pytest.StashKey[tuple[list["subprocess.Popen[bytes]"], threading.Thread]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    procs, thread = config.stash.get(_warm_key, ([], None))
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    if thread is not None:
        thread.join()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """An xdist worker waits for the controller's warm-up (if any) before its first test."""
    lock = os.environ.get(_WARM_LOCK)
    if lock and hasattr(session.config, "workerinput"):
        with open(lock) as held:
            fcntl.flock(held, fcntl.LOCK_SH)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (``durations.json``, refreshed by ``_durations.py``; a file not in it
    counts as the median one), so that xdist's ``loadfile`` ends on short files on every worker.
    Without this, xdist orders files by their number of tests, which put the single-test load
    and replica files (25 to 50 s each) last, each alone on a worker while the others idle."""
    if not hasattr(config, "workerinput"):  # only xdist's workers collect for loadfile
        return
    table: dict[str, float] = json.loads(TABLE.read_text())
    known = sorted(table.values())
    median = known[len(known) // 2] if known else 0.0
    rank = {}
    for item in items:
        file = item.nodeid.split("::")[0]
        rank.setdefault(file, table.get(file, median))
    items.sort(key=lambda item: -rank[item.nodeid.split("::")[0]])  # stable: tests keep their order


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage=tmp_path / "store")


@pytest.fixture
def make_h5ad(tmp_path: Path) -> MakeH5ad:
    def make(adata: ad.AnnData | None = None, name: str = "in.h5ad", **kw: str) -> Path:
        return write_h5ad(adata if adata is not None else small_adata(), tmp_path / name, **kw)

    return make
