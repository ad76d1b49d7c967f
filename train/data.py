"""Drum MIDI folder -> cached arrays -> 4-bar training windows.

A dataset folder is either the Groove MIDI Dataset (``info.csv`` with its
official ``split`` column) or any folder of drum MIDI files (split by a hash of
the relative file name, so it never changes when files are added). Each file
becomes one full-length Pattern; windows are cut from those tracks on load,
so the cache stays small (a class index and two float16 arrays per step).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model import drums, midifile
from model.errors import DrumPerformerError
from model.fileio import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
CACHE_VERSION = 1  # bump when the representation changes
MIDI_SUFFIXES = (".mid", ".midi")


class DataError(DrumPerformerError):
    """The dataset cannot be used; the message says which folder and what was found."""


@dataclass
class Summary:
    folder: str
    source: str  # "info.csv" or "hash split"
    files_seen: int = 0
    files_used: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    windows: dict = field(default_factory=dict)  # split -> count
    unknown_pitches: Counter = field(default_factory=Counter)  # pitch -> notes dropped
    seconds: float = 0.0
    cached: bool = False

    def lines(self) -> list[str]:
        out = [
            f"dataset {self.folder} ({self.source}{', from cache' if self.cached else ''}, {self.seconds:.1f} s)",
            f"  files: {self.files_seen} seen, {self.files_used} used, {sum(self.skipped.values())} skipped",
        ]
        for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            out.append(f"    skipped {n:5d}: {reason}")
        out.append("  windows: " + ", ".join(f"{s} {self.windows.get(s, 0)}" for s in SPLITS))
        if self.unknown_pitches:
            dropped = ", ".join(f"{p}x{n}" for p, n in sorted(self.unknown_pitches.items()))
            out.append(f"  unknown pitches dropped (pitch x notes): {dropped}")
        return out


def hash_split(rel: str) -> str:
    """Deterministic 80/10/10 split from the file's relative path."""
    h = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 80 else "validation" if h < 90 else "test"


def list_files(folder: Path) -> tuple[list[tuple[str, str]], str]:
    """[(relative path, split)], source. Raises DataError for a missing/empty folder."""
    if not folder.exists():
        raise DataError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"dataset path {folder} is not a folder")
    info = folder / "info.csv"
    if info.exists():
        with info.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "midi_filename" not in rows[0] or "split" not in rows[0]:
            raise DataError(f"{info} has no midi_filename/split columns")
        files = [(r["midi_filename"], r["split"]) for r in rows]
        return files, "info.csv"
    files = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
    )
    if not files:
        raise DataError(f"dataset folder {folder} has no info.csv and no .mid/.midi files")
    return [(f, hash_split(f)) for f in files], "hash split"


def _fingerprint(folder: Path, files: list[tuple[str, str]]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for rel, split in files:
        p = folder / rel
        try:
            st = p.stat()
            h.update(f"{rel}|{split}|{st.st_size}|{int(st.st_mtime)}".encode())
        except OSError:
            h.update(f"{rel}|{split}|missing".encode())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    env = os.environ.get("DRUM_PERFORMER_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("drum-performer")) / "datasets"


@dataclass
class Tracks:
    """Cached tracks of one split, concatenated: per-step arrays plus where each track starts."""

    classes: np.ndarray  # (S,) int16
    velocity: np.ndarray  # (S, 9) float16
    offset: np.ndarray  # (S, 9) float16
    starts: np.ndarray  # (F + 1,) int64 boundaries of each track

    def windows(self, hop: int = drums.STEPS_PER_BAR * drums.HOP_BARS) -> np.ndarray:
        """(W,) start indices of the non-silent 4-bar windows inside tracks."""
        out = []
        silent = self.classes == 0
        # cumulative count of non-silent steps, to test each window in O(1)
        nz = np.concatenate([[0], np.cumsum(~silent)])
        for a, b in zip(self.starts[:-1], self.starts[1:], strict=True):
            for s in range(a, b - drums.STEPS + 1, hop):
                if nz[s + drums.STEPS] - nz[s] > 0:
                    out.append(s)
        return np.asarray(out, dtype=np.int64)


def preprocess(folder: str | Path, cache_dir: str | Path | None = None) -> tuple[dict[str, Tracks], Summary]:
    """Read (or load from cache) every file of a dataset folder. -> tracks per split, summary."""
    t0 = time.perf_counter()
    folder = Path(folder).expanduser().resolve()
    files, source = list_files(folder)
    summary = Summary(folder=str(folder), source=source, files_seen=len(files))
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    cache = cache_root / _fingerprint(folder, files)
    if (cache / "manifest.json").exists():
        try:
            tracks = _load_cache(cache, summary)
            summary.seconds = time.perf_counter() - t0
            return tracks, summary
        except Exception as e:  # a broken cache is rebuilt, never trusted
            log.warning("cache %s unusable (%s); rebuilding", cache, e)

    per_split: dict[str, list[drums.Pattern]] = {s: [] for s in SPLITS}
    for rel, split in files:
        if split not in per_split:
            summary.skipped[f"unknown split {split!r}"] += 1
            continue
        path = folder / rel
        if not path.exists():
            summary.skipped["listed in info.csv but missing"] += 1
            continue
        try:
            track = midifile.read_drum_track(path)
        except midifile.MidiReadError as e:
            summary.skipped[str(e)] += 1
            summary.unknown_pitches.update(e.unknown_pitches)
            log.warning("skipped %s: %s", rel, e)
            continue
        summary.unknown_pitches.update(track.unknown_pitches)
        summary.files_used += 1
        per_split[split].append(track.pattern)

    tracks = {s: _concat(ps) for s, ps in per_split.items()}
    summary.windows = {s: int(len(t.windows())) for s, t in tracks.items()}
    if sum(summary.windows.values()) == 0:
        reasons = "; ".join(f"{n} {r}" for r, n in summary.skipped.most_common(3)) or "no usable notes"
        raise DataError(
            f"no 4-bar drum windows in {folder}: {summary.files_seen} files listed, "
            f"{summary.files_used} usable ({reasons})"
        )
    _save_cache(cache, tracks, summary)
    summary.seconds = time.perf_counter() - t0
    return tracks, summary


def _concat(patterns: list[drums.Pattern]) -> Tracks:
    if not patterns:
        z = np.zeros((0, drums.NUM_VOICES), np.float16)
        return Tracks(np.zeros(0, np.int16), z, z, np.zeros(1, np.int64))
    return Tracks(
        classes=np.concatenate([p.classes() for p in patterns]).astype(np.int16),
        velocity=np.concatenate([p.velocity for p in patterns]).astype(np.float16),
        offset=np.concatenate([p.offset for p in patterns]).astype(np.float16),
        starts=np.concatenate([[0], np.cumsum([p.steps for p in patterns])]).astype(np.int64),
    )


def _save_cache(cache: Path, tracks: dict[str, Tracks], summary: Summary) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for s, t in tracks.items():
        atomic_write(
            cache / f"{s}.npz",
            lambda tmp, t=t: np.savez(tmp, classes=t.classes, velocity=t.velocity, offset=t.offset, starts=t.starts),
        )
    manifest = {
        "version": CACHE_VERSION,
        "folder": summary.folder,
        "source": summary.source,
        "files_seen": summary.files_seen,
        "files_used": summary.files_used,
        "skipped": dict(summary.skipped),
        "windows": summary.windows,
        "unknown_pitches": {str(k): v for k, v in summary.unknown_pitches.items()},
    }
    atomic_write_text(json.dumps(manifest, indent=1), cache / "manifest.json")  # last: it means the cache is whole


def _load_cache(cache: Path, summary: Summary) -> dict[str, Tracks]:
    m = json.loads((cache / "manifest.json").read_text())
    if m.get("version") != CACHE_VERSION:
        raise ValueError("old cache version")
    tracks = {}
    for s in SPLITS:
        with np.load(cache / f"{s}.npz") as z:
            tracks[s] = Tracks(z["classes"], z["velocity"], z["offset"], z["starts"])
    summary.cached = True
    summary.files_used = m["files_used"]
    summary.skipped.update(m["skipped"])
    summary.windows = m["windows"]
    summary.unknown_pitches.update({int(k): v for k, v in m["unknown_pitches"].items()})
    return tracks


class WindowSet:
    """The 4-bar windows of one split as model-ready arrays (materialised once)."""

    def __init__(self, tracks: Tracks):
        starts = tracks.windows()
        idx = starts[:, None] + np.arange(drums.STEPS)[None, :]  # (W, T)
        self.classes = tracks.classes[idx].astype(np.int64)  # (W, T)
        self.velocity = tracks.velocity[idx].astype(np.float32)  # (W, T, V)
        self.offset = tracks.offset[idx].astype(np.float32)  # (W, T, V)
        self.hits = drums.index_to_hits(self.classes).astype(np.float32)  # (W, T, V)

    def __len__(self) -> int:
        return len(self.classes)

    def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "classes": self.classes[idx],
            "velocity": self.velocity[idx],
            "offset": self.offset[idx],
            "hits": self.hits[idx],
        }

    def patterns(self, idx) -> list[drums.Pattern]:
        return [drums.Pattern(self.hits[i] > 0.5, self.velocity[i], self.offset[i]) for i in idx]
