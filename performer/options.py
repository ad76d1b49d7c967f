"""The live performer's options and their ranges, defined once.

:class:`LiveOptions` owns every range a live option may take
(:data:`LiveOptions.RANGES`); ``validate`` checks them for callers that build
options in code, and the command line (:mod:`performer.live_cli`) derives its
argparse types and help from the same table, so the two cannot disagree.
Where a range is a property of the machinery (the tempi the clock follows,
the morph lengths the director plans, the swing the scheduler compiles) it
is taken from that module rather than typed again.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from model import paths
from model.errors import DrumPerformerError
from performer.clock import MAX_BPM, MIN_BPM, SPP_UNITS
from performer.director import MORPH_MAX, MORPH_MIN, SEED_HEADROOM
from performer.ports import API_CHOICES
from performer.scheduler import MAX_SWING


class LiveError(DrumPerformerError):
    pass


@dataclass(frozen=True)
class Range:
    """An option's accepted values: ``kind`` within lo..hi (inclusive); ``unit`` follows in messages."""

    kind: type
    lo: float
    hi: float
    unit: str = ""

    def text(self) -> str:
        return f"{self.lo:g}..{self.hi:g}" if math.isfinite(self.hi) else f">= {self.lo:g}"


@dataclass
class LiveOptions:
    port: str | None = None
    clock_port: str | None = None
    api: str = "auto"
    bpm: float | None = None  # None: follow MIDI clock
    channel: int = 10  # 1-based, GM drums
    quantize: bool = False
    swing: float = 0.0  # percent of a 16th that every second 16th is delayed
    seed: int | None = None
    temperature: float | None = None  # None: the model's default
    model: str | None = None
    record: str | None = None
    map: str | None = None
    morph_cycles: int = 4
    start_on_clock: bool = False
    headless: bool | None = None  # None: headless when there is no terminal
    latency_ms: float = 0.0
    spp_units: str = "16ths"  # what the master's Song Position Pointer counts: "16ths" (the spec) or "clocks" (Ardour)
    link: bool = False  # follow an Ableton Link session (--bpm: the tempo it starts a session at)
    style: str | None = None  # the model's style to start in (None: "any"); checked against the model at load
    fills_every: int = 0  # a learned fill in bar 4 of every N-th cycle (0: only when asked)
    follow: str | None = None  # --follow: None off; "" a virtual input "Drum Performer Follow"; else a port name
    follow_amount: float = 0.5  # how far each cycle's groove moves towards what the player played
    humanize: bool = False  # the humanizer's velocities and offsets for a --groove clip and a lock's result
    groove_file: str | None = None  # --groove FILE.mid: the starting groove (4 bars of a drum clip)
    audio: bool = False  # also play through the default audio output (performer.audio_out)
    soundfont: str | None = None  # --audio with this SoundFont's GM kit instead of the built-in one

    RANGES: ClassVar[dict[str, Range]] = {
        "channel": Range(int, 1, 16),
        "bpm": Range(float, MIN_BPM, MAX_BPM, " BPM"),
        "latency_ms": Range(float, -50, 50),
        "swing": Range(float, 0, MAX_SWING * 100, " percent"),
        # each later request takes the next seed: leave room for SEED_HEADROOM of them below 2**32
        "seed": Range(int, 0, 2**32 - 1 - SEED_HEADROOM),
        "temperature": Range(float, 0, math.inf),  # the model's own range is checked once it is loaded
        "morph_cycles": Range(int, MORPH_MIN, MORPH_MAX),
        "fills_every": Range(int, 0, 64),
        "follow_amount": Range(float, 0, 1),  # 0 ignores the player, 1 plays what the tap encoder hears
    }

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def validate(self) -> None:
        for name, r in self.RANGES.items():
            v = getattr(self, name)
            if v is None:
                continue
            if not (isinstance(v, int | float) and math.isfinite(v) and r.lo <= v <= r.hi):
                raise LiveError(f"{self.flag(name)} {v} must be {r.text()}{r.unit}")
        if self.spp_units not in SPP_UNITS:
            raise LiveError(f"--spp-units {self.spp_units!r} must be one of {', '.join(SPP_UNITS)}")
        if self.api not in API_CHOICES:
            raise LiveError(f"--api {self.api!r} must be one of {', '.join(API_CHOICES)}")
        if self.record is not None:
            self.record = str(check_record_path(self.record))
        if self.soundfont is not None and not Path(self.soundfont).expanduser().is_file():
            raise LiveError(f"--soundfont {self.soundfont} does not exist")


# --- where --record writes ------------------------------------------------------------------------


def fills_arg(text: str) -> int:
    """``--fills every:N`` (a fill in bar 4 of every N-th cycle) or ``off`` -> N (0 = off)."""
    import argparse

    t = text.strip().lower()
    if t == "off":
        return 0
    r = LiveOptions.RANGES["fills_every"]
    if t.startswith("every:"):
        try:
            n = int(t[len("every:"):])
        except ValueError:
            n = -1
        if 1 <= n <= r.hi:
            return n
    raise argparse.ArgumentTypeError(f"{text!r}: use every:N (N = 1..{r.hi:g} cycles) or off")


def free_path(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``stem-2.ext``, ``stem-3.ext``, ...

    A numbered name rather than an overwrite flag: a take is cheap to rename and
    expensive to lose, and the user is told the name at start and at exit.
    """
    if not os.path.lexists(path):
        return path
    n = 2
    while os.path.lexists(path.with_name(f"{path.stem}-{n}{path.suffix}")):
        n += 1
    return path.with_name(f"{path.stem}-{n}{path.suffix}")


def check_record_path(record: str) -> Path:
    """The file ``--record`` will write, checked before the performance starts.

    Everything that would make the write fail at exit is refused now, so a take
    is never played and then lost: an empty name, a folder, a missing or
    unwritable parent, a parent that is a file, a target that is not a regular
    file (a FIFO or device node: the atomic rename would replace it). An
    existing file is kept: the take goes to a numbered name beside it.
    """
    if not record.strip():
        raise LiveError("--record needs a file name, like take1.mid")
    p = Path(record).expanduser()
    if p.is_dir():
        raise LiveError(f"--record {p} is a folder; give a file name like take1.mid")
    paths.check_file(record, "--record")  # a file in the way, a read-only folder
    if not p.parent.is_dir():
        raise LiveError(f"--record {p}: folder {p.parent} does not exist")
    if os.path.lexists(p) and not (p.is_file() and not p.is_symlink()):
        raise LiveError(f"--record {p} exists and is not a regular file; give a new file name")
    return free_path(p)


def fallback_record_path(path: Path) -> Path:
    """Where a take goes when its own path cannot be written at exit: the temp folder."""
    import tempfile

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return free_path(Path(tempfile.gettempdir()) / f"drum-performer-{stamp}-{path.name or 'take.mid'}")
