"""The one view registry. A view module registers its class with ``@register_view``."""

from __future__ import annotations

from ._base import View

__all__ = ["get_view", "register_view", "views"]

_VIEWS: dict[str, View] = {}


def register_view(cls: type[View]) -> type[View]:
    """Class decorator: add a view (instantiated once) to the registry."""
    if cls.name in _VIEWS:
        raise ValueError(f"view {cls.name!r} is registered twice")
    _VIEWS[cls.name] = cls()
    return cls


def views() -> list[View]:
    """Every registered view, in registration order (the order they are built)."""
    return list(_VIEWS.values())


def get_view(name: str) -> View:
    return _VIEWS[name]
