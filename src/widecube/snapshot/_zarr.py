"""Typed access to a zarr group's members (``Group.__getitem__`` answers ``Array | Group``)."""

from __future__ import annotations

from typing import Any

import zarr


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
