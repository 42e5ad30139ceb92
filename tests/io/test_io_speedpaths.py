"""The fast reader paths against independent references: the MTX scanner against
``scipy.io.mmread``, the threaded gzip-chunk reader of 10x h5 against the matrix written.

Files are written by scipy / h5py / hand (never by widecube); the parallel scanner's piece
size is made tiny so that lines fall across piece and half boundaries.
"""

from __future__ import annotations

import gc
import gzip
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from _io_writers import gene_ids
from widecube.errors import InputError, InvalidValue, UnreadableInput
from widecube.io import MatrixSource, open_input
from widecube.io.formats.hdf5._chunks import inflating_reader
from widecube.io.formats.text import _mtxstream


def _dense(src: MatrixSource) -> np.ndarray:
    out = np.zeros(src.shape)
    for block in src.iter_blocks(block_nnz=7):
        m, r, c = block.matrix, block.row_start, block.col_start
        out[r : r + m.shape[0], c : c + m.shape[1]] += m.toarray()
    return out


def _names(folder: Path, n_genes: int, n_cells: int) -> None:
    genes = [f"G{j}" for j in range(n_genes)]
    (folder / "features.tsv").write_text(
        "".join(f"{i}\t{g}\tGene Expression\n" for i, g in zip(gene_ids(genes), genes, strict=True))
    )
    (folder / "barcodes.tsv").write_text("".join(f"c{i}\n" for i in range(n_cells)))


def _mtx(tmp: Path, body: str, *, gz: bool = False) -> Path:
    """A 10x folder whose matrix.mtx is ``body`` verbatim (genes × cells per its size line)."""
    folder = tmp / "m"
    folder.mkdir(parents=True, exist_ok=True)
    size = next(line for line in body.splitlines()[1:] if not line.startswith("%"))
    n_genes, n_cells = (int(v) for v in size.split()[:2])
    _names(folder, n_genes, n_cells)
    if gz:
        (folder / "matrix.mtx.gz").write_bytes(gzip.compress(body.encode()))
    else:
        (folder / "matrix.mtx").write_text(body)
    return folder


def _reference(folder: Path) -> np.ndarray:
    path = next(folder.glob("matrix.mtx*"))
    return np.asarray(scipy.io.mmread(str(path)).toarray()).T  # cells × genes


@pytest.fixture(autouse=True)
def _tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mtxstream, "PIECE_BYTES", 64)


def _random(shape: tuple[int, int], seed: int, density: float = 0.2) -> sp.coo_matrix:
    rng = np.random.default_rng(seed)
    m = sp.random(*shape, density=density, random_state=rng, format="coo")
    m.data = np.round(m.data * 50) + 1
    return m


@pytest.mark.parametrize("field", ["integer", "real", "pattern"])
@pytest.mark.parametrize("order", ["cell", "shuffled"])
@pytest.mark.parametrize("gz", [False, True])
def test_mtx_matches_scipy(field: str, order: str, gz: bool, tmp_path: Path) -> None:
    m = _random((23, 31), seed=3)  # genes × cells
    if field == "real":
        m.data = m.data / 7 - 2.5
    stored = sp.csc_matrix(m) if order == "cell" else m
    folder = tmp_path / "m"
    folder.mkdir()
    _names(folder, 23, 31)
    scipy.io.mmwrite(str(folder / "matrix.mtx"), stored, field=field)
    if gz:
        (folder / "matrix.mtx.gz").write_bytes(gzip.compress((folder / "matrix.mtx").read_bytes()))
        (folder / "matrix.mtx").unlink()
    with open_input(folder) as src:
        assert src.shape == (31, 23)
        np.testing.assert_allclose(_dense(src), _reference(folder), rtol=1e-15)


def test_comments_blank_lines_tabs_and_crlf(tmp_path: Path) -> None:
    body = (
        "%%MatrixMarket matrix coordinate real general\n% made by hand\n%\n3 4 5\n"
        "1 1 1.5\r\n\n% a comment among entries\n  2\t1   -2e-3  \n3 2 .25\n"
        "1 3 7\n2 4 1E2"
    )
    folder = _mtx(tmp_path, body)
    genes_by_cells = np.zeros((3, 4))  # by hand: scipy's reader refuses comments among entries
    genes_by_cells[0, 0], genes_by_cells[1, 0], genes_by_cells[2, 1] = 1.5, -2e-3, 0.25
    genes_by_cells[0, 2], genes_by_cells[1, 3] = 7, 100
    with open_input(folder) as src:
        np.testing.assert_array_equal(_dense(src), genes_by_cells.T)


def test_a_line_across_every_piece_and_half_boundary(tmp_path: Path) -> None:
    """Pieces of 64 bytes, halves of ~32: every entry line lands on some boundary."""
    m = _random((40, 60), seed=5, density=0.3)
    body = f"%%MatrixMarket matrix coordinate integer general\n%\n40 60 {m.nnz}\n"
    order = np.lexsort((m.row, m.col))
    rows, cols, vals = m.row[order], m.col[order], m.data[order]
    body += "".join(f"{r + 1} {c + 1} {int(v)}\n" for r, c, v in zip(rows, cols, vals, strict=True))
    for offset in range(0, 7):  # shift every line against the piece grid
        folder = _mtx(tmp_path / f"o{offset}", body.replace("%\n", "%" + "x" * offset + "\n", 1))
        with open_input(folder) as src:
            np.testing.assert_array_equal(_dense(src), m.toarray().T)


HEADER = "%%MatrixMarket matrix coordinate integer general\n%\n3 4 4\n"
BAD: dict[str, tuple[str, type[InputError], str]] = {
    "bad token": (
        HEADER + "1 1 1\n2 1 4\n3 x 2\n1 4 1\n",
        InvalidValue,
        "non-numeric value 'x' at line 6, column index",
    ),
    "bad value": (
        HEADER + "1 1 1\n2 1 1.5\n3 2 2\n1 4 1\n",
        InvalidValue,
        "non-numeric value '1.5' at line 5, value",
    ),
    "row 0": (
        HEADER + "1 1 1\n0 1 4\n3 2 2\n1 4 1\n",
        UnreadableInput,
        "line 5: index (0, 1) is outside the 3 × 4 matrix",
    ),
    "column too large": (
        HEADER + "1 1 1\n2 1 4\n3 2 2\n1 5 1\n",
        UnreadableInput,
        "line 7: index (1, 5) is outside the 3 × 4 matrix",
    ),
    "too few entries": (
        HEADER + "1 1 1\n2 1 4\n3 2 2\n",
        UnreadableInput,
        "file truncated: the header declares 4 entries, found 3 (last line read: 6)",
    ),
    "too many entries": (
        HEADER + "1 1 1\n2 1 4\n3 2 2\n1 4 1\n2 4 1\n",
        UnreadableInput,
        "more entries than the 4 the header declares (line 8)",
    ),
    "extra field": (
        HEADER + "1 1 1\n2 1 4 9\n3 2 2\n1 4 1\n",
        UnreadableInput,
        "ragged row at line 5: 4 fields where a valued entry has 3",
    ),
    "missing value": (
        HEADER + "1 1 1\n2 1\n3 2 2\n1 4 1\n",
        UnreadableInput,
        "ragged row at line 5: 2 fields where a valued entry has 3",
    ),
    "int32 overflow": (
        HEADER + "1 1 1\n2 1 4\n3 2 3000000000\n1 4 1\n",
        UnreadableInput,
        "integer value '3000000000' at line 6, value, does not fit in 32 bits",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("gz", [False, True])
def test_bad_mtx_names_file_and_line(case: str, gz: bool, tmp_path: Path) -> None:
    body, error, message = BAD[case]
    folder = _mtx(tmp_path, body, gz=gz)
    with pytest.raises(error) as err:
        open_input(folder)
    path = folder / ("matrix.mtx.gz" if gz else "matrix.mtx")
    assert str(err.value) == f"{path}: {message}"


# --- the fast path for common lines (taken away from the end of a piece) --------------------


@pytest.mark.parametrize("field", ["integer", "real", "pattern"])
@pytest.mark.parametrize("order", ["cell", "shuffled"])
@pytest.mark.parametrize("gz", [False, True])
def test_large_pieces_match_scipy(
    field: str, order: str, gz: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of 1 MB: nearly every line is parsed by the fast path."""
    monkeypatch.setattr(_mtxstream, "PIECE_BYTES", 1 << 20)
    m = _random((300, 500), seed=7, density=0.1)  # genes × cells, 15,000 entries
    if field == "real":
        m.data = m.data / 7 - 2.5
    stored = sp.csc_matrix(m) if order == "cell" else m
    folder = tmp_path / "m"
    folder.mkdir()
    _names(folder, 300, 500)
    scipy.io.mmwrite(str(folder / "matrix.mtx"), stored, field=field)
    if gz:
        (folder / "matrix.mtx.gz").write_bytes(gzip.compress((folder / "matrix.mtx").read_bytes()))
        (folder / "matrix.mtx").unlink()
    with open_input(folder) as src:
        assert src.shape == (500, 300)
        np.testing.assert_allclose(_dense(src), _reference(folder), rtol=1e-15)


def _long_body(odd: str, n_before: int = 2000, n_after: int = 300) -> tuple[str, np.ndarray, int]:
    """An integer 5 × 2400 MTX (genes × cells) with ``odd`` as the entry line after
    ``n_before`` plain ones; the dense matrix of the plain lines, and the line number of ``odd``."""
    dense = np.zeros((2400, 5))  # cells × genes
    lines = []
    for i in range(n_before + n_after):
        cell, gene, value = i + 1 + (i >= n_before), i % 5 + 1, i % 97 + 1
        lines.append(f"{gene} {cell} {value}\n")
        dense[cell - 1, gene - 1] = value
    header = f"%%MatrixMarket matrix coordinate integer general\n%\n5 2400 {n_before + n_after + 1}\n"
    body = header + "".join(lines[:n_before]) + odd + "".join(lines[n_before:])
    return body, dense, 3 + n_before + 1


ODD_GOOD = {  # (line, cell, gene, value), read as the general parse and scipy read them
    # (scipy refuses signs: that line is checked against the hand-made matrix only)
    "leading zeros": ("003 02001 0042\n", 2001, 3, 42),
    "signs": ("+3 2001 +42\n", 2001, 3, 42),
    "tabs": ("3\t2001\t42\n", 2001, 3, 42),
    "crlf": ("3 2001 42\r\n", 2001, 3, 42),
    "trailing blanks": ("3 2001 42  \n", 2001, 3, 42),
    "leading blanks": ("  3 2001 42\n", 2001, 3, 42),
    "two spaces": ("3  2001 42\n", 2001, 3, 42),
    "17 digits": ("3 2001 00000000000000042\n", 2001, 3, 42),
    "largest int32": ("3 2001 2147483647\n", 2001, 3, 2147483647),
    "negative value": ("3 2001 -42\n", 2001, 3, -42),
}


@pytest.mark.parametrize("case", list(ODD_GOOD))
def test_odd_lines_among_plain_ones_read_as_written(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_mtxstream, "PIECE_BYTES", 1 << 20)
    line, cell, gene, value = ODD_GOOD[case]
    body, dense, _ = _long_body(line)
    dense[cell - 1, gene - 1] = value
    folder = _mtx(tmp_path, body)
    if case != "signs":
        np.testing.assert_array_equal(_reference(folder), dense)  # scipy reads the file so too
    with open_input(folder) as src:
        np.testing.assert_array_equal(_dense(src), dense)


OUTSIDE = " is outside the 5 × 2400 matrix"
RAGGED = " fields where a valued entry has 3"
ODD_BAD: dict[str, tuple[str, type[InputError], str]] = {
    "row 0": ("0 2001 4\n", UnreadableInput, "line {n}: index (0, 2001)" + OUTSIDE),
    "row past the end": ("6 2001 4\n", UnreadableInput, "line {n}: index (6, 2001)" + OUTSIDE),
    "column past the end": ("1 2401 4\n", UnreadableInput, "line {n}: index (1, 2401)" + OUTSIDE),
    "18 digits": (
        "3 2001 000000000000000042\n",
        UnreadableInput,
        "integer value '000000000000000042' at line {n}, value, does not fit in 32 bits",
    ),
    "int32 overflow": (
        "3 2001 2147483648\n",
        UnreadableInput,
        "integer value '2147483648' at line {n}, value, does not fit in 32 bits",
    ),
    "huge index": (
        "3 99999999999999999999 1\n",
        UnreadableInput,
        "index '99999999999999999999' at line {n}, column index, does not fit in 32 bits",
    ),
    "missing value": ("3 2001\n", UnreadableInput, "ragged row at line {n}: 2" + RAGGED),
    "extra field": ("3 2001 4 4\n", UnreadableInput, "ragged row at line {n}: 4" + RAGGED),
    "real value": ("3 2001 4.5\n", InvalidValue, "non-numeric value '4.5' at line {n}, value"),
    "letter": ("3 2x01 4\n", InvalidValue, "non-numeric value '2x01' at line {n}, column index"),
}


@pytest.mark.parametrize("case", list(ODD_BAD))
@pytest.mark.parametrize("piece_bytes", [64, 1 << 20])
def test_bad_lines_among_plain_ones_are_named_alike(
    case: str, piece_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same message whether the line meets the fast path (1 MB pieces) or not (64 B)."""
    monkeypatch.setattr(_mtxstream, "PIECE_BYTES", piece_bytes)
    line, error, message = ODD_BAD[case]
    body, _, number = _long_body(line)
    folder = _mtx(tmp_path, body)
    with pytest.raises(error) as err:
        open_input(folder)
    assert str(err.value) == f"{folder / 'matrix.mtx'}: {message.format(n=number)}"


def test_inf_after_a_comment_names_its_line(tmp_path: Path) -> None:
    body = "%%MatrixMarket matrix coordinate real general\n3 4 3\n1 1 1\n% note\n\n2 2 -inf\n3 3 1\n"
    folder = _mtx(tmp_path, body)
    with pytest.raises(InvalidValue) as err:
        open_input(folder)
    assert str(err.value) == f"{folder / 'matrix.mtx'}: infinite value found at line 6 (cell 'c1', gene 'G1')"


def test_truncated_gzip_mtx(tmp_path: Path) -> None:
    m = _random((50, 80), seed=2, density=0.5)
    body = f"%%MatrixMarket matrix coordinate integer general\n50 80 {m.nnz}\n"
    body += "".join(f"{r + 1} {c + 1} {int(v)}\n" for r, c, v in zip(m.row, m.col, m.data, strict=True))
    folder = _mtx(tmp_path, body, gz=True)
    path = folder / "matrix.mtx.gz"
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(UnreadableInput, match=r"matrix\.mtx\.gz: (cannot read, )?file truncated"):
        open_input(folder)


# --- 10x h5: gzip chunks inflated in threads -------------------------------------------------


def _write_10x(path: Path, x: np.ndarray, **storage: object) -> Path:
    """Cell Ranger's v3 layout with ``data``/``indices`` stored as asked (chunks, filters)."""
    m = sp.csc_matrix(np.ascontiguousarray(x.T).astype(np.int32))
    n_genes, n_cells = m.shape
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g.create_dataset("data", data=m.data, **storage)
        g.create_dataset("indices", data=m.indices.astype(np.int64), **storage)
        g.create_dataset("indptr", data=m.indptr.astype(np.int64))
        g["shape"] = np.array(m.shape, dtype=np.int32)
        g["barcodes"] = np.array([f"c{i}" for i in range(n_cells)], dtype="S")
        feats = g.create_group("features")
        genes = [f"G{j}" for j in range(n_genes)]
        feats["id"] = np.array(gene_ids(genes), dtype="S")
        feats["name"] = np.array(genes, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * n_genes, dtype="S")
    return path


def _counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(0.3, size=(97, 41)).astype(np.float64)  # 97 cells × 41 genes


STORAGE: dict[str, dict[str, object]] = {
    "gzip": {"compression": "gzip", "compression_opts": 4, "chunks": (100,)},
    "shuffle+gzip": {"compression": "gzip", "shuffle": True, "chunks": (64,)},
    "as Cell Ranger": {
        "compression": "gzip",
        "compression_opts": 4,
        "shuffle": True,
        "chunks": (80,),
        "maxshape": (None,),
    },
    "gzip, chunk past the end": {"compression": "gzip", "chunks": (10**5,), "maxshape": (None,)},
    "no compression": {},
    "chunked, no filter": {"chunks": (50,)},
    "fletcher32+gzip (h5py's path)": {"compression": "gzip", "fletcher32": True, "chunks": (100,)},
}


@pytest.mark.parametrize("storage", list(STORAGE))
def test_10x_storage_layouts_read_the_same(storage: str, tmp_path: Path) -> None:
    x = _counts()
    path = _write_10x(tmp_path / "m.h5", x, **STORAGE[storage])
    with open_input(path) as src:
        assert src.format == "10x-h5"
        for block_nnz in (7, 333, 10**6):  # slabs ending inside, across and on chunk edges
            out = np.zeros(src.shape)
            for block in src.iter_blocks(block_nnz=block_nnz):
                m = block.matrix
                assert m.indices.dtype == np.int32
                out[block.row_start : block.row_start + m.shape[0]] += m.toarray()
            np.testing.assert_array_equal(out, x)


def test_10x_corrupt_gzip_chunk_names_file_dataset_and_chunk(tmp_path: Path) -> None:
    x = _counts(1)
    path = _write_10x(tmp_path / "bad.h5", x, compression="gzip", chunks=(100,))
    with h5py.File(path, "r+") as f:
        ds = f["matrix/indices"]
        mask, raw = ds.id.read_direct_chunk((200,))
        ds.id.write_direct_chunk((200,), raw[:2] + bytes(b ^ 0x55 for b in raw[2:]), mask)
    with open_input(path) as src, pytest.raises(UnreadableInput) as err:
        list(src.iter_blocks(block_nnz=50))
    message = str(err.value)
    assert message.startswith(f"{path}: corrupt chunk 2 (values 200..299) of dataset /matrix/indices")
    assert "Traceback" not in message


@pytest.mark.parametrize("bad", [2**31, 2**40, -1])
def test_10x_index_past_int32_in_a_shuffled_chunk_is_outside(bad: int, tmp_path: Path) -> None:
    """Narrowed int64 indices saturate: one past int32 (or negative) is reported, not wrapped."""
    x = _counts(2)
    path = _write_10x(tmp_path / "m.h5", x, **STORAGE["as Cell Ranger"])
    with h5py.File(path, "r+") as f:  # rewrite indices with one bad value, same storage
        indices = f["matrix/indices"][...]
        indices[150] = bad
        del f["matrix/indices"]
        f["matrix"].create_dataset("indices", data=indices, **STORAGE["as Cell Ranger"])
    with open_input(path) as src, pytest.raises(UnreadableInput) as err:
        list(src.iter_blocks(block_nnz=40))
    shown = 2**31 - 1 if bad > 0 else bad
    assert f"matrix/indices[150] = {shown}: column {shown + 1} at row " in str(err.value)
    assert str(err.value).endswith("is outside the matrix (columns 1–41)")


@pytest.mark.parametrize(
    ("storage", "threaded"),
    [
        ("gzip", True),
        ("shuffle+gzip", True),
        ("as Cell Ranger", True),
        ("gzip, chunk past the end", True),
        ("no compression", False),
        ("chunked, no filter", False),
        ("fletcher32+gzip (h5py's path)", False),
    ],
)
def test_which_datasets_take_the_threaded_path(storage: str, threaded: bool, tmp_path: Path) -> None:
    path = _write_10x(tmp_path / "m.h5", _counts(), **STORAGE[storage])
    with h5py.File(path, "r") as f, ThreadPoolExecutor(2) as pool:
        reader = inflating_reader(f["matrix/indices"], pool, where=path, dtype=np.int32)
        assert (reader is not None) == threaded
        if reader is not None:  # odd spans, out of order: still the stored values
            want = f["matrix/indices"][...]
            for lo, hi in [(5, 203), (0, 1), (150, len(want)), (3, 3)]:
                np.testing.assert_array_equal(reader[lo:hi], want[lo:hi])


def _reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("widecube-mtx", "widecube-prefetch"))]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("odd", ["3 2001 nan\n", "3 2x01 4\n"])
def test_a_failed_read_stops_its_threads_before_the_error_reaches_the_caller(
    odd: str, gz: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the caller still holds the error (and with it the frames of the generators that
    raised it), no scanning or inflating thread of the reader is left: they are stopped where
    the read fails, not when the garbage collector finds the generators. A collector that met
    them inside ``threading``'s own bookkeeping joined their threads there and hung the process
    (seen in the test suite: a thread's start waiting on a lock the collecting thread held)."""
    monkeypatch.setattr(_mtxstream, "PIECE_BYTES", 64)  # many pieces: threads busy when it fails
    body, _, _ = _long_body(odd)
    if "nan" in odd:
        body = body.replace("coordinate integer", "coordinate real")
    folder = _mtx(tmp_path, body, gz=gz)
    assert _reader_threads() == []
    gc.disable()  # nothing collected meanwhile: only explicit closing stops them
    try:
        with pytest.raises((InvalidValue, UnreadableInput)) as err:
            open_input(folder)
        assert "line 2004" in str(err.value)
        assert _reader_threads() == []
    finally:
        gc.enable()
