"""How a performance is wired: the clock it follows and the sinks its notes go to.

Both are built here, in one place each, behind one interface each, so that a
new source of tempo or a new destination is one class plus one line here:

* :func:`open_clock`: ``--bpm`` plays on an :class:`InternalClock`, otherwise
  the performer follows MIDI clock on the clock input (:class:`MidiClock`).
  ``--link`` follows an Ableton Link session (:class:`performer.link_clock.LinkClock`).
* :func:`open_sinks`: every message the scheduler sends goes to each
  :class:`Sink` in order: the MIDI output, then the ``--record`` recorder,
  then the ``--audio`` output (:class:`performer.audio_out.AudioSink`). A sink
  is handed each message when the MIDI port is, ``lead`` before its time. A
  sink that needs its notes earlier (an audio stream renders a block ahead of
  its DAC) says so with a ``lead_s`` attribute and an ``ahead`` method;
  :func:`connect_ahead` gives it the scheduler's ahead lane.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Protocol

from performer.clock import STOP, TICKS_PER_BAR, ClockSource, InternalClock, MidiClock, Transport
from performer.options import LiveError, LiveOptions, fallback_record_path, free_path

log = logging.getLogger(__name__)


def open_clock(opts: LiveOptions, clock_input=None) -> ClockSource:
    """The clock of the performance: ``--link`` an Ableton Link session, internal at ``--bpm``,
    else MIDI clock from ``clock_input``."""
    if opts.link:
        from performer.link_clock import open_link_clock  # the binding is an optional extra

        return open_link_clock(opts.bpm or 120.0)
    if opts.bpm:
        return InternalClock(opts.bpm)
    return MidiClock(start_on_clock=opts.start_on_clock, spp_units=opts.spp_units,
                     source=clock_input.describe if clock_input is not None else None)


class Sink(Protocol):
    """Where played messages go. ``send`` runs on the sender thread and must return at once."""

    def send(self, msg: list[int], pos: float | None) -> None:
        """Play ``msg`` now; ``pos`` is its song position (None: a note-off or CC sent on wall time)."""

    def transport(self, ev: Transport) -> None:
        """Start, Continue or Stop reached the scheduler (sender thread)."""

    def describe(self) -> str: ...

    def check(self) -> None:
        """About once a second from the main thread: notice a lost device, reopen it."""

    def close(self) -> None:
        """End of the performance. Raises a DrumPerformerError only for what the user must hear of."""


class PortSink:
    """A MIDI output port (rtmidi or in-memory) as a sink."""

    def __init__(self, port) -> None:
        self.port = port
        self.send_msg = port.send

    def send(self, msg: list[int], pos: float | None) -> None:
        self.send_msg(msg)

    def transport(self, ev: Transport) -> None:
        pass

    def describe(self) -> str:
        return self.port.describe()

    def check(self) -> None:
        self.port.check()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the notes are off already; a port that will not close is moot
            self.port.close()


class RecordSink:
    """``--record FILE``: keeps what was played on the clock's timeline and writes it on close
    (to the temp folder if FILE cannot be written then; ``opts.record`` says where it went)."""

    def __init__(self, opts: LiveOptions, clock: ClockSource) -> None:
        self.opts = opts
        self.recorder = Recorder(opts.record, opts.channel - 1)
        self.clock = clock

    def send(self, msg: list[int], pos: float | None) -> None:
        rec = self.recorder
        fallback = self.clock.position(time.perf_counter()) if pos is None else 0.0
        rec.add(msg, pos, fallback)
        if rec.bpm is None and msg[0] & 0xF0 == 0x90:
            bpm = self.clock.bpm()
            if bpm:
                rec.bpm = round(bpm, 2)  # the file's tempo: the one the first note was played at

    def transport(self, ev: Transport) -> None:
        self.recorder.transport(ev)

    def describe(self) -> str:
        return f"record {self.recorder.path}"

    def check(self) -> None:
        pass

    def close(self) -> None:
        wanted = self.recorder.path
        try:
            path, why = self.recorder.write_somewhere()
        except OSError as e:
            raise LiveError(f"cannot write the recording {wanted} nor a copy in the temp folder: {e}") from None
        self.opts.record = str(path)
        if why:
            raise LiveError(f"{why}; the take is saved in {path}")
        log.info("recorded %d events to %s", len(self.recorder.events), path)


def open_sinks(opts: LiveOptions, output, clock: ClockSource) -> list[Sink]:
    """The performance's sinks, in the order each message reaches them."""
    sinks: list[Sink] = [PortSink(output)]
    if opts.record:
        sinks.append(RecordSink(opts, clock))
    if opts.audio:
        from performer.audio_out import open_audio_sink  # sounddevice: only --audio pays for it

        # into JACK when the MIDI went there (--api jack, or auto finding JACK)
        sinks.append(open_audio_sink(opts.soundfont, getattr(output, "api", opts.api)))
    return sinks


def connect_ahead(sinks: list[Sink], scheduler) -> None:
    """Give the sinks that need notes early (``lead_s``, ``ahead``) the scheduler's ahead lane,
    at the largest lead any of them asks for (each then places a note at its own time)."""
    early = [s for s in sinks if getattr(s, "lead_s", 0) > 0]
    if not early:
        return
    if len(early) == 1:
        scheduler.set_ahead(early[0].ahead, early[0].lead_s)
        return

    def ahead(pos: float, t: float, pitch: int, velocity: int, gate: float) -> None:
        for s in early:
            s.ahead(pos, t, pitch, velocity, gate)

    scheduler.set_ahead(ahead, max(s.lead_s for s in early))


class Recorder:
    """What was played, on a timeline of MIDI clocks, written as a Standard MIDI File.

    The first run keeps its song positions (so the file lines up with the
    DAW's bars when placed at bar 1); each later run (after Stop and
    Start/Continue) follows the previous material at the next bar line, with
    its own position within the bar.
    """

    RESOLUTION = 480  # ticks per quarter in the file: 20 per MIDI clock

    def __init__(self, path: str | Path, channel: int) -> None:
        self.path = Path(path)
        self.channel = channel
        self.events: list[tuple[float, list[int]]] = []
        self._offset = 0.0
        self._end = 0.0
        self._runs = 0
        self._on_pos: dict[int, float] = {}
        self.bpm: float | None = None

    def transport(self, ev: Transport) -> None:
        if ev.kind == STOP:
            return
        if self._runs:
            bar = TICKS_PER_BAR
            self._offset = math.ceil(self._end / bar) * bar - (ev.pos // bar) * bar
        self._runs += 1

    def add(self, msg: list[int], pos: float | None, fallback_pos: float) -> None:
        kind = msg[0] & 0xF0
        if kind not in (0x80, 0x90):
            return
        p = (pos if pos is not None else fallback_pos) + self._offset
        if kind == 0x90:
            self._on_pos[msg[1]] = p
        else:
            p = max(p, self._on_pos.pop(msg[1], p))  # an off never precedes its on
        p = max(p, 0.0)
        self._end = max(self._end, p)
        self.events.append((p, list(msg)))

    def write(self) -> Path:
        import mido

        mf = mido.MidiFile(ticks_per_beat=self.RESOLUTION)
        tr = mido.MidiTrack()
        mf.tracks.append(tr)
        tr.append(mido.MetaMessage("track_name", name="drum-performer", time=0))
        tr.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
        tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(self.bpm or 120.0), time=0))
        per_clock = self.RESOLUTION / 24
        now = 0
        # by position, and at one position in the order sent (a stable sort): an off is never
        # sent before its own on, and a re-strike sends the old note's off before the new on.
        # (Offs first at one position wrote a note released at its own position -- a Stop
        # releasing a note sent ahead of the clock -- as off, on: a note that never stops.)
        for p, msg in sorted(self.events, key=lambda e: e[0]):
            tick = int(round(p * per_clock))
            tr.append(mido.Message.from_bytes(msg, time=max(0, tick - now)))
            now = max(now, tick)
        tr.append(mido.MetaMessage("end_of_track", time=0))
        return self.save(mf, self.path)

    def save(self, mf, path: Path) -> Path:
        """Write atomically to ``path``; never over something that appeared there meanwhile."""
        if os.path.lexists(path):
            if path.is_file() and not path.is_symlink():
                path = free_path(path)
            else:
                raise OSError(f"{path} is no longer a regular file")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            mf.save(str(tmp))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.path = path
        return path

    def write_somewhere(self) -> tuple[Path, str | None]:
        """Write the take; if its path fails, to the temp folder. Returns (where, why the first failed)."""
        try:
            return self.write(), None
        except OSError as e:
            why = e.strerror or str(e)
            wanted = self.path
        self.path = fallback_record_path(wanted)
        return self.write(), f"cannot write {wanted}: {why}"


