"""What every reader gives the pipeline: a matrix source that streams sparse blocks.

A source is cells × genes. It yields :class:`Block` objects, each a CSR slab of the matrix
placed at ``(row_start, col_start)``; row-major files yield full-width row blocks, gene-major
files (CSC) yield full-height column blocks. Consumers add each block into accumulators,
so they work the same on both, and nothing ever holds the whole matrix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Block", "MatrixSource"]


@dataclass(frozen=True)
class Block:
    """A CSR slab of the matrix: rows ``row_start + i``, columns ``col_start + j``."""

    row_start: int
    col_start: int
    matrix: sp.csr_matrix

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)


class MatrixSource(ABC):
    """An opened input matrix: its shape, its obs and var, and a block stream."""

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]:
        """(n_cells, n_genes)."""

    @property
    @abstractmethod
    def dtype(self) -> np.dtype:
        """The stored value type (float or integer)."""

    @abstractmethod
    def obs(self) -> pd.DataFrame:
        """Cell metadata, one row per matrix row, index = cell ids."""

    @abstractmethod
    def var(self) -> pd.DataFrame:
        """Gene metadata, one row per matrix column, index = gene names."""

    @property
    def nnz_hint(self) -> int | None:
        """Stored values in the matrix, if known without reading it (sizes the spill)."""
        return None

    @property
    def nnz_expected(self) -> int:
        """:attr:`nnz_hint`, or a tenth of the matrix where it is not known: what pass 1
        sizes its buckets, blocks and threads by."""
        hint = self.nnz_hint
        n_cells, n_genes = self.shape
        return hint if hint is not None else n_cells * n_genes // 10

    def obsm(self) -> dict[str, np.ndarray]:
        """Per-cell embeddings (e.g. ``X_umap``), each ``(n_cells, d)``; none by default."""
        return {}

    @abstractmethod
    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        """Yield blocks of at most about ``block_nnz`` stored values covering the matrix.

        ``columns=(lo, hi)`` says only genes ``lo..hi-1`` are needed; a source may still
        yield wider blocks (consumers clip), but gene-major sources read only those.
        """

    @property
    def row_ranges(self) -> bool:
        """Whether :meth:`iter_rows` reads a range of rows without reading the others (a
        row-major or dense store); pass 1 on a cluster splits such an input by rows."""
        return False

    def iter_rows(self, start: int, stop: int, *, block_nnz: int, ring: int = 0) -> Iterator[Block]:
        """Full-width row blocks of rows ``start..stop-1``, in order (if :attr:`row_ranges`).

        ``ring`` > 0 lets a reader reuse the arrays of a block ``ring`` blocks later (for a
        consumer holding fewer blocks than that at once); readers may ignore it."""
        raise NotImplementedError(f"{self.path.name}: the {self.format} reader reads no row ranges")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def __enter__(self) -> MatrixSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
