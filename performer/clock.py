"""Clock sources: where the song position is, and when each position will sound.

Time inside the performer is the song position in MIDI clocks (24 per quarter,
6 per 16th step, 96 per bar, 384 per 4-bar cycle). Seconds appear only where a
clock source maps a position to the wall clock (``time.perf_counter``), which
is what lets notes go out *before* the clock tick they belong to: the
scheduler asks ``time_at(pos)`` and sends on the prediction, not on arrival.

Three interchangeable sources implement :class:`ClockSource`:

* :class:`MidiClock` follows a DAW: Start / Continue / Stop / Song Position
  Pointer and a tempo fitted to the recent clock ticks (:class:`TempoEstimator`);
  a dropout freewheels at the last tempo for at most a bar, then stops cleanly.
* :class:`InternalClock` (``--bpm N``): absolute deadlines ``t0 + pos * tick``,
  never accumulated sleeps, so it cannot drift.
* tests drive :class:`MidiClock` with synthetic bytes and times, or use their own
  source with the same four questions answered.

:class:`MidiParser` turns any byte stream (SysEx, running status, garbage)
into messages; it never raises, so nothing on the clock port can stop the loop.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from model import drums
from model.ranges import BPM

log = logging.getLogger(__name__)

PPQN = 24  # MIDI clocks per quarter note
TICKS_PER_STEP = PPQN // drums.STEPS_PER_BEAT  # 6: one 16th
TICKS_PER_BAR = TICKS_PER_STEP * drums.STEPS_PER_BAR  # 96
TICKS_PER_CYCLE = TICKS_PER_STEP * drums.STEPS  # 384: four bars, one Pattern

MIN_BPM, MAX_BPM = BPM.lo, BPM.hi  # 20..400, the tempo range files and the live clock share
_MIN_PERIOD = 60.0 / (PPQN * MAX_BPM)  # seconds per clock at the fastest tempo we follow
_MAX_PERIOD = 60.0 / (PPQN * MIN_BPM)
PHASE_TICKS = 4  # ticks a constant offset must last to count as a phase shift, not a transient
GAP_TICKS = 2.5  # a silence this many clocks long is a stall or a dropout, not jitter

NEG_INF = float("-inf")
SPP_UNITS = ("16ths", "clocks")  # what a master's Song Position Pointer counts (see MidiClock)


def bpm_to_period(bpm: float) -> float:
    """Seconds per MIDI clock at ``bpm`` quarter notes per minute."""
    return 60.0 / (PPQN * bpm)


def period_to_bpm(period: float) -> float:
    return 60.0 / (PPQN * period)


# --- parsing -------------------------------------------------------------------

# Parsed messages are small tuples: (kind, *values). Kinds:
CLOCK, START, CONTINUE, STOP, SPP = "clock", "start", "continue", "stop", "spp"
NOTE_ON, NOTE_OFF, CC, PROGRAM = "note_on", "note_off", "cc", "program"
TRANSPORT_KINDS = frozenset((CLOCK, START, CONTINUE, STOP, SPP))

_REALTIME = {0xF8: (CLOCK,), 0xFA: (START,), 0xFB: (CONTINUE,), 0xFC: (STOP,)}
_SYSTEM_COMMON_DATA = {0xF1: 1, 0xF2: 2, 0xF3: 1}  # MTC quarter frame, SPP, song select


class MidiParser:
    """A MIDI 1.0 byte-stream parser that accepts anything.

    Realtime bytes (0xF8..0xFF) are acted on wherever they appear, even inside
    another message, as the spec requires. Running status is honoured for
    channel messages; system common and SysEx cancel it. Stray data bytes, data
    inside SysEx, undefined status bytes and truncated messages are dropped.
    State carries across ``feed`` calls, because a port may split a message.
    """

    __slots__ = ("_status", "_need", "_data", "_sysex", "_common")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._status = 0  # running status (a channel message status byte) or 0
        self._need = 0
        self._data: list[int] = []
        self._sysex = False
        self._common = 0  # system common status waiting for its data, or 0

    def feed(self, data) -> list[tuple]:
        out: list[tuple] = []
        for b in data:
            try:
                b = int(b)
            except (TypeError, ValueError):
                continue
            if not 0 <= b <= 0xFF:
                continue
            if b >= 0xF8:
                rt = _REALTIME.get(b)
                if rt is not None:
                    out.append(rt)
                continue  # 0xF9/0xFD undefined, 0xFE active sensing, 0xFF reset: no effect here
            if b >= 0x80:
                self._data = []
                self._sysex = b == 0xF0
                if b >= 0xF0:
                    self._status = 0
                    self._common = b if b in _SYSTEM_COMMON_DATA else 0
                    self._need = _SYSTEM_COMMON_DATA.get(b, 0)
                else:
                    self._common = 0
                    self._status = b
                    self._need = 1 if 0xC0 <= b < 0xE0 else 2
                continue
            # a data byte
            if self._sysex:
                continue
            if self._common:
                self._data.append(b)
                if len(self._data) == self._need:
                    if self._common == 0xF2:
                        out.append((SPP, self._data[0] | (self._data[1] << 7)))
                    self._common = 0  # system common has no running status
                    self._data = []
                continue
            if not self._status:
                continue
            self._data.append(b)
            if len(self._data) == self._need:
                out.append(self._channel_message(self._status, self._data))
                self._data = []
        return [m for m in out if m is not None]

    @staticmethod
    def _channel_message(status: int, d: list[int]) -> tuple | None:
        kind, ch = status & 0xF0, status & 0x0F
        if kind == 0x90:
            return (NOTE_ON, ch, d[0], d[1]) if d[1] else (NOTE_OFF, ch, d[0], 0)
        if kind == 0x80:
            return (NOTE_OFF, ch, d[0], d[1])
        if kind == 0xB0:
            return (CC, ch, d[0], d[1])
        if kind == 0xC0:
            return (PROGRAM, ch, d[0])
        return None  # aftertouch, pitch bend: nothing to do with them


# --- timestamps ------------------------------------------------------------------


class StampMapper:
    """Wall-clock times for input messages from the port's own timestamps.

    rtmidi reports each message's delta to the previous one, measured where the
    driver received it (per JACK period, per CoreMIDI packet, per ALSA event).
    The Python callback runs later, by however long it waited for the GIL. The
    sum of the deltas is the driver's timeline up to an unknown offset; the
    smallest observed (arrival - timeline) is that offset plus the least
    delivery delay, so ``timeline + offset`` removes the callback jitter. The
    offset may creep up slowly (the two clocks drift) and drops at once when a
    faster delivery shows it was too high; a timeline that disagrees with
    arrivals by more than ``reset_after`` is abandoned (a port reopened, a
    driver that does not stamp), and arrival time is used from there.

    ``shift`` is added to every stamp: the driver's stamps can be early by a
    known amount on average. Under JACK rtmidi stamps a message when its period
    is processed, at the period's start, while on JACK's frame timeline the
    messages of a period fall anywhere in it: half a period later on average
    (``RtMidiInput.period_s``). Measured before it was added (tests/jack, 120 BPM,
    -p 128): the ``--audio`` drums, placed on this timeline, were heard
    1.02-1.06 ms (median) before the clock's own frames in 4 of 4 takes.
    """

    def __init__(self, drift: float = 2e-4, reset_after: float = 0.05, shift: float = 0.0) -> None:
        self.drift = drift
        self.reset_after = reset_after
        self.shift = shift
        self.reset()

    def reset(self) -> None:
        self._acc: float | None = None
        self._off = 0.0
        self._last = 0.0

    def stamp(self, arrival: float, delta: float | None) -> float:
        if delta is None or not (0.0 <= delta < 3600.0) or self._acc is None:
            self._acc = 0.0
            self._off = arrival
            self._last = arrival
            return arrival + self.shift
        self._acc += delta
        cand = arrival - self._acc
        off = self._off + self.drift * max(0.0, arrival - self._last)
        if cand < off:
            off = cand
        t = self._acc + off
        if arrival - t > self.reset_after:
            off = cand
            t = arrival
        self._off, self._last = off, arrival
        return t + self.shift


# --- tempo ---------------------------------------------------------------------------

# Quantum per clock of the fit's window (see TempoEstimator.set_quantum): 24 clocks at a 128-frame
# period (48 kHz), the window that has held at that period since the first JACK measurements.
QUANTUM_WINDOW_TICK_S = 128 / 48000 / 24


class TempoEstimator:
    """The clock's tick times as a line ``t = a + period * n``, fitted robustly.

    ``n`` is the count of clocks received (not the song position, so relocating
    never disturbs the fit). Over the last ``window`` ticks a robust line
    (median slope, median intercept) picks the ticks that agree with it (within
    3 robust sigmas), and least squares over those averages out per-period
    timestamps and jitter; a late delivery, or a run of deviating ticks at the
    end, cannot bend it. The residuals of new ticks against the line decide
    what happened (see :meth:`_jumped`): a tempo change (residuals growing) or
    a lasting phase shift drops the history and refits from the recent ticks,
    which re-locks within a few ticks instead of a window. With fewer than
    ``min_ls`` points the slope is the last good period (or the span of the
    points).

    The estimator only ever fits times; it never changes the count. A clock
    that comes late, or after a stall, is still the next clock. Clocks that
    arrive together (a burst: closer than ``burst_gap`` or a quarter period)
    were held up on the way, so their stamps say when they were let through,
    not when they were sent: the burst's stamps, including its first one, are
    taken out of the fit.
    """

    def __init__(self, window: int = 24, min_ls: int = 5, jump_min: float = 0.002,
                 burst_gap: float = 0.003) -> None:
        self.window = window
        self.base_window = window
        self.quantum = 0.0  # the stamps come in whole driver periods of this length (s); see set_quantum
        self.coarse = 0.0  # the quantum where it is beyond what the base window averages out, else 0
        self.min_ls = min_ls
        self.jump_min = jump_min
        self.burst_gap = burst_gap
        self._pts: deque[tuple[int, float]] = deque(maxlen=window)
        self._resid: deque[tuple[int, float]] = deque(maxlen=6)  # (n, residual) of recent ticks
        self.period: float | None = None  # seconds per clock; kept across clear()
        self._a: float | None = None  # fitted time of tick _n0
        self._n0 = 0
        self._slope: float | None = None
        self.sigma = 0.0  # robust residual spread of the current fit (s)
        self._sigma_ok = 0.0
        self.relocks = 0  # how often a tempo/phase jump restarted the fit
        self.bursts = 0  # clocks whose stamps were left out because they came in a burst
        self._prior_ok = True  # False after a tempo jump: the old period is no guide to the new one
        self._prev: tuple[int, float] | None = None  # the last tick seen, fitted or not
        self._gap_n: int | None = None  # the tick that ended the last silence of GAP_TICKS or more
        self.resumed = False  # the last tick ended a silence, and the next has not yet told us why

    @property
    def count(self) -> int:
        return len(self._pts)

    def set_quantum(self, q: float) -> None:
        """The stamps come in whole periods of ``q`` seconds (0: they do not).

        Under JACK rtmidi stamps a period's messages with the period's start, so a
        stamp sits anywhere up to a period before its clock, and in a pattern, not
        at random: where a clock's spacing is close to a whole number of periods
        (120 BPM is 1000 frames, against two 512-frame periods, 1024) the stamps
        climb a ramp of exactly two periods a clock and drop a period every 21
        clocks. Fitted as if exact, each ramp looked like a line (spread 0), each
        drop like a phase jump (a refit from 3 clocks, 19-28 times in 400 clocks),
        and the line ran 2.4 % slow: in simulated time (tests/test_clock.py) a 16th
        ahead was predicted +4.4 ms late on average and up to 9.7 ms, and over
        JACK (-p 512, 120 BPM, benchmarks/live_timing.py) the notes came +5.0 ms
        late on average, every one in the period after its clock, up to a whole
        period (10.7 ms). So a stamp within ``q`` of the line is on it (the jump
        threshold, the fit's outlier limit and the on-line tolerance are at least
        ``q``), and the window
        holds at least ``QUANTUM_WINDOW_TICK_S`` of quantum per clock (as 24 clocks
        at 128 frames), so the pattern averages out: at -p 512 96 clocks, a bar at
        4/4, and a 16th ahead is predicted within 0.6 ms (simulated). At 128 frames
        or less nothing changes: the base window already averages the pattern there
        (within 0.24 ms, simulated), and the JACK tests have held it."""
        q = max(0.0, q)
        if q == self.quantum:
            return  # asked at every port check, from another thread than the fit's
        self.quantum = q
        w = max(self.base_window, math.ceil(q / QUANTUM_WINDOW_TICK_S - 1e-9))
        self.coarse = q if w > self.base_window else 0.0
        self.window = w  # the points take it at the next add, on the fit's own thread

    def clear(self) -> None:
        """Forget the points (the stream was interrupted); keep the period as a prior."""
        self._pts.clear()
        self._resid.clear()
        self._a = None
        self._slope = None
        self.sigma = 0.0
        self._prior_ok = True
        self._prev = None
        self._gap_n = None
        self.resumed = False

    def add(self, n: int, t: float, judge: bool = True) -> None:
        """Tick ``n`` at ``t``. ``judge`` False: fit it, but do not let it move the line (its
        count is in doubt until the next tick: see MidiClock._silence)."""
        if self._pts.maxlen != self.window:  # set_quantum changed it (from another thread)
            self._pts = deque(self._pts, maxlen=self.window)
        if self._pts and n <= self._pts[-1][0]:
            self.clear()  # a count that went backwards: the caller restarted counting
        prev, self._prev = self._prev, (n, t)
        self.resumed = False
        p = self._slope or self.period
        if prev is not None and n == prev[0] + 1:
            dt = t - prev[1]
            if dt < (min(self.burst_gap, 0.25 * p) if p else self.burst_gap):
                self._burst(prev)
                return
            if p and dt > GAP_TICKS * p:
                self._gap_n = n
                self.resumed = True
        pred = self.predict(n)
        if judge and pred is not None and len(self._pts) >= 12:
            r = t - pred
            self._resid.append((n, r))
            m, kind = self._jumped()
            if not m and abs(r) <= self._thr():
                self._sigma_ok = self.sigma  # the spread of the line while the clock agrees with it
            if m:
                res = [x for _, x in self._resid][-m:]
                self._resid.clear()
                log.debug("%s jump at clock %d (residuals %s ms): refitting", kind, n,
                          ", ".join(f"{1000 * x:+.1f}" for x in res))
                if kind == "tempo":
                    # the deviating points already in the fit and the tick before them, where
                    # the change happened (on the old line, and the new one's start)
                    recent = list(self._pts)[-m:]
                    self._prior_ok = False
                else:
                    recent = list(self._pts)[-(m - 1):]  # the offset ones; the period still holds
                self._pts.clear()
                self._pts.extend(recent)
                self.relocks += 1
        self._pts.append((n, t))
        self._fit()

    def _burst(self, prev: tuple[int, float]) -> None:
        """Tick ``prev[0] + 1`` came with (almost) the stamp of the one before: leave both out."""
        self.bursts += 1
        self._gap_n = None
        if self._pts and self._pts[-1] == prev:
            self._pts.pop()
            self.bursts += 1
            if self._resid and self._resid[-1][0] == prev[0]:
                self._resid.pop()
            if self._pts:
                self._fit()
            else:
                self._a = self._slope = None

    def retract(self, n: int) -> None:
        """Forget tick ``n`` and any later one (they were not clocks: see MidiClock._read_twice)."""
        while self._pts and self._pts[-1][0] >= n:
            self._pts.pop()
        while self._resid and self._resid[-1][0] >= n:
            self._resid.pop()
        self._prev = self._pts[-1] if self._pts else None
        self._gap_n = None
        self.resumed = False
        if self._pts:
            self._fit()
        else:
            self._a = self._slope = None

    def on_line_tolerance(self) -> float:
        """How far (s) a single tick may sit from the line and still be on it: the phase
        test of a Start and of clocks lost in our own stall."""
        return max(self.jump_min, 4 * max(self.sigma, self._sigma_ok), self.coarse)

    def _thr(self) -> float:
        return max(self.jump_min, 3.0 * self._sigma_ok, self.coarse)

    def _jumped(self) -> tuple[int, str]:
        """How many recent ticks left the line together, and why: (0, "") if they did not.

        A tempo change makes the residuals grow tick by tick: believed after two
        beyond three times the threshold, or three beyond it, growing ("tempo").
        A constant offset ("phase") after a silence of GAP_TICKS or more is a
        stall the master came out of with the same tempo: believed after two
        ticks. Otherwise a constant offset -- a transient (an xrun delays a few
        stamps) or a real phase jump -- is believed only after PHASE_TICKS
        ticks, so a short transient never bends the line. (Under JACK an xrun
        can shift the period clock for good: then four ticks is how long notes
        may be off by that shift.) The threshold is ``max(jump_min, 3 sigma)``
        with sigma the line's spread while the clock agreed with it.
        """
        r = [x for _, x in self._resid]
        thr = self._thr()

        def side(xs, lim):
            return all(x > lim for x in xs) or all(x < -lim for x in xs)

        def growing(xs):
            a = [abs(x) for x in xs]
            return a[-1] > a[0] + 0.5 * thr and all(b > a_ - 0.5 * thr for a_, b in zip(a, a[1:], strict=False))

        if (len(r) >= 2 and self._resid[-2][0] == self._gap_n and side(r[-2:], thr)
                and abs(r[-1] - r[-2]) <= thr):
            return 2, "phase"
        if len(r) >= 2 and side(r[-2:], 3.0 * thr) and growing(r[-2:]) and not self._near_whole_clocks(r[-2:]):
            return 2, "tempo"
        if len(r) >= 3 and side(r[-3:], thr) and growing(r[-3:]):
            return 3, "tempo"
        if len(r) >= PHASE_TICKS and side(r[-PHASE_TICKS:], thr):
            return PHASE_TICKS, "phase"
        return 0, ""

    def _near_whole_clocks(self, res: list[float]) -> bool:
        """Residuals a whole number of clocks off: a stall or an xrun moved the phase (a
        tempo change that happens to look like that is caught a tick later)."""
        p = self._slope or self.period
        if not p:
            return False
        x = sum(res) / len(res) / p
        return round(x) != 0 and abs(x - round(x)) < 0.3

    def _fit(self) -> None:
        pts = self._pts
        k = len(pts)
        n0, t0 = pts[-1]
        self._n0 = n0
        if k < self.min_ls:
            slope = self.period if self._prior_ok else None
            if k >= 2 and slope is None:
                slope = (t0 - pts[0][1]) / (n0 - pts[0][0])
            if slope is None or not (_MIN_PERIOD * 0.5 <= slope <= _MAX_PERIOD * 2):
                self._a, self._slope = t0, None
                return
            self._slope = slope
            self._a = sum(t - slope * (n - n0) for n, t in pts) / k
            return
        xs = [n - n0 for n, _ in pts]
        ts = [t for _, t in pts]
        # A robust line first (median of slopes half a window apart, median intercept):
        # a run of deviating ticks at the end cannot tilt it the way it tilts least squares.
        h = k // 2
        slopes = [(ts[i + h] - ts[i]) / (xs[i + h] - xs[i]) for i in range(k - h) if xs[i + h] != xs[i]]
        b = _median(slopes) if slopes else _lstsq(xs, ts)[1]
        a = _median([t - b * x for x, t in zip(xs, ts, strict=True)])
        res = [t - (a + b * x) for x, t in zip(xs, ts, strict=True)]
        sigma = 1.4826 * _median([abs(r) for r in res])
        lim = max(3.0 * sigma, 0.0005, self.coarse)
        keep = [i for i, r in enumerate(res) if abs(r) <= lim]
        # then least squares over the ticks that agree with it, for precision
        if len(keep) >= self.min_ls:
            a, b = _lstsq([xs[i] for i in keep], [ts[i] for i in keep])
        if not (_MIN_PERIOD <= b <= _MAX_PERIOD):
            # a fit outside any musical tempo is noise (a burst of clocks): keep the last good one
            if self.period is not None:
                self._slope = self.period
                self._a = sum(t - self.period * x for x, t in zip(xs, ts, strict=True)) / k
            return
        self._a, self._slope, self.period, self.sigma = a, b, b, sigma
        self._prior_ok = True

    def predict(self, n: float) -> float | None:
        """Fitted time of clock ``n`` (may be fractional), or None without a tempo."""
        if self._a is None or self._slope is None:
            return None
        return self._a + self._slope * (n - self._n0)

    def invert(self, t: float) -> float | None:
        """Fractional clock count at time ``t``."""
        if self._a is None or self._slope is None:
            return None
        return self._n0 + (t - self._a) / self._slope

    @property
    def ready(self) -> bool:
        return self._slope is not None


def _lstsq(xs: list[float], ts: list[float]) -> tuple[float, float]:
    k = len(xs)
    mx = sum(xs) / k
    mt = sum(ts) / k
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return mt, 0.0
    b = sum((x - mx) * (t - mt) for x, t in zip(xs, ts, strict=True)) / sxx
    return mt - b * mx, b


def _median(v: list[float]) -> float:
    s = sorted(v)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


# --- clock sources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Transport:
    """A transport change the scheduler must act on."""

    kind: str  # START, CONTINUE or STOP
    pos: int  # START/CONTINUE: song position (clocks) of the first tick; STOP: where it stopped
    time: float
    reason: str = ""  # STOP: "stop", "dropout", "quit"


class ClockSource(Protocol):
    """What the scheduler asks a clock. Positions are in MIDI clocks (float for microtiming)."""

    running: bool

    def start(self, now: float) -> None:
        """The performance begins (ports open, sender running): a master clock starts; a follower waits."""

    def describe(self) -> str:
        """Where the tempo comes from, for the ready line and the view ("internal 120 BPM", a port name)."""

    def state(self, now: float) -> str:
        """For the view: "stopped", "starting" (Start seen, no clock yet), "playing" or "freewheel"."""

    def feed(self, msg: tuple, t: float) -> None:
        """A transport message (CLOCK, START, CONTINUE, STOP, SPP) received at time t."""

    def update(self, now: float) -> list[Transport]:
        """Transport changes since the last call (including ones the source decided itself)."""

    def time_at(self, pos: float) -> float | None:
        """Predicted wall time of song position ``pos``; None while it cannot be predicted."""

    def arrived(self) -> float:
        """Highest song position whose clock has actually been seen (-inf if none)."""

    def send_limit(self, now: float) -> float:
        """Events beyond this position must not be sent yet, whatever the prediction says."""

    def stale_before(self, now: float) -> float:
        """Unsent events before this position (and after arrived()) are to be dropped, not sent."""

    def position(self, now: float) -> float:
        """The playhead: song position (fractional) at ``now``."""

    def position_at(self, t: float) -> float | None:
        """Where an input event stamped ``t`` (the clock's time domain) falls in the song; None
        while not playing. Unlike the playhead it may lie just behind the last clock seen."""

    def bpm(self) -> float | None: ...

    def next_check(self, now: float) -> float | None:
        """When update() must run again even if no input arrives (dropout detection)."""

    def stalled(self, t0: float, t1: float) -> None:
        """The performer's own process did not run from ``t0`` to ``t1`` (its sender spent far
        longer off the CPU than it asked to sleep): input delivered in that time may have been
        lost on the way (see :class:`MidiClock`)."""

    def input_period(self, seconds: float) -> None:
        """The clock's input port moves its messages once a period of this length (JACK; 0
        where each message moves on its own): its stamps are that coarse."""

    def server(self, xruns: Sequence[tuple[float, float]], lag: float | None) -> None:
        """What the audio server (JACK) says, told before the input read with it is fed:
        the xruns reported since the last call, (when, how late the server said it was
        itself, seconds), and ``lag``, its wall clock minus its frame clock now (seconds;
        it grows by whatever time the server itself loses; None where unknown). At an xrun
        a client of the graph, perhaps our input, missed a cycle and that cycle's input."""


class InternalClock:
    """``--bpm N``: a perfect clock that starts at position 0 when asked.

    Every position's time is computed from the start time (absolute deadlines),
    so rounding and late wake-ups never accumulate into drift.
    """

    def __init__(self, bpm: float, start_delay: float = 0.05) -> None:
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise ValueError(f"bpm {bpm} outside {MIN_BPM:g}..{MAX_BPM:g}")
        self._bpm = float(bpm)
        self.tick = bpm_to_period(bpm)
        self.start_delay = start_delay
        self.running = False
        self._t0 = 0.0
        self._events: list[Transport] = []

    def start(self, now: float) -> None:
        self._t0 = now + self.start_delay
        self.running = True
        self._events.append(Transport(START, 0, self._t0))

    def stop(self, now: float, reason: str = "quit") -> None:
        if self.running:
            self.running = False
            self._events.append(Transport(STOP, int(self.position(now)), now, reason))

    def describe(self) -> str:
        return f"internal {self._bpm:g} BPM"

    def state(self, now: float) -> str:
        return "playing" if self.running else "stopped"

    def feed(self, msg: tuple, t: float) -> None:
        """Incoming transport is ignored: this clock is the master."""

    def update(self, now: float) -> list[Transport]:
        ev, self._events = self._events, []
        return ev

    def time_at(self, pos: float) -> float | None:
        return self._t0 + pos * self.tick if self.running else None

    def arrived(self) -> float:
        return NEG_INF  # there are no ticks to wait for; time alone decides

    def send_limit(self, now: float) -> float:
        return math.inf if self.running else NEG_INF

    def stale_before(self, now: float) -> float:
        return NEG_INF

    def position(self, now: float) -> float:
        return (now - self._t0) / self.tick if self.running else 0.0

    def position_at(self, t: float) -> float | None:
        return self.position(t) if self.running else None

    def bpm(self) -> float | None:
        return self._bpm

    def next_check(self, now: float) -> float | None:
        return None

    def stalled(self, t0: float, t1: float) -> None:
        """Nothing is lost: every position's time is computed from the start."""

    def server(self, xruns: Sequence[tuple[float, float]], lag: float | None) -> None:
        """Nothing is lost: every position's time is computed from the start."""

    def input_period(self, seconds: float) -> None:
        """No input is timed: every position's time is computed from the start."""


# An xrun at which JACK says the server itself was this late or later: it lost that time itself,
# and a silence is judged without it (a client that missed cycles is reported at 0; a server
# stall of 20-50 ms at 15-46 ms, or at 29 us once: hence the frame lag too, see
# MidiClock._pending_lost).
SERVER_LATE_S = 0.001
# The most clocks a missed cycle can hold (at 300 BPM and 1024 frames at 48 kHz: 3). A longer
# silence is a dropout or a lost connection (seen: 188 "lost" after the clock port came back).
XRUN_LOST_MAX = 3
# Clocks the tempo line must hold before a silence on it can be judged as clocks lost on our side
LOST_LINE_CLOCKS = PHASE_TICKS
# ... and before a clock early of it can be judged a copy (MidiClock._read_twice). More: a line
# refitted on a few clocks after a tempo "jump" in a burst of xruns once put the clock after an
# early one a clock early by chance, and a clock taken out that was not a copy left every
# later note a clock late
TWICE_LINE_CLOCKS = 12
# The clock after a silence that comes as late again (within this much of a clock of the
# silence's length, plus the line's tolerance for the reads' jitter, and with no xrun of its
# own) says the tempo slowed (by 1.5x or more), and what the silence counted in is taken back.
# Clocks lost twice in a row, a silence each, would need an xrun in each.
SLOWED_SAME = 0.25


class MidiClock:
    """Follows incoming MIDI clock with MIDI 1.0 semantics.

    Start: the next clock is song position 0. Continue: the next clock is the
    cue (set by Song Position Pointer, else where Stop left off, else 0). Stop:
    silence now. SPP relocates the cue while stopped and is ignored while
    running (as the spec asks of receivers). Clocks while stopped keep the tempo
    estimate warm, so the first beat after Continue can be predicted too.

    The song position is the count of clock messages, always: a clock that
    comes late, after a stall, or in a burst with others is the next clock.
    (Guessing missed clocks from the wall clock is what puts a follower ahead
    of its master for good after a stall, since a stalled master stalls its
    count too.)

    Stall and dropout: while running, clocks that stop arriving for less than
    ``stall_s`` (or 2.5 clocks, if longer) are waited for: notes beyond the
    guard wait with them, and when the clocks resume they are played on the
    resumed clocks. Beyond that it is a dropout: the playhead freewheels on the
    last tempo (notes keep coming) until ``freewheel_ticks`` after the last
    clock, then the clock stops itself (a STOP with reason "dropout"). Notes
    that fell due while waiting are dropped, not sent late in a clump (see
    :meth:`stale_before`). Freewheeling is a prediction: clocks that come back
    carry on from their own count, the tick line takes their new phase
    within two ticks, and positions the freewheel already played (or dropped)
    are not played again -- the performer waits for the clocks to catch up.

    One exception to counting messages: clocks lost on our side. When the
    performer's process itself does not run (the OS stopped it, swapped it out,
    a debugger paused it), or JACK runs the graph without our input client for a
    cycle (an xrun: the client's thread did not get a core in time), the clocks
    the master sent meanwhile never reach us, and the master's count went on. A
    silence in the clock stamps is those lost clocks -- they are added to the
    count, and the notes stay on their ticks -- when the clocks after it sit a
    whole number of clocks after the tempo line's next count (within the line's
    spread), once any time the server itself lost is taken out, and when
    either of two things says the silence was ours:

    * the sender reports a stall of its own (:meth:`stalled`: it spent far
      longer off the CPU than it asked to sleep) at least a clock long,
      overlapping the silence;
    * JACK reported an xrun in the silence (:meth:`server`): a client missed a
      cycle. Seen without this: a whole take a clock late after an xrun, in CI
      once and in 1 of 2 passes of tests/jack here.

    The clock that ends the silence does not decide alone: a stall or an xrun
    that lost clocks can make our input read it late too, and one that lost
    none can make it read a clock late, where the line put the next one. What
    it says is counted in at once when it sits on the line and the server kept
    its time (most often right, and no note waits); the next clock confirms,
    takes back, or counts in what the first could not tell (:meth:`_pending_lost`).
    The server's own lost time is
    its frame clock falling behind its wall clock (their difference, read
    before each read of the port, grows at once when its driver stalls) or its
    word at an xrun: every later clock comes late by that time and none is
    missing for it; only whole clocks beyond it are lost (seen at 180 BPM: a
    burst of xruns that lost 23 ms of the server's time and a clock).

    The converse at an xrun: JACK can run a client twice for one cycle (the
    tests' recorders see it, most often right after a cycle they missed), and
    rtmidi's input then reads that cycle's clock twice. A clock that comes
    early of the line at an xrun, followed by a clock a whole clock early by
    its count, was such a copy and is taken out (:meth:`_read_twice`).

    Everything else keeps the counting rule: a stalled master (no xrun, our
    process ran), a phase that is not whole clocks, a stall of ours shorter
    than a clock with no xrun, and a server that lost time itself (counting a
    clock in for it put every later note a whole clock early). A master that
    skips the clocks of a cycle it missed in an xrun, as jack_midi_clock does
    (its later clocks stay on its transport's line), is counted in as well:
    the notes then stay with the master's transport and its song position
    (its next SPP), a clock ahead of its message count. Measured before any of
    this (tests/jack, SIGSTOP of the performer): 20 ms at 180 BPM left it 2
    clocks late, 50 ms at 120 BPM 2 clocks (+41 ms), 12 ms at 120 BPM one
    clock, until the next Start.

    ``start_on_clock``: clocks arriving while stopped (a device that never sends
    Start) start playback from the cue.

    ``spp_units``: what a Song Position Pointer counts. The MIDI spec says 16ths
    ("16ths", the default); Ardour 7 sends MIDI clocks instead ("clocks": after
    a locate to bar 3 it sends 192, not 32), and a follower that trusts the spec
    would land six times too far.
    """

    def __init__(self, start_on_clock: bool = False, freewheel_ticks: int = TICKS_PER_BAR,
                 guard_ticks: float = 1.5, stall_s: float = 0.2, spp_units: str = "16ths",
                 source: Callable[[], str] | None = None) -> None:
        if spp_units not in SPP_UNITS:
            raise ValueError(f"spp_units {spp_units!r} must be one of {', '.join(SPP_UNITS)}")
        self.spp_scale = TICKS_PER_STEP if spp_units == "16ths" else 1
        self.start_on_clock = start_on_clock
        self.source = source  # describes the input the clock arrives on (it may be lost and reopened)
        self.freewheel_ticks = freewheel_ticks
        self.guard_ticks = guard_ticks
        self.stall_s = stall_s
        self.est = TempoEstimator()
        self.running = False
        self._n = -1  # clocks received so far, minus one
        self._base = 0  # song position = n + base while running
        self._first_pending = False  # running; waiting for the first clock after Start/Continue
        self._predict_first = False  # ...whose time the steady clock stream lets us predict
        self._check_phase = False
        self._cue = 0  # song position of the next clock after Continue
        self._last_t: float | None = None  # time of the last clock (running or not)
        self._last_pos: float = NEG_INF  # song position of the last clock while running
        self._events: list[Transport] = []
        self._saw_transport = False  # start_on_clock only serves masters that never send transport
        self._freewheel_told = False
        self.dropouts = 0
        self.stalls = 0  # clocks that resumed after a silence (a stall, a held delivery, a dropout)
        self._own_stalls: deque[tuple[float, float]] = deque(maxlen=8)  # (t0, t1) our process did not run
        self._xruns: deque[tuple[float, float]] = deque(maxlen=16)  # (when, server late by) reported
        self._lag: float | None = None  # the server's wall clock minus its frame clock, last heard
        self._lag_low: float | None = None  # its least value heard since the last clock
        self._lag_ref: float | None = None  # ... in the interval that ended at the last clock
        self.recovered = 0  # clocks lost in our own stalls or in a missed JACK cycle, added back
        self.doubled = 0  # clocks our JACK input read twice at an xrun, taken out
        # (off, previous clock's time, relocks then) of a clock early of the line
        self._early: tuple[float, float | None, int] | None = None
        # (k, why, off, lag, server late, counted in): judged a clock later
        self._pending: tuple[int, str, float, float | None, float, int] | None = None

    def start(self, now: float) -> None:
        """Nothing to do: playback starts on the master's Start (or clock, with ``start_on_clock``)."""

    def describe(self) -> str:
        return self.source() if self.source is not None else "-"

    def state(self, now: float) -> str:
        if not self.running:
            return "stopped"
        if self.arrived() == NEG_INF:
            return "starting"
        return "freewheel" if self.freewheeling(now) else "playing"

    # -- input

    def feed(self, msg: tuple, t: float) -> None:
        kind = msg[0]
        if kind == CLOCK:
            self._clock(t)
            return
        if kind in (START, CONTINUE, STOP):
            self._saw_transport = True
        if kind == START:
            self._go(START, 0, t)
        elif kind == CONTINUE:
            if not self.running:  # while playing it means nothing (MIDI 1.0)
                self._go(CONTINUE, self._cue, t)
        elif kind == STOP:
            self._halt(t, "stop")
        elif kind == SPP and not self.running:
            self._cue = int(msg[1]) * self.spp_scale

    def _streaming(self, t: float) -> bool:
        p = self.est.period
        return p is not None and self._last_t is not None and self.est.ready and 0 <= t - self._last_t < 2.5 * p

    def _go(self, kind: str, cue: int, t: float) -> None:
        self.running = True
        self._cue = cue
        self._first_pending = True
        self._pending = self._early = None
        self._last_pos = NEG_INF
        self._predict_first = self._streaming(t)
        if not self._predict_first:
            self.est.clear()  # the clock stream was interrupted: its old line means nothing now
        self._check_phase = self._predict_first
        self._events.append(Transport(kind, cue, t))

    def _halt(self, t: float, reason: str) -> None:
        if not self.running:
            return
        self.running = False
        self._pending = self._early = None
        pos = self._cue if self._first_pending else int(self._last_pos) + 1
        self._cue = pos
        self._first_pending = False
        self._events.append(Transport(STOP, pos, t, reason))

    def _clock(self, t: float) -> None:
        if not self.running and self.start_on_clock and not self._saw_transport:
            self._go(CONTINUE, self._cue, t)
        playing = self.running and not self._first_pending
        freewheeled = playing and self.freewheeling(t)
        self._freewheel_told = False
        judged = self._pending_lost(t)
        if judged is not None:
            j, counted = judged  # clocks lost, as this clock says; clocks counted in at the last one
            if j != counted:
                self.est.retract(self._n)  # the clock that ended the silence: its count was wrong
                self.recovered += j - counted
                self._n += j - counted
        else:
            self._silence(t)  # clocks lost before this one? Counted in if it is on the line; the next one tells
            twice = self._read_twice(t)
            if twice:
                self.doubled += 1
                log.info("a clock read twice at an xrun (%+.2f ms off the line; the next one a clock early), "
                         "at song position %d: taken out of the count", 1000 * twice, self._n + self._base)
                self.est.retract(self._n)
                self._n -= 1
        self._n += 1
        if self._check_phase:
            self._check_phase = False
            pred = self.est.predict(self._n)
            if pred is None or abs(t - pred) > self.est.on_line_tolerance():
                self.est.clear()  # the master restarted its clock phase on Start
        elif playing and self.est.count >= TWICE_LINE_CLOCKS:
            pred = self.est.predict(self._n)
            if pred is not None and t - pred < -self.est.on_line_tolerance():
                # a clock early of the line: the next one tells why
                self._early = (t - pred, self._last_t, self.est.relocks)
        # a clock that ended a silence and may follow lost ones (``_pending``): until the next
        # one says how many, its residual must not move the line (seen: a tempo "jump" taken
        # from two such clocks, +12.7 and +28.1 ms, and the lost clocks then judged on it)
        self.est.add(self._n, t, judge=self._pending is None)
        if playing and self.est.resumed:
            self.stalls += 1
            # a short wait is routine (a held delivery, a busy master); a freewheel is news
            log.log(logging.INFO if freewheeled else logging.DEBUG,
                    "clock back after %.0f ms at song position %d%s", 1000 * (t - self._last_t),
                    self._n + self._base, "; what the freewheel played is not played again" if freewheeled else "")
        self._last_t = t
        # the least lag heard up to this clock: read at some phase of the server's cycle, the
        # lag is high by up to a period plus our wake-up; the least of a clock's worth is not.
        # The next interval starts from the lag heard with this clock (two clocks in one read)
        self._lag_ref, self._lag_low = self._lag_low, self._lag
        if self.running:
            if self._first_pending:
                self._base = self._cue - self._n
                self._first_pending = False
            self._last_pos = self._n + self._base

    def stalled(self, t0: float, t1: float) -> None:
        self._own_stalls.append((t0, t1))

    def input_period(self, seconds: float) -> None:
        """The tempo fit takes the stamps as that coarse (TempoEstimator.set_quantum)."""
        self.est.set_quantum(seconds)

    def server(self, xruns: Sequence[tuple[float, float]], lag: float | None) -> None:
        self._xruns.extend(xruns)
        self._lag = lag
        if lag is not None and (self._lag_low is None or lag < self._lag_low):
            self._lag_low = lag

    def _read_twice(self, t: float) -> float | None:
        """The last clock, which came early of the line, was the one before it read a second
        time: say how early it was (s), or None. JACK can run a client twice for one cycle
        at an xrun (the tests' recorders see it: the same frame time in two process calls,
        most often right after a cycle they missed), and rtmidi's JACK input then reads
        that cycle's clock twice. The copy comes between the clock and the next, and every
        later clock a whole clock early of the line by its count: counted, it put every
        later note a clock early (seen in one-minute audio takes here at 180 BPM, with no
        other trace than a phase jump of -13.4 ms four clocks later). Taken out when JACK
        reported an xrun from a clock before the copy on, and this clock, the next, sits a
        whole clock early on the line, a line of TWICE_LINE_CLOCKS or more that did not move
        in between. A copy where a master sent two clocks at once and no
        xrun came counts, as MIDI asks."""
        early, self._early = self._early, None
        if early is None:  # the usual answer
            return None
        off, before, relocks = early
        if self.est.relocks != relocks:
            return None  # the line moved meanwhile: what it says now is no measure of the copy
        p = self.est.period
        due = self.est.predict(self._n + 1)
        if p is None or due is None or before is None or self._last_t is None:
            return None
        if not any(before - p < x <= t for x, _ in self._xruns):
            return None
        if abs(t - due + p) > self.est.on_line_tolerance():
            return None
        return off

    def _silence(self, t: float) -> None:
        """Clocks that may have been lost on our side before the one stamped ``t`` (see the
        class docstring): counted in now when this clock sits whole clocks on, on the line,
        and the server kept its time; either way kept in ``_pending`` for the next clock's
        word (:meth:`_pending_lost`), since this one may have been read late, by as much as
        a clock (seen at 180 BPM, a clock 13.9 ms: a 14.7 ms stall of our process and a
        clock read a clock late, where the line put the next one; counting one in put every
        later note a clock early, in 2 of 30 one-minute audio takes)."""
        last, p = self._last_t, self.est.period
        if last is None or p is None or t - last < 1.5 * p:
            return
        # a line refitted after a phase jump (an xrun can move the period clock for good) holds
        # a few clocks only: it is judged from there. Wanting 12 (half a window) would leave a
        # clock lost ~10 clocks after such a jump uncounted, every later note a clock late: two
        # such failures in long takes here (benchmarks/long_takes.py) came at xruns ~10 clocks
        # after another xrun, with nothing in the log
        if self.est.count < LOST_LINE_CLOCKS:
            log.info("a silence of %.1f clocks before song position %d, kept: the tempo line has only %d "
                     "clocks (%d relocks so far)", (t - last) / p, self._n + 1 + self._base, self.est.count,
                     self.est.relocks)
            return
        due = self.est.predict(self._n + 1)
        if due is None:
            return
        k = round((t - due) / p)  # by the wall clock: the most that can be missing
        if k < 1:
            return  # not even a clock past the line's next one: nothing is missing
        xruns = [(x, late) for x, late in self._xruns if last < x <= t]
        why = self._ours(last, t, due, k, p, xruns)
        if why is None:
            return
        off = t - due - k * p
        said = max((late for _, late in xruns), default=0.0)
        grew = 0.0 if self._lag is None or self._lag_ref is None else self._lag - self._lag_ref
        server_kept_time = said < SERVER_LATE_S and grew < 0.5 * p
        counted = k if abs(off) <= self.est.on_line_tolerance() and server_kept_time else 0
        if counted:
            # on the line k clocks on, the server's time kept: most often right, and counted now,
            # the notes on their ticks at once; the next clock may still take it back
            # (:meth:`_pending_lost`)
            self.recovered += counted
            log.info("%d clock%s lost %s, at song position %d: counted in", counted, "s" if counted > 1 else "",
                     why, self._n + 1 + self._base)
            self._n += counted
        self._pending = (k, why, off, self._lag_ref, said, counted, t - last)

    def _ours(self, last: float, t: float, due: float, k: int, p: float,
              xruns: list[tuple[float, float]]) -> str | None:
        """Why the (up to) ``k`` clocks missing between the clocks stamped ``last`` and ``t``
        may have been lost on our side (for the log), or None (then the log says why not)."""
        # our process stalled, at least a clock long: a shorter stall hides at most one clock,
        # and a master that drops a clock in an xrun while the same xrun delays our sender a
        # few ms looks the same without the server's word (below)
        stall = next(((s0, s1) for s0, s1 in reversed(self._own_stalls)
                      if s0 < t and s1 > last and s1 - s0 >= p), None)
        if stall is not None:
            return (f"while this process was stalled ({1000 * (stall[1] - stall[0]):.1f} ms, from "
                    f"{1000 * (stall[0] - due):+.1f} to {1000 * (stall[1] - due):+.1f} ms around the "
                    f"first lost clock's time)")
        # the server reported an xrun in the silence: a client missed a cycle (our input, or a
        # master that skips the clocks of a cycle it missed); the time the server lost itself is
        # taken out a clock later (:meth:`_pending_lost`)
        if xruns:
            return f"in a JACK cycle missed at an xrun ({1000 * (xruns[0][0] - due):+.1f} ms after the first one's time)"
        log.info("%d clock%s missing at song position %d, kept out of the count: no xrun in the silence, and "
                 "no stall of ours a clock long", k, "s" if k > 1 else "", self._n + 1 + self._base)
        return None

    def _pending_lost(self, t: float) -> tuple[int, int] | None:
        """The word of this clock, the next after a silence that may hide clocks lost on our
        side (:meth:`_silence`): (clocks lost, clocks the last one counted in), or None
        when there is nothing to judge (no such silence, or another silence: judged on its
        own, what was counted in stands).

        ``j`` clocks were lost when this clock sits ``j`` whole clocks (one up to what the
        last one said; for an xrun at most ``XRUN_LOST_MAX``) after the line's next count,
        plus some of the time the server itself lost meanwhile. That time: its frame lag's
        growth (the least lag heard since the last clock against the least before the
        silence) or its own word at an xrun, whichever is more. Both read high, never low (a
        read of the lag that runs late reads it late), so it is a bound: this clock may sit
        anywhere from none of it to all of it (within the line's spread) after the ``j``
        clocks, and ``j`` is the whole number of clocks left when all of it is out. Seen at
        180 BPM (a clock 13.9 ms): the server's time 23 ms behind with a clock lost too,
        and the least lag read 3.4 ms high within a burst of xruns.

        Why the clock that ended the silence does not decide alone, seen in one-minute audio
        takes here: it was read late (+6.9 ms; and once a whole clock late after a 14.7 ms
        stall of ours, where the line put the next one, and counted in it put every later
        note a clock early), or the server's time fell behind (+9.1 ms; 23 ms). What it
        counted in on the line (most often right: then no note waits) is taken back here
        when this clock says otherwise."""
        pend = self._pending
        if pend is None:  # the usual answer, asked at every clock
            return None
        self._pending = None
        last, p = self._last_t, self.est.period
        if last is None or p is None:
            return None
        k, why, off, lag_before, said, counted, gap = pend
        if t - last >= 1.5 * p:
            # as long again as the silence, with no xrun in it: not clocks lost twice in a row but
            # a slower tempo (160 -> 100 BPM with an xrun at the change: two clocks counted in,
            # every later note two clocks early, in a tests/jack pass here)
            same = SLOWED_SAME * p + self.est.on_line_tolerance()  # and the reads' jitter
            if counted and abs(t - last - gap) <= same and not any(last < x <= t for x, _ in self._xruns):
                log.info("%d clock%s counted in before song position %d taken back: the clock after it came "
                         "as late again (%.2f clocks after it, %.2f before): the tempo slowed", counted,
                         "s" if counted > 1 else "", self._n + self._base - counted, (t - last) / p, gap / p)
                return 0, counted
            return None  # another silence (judged on its own)
        said = max([said, *(late for x, late in self._xruns if last < x <= t)])
        due = self.est.predict(self._n + 1 - counted)  # the next count, had nothing been counted in
        if due is None:
            return None
        grew = 0.0 if lag_before is None or self._lag_low is None else max(0.0, self._lag_low - lag_before)
        held = max(grew, said if said >= SERVER_LATE_S else 0.0)
        x = t - due
        j = round((x - held) / p)
        tol = self.est.on_line_tolerance()
        most = k if why.startswith("while") else min(k, XRUN_LOST_MAX)
        pos = self._n + self._base - counted  # the position the silence ended at, by the message count
        if 1 <= j <= most and -tol <= x - j * p <= held + tol:
            if j != counted:
                log.info("%d clock%s lost %s, at song position %d: counted in (the clock that ended the silence "
                         "came %+.2f ms off the line, the next %+.2f ms with the server up to %.2f ms behind)%s",
                         j, "s" if j > 1 else "", why, pos, 1000 * off, 1000 * (x - j * p), 1000 * held,
                         f"; {counted} had been" if counted else "")
            return j, counted
        if j < 1 and held:
            reason = f"the server itself lost {1000 * held:.2f} ms of it"
        else:
            reason = (f"the clock that ended the silence came {1000 * off:+.2f} ms off the line, and the next one "
                      f"{1000 * (x - j * p):+.2f} ms, {j} clock{'' if j == 1 else 's'} on (the server's own time "
                      f"lost: up to {1000 * held:.2f} ms)")
        if counted:
            log.info("%d clock%s counted in before song position %d taken back: %s", counted,
                     "s" if counted > 1 else "", pos, reason)
        elif j < 1 and held:
            log.info("a silence of %d clock%s before song position %d, kept: %s", k + 1, "s" if k else "", pos,
                     reason)
        else:
            log.info("%d clock%s missing before song position %d, kept: %s", k, "s" if k > 1 else "", pos, reason)
        return 0, counted

    # -- questions

    def update(self, now: float) -> list[Transport]:
        if self.running and not self._first_pending and self._last_t is not None:
            p = self.est.period or bpm_to_period(120.0)
            if now - self._last_t > self.freewheel_ticks * p:
                self.dropouts += 1
                self._halt(now, "dropout")
                self._saw_transport = False
            elif not self._freewheel_told and self.freewheeling(now):
                self._freewheel_told = True
                log.info("no clock for %.0f ms after song position %d: freewheeling at %.1f BPM",
                         1000 * (now - self._last_t), int(self._last_pos), period_to_bpm(p))
        ev, self._events = self._events, []
        return ev

    def next_check(self, now: float) -> float | None:
        if self.running and not self._first_pending and self._last_t is not None:
            p = self.est.period or bpm_to_period(120.0)
            stop = self._last_t + self.freewheel_ticks * p + 1e-4
            onset = self._last_t + self._stall_limit() + 1e-4
            return onset if now < onset else stop
        return None

    def _stall_limit(self) -> float:
        """Seconds without a clock after which it is a dropout, not a stall to wait out."""
        p = self.est.period
        return max(self.stall_s, GAP_TICKS * p) if p else self.stall_s

    def time_at(self, pos: float) -> float | None:
        if not self.running:
            return None
        if self._first_pending:
            if not self._predict_first:
                return None
            return self.est.predict(self._n + 1 + (pos - self._cue))
        return self.est.predict(pos - self._base)

    def arrived(self) -> float:
        return self._last_pos if self.running else NEG_INF

    def freewheeling(self, now: float) -> bool:
        return (
            self.running and not self._first_pending and self.est.period is not None
            and self._last_t is not None and now - self._last_t > self._stall_limit()
        )

    def send_limit(self, now: float) -> float:
        if not self.running:
            return NEG_INF
        if self._first_pending:
            return self._cue + 1.0 if self._predict_first else NEG_INF
        guard = self.guard_ticks if self.est.count >= 12 else 1.0
        if self.est.resumed:
            # the first clock after a silence: until the next one says whether the phase moved,
            # the line's prediction may be a stall's length early
            guard = 0.0
        limit = self._last_pos + guard
        if self.freewheeling(now):
            pos = self.position(now)
            limit = max(limit, pos + 1.0)
        return limit

    def stale_before(self, now: float) -> float:
        """While freewheeling: unsent notes before the position where the freewheel began.

        They fell due while a stall was being waited out; sending them now would be a late
        clump, and if the clocks come back they have been passed by. -inf otherwise.
        """
        if not self.freewheeling(now):
            return NEG_INF
        n = self.est.invert(self._last_t + self._stall_limit())
        return NEG_INF if n is None else n + self._base

    def position(self, now: float) -> float:
        if not self.running:
            return float(self._cue)
        if self._first_pending:
            return self._cue - 1.0
        n = self.est.invert(now)
        if n is None:
            return float(self._last_pos)
        pos = n + self._base
        # while a late clock is waited for the playhead waits with it; only a freewheel runs on
        reach = self.freewheel_ticks if self.freewheeling(now) else GAP_TICKS
        return max(float(self._last_pos), min(pos, self._last_pos + reach))

    def position_at(self, t: float) -> float | None:
        # the fitted tick line, not the playhead (which never goes back behind the last clock):
        # a note stamped just before the last clock gets its own place, where the player put it
        if not self.running or self._first_pending:
            return None
        n = self.est.invert(t)
        if n is None:
            return float(self._last_pos)
        return min(n + self._base, self._last_pos + GAP_TICKS)

    def bpm(self) -> float | None:
        p = self.est.period
        return period_to_bpm(p) if p else None

    @property
    def cue(self) -> int:
        return self._cue

