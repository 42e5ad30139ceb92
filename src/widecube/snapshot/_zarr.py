"""Zarr over widecube's storage: typed access to a group's members (``Group.__getitem__``
answers ``Array | Group``) and the Zarr store of an object-store prefix."""

from __future__ import annotations

import asyncio
from typing import Any

import zarr
from zarr.storage import ObjectStore

from ._signed import delete_objects


class ZarrObjects(ObjectStore):  # type: ignore[type-arg]
    """zarr's store over obstore, but for deletes: through :func:`~._signed.delete_objects`, so
    that a server without S3's ``DeleteObjects`` (which obstore sends for every delete) still
    deletes (anndata clears the group it writes into; Zarr deletes a chunk of fill values)."""

    async def delete(self, key: str) -> None:
        self._check_writable()
        await asyncio.to_thread(delete_objects, self.store, [key])


def zarr_array(group: zarr.Group, key: str) -> zarr.Array[Any]:
    """``group[key]``, which must be an array (a :class:`TypeError` names it otherwise)."""
    member = group[key]
    if not isinstance(member, zarr.Array):
        raise TypeError(f"{group.path or '/'}: {key!r} is a {type(member).__name__}, expected a zarr array")
    return member


def zarr_group(group: zarr.Group, key: str) -> zarr.Group:
    """``group[key]``, which must be a group (a :class:`TypeError` names it otherwise)."""
    member = group[key]
    if not isinstance(member, zarr.Group):
        raise TypeError(f"{group.path or '/'}: {key!r} is a {type(member).__name__}, expected a zarr group")
    return member
