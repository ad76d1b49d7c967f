"""A General MIDI drum kit from a SoundFont, as a block renderer like the built-in kit.

Two synth libraries sit behind one small adapter so that
``benchmarks/soundfont_compare.py`` measures them through the same code
(figures in ``benchmarks/results/soundfont_compare.json``, 512-frame blocks):

* ``tinysoundfont`` (PyPI wheel, TinySoundFont built in): takes a note at any
  frame, so splitting the block at the note's frame makes onsets sample-exact
  (measured |error| 0 ms median, 0.02 ms max); 0.32-0.43 % of one core per
  second of a dense 180 BPM groove; but loading FluidR3_GM (148 MB) takes
  0.5-2 s (over several runs) and 285 MB (its samples become float32), and pip builds its PyAudio
  dependency from source on Linux and macOS.
* ``fluidsynth`` (pyfluidsynth over the system's libfluidsynth): starts notes
  only on its internal 64-frame boundaries, 0.65 ms median and 1.3 ms max
  late; 0.56-1.35 % of a core; FluidR3_GM loads in 0.1-0.2 s and 165 MB.

Chosen: tinysoundfont, because timing is this product's point (a 1.3 ms
jitter would spend most of the 2 ms budget before the audio device adds its
own), and it needs no system synth library. pyfluidsynth is the fallback when
it is the one installed. Both are optional (the ``audio`` extra installs
tinysoundfont); with neither, ``--soundfont`` stops with one
:class:`~performer.sound.AudioError` line naming what to install.
"""

from __future__ import annotations

import functools
import heapq
import queue
from pathlib import Path

import numpy as np

from performer.audio import CHANNELS, CLEAR, SAMPLE_RATE, AudioError, Event

DRUM_CHANNEL = 9  # GM drums, 0-based
DRUM_BANK = 128  # SoundFont percussion bank
DEFAULT_BACKEND = "tinysoundfont"
FALLBACK_BACKEND = "fluidsynth"  # used when only pyfluidsynth is installed
FLUSH_S = 0.05  # rendered and dropped after a reset: the voices' release is over by then
INSTALL = {
    "tinysoundfont": "pip install 'drum-performer[audio]' (tinysoundfont; its PyAudio dependency builds against PortAudio: apt install portaudio19-dev / brew install portaudio)",
    "fluidsynth": "pip install pyfluidsynth, and the FluidSynth library (Debian/Ubuntu: apt install libfluidsynth3; macOS: brew install fluid-synth)",
}


class _Tsf:
    """tinysoundfont: float32 stereo out, notes take effect at the next generated frame."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.flush = round(FLUSH_S * sample_rate)
        try:
            import tinysoundfont
        except ImportError:
            raise AudioError(f"--soundfont needs tinysoundfont: {INSTALL['tinysoundfont']}") from None
        self.synth = tinysoundfont.Synth(samplerate=sample_rate)
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
        # sounds_off fades the voices over a few ms; run that fade out here so a
        # reused synth never leaks the last groove's tail into the next one.
        self.synth.sounds_off()
        self.synth.generate(self.flush)


class _Fluid:
    """pyfluidsynth: int16 stereo out; reverb and chorus off (a dry kit, like the built-in one)."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.flush = round(FLUSH_S * sample_rate)
        try:
            import fluidsynth
        except (ImportError, OSError):  # the Python package or the C library is missing
            raise AudioError(f"--soundfont with fluidsynth needs {INSTALL['fluidsynth']}") from None
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=sample_rate, **{
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
        self.synth.get_samples(self.flush)


_BACKENDS = {"tinysoundfont": _Tsf, "fluidsynth": _Fluid}


def _importable(backend: str) -> bool:
    try:
        if backend == "tinysoundfont":
            import tinysoundfont  # noqa: F401
        else:
            import fluidsynth  # noqa: F401  (raises ImportError without the C library)
    except (ImportError, OSError):
        return False
    return True


def require() -> str:
    """The backend to use: tinysoundfont, else pyfluidsynth; AudioError (one line) when neither imports.

    Why a fallback: tinysoundfont measured better (sample-accurate, less CPU),
    but pip builds its PyAudio dependency from source on Linux and macOS; a
    user who has FluidSynth already can use that instead.
    """
    for backend in (DEFAULT_BACKEND, FALLBACK_BACKEND):
        if _importable(backend):
            return backend
    raise AudioError(f"--soundfont needs a SoundFont synth: {INSTALL[DEFAULT_BACKEND]}")


@functools.lru_cache(maxsize=2)
def _load(path: str, backend: str, sample_rate: int):
    """One loaded font per process: ``sample -n 8 --soundfont`` loads a 150 MB font once."""
    return _BACKENDS[backend](Path(path), sample_rate)


class SoundFontRenderer:
    """A SoundFont drum kit with the built-in :class:`~performer.sound.Renderer`'s interface.

    Each block is cut at the frames of its events and the synth is advanced
    segment by segment, so a note starts on its frame (as far as the backend
    allows, see the module doc). Same threading rule: :meth:`schedule` from any
    thread, :meth:`render` from the audio thread only.
    """

    def __init__(self, path: str | Path, backend: str | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        backend = require() if backend is None else backend
        if backend not in _BACKENDS:
            raise AudioError(f"unknown SoundFont backend {backend!r} (choose from {', '.join(_BACKENDS)})")
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"SoundFont {path} does not exist")
        self.synth = _load(str(path.resolve()), backend, sample_rate)
        self.synth.reset()
        self.frame = 0
        self.late = 0
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._pending: list[tuple[int, int, Event]] = []
        self._seq = 0

    def schedule(self, event: Event) -> None:
        self._inbox.put(event)

    def clear(self) -> None:
        """As the built-in renderer's: safe from any thread, acted on at the next block."""
        self._inbox.put(CLEAR)

    def render(self, frames: int) -> np.ndarray:
        t0, t1 = self.frame, self.frame + frames
        while True:
            try:
                ev = self._inbox.get_nowait()
            except queue.Empty:
                break
            if ev is CLEAR:
                self._pending.clear()
                self.synth.reset()
                continue
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
