"""Drive a real ``widecube serve``: start it, time requests over loopback, load it with wrk.

The server runs as the CLI runs it (a subprocess, ``--workers N``) on a free loopback port;
every request loop here is bounded in count or time and targets 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx

__all__ = ["http_latencies", "run_wrk", "serving"]

_LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
%(headers)sdone = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect_errors": %%d, '
    .. '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "non_2xx": %%d, '
    .. '"latency_ms": {"p50": %%.3f, "p90": %%.3f, "p99": %%.3f, "max": %%.3f, "mean": %%.3f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(p, 0.0) for p in tree)


@contextmanager
def serving(
    storage: Path, *, workers: int, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """``widecube serve --workers N --no-access-log`` over ``storage``; yields its base URL and
    its process id. ``env`` adds to (or overrides) this process's environment, e.g.
    ``{"WIDECUBE_AUTH": "false"}``."""
    port = _free_port()
    cli = [
        str(Path(sys.executable).with_name("widecube")),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    # wrk is one client making ~10^5 requests/s: the rate limiter runs, but never refuses
    env = {
        **os.environ,
        "WIDECUBE_STORAGE": str(storage),
        "WIDECUBE_RATE_LIMIT": "1000000000/minute",
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cli, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield _started(proc, url, log), proc.pid
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _started(proc: subprocess.Popen[bytes], url: str, log: Any) -> str:
    """Wait until the server answers /healthz, then a little for its workers to warm up."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"widecube serve did not start:\n{log.read().decode()[-3000:]}")
        time.sleep(0.2)
    time.sleep(3)  # let every worker's upkeep warm the live version before timing
    return url


def http_latencies(
    url: str,
    dataset: str,
    body: dict[str, Any],
    version: str,
    n: int,
    *,
    headers: Mapping[str, str] | None = None,
    cases: Collection[str] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per request (until the body is read) over one keep-alive connection.

    ``post_live`` and ``get_pinned`` ask for plain JSON (``Accept-Encoding: identity``, as wrk
    does: compression buys nothing on loopback); ``post_live_gzip`` accepts gzip, so it pays
    for compressing on the server and inflating in the (pure-Python) client. ``headers`` go
    with every request (e.g. ``Authorization``); ``cases`` picks some of the three (default:
    all).
    """
    out: dict[str, list[float]] = {}
    summary = f"{url}/api/v1/datasets/{dataset}/summary"
    pinned = [("genes", g) for g in body["genes"]] + [("stats", s) for s in body["stats"]]
    pinned += [("groupby", body["groupby"]), ("version", version)]
    extra = dict(headers or {})
    plain = httpx.Client(timeout=30, headers={**extra, "Accept-Encoding": "identity"})
    zipped = httpx.Client(timeout=30, headers={**extra, "Accept-Encoding": "gzip"})
    calls: dict[str, Callable[[], httpx.Response]] = {
        "post_live": lambda: plain.post(summary, json=body),
        "get_pinned": lambda: plain.get(summary, params=pinned),
        "post_live_gzip": lambda: zipped.post(summary, json=body),
    }
    with plain, zipped:
        for name, call in calls.items():
            if cases is not None and name not in cases:
                continue
            for _ in range(100):
                call().raise_for_status()
            samples = []
            for _ in range(n):
                t = time.perf_counter_ns()
                r = call()
                samples.append((time.perf_counter_ns() - t) / 1e6)
                if r.status_code != 200:
                    raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:500]}")
            out[name] = samples
    return out


def run_wrk(
    url: str,
    dataset: str,
    body: dict[str, Any],
    *,
    seconds: int,
    connections: int,
    server_pid: int,
    threads: int = 2,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """wrk's POST /summary load for ``seconds``: requests/s, errors, latency percentiles, and
    the CPU seconds the server (all workers) and wrk itself spent. ``headers`` go with every
    request (e.g. ``Authorization``: written to the script, a private temporary file removed
    afterwards, never to the command line or the result)."""
    lines = "".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}\n" for k, v in (headers or {}).items())
    fd, name = tempfile.mkstemp(suffix=".lua")  # mode 0600: it may hold a credential
    with os.fdopen(fd, "w") as script:
        script.write(_LUA % {"body": json.dumps(body), "headers": lines})
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        name,
        f"{url}/api/v1/datasets/{dataset}/summary",
    ]
    server_cpu = tree_cpu_seconds(server_pid)
    wrk_cpu = _children_cpu()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=True)
    finally:
        os.unlink(name)
    server_cpu = tree_cpu_seconds(server_pid) - server_cpu
    wrk_cpu = _children_cpu() - wrk_cpu
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
    stats: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    stats["requests_per_s"] = stats["requests"] / (stats["duration_us"] / 1e6)
    stats["errors"] = sum(
        stats[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx")
    )
    stats["command"] = " ".join(["wrk", *command[1:-3], "-s", "post.lua", "<url>/summary"])
    stats["server_cpu_s"], stats["wrk_cpu_s"] = server_cpu, wrk_cpu
    stats["server_cpu_ms_per_request"] = 1e3 * server_cpu / max(stats["requests"], 1)
    return stats


def _lua_string(text: str) -> str:
    """``text`` as a Lua string literal (a JSON string is one, for the characters headers hold)."""
    return json.dumps(text)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
