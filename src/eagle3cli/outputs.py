"""Output folders: checked writable before heavy work, owned by one command, locked while a run writes.

A command that writes a folder (``sample``, ``dump-hidden``, ``train``, ``bench``) claims it:
the folder is created and proven writable, ``.eagle3-output.json`` records which command owns
it (so ``train`` refuses a dump folder as its output and ``dump-hidden`` a training run's), and
an exclusive ``flock`` on ``.eagle3-output.lock`` is held for the whole run, so two runs
cannot interleave their files (the kernel drops the lock when a process dies, even by
``kill -9``). Only process 0 of a multi-process run claims the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json, prepare_output_dir

OWNER_FILE = ".eagle3-output.json"
LOCK_FILE = ".eagle3-output.lock"
# Folders written before owner files existed, recognised by what only one command writes.
SIGNS = {"dump-hidden": "manifest.json", "train": "checkpoints"}


def owner_of(directory: Path) -> str | None:
    """The command that owns ``directory``, or None for a new or foreign folder."""
    path = directory / OWNER_FILE
    if path.is_file():
        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["command"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return next((command for command, sign in SIGNS.items() if (directory / sign).exists()), None)


def in_use(directory: Path) -> bool:
    """Whether an eagle3 run holds ``directory`` now (its lock, see :func:`claimed_output_dir`)."""
    try:
        handle = (Path(directory) / LOCK_FILE).open("r", encoding="utf-8")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@contextmanager
def claimed_output_dir(directory: Path, command: str, flag: str = "--output-dir", *, is_main: bool = True) -> Iterator[Path]:
    """Create and check ``directory`` for ``command`` and hold its lock until the block ends."""
    directory = prepare_output_dir(Path(directory), flag)
    if not is_main:
        yield directory
        return
    owner = owner_of(directory)
    if owner is not None and owner != command:
        raise Eagle3Error(f"{flag} {directory} holds the output of eagle3 {owner}; eagle3 {command} will not write into it",
                          hint=f"give eagle3 {command} a folder of its own")
    handle = (directory / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Eagle3Error(
                f"{flag} {directory} is in use by another eagle3 run ({holder})",
                hint="wait for it to finish, or choose another folder",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, eagle3 {command}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        if owner_of(directory) is None:
            atomic_write_json(directory / OWNER_FILE, {"command": command})
        yield directory
    finally:
        handle.close()  # releases the lock
