"""Whatever arrives on the clock port, the follower neither crashes nor wedges.

Property tests (hypothesis) push random byte streams -- garbage, SysEx,
running status, Continue without SPP, clock without Start, realtime bytes in
the middle of messages -- through the parser and the clock follower, with
random arrival gaps, then check that a clean Start and clock still work.
"""

from __future__ import annotations

import math
import queue
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from performer.clock import (
    CC,
    STOP,
    TRANSPORT_KINDS,
    MidiClock,
    MidiParser,
    StampMapper,
    bpm_to_period,
)
from performer.scheduler import Player, Scheduler
from tests.live_fakes import PANIC_TAIL, LogSink, StaticSource, simple_pattern, wait_until

# bytes weighted towards the interesting ones
interesting = st.sampled_from([0xF8, 0xFA, 0xFB, 0xFC, 0xF2, 0xF0, 0xF7, 0xFE, 0xFF, 0x90, 0x99, 0xB0, 0x80, 0xF1, 0xF3, 0xF6])
byte = st.one_of(st.integers(0, 255), interesting, st.integers(0, 127))
chunk = st.lists(byte, min_size=0, max_size=12)
gap = st.one_of(st.floats(0, 0.05), st.floats(0, 3.0), st.just(0.0))
stream = st.lists(st.tuples(chunk, gap), min_size=0, max_size=120)


def _feed(parser, clock, mapper, items, t0=0.0):
    t = t0
    for data, dt in items:
        t += dt
        stamp = mapper.stamp(t, dt)
        for msg in parser.feed(data):
            if msg[0] in TRANSPORT_KINDS:
                clock.feed(msg, stamp)
        clock.update(t)
        _check_invariants(clock, t)
    return t


def _check_invariants(clock: MidiClock, t: float) -> None:
    bpm = clock.bpm()
    assert bpm is None or (math.isfinite(bpm) and 19 < bpm < 401)
    a = clock.arrived()
    assert a == -math.inf or (a >= 0 and float(a).is_integer())
    pos = clock.position(t)
    assert math.isfinite(pos)
    ta = clock.time_at(a + 1 if a != -math.inf else 0)
    assert ta is None or math.isfinite(ta)
    lim = clock.send_limit(t)
    assert lim == -math.inf or math.isfinite(lim)
    nc = clock.next_check(t)
    assert nc is None or math.isfinite(nc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream, st.booleans())
def test_garbage_never_crashes_or_wedges_the_follower(items, start_on_clock):
    parser, clock, mapper = MidiParser(), MidiClock(start_on_clock=start_on_clock), StampMapper()
    t = _feed(parser, clock, mapper, items)
    # afterwards a clean transport still works exactly
    t += 5.0
    p = bpm_to_period(120)
    parser.feed([0xFC])  # whatever state it was in: stop
    clock.feed(("stop",), t)
    clock.update(t)
    t += 0.5
    for msg in parser.feed([0xFA]):
        clock.feed(msg, t)
    for k in range(48):
        for msg in parser.feed([0xF8]):
            clock.feed(msg, t + k * p)
        clock.update(t + k * p)
    assert clock.running
    assert clock.arrived() == 47
    assert abs(clock.bpm() - 120) < 0.5
    assert abs(clock.time_at(48) - (t + 48 * p)) < 0.001
    parser.feed([0xFC])
    clock.feed(("stop",), t + 48 * p)
    assert [e.kind for e in clock.update(t + 48 * p)] == [STOP]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-5, 300), max_size=300))
def test_parser_accepts_any_integers(data):
    out = MidiParser().feed(data)
    for m in out:
        assert isinstance(m, tuple) and isinstance(m[0], str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parser_byte_stream_split_anywhere_gives_the_same_messages(blob):
    whole = MidiParser().feed(blob)
    p = MidiParser()
    parts = []
    for i in range(0, len(blob), 7):
        parts += p.feed(blob[i : i + 7])
    assert parts == whole


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 10), st.one_of(st.none(), st.floats(-1, 100))), max_size=60))
def test_stamp_mapper_never_returns_a_time_after_arrival(pairs):
    m = StampMapper()
    t = 100.0
    for dt, delta in pairs:
        t += abs(dt)
        s = m.stamp(t, delta)
        assert math.isfinite(s) and s <= t + 1e-9


def test_sender_loop_survives_a_flood_of_garbage_and_then_plays_a_clean_run():
    """The real thread: random bytes at full speed, then a clean Start and clocks still play."""
    rng = np.random.default_rng(7)
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    sched = Scheduler(src, quantize=True)
    clock = MidiClock()
    log = LogSink()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    controls = []
    player = Player(clock, sched, log.send, inbox, on_control=controls.append)
    player.start()
    marker = (CC, 15, 119, 77)
    try:
        now = time.perf_counter()
        for _ in range(3000):
            n = int(rng.integers(0, 8))
            data = [int(x) for x in rng.integers(0, 256, n)]
            inbox.put((now, float(rng.uniform(-1, 1)) if rng.random() < 0.9 else None, data))
        # stop whatever the garbage started; end any SysEx it left open; then a control the
        # test waits for: the sender has been through all of the garbage once it arrives
        inbox.put((now, 0.0, [0xFC, 0xF7, 0xBF, 119, 77]))
        assert wait_until(lambda: controls[-1:] == [marker] or not player.is_alive())
        assert controls[-1:] == [marker] and player.is_alive() and player.error is None
        before = len(log.note_ons())
        inbox.put((time.perf_counter(), None, [0xFA] + [0xF8] * 48))  # Start, song positions 0..47
        assert log.wait_notes(before + 8)
        assert [pos for _, pos in log.note_ons()[before:before + 8]] == [6.0 * k for k in range(8)]
        assert clock.running and clock.arrived() == 47
        assert len(controls) > 1  # channel messages in the garbage reached the control path too
    finally:
        player.stop()
        player.join(2)
    assert not player.is_alive() and player.error is None
    assert log.messages()[-2:] == PANIC_TAIL
