"""Writing a file so that a reader never sees half of it: write beside it, then rename over it.

Every file the project writes for a user (MIDI, WAV, reports, checkpoints,
caches, model metadata) goes through :func:`atomic_write`, so a crash, a full
disk or Ctrl-C leaves either the old file or the new one, never a torn one,
and never a stray temporary file. The temporary file is ``NAME.tmp`` beside
the target, the project's one convention (tests look for leftover ``*.tmp``).
Writers that pick a format from the file name must be told the format
(matplotlib's ``format="png"``) or given an open file (``np.savez`` appends
``.npz`` to any other name).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def temp_path(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through: ``NAME.tmp`` beside it."""
    return path.with_name(path.name + ".tmp")


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


def atomic_savez(path: str | Path, **arrays) -> Path:
    """``np.savez`` into ``path`` atomically (through an open file, so no ``.npz`` is appended)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def atomic_savez_compressed(path: str | Path, **arrays) -> Path:
    """``np.savez_compressed`` into ``path`` atomically; ``np.load`` reads it like any ``.npz``,
    so readers need no change (a shipped file is smaller; a cache is written uncompressed,
    :func:`atomic_savez`, because it is read often and never shipped)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def atomic_write_text(text: str, path: str | Path) -> Path:
    """``text`` into ``path`` atomically (argument order as the trainer has always called it)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))
