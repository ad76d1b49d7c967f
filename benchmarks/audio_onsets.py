"""Do the WAV's drum onsets sit on the MIDI file's note-ons? (issue 10, "must show")

    python -m benchmarks.audio_onsets [--model DIR] [--seed 21] [-n 2] [--json FILE]

Runs ``drum-performer sample -n N --seed S --wav --out TMP`` (the real CLI, in a
subprocess), then for each .mid reads its note-ons back with pretty_midi (not
with the code that rendered the WAV) and measures, at every audible onset, how
far the audio's energy rise is from the note-on, in ms.

Onset detector: the first difference of the mono mix (a high-pass that keeps
the broadband attack of every voice and drops the kick's 50 Hz body, whose
energy would otherwise wobble from window to window), its energy in 0.5 ms
windows, and the frame where that energy grows by the largest factor from one
window to the next, searched within +-20 ms of the note and never past halfway
to the next distinct note time. It places a known onset on a ride tail within
0.5 ms (tests/test_sound.py checks that, and that a 3 ms shift reads as 3 ms).

Audible onsets: those whose own attack (the notes rendered alone) has at least
4x (6 dB) the high-passed energy of the mix in the 2 ms before. A ghost note
under a ringing snare or hat is not an onset any detector can place; which
notes count is decided before measuring, never from the error. That every
note, audible or not, starts on its note-on is measured a second way: the
WAV minus the groove rendered without that note leaves the note's own sound,
whose first frame is compared with the note-on (``own_contribution_every_note``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WINDOW = 22  # frames: 0.5 ms at 44.1 kHz
SEARCH_S = 0.020
EPS = 1e-9  # energy floor: about -90 dB in a 0.5 ms window, below 16-bit noise
# An onset is the window whose energy rises most over the loudest of the PRIOR windows before it,
# not over the one window before it. Why: under a ringing open hat the noise's energy wobbles
# from window to window, and one quiet window followed by a loud one looked like an attack: a
# snare 4.2 ms before a closed hat, under a ringing open hat, was placed 12 ms early (seed 21 of
# the shipped model, tests/test_sound.py). Against the loudest of the 4 before (2 ms), that file
# and the older model's both measure within 0.2 ms.
PRIOR = 4
GROUP_S = 0.001  # note-ons closer than this are one onset (struck together)


def onset_frames(audio: np.ndarray, expected: np.ndarray, sr: int) -> np.ndarray:
    """Detected onset frame for each distinct expected frame (sorted, grouped within 1 ms)."""
    x = audio.mean(axis=1) if audio.ndim == 2 else audio
    d = np.diff(x.astype(np.float64), prepend=0.0)
    c = np.concatenate([[0.0], np.cumsum(d * d)])
    n = len(x)

    def env(i: np.ndarray) -> np.ndarray:  # energy of frames (i-W, i]
        hi = np.clip(i + 1, 0, n)
        lo = np.clip(i + 1 - WINDOW, 0, n)
        return c[hi] - c[lo]

    out = []
    search = int(SEARCH_S * sr)
    for k, e in enumerate(expected):
        lo = e - search
        hi = e + search
        if k > 0:
            lo = max(lo, (expected[k - 1] + e) // 2)
        if k + 1 < len(expected):
            hi = min(hi, (expected[k + 1] + e) // 2)
        i = np.arange(lo + WINDOW - 1, hi + WINDOW)  # candidate window ends: onset + W - 1
        before = np.max([env(i - k * WINDOW) for k in range(1, PRIOR + 1)], axis=0)
        rise = np.log(env(i) + EPS) - np.log(before + EPS)
        out.append(int(i[int(np.argmax(rise))]) - (WINDOW - 1))
    return np.array(out, dtype=np.int64)


def group(frames: np.ndarray, sr: int, within_s: float = GROUP_S) -> np.ndarray:
    """Distinct onset frames: sorted, notes within ``within_s`` of the previous kept one merged.

    Live recordings pass one JACK period and a bit: the MIDI notes of one step may leave in
    two periods, and two groups 2.7 ms apart would split the search window between them."""
    out: list[int] = []
    for f in np.sort(frames):
        if not out or f - out[-1] > within_s * sr:
            out.append(int(f))
    return np.array(out, dtype=np.int64)


def midi_notes(mid: Path, sr: int) -> list[tuple[int, int, int]]:
    """(frame, pitch, velocity) of every note-on, through pretty_midi's own tick -> seconds map."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(mid))
    notes = [(round(n.start * sr), n.pitch, n.velocity) for inst in pm.instruments for n in inst.notes]
    return sorted(notes)


def kit_template(pitch: int, velocity: int) -> np.ndarray:
    """A note of the built-in kit alone, mono, from frame 0."""
    from performer import sound

    r = sound.Renderer()
    r.schedule(sound.Event(0, pitch, velocity))
    return r.render(2048).mean(axis=1)


def _hp_energy(x: np.ndarray, a: int, b: int) -> float:
    """Mean energy per frame of the first difference of x over [a, b)."""
    d = np.diff(x[max(0, a - 1) : b].astype(np.float64))
    return float(np.mean(d * d)) if d.size else 0.0


def audible(audio: np.ndarray, notes: list[tuple[int, int, int]], template, sr: int,
            margin: float = 4.0, within_s: float = GROUP_S) -> np.ndarray:
    """Distinct onset frames whose attack is at least ``margin`` x (6 dB) above what is already sounding.

    Why a selection: a ghost snare 130 ms after a loud one adds less energy
    than the ringing wires already there, so no energy detector can place it;
    this decides from the notes' own attack (their sound alone, ``template``)
    against the mix in the 2 ms before, never from the measured error.
    """
    x = audio.mean(axis=1) if audio.ndim == 2 else audio
    frames = group(np.array([n[0] for n in notes]), sr, within_s)
    keep = []
    for f in frames:
        own = max(_hp_energy(template(p, v), 0, WINDOW) for g, p, v in notes if 0 <= g - f <= within_s * sr)
        if own >= margin * _hp_energy(x, f - int(0.002 * sr), f):
            keep.append(f)
    return np.array(keep, dtype=np.int64)


def file_errors_ms(mid: Path, wav: Path) -> tuple[np.ndarray, int]:
    """Energy-onset error (ms) of each audible onset, and the number of distinct onsets."""
    from performer.sound import read_wav

    audio, sr = read_wav(wav)
    notes = midi_notes(mid, sr)
    exp = group(np.array([n[0] for n in notes]), sr)
    clear = audible(audio, notes, kit_template, sr)
    got = dict(zip(exp.tolist(), onset_frames(audio, exp, sr).tolist(), strict=True))
    return np.array([got[f] - f for f in clear.tolist()]) * 1000.0 / sr, len(exp)


def contribution_errors_ms(mid: Path, wav: Path) -> np.ndarray:
    """Every note, masked or not: where its own contribution to the WAV starts, minus its note-on.

    The WAV minus the same notes rendered without note k (the built-in kit,
    notes from pretty_midi) leaves note k's sound where the file put it, above
    16-bit rounding noise (< 2e-5) only from its start. Complements the energy
    detector, which cannot see masked notes; it relies on the kit being the
    one that rendered the WAV.
    """
    from performer import sound

    audio, sr = sound.read_wav(wav)
    notes = midi_notes(mid, sr)
    look = int(SEARCH_S * sr)
    errs = []
    for k, (frame, _, _) in enumerate(notes):
        # render every earlier note too, from the file's start: with many ringing cymbals the
        # renderer drops its oldest voices (MAX_VOICES), and a render that began later would keep
        # voices the file's render had dropped and differ from the start of the window
        start = 0
        a, b = max(0, frame - look), min(len(audio), frame + look)
        r = sound.Renderer()
        r.frame = start
        for j, (f, p, v) in enumerate(notes):
            if j != k and start <= f < b:
                r.schedule(sound.Event(f, p, v))
        rest = np.concatenate([r.render(sound.BLOCK) for _ in range(start, b, sound.BLOCK)])
        resid = np.abs(audio[a:b] - rest[a - start : b - start]).max(axis=1)
        errs.append(a + int(np.argmax(resid > 1e-4)) - frame)  # nothing found reads as -20 ms
    return np.array(errs) * 1000.0 / sr


def _stats(e: np.ndarray) -> dict:
    e = np.abs(e)
    return {
        "onsets": int(e.size),
        "median_abs_err_ms": round(float(np.median(e)), 3),
        "p95_abs_err_ms": round(float(np.percentile(e, 95)), 3),
        "max_abs_err_ms": round(float(e.max()), 3),
    }


def run(model: str | None, n: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "performer.cli", "sample", "-n", str(n), "--seed", str(seed), "--wav", "--out", tmp]
        if model:
            args += ["--model", model]
        subprocess.run(args, check=True, capture_output=True, text=True)
        files = sorted(Path(tmp).glob("*.mid"))
        res = [file_errors_ms(mid, mid.with_suffix(".wav")) for mid in files]
        contrib = np.concatenate([contribution_errors_ms(mid, mid.with_suffix(".wav")) for mid in files])
    out = {"command": f"drum-performer sample -n {n} --seed {seed} --wav", "files": [f.name for f in files],
           "distinct_onsets": sum(r[1] for r in res)}
    out["energy_rise_audible_onsets"] = _stats(np.concatenate([r[0] for r in res]))
    out["own_contribution_every_note"] = _stats(contrib)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    res = run(a.model, a.n, a.seed)
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
