"""Progress bars for long commands: rich, on stderr, drawn only on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress, ProgressColumn

stderr = Console(stderr=True, highlight=False)


def progress_bar(*columns: ProgressColumn | str, transient: bool = True) -> Progress:
    """A rich ``Progress`` on stderr; disabled (silent) when stderr is not a terminal."""
    return Progress(*columns, console=stderr, transient=transient, disable=not stderr.is_terminal)
