"""One entry point for whatever a user has: :func:`open_input`.

It unpacks an archive safely into the work folder and finds the one matrix in it (or in a
plain folder that is not itself an MTX folder), detects
the format by content (or takes ``format=``), opens the reader (giving readers that spill
their own folder in the work folder), joins ``--obs``/``--var`` metadata, and checks
for negative values when the input is declared counts (``layer="counts"``, ``counts=True``
or ``input_kind="counts"``) or log1p (``input_kind="log1p"``). Errors about files inside an
archive name them as ``archive:member``.

    >>> with open_input("upload.zip", workdir=Path("work/v1"), obs="cells.csv") as src:
    ...     src.obs().columns                                           # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, InputNotFound, InvalidValue, UnreadableInput
from ._archive import ArchiveLimits, archive_kind, unpack
from ._checks import check_column_names
from ._metadata import join_metadata, read_table
from ._readers import ReaderSpec, readers
from ._sniff import HDF5_MAGIC, raw_head
from ._source import Block, MatrixSource
from ._workdir import Scratch, scratch_folder

__all__ = ["InputSource", "open_input"]

_LISTED = 20


def _recognise(path: Path, specs: list[ReaderSpec]) -> str | None:
    return next((s.name for s in specs if s.sniff(path)), None)


def _listing(root: Path) -> str:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    shown = ", ".join(files[:_LISTED]) + (f", … ({len(files)} files)" if len(files) > _LISTED else "")
    return shown or "nothing"


def _find_matrix(root: Path, archive: Path, specs: list[ReaderSpec], forced: bool) -> Path:
    """The one matrix (file or MTX folder) under ``root``; refuses none or several.

    With a forced format and nothing it recognises, an archive of exactly one file gives
    that file (the user named its format).
    """
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if _recognise(here, specs):
            found.append(here)
            dirs.clear()
            continue
        dirs.sort()
        found += [here / f for f in sorted(files) if _recognise(here / f, specs)]
    every = [p for p in root.rglob("*") if p.is_file()]
    if not found and forced and len(every) == 1:
        return every[0]
    tried = ", ".join(s.name for s in specs)
    if not found:
        raise UnreadableInput(
            f"{archive}: holds no matrix in a known format (formats tried: "
            f"{tried}); it holds: {_listing(root)}"
        )
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(root)) or "." for p in found)
        raise UnreadableInput(
            f"{archive}: holds {len(found)} matrices ({names}); an input must hold "
            f"one (it holds: {_listing(root)})"
        )
    return found[0]


def _open_reader(spec: ReaderSpec, path: Path, layer: str | None, workdir: Path | None) -> MatrixSource:
    """Open with ``spec``, handing a work folder to readers whose opener takes one."""
    if "workdir" in inspect.signature(spec.open).parameters:
        return spec.open(path, layer=layer, workdir=workdir)
    return spec.open(path, layer=layer)


Metadata = tuple[pd.DataFrame, pd.DataFrame]
"""The cell (obs) and gene (var) frames of an input, metadata files joined."""


class InputSource(MatrixSource):
    """A reader's source with metadata joined, counts checked and archive paths relabelled."""

    def __init__(
        self,
        inner: MatrixSource,
        path: Path,
        *,
        metadata: Metadata | Callable[[], Metadata],
        counts: bool | str,
        relabel: tuple[str, str] | None,
        scratch: Scratch | None,
    ) -> None:
        """``metadata``: the cell and gene frames, or what makes them when first asked for."""
        super().__init__(path)
        self.inner, self.format = inner, inner.format
        self._metadata = metadata
        self._counts = "counts" if counts is True else counts or None  # the kind declared non-negative
        self._relabel, self._scratch = relabel, scratch

    @property
    def shape(self) -> tuple[int, int]:
        return self.inner.shape

    @property
    def dtype(self) -> np.dtype:
        return self.inner.dtype

    @property
    def nnz_hint(self) -> int | None:
        return self.inner.nnz_hint

    def _frames(self) -> Metadata:
        if callable(self._metadata):
            self._metadata = self._metadata()
        return self._metadata

    def obs(self) -> pd.DataFrame:
        return self._frames()[0].copy()

    def var(self) -> pd.DataFrame:
        return self._frames()[1].copy()

    def obsm(self) -> dict[str, np.ndarray]:
        found = self.inner.obsm()
        check_column_names(list(found), where=self.path, what="obsm")
        return found

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        try:
            for block in self.inner.iter_blocks(block_nnz=block_nnz, columns=columns):
                if self._counts:
                    self._check_counts(block)
                yield block
        except InputError as exc:
            raise _relabelled(exc, self._relabel) from None

    @property
    def row_ranges(self) -> bool:
        return self.inner.row_ranges

    def iter_rows(self, start: int, stop: int, *, block_nnz: int, ring: int = 0) -> Iterator[Block]:
        try:
            for block in self.inner.iter_rows(start, stop, block_nnz=block_nnz, ring=ring):
                if self._counts:
                    self._check_counts(block)
                yield block
        except InputError as exc:
            raise _relabelled(exc, self._relabel) from None

    def _check_counts(self, block: Block) -> None:
        data = block.matrix.data
        negative = data < 0
        if not negative.any():
            return
        k = int(np.argmax(negative))
        row = int(np.searchsorted(block.matrix.indptr, k, side="right")) - 1 + block.row_start
        col = int(block.matrix.indices[k]) + block.col_start
        obs, var = self._frames()
        raise InvalidValue(
            f"{self.path}: negative value {data[k]:g} found at row {row + 1} "
            f"(cell {obs.index[row]!r}), column {col + 1} (gene {var.index[col]!r}) "
            f"in a {self._counts} matrix"
        )

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()


def _relabelled(exc: InputError, relabel: tuple[str, str] | None) -> InputError:
    """``exc`` with the unpack folder in its message replaced by ``archive:``."""
    if relabel is not None and exc.args:
        root, archive = relabel
        text = str(exc.args[0]).replace(f"{root}/", f"{archive}:").replace(root, archive)
        exc.args = (text, *exc.args[1:])
    return exc


def open_input(
    path: str | Path,
    *,
    workdir: Path | None = None,
    format: str | None = None,
    layer: str | None = None,
    obs: str | Path | None = None,
    var: str | Path | None = None,
    allow_missing_metadata: bool = False,
    max_categories: int = 10_000,
    counts: bool = False,
    archive_limits: ArchiveLimits | None = None,
    input_kind: str | None = None,
    lazy_metadata: bool = False,
) -> InputSource:
    """Open any supported input (file, MTX folder, folder or archive holding one) as one source.

    ``workdir`` receives unpacked archives and spilled text matrices (a temporary folder
    when None; removed on ``close()`` either way). ``format`` names a reader and skips
    detection. ``layer="counts"``, or ``counts=True``, declares that the matrix holds counts:
    a negative value is then an error, as it is with ``input_kind`` "counts" or "log1p"
    (``scaled``, or None: any value). Bad input raises :class:`~widecube.errors.InputError`.

    ``lazy_metadata``: the cell and gene metadata (the file's, joined with ``obs``/``var``)
    are read when first asked for, not here, and a fault in them is raised then: for a
    reader of some rows that names a cell only in an error (a cluster's pass-1 task; on
    B1M, reading and checking 10^6 cell names took each of its 16 tasks 0.6-1 s).
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{path}: no such file or folder")
    specs = readers()
    if format is not None:
        specs = [s for s in specs if s.name == format]
        if not specs:
            raise UnreadableInput(
                f"{path}: unknown format {format!r}; known formats: {', '.join(s.name for s in readers())}"
            )
    scratch: Scratch | None = None
    relabel: tuple[str, str] | None = None
    try:
        target = path
        if archive_kind(path) is not None and not (format is not None and specs[0].sniff(path)):
            scratch = scratch_folder(workdir, "input")
            root = unpack(path, scratch / "unpacked", archive_limits)
            relabel = (str(root), str(path))
            target = _find_matrix(root, path, specs, forced=format is not None)
        elif path.is_dir() and _recognise(path, specs) is None:
            target = _find_matrix(path, path, specs, forced=format is not None)  # e.g. a watched drop
        inner = _open_spec(target, specs, forced=format is not None, layer=layer, workdir=workdir)

        def metadata() -> Metadata:
            try:
                cells = _named(inner.obs(), target, "obs column")
                cells = _joined(cells, obs, "cell", allow_missing_metadata, max_categories)
                genes = _named(inner.var(), target, "var column")
                return cells, _joined(genes, var, "gene", allow_missing_metadata, max_categories)
            except InputError as exc:  # raised later when lazy: named as the caller knows the input
                _relabelled(exc, relabel)
                raise

        try:
            frames = metadata if lazy_metadata else metadata()
        except BaseException:
            inner.close()
            raise
    except BaseException as exc:
        if scratch is not None:
            scratch.cleanup()
        if isinstance(exc, InputError):
            _relabelled(exc, relabel)
        raise
    return InputSource(
        inner,
        path,
        metadata=frames,
        counts=(
            "counts"
            if counts or layer == "counts" or input_kind == "counts"
            else "log1p"
            if input_kind == "log1p"
            else False
        ),
        relabel=relabel,
        scratch=scratch,
    )


def _joined(
    base: pd.DataFrame, file: str | Path | None, what: str, allow_missing: bool, max_categories: int
) -> pd.DataFrame:
    """``base`` with the metadata file joined on id (``base`` itself when there is none)."""
    if file is None:
        return base
    meta = _named(read_table(Path(file)), Path(file), "obs column" if what == "cell" else "var column")
    return join_metadata(
        base, meta, file=Path(file), what=what, allow_missing=allow_missing, max_categories=max_categories
    )


def _named(frame: pd.DataFrame, where: Path, what: str) -> pd.DataFrame:
    """``frame``, its column names checked (they become file names in the snapshot)."""
    check_column_names(list(frame.columns), where=where, what=what)
    return frame


def _open_spec(
    target: Path, specs: list[ReaderSpec], *, forced: bool, layer: str | None, workdir: Path | None
) -> MatrixSource:
    """Open ``target`` with the reader that recognises it, or with the one the user named."""
    if forced:
        return _open_reader(specs[0], target, layer, workdir)
    name = _recognise(target, specs)
    if name is None and raw_head(target, 8) == HDF5_MAGIC:
        raise UnreadableInput(
            f"{target}: an HDF5 file that cannot be read as a matrix: truncated, "
            "corrupt, or not h5ad, 10x or Loom"
        )
    if name is None:
        tried = ", ".join(s.name for s in specs)
        raise UnreadableInput(f"{target}: not a recognised matrix file (formats tried: {tried})")
    return _open_reader(next(s for s in specs if s.name == name), target, layer, workdir)
