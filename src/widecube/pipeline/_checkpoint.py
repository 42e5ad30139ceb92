"""A job step's checkpoint: what the step did, saved in the job's work folder once it is
done (``<work>/work/<job>/<step>.json``), so a job resumed by another process skips it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["save_checkpoint"]


def save_checkpoint(folder: Path, name: str, value: dict[str, Any]) -> None:
    """Write a step's checkpoint atomically: a reader finds the whole file or none."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.json.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(folder / f"{name}.json")
