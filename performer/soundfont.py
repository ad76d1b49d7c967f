"""A General MIDI drum kit from a SoundFont, as a block renderer like the built-in kit.

Two synth libraries sit behind one small adapter so that
``benchmarks/soundfont_compare.py`` can measure them through the same code;
the product uses :data:`DEFAULT_BACKEND` (chosen by that benchmark, figures in
``benchmarks/results/soundfont_compare.json``):

* ``tinysoundfont`` (PyPI wheel with the TinySoundFont C code built in): takes
  a note at any frame, so the renderer splits each block at the note's frame
  and onsets are sample-accurate.
* ``fluidsynth`` (pyfluidsynth over the system's libfluidsynth): starts notes
  only on its internal 64-frame boundaries (up to 1.45 ms late at 44.1 kHz).

Both are optional: the ``audio`` extra installs the chosen one, and a missing
library is one :class:`~performer.sound.AudioError` line naming what to install.
"""

from __future__ import annotations

import functools
import heapq
import queue
from pathlib import Path

import numpy as np

from performer.sound import CHANNELS, SAMPLE_RATE, AudioError, Event

DRUM_CHANNEL = 9  # GM drums, 0-based
DRUM_BANK = 128  # SoundFont percussion bank
DEFAULT_BACKEND = "tinysoundfont"
INSTALL = {
    "tinysoundfont": "pip install 'drum-performer[audio]' (the tinysoundfont package)",
    "fluidsynth": "pip install pyfluidsynth, and the FluidSynth library (Debian/Ubuntu: apt install libfluidsynth3; macOS: brew install fluid-synth)",
}


class _Tsf:
    """tinysoundfont: float32 stereo out, notes take effect at the next generated frame."""

    def __init__(self, path: Path) -> None:
        try:
            import tinysoundfont
        except ImportError:
            raise AudioError(f"--soundfont needs tinysoundfont: {INSTALL['tinysoundfont']}") from None
        self.synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
        try:
            sfid = self.synth.sfload(str(path))
            self.synth.program_select(DRUM_CHANNEL, sfid, DRUM_BANK, 0, is_drums=True)
        except Exception as e:  # the library's SoundFontException and OSError for bad files
            raise AudioError(f"{path}: not a usable SoundFont ({type(e).__name__}: {e})") from None

    def noteon(self, pitch: int, velocity: int) -> None:
        self.synth.noteon(DRUM_CHANNEL, pitch, velocity)

    def noteoff(self, pitch: int) -> None:
        self.synth.noteoff(DRUM_CHANNEL, pitch)

    def generate(self, frames: int) -> np.ndarray:
        buf = self.synth.generate(frames)
        return np.frombuffer(buf, dtype=np.float32).reshape(frames, CHANNELS)

    def reset(self) -> None:
        self.synth.sounds_off()


class _Fluid:
    """pyfluidsynth: int16 stereo out; reverb and chorus off (a dry kit, like the built-in one)."""

    def __init__(self, path: Path) -> None:
        try:
            import fluidsynth
        except (ImportError, OSError):  # the Python package or the C library is missing
            raise AudioError(f"--soundfont with fluidsynth needs {INSTALL['fluidsynth']}") from None
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=SAMPLE_RATE, **{
            "synth.reverb.active": 0, "synth.chorus.active": 0})
        sfid = self.synth.sfload(str(path))
        if sfid < 0 or self.synth.program_select(DRUM_CHANNEL, sfid, DRUM_BANK, 0) < 0:
            raise AudioError(f"{path}: not a usable SoundFont (FluidSynth could not load its drum kit)")

    def noteon(self, pitch: int, velocity: int) -> None:
        self.synth.noteon(DRUM_CHANNEL, pitch, velocity)

    def noteoff(self, pitch: int) -> None:
        self.synth.noteoff(DRUM_CHANNEL, pitch)

    def generate(self, frames: int) -> np.ndarray:
        s16 = np.asarray(self.synth.get_samples(frames), dtype=np.float32)
        return (s16 / 32768.0).reshape(frames, CHANNELS)

    def reset(self) -> None:
        self.synth.all_sounds_off(DRUM_CHANNEL)


_BACKENDS = {"tinysoundfont": _Tsf, "fluidsynth": _Fluid}


def require(backend: str = DEFAULT_BACKEND) -> None:
    """Raise AudioError (one line, what to install) when the backend cannot be imported."""
    try:
        if backend == "tinysoundfont":
            import tinysoundfont  # noqa: F401
        else:
            import fluidsynth  # noqa: F401
    except (ImportError, OSError):
        raise AudioError(f"--soundfont needs {backend}: {INSTALL[backend]}") from None


@functools.lru_cache(maxsize=2)
def _load(path: str, backend: str):
    """One loaded font per process: ``sample -n 8 --soundfont`` loads a 150 MB font once."""
    return _BACKENDS[backend](Path(path))


class SoundFontRenderer:
    """A SoundFont drum kit with the built-in :class:`~performer.sound.Renderer`'s interface.

    Each block is cut at the frames of its events and the synth is advanced
    segment by segment, so a note starts on its frame (as far as the backend
    allows, see the module doc). Same threading rule: :meth:`schedule` from any
    thread, :meth:`render` from the audio thread only.
    """

    def __init__(self, path: str | Path, backend: str = DEFAULT_BACKEND) -> None:
        if backend not in _BACKENDS:
            raise AudioError(f"unknown SoundFont backend {backend!r} (choose from {', '.join(_BACKENDS)})")
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"SoundFont {path} does not exist")
        self.synth = _load(str(path.resolve()), backend)
        self.synth.reset()
        self.frame = 0
        self.late = 0
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._pending: list[tuple[int, int, Event]] = []
        self._seq = 0

    def schedule(self, event: Event) -> None:
        self._inbox.put(event)

    def clear(self) -> None:
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break
        self._pending.clear()
        self.synth.reset()

    def render(self, frames: int) -> np.ndarray:
        t0, t1 = self.frame, self.frame + frames
        while True:
            try:
                ev = self._inbox.get_nowait()
            except queue.Empty:
                break
            heapq.heappush(self._pending, (ev.frame, self._seq, ev))
            self._seq += 1
        out = np.empty((frames, CHANNELS), dtype=np.float32)
        pos = t0
        while pos < t1:
            nxt = self._pending[0][0] if self._pending else t1
            if nxt <= pos:
                ev = heapq.heappop(self._pending)[2]
                if ev.frame < t0:
                    self.late += 1
                if ev.velocity > 0:
                    self.synth.noteon(ev.pitch, ev.velocity)
                else:
                    self.synth.noteoff(ev.pitch)
                continue
            end = min(nxt, t1)
            out[pos - t0 : end - t0] = self.synth.generate(end - pos)
            pos = end
        self.frame = t1
        return np.clip(out, -1.0, 1.0)
