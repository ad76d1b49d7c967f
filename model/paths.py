"""Output paths, checked before any work is done.

A folder or file that cannot be written must be one line at the start, not a
traceback after an hour of training or a take lost after the gig: every
command that writes (sample, eval, train, export, live --record) checks its
outputs here first. A missing folder is fine (it is created); a file where a
folder should be, or a folder nobody may write to, is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from model.errors import DrumPerformerError


class PathError(DrumPerformerError):
    """An output path that cannot be written; the message names the flag and the culprit."""


def nearest_existing(p: Path) -> Path:
    """``p`` or its closest ancestor that exists."""
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _check_parent(p: Path, where: Path, flag: str) -> None:
    near = nearest_existing(where)
    if not near.is_dir():
        raise PathError(f"{flag} {p}: {near} is a file, not a folder")
    if not os.access(near, os.W_OK):
        raise PathError(f"{flag} {p}: folder {near} is not writable")


def check_dir(path: str, flag: str) -> Path:
    """A folder to create or write into."""
    if not str(path).strip():
        raise PathError(f"{flag} needs a folder name")
    p = Path(path).expanduser()
    if os.path.lexists(p) and not p.is_dir():
        raise PathError(f"{flag} {p} exists and is not a folder")
    _check_parent(p, p, flag)
    return p


def check_file(path: str, flag: str) -> Path:
    """A file to create or replace (its folders may be missing)."""
    if not str(path).strip():
        raise PathError(f"{flag} needs a file name")
    p = Path(path).expanduser()
    if p.is_dir():
        raise PathError(f"{flag} {p} is a folder; give a file name")
    _check_parent(p, p.parent, flag)
    return p
