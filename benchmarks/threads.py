"""Where an ingest leaves a core idle: every thread's state sampled every few milliseconds.

CPU totals say how many cores a run used on average, not when it used one or none. This tool
runs ``widecube ARGS`` in its own process (so the imports at start-up are sampled too) with a
thread that reads each thread's state from ``/proc/self/task/*/stat`` every ``--every`` ms;
each sample counts the threads running (``R``: on a core or waiting for one) and, when fewer
than two run, where the main thread is (its innermost widecube frame, else its innermost
frame) and which other thread runs. Samples are grouped by the job step that was running,
from the steps' ``started`` lines on stderr ("start-up" before the first), and pass 1 apart
within the compute step (``compute/pass 1``, from the main thread's stack)::

    $ python benchmarks/threads.py ingest data.h5ad --dataset x --groupby cluster
    {"steps": {"compute": {"wall_s": 20.1, "samples": 3990, "running": {"0": 0.02, "1": 0.06, "2+": 0.92},
               "alone": [["main  widecube/pipeline/_spill.py:210 scatter", 61], ...]}, ...},
     "cpu_s": ..., "wall_s": ..., "cores": ...}

The sampler takes about 1 % of a core (its own samples are not counted as running). Child
processes (the input's digest) are not sampled; their CPU is in the totals. Output
goes to stdout as one JSON object; the command's own output goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any

_STARTED = re.compile(r"^([a-z_]+): started")


class _Steps(io.TextIOBase):
    """stderr, passed through, remembering the job step last said to have started."""

    def __init__(self, out: Any) -> None:
        self.out, self.step, self._line = out, "start-up", ""

    def write(self, text: str) -> int:
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            if found := _STARTED.match(line):
                self.step = found.group(1)
        return int(self.out.write(text))

    def flush(self) -> None:
        self.out.flush()


_PHASES = {"spill_by_gene": "pass 1", "spill_on_cluster": "pass 1", "verify_snapshot": "checks"}
"""Functions whose frames name a part of a step (``compute/pass 1``; the rest of compute is
pass 2 and the views' writing)."""


def _phase(frame: Any) -> str | None:
    while frame is not None:
        if (name := _PHASES.get(frame.f_code.co_name)) is not None:
            return name
        frame = frame.f_back
    return None


def _where(frame: Any) -> str:
    """The innermost widecube frame of a stack, else its innermost frame."""
    innermost = frame
    while frame is not None:
        name = frame.f_code.co_filename
        if "/widecube/" in name:
            short = name.split("/widecube/", 1)[1]
            return f"widecube/{short}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    code = innermost.f_code
    return f"{code.co_filename.rsplit('/', 2)[-1]}:{innermost.f_lineno} {code.co_name}"


def _states(me: int) -> dict[int, str]:
    """Every thread of this process but ``me``, by native id: its state (``R``, ``S``, ``D``…)."""
    states = {}
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                states[int(tid)] = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended meanwhile
            continue
    return states


class Sampler:
    """Counts running threads every ``every`` seconds, by step, and where the main thread is
    when fewer than two run."""

    def __init__(self, steps: _Steps, every: float) -> None:
        self.steps, self.every = steps, every
        self.running: dict[str, Counter[str]] = defaultdict(Counter)
        self.alone: dict[str, Counter[str]] = defaultdict(Counter)
        self.wall: dict[str, float] = defaultdict(float)
        self.waiting: dict[str, Counter[str]] = defaultdict(Counter)
        self.waiting_too = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._main = threading.main_thread()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        me = threading.get_native_id()
        last = time.perf_counter()
        while not self._stop.wait(self.every):
            now = time.perf_counter()
            step = self.steps.step
            frames = sys._current_frames()
            frame = frames.get(self._main.ident or 0)
            if frame is not None and (phase := _phase(frame)) is not None:
                step = f"{step}/{phase}"
            self.wall[step] += now - last
            last = now
            states = _states(me)
            running = [tid for tid, state in states.items() if state == "R"]
            self.running[step]["2+" if len(running) >= 2 else str(len(running))] += 1
            if len(running) >= 2:
                continue
            threads = {t.native_id: t for t in threading.enumerate()}
            main = _where(frame) if frame is not None else "(main ended)"
            if running and running[0] != self._main.native_id:
                other = threads.get(running[0])
                who = f"{other.name if other else 'a native thread'} runs; main waits at {main}"
            else:
                who = f"main {'runs' if running else 'waits'} at {main}"
            self.alone[step][who] += 1
            if self.waiting_too:
                for tid, thread in threads.items():
                    state = states.get(tid or 0)
                    if thread in (self._main, self._thread) or state in (None, "R"):
                        continue
                    if (f := frames.get(thread.ident or 0)) is not None:
                        self.waiting[step][f"{thread.name} {state} at {_where(f)}"] += 1

    def report(self, top: int) -> dict[str, Any]:
        out = {}
        for step, counts in self.running.items():
            total = sum(counts.values())
            out[step] = {
                "wall_s": round(self.wall[step], 2),
                "samples": total,
                "running": {k: round(counts[k] / total, 3) for k in ("0", "1", "2+")},
                "alone": self.alone[step].most_common(top),
                **({"waiting": self.waiting[step].most_common(top)} if self.waiting_too else {}),
            }
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=5.0, help="sampling period, ms")
    parser.add_argument("--top", type=int, default=12, help="places listed per step")
    parser.add_argument(
        "--waiting", action="store_true", help="also where the other Python threads wait when fewer run"
    )
    args, command = parser.parse_known_args()
    steps = _Steps(sys.stderr)
    sys.stderr = steps
    started = time.perf_counter()
    code: Any = 0
    sampler = Sampler(steps, args.every / 1000)
    sampler.waiting_too = args.waiting
    with sampler:
        from widecube.cli import app  # imported under the sampler: the start-up counts

        try:
            with contextlib.redirect_stdout(steps):  # stdout is the report's
                app(command, prog_name="widecube")
        except SystemExit as exc:
            code = exc.code
    wall = time.perf_counter() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    report = {
        "command": command,
        "exit": code,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "sys_s": round(sum(u.ru_stime for u in usage), 2),
        "cores": round(cpu / wall, 3),
        "steps": sampler.report(args.top),
    }
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
