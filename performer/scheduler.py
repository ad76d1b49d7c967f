"""From cycle patterns to timed MIDI: the step scheduler and the sender thread.

:class:`Scheduler` is pure logic. It expands the playing cycle's Pattern a few
steps ahead of the playhead into note events keyed by song position (MIDI
clocks, fractional for microtiming and swing), and sends each one when the
clock's *predicted* time for its position comes (minus ``lead``). Sending on
the prediction rather than on the arrival of a tick is what lets an early
(negative-offset) note leave before its grid tick, and what removes the
one-period reaction delay over JACK. A note is never sent more than
``send_limit`` ahead of the last real tick, so a clock that stops or slows
cannot make the performer run away.

An output that must have notes earlier than the MIDI port (an audio stream
renders a block ahead of its DAC; see :mod:`performer.audio_out`) gets them on
a second lane, :meth:`Scheduler.set_ahead`: the same expanded notes, released
``ahead_s`` before their predicted time instead of ``lead``, with the same
send-limit and stale rules, so a clock that stops cannot run it away either.

While the transport is stopped the scheduler keeps the notes of the first cycle a
Start (position 0) or a Continue (the clock's cue) would play compiled and ready
(:meth:`Scheduler.poll` asks the source's side-effect-free ``peek``), so the
reaction to Start/Continue is the parse and the send, not the compile.

Every note-on gets its note-off ``gate`` later (wall time, so it fires even if
the clock vanishes); a pitch struck again while sounding is released first;
Stop releases everything and sends CC123 (all notes off) on the drum channel;
exit also sends CC120 (all sound off).

:class:`Player` is the sender thread: it drains the clock input (the port's
own queue, polled every 2 ms, and an inbox for in-process ports and wake-ups),
stamps each message with the driver's time, feeds the clock, runs the
scheduler and sleeps until the next deadline or poll, whichever is first. It
never waits for the model: patterns come from a source that decodes ahead.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from model import drums
from performer.clock import (
    STOP,
    TICKS_PER_STEP,
    TRANSPORT_KINDS,
    ClockSource,
    MidiParser,
    StampMapper,
    Transport,
    bpm_to_period,
)

log = logging.getLogger(__name__)

CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123
DEFAULT_CHANNEL = 9  # GM drums: channel 10, 0-based

# Expand steps this many clocks ahead of the playhead: enough for an early
# note (half a step) plus a wake-up, small enough that a control or a mute
# lands within a step of being asked for.
LOOKAHEAD_TICKS = 2 * TICKS_PER_STEP
MAX_SWING = 0.75  # of a step: beyond it the swung 16th would pass the next one's earliest note
# A note-on's note-off comes this many 16ths later (wall time, within GATE_MIN_S..GATE_MAX_S): short
# enough that a retrigger rarely cuts a note, long enough for any drum sampler to catch it.
GATE_STEPS = drums.GATE_STEPS  # 0.5, as in the MIDI files written (model.drums)
GATE_MIN_S, GATE_MAX_S = 0.01, 0.1
EARLIEST = -0.5 * TICKS_PER_STEP  # the earliest a step's note can be, relative to its grid tick
# Compiled patterns kept (by identity; a Pattern is frozen): the playing one, the cued ones
# (Start's cycle 0 and Continue's cue), and one a request is about to land.
COMPILED_KEPT = 4

Send = Callable[[list[int], float | None], None]
# the ahead lane: (song position, predicted time, pitch, velocity, gate seconds) of each note-on
Ahead = Callable[[float, float, int, int, float], None]


class PatternSource(Protocol):
    """Where the scheduler gets what to play; every call must return at once."""

    def pattern_for(self, cycle: int) -> drums.Pattern:
        """The Pattern of ``cycle``; called once, when its first step is about to be scheduled."""

    def peek(self, cycle: int) -> drums.Pattern:
        """What :meth:`pattern_for` would return for ``cycle`` if called now, with none of its
        side effects (nothing lands); asked while the transport is stopped, as often as input
        comes, so that the cued cycle's notes are compiled before Start or Continue."""

    def pattern_at_bar(self, cycle: int, bar: int) -> drums.Pattern | None:
        """A change that lands at bar line ``bar`` (1..3) of ``cycle`` and plays to the cycle's end
        (a fill in bar 4); None: the cycle's pattern plays on. Called as that bar is scheduled."""

    def mutes(self) -> tuple[bool, ...]:
        """9 bools, the voices to silence; read at every bar line (changes land on the next bar)
        and at a Start or Continue. A tuple, not an array: it is read in the reaction to a
        Continue, where numpy's first call after a pause cost 0.5-1.3 ms of CPU here."""


def compile_pattern(pattern: drums.Pattern, quantize: bool, swing: float) -> list[list[tuple[float, int, int, int]]]:
    """Per step: (clock offset from the step's grid tick, voice, pitch, MIDI velocity) of each hit.

    ``swing`` (0..MAX_SWING) delays every second 16th by that fraction of a step.
    """
    out: list[list[tuple[float, int, int, int]]] = []
    swing_ticks = swing * TICKS_PER_STEP
    for t in range(pattern.steps):
        row = []
        for v in np.flatnonzero(pattern.hits[t]).tolist():
            d = 0.0 if quantize else float(pattern.offset[t, v]) * TICKS_PER_STEP
            if t % 2:
                d += swing_ticks
            row.append((d, v, drums.OUTPUT_PITCHES[v], drums.velocity_to_midi(pattern.velocity[t, v])))
        out.append(row)
    return out


class Scheduler:
    def __init__(
        self,
        source: PatternSource,
        *,
        channel: int = DEFAULT_CHANNEL,
        quantize: bool = False,
        swing: float = 0.0,
        lead: float = 0.0,
        gate_steps: float = GATE_STEPS,
    ) -> None:
        if not 0 <= channel <= 15:
            raise ValueError(f"channel {channel} outside 0..15")
        if not 0.0 <= swing <= MAX_SWING:
            raise ValueError(f"swing {swing} outside 0..{MAX_SWING}")
        self.source = source
        self.channel = channel
        self.quantize = quantize
        self.swing = swing
        self.lead = lead
        self.gate_steps = gate_steps
        self.playing = False
        self._heap: list[tuple[float, int, int, int]] = []  # (pos, seq, pitch, velocity)
        self._ahead_heap: list[tuple[float, int, int, int]] = []  # the same notes, for the ahead lane
        self.ahead: Ahead | None = None
        self.ahead_s = 0.0
        self._offs: list[tuple[float, int, int]] = []  # (time, note id, pitch)
        self._sounding: dict[int, int] = {}  # pitch -> id of the note-on that holds it
        self._seq = 0
        self._gen_step = 0  # next global 16th step to expand
        self._gen_cycle: int | None = None
        self._compiled: list = []
        self._compile_cache: list[tuple[drums.Pattern, tuple[bool, float], list]] = []  # most recent first
        self._mutes: tuple[bool, ...] = (False,) * drums.NUM_VOICES
        self.patterns: dict[int, drums.Pattern] = {}  # recent cycles, for the view
        self.notes_sent = 0
        self.late = 0  # note-ons sent after their predicted time (>1 ms): a health figure
        self.dropped = 0  # note-ons that fell due while a stalled clock was waited for (never sent)

    def set_ahead(self, ahead: Ahead, ahead_s: float) -> None:
        """Also hand every note-on to ``ahead``, ``ahead_s`` seconds before its predicted time.

        A second lane rather than a larger ``lead`` for everyone: the MIDI port must
        still send at the note's time, and only the audio stream needs it early.
        """
        self.ahead = ahead
        self.ahead_s = ahead_s

    # -- transport

    def transport(self, ev: Transport, now: float, send: Send) -> None:
        if ev.kind == STOP:
            self.stop(send)
        else:
            self.start(ev.pos, send)

    def start(self, pos: int, send: Send | None = None) -> None:
        """Play from song position ``pos`` (the next clock). Mid-step cues begin at the next step."""
        self._heap.clear()
        self._ahead_heap.clear()
        self.playing = True
        self._gen_step = -(-pos // TICKS_PER_STEP)  # ceil: a step already under way is skipped whole
        self._gen_cycle = None
        self._mutes = self.source.mutes()

    def stop(self, send: Send) -> None:
        """Silence now: pending notes dropped, sounding ones released, then CC123."""
        self.playing = False
        self._heap.clear()
        self._ahead_heap.clear()
        self.release_all(send)
        send([0xB0 | self.channel, CC_ALL_NOTES_OFF, 0], None)

    def release_all(self, send: Send) -> None:
        for pitch in sorted(self._sounding):
            send([0x80 | self.channel, pitch, 0], None)
        self._sounding.clear()
        self._offs.clear()

    def panic(self, send: Send, exiting: bool = False) -> None:
        """:meth:`stop`, and on exit CC120 (all sound off) too."""
        self.stop(send)
        if exiting:
            send([0xB0 | self.channel, CC_ALL_SOUND_OFF, 0], None)

    # -- the playing pattern, for the view

    def pattern_at(self, cycle: int) -> drums.Pattern | None:
        return self.patterns.get(cycle)

    # -- the work

    def _compile(self, pattern: drums.Pattern) -> list:
        """:func:`compile_pattern`, remembered for the last COMPILED_KEPT patterns.

        Why: compiling a cycle took 0.16-0.6 ms (median 0.2) of the 0.42-1.42 ms (median 0.64)
        between reading a Continue and sending its first note, and 0.37-0.63 ms at a Start
        (perf_counter stamps in the live process over JACK, tests/jack/test_e2e.py [spp], 12
        runs; the source's own ``pattern_for`` took ~15 us). Those notes are a reaction that
        must be written within one JACK period (2.7 ms at 128 frames), so the compile is done
        while stopped (:meth:`_prepare`) and looked up here when the cycle starts: read ->
        first note-on then took 0.28-0.40 ms (median 0.30) over 12 runs.
        """
        key = (self.quantize, self.swing)
        cache = self._compile_cache
        for i, (p, k, compiled) in enumerate(cache):
            if p is pattern and k == key:
                if i:
                    cache.insert(0, cache.pop(i))
                return compiled
        compiled = compile_pattern(pattern, self.quantize, self.swing)
        cache.insert(0, (pattern, key, compiled))
        del cache[COMPILED_KEPT:]
        return compiled

    def _prepare(self, now: float, clock: ClockSource) -> None:
        """While stopped: compile what a Start (position 0) or a Continue (the clock's cue, its
        playhead while stopped) would play first, as the source would give it now.

        ``peek`` has no side effects, so this is safe to redo at every input (a new SPP, a
        request decoded while stopped); when the cycle starts, ``pattern_for`` lands it as
        before (same moment, same cycle) and finds its notes compiled. If a request lands
        after the last peek (no input came since), that pattern is compiled then, as it was.
        """
        pos = clock.position(now)
        cue = math.ceil(pos / TICKS_PER_STEP) // drums.STEPS if math.isfinite(pos) else 0
        self._compile(self.source.peek(0))
        if cue != 0:
            self._compile(self.source.peek(cue))

    def _expand(self, s: int) -> None:
        cycle, t = divmod(s, drums.STEPS)
        if cycle != self._gen_cycle:
            pattern = self.source.pattern_for(cycle)
            self._compiled = self._compile(pattern)
            self._gen_cycle = cycle
            self.patterns[cycle] = pattern
            for old in [c for c in self.patterns if c < cycle - 1 or c > cycle]:
                del self.patterns[old]
        elif t % drums.STEPS_PER_BAR == 0:
            pattern = self.source.pattern_at_bar(cycle, t // drums.STEPS_PER_BAR)
            if pattern is not None:
                self._compiled = self._compile(pattern)
                self.patterns[cycle] = pattern
        if s % drums.STEPS_PER_BAR == 0:
            self._mutes = self.source.mutes()
        base = s * TICKS_PER_STEP
        for d, v, pitch, vel in self._compiled[t]:
            if not self._mutes[v]:
                self._seq += 1
                heapq.heappush(self._heap, (base + d, self._seq, pitch, vel))
                if self.ahead is not None:
                    heapq.heappush(self._ahead_heap, (base + d, self._seq, pitch, vel))

    def _gate(self, clock: ClockSource) -> float:
        bpm = clock.bpm() or 120.0
        return min(GATE_MAX_S, max(GATE_MIN_S, self.gate_steps * TICKS_PER_STEP * bpm_to_period(bpm)))

    def poll(self, now: float, clock: ClockSource, send: Send) -> float:
        """Send everything due at ``now``; return when to call again (inf: only on input)."""
        wake = math.inf
        offs = self._offs
        while offs and offs[0][0] <= now:
            _, nid, pitch = heapq.heappop(offs)
            if self._sounding.get(pitch) == nid:
                del self._sounding[pitch]
                send([0x80 | self.channel, pitch, 0], None)
        if self.playing:
            arrived = clock.arrived()
            limit = clock.send_limit(now)
            stale = clock.stale_before(now)
            horizon = max(clock.position(now), arrived) + LOOKAHEAD_TICKS
            while self._gen_step * TICKS_PER_STEP + EARLIEST <= horizon:
                self._expand(self._gen_step)
                self._gen_step += 1
            if self.ahead is not None:
                wake = min(wake, self._poll_ahead(now, clock, arrived, limit, stale))
            due, dropped, at = _take_due(self._heap, now, clock, arrived, limit, stale, self.lead)
            self.dropped += dropped
            wake = min(wake, at)
            gate = self._gate(clock) if due else 0.0
            for pos, t, pitch, vel in due:
                if t is not None and now - t > 0.001:
                    self.late += 1
                self._note_on(pitch, vel, pos, max(now, t if t is not None else now) + gate, send)
            t_gen = clock.time_at(self._gen_step * TICKS_PER_STEP + EARLIEST - LOOKAHEAD_TICKS)
            if t_gen is not None:
                wake = min(wake, max(t_gen, now + 0.001))
        else:
            self._prepare(now, clock)
        if offs:
            wake = min(wake, offs[0][0])
        return wake

    def _poll_ahead(self, now: float, clock: ClockSource, arrived: float, limit: float, stale: float) -> float:
        """The ahead lane: what the MIDI lane does, ``ahead_s`` earlier; returns its next wake-up.

        Its send limit is ahead by as many clocks as ``ahead_s`` lasts: a MIDI clock lets
        notes go only 1.5 clocks past the last one received (13.9 ms at 180 BPM, less than
        an audio stream's block plus latency), and a lane held to that would hand the
        audio its notes too late at fast tempi. Stop still reaches both lanes at once,
        and an audio stream clears what it was given.
        """
        if math.isfinite(limit):
            bpm = clock.bpm()
            if bpm:
                limit += self.ahead_s / bpm_to_period(bpm)
        due, _, wake = _take_due(self._ahead_heap, now, clock, arrived, limit, stale, self.ahead_s)
        gate = self._gate(clock) if due else 0.0
        for pos, t, pitch, vel in due:
            self.ahead(pos, t if t is not None else now, pitch, vel, gate)
        return wake

    def _note_on(self, pitch: int, vel: int, pos: float, off_time: float, send: Send) -> None:
        ch = self.channel
        if pitch in self._sounding:
            send([0x80 | ch, pitch, 0], None)  # re-struck while sounding: release first
        self._seq += 1
        self._sounding[pitch] = self._seq
        send([0x90 | ch, pitch, vel], pos)
        self.notes_sent += 1
        heapq.heappush(self._offs, (off_time, self._seq, pitch))


# A sender pass plus its sleep spending this much longer off the CPU than the sleep asked is
# a stall of our own process (told to the clock: clocks may have been lost meanwhile). The
# 2 ms is under a JACK period at -p 128 (2.7 ms), so a stall long enough to skip a period of
# the JACK input is seen; a false report costs nothing unless the clock also went silent and
# came back whole clocks off its line.
OWN_STALL_S = 0.002
# SCHED_FIFO priority of the sender: the same as JACK's client process threads under jackd -R
# (ps -eLo cls,rtprio: the server's threads at 10, its clients' at 5), below the server's. A
# sender at 1 was tried (one-minute takes, -p 128): 5 / 8 / 4 xruns against 4 / 1 / 1 at 5.
REALTIME_PRIORITY = 5


def _take_due(heap: list, now: float, clock: ClockSource, arrived: float, limit: float, stale: float,
              lead: float) -> tuple[list[tuple[float, float | None, int, int]], int, float]:
    """Pop from a lane's heap what is due at ``now`` when sent ``lead`` seconds before its
    predicted time. Returns the due notes in order, (pos, predicted time or None, pitch,
    velocity); how many were passed over as stale; and when the next one falls due (inf:
    only on input).

    One rule for both lanes (the MIDI port's and the ahead lane of an audio stream): a note
    whose clock has arrived goes at once; one beyond ``limit`` (the clock's send limit) or
    without a prediction waits; what fell due while a stalled clock was waited for and is
    now ``stale`` is passed over (a late clump would be worse than the gap), never sent late.
    """
    due: list[tuple[float, float | None, int, int]] = []
    dropped = 0
    while heap and arrived < heap[0][0] < stale:
        heapq.heappop(heap)
        dropped += 1
    while heap:
        pos = heap[0][0]
        t = clock.time_at(pos)
        if pos > arrived:
            if pos > limit or t is None:
                return due, dropped, (max(t - lead, now + 0.001) if t is not None else math.inf)
            if t - lead > now:
                return due, dropped, t - lead
        _, _, pitch, vel = heapq.heappop(heap)
        due.append((pos, t, pitch, vel))
    return due, dropped, math.inf


def raise_priority(priority: int = REALTIME_PRIORITY) -> bool:
    """Make the calling thread SCHED_FIFO where the OS allows it (Linux, rtprio granted).

    The sender sleeps between deadlines; on a busy machine an ordinary thread can
    wake several milliseconds late, a realtime one within tens of microseconds.
    Where it is not allowed nothing changes (and the log says so at debug level).
    """
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread
    except (OSError, ValueError) as e:
        log.debug("no realtime priority for the sender (%s); running as an ordinary thread", e)
        return False
    log.debug("sender thread runs SCHED_FIFO priority %d", priority)
    return True


class Player(threading.Thread):
    """The sender thread: input queue -> clock -> scheduler -> output.

    ``inbox`` holds (arrival time, driver delta or None, bytes) from the MIDI
    callback; ``None`` just wakes the loop. Non-transport messages (notes, CCs)
    go to ``on_control``, which must return at once. Any exception ends the
    loop with a panic (no stuck notes) and is kept in ``error``.
    """

    def __init__(
        self,
        clock: ClockSource,
        scheduler: Scheduler,
        send: Send,
        inbox: queue.SimpleQueue | None = None,
        on_control: Callable[[tuple], None] | None = None,
        on_transport: Callable[[Transport], None] | None = None,
        max_wait: float = 0.05,
        now: Callable[[], float] = time.perf_counter,
        poll: Callable[[], list] | None = None,
        poll_interval: float = 0.002,
        cue_poll_interval: float = 0.0005,
        next_input: Callable[[float, bool], float | None] | None = None,
        server_report: Callable[[], tuple[Sequence[tuple[float, float]], float | None] | None] | None = None,
    ) -> None:
        super().__init__(name="drum-performer-sender", daemon=True)
        self.clock = clock
        self.scheduler = scheduler
        self.send = send
        self.inbox = inbox if inbox is not None else queue.SimpleQueue()
        self.on_control = on_control
        self.on_transport = on_transport
        self.max_wait = max_wait
        self.now = now
        self.poll = poll  # drains an input port's own queue; called every poll_interval
        self.poll_interval = poll_interval
        # A port that cannot say when input arrives (next_input None: ALSA, CoreMIDI, or JACK
        # without an answer from the server) is polled on these fixed intervals. While stopped
        # (or started and waiting for the first clock) every 0.5 ms. Why: a Continue (or Start)
        # arrives in the same JACK period as the clock it cues, so the cued step's notes are a
        # reaction and must reach the output before the next period (2.7 ms at 128 frames,
        # 48 kHz) to land within one period. The reaction itself (parse, transport, the cued
        # step's pattern, send) took 0.6-2 ms in the live process (instrumented runs;
        # 0.28-0.40 ms since the cued cycle is compiled while stopped, see
        # Scheduler._compile), so the poll's own delay must be small. Polled every
        # 2 ms, the notes missed that period (came 4.5 ms after their tick) in 2 of 8 runs of
        # tests/jack/test_e2e.py test_continue_resumes_at_the_right_step[spp]; every 1 ms, in
        # 1 of 27 (in a full-suite run); every 0.5 ms, in none of 27. Cost: CPU while stopped
        # (benchmarks/live_timing.py, "stop %") 3.3 % at 2 ms, 4.7 % at 1 ms, 8.3 % at 0.5 ms.
        # While playing, notes leave on the clock's prediction, so 2 ms is plenty there.
        self.cue_poll_interval = cue_poll_interval
        # Where the port can say when input can next arrive (JACK: once a cycle, see
        # RtMidiInput.next_input), the port is polled then instead (poll_wait).
        self.next_input = next_input
        # JACK's xruns and frame lag, told to the clock before each read of the port: a clock
        # lost in a cycle our input missed is counted back in from them (MidiClock)
        self.server_report = server_report
        self.parser = MidiParser()
        self.stamper = StampMapper()
        self.error: BaseException | None = None
        self.ready = threading.Event()  # set once the loop is running
        self._quit = threading.Event()
        self._lock = threading.Lock()  # serialises the final panic with the loop
        self.wakeups = 0
        self.max_oversleep = 0.0
        self.realtime = False

    def stop(self) -> None:
        self._quit.set()
        self.inbox.put(None)

    def run(self) -> None:
        self.realtime = raise_priority()
        try:
            self._loop()
        except BaseException as e:  # an internal error must still silence the drums
            self.error = e
            log.exception("the sender loop failed; silencing and stopping")
        finally:
            self.final_panic()

    def final_panic(self) -> None:
        with self._lock:
            try:
                self.scheduler.panic(self.send, exiting=True)
            except Exception:
                log.exception("panic on exit failed")

    def _handle(self, item) -> None:
        arrival, delta, data = item
        t = self.stamper.stamp(arrival, delta)
        for msg in self.parser.feed(data):
            if msg[0] in TRANSPORT_KINDS:
                self.clock.feed(msg, t)
            elif self.on_control is not None:
                try:
                    self.on_control(msg)
                except Exception:
                    log.exception("a MIDI control failed: %r", msg)

    def _drain(self, item) -> bool:
        """Handle ``item`` and everything else waiting; True if anything arrived."""
        got = item is not None
        if got:
            self._handle(item)
        inbox = self.inbox
        while not inbox.empty():
            item = inbox.get_nowait()
            if item is not None:
                got = True
                self._handle(item)
        if self.server_report is not None:
            report = self.server_report()
            if report is not None:
                self.clock.server(*report)
        if self.poll is not None:
            for it in self.poll():
                got = True
                self._handle(it)
        return got

    def _loop(self) -> None:
        inbox = self.inbox
        wake = self.now()
        polling = self.poll is not None
        cap = min(self.max_wait, self.poll_interval) if polling else self.max_wait
        self.ready.set()
        woke, cpu = self.now(), time.thread_time()
        while not self._quit.is_set():
            now = self.now()
            wait = min(wake - now, self.poll_wait(cap, now) if polling else cap)
            item = None
            if polling:
                # the port is drained below; the inbox only carries stop and reopen marks
                if wait > 0:
                    time.sleep(wait)
            elif wait > 0:
                with contextlib.suppress(queue.Empty):
                    item = inbox.get(timeout=wait)
            prev, woke = woke, self.now()
            prev_cpu, cpu = cpu, time.thread_time()
            if 0 < wait == wake - now:
                late = woke - wake
                if late > self.max_oversleep:
                    self.max_oversleep = late
            if woke - prev - (cpu - prev_cpu) > max(wait, 0.0) + OWN_STALL_S:
                # the last pass and this sleep spent far longer off the CPU than the sleep asked:
                # the thread did not run (a pass that was merely slow used the CPU; it does not
                # count). Told before the input that came meanwhile is fed: see MidiClock.stalled
                self.clock.stalled(prev, woke)
            self.wakeups += 1
            got = self._drain(item)
            if self._quit.is_set():
                break
            now = self.now()
            if not got and now < wake:
                continue  # a polling tick with nothing new: the schedule stands
            wake = self.step(now)

    def poll_wait(self, cap: float, now: float) -> float:
        """The longest sleep before the port is polled again.

        Where the port knows when input can next arrive (``next_input``: under JACK rtmidi
        moves input once a cycle, so a poll finds something new only just after a cycle has
        run), it is polled then and only then. Why: a Stop, a Continue and its first clock,
        a CC are reactions that must reach the output before the next cycle. Read on a fixed
        interval (0.5 ms while stopped) they were read late in the cycle now and then, and
        a Continue's cued step came a period late in 47 of 245 Continues
        (benchmarks/reaction.py); read 0.4 ms into the cycle, in 0 of 289. Polls: while a
        Start or Continue is awaited two a period (750 a second at 128 frames, 48 kHz; there
        were 2,000), while playing one (375; there were 500): RtMidiInput.next_input says
        why. Elsewhere (ALSA, CoreMIDI: messages move on their own) the port is polled every
        ``poll_interval``, and every ``cue_poll_interval`` while a Start or Continue (and the
        first clock after it) is waited for."""
        if self.next_input is not None:
            t = self.next_input(now, self.clock.state(now) in ("stopped", "starting"))
            if t is not None:
                return min(self.max_wait, max(0.0, t - now))
        return self.poll_cap(cap, now)

    def poll_cap(self, cap: float, now: float) -> float:
        """The fixed-interval sleep between two polls of a port that does not say when input
        can arrive: shorter while a Start or Continue (and the first clock after it) is
        waited for, since those notes are a reaction."""
        if self.clock.state(now) in ("stopped", "starting"):
            return min(cap, self.cue_poll_interval)
        return cap

    def step(self, now: float) -> float:
        """One pass at ``now``, after the input that arrived was fed to the clock: transport
        changes, then everything due; returns when to run again. The thread's loop and the
        simulated-time tests (tests/live_fakes.Sim) both run exactly this."""
        clock, sched, send = self.clock, self.scheduler, self.send
        events = clock.update(now)
        for ev in events:
            sched.transport(ev, now, send)
            if self.on_transport is not None:
                self.on_transport(ev)
        wake = sched.poll(now, clock, send)
        # logged once the reaction is sent: a Stop's CC123 and a Continue's first step must
        # be written before the next JACK period, and a log line is a write to stderr
        for ev in events:
            if ev.kind == STOP:
                log.info("stop at song position %d (%s)", ev.pos, ev.reason)
            else:
                log.info("%s at song position %d", ev.kind, ev.pos)
        nc = clock.next_check(now)
        if nc is not None and nc < wake:
            wake = nc
        return wake
