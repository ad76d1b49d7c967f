"""Standard MIDI files <-> Patterns, on the grid that ``model.drums`` defines.

Reading goes through MIDI ticks, not seconds, so a file's tempo map never moves
a note off its step. pretty_midi is imported lazily: the live loop never needs
it unless it records or reads clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model import drums
from model.errors import DrumPerformerError
from model.fileio import atomic_write


class MidiReadError(DrumPerformerError):
    """A file that cannot become a drum Pattern; the message says why (one line)."""

    def __init__(self, msg: str, unknown_pitches: dict[int, int] | None = None):
        super().__init__(msg)
        self.unknown_pitches = unknown_pitches or {}  # dropped notes, for the data summary


@dataclass
class DrumTrack:
    """All drum onsets of one file as a full-length Pattern (whole bars)."""

    pattern: drums.Pattern  # (bars * 16, 9)
    bpm: float
    unknown_pitches: dict[int, int] = field(default_factory=dict)  # pitch -> count dropped


def read_drum_track(path: str | Path) -> DrumTrack:
    """Read the drum-channel notes of a MIDI file onto the sixteenth grid.

    Raises MidiReadError for unreadable files, files with no drum notes, and
    time signatures other than 4/4.
    """
    import pretty_midi  # lazy: heavy import, only needed for files

    path = Path(path)
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as e:  # pretty_midi raises many types for broken files
        raise MidiReadError(f"unreadable MIDI ({type(e).__name__}: {e})") from None
    for ts in pm.time_signature_changes:
        if (ts.numerator, ts.denominator) != (drums.BEATS_PER_BAR, 4):
            raise MidiReadError(f"time signature {ts.numerator}/{ts.denominator} is not 4/4")
    notes = [n for inst in pm.instruments if inst.is_drum for n in inst.notes]
    if not notes:
        has_other = any(inst.notes for inst in pm.instruments)
        raise MidiReadError("no notes on the drum channel (10)" if has_other else "no notes")
    ticks_per_step = pm.resolution / drums.STEPS_PER_BEAT
    positions, voices, vels = [], [], []
    unknown: dict[int, int] = {}
    for n in notes:
        v = drums.pitch_to_voice(n.pitch)
        if v is None:
            unknown[n.pitch] = unknown.get(n.pitch, 0) + 1
            continue
        positions.append(pm.time_to_tick(n.start) / ticks_per_step)
        voices.append(v)
        vels.append(drums.velocity_from_midi(n.velocity))
    if not positions:
        raise MidiReadError("no notes on known drum pitches", unknown)
    # Whole bars; an onset pulled early onto the next bar's downbeat still fits.
    last = max(positions) + 0.5
    bars = max(1, math.ceil(last / drums.STEPS_PER_BAR))
    pattern = drums.onsets_to_pattern(
        np.array(positions), np.array(voices), np.array(vels), bars * drums.STEPS_PER_BAR
    )
    tempi = pm.get_tempo_changes()[1]
    bpm = float(tempi[0]) if len(tempi) else 120.0
    return DrumTrack(pattern, bpm, unknown)


def read_pattern(path: str | Path) -> drums.Pattern:
    """The first STEPS steps (4 bars) of a drum MIDI file, padded with rests."""
    track = read_drum_track(path).pattern
    arr = track.to_array()[: drums.STEPS]
    if arr.shape[0] < drums.STEPS:
        arr = np.concatenate([arr, np.zeros((drums.STEPS - arr.shape[0], arr.shape[1]), np.float32)])
    return drums.Pattern.from_array(arr)


def write_pattern(
    patterns: drums.Pattern | list[drums.Pattern],
    path: str | Path,
    bpm: float = 120.0,
    quantize: bool = False,
    resolution: int = 480,
) -> None:
    """Write one or more Patterns back to back as a GM drum track (channel 10)."""
    import pretty_midi

    if isinstance(patterns, drums.Pattern):
        patterns = [patterns]
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(bpm), resolution=resolution)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(drums.BEATS_PER_BAR, 4, 0.0))
    inst = pretty_midi.Instrument(program=0, is_drum=True, name="drum-performer")
    step_s = 60.0 / bpm / drums.STEPS_PER_BEAT
    base = 0
    for p in patterns:
        for pos, v, vel in drums.pattern_to_onsets(p, quantize=quantize):
            start = max(0.0, (base + pos) * step_s)
            inst.notes.append(
                pretty_midi.Note(
                    velocity=drums.velocity_to_midi(vel),
                    pitch=drums.OUTPUT_PITCHES[v],
                    start=start,
                    end=start + drums.GATE_STEPS * step_s,
                )
            )
        base += p.steps
    pm.instruments.append(inst)
    atomic_write(path, lambda tmp: pm.write(str(tmp)))
