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
    length_steps: float = 0.0  # the file's length (its last event, end of track included; as far as read)


MAX_TICK = 10**7  # pretty_midi's own limit (it builds a tick -> seconds table that long)


def _load(path: Path, max_bars: int | None):
    """The file as a PrettyMIDI, read through mido so that two valid oddities pass.

    A tempo of 0 (a set_tempo of 0 microseconds per quarter) is dropped: notes
    are placed by tick, so the tempo only names the BPM. With ``max_bars``,
    events after that many 4/4 bars are cut before pretty_midi sees them, so a
    long but valid file (a 10,000-bar take) is not taken for a corrupt one when
    only its start is wanted; a cut track ends at the limit (an end of track
    there), so a clip whose notes all lie beyond it reads as having none there
    rather than as broken (pretty_midi fails on a track with no events).

    -> (the PrettyMIDI, the file's length in ticks: its last event, end of
    track included, at most the limit).
    """
    import mido
    import pretty_midi  # lazy: heavy import, only needed for files

    try:
        mf = mido.MidiFile(str(path))
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise MidiReadError(f"cannot read the file ({e.strerror})") from None
    except EOFError:
        raise MidiReadError("unreadable MIDI (empty, or cut short)") from None
    except Exception as e:  # mido raises many types for broken files
        raise MidiReadError(f"unreadable MIDI ({type(e).__name__}: {e})") from None
    limit = max_bars * drums.BEATS_PER_BAR * mf.ticks_per_beat if max_bars else None
    longest = 0
    for i, track in enumerate(mf.tracks):
        now, kept = 0, []
        cut = False
        for msg in track:
            now += msg.time
            if limit is not None and now > limit:
                cut, now = True, limit
                break
            if msg.type == "set_tempo" and msg.tempo <= 0:
                continue
            kept.append((now, msg))
        if cut or not kept:
            kept.append((now, mido.MetaMessage("end_of_track")))
        longest = max(longest, now)
        new = mido.MidiTrack()
        prev = 0
        for t, msg in kept:
            new.append(msg.copy(time=t - prev))
            prev = t
        mf.tracks[i] = new
    if limit is None and longest >= MAX_TICK:
        raise MidiReadError(f"too long to read whole ({longest} ticks; the limit is {MAX_TICK})")
    try:
        return pretty_midi.PrettyMIDI(mido_object=mf), longest
    except Exception as e:  # pretty_midi raises many types for broken files
        raise MidiReadError(f"unreadable MIDI ({type(e).__name__}: {e})") from None


def read_drum_track(path: str | Path, max_bars: int | None = None) -> DrumTrack:
    """Read the drum-channel notes of a MIDI file onto the sixteenth grid.

    ``max_bars``: read only the start (see ``_load``). Raises MidiReadError for
    unreadable files, files with no drum notes, and time signatures other than 4/4.
    """
    pm, length = _load(Path(path), max_bars)
    for ts in pm.time_signature_changes:
        if (ts.numerator, ts.denominator) != (drums.BEATS_PER_BAR, 4):
            raise MidiReadError(f"time signature {ts.numerator}/{ts.denominator} is not 4/4")
    notes = [n for inst in pm.instruments if inst.is_drum for n in inst.notes]
    if not notes:
        has_other = any(inst.notes for inst in pm.instruments)
        cut = max_bars is not None and length >= max_bars * drums.BEATS_PER_BAR * pm.resolution
        where = f" in the first {max_bars} bars" if cut else ""  # notes may come later: not read
        raise MidiReadError(("no notes on the drum channel (10)" if has_other else "no notes") + where)
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
    return DrumTrack(pattern, bpm, unknown, length / ticks_per_step)


def read_pattern(path: str | Path) -> drums.Pattern:
    """The first STEPS steps (4 bars) of a drum MIDI file, padded with rests."""
    # two bars beyond the clip: a note pulled early onto bar 5 still has its note-off
    track = read_drum_track(path, max_bars=drums.BARS + 2).pattern
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
