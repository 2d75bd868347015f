"""Atomic file writes: records, job scripts, sweep state and reports are whole or absent, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, data: str | bytes, *, mode: int = 0o666) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see all or nothing.

    `mode` is filtered by the umask, as open() would; mkstemp alone would leave the file private.
    A temp file left by a process killed mid-write is named `.NAME.*.tmp`.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
