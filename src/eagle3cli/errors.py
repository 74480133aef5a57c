"""The one user-facing error type.

Library code raises :class:`Eagle3Error` for anything the user can fix (bad input files,
wrong flags, mismatched models). The CLI prints it as one red line on stderr and exits
non-zero; ``EAGLE3_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations


class Eagle3Error(Exception):
    """A problem the user can fix: the message says what is wrong and how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} — {hint}")
