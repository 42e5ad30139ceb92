"""The import rules of the layering, checked over the source with ``ast``.

Layers, top to bottom: api/cli → query/pipeline → views → compute → snapshot/catalog/io. A
lower layer never imports a higher one (compute does not import views), and no module imports
another package's private ``_x`` module: packages talk through their public names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "widecube"
LOWER = ("compute", "snapshot", "catalog", "io")
UPPER = ("widecube.query", "widecube.pipeline", "widecube.api", "widecube.cli", "widecube.views")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` (module ``module``, default: its
    own); ``from X import name`` also yields ``X.name`` (the name may be a submodule)."""
    module = module or _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name == "widecube" or name.startswith("widecube.")]


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private_owner(name: str) -> str | None:
    """The package whose private module ``name`` is (or lies in), None if it is public."""
    parts = name.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__") and _is_module(".".join(parts[: i + 1])):
            return ".".join(parts[:i])
    return None


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_sources_are_found() -> None:
    """The checks below see the package (an empty glob would pass them vacuously)."""
    names = {_module(p) for p in SOURCES}
    assert {"widecube.compute.moments", "widecube.query", "widecube.api.app", "widecube.cli"} <= names


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_do_not_import_upward(layer: str) -> None:
    bad = [
        f"{_module(p)}:{line} imports {name}"
        for p in sorted((PACKAGE / layer).rglob("*.py"))
        for line, name in _imports(p)
        if name.startswith(UPPER) and not name.startswith(f"widecube.{layer}")
    ]
    assert bad == []


def test_no_import_of_another_packages_private_module() -> None:
    bad = set()
    for path in SOURCES:
        importer = _module(path)
        for line, name in _imports(path):
            owner = _private_owner(name)
            if owner is not None and importer != owner and not importer.startswith(owner + "."):
                bad.add(f"{importer}:{line} imports {name}")
    assert sorted(bad) == []


def test_the_checks_catch_a_violation(tmp_path: Path) -> None:
    """The detector itself: an upward import and a private cross-package import are found."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..views import get_view\nfrom ..io._archive import archive_kind\n")
    names = [name for _, name in _imports(probe, "widecube.compute.probe")]
    assert "widecube.views" in names and "widecube.io._archive" in names
    assert _private_owner("widecube.io._archive") == "widecube.io"
    assert _private_owner("widecube.io") is None


def test_no_two_modules_share_a_name() -> None:
    """One name, one module: a reader of a traceback or an import knows which file it means."""
    names: dict[str, list[str]] = {}
    for path in SOURCES:
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(_module(path))
    assert len(names) > 50
    assert {n: m for n, m in names.items() if len(m) > 1} == {}
