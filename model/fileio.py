"""Writing a file so that a reader never sees half of it: write beside it, then rename over it.

Every file the project writes for a user (MIDI, reports, checkpoints, caches,
model metadata) goes through :func:`atomic_write`, so a crash, a full disk or
Ctrl-C leaves either the old file or the new one, never a torn one, and never
a stray temporary file. The temporary file is hidden (a leading dot), carries
the process id (two writers never share it) and keeps the target's suffix,
because some writers choose the format from it (``np.savez`` appends
``.npz`` to any other name, matplotlib picks the image format by suffix).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def temp_path(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through: ``.NAME.tmp-PID.SUFFIX`` beside it."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``.

    On any failure the temporary file is removed and the error propagates; an
    existing ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    """``text`` into ``path`` atomically (argument order as the trainer has always called it)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))
