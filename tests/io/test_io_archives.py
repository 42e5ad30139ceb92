"""Archives: every kind unpacks to the matrix inside; unsafe ones are refused untouched.

Archives are built with zipfile/tarfile/gzip, including the hostile ones (a zip bomb, a
``../`` member, links, a device file), which must be refused before anything lands outside
the work folder.
"""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _data import small_adata, write_h5ad
from _io_writers import write_csv, write_mtx
from widecube.config import Settings
from widecube.errors import InvalidValue, UnreadableInput, UnsafeArchive
from widecube.io import ArchiveLimits, open_input
from widecube.pipeline import ingest
from widecube.query import Widecube

ADATA = small_adata(seed=5)
X = np.asarray(ADATA.X, dtype=np.float64)
CELLS, GENES = list(ADATA.obs_names), list(ADATA.var_names)


def zip_of(path: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(name, content)
    return path


def tar_of(path: Path, folder: Path, arcname: str, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        tf.add(folder, arcname=arcname)
    return path


def streamed(path: Path, work: Path, **kw: object) -> tuple[str, np.ndarray]:
    with open_input(path, workdir=work, **kw) as src:  # type: ignore[arg-type]
        out = np.zeros(src.shape)
        for b in src.iter_blocks(block_nnz=500):
            m = b.matrix.toarray()
            out[b.row_start : b.row_start + m.shape[0], b.col_start : b.col_start + m.shape[1]] += m
        return src.format, out


@pytest.mark.slow
def test_zip_of_a_csv_ingests(tmp_path: Path, settings: Settings) -> None:
    csv = write_csv(tmp_path / "counts.csv", X, CELLS, GENES)
    archive = zip_of(tmp_path / "upload.zip", {"__MACOSX/._counts.csv": b"junk", "counts.csv": csv})
    obs = tmp_path / "obs.csv"
    ADATA.obs[["donor"]].astype(str).to_csv(obs)
    record = ingest(archive, dataset="z", groupbys=["donor"], obs=obs, settings=settings)
    assert record.info["input"]["format"] == "csv" and record.info["input"]["name"] == "upload.zip"
    wc = Widecube(settings)
    got = wc.summary("z", genes=GENES, groupby="donor", stats=["sum"], layer="input")
    wc.close()
    for i, d in enumerate(got["groups"]):
        np.testing.assert_allclose(got["values"]["sum"][i], X[(ADATA.obs["donor"] == d).to_numpy()].sum(0))
    assert not any((settings.storage / "work").iterdir())


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2"])
def test_tar_of_an_mtx_folder_in_a_folder(mode: str, tmp_path: Path) -> None:
    folder = write_mtx(tmp_path / "src" / "filtered_feature_bc_matrix", X, CELLS, GENES, gz=True)
    archive = tar_of(tmp_path / "run.tar", folder.parent, "sample1", mode)
    fmt, got = streamed(archive, tmp_path / "work")
    assert fmt == "mtx"
    np.testing.assert_array_equal(got, X)
    assert not any((tmp_path / "work").iterdir())


def test_gz_of_an_h5ad_is_unpacked_and_gz_of_a_csv_is_streamed(tmp_path: Path) -> None:
    h5ad = write_h5ad(ADATA, tmp_path / "a.h5ad")
    with h5ad.open("rb") as src, gzip.open(tmp_path / "a.h5ad.gz", "wb") as out:
        shutil.copyfileobj(src, out)
    assert streamed(tmp_path / "a.h5ad.gz", tmp_path / "w1")[0] == "h5ad"
    csv = write_csv(tmp_path / "c.csv.gz", X, CELLS, GENES)
    fmt, got = streamed(csv, tmp_path / "w2")
    assert fmt == "csv" and np.array_equal(got, X)


def test_errors_inside_an_archive_name_archive_and_member(tmp_path: Path) -> None:
    bad = b"cell,Gene0,Gene1,Gene2\nc1,1,2,3\nc2,4,,6\n"
    archive = zip_of(tmp_path / "upload.zip", {"run1/bad.csv": bad})
    with pytest.raises(InvalidValue) as err:
        open_input(archive, workdir=tmp_path / "work")
    want = "Null value found at cell c2, gene Gene1 (line 3, field 3)"
    assert str(err.value) == f"{archive}:run1/bad.csv: {want}"


def test_no_matrix_or_two_matrices_list_the_members(tmp_path: Path) -> None:
    empty = zip_of(tmp_path / "docs.zip", {"README.txt": b"hello", "notes/a.md": b"# notes"})
    with pytest.raises(UnreadableInput) as err:
        open_input(empty, workdir=tmp_path / "work")
    assert str(err.value) == (
        f"{empty}: holds no matrix in a known format (formats tried: h5ad, 10x-h5, "
        "loom, parquet, mtx, csv, tsv); it holds: README.txt, notes/a.md"
    )
    csv = write_csv(tmp_path / "c.csv", X, CELLS, GENES)
    h5ad = write_h5ad(ADATA, tmp_path / "a.h5ad")
    two = zip_of(tmp_path / "two.zip", {"x/a.h5ad": h5ad, "x/c.csv": csv, "x/obs.csv": b"cell,type\nc1,T\n"})
    with pytest.raises(UnreadableInput) as err:
        open_input(two, workdir=tmp_path / "work")
    assert str(err.value) == (
        f"{two}: holds 2 matrices (x/a.h5ad, x/c.csv); an input must hold one "
        "(it holds: x/a.h5ad, x/c.csv, x/obs.csv)"
    )
    assert not any((tmp_path / "work").iterdir())


def test_zip_bomb_is_refused_by_declared_size(tmp_path: Path) -> None:
    bomb = zip_of(tmp_path / "bomb.zip", {"counts.csv": b"0" * 50_000_000})
    assert bomb.stat().st_size < 100_000
    with pytest.raises(
        UnsafeArchive,
        match=r"bomb\.zip: members declare 50,000,000\+ bytes, more than the "
        r"limit of [\d,]+ \(20 × the archive's size by default\)",
    ):
        open_input(bomb, workdir=tmp_path / "work")
    assert not any((tmp_path / "work").rglob("counts.csv"))


def test_bytes_are_counted_where_nothing_is_declared(tmp_path: Path) -> None:
    """A gzip declares no size: a compressible h5ad is stopped while it is being written."""
    h5ad = write_h5ad(ADATA, tmp_path / "a.h5ad")
    with gzip.open(tmp_path / "big.h5ad.gz", "wb") as out:
        out.write(h5ad.read_bytes() + bytes(30_000_000))
    expands = r"big\.h5ad\.gz: member 'big\.h5ad' expands the archive past the limit"
    with pytest.raises(UnsafeArchive, match=expands):
        open_input(tmp_path / "big.h5ad.gz", workdir=tmp_path / "work")
    limits = ArchiveLimits(max_bytes=40_000_000)  # configurable: a larger cap lets it through
    with open_input(tmp_path / "big.h5ad.gz", workdir=tmp_path / "work", archive_limits=limits) as src:
        assert src.shape == X.shape


def tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


def test_hostile_members_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "deep" / "work"
    cases: list[tuple[Path, str]] = []
    cases.append(
        (
            zip_of(tmp_path / "up.zip", {"../evil.csv": b"cell,a,b\nc,1,2\n"}),
            "member '../evil.csv' has a '..' path component; refused",
        )
    )
    absolute = tarfile.TarInfo("/tmp/evil.csv")
    absolute.size = 4
    cases.append(
        (tar_with(tmp_path / "abs.tgz", absolute, b"a,b\n"), "member '/tmp/evil.csv' has an absolute path")
    )
    link = tarfile.TarInfo("data/matrix.csv")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    cases.append(
        (tar_with(tmp_path / "sym.tgz", link), "member 'data/matrix.csv' is a symbolic link; refused")
    )
    hard = tarfile.TarInfo("m.csv")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
    cases.append((tar_with(tmp_path / "hard.tgz", hard), "member 'm.csv' is a hard link; refused"))
    device = tarfile.TarInfo("dev/null")
    device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
    cases.append((tar_with(tmp_path / "dev.tgz", device), "member 'dev/null' is a device or special file"))
    zlink = tmp_path / "sym.zip"
    with zipfile.ZipFile(zlink, "w") as zf:
        info = zipfile.ZipInfo("matrix.csv")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    cases.append((zlink, "member 'matrix.csv' is a symbolic link; refused"))
    for archive, message in cases:
        with pytest.raises(UnsafeArchive) as err:
            open_input(archive, workdir=work)
        assert str(err.value).startswith(f"{archive}: ") and message in str(err.value), archive
    assert not (tmp_path / "deep" / "evil.csv").exists() and not any(work.rglob("*.csv"))


def test_too_many_members(tmp_path: Path) -> None:
    assert ArchiveLimits().max_members == 10_000
    many = zip_of(tmp_path / "many.zip", {f"f{i}.txt": b"" for i in range(12)})
    with pytest.raises(UnsafeArchive, match=r"many\.zip: 12 members, more than the 10 allowed"):
        open_input(many, archive_limits=ArchiveLimits(max_members=10))


def test_a_folder_holding_one_matrix(tmp_path: Path) -> None:
    """A plain folder (a watched drop with a marker and notes) is searched like an archive."""
    drop = tmp_path / "drop"
    (drop / "run1").mkdir(parents=True)
    write_csv(drop / "run1" / "counts.csv", X, CELLS, GENES)
    (drop / "_SUCCESS").write_text("")
    (drop / "notes.txt").write_text("lab notes")
    assert streamed(drop, tmp_path / "work")[0] == "csv"
    write_h5ad(ADATA, drop / "again.h5ad")
    with pytest.raises(UnreadableInput, match=r"drop: holds 2 matrices \(again\.h5ad, run1/counts\.csv\)"):
        open_input(drop)
