"""The benchmark record: JSON files are the one source, RESULTS.md and the README are generated.

Fast (no benchmark runs): regenerating from the committed ``benchmarks/results/*.json`` must
give the committed ``benchmarks/RESULTS.md`` and README block byte for byte, so a hand edit
of either fails here; a run from a dirty tree is refused unless forced, and a forced one is
recorded and shown as dirty.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"


@pytest.fixture(scope="module")
def modules() -> Iterator[tuple[Any, Any]]:
    """``benchmarks/report.py`` and ``benchmarks/_record.py``, imported as the scripts see them."""
    sys.path.insert(0, str(BENCH))
    try:
        import _record
        import report

        yield report, _record
    finally:
        sys.path.remove(str(BENCH))


def test_capacity_md_is_what_the_json_files_make() -> None:
    """docs/capacity.md is generated from the recorded runs (benchmarks/capacity.py), never edited."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "capacity.py"), "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr


def test_results_md_is_what_the_json_files_make(modules: tuple[Any, Any]) -> None:
    report, _ = modules
    committed = (BENCH / "RESULTS.md").read_text()
    assert report.render_results(report.load_runs(RESULTS)) == committed


def test_readme_block_is_what_the_json_files_make(modules: tuple[Any, Any]) -> None:
    report, _ = modules
    readme = (REPO / "README.md").read_text()
    assert readme.count(report.BEGIN) == 1 and readme.count(report.END) == 1
    block = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert block == "\n" + report.readme_block(report.load_runs(RESULTS))
    assert report.render_readme(readme, report.readme_block(report.load_runs(RESULTS))) == readme


def test_every_json_file_has_its_section_in_a_fixed_order(modules: tuple[Any, Any]) -> None:
    """Each file under results/ is cited once; parts come ingest, serve, aggregate, readers;
    within a benchmark the runs are newest first (read from the files, not from the report)."""
    report, _ = modules
    text = (BENCH / "RESULTS.md").read_text()
    files = sorted(p.name for p in RESULTS.glob("*.json"))
    assert len(files) >= 18  # the 18 runs recorded before issue 10, the 04:03 readers run among them
    cited = re.findall(r"_Raw figures: `benchmarks/results/([^`]+)`\._", text)
    assert sorted(cited) == files
    assert "20261122T040345Z-readers.json" in cited  # left out of RESULTS.md before issue 10
    kinds = re.findall(r"^# (\S+)(?: \S+)? — benchmarks/\S+\.py", text, flags=re.M)
    order = {kind: i for i, kind in enumerate(report._KINDS)}  # noqa: SLF001
    order |= {"b100k": order["ingest"], "b1m": order["ingest"]}
    assert {"b100k", "b1m", "serve", "aggregate", "readers"} <= set(kinds) <= set(order)
    assert [order[k] for k in kinds] == sorted(order[k] for k in kinds)
    started = {p.name: json.loads(p.read_text())["started_utc"] for p in RESULTS.glob("*.json")}
    names = {p.name: json.loads(p.read_text())["name"] for p in RESULTS.glob("*.json")}
    for name in set(names.values()):
        mine = [started[f] for f in cited if names[f] == name]
        assert mine == sorted(mine, reverse=True), name


def test_dirty_runs_are_marked_and_notes_are_kept(modules: tuple[Any, Any]) -> None:
    _ = modules
    text = (BENCH / "RESULTS.md").read_text()
    sections = re.split(r"\n(?=## )", text)
    for path in RESULTS.glob("*.json"):
        run = json.loads(path.read_text())
        (section,) = [s for s in sections if f"_Raw figures: `benchmarks/results/{path.name}`._" in s]
        title = section.splitlines()[0]
        assert ("⚠ dirty tree" in title) == bool(run["machine"]["git_dirty"]), path.name
        for note in run.get("notes", []):
            assert note in section
    # the hand-written notes that lived only in RESULTS.md now live in the runs' JSON
    b1m = json.loads((RESULTS / "20261122T033852Z-b1m.json").read_text())
    assert any("mallopt" in n for n in b1m["notes"])


def test_a_hand_edit_is_reported_by_check(modules: tuple[Any, Any], tmp_path: Path) -> None:
    report, _ = modules
    out, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    out.write_text((BENCH / "RESULTS.md").read_text())
    readme.write_text((REPO / "README.md").read_text())
    args = ["--check", "--out", str(out), "--readme", str(readme)]
    assert report.main(args) == 0
    out.write_text(out.read_text().replace("| **PASS** |", "| **FAIL** |", 1))
    assert report.main(args) == 1
    assert report.main(args[1:]) == 0  # regenerating repairs it
    assert out.read_text() == (BENCH / "RESULTS.md").read_text()
    readme.write_text(readme.read_text().replace("1,587", "1,999", 1))
    assert report.main(args) == 1


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with one committed module under src/."""
    root = tmp_path / "checkout"
    (root / "src").mkdir(parents=True)
    (root / "src" / "mod.py").write_text("x = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return root


def test_a_clean_tree_records_its_commit(modules: tuple[Any, Any], repo: Path) -> None:
    _, record = modules
    (repo / "notes.txt").write_text("untracked, outside src/: not code that is measured\n")
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    machine = record.begin(record=True, repo=repo)
    assert machine["git_commit"] == head.stdout.strip()
    assert machine["git_dirty"] is False
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert len(machine["load_average_at_start"]) == 3


@pytest.mark.parametrize("change", ["tracked", "untracked-src"])
def test_a_dirty_tree_is_refused_unless_forced(
    modules: tuple[Any, Any], repo: Path, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, record = modules
    monkeypatch.delenv(record.FORCE_ENV, raising=False)
    if change == "tracked":
        (repo / "src" / "mod.py").write_text("x = 2\n")
        changed = "src/mod.py"
    else:
        (repo / "src" / "new.py").write_text("y = 1\n")
        changed = "src/new.py"
    with pytest.raises(record.DirtyTree) as caught:
        record.begin(record=True, repo=repo)
    assert caught.value.paths == [changed]
    assert changed in str(caught.value) and "--force" in str(caught.value)
    assert record.begin(record=False, repo=repo)["git_dirty"] is True  # a smoke run is not refused
    assert record.begin(record=True, force=True, repo=repo)["git_dirty"] is True
    monkeypatch.setenv(record.FORCE_ENV, "1")
    assert record.begin(record=True, repo=repo)["git_dirty"] is True
    monkeypatch.setenv(record.FORCE_ENV, "0")
    with pytest.raises(record.DirtyTree):
        record.begin(record=True, repo=repo)


def test_a_forced_run_is_saved_and_shown_dirty(modules: tuple[Any, Any], repo: Path, tmp_path: Path) -> None:
    """The recording path end to end with a fake aggregate run (figures copied from a real one)."""
    report, record = modules
    (repo / "src" / "mod.py").write_text("x = 3\n")
    fake = json.loads((RESULTS / "20261122T0327Z-aggregate-m300k.json").read_text())
    fake["machine"] = record.begin(record=True, force=True, repo=repo)
    fake["in_process"]["p50_ms"] = 150.0  # over the 100 ms target
    fake["started_utc"] = "2030-01-02 03:04 UTC"
    fake.pop("load_average_at_end")
    folder = tmp_path / "results"
    path = record.save(fake, "aggregate-m300k", folder=folder)
    assert path == folder / "20300102T0304Z-aggregate-m300k.json"
    saved = json.loads(path.read_text())
    assert saved["dirty"] is True and saved["machine"]["git_dirty"] is True
    assert len(saved["load_average_at_end"]) == 3
    assert saved["targets"] == [
        {
            "benchmark": "aggregate m300k",
            "what": "on-the-fly aggregate, in-process p50",
            "value": 150.0,
            "shown": "150.00 ms",
            "target": "≤ 100 ms",
            "verdict": "FAIL",
        }
    ]
    assert saved["peer"]["p50_ms"] == fake["peer"]["p50_ms"]  # the peer's figures, same run
    (section,) = [
        s for s in re.split(r"\n(?=## )", report.render_results(report.load_runs(folder))) if "2030" in s
    ]
    assert section.splitlines()[0] == (
        f"## aggregate m300k — 2030-01-02 03:04 UTC — ⚠ dirty tree (uncommitted changes on top of "
        f"`{fake['machine']['git_commit']}`)"
    )
    assert "| 150.00 ms | ≤ 100 ms | **FAIL** |" in section


def test_every_run_carries_the_recorded_fields(modules: tuple[Any, Any]) -> None:
    """One schema for every file: commit, dirty flag, machine, load before and after, targets
    with a verdict that agrees with the value and its target (checked here by hand, not by the
    report's code), notes."""
    _ = modules
    for path in RESULTS.glob("*.json"):
        run = json.loads(path.read_text())
        m = run["machine"]
        assert run["dirty"] is m["git_dirty"], path.name
        assert re.fullmatch(r"[0-9a-f]{7,}", m["git_commit"]), path.name
        assert m["cores"] >= 1 and m["memory_bytes"] > 0
        assert len(m["load_average_at_start"]) == 3 and len(run["load_average_at_end"]) == 3
        assert isinstance(run["notes"], list)
        assert run["targets"], path.name
        for t in run["targets"]:
            bound = re.fullmatch(r"([≤≥]) ([0-9.,]+)( GB| ms)?", t["target"])
            if t["verdict"] == "n/a" or not bound:
                continue
            limit = float(bound.group(2).replace(",", "")) * (1e9 if bound.group(3) == " GB" else 1)
            ok = t["value"] <= limit if bound.group(1) == "≤" else t["value"] >= limit
            assert t["verdict"] == ("PASS" if ok else "FAIL"), (path.name, t)


def test_the_floor_benchmark_judges_issue_14s_numbers_from_its_figures(modules: tuple[Any, Any]) -> None:
    """Issue 14's targets, worked out by hand from a made-up run: ratios to the peer's process
    wall and in-process time, cores from CPU over wall, kernel share, RSS, pass 1 over the read."""
    sys.path.insert(0, str(BENCH))
    try:
        import _floor_report
    finally:
        sys.path.remove(str(BENCH))

    def tool(wall: float, cpu: float, system: float, rss: float, out: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": "ok",
            "wall_s": wall,
            "cpu_s": cpu,
            "sys_s": system,
            "peak_rss": rss,
            "peak_tree_rss": 0,
            "out": out,
        }

    run = {
        "views": "summary,quantiles",
        "tools": {
            "read floor": tool(6.0, 2.0, 1.0, 1e8, {"read_s": 5.0}),
            "kernel floor": tool(9.0, 9.0, 0.5, 1e8, {"kernel_s": 2.5}),
            "widecube": tool(
                40.0,
                76.0,
                7.0,
                2.0e9,
                {"steps": {"compute": 30.0}, "compute_parts": {"pass 1": 9.0, "pass 2": 20.0}},
            ),
            "widecube views": tool(16.0, 30.0, 3.0, 1.5e9, {"steps": {}}),
            "scanpy": tool(50.0, 50.0, 5.0, 12e9, {"full_s": 45.0}),
        },
    }
    got = {v["what"]: (v["value"], v["pass"]) for v in _floor_report.verdicts(run)}
    assert len(got) == 8
    full = "widecube full ingest wall / scanpy read + 4 statistics + median, `cluster`"
    views = "widecube `--views summary,quantiles` wall / scanpy read + 4 statistics + median, `cluster`"
    assert got[f"{full} (process wall)"] == (pytest.approx(0.8), False)  # 40 / 50 > 0.75
    assert got[f"{full} (in-process, no start-up or imports)"] == (pytest.approx(40 / 45), False)
    assert got[f"{views} (process wall)"] == (pytest.approx(0.32), False)  # 16 / 50 > 0.3
    assert got["widecube full ingest: average CPU use"] == (pytest.approx(1.9), True)
    assert got["widecube full ingest: kernel share of CPU time"] == (pytest.approx(7 / 76), True)
    assert got["widecube full ingest: peak RSS"] == (2.0e9, True)
    assert got["widecube pass 1 / h5py read of the same file"] == (pytest.approx(1.8), True)  # 9 / 5
    run["tools"]["scanpy"]["status"] = "killed by the harness: rss"
    assert all(v["pass"] is None for v in _floor_report.verdicts(run) if "scanpy" in v["what"])
    assert _floor_report._first_touch(run) == []  # a run before the probe existed
    touched = {"page_cache_fresh_s": 2.13, "page_cache_reused_s": 0.2, "anonymous_fresh_s": 1.22}
    run["tools"]["first touch"] = tool(12.0, 3.7, 3.6, 1e9, {**touched, "anonymous_reused_s": 0.05})
    run["tools"]["first touch"]["out"]["free_page_reporting"] = True
    said = _floor_report._first_touch(run)[0]
    assert "free page reporting: on" in said and "2.13 s" in said and "0.20 s" in said and "0.05 s" in said
    assert len(_floor_report.verdicts(run)) == 8  # context, not a target


def test_the_first_touch_probe_reports_system_time_per_gib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_floors.py touch`` writes a GiB twice through the page cache and allocates a GiB twice:
    each is system time a process really spent (at least the copy of a GiB), and the file it
    wrote is gone."""
    sys.path.insert(0, str(BENCH))
    try:
        import _floors
    finally:
        sys.path.remove(str(BENCH))
    monkeypatch.setattr(_floors, "SETTLE_S", 0.0)
    got = _floors.touch(str(tmp_path))
    assert set(got) == {
        "gib",
        "free_page_reporting",
        "page_cache_fresh_s",
        "page_cache_reused_s",
        "anonymous_fresh_s",
        "anonymous_reused_s",
    }
    assert got["page_cache_fresh_s"] > 0.01 and got["page_cache_reused_s"] > 0.01  # a GiB copied in
    assert got["free_page_reporting"] in (True, False, None)
    assert list(tmp_path.iterdir()) == []
