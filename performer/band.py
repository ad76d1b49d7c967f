"""Playing with the band: humanize a programmed beat, drumify a played rhythm.

Both are GrooVAE's transformations (Gillick et al. 2019) done with the
exported graphs and numpy only:

* **humanize**: when the model folder has a humanizer (``humanize.onnx``,
  trained on GMD windows quantised -> their real velocities and offsets, see
  ``train.tap``), it gives each hit its velocity and offset and the hits are
  taken as they are. Without one, the quantised clip is encoded to z and
  decoded with the sampler's allowed-class mask set to exactly the clip's class
  at every step: the decoder can only choose the clip's hits, and its heads
  give the dynamics and microtiming (weaker: see train/tap.py for figures).
* **drumify**: the onsets of any clip are flattened to one voice (per step: a
  hit, the loudest velocity and its offset, the same flattening the tap
  encoder was trained on) and the tap encoder (``tap.onnx``) maps them into
  the model's latent space; the decoder, untouched, plays the drum part.

Arrays: T = 64 steps, V = 9 voices, taps (T, 3) = hit, velocity 0..1, offset
in steps [-0.5, 0.5).
"""

from __future__ import annotations

import math

import numpy as np

from model import drums
from model.errors import DrumPerformerError

TAP, HUMANIZE = "tap.onnx", "humanize.onnx"
QUANTISED_VELOCITY = 100 / 127  # what a programmed beat usually carries, and what the encoders were shown
HUMANIZE_FEATURES = drums.NUM_VOICES + drums.STEPS_PER_BAR  # hits + the step's place in the bar (one-hot)


class BandError(DrumPerformerError):
    pass


# --- arrays ---------------------------------------------------------------------------------------


def flatten(hits: np.ndarray, velocity: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(..., T, V) drum arrays -> (..., T, 3) taps: per step a hit when any voice plays, with the
    loudest voice's velocity and offset (what a MIDI clip read onto one voice gives, see
    :func:`drums.onsets_to_pattern`)."""
    hits = np.asarray(hits, bool)
    vel = np.where(hits, velocity, -1.0)
    loud = vel.argmax(-1)[..., None]  # (..., T, 1)
    any_hit = hits.any(-1)
    v = np.where(any_hit, np.take_along_axis(np.asarray(velocity, np.float32), loud, -1)[..., 0], 0.0)
    o = np.where(any_hit, np.take_along_axis(np.asarray(offset, np.float32), loud, -1)[..., 0], 0.0)
    return np.stack([any_hit.astype(np.float32), v, o], -1).astype(np.float32)


def quantise(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The programmed version of a beat: (velocity, offset) with every hit at QUANTISED_VELOCITY, on the grid."""
    hits = np.asarray(hits, bool)
    return np.where(hits, QUANTISED_VELOCITY, 0.0).astype(np.float32), np.zeros(hits.shape, np.float32)


def exact_mask(classes: np.ndarray) -> np.ndarray:
    """(B, T) classes -> (B, T, C) bool allowing exactly that class at every step."""
    classes = np.asarray(classes, np.int64)
    mask = np.zeros((*classes.shape, drums.NUM_CLASSES), bool)
    np.put_along_axis(mask, classes[..., None], True, -1)
    return mask


# --- the model's side -----------------------------------------------------------------------------


def _session(engine, name: str):
    """An ONNX Runtime session for one of the model folder's extra graphs, None when it has none."""
    if name not in engine.meta.get("files", {}):
        return None
    cache = engine.__dict__.setdefault("_band_sessions", {})
    if name not in cache:
        cache[name] = engine.extra_session(name)
    return cache[name]


def has_tap(engine) -> bool:
    return TAP in engine.meta.get("files", {})


def humanize_z(engine, classes: np.ndarray) -> np.ndarray:
    """(B, T) classes -> (B, Z) the full encoder's mean of the quantised beats."""
    vel, off = quantise(drums.index_to_hits(classes))
    return engine.encode_arrays(classes, vel, off)[0]


def humanize_input(hits: np.ndarray) -> np.ndarray:
    """(B, T, V) hits -> (B, T, V + 16) humanizer input: the hits and the step's place in the bar
    (explicit, so swing and accents by position need no counting by the LSTM)."""
    hits = np.asarray(hits, np.float32)
    pos = np.eye(drums.STEPS_PER_BAR, dtype=np.float32)[np.arange(hits.shape[-2]) % drums.STEPS_PER_BAR]
    pos = np.broadcast_to(pos, (*hits.shape[:-1], drums.STEPS_PER_BAR))
    return np.concatenate([hits, pos], -1)


def humanize_arrays(engine, classes: np.ndarray, z: np.ndarray | None = None, style: int = 0):
    """(B, T) classes -> velocity, offset (B, T, V) from the model, hits exactly ``classes``.

    The humanizer when the model has one (and no z is asked for), else the decoder's heads."""
    classes = np.asarray(classes, np.int64).reshape(-1, drums.STEPS)
    sess = _session(engine, HUMANIZE)
    if sess is not None and z is None:
        hits = drums.index_to_hits(classes)
        v, o = sess.run(None, {"taps": humanize_input(hits)})
        return np.where(hits, v, 0.0).astype(np.float32), np.where(hits, o, 0.0).astype(np.float32)
    if z is None:
        z = humanize_z(engine, classes)
    c, v, o = engine.decode(z, 0.0, None, exact_mask(classes), style)
    if not np.array_equal(c, classes):  # the mask allows one class per step: cannot happen
        raise BandError("the sampler left the forced hits (model graph without a working mask?)")
    hits = drums.index_to_hits(classes)
    return np.where(hits, v, 0.0).astype(np.float32), np.where(hits, o, 0.0).astype(np.float32)


def humanize_pattern(engine, pattern: drums.Pattern, temperature: float = 0.0, seed: int | None = None,
                     style: str | None = None) -> drums.Pattern:
    """Any number of whole 4-bar chunks -> the same hits with the model's velocities and offsets.

    temperature 0 is the model's most likely performance. Above 0, with the
    humanizer: seeded Laplace jitter of ``temperature`` x its validation MAE
    (an L1 regressor's residuals are Laplace-shaped); with the decoder's heads:
    z moved by ``temperature`` x N(0, I) (posteriors are about unit scale).
    Either way seeds give different but related performances of the same hits.
    """
    if pattern.steps % drums.STEPS:
        raise BandError(f"humanize works on whole 4-bar chunks ({drums.STEPS} steps), got {pattern.steps}")
    n = pattern.steps // drums.STEPS
    classes = pattern.classes().reshape(n, drums.STEPS)
    rng = np.random.default_rng(seed)
    if _session(engine, HUMANIZE) is not None:
        v, o = humanize_arrays(engine, classes)
        if temperature > 0:
            val = engine.meta.get("encoders", {}).get("humanize", {}).get("validation", {})
            v = v + temperature * rng.laplace(0.0, val.get("vel_mae", 0.1), v.shape).astype(np.float32)
            o = o + temperature * rng.laplace(0.0, val.get("off_mae", 0.1), o.shape).astype(np.float32)
            v = np.clip(v, 1 / 127, 1.0)
    else:
        z = humanize_z(engine, classes)
        if temperature > 0:
            z = z + temperature * rng.standard_normal(z.shape).astype(np.float32)
        v, o = humanize_arrays(engine, classes, z, engine.style_index(style))
    return drums.Pattern(pattern.hits, v.reshape(-1, drums.NUM_VOICES), o.reshape(-1, drums.NUM_VOICES))


def tap_z(engine, taps: np.ndarray) -> np.ndarray:
    """(B, T, 3) taps -> (B, Z) z from the tap encoder."""
    sess = _session(engine, TAP)
    if sess is None:
        raise BandError(f"the model in {engine.folder} has no tap encoder ({TAP}): run drum-performer train-tap")
    return sess.run(None, {"taps": np.asarray(taps, np.float32).reshape(-1, drums.STEPS, 3)})[0]


def onset_mask(taps: np.ndarray) -> np.ndarray:
    """(..., T, 3) taps -> (..., T, C) allowed classes: some drum on every onset step, a rest elsewhere.

    What the flattened training windows are by construction (every drum hit is
    an onset), so it costs a drum part nothing it would play on GMD; on a sparse
    bass line it keeps the drums to the line's rhythm (an option, not the default).
    """
    on = np.asarray(taps)[..., 0] > 0.5
    mask = np.zeros((*on.shape, drums.NUM_CLASSES), bool)
    mask[..., 1:] = on[..., None]
    mask[..., 0] = ~on
    return mask


def drumify(engine, taps: np.ndarray, n: int = 1, seed: int = 0, temperature: float | None = None,
            style: str | None = None, on_onsets: bool = False) -> list[drums.Pattern]:
    """(T, 3) taps -> n drum Patterns that go with them; pattern i uses Gumbel noise from seed + i
    (temperature 0: all n are the argmax groove). on_onsets: drums only where the clip plays."""
    taps = np.asarray(taps, np.float32)
    z = tap_z(engine, taps[None])[0]
    if not on_onsets:
        return [engine.sample(z=z, temperature=temperature, seed=seed + i, style=style) for i in range(n)]
    if temperature is None:
        temperature = engine.default_temperature
    mask = onset_mask(taps)[None]
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        engine.draw_z(rng)  # the same noise as sample(seed=seed + i): z is drawn first there too
        noise = _gumbel(rng) if temperature > 0 else None
        c, v, o = engine.decode(z[None], temperature, noise, mask, engine.style_index(style))
        out.append(drums.Pattern.from_classes(c[0], v[0], o[0]))
    return out


def _gumbel(rng: np.random.Generator) -> np.ndarray:
    u = rng.random((1, drums.STEPS, drums.NUM_CLASSES), dtype=np.float32)
    np.clip(u, 1e-9, 1.0 - 1e-7, out=u)
    return -np.log(-np.log(u))


# --- live: follow a player, humanize what is held ----------------------------------------------------


def slerp_at(z_a: np.ndarray, z_b: np.ndarray, t: float) -> np.ndarray:
    """The point a fraction ``t`` (0..1) of the way from z_a to z_b along the great circle (a
    morph's path, so a blended groove is as typical of the prior as its two ends); a straight
    line when the two are (nearly) parallel."""
    a, b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    t = float(min(1.0, max(0.0, t)))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else 1.0
    omega = math.acos(min(1.0, max(-1.0, cos)))
    if omega < 1e-4:
        out = (1 - t) * a + t * b
    else:
        out = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    return out.astype(np.float32)


def follow_z(engine, z_playing: np.ndarray, taps: np.ndarray, amount: float) -> np.ndarray:
    """The live follow path: the tap encoder's z of what was heard, blended with the playing
    groove's z by ``amount`` (0: the playing z exactly, 1: the heard rhythm's z exactly)."""
    if amount <= 0:
        return np.asarray(z_playing, np.float32)
    z_heard = tap_z(engine, np.asarray(taps, np.float32)[None])[0]
    return z_heard if amount >= 1 else slerp_at(z_playing, z_heard, amount)


def heard_taps(onsets, first_step: int) -> np.ndarray:
    """Note-ons heard live -> (T, 3) taps of the 64 steps from global 16th ``first_step`` on.

    ``onsets``: (song position in steps, fractional; velocity 0..1). Each goes to its nearest
    step (what the training windows did with GMD's onsets); the steps are laid out by their
    place in the 4-bar cycle (step mod 64), so a window that starts at bar 4 of a cycle keeps
    every bar at its own bar line. Per step the loudest onset gives velocity and offset.
    """
    taps = np.zeros((drums.STEPS, 3), np.float32)
    for pos, vel in onsets:
        s = math.floor(pos + 0.5)
        if not first_step <= s < first_step + drums.STEPS:
            continue
        row = taps[s % drums.STEPS]
        if row[0] == 0 or vel > row[1]:
            row[:] = (1.0, vel, min(0.499, max(-0.5, pos - s)))
    return taps


def load_groove(path: str) -> tuple[drums.Pattern, str]:
    """``--groove FILE.mid`` -> (the 4-bar starting Pattern, a note of what was done to fit it, or "").

    Drum channel notes through the 9-voice table, as everywhere. The rule of ``drumify``'s
    clips (band_cli.taps_from_onsets): a clip shorter than a bar (its end, or its last onset)
    is padded to one bar and the note says so; a 1- or 2-bar clip is looped to 4 bars (a beat
    repeats), 3 bars get a bar of rest, beyond 4 bars the first 4 are used.
    Not 4/4, no drums, unreadable: a BandError that names the file (one line).
    """
    from model import midifile

    try:
        track = midifile.read_drum_track(path, max_bars=drums.BARS + 2)
    except midifile.MidiReadError as e:
        raise BandError(f"--groove {path}: {e}") from None
    arr = track.pattern.to_array()
    bars = arr.shape[0] // drums.STEPS_PER_BAR
    short = bars == 1 and track.length_steps < drums.STEPS_PER_BAR  # one bar: every onset + 0.5 within it
    note = "clip shorter than a bar: padded to one bar" if short else ""
    if bars in (1, 2):
        arr = np.tile(arr, (drums.BARS // bars, 1))
        note = "; ".join(x for x in (note, f"{bars}-bar clip looped to 4 bars") if x)
    elif bars == 3:
        arr = np.concatenate([arr, np.zeros((drums.STEPS_PER_BAR, arr.shape[1]), np.float32)])
        note = "3-bar clip: a bar of rest added"
    elif bars > drums.BARS:
        arr = arr[: drums.STEPS]
        note = "longer than 4 bars: the first 4 are played"
    pattern = drums.Pattern.from_array(arr)
    if not pattern.hits.any():
        raise BandError(f"--groove {path}: no drum hits in the first 4 bars")
    return pattern, note
