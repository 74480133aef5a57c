"""Writing outputs: atomically, readable as the umask allows, and failing with one clear line.

Everything is written to a temporary name in the destination folder, flushed, fsynced and
renamed over the final name (``os.replace`` is atomic on POSIX). ``mkstemp`` creates files
with mode 0600; they are given the mode a plain ``open`` would (0666 minus the umask), so a
serving engine running as another user of the group can read a draft. A write that fails —
a full disk, a folder without write permission — becomes one :class:`Eagle3Error` naming the
path and the fix, also when the writer is torch's or safetensors' (which report a full disk
as ``RuntimeError`` / ``SafetensorError`` without a file name).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from eagle3cli.errors import Eagle3Error

# Below this much free space a failed write is reported as a full disk.
NEARLY_FULL_BYTES = 16 << 20


_umask_lock = threading.Lock()


def umask() -> int:
    """The process umask. Read from ``/proc/self/status`` where Linux offers it: setting and
    restoring it (the portable way) races with writer threads doing the same."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:
        current = os.umask(0o022)
        os.umask(current)
    return current


def file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 minus the umask."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 minus the umask."""
    return 0o777 & ~umask()


def free_bytes(path: Path) -> int | None:
    """Free space on the file system holding ``path`` (its nearest existing parent), or None."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def format_bytes(num_bytes: float) -> str:
    """``1.5 GB``-style size (decimal units)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    value, unit = float(num_bytes), 0
    while value >= 1000 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    return f"{value:.0f} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def write_error(path: Path, error: BaseException) -> Eagle3Error:
    """One clear error for a failed write of ``path``."""
    free = free_bytes(path)
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or "No space left" in str(error) or (free is not None and free < NEARLY_FULL_BYTES):
        where = f"{format_bytes(free)} free" if free is not None else "no free space"
        return Eagle3Error(f"could not write {path}: the disk is full ({where})",
                           hint="free some space or choose another output folder, then rerun the same command")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Eagle3Error(f"could not write {path}: {os.strerror(code)}",
                           hint="choose an output folder you can write to")
    reason = getattr(error, "strerror", None) or str(error)
    return Eagle3Error(f"could not write {path}: {reason}", hint="check the output folder and the disk")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` (an OS error, or torch's and safetensors' wrappers of one)
    into :func:`write_error`'s one-line error."""
    try:
        yield
    except Eagle3Error:
        raise
    except Exception as error:
        if not isinstance(error, (OSError, RuntimeError)) and type(error).__name__ != "SafetensorError":
            raise
        raise write_error(path, error) from error


def prepare_output_dir(path: Path, flag: str) -> Path:
    """Create ``path`` and prove it writable before any heavy work starts."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise Eagle3Error(f"{flag} {path} is a file, not a folder", hint=f"pass a folder to {flag}")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".eagle3-write-check."):
            pass
    except OSError as error:
        raise Eagle3Error(f"{flag} {path} cannot be written: {error.strerror or error}",
                          hint=f"pass a folder you can write to as {flag}") from error
    return path


def share_tree(path: Path) -> None:
    """Give every file and folder under ``path`` the mode the umask asks for: writers that
    create files 0600 (safetensors' ``save_file``, ``mkdtemp``) would keep them from the group."""
    files, folders = file_mode(), folder_mode()
    with writing(path):
        for root, directories, names in os.walk(path):
            os.chmod(root, folders)
            for name in names:
                os.chmod(os.path.join(root, name), files)


@contextmanager
def staged_directory(output_dir: Path) -> Iterator[Path]:
    """A fresh folder beside ``output_dir`` to write into: when the block succeeds it gets the
    umask's modes and replaces ``output_dir``; when it fails it is removed. So the folder
    appears complete or not at all."""
    output_dir = Path(output_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        with writing(output_dir):
            yield staging
            share_tree(staging)  # mkdtemp and save_file make 0700/0600: a vLLM run by another user could not read it
            _replace_directory(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_directory(new: Path, old: Path) -> None:
    """Rename ``new`` to ``old``; an existing ``old`` is moved aside first and put back if the rename fails."""
    if not old.exists():
        new.rename(old)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{old.name}.old.", dir=old.parent)) / old.name
    old.rename(aside)
    try:
        new.rename(old)
    except BaseException:
        aside.rename(old)
        raise
    finally:
        shutil.rmtree(aside.parent, ignore_errors=True)


def read_json_object(path: Path, missing_hint: str) -> tuple[dict[str, Any], bytes]:
    """The JSON object in ``path`` and the file's bytes (to hash); one clear error otherwise."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Eagle3Error(f"{path} does not exist", hint=missing_hint) from None
    except OSError as error:
        raise Eagle3Error(f"cannot read {path}: {error.strerror or error}") from error
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Eagle3Error(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise Eagle3Error(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data, raw


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(descriptor, file_mode())
            with os.fdopen(descriptor, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
