"""The Link clock's math in simulated time: Link beats -> song position, tempo, start/stop.

A simulated session (:class:`SimSession`) stands in for the binding: a beat
timeline on a host clock that is deliberately 0.25 s away from the
performer's clock (as CLOCK_MONOTONIC_RAW is from CLOCK_MONOTONIC here), so
a clock that mixed the two would be off by half a beat.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from model import drums
from performer.clock import START, STOP, TICKS_PER_CYCLE, TICKS_PER_STEP
from performer.link_clock import (
    MISSING_LINE,
    QUANTUM,
    HostBridge,
    LinkClock,
    LinkUnavailable,
)
from performer.scheduler import Scheduler
from tests.live_fakes import HOST_OFFSET_S, Sim, SimSession, SimTime, StaticSource, simple_pattern


def make(session: SimSession | None = None, start_delay: float = 0.05):
    st = SimTime()
    session = session or SimSession()
    clock = LinkClock(session, HostBridge(perf=lambda: st.now, host_us=st.host_us), start_delay=start_delay)
    return st, session, clock


def host(t: float) -> float:
    return (t + HOST_OFFSET_S) * 1e6


def test_bridge_converts_between_the_two_clocks_without_mixing_them():
    st = SimTime()
    st.now = 12.5
    b = HostBridge(perf=lambda: st.now, host_us=st.host_us)
    assert b.offset_us == pytest.approx(HOST_OFFSET_S * 1e6)
    assert b.to_perf(b.to_host(3.0)) == pytest.approx(3.0)
    assert b.to_host(0.0) == pytest.approx(HOST_OFFSET_S * 1e6)


def test_song_position_is_24_clocks_per_link_beat_and_cycles_start_on_16_beat_multiples():
    st, session, clock = make(SimSession(120.0, beat0=0.0, host0_us=host(0.0)))
    st.now = 1.0
    clock.start(st.now)
    ev = clock.update(st.now)
    assert clock.running
    assert [e.kind for e in ev] == [START]
    # the position at any time is 24 x the session's beat at the same host time
    for t in (1.1, 2.0, 7.77, 31.9):
        assert clock.position(t) == pytest.approx(24 * session.beat_at(host(t)), abs=1e-6)
    # time_at answers in performer time: beat 16 (cycle 1) is 8 s after the host time of beat 0,
    # which is performer time 0 (a clock that forgot the 0.25 s offset would say 7.75)
    assert clock.time_at(TICKS_PER_CYCLE) == pytest.approx(8.0, abs=1e-9)
    for k in range(1, 4):
        t = clock.time_at(k * TICKS_PER_CYCLE)
        assert session.beat_at(host(t)) == pytest.approx(16.0 * k, abs=1e-9)


def test_free_start_begins_just_ahead_of_now_on_the_session_grid():
    st, session, clock = make(SimSession(100.0, beat0=3.3, host0_us=host(0.0)))
    st.now = 2.0
    clock.start(st.now)
    ev = clock.update(st.now)
    starts = [e for e in ev if e.kind == START]
    assert len(starts) == 1 and session.enabled
    want = math.ceil(24 * session.beat_at(host(2.0 + clock.start_delay)) - 1e-6)
    assert starts[0].pos == want
    assert clock.time_at(want) >= st.now + clock.start_delay - 1e-9


def test_follows_a_peers_start_on_its_start_beat_and_its_stop():
    session = SimSession(120.0, beat0=0.0, host0_us=host(0.0))
    st, session, clock = make(session)
    st.now = 1.0
    session.start_stop(False, host(0.5))  # a peer with start/stop sync, stopped
    clock.start(st.now)
    # a stopped session says nothing about start/stop sync being used: we play on our own
    # (documented), on the session's beats
    assert clock.running
    assert [e.kind for e in clock.update(st.now)] == [START]
    session.start_stop(True, host(4.0))  # the peer starts (quantized launch at beat 8)
    st.now = 2.0
    assert clock.update(st.now) == []  # already playing on the same beats: nothing to redo
    # stop from the peer
    session.start_stop(False, host(6.0))
    st.now = 6.01
    ev = clock.update(st.now)
    stops = [e for e in ev if e.kind == STOP]
    assert len(stops) == 1 and not clock.running
    assert stops[0].reason == "link stop"
    # and a later start begins on the peer's start beat
    session.start_stop(True, host(8.0))
    st.now = 7.0
    ev = clock.update(st.now)
    (start,) = [e for e in ev if e.kind == START]
    assert start.pos == 24 * 16  # beat 16 at host(8.0): a cycle boundary
    assert clock.state(7.0) == "starting" and clock.state(8.0) == "playing"
    assert clock.time_at(start.pos) == pytest.approx(8.0, abs=1e-9)


def test_session_playing_when_joining_is_followed_from_the_start():
    session = SimSession(120.0, beat0=0.0, host0_us=host(0.0))
    session.start_stop(True, host(0.0))
    st, session, clock = make(session)
    st.now = 3.0
    clock.start(st.now)
    assert clock.running
    session.start_stop(False, host(3.5))
    st.now = 3.6
    assert [e.kind for e in clock.update(st.now)] == [START, STOP]


def test_a_peers_tempo_change_moves_the_prediction_and_keeps_the_beat_continuous():
    st, session, clock = make(SimSession(120.0, beat0=0.0, host0_us=host(0.0)))
    st.now = 0.5
    clock.start(st.now)
    st.now = 4.0
    clock.update(st.now)
    session.change_tempo(150.0, host(4.2))
    st.now = 4.21
    clock.update(st.now)
    assert clock.bpm() == pytest.approx(150.0)
    assert clock.tempo_changes == 1
    pos = 24 * 12.0  # beat 12: 8.4 beats at 120 until 4.2, then 3.6 beats at 150 (1.44 s)
    assert clock.time_at(pos) == pytest.approx(4.2 + 3.6 * 60 / 150, abs=1e-9)
    assert clock.position(4.2) == pytest.approx(24 * 8.4, abs=1e-6)


def test_own_tempo_change_goes_to_the_session_at_our_host_time():
    st, session, clock = make()
    st.now = 1.0
    clock.start(st.now)
    st.now = 2.0
    clock.set_tempo(90.0, st.now)
    assert session.tempo_requests == [(90.0, pytest.approx(host(2.0)))]
    assert clock.bpm() == 90.0
    with pytest.raises(ValueError):
        clock.set_tempo(1000.0, st.now)


def test_timeline_jump_drops_late_notes_instead_of_clumping_them():
    st, session, clock = make(SimSession(120.0, beat0=0.0, host0_us=host(0.0)))
    st.now = 0.5
    clock.start(st.now)
    assert clock.stale_before(st.now) == pytest.approx(clock.position(st.now) - 3.0)
    clock.stop(st.now)
    assert clock.stale_before(st.now) == -math.inf and clock.time_at(0) is None


def test_scheduler_on_link_puts_every_note_on_the_sessions_16th_grid_across_a_tempo_change():
    """The whole path in simulated time: every note-on is sent at the performer time whose
    host time is the session's 16th; after the peer's tempo change, on the new grid."""
    pat = simple_pattern({s: [2] for s in range(drums.STEPS)})  # a hi-hat on every 16th
    st, session, clock = make(SimSession(120.0, beat0=0.0, host0_us=host(0.0)))
    sched = Scheduler(StaticSource(pat), quantize=True)
    sim = Sim(sched, clock)
    clock.bridge.perf = lambda: sim.now
    clock.bridge.host_us = lambda: (sim.now + HOST_OFFSET_S) * 1e6
    clock.start(0.0)
    sim.run_until(5.0)
    session.change_tempo(160.0, host(5.0))
    sim.run_until(10.0)
    ons = sim.sent.note_ons()
    assert len(ons) > 60
    errs = []
    for t, _, pos in ons:
        beat = session.beat_at(host(t))
        step = beat * 4
        errs.append(abs(step - round(step)) * 60.0 / 4 / (120 if t < 5.0 else 160))
        assert pos % TICKS_PER_STEP == 0
        assert round(step) == pos / TICKS_PER_STEP  # the note of step k is sent on session step k
    assert max(errs) < 1e-6
    # notes keep coming at 160 BPM after the change: 16ths 93.75 ms apart
    late = [t for t, _, _ in ons if t > 5.1]
    gaps = np.diff(late)
    assert np.allclose(gaps, 60.0 / 160 / 4, atol=1e-6)


def test_missing_binding_is_one_clear_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_link(name, *a, **k):
        if name == "link":
            raise ImportError("No module named 'link'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_link)
    from performer.link_clock import LinkSession

    with pytest.raises(LinkUnavailable) as e:
        LinkSession(120.0)
    assert str(e.value) == MISSING_LINE and "\n" not in MISSING_LINE
    assert QUANTUM == 4.0


def test_a_start_read_a_microsecond_past_its_beat_still_starts_on_that_beat():
    """The peer's start time is whole microseconds: beat 8 may read as 8.000002. Found on the
    real binding (start_pos 97 instead of 96, skipping the first step)."""
    session = SimSession(120.0, beat0=0.0, host0_us=host(0.0))
    st, session, clock = make(session)
    st.now = 1.0
    session.start_stop(False, host(0.5))
    clock.start(st.now)
    session.start_stop(False, host(1.0))
    st.now = 1.1
    clock.update(st.now)  # following now, stopped
    assert not clock.running
    session.start_stop(True, host(4.0) + 1.0)  # beat 8, one microsecond late
    st.now = 2.0
    (start,) = clock.update(st.now)
    assert start.kind == START and start.pos == 8 * 24


def test_the_view_shows_link_peers_and_the_session_tempo():
    from performer.app import LiveApp, LiveOptions
    from performer.view import render

    session = SimSession(120.0, beat0=0.0, host0_us=host(0.0))
    session.peers = 2
    st, session, clock = make(session)
    clock.start(0.0)
    session.change_tempo(137.5, host(0.0))
    clock.update(0.0)
    app = LiveApp(LiveOptions(link=True))
    app.clock = clock
    text = "\n".join(render(app.status()))
    assert "Ableton Link, 2 peers" in text
    assert "137.5 BPM" in text
