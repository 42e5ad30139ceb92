"""What every command of the ``widecube`` command line shares: where it prints, who it acts
as, and how a :class:`WidecubeError` becomes one line on stderr and exit code 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from .access import Actor
from .errors import WidecubeError

__all__ = ["ME", "clean_errors", "err", "out"]

out = Console()
err = Console(stderr=True)
ME = Actor.cli()
"""Who calls the facades from the command line (passed to every facade method)."""
F = TypeVar("F", bound=Callable[..., Any])


def clean_errors(fn: F) -> F:
    """Run a command, turning a WidecubeError into one line and exit 1 (Ctrl-C: exit 130)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WidecubeError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
