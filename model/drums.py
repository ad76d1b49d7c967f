"""The drum vocabulary: the single source of truth for voices, pitches, grid and sizes.

Everything else (data pipeline, model, export, performer) asks this module for
sizes and conversions, the way Magenta's ``DrumsConverter`` owns its
representation. No torch here: the performer imports it at run time.

Representation of one example (a :class:`Pattern`): ``STEPS`` sixteenth-note
steps x ``NUM_VOICES`` voices, each cell holding

* ``hits``     bool   -- the voice is struck on this step
* ``velocity`` float  -- 0..1, the loudest onset on this step (0 where no hit)
* ``offset``   float  -- signed fraction of a step in [-0.5, 0.5) from the grid
  to the onset (0 where no hit)

The 9 hit bits of a step form one class index (bit ``i`` set for voice ``i``),
so a step is one of ``NUM_CLASSES`` = 512 classes and 0 is a rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- voices -----------------------------------------------------------------

VOICES: tuple[str, ...] = (
    "kick",
    "snare",
    "closed_hihat",
    "open_hihat",
    "low_tom",
    "mid_tom",
    "high_tom",
    "crash",
    "ride",
)
# Short labels for grids and terminal views, same order as VOICES.
VOICE_LABELS: tuple[str, ...] = ("BD", "SD", "HH", "OH", "LT", "MT", "HT", "CR", "RD")
NUM_VOICES = len(VOICES)
NUM_CLASSES = 2**NUM_VOICES  # every subset of voices struck together; 0 = rest

# The pitch each voice is played on (General MIDI drum map, as in the GMD paper).
OUTPUT_PITCHES: tuple[int, ...] = (36, 38, 42, 46, 43, 47, 50, 49, 51)

# The design table: input pitches of each voice (Roland TD-11 / GMD mapping).
_TABLE: dict[int, tuple[int, ...]] = {
    0: (36, 35),
    1: (38, 40, 37),
    2: (42, 22, 44),
    3: (46, 26),
    4: (43, 58),
    5: (45, 47),
    6: (48, 50),
    7: (49, 55, 57, 52),
    8: (51, 59, 53),
}
# Other General MIDI drum pitches a user's MIDI may contain, mapped by family.
_GM_FAMILIES: dict[int, int] = {
    39: 1,  # hand clap -> snare
    41: 4,  # low floor tom -> low tom
    54: 2,  # tambourine -> closed hi-hat (a time-keeping voice)
    56: 8,  # cowbell -> ride (it usually doubles the ride pattern)
    69: 2,  # cabasa -> closed hi-hat
    70: 2,  # maracas -> closed hi-hat
}

PITCH_TO_VOICE: dict[int, int] = {p: v for v, ps in _TABLE.items() for p in ps}
for _p, _v in _GM_FAMILIES.items():
    PITCH_TO_VOICE.setdefault(_p, _v)
del _p, _v

# --- grid -------------------------------------------------------------------

STEPS_PER_BEAT = 4  # sixteenth notes
BEATS_PER_BAR = 4  # 4/4 only
STEPS_PER_BAR = STEPS_PER_BEAT * BEATS_PER_BAR  # 16
BARS = 4  # one example / one live cycle
STEPS = STEPS_PER_BAR * BARS  # 64
HOP_BARS = 1  # training windows start every bar

OFFSET_MIN, OFFSET_MAX = -0.5, 0.5  # offset range in steps, [min, max)
LOUD = 0.6  # velocity from which a text grid shows a hit as X rather than x
GATE_STEPS = 0.5  # note length in steps, in files and live (drums ignore it; DAWs show it)

_BITS = (1 << np.arange(NUM_VOICES)).astype(np.int64)  # (9,)


def pitch_to_voice(pitch: int) -> int | None:
    """Voice index of a MIDI drum pitch, or None when the pitch is unknown."""
    return PITCH_TO_VOICE.get(int(pitch))


def hits_to_index(hits: np.ndarray) -> np.ndarray:
    """(..., 9) bool -> (...,) int64 class index in [0, 512)."""
    hits = np.asarray(hits)
    if hits.shape[-1] != NUM_VOICES:
        raise ValueError(f"hits must end in {NUM_VOICES} voices, got shape {hits.shape}")
    return (hits.astype(np.int64) * _BITS).sum(axis=-1)


def index_to_hits(index: np.ndarray) -> np.ndarray:
    """(...,) int class index -> (..., 9) bool."""
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= NUM_CLASSES):
        raise ValueError(f"class index out of range [0, {NUM_CLASSES})")
    return (index[..., None] & _BITS) != 0


def class_mask_for_lock(hits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Allowed classes per step when the voices in ``keep`` are locked to ``hits``.

    hits: (T, 9) bool, keep: (9,) bool -> (T, 512) bool. A class is allowed at a
    step when it agrees with ``hits`` on every kept voice; the free voices may do
    anything. Used to regenerate the rest of a groove around locked voices.
    """
    hits = np.asarray(hits, dtype=bool)
    keep = np.asarray(keep, dtype=bool)
    all_hits = index_to_hits(np.arange(NUM_CLASSES))  # (512, 9)
    agree = all_hits[None, :, :] == hits[:, None, :]  # (T, 512, 9)
    return np.all(agree | ~keep[None, None, :], axis=-1)  # (T, 512)


# --- pattern ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Pattern:
    """A drum pattern on the sixteenth grid: three (T, 9) arrays, T = STEPS by default."""

    hits: np.ndarray  # (T, 9) bool
    velocity: np.ndarray  # (T, 9) float32, 0..1, 0 where no hit
    offset: np.ndarray  # (T, 9) float32, [-0.5, 0.5) steps, 0 where no hit

    def __post_init__(self) -> None:
        hits = np.asarray(self.hits, dtype=bool)
        vel = np.asarray(self.velocity, dtype=np.float32)
        off = np.asarray(self.offset, dtype=np.float32)
        if hits.ndim != 2 or hits.shape[1] != NUM_VOICES:
            raise ValueError(f"pattern arrays must be (steps, {NUM_VOICES}), got {hits.shape}")
        if vel.shape != hits.shape or off.shape != hits.shape:
            raise ValueError("hits, velocity and offset must have the same shape")
        # Cells without a hit carry no velocity or timing: keeps equality meaningful.
        vel = np.where(hits, np.clip(vel, 0.0, 1.0), 0.0).astype(np.float32)
        off = np.where(hits, np.clip(off, OFFSET_MIN, np.nextafter(OFFSET_MAX, 0)), 0.0)
        object.__setattr__(self, "hits", hits)
        object.__setattr__(self, "velocity", vel)
        object.__setattr__(self, "offset", off.astype(np.float32))

    # constructors
    @classmethod
    def empty(cls, steps: int = STEPS) -> Pattern:
        z = np.zeros((steps, NUM_VOICES), dtype=np.float32)
        return cls(z.astype(bool), z, z)

    @classmethod
    def from_classes(
        cls,
        classes: np.ndarray,
        velocity: np.ndarray | None = None,
        offset: np.ndarray | None = None,
    ) -> Pattern:
        """Build from (T,) class indices; default velocity 0.8 and offset 0."""
        hits = index_to_hits(classes)
        if velocity is None:
            velocity = np.full(hits.shape, 0.8, dtype=np.float32)
        if offset is None:
            offset = np.zeros(hits.shape, dtype=np.float32)
        return cls(hits, velocity, offset)

    # views
    @property
    def steps(self) -> int:
        return self.hits.shape[0]

    def classes(self) -> np.ndarray:
        """(T,) int64 class index per step."""
        return hits_to_index(self.hits)

    def quantized(self) -> Pattern:
        """The same hits and velocities on the grid (offsets zeroed)."""
        return Pattern(self.hits, self.velocity, np.zeros_like(self.offset))

    def with_voices(self, other: Pattern, voices: np.ndarray) -> Pattern:
        """Copy of self with the voices marked in ``voices`` (9,) taken from ``other``."""
        v = np.asarray(voices, dtype=bool)[None, :]
        return Pattern(
            np.where(v, other.hits, self.hits),
            np.where(v, other.velocity, self.velocity),
            np.where(v, other.offset, self.offset),
        )

    def muted(self, mute: np.ndarray) -> Pattern:
        """Copy with the voices marked in ``mute`` (9,) silenced."""
        keep = ~np.asarray(mute, dtype=bool)[None, :]
        return Pattern(self.hits & keep, self.velocity, self.offset)

    def density(self) -> float:
        """Hits per step per voice, 0..1."""
        return float(self.hits.mean())

    def to_array(self) -> np.ndarray:
        """(T, 27) float32: hits, velocity, offset side by side (for caching)."""
        return np.concatenate(
            [self.hits.astype(np.float32), self.velocity, self.offset], axis=1
        )

    @classmethod
    def from_array(cls, arr: np.ndarray) -> Pattern:
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 3 * NUM_VOICES:
            raise ValueError(f"pattern array must be (steps, {3 * NUM_VOICES}), got {arr.shape}")
        n = NUM_VOICES
        return cls(arr[:, :n] > 0.5, arr[:, n : 2 * n], arr[:, 2 * n :])

    def equals(self, other: Pattern, atol: float = 1e-6) -> bool:
        return (
            self.hits.shape == other.hits.shape
            and bool(np.array_equal(self.hits, other.hits))
            and bool(np.allclose(self.velocity, other.velocity, atol=atol))
            and bool(np.allclose(self.offset, other.offset, atol=atol))
        )

    def row(self, v: int, playhead: int | None = None) -> str:
        """One voice as text, the one grid notation (grids, the live view, test messages):

        ``X`` a loud hit (velocity >= LOUD), ``x`` a soft one, ``-`` an empty beat,
        ``.`` an empty 16th, ``|`` between bars; at ``playhead`` ``#`` (hit) or ``^``.
        """
        cells = []
        for t in range(self.steps):
            if t and t % STEPS_PER_BAR == 0:
                cells.append("|")
            if playhead is not None and t == playhead:
                cells.append("#" if self.hits[t, v] else "^")
            elif self.hits[t, v]:
                cells.append("X" if self.velocity[t, v] >= LOUD else "x")
            else:
                cells.append("-" if t % STEPS_PER_BEAT == 0 else ".")
        return "".join(cells)

    def grid(self, playhead: int | None = None) -> str:
        """Text grid, one line per voice (its label, then :meth:`row`)."""
        return "\n".join(f"{VOICE_LABELS[v]} {self.row(v, playhead)}" for v in range(NUM_VOICES))


def onsets_to_pattern(
    positions: np.ndarray,
    voices: np.ndarray,
    velocities: np.ndarray,
    steps: int,
) -> Pattern:
    """Quantise onsets to the grid.

    positions: (N,) onset times in steps (float, step 0 = start of bar 1);
    voices: (N,) voice index; velocities: (N,) 0..1. Each onset goes to its
    nearest step; where a voice has several onsets on one step the loudest wins
    (velocity and offset both come from it). Onsets outside [0, steps) are dropped.
    """
    positions = np.asarray(positions, dtype=np.float64)
    voices = np.asarray(voices, dtype=np.int64)
    velocities = np.asarray(velocities, dtype=np.float32)
    hits = np.zeros((steps, NUM_VOICES), dtype=bool)
    vel = np.zeros((steps, NUM_VOICES), dtype=np.float32)
    off = np.zeros((steps, NUM_VOICES), dtype=np.float32)
    step = np.floor(positions + 0.5).astype(np.int64)
    frac = (positions - step).astype(np.float32)  # in [-0.5, 0.5)
    inside = (step >= 0) & (step < steps)
    # Loudest first, so the first write to a cell is the one we keep.
    for i in np.argsort(-velocities[inside], kind="stable"):
        t, v = step[inside][i], voices[inside][i]
        if not hits[t, v]:
            hits[t, v] = True
            vel[t, v] = velocities[inside][i]
            off[t, v] = frac[inside][i]
    return Pattern(hits, vel, off)


def pattern_to_onsets(pattern: Pattern, quantize: bool = False) -> list[tuple[float, int, float]]:
    """(position in steps, voice, velocity 0..1) for every hit, sorted by time."""
    ts, vs = np.nonzero(pattern.hits)
    out = []
    for t, v in zip(ts.tolist(), vs.tolist(), strict=True):
        pos = float(t) if quantize else float(t) + float(pattern.offset[t, v])
        out.append((pos, v, float(pattern.velocity[t, v])))
    out.sort(key=lambda e: (e[0], e[1]))
    return out


def velocity_to_midi(v: float) -> int:
    """0..1 -> MIDI velocity 1..127 (a struck note is never silent)."""
    return int(min(127, max(1, round(float(v) * 127))))


def velocity_from_midi(v: int) -> float:
    return float(v) / 127.0
