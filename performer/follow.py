"""``--follow``: listen to a player and drumify what was heard, a cycle at a time.

The player's note-ons arrive on their own input (``--follow [PORT]``, see
:func:`performer.ports.open_follow_input`). Nothing runs on the MIDI driver's
thread: the sender thread drains the port every couple of milliseconds (with
the clock input), stamps each message from the driver's own deltas (a
:class:`~performer.clock.StampMapper` of its own, so the stamps are in the
same ``perf_counter`` domain as the clock's ticks) and places every note-on
on the song position at that stamp (the clock's ``position_at``).
Every note-on counts, on any channel, with its velocity.

**Which bars are "the last 4 bars heard".** When the playhead passes the bar
line of bar 4 of cycle k, the follower takes the 64 sixteenths that end
there -- bar 4 of cycle k-1 and bars 1-3 of cycle k, each at its own place in
the cycle -- and asks the director for a ``follow`` request, which its worker
decodes during bar 4 and which lands at the boundary to cycle k+1 like every
other request. Why there: it is the most recent four bars that still leaves a
whole bar (2 s at 120 BPM, 600 ms at 400) for the tap encoder and the decode
(a few ms) and any queueing, so following never delays a cycle; a window that
ends at the boundary itself could not be decoded before it, and the last whole
cycle (bars 1-4 of cycle k-1) would be three bars older. A note for the last 16th of
bar 3 may be played up to half a step late and still count: by the bar line
it is in (the step is 6 clocks, the bar line is 3 clocks after its latest time).

**How often the line is looked for.** The sender thread drains the player's input every poll
(2 ms), but the playhead is not read at every poll: after each look, the next is due when the
playhead could first reach the next bar-4 line at the fastest tempo the performer plays
(MAX_BPM), and at least every ``CHECK_S``. So the line is seen at the same poll as by a look
at every poll, for any tempo and tempo change up to MAX_BPM, with a twentieth of the reads (a
MIDI clock's playhead costs ~0.7 us to read, its fitted tick line; benchmarks/follow_latency.py
``sender_poll``, 120 BPM: 795 reads in 16001 polls, the drain's median 0.86 -> 0.16 us a
poll, 537 -> 172 us per second of playing); a playhead that jumps ahead
(a burst of clocks after a stall of ours, a Link timeline realigned) is seen at most
``CHECK_S`` late, with a whole bar to spare.

Silence (no note-on in those 64 steps) asks for nothing: the playing groove
goes on. A follow amount of 0 asks for nothing either, so ``--follow`` with
amount 0 plays exactly what the same ``--seed`` plays without it. Start,
Continue and Stop forget what was heard (a relocation must not mix two places
of the song).
"""

from __future__ import annotations

import logging
import math
import queue
import threading

import numpy as np

from model import drums
from performer import band
from performer.clock import (
    GAP_TICKS,
    MAX_BPM,
    NEG_INF,
    NOTE_ON,
    STOP,
    TICKS_PER_BAR,
    TICKS_PER_CYCLE,
    TICKS_PER_STEP,
    MidiParser,
    StampMapper,
    bpm_to_period,
)

log = logging.getLogger(__name__)

TRIGGER_TICK = 3 * TICKS_PER_BAR  # the bar line of bar 4, within the cycle
KEEP_TICKS = TICKS_PER_CYCLE + TICKS_PER_BAR  # what is kept of the past: the window and a bar
CHECK_S = 0.05  # the playhead is read at least this often (see "How often" above)
FASTEST_TICK_S = bpm_to_period(MAX_BPM)  # no tempo the performer plays moves the playhead faster
# ... except that a MIDI clock's playhead may run up to GAP_TICKS past its last clock on its fitted
# line, and a refit (a tempo change) may move it there at once: within this of the line, every poll
LEAP_TICKS = GAP_TICKS + 1.0


class Follower:
    """Heard note-ons -> a ``follow`` request per cycle (sender thread, except :meth:`status`)."""

    def __init__(self, director, clock, port=None, inbox: queue.SimpleQueue | None = None) -> None:
        self.director = director
        self.clock = clock
        self.port = port  # anything with poll() -> [(arrival, driver delta, bytes)]; None: only the inbox
        self.inbox = inbox if inbox is not None else queue.SimpleQueue()
        self.parser = MidiParser()
        self.stamper = StampMapper()
        self._onsets: list[tuple[float, float]] = []  # (song position in clocks, velocity 0..1)
        self._last_trigger: int | None = None  # cycle whose bar 4 line was last acted on
        self._due = NEG_INF  # when the playhead is next read (sender thread time)
        self.looks = 0  # playhead reads, for the benchmark and the tests
        self._lock = threading.Lock()  # guards what the view reads
        self.heard: np.ndarray | None = None  # (64, 3) taps of the last window taken
        self.heard_cycle: int | None = None  # the cycle that window led into (0-based)
        self.requests = 0
        self.silent = 0
        self.notes = 0

    # -- sender thread

    def drain(self, now: float) -> None:
        """Take what arrived, then act if the playhead passed a bar-4 line. Returns at once."""
        inbox = self.inbox
        items = self.port.poll() if self.port is not None else ()
        if not inbox.empty():  # stamp-timeline resets and tests' notes: before the port's
            first = []
            while not inbox.empty():
                first.append(inbox.get_nowait())
            items = [*first, *items]
        for arrival, delta, data in items:
            t = self.stamper.stamp(arrival, delta)
            for msg in self.parser.feed(data):
                if msg[0] == NOTE_ON:
                    self.note(t, msg[3])
        if now >= self._due:
            self.check(now)

    def note(self, t: float, velocity: int) -> None:
        pos = self.clock.position_at(t)
        if pos is None or pos < -TICKS_PER_STEP:
            return
        self.notes += 1
        self._onsets.append((pos, drums.velocity_from_midi(velocity)))

    def transport(self, ev) -> None:
        """Start / Continue / Stop: forget what was heard; the next bar-4 line after the cue counts."""
        self._onsets.clear()
        self._last_trigger = None if ev.kind == STOP else math.floor((ev.pos - TRIGGER_TICK) / TICKS_PER_CYCLE)
        self._due = NEG_INF  # a relocation: look at the next poll

    def check(self, now: float) -> None:
        """Read the playhead; act if it passed a bar-4 line; say when to read it next."""
        clock = self.clock
        if not clock.running:
            return
        self.looks += 1
        pos = clock.position(now)
        k = math.floor((pos - TRIGGER_TICK) / TICKS_PER_CYCLE)  # the last cycle whose bar 4 has begun
        if self._last_trigger is None:
            self._last_trigger = k  # joined mid-way: only bar-4 lines passed from here on count
        elif k > self._last_trigger:
            self._last_trigger = k
            self.take(k)
        line = (self._last_trigger + 1) * TICKS_PER_CYCLE + TRIGGER_TICK
        self._due = now + min(CHECK_S, max(0.0, line - pos - LEAP_TICKS) * FASTEST_TICK_S)

    def take(self, k: int) -> None:
        """The window that ends at cycle k's bar-4 line -> a follow request for cycle k+1."""
        end = k * TICKS_PER_CYCLE + TRIGGER_TICK
        first_step = end // TICKS_PER_STEP - drums.STEPS
        self._onsets = [o for o in self._onsets if o[0] >= end - KEEP_TICKS]
        taps = band.heard_taps(((p / TICKS_PER_STEP, v) for p, v in self._onsets), first_step)
        with self._lock:
            self.heard, self.heard_cycle = taps, k + 1
        if not taps[:, 0].any():
            self.silent += 1
            log.info("follow: nothing heard in the 4 bars before bar 4 of cycle %d; the groove goes on", k + 1)
            return
        if self.director.follow_amount() <= 0:
            return
        self.requests += 1
        self.director.request("follow", taps)

    # -- view

    def status(self) -> dict:
        with self._lock:
            heard = None if self.heard is None else self.heard.copy()
            cycle = self.heard_cycle
        return {"heard": heard, "heard_cycle": cycle, "port": self.port.describe() if self.port is not None else "-",
                "notes": self.notes}
