"""``drum-performer humanize``, ``drumify`` and ``train-tap``: MIDI files in and out of ``performer.band``.

MIDI is read and written with mido in ticks, so a file's tempo map never
moves a note and everything humanize does not touch (other channels, unknown
drum pitches, meta events) is written back exactly as it came.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

from model import drums, paths
from model.errors import DrumPerformerError

DRUM_CHANNEL = 9  # mido numbers channels from 0: General MIDI drums are channel 10


class ClipError(DrumPerformerError):
    pass


def add_parsers(sub) -> None:
    from model.ranges import BPM, NONNEGATIVE, POSITIVE_INT

    positive_int, nonneg_float, bpm = POSITIVE_INT.arg(), NONNEGATIVE.arg(), BPM.arg()

    p = sub.add_parser("humanize", help="give a programmed drum clip a drummer's velocities and microtiming",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("clip", metavar="IN.mid", help="drum clip (channel 10); every hit is kept")
    p.add_argument("--out", required=True, metavar="OUT.mid", help="file to write (the whole clip)")
    p.add_argument("--model", help="exported model folder (default: the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent noise (used when --temperature > 0)")
    p.add_argument("--temperature", type=nonneg_float, default=0.0,
                   help="how far each 4-bar chunk's z moves from the encoded one (0: the encoded groove)")
    p.add_argument("--bpm", type=bpm, help="write the file at this tempo (default: the clip's tempo map)")
    p.set_defaults(func=run_humanize)

    p = sub.add_parser("drumify", help="the rhythm of any clip (bass, keys, taps) -> 4-bar drum parts that go with it",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("clip", metavar="IN.mid", help="any MIDI clip: every note-on counts, velocities too")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if needed)")
    p.add_argument("-n", type=positive_int, default=1, help="number of drum parts")
    p.add_argument("--seed", type=int, default=0, help="first seed (file i uses seed+i)")
    p.add_argument("--temperature", type=nonneg_float, help="sampling temperature (default: the model's)")
    p.add_argument("--channel", type=_channel, metavar="C", help="only note-ons on this MIDI channel, 1..16 (default: all)")
    p.add_argument("--quantize", action="store_true", help="write on the grid (keep velocities, drop microtiming)")
    p.add_argument("--on-onsets", action="store_true", help="drums only on the clip's onsets (some drum on each)")
    p.add_argument("--bpm", type=bpm, help="tempo written to the files (default: the clip's first tempo)")
    p.add_argument("--model", help="exported model folder (default: the shipped model)")
    p.set_defaults(func=run_drumify)


def _channel(s: str) -> int:
    try:
        c = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
    if not 1 <= c <= 16:
        raise argparse.ArgumentTypeError(f"{s} is outside 1..16")
    return c


# --- reading ---------------------------------------------------------------------------------------


def _load(path: str | Path):
    import mido

    p = Path(path)
    if not p.exists():
        raise ClipError(f"clip {p} does not exist")
    try:
        mid = mido.MidiFile(str(p))
    except Exception as e:  # mido raises several types for broken files
        raise ClipError(f"{p}: unreadable MIDI ({type(e).__name__}: {e})") from None
    if mid.type == 2:
        raise ClipError(f"{p}: MIDI type 2 (independent sequences) is not supported")
    return mid


def _abs(track):
    t = 0
    for msg in track:
        t += msg.time
        yield t, msg


def _check_meter(mid, path) -> None:
    for tr in mid.tracks:
        for _, m in _abs(tr):
            if m.type == "time_signature" and (m.numerator, m.denominator) != (drums.BEATS_PER_BAR, 4):
                raise ClipError(f"{path}: time signature {m.numerator}/{m.denominator} is not 4/4")


def _first_bpm(mid) -> float:
    first = min(((t, m) for tr in mid.tracks for t, m in _abs(tr) if m.type == "set_tempo"),
                key=lambda e: e[0], default=None)
    return 60e6 / first[1].tempo if first else 120.0


def _length_steps(mid) -> float:
    """The clip's length in steps: its last event (end of track included)."""
    tps = mid.ticks_per_beat / drums.STEPS_PER_BEAT
    return max((t for tr in mid.tracks for t, _ in _abs(tr)), default=0) / tps


def read_onsets(path: str | Path, channel: int | None = None):
    """Every note-on of a clip (or of one channel, 1..16) -> positions (steps), velocities 0..1, bpm, length."""
    mid = _load(path)
    _check_meter(mid, path)
    tps = mid.ticks_per_beat / drums.STEPS_PER_BEAT
    pos, vel = [], []
    for tr in mid.tracks:
        for t, m in _abs(tr):
            if m.type == "note_on" and m.velocity > 0 and (channel is None or m.channel == channel - 1):
                pos.append(t / tps)
                vel.append(drums.velocity_from_midi(m.velocity))
    if not pos:
        where = f" on channel {channel}" if channel else ""
        raise ClipError(f"{path}: no note-ons{where}")
    return np.array(pos), np.array(vel, np.float32), _first_bpm(mid), _length_steps(mid)


def taps_from_onsets(pos: np.ndarray, vel: np.ndarray, length: float) -> tuple[np.ndarray, str]:
    """Onsets -> (T, 3) taps of one 4-bar cycle, and a note of what was done to fit it.

    A clip of 1 or 2 bars is looped to 4 (a riff repeats); a clip shorter than a
    bar is padded to one bar first; 3 bars get a bar of rest; beyond 4 bars the
    first 4 are used.
    """
    S = drums.STEPS_PER_BAR
    bars = max(1, math.ceil((max(length, float(pos.max()) + 0.5) - 1e-6) / S))
    note = ""
    if max(length, float(pos.max()) + 0.5) < S:
        note = "clip shorter than a bar: padded to one bar"
    pat = drums.onsets_to_pattern(pos, np.zeros(len(pos), np.int64), vel, bars * S)
    taps = np.stack([pat.hits[:, 0], pat.velocity[:, 0], pat.offset[:, 0]], -1).astype(np.float32)
    if bars in (1, 2):
        taps = np.tile(taps, (drums.BARS // bars, 1))
        note = "; ".join(x for x in (note, f"{bars}-bar clip looped to 4 bars") if x)
    elif bars == 3:
        taps = np.concatenate([taps, np.zeros((S, 3), np.float32)])
        note = "3-bar clip: a bar of rest added"
    elif bars > drums.BARS:
        taps = taps[: drums.STEPS]
        note = f"{bars}-bar clip: the first 4 bars used"
    if not taps[:, 0].any():
        raise ClipError("no note-ons in the first 4 bars")
    return taps, note


# --- humanize --------------------------------------------------------------------------------------


def _drum_notes(mid):
    """[(track, on index, off index or None, abs on tick, abs off tick, voice)] of the known drum notes."""
    out = []
    for ti, tr in enumerate(mid.tracks):
        open_: dict[int, list] = {}
        for i, (t, m) in enumerate(_abs(tr)):
            if m.type not in ("note_on", "note_off") or m.channel != DRUM_CHANNEL:
                continue
            v = drums.pitch_to_voice(m.note)
            if v is None:
                continue
            if m.type == "note_on" and m.velocity > 0:
                open_.setdefault(m.note, []).append([ti, i, None, t, None, v])
                out.append(open_[m.note][-1])
            elif open_.get(m.note):
                n = open_[m.note].pop(0)
                n[2], n[4] = i, t
    return out


def humanize_file(engine, src: str | Path, dst: str | Path, temperature: float = 0.0, seed: int = 0,
                  bpm: float | None = None) -> dict:
    """Humanize every known drum note of ``src`` into ``dst``; everything else is copied as is. -> summary."""
    import mido

    from performer import band

    mid = _load(src)
    _check_meter(mid, src)
    notes = _drum_notes(mid)
    if not notes:
        has_other = any(m.type == "note_on" for tr in mid.tracks for m in tr)
        raise ClipError(f"{src}: " + ("no notes on known drum pitches of channel 10" if has_other else "no notes"))
    tps = mid.ticks_per_beat / drums.STEPS_PER_BEAT
    S = drums.STEPS_PER_BAR
    steps = [math.floor(n[3] / tps + 0.5) for n in notes]
    length = max(_length_steps(mid), max(steps) + 0.5)
    padded = length < S
    chunks = max(1, math.ceil((max(steps) + 1) / drums.STEPS))
    hits = np.zeros((chunks * drums.STEPS, drums.NUM_VOICES), bool)
    for st, n in zip(steps, notes, strict=True):
        hits[st, n[5]] = True
    src_pat = drums.Pattern(hits, *band.quantise(hits))
    out = band.humanize_pattern(engine, src_pat, temperature=temperature, seed=seed)
    assert np.array_equal(out.hits, hits)
    # move each note to its step + the model's offset, with the model's velocity; lengths kept
    moved: dict[tuple[int, int], tuple[int, int | None]] = {}  # (track, index) -> new tick (on/off), new velocity
    for st, n in zip(steps, notes, strict=True):
        ti, i_on, i_off, t_on, t_off, v = n
        new_on = max(0, round((st + float(out.offset[st, v])) * tps))
        moved[(ti, i_on)] = (new_on, drums.velocity_to_midi(float(out.velocity[st, v])))
        if i_off is not None:
            moved[(ti, i_off)] = (new_on + (t_off - t_on), None)
    tracks = []
    for ti, tr in enumerate(mid.tracks):
        evs = []
        for i, (t, m) in enumerate(_abs(tr)):
            if bpm is not None and m.type == "set_tempo":
                continue
            if (ti, i) in moved:
                t, vel = moved[(ti, i)]
                if vel is not None:
                    m = m.copy(velocity=vel)
            evs.append((t, 1 if m.type == "end_of_track" else 0, i, m))
        if bpm is not None and ti == 0:
            evs.append((0, 0, -1, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
        end = max((e[0] for e in evs), default=0)
        evs = [(end, *e[1:]) if e[3].type == "end_of_track" else e for e in evs]
        evs.sort(key=lambda e: (e[0], e[1], e[2]))
        new, last = mido.MidiTrack(), 0
        for t, _, _, m in evs:
            new.append(m.copy(time=t - last))
            last = t
        tracks.append(new)
    res = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
    res.tracks.extend(tracks)
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        res.save(str(tmp))
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"notes": len(notes), "hits": int(hits.sum()), "chunks": chunks, "padded": padded,
            "pattern": out}


def run_humanize(a) -> int:
    from performer.engine import Engine

    out = paths.check_file(a.out, "--out")
    engine = Engine.load(a.model)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        s = humanize_file(engine, a.clip, out, a.temperature, a.seed, a.bpm)
    except OSError as e:
        raise ClipError(f"cannot write {out}: {e.strerror or e}") from None
    if s["padded"]:
        print("clip shorter than a bar: humanized as a padded bar")
    print(f"humanized {s['notes']} drum notes ({s['hits']} hits, {s['chunks']} x 4 bars) -> {out}")
    return 0


# --- drumify ---------------------------------------------------------------------------------------


def run_drumify(a) -> int:
    from model import midifile
    from performer import band
    from performer.engine import Engine

    out = paths.check_dir(a.out, "--out")
    pos, vel, clip_bpm, length = read_onsets(a.clip, a.channel)
    taps, note = taps_from_onsets(pos, vel, length)
    engine = Engine.load(a.model)
    pats = band.drumify(engine, taps, a.n, a.seed, a.temperature, on_onsets=a.on_onsets)
    bpm = a.bpm or clip_bpm
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(pats):
            written.append(out / f"drumify_{a.seed + i}.mid")
            midifile.write_pattern(p, written[-1], bpm=bpm, quantize=a.quantize)
    except OSError as e:
        raise ClipError(f"cannot write into {out}: {e.strerror or e}") from None
    if note:
        print(note)
    print(f"{a.n} drum parts from {int(taps[:, 0].sum())} onsets of {a.clip}, seeds {a.seed}..{a.seed + a.n - 1}, {bpm:g} BPM")
    for w in written:
        print(f"  {w}")
    return 0
