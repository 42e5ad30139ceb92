"""Moving a dataset's pointer: the one state change every publish, rollback, scrub repair and
``publish --together`` makes, written once.

The caller holds the dataset's row lock (``_queries.lock_dataset``), so the pointer read here
is the one replaced, and commits the transaction.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from widecube.catalog import _queries as q
from widecube.catalog._records import VersionStatus, check_transition

__all__ = ["move_pointer"]


def move_pointer(
    conn: sa.Connection, dataset: str, dataset_id: int, target: q.VersionRef, action: str, now: datetime
) -> None:
    """Retire the version live now, publish ``target``, move the pointer, log the move.

    A version live while corrupt stays ``corrupt`` when the pointer leaves it (a scrub's
    repair), so nothing can roll back to it by mistake.
    """
    check_transition(dataset, target.id, target.status, VersionStatus.PUBLISHED)
    previous = q.pointer(conn, dataset_id)
    # never target.id: that one is published, refused above
    if (
        previous is not None
        and q.version_ref(conn, dataset, dataset_id, previous).status == VersionStatus.PUBLISHED
    ):
        q.set_status(conn, previous, VersionStatus.RETIRED, now)
    q.set_status(conn, target.id, VersionStatus.PUBLISHED, now, reason=None)
    q.set_pointer(conn, dataset_id, previous, target.id, now)
    q.append_history(conn, dataset_id, previous, target.id, action, now)
