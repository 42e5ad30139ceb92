"""Benchmark governed access: what authorization costs the UI's dot-plot query (issue 11).

On the demo dataset (``widecube demo-data``: 50,000 cells × 20,000 genes, ingested as ``make
demo`` does), one query is what the UI's dot plot asks for: 10 genes × the 24 groups of
``cell_type`` × (mean, frac_expressing), ``POST /summary``. Measured in one run, each
comparison interleaved so that the load of a shared machine falls on every side alike:

* **in-process** ``Widecube.summary``, the cases called in turn, call by call: (a)
  authentication off (``auth=False``, the CLI's actor), (b) authentication on, with the actor
  that ``Identities.bearer`` makes of a real API token for a user holding a ``reader`` grant
  on the dataset, made ``restricted`` (so the door looks the grant up); target: p50(b) −
  p50(a) ≤ 0.1 ms. Also ``Door.authorize`` and ``Identities.bearer`` alone, (b) with the
  bearer check per query (what one API request does) and the query with the door replaced by
  a pass-through (the door's whole cost, for the record). With ``--postgres``, the same on a
  PostgreSQL catalog (a private schema, the same snapshot registered in it): its own target;
* **HTTP on loopback**, ``widecube serve`` (1 worker), keep-alive, plain JSON: authentication
  off; on, anonymous, the dataset ``public``; on, bearer token, the dataset ``restricted``;
  target ≤ 3 ms p50 with authentication on;
* **wrk** against ``widecube serve --workers 2``, the same three set-ups; target: requests/s
  with the bearer token ≥ 0.9 × anonymous requests/s (authentication on, the dataset public).

The servers run with ``WIDECUBE_RATE_LIMIT=100000000/minute`` (the limiter is not what is
measured; the default of 1200/minute would answer 429 under wrk). The dataset's visibility is
switched between ``public`` and ``restricted`` from this process between rounds (a change
takes effect on the next request of every worker); on a reused storage it is put back, and
the token and grant made for the run are revoked, at the end.

Recorded as one JSON file in ``benchmarks/results/`` (``_record.py``; refused from a dirty tree
unless ``--force``), ``RESULTS.md`` and the README regenerated (``report.py``). Usage::

    .venv/bin/python benchmarks/access.py                       # make bench-access
    .venv/bin/python benchmarks/access.py --storage DIR --no-record --wrk-seconds 6
    .venv/bin/python benchmarks/access.py --postgres            # + a PostgreSQL catalog
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from _access_report import verdicts
from _record import DirtyTree, begin, regenerate, save
from _serve_http import http_latencies, run_wrk, serving, tree_cpu_seconds

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASET, GROUPBY, STATS, N_GENES = "pbmc", "cell_type", ["mean", "frac_expressing"], 10
USER = "bench-reader"
RATE_LIMIT = "100000000/minute"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GROUPBYS = ["cell_type", "donor", "cell_type,donor"]  # as `make demo` ingests


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stats_ms(samples: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(samples, [50, 95, 99])
    return {
        "n": len(samples),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(np.mean(samples)),
    }


def interleaved(
    cases: dict[str, Callable[[], Any]], n: int, rounds: int
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """``n`` timed calls of each case, taken in turn call by call (the order rotated each
    time), so that a change of the machine's load falls on every case alike; per case the
    figures, and the p50 of each of ``rounds`` consecutive slices of its calls; and the samples."""
    names = list(cases)
    for fn in cases.values():
        for _ in range(50):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            fn = cases[name]
            t = time.perf_counter_ns()
            fn()
            samples[name].append((time.perf_counter_ns() - t) / 1e6)
    figures = {k: {**stats_ms(v), "round_p50_ms": _slices(v, rounds)} for k, v in samples.items()}
    return figures, samples


def _slices(samples: list[float], rounds: int) -> list[float]:
    return [float(np.median(part)) for part in np.array_split(np.asarray(samples), rounds)]


# -- the storage, the dataset and the credentials ---------------------------------------------


def demo_input(path: Path, cells: int, genes: int) -> Path:
    """The demo h5ad ``make demo-data`` makes, made here if it is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cli = [_cli(), "demo-data", str(path), "--cells", str(cells), "--genes", str(genes)]
        subprocess.run(cli, check=True)
    return path


def ingest(path: Path, storage: Path) -> float:
    """Ingest the demo as ``make demo`` does, into ``storage``; wall seconds."""
    cli = [_cli(), "ingest", str(path), "--dataset", DATASET]
    for g in GROUPBYS:
        cli += ["--groupby", g]
    cli += ["--visibility", "public", "--classification", "open"]
    t = time.perf_counter()
    subprocess.run(cli, env={**os.environ, "WIDECUBE_STORAGE": str(storage)}, check=True)
    return time.perf_counter() - t


def _cli() -> str:
    return str(Path(sys.executable).with_name("widecube"))


class Access:
    """The run's credentials on one catalog: a reader grant for :data:`USER` and a read token
    narrowed to the dataset (its text never printed nor recorded); :meth:`visibility` switches
    the dataset between public and restricted; :meth:`close` undoes it all."""

    def __init__(self, catalog_url: str) -> None:
        from widecube.access import Actor, Governance
        from widecube.catalog import Catalog

        self.catalog = Catalog(catalog_url)
        self.cli = Actor.cli()
        self.gov = Governance(self.catalog, auth=True)
        policy = self.catalog.access.policy(DATASET)
        self.was, self.classification = policy.visibility, policy.classification
        self.gov.grant(DATASET, f"user:{USER}", "reader", actor=self.cli)
        issued = self.gov.create_token(
            user=USER,
            scope="read",
            datasets=[DATASET],
            expires_in=timedelta(hours=6),
            note="benchmarks/access.py",
            actor=self.cli,
        )
        self.token, self.token_id = issued.text, issued.record.id
        self.visibility("restricted")

    def visibility(self, value: str) -> None:
        self.gov.set_policy(DATASET, visibility=value, actor=self.cli)

    def close(self) -> None:
        self.gov.revoke_token(self.token_id, actor=self.cli)
        self.gov.revoke(DATASET, f"user:{USER}", actor=self.cli)
        self.visibility(self.was)
        self.catalog.close()


@contextmanager
def postgres_catalog(base_url: str, storage: Path) -> Iterator[str]:
    """A private schema on ``base_url`` holding a catalog in which the dataset's live version
    (from the storage's SQLite catalog) is registered and published: the same snapshot, read
    through PostgreSQL. The schema is dropped afterwards."""
    import sqlalchemy as sa

    from widecube.catalog import Catalog
    from widecube.config import Settings

    schema = f"wc_bench_{uuid.uuid4().hex}"
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = url.render_as_string(hide_password=False)
        try:
            with Catalog(Settings(storage=storage).catalog_url) as local, Catalog(rendered) as pg:
                live = local.current(DATASET)
                assert live.path is not None
                pg.create_version(
                    DATASET,
                    live.version,
                    input_name=live.input_name,
                    input_sha256=live.input_sha256,
                    params=live.params,
                )
                pg.mark_verified(
                    DATASET,
                    live.version,
                    path=live.path,
                    n_cells=live.n_cells or 0,
                    n_genes=live.n_genes or 0,
                    info=live.info,
                )
                pg.publish(DATASET, live.version)
                pg.access.set_policy(DATASET, visibility="public", classification="open")
            yield rendered
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


# -- the three measurements ---------------------------------------------------------------------


class _OpenDoor:
    """A door that lets everyone in without looking anything up: the query without
    authorization, to show what the whole door costs (never used outside this measurement)."""

    def authorize(self, actor: Any, action: Any, resource: str) -> Any:
        from widecube.access import Decision

        return Decision("allowed")


def in_process(storage: Path, catalog_url: str, access: Access, n: int, rounds: int) -> dict[str, Any]:
    """The query in-process, authentication off and on; the door and the bearer check alone."""
    from widecube.access import Actor, Identities
    from widecube.config import Settings
    from widecube.errors import DatasetNotFound
    from widecube.query import Widecube

    common = dict(storage=storage, catalog_url=catalog_url, rate_limit=RATE_LIMIT)
    off_settings, on_settings = Settings(auth=False, **common), Settings(auth=True, **common)
    off, on, open_ = Widecube(off_settings), Widecube(on_settings), Widecube(off_settings)
    open_.door = _OpenDoor()  # type: ignore[assignment]
    identities = Identities(on.catalog, on_settings)
    reader, cli = identities.bearer(access.token), Actor.cli()
    try:
        version = off.warm(DATASET, actor=Actor.server())
        _, snap = off.resolve(DATASET)
        rng = np.random.default_rng(0)
        genes = [str(g) for g in rng.choice(np.asarray(snap.var_names), N_GENES, replace=False)]
        query = dict(genes=genes, groupby=GROUPBY, stats=STATS)
        want = off.summary(DATASET, **query, actor=cli)  # type: ignore[arg-type]
        got = on.summary(DATASET, **query, actor=reader)  # type: ignore[arg-type]
        for s in STATS:
            np.testing.assert_array_equal(got["values"][s], want["values"][s])
        try:  # the door really decides: the restricted dataset is hidden from anyone else
            on.summary(DATASET, **query, actor=Actor.anonymous())  # type: ignore[arg-type]
            raise AssertionError(f"anonymous read the restricted dataset {DATASET!r}")
        except DatasetNotFound:
            pass
        token = access.token

        def bearer_then_query() -> Any:
            return on.summary(DATASET, **query, actor=identities.bearer(token))  # type: ignore[arg-type]

        cases: dict[str, Callable[[], Any]] = {
            "auth_off": lambda: off.summary(DATASET, **query, actor=cli),  # type: ignore[arg-type]
            "auth_on_token": lambda: on.summary(DATASET, **query, actor=reader),  # type: ignore[arg-type]
            "auth_on_bearer_per_query": bearer_then_query,
            "no_door": lambda: open_.summary(DATASET, **query, actor=cli),  # type: ignore[arg-type]
            "authorize_off": lambda: off.door.authorize(cli, "read", DATASET),
            "authorize_on": lambda: on.door.authorize(reader, "read", DATASET),
            "bearer": lambda: identities.bearer(token),
        }
        timed, timed_raw = interleaved(cases, n, rounds)
    finally:
        for wc in (off, on, open_):
            wc.close()
    timed["overhead_p50_ms"] = timed["auth_on_token"]["p50_ms"] - timed["auth_off"]["p50_ms"]
    timed["overhead_round_p50_ms"] = [  # each slice's p50(on) − p50(off)
        b - a
        for a, b in zip(
            timed["auth_off"]["round_p50_ms"], timed["auth_on_token"]["round_p50_ms"], strict=True
        )
    ]
    paired = np.asarray(timed_raw["auth_on_token"]) - np.asarray(timed_raw["auth_off"])
    timed["overhead_paired_median_ms"] = float(np.median(paired))
    timed["door_p50_ms"] = timed["auth_on_token"]["p50_ms"] - timed["no_door"]["p50_ms"]
    timed["query"] = {
        "genes": genes,
        "version": version,
        "groups": len(want["groups"]),
        "layer": want["layer"],
    }
    return timed


def http(
    storage: Path, access: Access, body: dict[str, Any], version: str, n: int, rounds: int
) -> dict[str, Any]:
    """p50 over one keep-alive connection, 1 worker each: off; on + anonymous + public; on +
    bearer + restricted; interleaved in rounds. Also the CPU time the server (its process
    tree) spent per request, warm-up requests included: what a request costs it, apart from
    waiting for a core."""
    import httpx2 as httpx

    off_env = {"WIDECUBE_AUTH": "false", "WIDECUBE_RATE_LIMIT": RATE_LIMIT}
    on_env = {"WIDECUBE_AUTH": "true", "WIDECUBE_RATE_LIMIT": RATE_LIMIT}
    bearer = {"Authorization": f"Bearer {access.token}"}
    samples: dict[str, list[float]] = {"auth_off": [], "anonymous_public": [], "bearer_restricted": []}
    per_round: dict[str, list[float]] = {k: [] for k in samples}
    cpu = dict.fromkeys(samples, 0.0)
    requests = dict.fromkeys(samples, 0)
    with (
        serving(storage, workers=1, env=off_env) as (off, off_pid),
        serving(storage, workers=1, env=on_env) as (on, on_pid),
    ):
        summary = f"{on}/api/v1/datasets/{DATASET}/summary"
        refused = httpx.post(summary, json=body, timeout=30)  # anonymous, dataset restricted
        if refused.status_code != 404:
            raise RuntimeError(
                f"anonymous POST on the restricted dataset: HTTP {refused.status_code}, not 404"
            )
        plan: dict[str, tuple[str, int, dict[str, str], str | None]] = {
            "auth_off": (off, off_pid, {}, None),
            "anonymous_public": (on, on_pid, {}, "public"),
            "bearer_restricted": (on, on_pid, bearer, "restricted"),
        }
        names = list(plan)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                url, pid, headers, visibility = plan[name]
                if visibility is not None:
                    access.visibility(visibility)
                before = tree_cpu_seconds(pid)
                got = http_latencies(
                    url, DATASET, body, version, n // rounds, headers=headers, cases=["post_live"]
                )["post_live"]
                cpu[name] += tree_cpu_seconds(pid) - before
                requests[name] += len(got) + 100  # http_latencies warms up with 100 untimed
                samples[name] += got
                per_round[name].append(float(np.median(got)))
    return {
        k: {
            **stats_ms(v),
            "round_p50_ms": per_round[k],
            "server_cpu_ms_per_request": 1e3 * cpu[k] / requests[k],
        }
        for k, v in samples.items()
    }


def wrk(
    storage: Path,
    access: Access,
    body: dict[str, Any],
    *,
    seconds: int,
    rounds: int,
    connections: int,
    workers: int,
) -> dict[str, Any]:
    """wrk against two ``widecube serve --workers N`` (authentication off, on), the three
    set-ups taken in turn for ``seconds / rounds`` each per round; totals over the rounds."""
    off_env = {"WIDECUBE_AUTH": "false", "WIDECUBE_RATE_LIMIT": RATE_LIMIT}
    on_env = {"WIDECUBE_AUTH": "true", "WIDECUBE_RATE_LIMIT": RATE_LIMIT}
    bearer = {"Authorization": f"Bearer {access.token}"}
    each = max(1, seconds // rounds)
    runs: dict[str, list[dict[str, Any]]] = {"auth_off": [], "anonymous_public": [], "bearer_restricted": []}
    with (
        serving(storage, workers=workers, env=off_env) as (off, off_pid),
        serving(storage, workers=workers, env=on_env) as (on, on_pid),
    ):
        plan: dict[str, tuple[str, int, dict[str, str], str | None]] = {
            "auth_off": (off, off_pid, {}, None),
            "anonymous_public": (on, on_pid, {}, "public"),
            "bearer_restricted": (on, on_pid, bearer, "restricted"),
        }
        names = list(plan)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                url, pid, headers, visibility = plan[name]
                if visibility is not None:
                    access.visibility(visibility)
                got = run_wrk(
                    url, DATASET, body, seconds=each, connections=connections, server_pid=pid, headers=headers
                )
                got["loadavg_after"] = _loadavg()
                runs[name].append(got)
    out: dict[str, Any] = {k: _total(v) for k, v in runs.items()}
    out["ratio_bearer_over_anonymous"] = (
        out["bearer_restricted"]["requests_per_s"] / out["anonymous_public"]["requests_per_s"]
    )
    out["ratio_bearer_over_off"] = (
        out["bearer_restricted"]["requests_per_s"] / out["auth_off"]["requests_per_s"]
    )
    out["ratio_anonymous_over_off"] = (
        out["anonymous_public"]["requests_per_s"] / out["auth_off"]["requests_per_s"]
    )
    out["command"] = runs["auth_off"][0]["command"]
    out["seconds_per_round"], out["rounds"], out["workers"] = each, rounds, workers
    return out


def _total(runs: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    cpu = sum(r["server_cpu_s"] for r in runs)
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": requests / seconds,
        "errors": sum(r["errors"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "server_cpu_s": cpu,
        "server_cpu_ms_per_request": 1e3 * cpu / max(requests, 1),
        "wrk_cpu_s": sum(r["wrk_cpu_s"] for r in runs),
        "round_requests_per_s": [r["requests_per_s"] for r in runs],
        "round_latency_p50_ms": [r["latency_ms"]["p50"] for r in runs],
        "latency_p99_ms_worst_round": max(r["latency_ms"]["p99"] for r in runs),
        "loadavg_after_rounds": [r["loadavg_after"] for r in runs],
    }


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=REPO / "demo" / "pbmc.h5ad", help="made if missing")
    parser.add_argument("--cells", type=int, default=50_000, help="of the demo, if it is made")
    parser.add_argument("--genes", type=int, default=20_000, help="of the demo, if it is made")
    parser.add_argument("--storage", type=Path, help=f"reuse a storage folder holding {DATASET!r} (kept)")
    parser.add_argument("--queries", type=int, default=3000, help="timed in-process calls per case")
    parser.add_argument("--http-queries", type=int, default=1500, help="timed HTTP requests per case")
    parser.add_argument("--rounds", type=int, default=5, help="HTTP: rounds the set-ups take in turn")
    parser.add_argument("--wrk-seconds", type=int, default=30, help="per set-up, over the wrk rounds")
    parser.add_argument("--wrk-rounds", type=int, default=5, help="wrk: rounds the set-ups take in turn")
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="server processes under wrk")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=POSTGRES_URL,
        help=f"also measure in-process on a PostgreSQL catalog (default URL: {POSTGRES_URL})",
    )
    parser.add_argument("--no-record", action="store_true", help="record nothing (results/, RESULTS.md)")
    parser.add_argument("--force", action="store_true", help="record even from a dirty tree (marked dirty)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make wrk` installs it (apt-get install wrk)")
    try:
        machine = begin(record=not args.no_record, force=args.force)
    except DirtyTree as exc:
        sys.exit(str(exc))
    from widecube.config import Settings

    started = datetime.now(UTC)
    loads: dict[str, list[float]] = {"start": _loadavg()}
    (HERE / "out").mkdir(exist_ok=True)
    storage = args.storage or Path(tempfile.mkdtemp(prefix="access-", dir=HERE / "out"))
    ingest_s = None
    try:
        if args.storage is None:
            ingest_s = ingest(demo_input(args.input, args.cells, args.genes), storage)
            loads["after_ingest"] = _loadavg()
        sqlite_url = Settings(storage=storage).catalog_url
        access = Access(sqlite_url)
        try:
            process = {"sqlite": in_process(storage, sqlite_url, access, args.queries, args.rounds)}
            loads["after_in_process"] = _loadavg()
            if args.postgres:
                with postgres_catalog(args.postgres, storage) as pg_url:
                    pg = Access(pg_url)
                    try:
                        process["postgresql"] = in_process(storage, pg_url, pg, args.queries, args.rounds)
                    finally:
                        pg.close()
                loads["after_postgresql"] = _loadavg()
            q = process["sqlite"]["query"]
            body = {"genes": q["genes"], "groupby": GROUPBY, "stats": STATS}
            served = http(storage, access, body, q["version"], args.http_queries, args.rounds)
            loads["after_http"] = _loadavg()
            load = wrk(
                storage,
                access,
                body,
                seconds=args.wrk_seconds,
                rounds=args.wrk_rounds,
                connections=args.wrk_connections,
                workers=args.workers,
            )
            loads["after_wrk"] = _loadavg()
        finally:
            access.close()
    finally:
        if args.storage is None:
            shutil.rmtree(storage, ignore_errors=True)
    shown_input = args.input.relative_to(REPO) if args.input.is_relative_to(REPO) else args.input
    result = {
        "name": "access demo",
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "input": str(shown_input) if args.storage is None else f"storage {args.storage}",
        "ingest_s": ingest_s,
        "query": {
            "dataset": DATASET,
            "genes": N_GENES,
            "groupby": GROUPBY,
            "groups": process["sqlite"]["query"]["groups"],
            "stats": STATS,
            "layer": process["sqlite"]["query"]["layer"],
        },
        "rate_limit": RATE_LIMIT,
        "command": " ".join(["benchmarks/access.py", *sys.argv[1:]]),
        "rounds": args.rounds,
        "in_process": process,
        "http": served,
        "wrk": load,
        "load_average": loads,
        "load_average_at_end": _loadavg(),
    }
    result["verdicts"] = verdicts(result)
    print(json.dumps(result, indent=1, default=str))
    if not args.no_record:
        out = save(result, "access-demo", stamp=started.strftime("%Y%m%dT%H%M%SZ"))
        regenerate()
        print(f"recorded {out.relative_to(REPO)}; benchmarks/RESULTS.md and the README regenerated")


if __name__ == "__main__":
    main()
