"""Ableton Link as a clock source (``--link``).

Link peers share a beat timeline (tempo, and the phase of the beat within a
*quantum*) and, where they opt in, a transport (start/stop sync). This module
turns that into the performer's song position, in MIDI clocks (24 per
quarter): ``pos = 24 * beat``, with ``beat`` the Link beat at quantum 4. The
4-bar cycle (384 clocks) therefore starts on every 16th Link beat, and each
bar on a multiple of 4 beats, which is the phase all peers agree on.

The math is pure and runs on snapshots (:class:`LinkSnapshot`) of the session
taken on the sender thread, so it is tested with simulated time; the binding
is behind :class:`LinkSession` (the ``link`` module of the LinkPython-extern
package, chosen by measurement in ``benchmarks/link_timing.py``'s docstring).

Two clocks, one timeline. Link's host time is CLOCK_MONOTONIC_RAW (in
microseconds); the performer's timeline is ``time.perf_counter``
(CLOCK_MONOTONIC, which NTP may slew, and which is ~0.25 s away from RAW on
a typical machine). Nothing here mixes the two: every Link time is converted
once, at this boundary, through :class:`HostBridge`, whose offset is
re-measured at every refresh (the two clocks may run apart by up to 0.05 %).

Transport. When the session's transport plays at the moment we join, or
starts or stops later (a peer with start/stop sync), the performer follows
it: it starts on the beat at the peer's start time and stops when the
session stops. Until then (no peer uses start/stop sync) the performer plays
from its own start, on the session's beat grid. The performer never starts
or stops the session itself: launching it must not start a DAW.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from model.errors import DrumPerformerError
from performer.clock import (
    MAX_BPM,
    MIN_BPM,
    NEG_INF,
    PPQN,
    START,
    STOP,
    Transport,
)

log = logging.getLogger(__name__)

QUANTUM = 4.0  # beats: one bar of 4/4, the phase Link peers agree on
BEATS_PER_CYCLE = 16  # the 4-bar cycle starts on multiples of 16 Link beats
CUE_SLACK_TICKS = 1e-3  # ~20 us at 120 BPM
REFRESH_S = 0.01  # re-read the session this often: a peer's tempo change reaches notes within this
STALE_TICKS = 3.0  # unsent notes more than this late (a timeline jump, a stall) are dropped, not clumped
MISSING_LINE = ("--link needs the Ableton Link binding: pip install 'drum-performer[link]' "
                "(the LinkPython-extern package)")


class LinkUnavailable(DrumPerformerError):
    pass


@dataclass(frozen=True)
class LinkSnapshot:
    """The session as seen at Link host time ``host_us`` (microseconds, CLOCK_MONOTONIC_RAW)."""

    host_us: float
    beat: float  # Link beat at host_us, quantum QUANTUM
    us_per_beat: float  # how fast beats advance now (Link's drift compensation included)
    tempo: float  # the session tempo, for display
    playing: bool  # the session transport (meaningful when a peer uses start/stop sync)
    play_us: float  # host time at which the transport last started or stopped
    peers: int

    def beat_at(self, host_us: float) -> float:
        return self.beat + (host_us - self.host_us) / self.us_per_beat

    def host_at(self, beat: float) -> float:
        return self.host_us + (beat - self.beat) * self.us_per_beat


class HostBridge:
    """Performer time (``perf``, seconds) <-> Link host time (microseconds), measured.

    The offset is read from both clocks back to back; of a few tries the one
    with the shortest read wins, so it is exact to about a microsecond. It is
    re-measured at every :meth:`measure`, which follows slewing of the
    performer's clock.
    """

    def __init__(self, perf: Callable[[], float] = time.perf_counter,
                 host_us: Callable[[], float] | None = None) -> None:
        self.perf = perf
        self.host_us = host_us or (lambda: time.clock_gettime(time.CLOCK_MONOTONIC_RAW) * 1e6)
        self.offset_us = 0.0  # host_us - perf * 1e6
        self.measure()

    def measure(self, tries: int = 3) -> float:
        best = math.inf
        for _ in range(tries):
            a = self.perf()
            h = self.host_us()
            b = self.perf()
            if b - a < best:
                best = b - a
                self.offset_us = h - 0.5 * (a + b) * 1e6
        return self.offset_us

    def to_host(self, perf: float) -> float:
        return perf * 1e6 + self.offset_us

    def to_perf(self, host_us: float) -> float:
        return (host_us - self.offset_us) * 1e-6


class Session(Protocol):
    """What the clock needs of a Link session (the binding, or a simulation in tests)."""

    def enable(self, on: bool) -> None: ...

    def capture(self, host_us: float) -> LinkSnapshot: ...

    def set_tempo(self, bpm: float, host_us: float) -> None: ...


def require_binding() -> None:
    """Fail early, in one line, when ``--link`` cannot work: before the model or any port is opened."""
    try:
        import link  # noqa: F401
    except ImportError:
        raise LinkUnavailable(MISSING_LINE) from None


class LinkSession:
    """The binding (``import link``, package LinkPython-extern) behind :class:`Session`.

    Why this binding: it installs as a wheel for CPython 3.10-3.13 (no
    compiler), exposes Link's own session state (``beatAtTime``,
    ``timeAtBeat``, ``setTempo`` at a host time) and its clock, and needs no
    event loop. aalink gives only "the beat now" and wants an asyncio loop;
    the original LinkPython ships only a 2021 source package that does not
    build on Python 3.11.
    """

    def __init__(self, bpm: float) -> None:
        require_binding()
        import link

        self._link = link.Link(float(bpm))
        self._link.startStopSyncEnabled = True
        self.clock_us = self._link.clock().micros  # CLOCK_MONOTONIC_RAW, microseconds

    def enable(self, on: bool) -> None:
        self._link.enabled = on

    def capture(self, host_us: float) -> LinkSnapshot:
        s = self._link.captureAppSessionState()
        t = int(host_us)
        beat = s.beatAtTime(t, QUANTUM)
        upb = s.timeAtBeat(beat + 1.0, QUANTUM) - s.timeAtBeat(beat, QUANTUM)
        return LinkSnapshot(float(t), beat, float(upb) if upb > 0 else 60e6 / s.tempo(), s.tempo(),
                            s.isPlaying(), float(s.timeForIsPlaying()), self._link.numPeers())

    def set_tempo(self, bpm: float, host_us: float) -> None:
        s = self._link.captureAppSessionState()
        s.setTempo(float(bpm), int(host_us))
        self._link.commitAppSessionState(s)


class LinkClock:
    """A :class:`performer.clock.ClockSource` on an Ableton Link session.

    Like :class:`performer.clock.InternalClock` it has no ticks to wait for:
    the time of any position is known (``time_at``), so the scheduler sends
    on the prediction. Unlike it, that prediction is re-read from the session
    every ``REFRESH_S`` (``next_check``), which is how a tempo change made by
    another peer reaches the notes within a few milliseconds.
    """

    def __init__(self, session: Session, bridge: HostBridge | None = None,
                 start_delay: float = 0.05) -> None:
        self.session = session
        self.bridge = bridge or HostBridge()
        self.start_delay = start_delay
        self.running = False
        self.snap: LinkSnapshot | None = None
        self._started = False  # start() was called: play on our own until the session says otherwise
        self._follow = False  # a peer uses start/stop sync: the session transport decides
        self._last_playing: bool | None = None
        self._last_play_us: float | None = None
        self._cue = 0
        self._events: list[Transport] = []
        self.tempo_changes = 0  # session tempo changes seen (ours or a peer's)

    # -- life

    def start(self, now: float) -> None:
        """Join the session (Link discovery starts here, not before) and play."""
        self.session.enable(True)
        self._started = True
        self._step(now)

    def stop(self, now: float, reason: str = "quit") -> None:
        if self.running:
            self._halt(now, reason)

    def close(self) -> None:
        """Leave the session."""
        self.session.enable(False)

    def describe(self) -> str:
        s = self.snap
        if s is None:
            return "Ableton Link"
        return f"Ableton Link, {s.peers} peer{'' if s.peers == 1 else 's'}"

    def state(self, now: float) -> str:
        if not self.running:
            return "stopped"
        return "starting" if self._pos(now) < self._cue else "playing"  # waiting for the start beat

    def peers(self) -> int:
        return self.snap.peers if self.snap else 0

    def set_tempo(self, bpm: float, now: float) -> None:
        """The performer's own tempo change: it goes to the whole session."""
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise ValueError(f"bpm {bpm} outside {MIN_BPM:g}..{MAX_BPM:g}")
        self.session.set_tempo(bpm, self.bridge.to_host(now))
        self._refresh(now)

    # -- the session

    def _refresh(self, now: float) -> LinkSnapshot:
        self.bridge.measure()
        old = self.snap
        s = self.session.capture(self.bridge.to_host(now))
        if old is not None and abs(s.tempo - old.tempo) > 1e-6:
            self.tempo_changes += 1
            log.info("Link tempo %.2f -> %.2f BPM", old.tempo, s.tempo)
        if old is not None and s.peers != old.peers:
            log.info("Link: %d peer%s", s.peers, "" if s.peers == 1 else "s")
        self.snap = s
        return s

    def update(self, now: float) -> list[Transport]:
        if self._started:
            self._step(now)
        ev, self._events = self._events, []
        return ev

    def _step(self, now: float) -> None:
        s = self._refresh(now)
        if s.playing != self._last_playing or s.play_us != self._last_play_us:
            if s.playing or self._last_playing is not None:
                # playing when we joined, or a change since: someone uses start/stop sync
                if not self._follow:
                    log.info("Link session transport in use: following its start/stop")
                self._follow = True
            self._last_playing, self._last_play_us = s.playing, s.play_us
        want = s.playing if self._follow else True
        if want and not self.running:
            self._go(now, s)
        elif not want and self.running:
            self._halt(now, "link stop")

    def _go(self, now: float, s: LinkSnapshot) -> None:
        """Start on the beat the session started at, if that is still ahead; else just ahead of now."""
        earliest = self.bridge.to_host(now + self.start_delay)
        t = s.play_us if self._follow and s.play_us >= earliest else earliest
        # Link host times are whole microseconds: a start placed on a beat reads as up to a
        # microsecond past it, which must not push the start past the beat's clock and skip its step
        cue = math.ceil(PPQN * s.beat_at(t) - CUE_SLACK_TICKS)
        self._cue = max(cue, 0)  # before beat 0 (a count-in) there is nothing to play
        self.running = True
        self._events.append(Transport(START, self._cue, now))

    def _halt(self, now: float, reason: str) -> None:
        self.running = False
        pos = max(self._cue, int(self._pos(now)))
        self._cue = pos
        self._events.append(Transport(STOP, pos, now, reason))

    # -- questions (ClockSource)

    def feed(self, msg: tuple, t: float) -> None:
        """Incoming MIDI transport is ignored: the Link session is the clock."""

    def _pos(self, now: float) -> float:
        s = self.snap
        return PPQN * s.beat_at(self.bridge.to_host(now)) if s else 0.0

    def time_at(self, pos: float) -> float | None:
        s = self.snap
        if not self.running or s is None:
            return None
        return self.bridge.to_perf(s.host_at(pos / PPQN))

    def arrived(self) -> float:
        return NEG_INF  # no ticks to wait for: the timeline decides

    def send_limit(self, now: float) -> float:
        return math.inf if self.running else NEG_INF

    def stale_before(self, now: float) -> float:
        """Notes that fell more than STALE_TICKS behind (the timeline jumped) are dropped."""
        return self._pos(now) - STALE_TICKS if self.running else NEG_INF

    def position(self, now: float) -> float:
        return self._pos(now) if self.running else float(self._cue)

    def position_at(self, t: float) -> float | None:
        return self._pos(t) if self.running else None

    def bpm(self) -> float | None:
        return self.snap.tempo if self.snap else None

    def next_check(self, now: float) -> float | None:
        return now + REFRESH_S if self._started else None

    def stalled(self, t0: float, t1: float) -> None:
        """Nothing is lost: the session's timeline is read, not counted."""

    def server(self, xruns: Sequence[tuple[float, float]], lag: float | None) -> None:
        """Nothing is lost: the session's timeline is read, not counted."""

    def input_period(self, seconds: float) -> None:
        """No input is timed: the session's timeline is read."""


def open_link_clock(bpm: float = 120.0) -> LinkClock:
    """``--link``: a clock on the Link session (not joined until ``start``)."""
    session = LinkSession(bpm)
    # Link's own clock, whatever it reads on this platform (Linux: CLOCK_MONOTONIC_RAW)
    return LinkClock(session, HostBridge(host_us=session.clock_us))
