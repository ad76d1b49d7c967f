"""The built-in drum kit and the block renderer that plays it (offline now, live later).

Why a synthesised kit: it needs no files from the user and ships no samples, so
there is no licence or package-size question; numpy builds the nine voices in a
few tens of milliseconds at start-up. Each voice is rendered once in two
layers, soft and hard, from the same noise so that mixing them varies only the
brightness; a note's velocity picks the mix and the gain.

Why a block renderer with a note queue rather than a "render this file"
function: the live audio sink will call :meth:`Renderer.render` from its audio
callback for each block of frames, while the scheduler thread queues notes with
:meth:`Renderer.schedule` at absolute frame times. The offline ``--wav`` path
drives the very same object block by block, so a WAV is exactly what the live
sink would play for the same frame times.

Time is in frames (samples at the renderer's rate, :data:`SAMPLE_RATE` for
WAVs) from the renderer's frame 0, integers throughout, like ticks in the
performer.

What a live sink does with it: build the renderer once before the stream
starts (``make_renderer``; the kit takes ~0.3 s, a big SoundFont seconds), at
the device's rate; in the callback, ``out[:] = renderer.render(frames)`` and
nothing else (renderer frame 0 = the stream's first frame); from the scheduler
thread, ``schedule(Event(frame, pitch, velocity))`` with ``frame`` = the note's
predicted time mapped onto the stream's DAC clock (that is where the output
latency is compensated), at least one block ahead; ``Event(frame, pitch, 0)``
for note-offs (the built-in kit ignores them, a SoundFont may not);
``clear()`` on stop. ``late`` counts notes that arrived after their block.
"""

from __future__ import annotations

import functools
import heapq
import math
import queue
import wave
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.fileio import atomic_write
from performer.audio import BLOCK, CHANNELS, CLEAR, SAMPLE_RATE, AudioError, BlockRenderer, Event

# Master gain before the soft clipper: the model's typical velocities (40-90) peak near -6 dBFS;
# a loud unison (kick, snare and crash at 127) goes over the knee and is bent, not wrapped.
MASTER_GAIN = 1.0
_KNEE = 0.8  # above this |level| the clipper bends smoothly towards 1.0
CHOKE_S = 0.010  # a closed hat stops an open hat over 10 ms, as a real foot does
MAX_VOICES = 48  # oldest voice dropped beyond this; a dense groove uses fewer than 20


# --- the synthesised kit -----------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    soft: np.ndarray  # (n,) float32, the sound at a light touch
    hard: np.ndarray  # (n,) float32, the sound at full velocity (peak ~1)
    pan: tuple[float, float]  # left and right gains (constant power)
    level: float  # balance in the kit
    # the two layers panned, (n, 2) float32, made once with the kit: a block adds its slice of
    # each, times the strike's gains (Renderer.render says why)
    soft_lr: np.ndarray = field(init=False, repr=False, compare=False)
    hard_lr: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pan = np.array(self.pan, dtype=np.float32)
        object.__setattr__(self, "soft_lr", self.soft[:, None] * pan)
        object.__setattr__(self, "hard_lr", self.hard[:, None] * pan)


def _pan(p: float) -> tuple[float, float]:
    a = (p + 1.0) * math.pi / 4.0
    return (math.cos(a), math.sin(a))


def _filter(x: np.ndarray, lo: float | None, hi: float | None, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth-shaped band-pass by FFT, for stationary sources only.

    Why apply it to the source before the envelope: a zero-phase FFT filter on
    an enveloped hit would ring *before* the onset and blur its time.
    """
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    h = np.ones_like(f)
    if lo:
        h /= np.sqrt(1.0 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
    if hi:
        h /= np.sqrt(1.0 + (f / hi) ** (2 * order))
    return np.fft.irfft(spec * h, len(x))


def _metal(t: np.ndarray, scale: float) -> np.ndarray:
    """The six detuned square waves of the TR-808 cymbal circuit: a metallic, non-harmonic source."""
    freqs = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * scale
    return sum(np.sign(np.sin(2 * np.pi * f * t + i)) for i, f in enumerate(freqs)) / len(freqs)


def _norm(x: np.ndarray) -> np.ndarray:
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def _kick(t, noise, hard, sr):
    f_start, click = (260.0, 1.6) if hard else (170.0, 0.6)
    f = 52.0 + (f_start - 52.0) * np.exp(-t / 0.025)
    phase = 2 * np.pi * np.cumsum(f) / sr
    body = (np.sin(phase) + 0.25 * np.sin(2 * phase)) * np.exp(-t / 0.065)
    beater = _filter(noise, 1200, 10000 if hard else 4000, sr)
    beater = beater / (np.abs(beater).max() + 1e-12) * np.exp(-t / 0.006)
    return body + click * beater


def _snare(t, noise, hard, sr):
    tone = 0.7 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05) + 0.4 * np.sin(2 * np.pi * 330 * t) * np.exp(-t / 0.03)
    wires = _filter(noise, 900, 5000 if hard else 3000, sr)
    wires = wires / (np.abs(wires).max() + 1e-12) * np.exp(-t / (0.06 if hard else 0.05))
    return tone + (1.3 if hard else 0.8) * wires


def _hat(t, noise, hard, sr, decay):
    src = _metal(t, 1.0) + 0.4 * noise / 3.0
    band = _filter(src, 6500 if hard else 7500, 17000 if hard else 11000, sr)
    attack = np.minimum(1.0, t / 0.0005)
    return band * attack * np.exp(-t / decay)


def _tom(f0):
    def make(t, noise, hard, sr):
        f = f0 * (1.0 + (0.6 if hard else 0.35) * np.exp(-t / 0.04))
        body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / (0.42 - f0 / 1000))
        stick = _filter(noise, 400, 5000 if hard else 2500, sr) * np.exp(-t / 0.015)
        return body + (0.8 if hard else 0.4) * stick / (np.abs(stick).max() + 1e-12)

    return make


def _crash(t, noise, hard, sr):
    src = _metal(t, 1.45) + 0.7 * noise / 3.0
    band = _filter(src, 2000, 9000 if hard else 6000, sr)
    attack = np.minimum(1.0, t / 0.002)
    return band * attack * (0.75 * np.exp(-t / 0.9) + 0.25 * np.exp(-t / 0.08))


def _ride(t, noise, hard, sr):
    wash = _filter(_metal(t, 2.1) + 0.5 * noise / 3.0, 3000, 11000 if hard else 7500, sr)
    wash = wash / (np.abs(wash).max() + 1e-12) * np.exp(-t / 0.9)
    bell = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((2350, 0.5), (3170, 0.35), (4410, 0.25)))
    ping = bell * np.exp(-t / 0.45) * (0.9 if hard else 0.5)
    attack = np.minimum(1.0, t / 0.0005)
    return attack * (0.6 * wash + 0.5 * ping)


# pitch -> (maker, seconds, pan, level); the GM pitches of model.drums.OUTPUT_PITCHES
_RECIPES = {
    36: (_kick, 0.4, 0.0, 1.0),
    38: (_snare, 0.4, 0.0, 0.85),
    42: (lambda t, n, h, sr: _hat(t, n, h, sr, 0.028 if h else 0.04), 0.3, -0.35, 0.4),
    46: (lambda t, n, h, sr: _hat(t, n, h, sr, 0.45), 1.6, -0.35, 0.4),
    43: (_tom(95.0), 0.9, 0.4, 0.8),
    47: (_tom(130.0), 0.8, 0.15, 0.8),
    50: (_tom(175.0), 0.7, -0.15, 0.8),
    49: (_crash, 3.5, -0.5, 0.5),
    51: (_ride, 2.5, 0.45, 0.38),
}
# Other GM drum pitches a user's MIDI may hold sound on the nearest voice.
_ALIASES = {35: 36, 37: 38, 40: 38, 39: 38, 44: 42, 22: 42, 26: 46, 41: 43, 45: 47, 48: 50,
            55: 49, 57: 49, 52: 49, 53: 51, 59: 51}
# A closed or pedal hat silences a ringing open hat (the hi-hat closes).
_CHOKES = {42: (46,), 44: (46,), 22: (46,)}


@functools.lru_cache(maxsize=2)
def synth_kit(sample_rate: int = SAMPLE_RATE) -> dict[int, Voice]:
    """The nine voices of the built-in kit, keyed by GM pitch (deterministic: fixed noise seed).

    Built at the output's rate (44.1 kHz for WAVs; a live device or JACK may run at 48 kHz).
    """
    kit = {}
    for i, (pitch, (make, seconds, pan, level)) in enumerate(sorted(_RECIPES.items())):
        n = int(seconds * sample_rate)
        t = np.arange(n) / sample_rate
        noise = np.random.default_rng(1000 + i).standard_normal(n)
        hard = make(t, noise, True, sample_rate)
        soft = make(t, noise, False, sample_rate)
        peak = np.abs(hard).max() + 1e-12
        fade = np.minimum(1.0, (n - 1 - np.arange(n)) / (0.02 * sample_rate))  # no click at the end
        kit[pitch] = Voice((soft / peak * fade).astype(np.float32), _norm(hard * fade), _pan(pan), level)
    return kit


def velocity_gain(velocity: int) -> float:
    """MIDI velocity -> amplitude: (v/127)^1.6, about 26 dB from 20 to 127.

    Why 1.6 and not GM's square law: ghost notes (velocity 20-40 in the Groove
    MIDI Dataset) stay audible under a loud backbeat on laptop speakers.
    """
    return (max(0, min(127, velocity)) / 127.0) ** 1.6


class _Playing:
    __slots__ = ("voice", "start", "soft_gain", "hard_gain", "pitch", "stop_at")

    def __init__(self, voice: Voice, start: int, velocity: int, pitch: int) -> None:
        self.voice = voice
        self.start = start
        gain = velocity_gain(velocity) * voice.level
        mix = min(1.0, velocity / 127.0)  # 0 = soft layer, 1 = hard layer
        self.soft_gain, self.hard_gain = gain * (1.0 - mix), gain * mix
        self.pitch = pitch
        self.stop_at: int | None = None  # choke start frame


class Renderer:
    """The built-in kit as a :class:`BlockRenderer`.

    :meth:`schedule` may be called from any thread (it only puts on a
    ``queue.SimpleQueue``); :meth:`render` belongs to one thread, the audio
    callback's, and allocates one output block per call. A note whose frame
    has already passed when its block is rendered starts at the block's first
    frame and is counted in ``late``: heard late rather than lost.
    """

    def __init__(self, kit: dict[int, Voice] | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self.kit = synth_kit(sample_rate) if kit is None else kit
        self.choke_frames = max(1, round(CHOKE_S * sample_rate))
        self.frame = 0
        self.late = 0
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._pending: list[tuple[int, int, Event]] = []
        self._seq = 0
        self._playing: list[_Playing] = []

    def schedule(self, event: Event) -> None:
        self._inbox.put(event)

    def clear(self) -> None:
        """Forget the notes queued so far and silence every voice (transport stop, panic).

        Safe from any thread: it queues a marker that the audio thread acts on
        at its next block, in order, so notes scheduled after it still play.
        """
        self._inbox.put(CLEAR)

    def _drain(self) -> None:
        while True:
            try:
                ev = self._inbox.get_nowait()
            except queue.Empty:
                return
            if ev is CLEAR:
                self._pending.clear()
                self._playing.clear()
                continue
            heapq.heappush(self._pending, (ev.frame, self._seq, ev))
            self._seq += 1

    def _start(self, ev: Event, t0: int) -> None:
        pitch = _ALIASES.get(ev.pitch, ev.pitch)
        voice = self.kit.get(pitch)
        start = ev.frame
        if start < t0:
            self.late += 1
            start = t0
        if voice is None or ev.velocity <= 0:
            return  # a note-off never chokes: only a struck closed or pedal hat closes the open hat
        for choked in _CHOKES.get(ev.pitch, ()):
            for p in self._playing:
                if p.pitch == choked and p.start < start and (p.stop_at is None or p.stop_at > start):
                    p.stop_at = start
        self._playing.append(_Playing(voice, start, ev.velocity, pitch))
        if len(self._playing) > MAX_VOICES:
            self._playing.pop(0)

    def render(self, frames: int) -> np.ndarray:
        t0, t1 = self.frame, self.frame + frames
        self._drain()
        while self._pending and self._pending[0][0] < t1:
            self._start(heapq.heappop(self._pending)[2], t0)
        out = np.zeros((frames, CHANNELS), dtype=np.float32)
        keep = []
        for p in self._playing:
            v = p.voice
            a = max(p.start, t0)
            end = p.start + len(v.soft)
            if p.stop_at is not None:
                end = min(end, p.stop_at + self.choke_frames)
            b = min(end, t1)
            if b > a:
                # the kit's panned layers: mixing the two layers and then panning into each
                # channel in every block was most of the live audio process's time (py-spy,
                # 180 BPM, 128-frame blocks). Not mixed once per strike either: that allocates
                # up to 1.3 MB in the audio callback, and its page faults made a block take
                # 2.5 ms (benchmarks/render_cost.py)
                i, j = a - p.start, b - p.start
                seg = p.soft_gain * v.soft_lr[i:j] + p.hard_gain * v.hard_lr[i:j]  # (b - a, 2)
                if p.stop_at is not None:  # choked: faded out from stop_at (times 1.0 before it)
                    seg *= np.clip((p.stop_at + self.choke_frames - np.arange(a, b)) / self.choke_frames,
                                   0.0, 1.0)[:, None]
                out[a - t0 : b - t0] += seg
            if end > t1:
                keep.append(p)
        self._playing = keep
        self.frame = t1
        return soft_clip(out * MASTER_GAIN)


def soft_clip(x: np.ndarray) -> np.ndarray:
    """Identity below the knee, a tanh bend above it: loud unisons never wrap or square off."""
    mag = np.abs(x)
    over = mag > _KNEE
    if over.any():
        x = x.copy()
        x[over] = np.sign(x[over]) * (_KNEE + (1 - _KNEE) * np.tanh((mag[over] - _KNEE) / (1 - _KNEE)))
    return x


# --- offline: MIDI file -> WAV ------------------------------------------------------


def midi_events(path: str | Path, channel: int | None = 9, sample_rate: int = SAMPLE_RATE) -> list[Event]:
    """Note events of a MIDI file at frames, from its ticks through its tempo map.

    Why read the written file back rather than recompute from the Pattern: the
    file holds the notes after tick rounding, so the audio is exactly what the
    MIDI file plays, to the nearest frame (23 us at 44.1 kHz).
    """
    import mido

    try:
        mf = mido.MidiFile(str(path))
    except Exception as e:  # mido raises several types for a broken file
        raise AudioError(f"{path}: unreadable MIDI ({type(e).__name__}: {e})") from None
    # (absolute tick, order, message) over all tracks; tempo changes apply to every track.
    msgs = []
    for k, track in enumerate(mf.tracks):
        tick = 0
        for m in track:
            tick += m.time
            msgs.append((tick, k, m))
    msgs.sort(key=lambda e: (e[0], e[1]))
    tpb = mf.ticks_per_beat
    tempo, seg_tick, seg_sec = 500000, 0, 0.0
    events = []
    for tick, _, m in msgs:
        sec = seg_sec + (tick - seg_tick) * tempo / 1e6 / tpb
        if m.type == "set_tempo":
            tempo, seg_tick, seg_sec = m.tempo, tick, sec
        elif m.type in ("note_on", "note_off") and (channel is None or m.channel == channel):
            vel = m.velocity if m.type == "note_on" else 0
            events.append(Event(round(sec * sample_rate), m.note, vel))
    return events


def render_events(renderer: BlockRenderer, events: Iterable[Event], min_frames: int = 0,
                  tail_frames: int = 3 * SAMPLE_RATE) -> np.ndarray:
    """Schedule every event, then pull blocks as an audio callback would.

    The buffer covers ``min_frames`` (the groove's bars) or the last event plus
    ``tail_frames`` of ringing, whichever is longer; it stops early once the
    last note has died away after ``min_frames``.
    """
    events = list(events)
    for ev in events:
        renderer.schedule(ev)
    last = max((ev.frame for ev in events), default=0)
    total = max(min_frames, last + tail_frames)
    blocks = []
    done = 0
    quiet = 0
    while done < total:
        block = renderer.render(min(BLOCK, total - done))
        blocks.append(block)
        done += len(block)
        quiet = quiet + len(block) if not block.any() else 0
        if done > max(min_frames, last) and quiet >= SAMPLE_RATE // 10:
            break
    out = np.concatenate(blocks) if blocks else np.zeros((0, CHANNELS), np.float32)
    if quiet and len(out) - quiet >= min_frames:  # trim the trailing silence, keep the bars
        out = out[: len(out) - quiet]
    return out


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV, written to a temporary name and moved into place (as the MIDI files)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(audio.shape[1])
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())

    atomic_write(path, write)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 in [-1, 1] and the sample rate of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise AudioError(f"{path}: not 16-bit PCM")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return (data.reshape(-1, w.getnchannels()) / 32767.0).astype(np.float32), w.getframerate()


def make_renderer(soundfont: str | Path | None = None, sample_rate: int = SAMPLE_RATE) -> BlockRenderer:
    """The built-in kit, or a General MIDI kit from a SoundFont (needs the ``audio`` extra),
    at ``sample_rate`` (the live sink: the device's rate)."""
    if soundfont is None:
        return Renderer(sample_rate=sample_rate)
    from performer import soundfont as sf

    return sf.SoundFontRenderer(soundfont, sample_rate=sample_rate)


def midi_to_wav(mid: str | Path, wav: str | Path, seconds: float = 0.0,
                soundfont: str | Path | None = None) -> Path:
    """Render a drum MIDI file to a WAV beside it; ``seconds`` = the groove's length (bars)."""
    audio = render_events(make_renderer(soundfont), midi_events(mid), min_frames=round(seconds * SAMPLE_RATE))
    write_wav(wav, audio)
    return Path(wav)


def soundfont_arg(value: str) -> str:
    """argparse type of ``--soundfont``: the file exists and the synth library imports.

    Checked while parsing, so a bad font or a missing library stops the command
    with one line before any groove is written.
    """
    import argparse

    from performer import soundfont

    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"SoundFont {value} does not exist")
    try:
        soundfont.require()
    except AudioError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--soundfont ")) from None
    return value
