"""What every sound source shares: rates, the note event, the error class and the renderer protocol.

Its own module so that :mod:`performer.sound` (the built-in kit, which also
picks a kit) and :mod:`performer.soundfont` (a SoundFont kit, built on these
types) do not import each other: ``sound`` loads ``soundfont`` only when a
SoundFont is asked for, and both take these names from here.
:mod:`performer.sound` re-exports them, so ``sound.SAMPLE_RATE`` etc. still work.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from model.errors import DrumPerformerError

SAMPLE_RATE = 44100
CHANNELS = 2
BLOCK = 512  # frames per block when rendering offline: a typical audio callback size


class AudioError(DrumPerformerError):
    pass


class Event(NamedTuple):
    """A MIDI note event at an absolute frame. velocity 0 = note-off."""

    frame: int
    pitch: int
    velocity: int


CLEAR = Event(-1, -1, -1)  # queued by clear(): the audio thread drops what came before it


class BlockRenderer(Protocol):
    """What the offline writer and the live sink need from a sound source."""

    frame: int  # first frame of the next block

    def schedule(self, event: Event) -> None: ...

    def clear(self) -> None: ...

    def render(self, frames: int) -> np.ndarray:  # (frames, CHANNELS) float32 in [-1, 1]
        ...
