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


def describe_os_error(error: OSError) -> Eagle3Error:
    """An operating-system failure the library did not anticipate, as one line: what failed,
    on which file, and the usual fix."""
    import errno

    where = " ".join(f"{name}" for name in (error.filename, error.filename2) if name) or "a file"
    reason = error.strerror or str(error)
    hints = {
        errno.ENOSPC: "the disk is full: free some space or choose another output folder, then rerun",
        errno.EACCES: "check the permissions of the path, or choose another folder",
        errno.EPERM: "check the permissions of the path, or choose another folder",
        errno.EROFS: "the file system is read-only: choose another folder",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "the path is a folder, not a file",
    }
    return Eagle3Error(f"{reason}: {where}", hint=hints.get(error.errno or 0, "check the path and the disk"))
