"""What a view is: a precomputed product of the streaming pass, stored in every snapshot.

A view declares which groupings it needs moments for, writes itself into the snapshot
(stamping an encoding name and version into the manifest), verifies a written snapshot,
and says what it offers to the API. The pipeline, the verifier and the API iterate over the
registry in ``_registry.py``; nothing else lists views.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from ..compute import Grouping, Moments, all_cells, make_grouping
from ..compute.groupings import ALL
from ..snapshot import Snapshot, SnapshotWriter

__all__ = ["BuildContext", "View"]


@dataclass
class BuildContext:
    """What views know about the version being built."""

    dataset: str
    version: str
    obs: pd.DataFrame
    var: pd.DataFrame
    groupbys: list[str]
    max_categories: int = 10_000
    _groupings: dict[str, Grouping] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return len(self.obs)

    @property
    def n_genes(self) -> int:
        return len(self.var)

    def grouping(self, key: str) -> Grouping:
        """The grouping named ``key`` (``ALL`` is every cell in one group), built once."""
        if key not in self._groupings:
            self._groupings[key] = (
                all_cells(self.n_cells)
                if key == ALL
                else make_grouping(self.obs, key, max_categories=self.max_categories)
            )
        return self._groupings[key]


class View(ABC):
    """One precomputed view. Subclasses set the class attributes and the three methods."""

    name: ClassVar[str]
    encoding: ClassVar[str]
    encoding_version: ClassVar[str]

    def needs(self, ctx: BuildContext) -> list[str]:
        """Groupby keys whose moments this view needs from the streaming pass."""
        return []

    @abstractmethod
    def write(self, ctx: BuildContext, moments: Moments, out: SnapshotWriter) -> None:
        """Write the view's files and call ``out.add_view`` with its manifest entry."""

    @abstractmethod
    def verify(self, snap: Snapshot) -> None:
        """Raise :class:`~widecube.errors.VerificationError` if the stored view is wrong."""

    def describe(self, snap: Snapshot) -> dict[str, Any]:
        """What the API lists about this view for a dataset (default: its manifest entry)."""
        entry = snap.view(self.name)
        return {k: v for k, v in entry.items() if k not in ("files",)}
