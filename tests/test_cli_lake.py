"""The lifecycle commands end to end, as a user runs them (a real CLI process each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _lake import tiny_input
from widecube.access import Actor
from widecube.catalog import Catalog
from widecube.config import Settings
from widecube.pipeline import Held, Jobs

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]
CLI = Actor.cli("test")


def test_ingest_hold_publish_together_release_inventory_gc_scrub_archive(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(tmp_path / "store"),
        "WIDECUBE_ARCHIVE_STORAGE": str(tmp_path / "cold"),
        "WIDECUBE_GC_GRACE": "0",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "widecube.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    path, _ = tiny_input(tmp_path, 0)
    held = cli("ingest", str(path), "--dataset", "a", "--views", "summary", "--no-publish")
    assert "verified a version" in held.stdout and "not published" in held.stdout
    settings = Settings(storage=tmp_path / "store")
    # the rest of the setup in this process: faster
    with Catalog(settings.catalog_url) as catalog, pytest.raises(Held):
        Jobs(settings, catalog).ingest(path, dataset="b", views="summary", hold=True, actor=CLI)
    cli("publish", "--together", "a", "b", "--release", "r1")
    rows = json.loads(cli("inventory", "--json").stdout)
    live = {r["dataset"]: r["version"] for r in rows if r["live"]}
    assert set(live) == {"a", "b"} and all(r["status"] == "published" for r in rows)
    assert all(r["releases"] == ["r1"] and r["bytes"] > 0 for r in rows)
    shown = cli("release", "show", "r1").stdout
    assert f"a@{live['a']}" in shown and f"b@{live['b']}" in shown

    with Catalog(settings.catalog_url) as catalog:
        Jobs(settings, catalog).ingest(path, dataset="a", views="summary", actor=CLI)
    cli("retention", "a", "--keep-last", "0", "--read-within", "0")
    dry = cli("gc", "--dry-run").stdout
    assert "would free 0 B" in dry  # the first version of a is in release r1: kept
    refused = cli("archive", f"a@{live['a']}", "--storage-class", "GLACIER_IR", code=1).stderr
    assert "storage class GLACIER_IR: storage classes are an object store's" in refused, refused
    assert f"{tmp_path / 'cold'} is a local folder" in refused
    archived = cli("archive", f"a@{live['a']}").stdout
    assert (
        "archived" in archived
        and (tmp_path / "cold" / "datasets" / "a" / live["a"] / "manifest.json").is_file()
    )
    cli("restore", f"a@{live['a']}")

    victim = next((tmp_path / "store" / "datasets" / "b" / live["b"]).rglob("*.parquet"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    scrub = cli("scrub", "--dataset", "b", code=1)
    rel = victim.relative_to(tmp_path / "store" / "datasets" / "b" / live["b"]).as_posix()
    assert f"b@{live['b']}: file {rel} does not match its checksum" in scrub.stderr
    states = {
        r["version"]: r["status"] for r in json.loads(cli("inventory", "--dataset", "b", "--json").stdout)
    }
    assert states[live["b"]] == "corrupt"
