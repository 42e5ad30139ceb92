"""The wide Parquet reader: one row per cell, one numeric column per gene, plus a cell id.

The cell id column is the pandas index when the file was written by pandas
(``df.to_parquet()``), else the first column. Parquet is columnar, so only the genes a pass
asks for are read (``columns=(lo, hi)``), in row batches of about ``block_nnz`` values
(``iter_batches``), each turned into a row-major tensor and then CSR. Shape and cell ids
come from the footer and the id column alone, so nothing is spilled. Null values are
refused with the seed's wording (``Null value found at cell c2, gene Gene1``).

    >>> with ParquetSource(Path("cells.parquet")) as src: ...             # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ....errors import InvalidValue, UnreadableInput
from ..._checks import check_shape, check_unique, nonfinite_error
from ..._readers import ReaderSpec, register_reader
from ..._sniff import PARQUET_MAGIC, raw_head
from ..._source import Block, MatrixSource
from .._dense import dense_to_csr

__all__ = ["ParquetSource"]


def _sniff(path: Path) -> bool:
    return raw_head(path, 4) == PARQUET_MAGIC


def _numeric(t: pa.DataType) -> bool:
    """Integer or float32/64 (Arrow cannot convert float16 into a tensor)."""
    return bool(pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t))


class ParquetSource(MatrixSource):
    """An opened wide Parquet file."""

    format = "parquet"

    def __init__(self, path: Path, *, layer: str | None = None) -> None:
        super().__init__(path)
        if layer not in (None, "counts"):
            raise UnreadableInput(f"{path}: a Parquet file has no layers (asked for {layer!r})")
        try:
            self._file = pq.ParquetFile(path)
            schema = self._file.schema_arrow
            pandas_meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
            index = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
            self._id = index[0] if index else schema.names[0]
            self._genes = [n for n in schema.names if n != self._id]
            check_unique(schema.names, where=path, what="column name", place=lambda i: f"column {i + 1}")
            for name in self._genes:
                if not _numeric(schema.field(name).type):
                    kind = schema.field(name).type
                    what = (
                        "float16 (halffloat), which cannot be read; store float32"
                        if pa.types.is_float16(kind)
                        else f"{kind}, not numbers"
                    )
                    raise UnreadableInput(
                        f"{path}: column {name!r} holds {what} (every column but the cell id must be a gene)"
                    )
            self._n_cells = int(self._file.metadata.num_rows)
            check_shape(path, self._n_cells, len(self._genes))
            ids = self._file.read(columns=[self._id]).column(0).cast(pa.string())
            if ids.null_count:
                row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
                raise UnreadableInput(f"{path}: empty (null) cell id in column {self._id!r} at row {row + 1}")
            self._cells = pd.Index(ids.to_numpy(zero_copy_only=False), dtype=object)
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableInput(f"{path}: not a readable Parquet file ({exc})") from exc
        check_unique(self._cells, where=path, what="cell id", place=lambda i: f"row {i + 1}")
        types = {schema.field(n).type for n in self._genes}
        self._dtype = np.dtype(np.float32) if types == {pa.float32()} else np.dtype(np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        return self._n_cells, len(self._genes)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def obs(self) -> pd.DataFrame:
        return pd.DataFrame(index=self._cells.copy())

    def var(self) -> pd.DataFrame:
        return pd.DataFrame(index=pd.Index(self._genes, dtype=object))

    def iter_blocks(self, *, block_nnz: int, columns: tuple[int, int] | None = None) -> Iterator[Block]:
        lo, hi = columns if columns is not None else (0, len(self._genes))
        names = self._genes[lo:hi]
        rows = max(1, block_nnz // max(1, hi - lo))
        start = 0
        try:
            for batch in self._file.iter_batches(batch_size=rows, columns=names, use_threads=True):
                dense = batch.to_tensor(null_to_nan=True, row_major=True).to_numpy()
                m, bad = dense_to_csr(dense.astype(self._dtype, copy=False))
                if bad is not None:
                    raise self._bad_value(batch, start, lo, *bad)
                yield Block(start, lo, m)
                start += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableInput(
                f"{self.path}: read failed near row {start + 1}, file truncated or corrupt ({exc})"
            ) from exc

    def _bad_value(self, batch: pa.RecordBatch, start: int, lo: int, r: int, c: int) -> InvalidValue:
        cell, gene = self._cells[start + r], self._genes[lo + c]
        value = batch.column(c)[r]
        if not value.is_valid:
            return InvalidValue(
                f"{self.path}: Null value found at cell {cell}, gene {gene} "
                f"(row {start + r + 1}, column {lo + c + 1})"
            )
        return nonfinite_error(
            self.path, float(value.as_py()), row=start + r, col=lo + c, cell=cell, gene=gene
        )

    def close(self) -> None:
        self._file.close()


register_reader(ReaderSpec("parquet", _sniff, ParquetSource))
