"""The command line's operator polish (cli.py, _console.py): a default storage that does not
depend on the current folder, named on stderr by every command (a terminal or not, never on
stdout, never with credentials); full ids in every listing at 80 columns; ``--json`` on every
listing command; ``--input-kind`` checked while parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _data import small_adata, write_h5ad
from widecube._console import shown_storage
from widecube.cli import app
from widecube.config import Settings, default_storage
from widecube.pipeline import ingest

pytestmark = pytest.mark.slow


def test_the_default_storage_is_the_users_data_folder_whatever_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIDECUBE_STORAGE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    places = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        places.append(Settings().storage)
    assert places == [tmp_path / "data" / "widecube"] * 2 == [default_storage()] * 2
    monkeypatch.setenv("WIDECUBE_STORAGE", str(tmp_path / "mine"))
    assert Settings().storage == tmp_path / "mine"  # the setting still wins


@pytest.fixture
def store(tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """A storage with one dataset in two versions: (environment, versions newest first)."""
    settings = Settings(storage=tmp_path / "store")
    path = write_h5ad(small_adata(60, 8), tmp_path / "in.h5ad")
    versions = [ingest(path, dataset="pbmc", settings=settings, views="summary").version for _ in range(2)]
    env = {"WIDECUBE_STORAGE": str(settings.storage), "COLUMNS": "80", "WIDECUBE_AUTH": "off"}
    return env, versions[::-1]


def _run(env: dict[str, str], *args: str) -> tuple[str, str]:
    done = CliRunner().invoke(app, list(args), env=env)
    assert done.exit_code == 0, done.output
    return done.stdout, done.stderr


def test_listings_show_full_ids_at_80_columns(store: tuple[dict[str, str], list[str]]) -> None:
    env, versions = store
    terminal = {**env, "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    shown, _ = _run(terminal, "versions", "pbmc")
    assert all(v in shown for v in versions), shown  # not "1f0c2e…"
    assert max(len(line) for line in shown.splitlines()) <= 80  # the other columns wrap instead
    piped, _ = _run(env, "versions", "pbmc")  # to a file or a pipe: nothing wrapped, whatever COLUMNS
    assert all(v in piped for v in versions) and "published (live)" in piped and "retired" in piped
    shown, _ = _run(env, "datasets")
    assert versions[0] in shown
    jobs, _ = _run(env, "jobs")
    ids = [j["id"] for j in json.loads(_run(env, "jobs", "--json")[0])]
    assert len(ids) == 2 and all(i in jobs for i in ids)


def test_every_listing_has_json(store: tuple[dict[str, str], list[str]]) -> None:
    env, versions = store
    datasets = json.loads(_run(env, "datasets", "--json")[0])
    assert [(d["name"], d["version"], d["n_cells"]) for d in datasets] == [("pbmc", versions[0], 60)]
    listed = json.loads(_run(env, "versions", "pbmc", "--json")[0])
    assert [v["version"] for v in listed] == versions and [v["current"] for v in listed] == [True, False]
    assert listed[0]["status"] == "published" and listed[1]["status"] == "retired"
    jobs = json.loads(_run(env, "jobs", "--json")[0])
    assert {j["state"] for j in jobs} == {"published"} and {j["version"] for j in jobs} == set(versions)
    one = json.loads(_run(env, "job", jobs[0]["id"], "--json")[0])
    assert one["id"] == jobs[0]["id"] and [e["event"] for e in one["log"]][:2] == ["start", "done"]
    created = _run(env, "tokens", "create", "--user", "ana")[0]
    tokens = json.loads(_run(env, "tokens", "list", "--json")[0])
    assert [(t["user"], t["state"]) for t in tokens] == [("ana", "active")]
    assert tokens[0]["id"] in created and "secret" not in json.dumps(tokens)
    access = json.loads(_run(env, "access", "pbmc", "--json")[0])
    assert access["policy"]["visibility"] in ("restricted", "internal", "public") and "grants" in access
    audit = json.loads(_run(env, "audit", "--json")[0])
    assert audit and all({"seq", "action", "actor"} <= set(row) for row in audit)  # the token's creation


def test_the_storage_is_named_on_stderr_on_a_terminal_or_not(store: tuple[dict[str, str], list[str]]) -> None:
    env, _ = store
    line = f"storage: {env['WIDECUBE_STORAGE']} (WIDECUBE_STORAGE)"
    # rich treats stderr as a terminal with TTY_COMPATIBLE=1 (a person reading), not with 0
    for terminal in ("1", "0"):
        shown, said = _run({**env, "TTY_COMPATIBLE": terminal, "NO_COLOR": "1"}, "datasets")
        assert said.splitlines()[0] == line and "storage:" not in shown


@pytest.mark.subprocess
def test_without_a_terminal_the_storage_line_is_on_stderr_and_stdout_is_json(tmp_path: Path) -> None:
    """A real process with pipes for stdout and stderr (no TTY), as a script runs it; an
    object-store URL is named without its user part or query (where a secret could be)."""
    cli = [sys.executable, "-m", "widecube.cli"]
    env = {**os.environ, "WIDECUBE_STORAGE": str(tmp_path / "store"), "WIDECUBE_AUTH": "off"}
    for command in (["datasets", "--json"], ["jobs", "--json"], ["tokens", "list", "--json"]):
        done = subprocess.run([*cli, *command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == []  # one JSON document, nothing else
        assert done.stderr.splitlines()[0] == f"storage: {tmp_path / 'store'} (WIDECUBE_STORAGE)"
        assert "\x1b[" not in done.stderr  # plain text in a pipe
    secret = {
        **env,
        "WIDECUBE_STORAGE": "s3://AKIAEXAMPLE:s3cr3t-key@bucket/some/prefix?session=t0ken#frag",
        "WIDECUBE_CATALOG_URL": f"sqlite:///{tmp_path / 'catalog.sqlite'}",
    }
    done = subprocess.run([*cli, "tokens", "list", "--json"], env=secret, capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    assert done.stderr.splitlines()[0] == "storage: s3://bucket/some/prefix (WIDECUBE_STORAGE)"
    done = subprocess.run([*cli, "datasets"], env=secret, capture_output=True, text=True)
    assert done.returncode == 0 and "no datasets in s3://bucket/some/prefix" in done.stderr, done.stderr
    assert all(word not in done.stderr + done.stdout for word in ("AKIAEXAMPLE", "s3cr3t", "t0ken"))


def test_a_printed_storage_never_holds_credentials() -> None:
    assert shown_storage(Path("/data/widecube")) == "/data/widecube"
    assert shown_storage("s3://bucket/prefix") == "s3://bucket/prefix"
    assert shown_storage("s3://key:secret@bucket/p?token=x#y") == "s3://bucket/p"
    assert shown_storage("s3://only-a-user@bucket") == "s3://bucket"


def test_an_empty_storage_says_where_it_looked(tmp_path: Path) -> None:
    env = {"WIDECUBE_STORAGE": str(tmp_path / "empty"), "WIDECUBE_AUTH": "off"}
    out, said = _run(env, "datasets")
    assert out == "" and f"no datasets in {tmp_path / 'empty'}" in said
    assert json.loads(_run(env, "datasets", "--json")[0]) == []


def test_an_unknown_input_kind_is_a_usage_error(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app,
        ["ingest", str(tmp_path / "x.h5ad"), "-d", "x", "--input-kind", "logged"],
        env={"WIDECUBE_STORAGE": str(tmp_path / "s"), "COLUMNS": "200"},
    )
    assert done.exit_code == 2 and "unknown input kind 'logged'; kinds: counts, log1p, scaled" in done.output
