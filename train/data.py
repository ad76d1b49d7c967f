"""Drum MIDI folder -> cached arrays -> 4-bar training windows.

A dataset folder is either the Groove MIDI Dataset (``info.csv`` with its
official ``split`` column) or any folder of drum MIDI files (split by a hash of
the relative file name, so it never changes when files are added). Each file
becomes one full-length Pattern; windows are cut from those tracks on load,
so the cache stays small (a class index and two float16 arrays per step).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model import bundle, drums, midifile
from model.errors import DrumPerformerError
from model.fileio import atomic_savez, atomic_write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
CACHE_VERSION = 3  # bump when the representation changes (2: per-track style, kind, session; 3: fill window count)
ANY_STYLE = bundle.ANY_STYLE  # style of a file without a genre (a folder without info.csv); style index 0
FILL_CONTEXTS = 4  # training windows per GMD fill clip: different 3-bar grooves before the fill bar
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
    fill_windows: dict = field(default_factory=dict)  # split -> count of "3 beat bars + fill" windows
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
        if any(self.fill_windows.values()):
            out.append("  fill windows: " + ", ".join(f"{s} {self.fill_windows.get(s, 0)}" for s in SPLITS))
        if self.unknown_pitches:
            dropped = ", ".join(f"{p}x{n}" for p, n in sorted(self.unknown_pitches.items()))
            out.append(f"  unknown pitches dropped (pitch x notes): {dropped}")
        return out


def hash_split(rel: str) -> str:
    """Deterministic 80/10/10 split from the file's relative path."""
    h = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 80 else "validation" if h < 90 else "test"


@dataclass(frozen=True)
class FileInfo:
    """What the dataset says of one file, beyond its notes."""

    style: str = ANY_STYLE  # GMD's genre word (the first word of info.csv's style), or "any"
    kind: str = "beat"  # "beat" or "fill" (GMD's beat_type)
    session: str = ""  # recordings of one session share it (fills are paired with its beats)
    bpm: float = 0.0


def genre(style: str) -> str:
    """GMD's style column ("funk/groove1", "jazz/funk") -> its genre word ("funk", "jazz")."""
    word = style.strip().split("/")[0].strip().lower()
    return word or ANY_STYLE


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


def file_infos(folder: Path) -> dict[str, FileInfo]:
    """Relative path -> FileInfo from info.csv (empty for a plain folder: every file is "any" beat)."""
    info = folder / "info.csv"
    if not info.exists():
        return {}
    with info.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        try:
            bpm = float(r.get("bpm") or 0.0)
        except ValueError:
            bpm = 0.0
        kind = "fill" if (r.get("beat_type") or "").strip().lower() == "fill" else "beat"
        out[r["midi_filename"]] = FileInfo(genre(r.get("style") or ""), kind, r.get("session") or "", bpm)
    return out


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
    infos: list[FileInfo] = field(default_factory=list)  # (F,) per track; empty = all "any" beats

    def info(self, i: int) -> FileInfo:
        return self.infos[i] if self.infos else FileInfo()

    def windows(self, hop: int = drums.STEPS_PER_BAR * drums.HOP_BARS, with_track: bool = False):
        """(W,) start indices of the non-silent 4-bar windows inside beat tracks
        (and (W,) their track numbers with ``with_track``). Fill clips are about a bar
        long: they enter training through :meth:`fill_windows`, never here."""
        out, owner = [], []
        silent = self.classes == 0
        # cumulative count of non-silent steps, to test each window in O(1)
        nz = np.concatenate([[0], np.cumsum(~silent)])
        for i, (a, b) in enumerate(zip(self.starts[:-1], self.starts[1:], strict=True)):
            if self.info(i).kind != "beat":
                continue
            for s in range(a, b - drums.STEPS + 1, hop):
                if nz[s + drums.STEPS] - nz[s] > 0:
                    out.append(s)
                    owner.append(i)
        starts = np.asarray(out, dtype=np.int64)
        return (starts, np.asarray(owner, dtype=np.int64)) if with_track else starts

    def fill_windows(self, contexts: int = FILL_CONTEXTS, seed: int = 0) -> np.ndarray:
        """(W, 5) start index of each bar of "three beat bars + a fill bar" windows, and of
        the beat bar that the fill replaces (column 4).

        Every GMD fill clip (about one bar) is paired with a beat recording of the
        same session and genre (the closest tempo); bars 1-3 are ``contexts``
        different bar-aligned stretches of that beat, bar 4 is the clip's first
        bar. Real playing on both sides: no rule writes a fill. The replaced beat
        bar is what the encoder sees in bar 4 (see :class:`WindowSet`).
        """
        S = drums.STEPS_PER_BAR
        beats: dict[tuple[str, str], list[int]] = {}
        for i in range(len(self.starts) - 1):
            inf = self.info(i)
            if inf.kind == "beat" and self.starts[i + 1] - self.starts[i] >= 3 * S:
                beats.setdefault((inf.session, inf.style), []).append(i)
        out = []
        for i in range(len(self.starts) - 1):
            inf = self.info(i)
            a, b = int(self.starts[i]), int(self.starts[i + 1])
            if inf.kind != "fill" or b - a < S or not (self.classes[a : a + S] != 0).any():
                continue
            cands = beats.get((inf.session, inf.style))
            if not cands:
                continue
            j = min(cands, key=lambda k: (abs(self.info(k).bpm - inf.bpm), k))
            ba, bb = int(self.starts[j]), int(self.starts[j + 1])
            n_ctx = (bb - ba) // S - 3  # bar-aligned 4-bar stretches (the 4th: the beat bar the fill replaces)
            rng = np.random.default_rng((seed, i))
            for k in rng.permutation(max(n_ctx, 0))[:contexts]:
                c0 = ba + int(k) * S
                out.append([c0, c0 + S, c0 + 2 * S, a, c0 + 3 * S])
        return np.asarray(out, dtype=np.int64).reshape(-1, drums.BARS + 1)


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
    infos_of: dict[str, list[FileInfo]] = {s: [] for s in SPLITS}
    known = file_infos(folder)
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
        infos_of[split].append(known.get(rel, FileInfo()))

    tracks = {s: _concat(ps, infos_of[s]) for s, ps in per_split.items()}
    summary.windows = {s: int(len(t.windows())) for s, t in tracks.items()}
    summary.fill_windows = {s: int(len(t.fill_windows())) for s, t in tracks.items()}
    if sum(summary.windows.values()) == 0:
        reasons = "; ".join(f"{n} {r}" for r, n in summary.skipped.most_common(3)) or "no usable notes"
        raise DataError(
            f"no 4-bar drum windows in {folder}: {summary.files_seen} files listed, "
            f"{summary.files_used} usable ({reasons})"
        )
    try:
        _save_cache(cache, tracks, summary)
    except OSError as e:
        # the tracks are in memory: a cache that cannot be written only costs the next run time
        log.warning("cannot write the preprocessing cache %s (%s); going on without it", cache, e.strerror or e)
        for tmp in (cache / f"{s}.tmp.npz" for s in SPLITS):
            with contextlib.suppress(OSError):
                tmp.unlink()
    summary.seconds = time.perf_counter() - t0
    return tracks, summary


def _concat(patterns: list[drums.Pattern], infos: list[FileInfo]) -> Tracks:
    if not patterns:
        z = np.zeros((0, drums.NUM_VOICES), np.float16)
        return Tracks(np.zeros(0, np.int16), z, z, np.zeros(1, np.int64))
    return Tracks(
        infos=list(infos),
        classes=np.concatenate([p.classes() for p in patterns]).astype(np.int16),
        velocity=np.concatenate([p.velocity for p in patterns]).astype(np.float16),
        offset=np.concatenate([p.offset for p in patterns]).astype(np.float16),
        starts=np.concatenate([[0], np.cumsum([p.steps for p in patterns])]).astype(np.int64),
    )


def _save_cache(cache: Path, tracks: dict[str, Tracks], summary: Summary) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for s, t in tracks.items():
        atomic_savez(cache / f"{s}.npz", classes=t.classes, velocity=t.velocity, offset=t.offset, starts=t.starts)
    manifest = {
        "version": CACHE_VERSION,
        "folder": summary.folder,
        "source": summary.source,
        "files_seen": summary.files_seen,
        "files_used": summary.files_used,
        "skipped": dict(summary.skipped),
        "windows": summary.windows,
        "fill_windows": summary.fill_windows,
        "infos": {s: [dataclasses.asdict(i) for i in t.infos] for s, t in tracks.items()},
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
            infos = [FileInfo(**d) for d in m["infos"][s]]
            tracks[s] = Tracks(z["classes"], z["velocity"], z["offset"], z["starts"], infos)
    summary.cached = True
    summary.files_used = m["files_used"]
    summary.skipped.update(m["skipped"])
    summary.windows = m["windows"]
    summary.fill_windows = m.get("fill_windows", {})
    summary.unknown_pitches.update({int(k): v for k, v in m["unknown_pitches"].items()})
    return tracks


class WindowSet:
    """The 4-bar windows of one split as model-ready arrays (materialised once).

    Beat windows (every bar-hop of every beat track) come first, then the fill
    windows (three beat bars + a fill bar, see :meth:`Tracks.fill_windows`).
    ``style`` (W,) is the index into ``styles`` plus one (0 = "any": a style the
    model does not know, or a folder without genres); ``fill`` (W, 4) marks the
    bars that are fills.
    """

    def __init__(self, tracks: Tracks, styles: list[str] | tuple[str, ...] = (), fills: bool = True,
                 fill_contexts: int = FILL_CONTEXTS):
        T, S = drums.STEPS, drums.STEPS_PER_BAR
        starts, owner = tracks.windows(with_track=True)
        idx = starts[:, None] + np.arange(T)[None, :]  # (Wb, T)
        track_of = list(owner)
        fill_bars = np.zeros((len(starts), drums.BARS), np.float32)
        enc_idx = idx
        if fills:
            fw = tracks.fill_windows(fill_contexts)  # (Wf, 5) bar starts + the replaced beat bar
            if len(fw):
                bar = np.arange(S)[None, None, :]
                fidx = (fw[:, :4, None] + bar).reshape(len(fw), T)  # (Wf, T) what is played
                eidx = (fw[:, [0, 1, 2, 4], None] + bar).reshape(len(fw), T)  # (Wf, T) the groove alone
                idx = np.concatenate([idx, fidx])
                enc_idx = np.concatenate([enc_idx, eidx])
                fb = np.zeros((len(fw), drums.BARS), np.float32)
                fb[:, -1] = 1.0
                fill_bars = np.concatenate([fill_bars, fb])
                track_of += list(np.searchsorted(tracks.starts, fw[:, 3], side="right") - 1)
        self.classes = tracks.classes[idx].astype(np.int64)  # (W, T)
        self.velocity = tracks.velocity[idx].astype(np.float32)  # (W, T, V)
        self.offset = tracks.offset[idx].astype(np.float32)  # (W, T, V)
        # what the encoder sees: the window itself, except that a fill window shows the beat
        # bar the fill replaced. So z holds the groove and only the fill flag asks for the fill;
        # trained on the fill itself, z learned the fill and the flag did nothing (seen at step 1,500).
        self.enc_classes = tracks.classes[enc_idx].astype(np.int64)  # (W, T)
        self.enc_velocity = tracks.velocity[enc_idx].astype(np.float32)  # (W, T, V)
        self.enc_offset = tracks.offset[enc_idx].astype(np.float32)  # (W, T, V)
        self.hits = drums.index_to_hits(self.classes).astype(np.float32)  # (W, T, V)
        self.fill = fill_bars  # (W, N)
        self.styles = tuple(styles)
        lookup = {name: k + 1 for k, name in enumerate(self.styles)}
        self.style_names = [tracks.info(int(t)).style for t in track_of]  # (W,) genre words
        self.style = np.asarray([lookup.get(n, 0) for n in self.style_names], np.int64).reshape(-1)  # (W,)
        self.is_fill = fill_bars[:, -1] > 0  # (W,)

    def __len__(self) -> int:
        return len(self.classes)

    def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "classes": self.classes[idx],
            "velocity": self.velocity[idx],
            "offset": self.offset[idx],
            "hits": self.hits[idx],
            "style": self.style[idx],
            "fill": self.fill[idx],
            "enc_classes": self.enc_classes[idx],
            "enc_velocity": self.enc_velocity[idx],
            "enc_offset": self.enc_offset[idx],
        }

    def patterns(self, idx) -> list[drums.Pattern]:
        return [drums.Pattern(self.hits[i] > 0.5, self.velocity[i], self.offset[i]) for i in idx]


def style_counts(tracks: Tracks) -> dict[str, int]:
    """Beat windows per genre word in a split (what decides which styles a model learns)."""
    _, owner = tracks.windows(with_track=True)
    return dict(Counter(tracks.info(int(t)).style for t in owner))
