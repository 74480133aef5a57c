"""How the CLI reports a user-facing error: one red line on stderr, exit code 1.

The library raises :class:`Eagle3Error` for what the user can fix; an operating-system
failure it did not anticipate (an ``OSError``: permissions, a full disk, a missing file) is
described the same way. ``EAGLE3_DEBUG=1`` re-raises instead, so the full traceback is shown.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from eagle3cli.errors import Eagle3Error, describe_os_error

F = TypeVar("F", bound=Callable[..., Any])
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def report_errors(command: F) -> F:
    """Wrap a command so an :class:`Eagle3Error` becomes one red line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (Eagle3Error, OSError) as error:
            if os.environ.get("EAGLE3_DEBUG") == "1":
                raise
            user_error = error if isinstance(error, Eagle3Error) else describe_os_error(error)
            stderr.print(f"[red]error: {escape(str(user_error))}[/red]")
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]
