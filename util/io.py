"""File I/O shared by every step: JSON / gzipped JSON, and atomic writes.

Every result file is written atomically (temporary file in the same folder, fsync, ``os.replace``), so a crash
mid-write leaves the previous file intact and never a half-written one.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class DataError(Exception):
    """Bad user data (a file that is missing, malformed or inconsistent). The message names the file."""


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # Read once: os.umask can only be read by setting it, which is not thread-safe.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the permissions an ordinary open() would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def _is_gz(path: Path) -> bool:
    return path.suffix == ".gz"


def load_json(path: str | os.PathLike) -> Any:
    """Load ``.json`` or ``.json.gz``; a malformed or missing file raises DataError naming it."""
    path = Path(path)
    try:
        if _is_gz(path):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from e


def store_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write ``obj`` as JSON (gzipped when the name ends in ``.gz``), atomically."""
    path = Path(path)
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys)
    if _is_gz(path):
        # mtime=0: the same content gives the same bytes.
        atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        atomic_write_text(path, text + "\n")


def load_text_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty, stripped lines of a text file (class lists); a missing file raises DataError."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
