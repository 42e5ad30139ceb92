"""The parallel kernels' threads sleep between kernels unless the environment says otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, time
import numpy as np
import numba
from widecube.compute import _kernels as k
# small enough that the kernels' own work (~1 ms each on a slow VM) is not what is measured
cells, vals = np.zeros(10**5, np.int32), np.ones(10**5, np.float32)
scale, out = np.ones(1), np.empty(10**5)
k.log_normalize(cells, vals, scale, out)  # libgomp loaded, its threads started
t0 = time.process_time()
for _ in range(40):
    k.log_normalize(cells, vals, scale, out)
    time.sleep(0.01)  # between kernels: the other threads sleep, or spin
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "cpu": time.process_time() - t0,
                  "threads": numba.get_num_threads(), "layer": numba.threading_layer()}))
"""


def probe(policy: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_threads_sleep_between_kernels_unless_told_to_spin() -> None:
    default = probe(None)
    if default["layer"] != "omp" or int(default["threads"]) < 2:
        pytest.skip("OpenMP's wait policy needs numba's omp layer and two threads")
    assert default["policy"] == "passive"
    spinning = probe("active")  # a policy the environment sets is kept
    assert spinning["policy"] == "active"
    # 40 waits of 10 ms: a spinning thread burns them (~0.4 CPU-s), a sleeping one does not
    assert float(spinning["cpu"]) > 0.25
    assert float(default["cpu"]) < 0.5 * float(spinning["cpu"])
