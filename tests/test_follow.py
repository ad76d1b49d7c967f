"""Playing with the band live (issue 9): --follow, the follow amount, --humanize, --groove FILE.

The follower is driven in simulated time (tests/live_fakes.Sim: the sender
thread's own step, no sleeping): note-ons are pushed with the timestamps a
port would give, the clock places them, and the director's worker decodes the
follow request; tests wait for that decode (an event), never for a time.
"""

from __future__ import annotations

import queue
import threading

import mido
import numpy as np
import pytest

from model import drums
from performer import band
from performer.clock import TICKS_PER_CYCLE, TICKS_PER_STEP, InternalClock, MidiClock, bpm_to_period
from performer.controls import ACTIONS, Controller
from performer.director import Director
from performer.follow import Follower
from performer.link_clock import HostBridge, LinkClock
from performer.ports import MemoryInput
from performer.scheduler import Scheduler
from performer.view import render
from tests.conftest import assert_one_line_error, run_cli
from tests.live_fakes import HOST_OFFSET_S, FakeEngine, Sim, SimSession

BPM = 120.0
STEP_S = TICKS_PER_STEP * bpm_to_period(BPM)  # 0.125 s
BAR_S = drums.STEPS_PER_BAR * STEP_S
CYCLE_S = drums.STEPS * STEP_S
RHYTHM = (0, 3, 6, 10, 12)  # a clave-like figure, every bar
SEED, TEMP = 40, 0.8


class _TapSession:
    """A deterministic stand-in for tap.onnx: z from how many onsets each 8-step slice has."""

    def run(self, _outputs, feed):
        taps = np.asarray(feed["taps"], np.float32)
        return [(taps[..., 0].reshape(len(taps), 8, 8).sum(-1) * 0.5 - 1.0).astype(np.float32)]


class TapEngine(FakeEngine):
    """FakeEngine with a tap encoder and an encoder (what follow and --groove need)."""

    folder = "fake"
    meta = {"files": {band.TAP: {}}}

    def extra_session(self, name):
        assert name == band.TAP
        return _TapSession()

    def encode(self, pattern):
        return pattern.hits[: drums.STEPS].reshape(8, 8, -1).mean((1, 2)).astype(np.float32)


def tap_z(taps: np.ndarray) -> np.ndarray:
    return _TapSession().run(None, {"taps": taps[None]})[0][0]


def rhythm_taps(bars=(0, 1, 2), steps=RHYTHM, vel=100) -> np.ndarray:
    taps = np.zeros((drums.STEPS, 3), np.float32)
    for b in bars:
        for s in steps:
            taps[b * drums.STEPS_PER_BAR + s] = (1.0, drums.velocity_from_midi(vel), 0.0)
    return taps


class FollowSim(Sim):
    """A Sim whose sender step also drains the follower (what app._follow_poll does), every
    ``poll`` seconds of simulated time; a follow request is decoded before time goes on."""

    def __init__(self, director, clock, follower: Follower, poll: float = 0.002) -> None:
        super().__init__(Scheduler(director), clock)
        self.director = director
        self.follower = follower
        self.poll = poll
        self.player.on_transport = lambda ev: (self.transports.append(ev), follower.transport(ev))

    def run_to(self, t_end: float) -> None:
        t = self.now
        while t < t_end:
            t = min(t_end, t + self.poll)
            self.run_until(t)
            asked = self.follower.requests
            self.follower.drain(t)
            if self.follower.requests != asked:
                assert self.director.wait_decoded(5.0), "the follow decode did not finish"


def make(amount=1.0, engine=None, **kw):
    e = engine or TapEngine()
    d = Director(e, seed=SEED, temperature=TEMP, follow=amount, **kw)
    d.start()
    clock = InternalClock(BPM, start_delay=0.0)
    f = Follower(d, clock)
    sim = FollowSim(d, clock, f)
    clock.start(0.0)
    return d, f, sim, MemoryInput(f.inbox)


def play(port: MemoryInput, t0: float, bars=(0, 1, 2), steps=RHYTHM, vel=100, late=0.0, channel=0):
    """Note-ons (and offs) of the rhythm, stamped like a port would; ``late`` in steps."""
    for b in bars:
        for s in steps:
            t = t0 + (b * drums.STEPS_PER_BAR + s + late) * STEP_S
            port.push([0x90 | channel, 60 + s, vel], t)
            port.push([0x80 | channel, 60 + s, 0], t + 0.05)


# --- the pieces -----------------------------------------------------------------------------------


def test_heard_taps_place_each_onset_on_its_nearest_step_by_its_place_in_the_cycle():
    # window from global step 48 (bar 4 of cycle 0) to 111 (bar 3 of cycle 1)
    onsets = [(48.2, 0.5), (64.0, 0.9), (63.6, 0.3), (111.4, 0.7), (111.6, 1.0), (47.4, 1.0)]
    taps = band.heard_taps(onsets, 48)
    assert np.flatnonzero(taps[:, 0]).tolist() == [0, 47, 48]
    assert taps[48].tolist() == pytest.approx([1.0, 0.5, 0.2])  # bar 4 of the earlier cycle, as bar 4
    assert taps[0].tolist() == pytest.approx([1.0, 0.9, 0.0])  # the louder of two onsets of one step
    assert taps[47].tolist() == pytest.approx([1.0, 0.7, 0.4])  # 111.6 is step 112: outside


def test_slerp_at_is_the_morph_path_with_its_ends_exact():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
    assert np.allclose(band.slerp_at(a, b, 0.0), a) and np.allclose(band.slerp_at(a, b, 1.0), b)
    from performer.engine import Engine

    rng = np.random.default_rng(0)
    za, zb = rng.standard_normal(16), rng.standard_normal(16)
    path = Engine.slerp(za, zb, 5)  # the morph's path: the follow blend is a point on it
    assert np.allclose(band.slerp_at(za, zb, 0.25), path[1], atol=1e-6)
    assert np.allclose(band.slerp_at(za, zb, 0.5), path[2], atol=1e-6)
    assert np.allclose(band.slerp_at(a, 3 * a, 0.5), 2 * a)  # parallel: the straight line


def test_position_at_places_an_event_between_clocks_even_behind_the_last_one():
    c = MidiClock()
    p = bpm_to_period(BPM)
    c.feed(("start",), 0.0)
    for n in range(30):
        c.feed(("clock",), n * p)
    last = 29 * p
    # an event stamped 2.5 clocks before the last clock: the playhead never goes back, the event does
    assert c.position(last - 2.5 * p) == pytest.approx(29.0)
    assert c.position_at(last - 2.5 * p) == pytest.approx(26.5, abs=1e-6)
    assert c.position_at(10.25 * p) == pytest.approx(10.25, abs=1e-6)
    c.feed(("stop",), last + p)
    assert c.position_at(last) is None


# --- the follower in simulated time ---------------------------------------------------------------


def test_the_4_bars_before_bar_4_are_heard_and_the_next_cycle_follows_them():
    d, f, sim, port = make(amount=1.0)
    play(port, 0.0, late=0.2)
    sim.run_to(3 * BAR_S - 0.01)
    assert f.requests == 0 and f.heard is None  # bar 4 has not begun
    sim.run_to(3 * BAR_S + 0.01)
    assert f.requests == 1 and f.heard_cycle == 1
    want = rhythm_taps()
    assert np.array_equal(f.heard[:, 0], want[:, 0])
    assert np.allclose(f.heard[want[:, 0] > 0, 2], 0.2, atol=1e-4)  # each onset's microtiming
    assert np.allclose(f.heard[want[:, 0] > 0, 1], want[want[:, 0] > 0, 1])
    first = sim.sched.patterns[0]
    sim.run_to(CYCLE_S + 0.5)
    heard_groove = TapEngine().sample(z=tap_z(want), temperature=TEMP, seed=SEED)
    assert sim.sched.patterns[1].equals(heard_groove) and not heard_groove.equals(first)
    assert "follow 100%" in d.current.label and d.current.seed == SEED  # no seed taken


def test_a_note_for_the_last_16th_of_bar_3_played_late_still_counts():
    d, f, sim, port = make()
    port.push([0x90, 40, 90], (47 + 0.45) * STEP_S)  # step 47, nearly half a step late
    sim.run_to(3 * BAR_S + 0.01)
    assert f.heard[47, 0] == 1 and f.heard[:, 0].sum() == 1


def test_the_window_of_later_cycles_is_bar_4_before_and_bars_1_to_3_of_the_cycle():
    d, f, sim, port = make()
    play(port, 0.0, bars=(3,), steps=(8,))  # bar 4 of cycle 1: heard for cycle 2 only
    play(port, CYCLE_S, bars=(1,), steps=(4,))  # bar 2 of cycle 2
    sim.run_to(3 * BAR_S + 0.01)
    assert f.silent == 1 and f.requests == 0  # bars 1-3 of cycle 1 were silent
    sim.run_to(CYCLE_S + 3 * BAR_S + 0.01)
    assert f.heard_cycle == 2 and np.flatnonzero(f.heard[:, 0]).tolist() == [20, 56]


def test_silence_keeps_the_playing_groove():
    d, f, sim, port = make(amount=1.0)
    sim.run_to(2 * CYCLE_S + 0.5)
    assert f.silent == 2 and f.requests == 0
    ref = TapEngine().sample(seed=SEED, temperature=TEMP)
    assert sim.sched.patterns[2].equals(ref) and d.changes == 0


def test_follow_0_plays_exactly_what_the_seed_plays_without_follow():
    d0, f, sim, port = make(amount=0.0)
    play(port, 0.0)
    play(port, CYCLE_S)
    sim.run_to(2 * CYCLE_S + 0.5)
    assert f.requests == 0 and f.notes == 30
    d1 = Director(TapEngine(), seed=SEED, temperature=TEMP)  # no follow at all
    ref = Sim(Scheduler(d1), InternalClock(BPM, start_delay=0.0))
    ref.clock.start(0.0)
    ref.run_until(2 * CYCLE_S + 0.5)
    assert [m for _, m, _ in sim.sent.log] == [m for _, m, _ in ref.sent.log]
    assert len(sim.sent.note_ons()) > 20


def test_the_amount_blends_the_playing_latent_towards_what_was_heard():
    e = TapEngine()
    d, f, sim, port = make(amount=0.5, engine=e)
    play(port, 0.0)
    sim.run_to(CYCLE_S + 0.5)
    z = band.slerp_at(e.prior(SEED), tap_z(rhythm_taps()), 0.5)
    assert np.allclose(d.current.z, z, atol=1e-6)
    assert d.current.pattern.equals(TapEngine().sample(z=z, temperature=TEMP, seed=SEED))


def test_a_follow_takes_no_seed_so_later_requests_keep_theirs():
    d, f, sim, port = make(amount=1.0)
    play(port, 0.0)
    sim.run_to(CYCLE_S + 0.5)
    assert "follow" in d.current.label
    d.request("new")
    assert d.wait_decoded(5.0)
    sim.run_to(2 * CYCLE_S + 0.5)
    assert d.current.seed == SEED + 1


def test_any_channel_counts_and_velocity_too():
    d, f, sim, port = make()
    port.push([0x95, 50, 30], 4 * STEP_S)
    port.push([0x9F, 51, 127], 8 * STEP_S)
    port.push([0xB0, 20, 127], 9 * STEP_S)  # a CC is not a note
    sim.run_to(3 * BAR_S + 0.01)
    assert np.flatnonzero(f.heard[:, 0]).tolist() == [4, 8]
    assert f.heard[4, 1] == pytest.approx(30 / 127, abs=0.01) and f.heard[8, 1] == pytest.approx(1.0)


def test_start_forgets_what_was_heard_before_it():
    d, f, sim, port = make()
    play(port, 0.0, bars=(0,))
    sim.run_to(BAR_S + 0.1)
    from performer.clock import START, Transport

    f.transport(Transport(START, 0, sim.now))
    f.check(sim.now)
    assert f._onsets == []


def test_the_follow_decode_never_delays_the_cycle():
    hold = threading.Event()
    e = TapEngine()
    d = Director(e, seed=SEED, temperature=TEMP, follow=1.0)
    d.start()
    try:
        first = d.pattern_for(0)
        e.hold = hold  # every decode from now on waits: "not done yet"
        d.request("follow", rhythm_taps())
        assert d.pattern_for(1) is first  # returns at once with the playing groove
        assert d.late == 1
        hold.set()
        assert d.wait_decoded(5.0)
        assert d.pattern_for(2).equals(TapEngine().sample(z=tap_z(rhythm_taps()), temperature=TEMP, seed=SEED))
    finally:
        hold.set()
        d.close()


# --- how often the follower reads the playhead ------------------------------------------------------


class _Quiet:
    """A director that is never asked for anything here (silence asks for nothing)."""

    def follow_amount(self):
        return 1.0


class EveryPoll(Follower):
    """The follower as it was: the playhead read at every poll (the reference)."""

    def check(self, now):
        super().check(now)
        self._due = float("-inf")


def _polls(clock, feed, t_end, followers, poll=0.002):
    """Drain every follower every ``poll`` s; ``feed(t)`` gives the clock what arrived by t.
    -> per follower, [(poll time, cycle)] of each bar-4 line acted on."""
    seen = [[] for _ in followers]
    t = 0.0
    while t < t_end:
        feed(t)
        for f, got in zip(followers, seen, strict=True):
            before = f._last_trigger
            f.drain(t)
            if f._last_trigger != before and before is not None:
                got.append((round(t, 6), f._last_trigger))
        t += poll
    return seen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bar_4_line_is_seen_at_the_same_poll_as_by_reading_the_playhead_every_poll(seed):
    # MIDI clock delivered per JACK period (128 frames at 48 kHz): 120 BPM, then the fastest
    # tempo (MAX_BPM), then 60 BPM, then random jumps of tempo (refits of the tick line)
    import random

    from performer.clock import MAX_BPM

    rng = random.Random(seed)
    c = MidiClock()
    c.feed(("start",), 0.0)
    ticks, t, period = [], 0.0, 128 / 48000
    for n in range(3000):
        ticks.append(t // period * period)
        bpm = 120.0 if n < 500 else MAX_BPM if n < 1400 else 60.0 if n < 1700 else rng.uniform(30.0, MAX_BPM)
        t += bpm_to_period(bpm)
    fed = [0]

    def feed(now):
        while fed[0] < len(ticks) and ticks[fed[0]] <= now:
            c.feed(("clock",), ticks[fed[0]])
            fed[0] += 1

    new, ref = Follower(_Quiet(), c), EveryPoll(_Quiet(), c)
    polls = int(ticks[-1] / 0.002)
    got_new, got_ref = _polls(c, feed, ticks[-1], [new, ref])
    assert len(got_ref) >= 4 and got_new == got_ref
    assert new.looks * 10 < ref.looks and ref.looks > 0.9 * polls  # a tenth of the reads, or fewer


def test_a_playhead_that_jumps_ahead_is_seen_within_check_s():
    from performer.follow import CHECK_S, TRIGGER_TICK

    class Jumpy:  # 120 BPM, and 300 clocks ahead from 1 s on (a Link timeline realigned)
        running = True

        def position(self, now):
            return now / bpm_to_period(BPM) + (300.0 if now >= 1.0 else 0.0)

    f = Follower(_Quiet(), Jumpy())
    (t, k), = _polls(None, lambda t: None, 2.0, [f])[0]
    assert k == 0 and Jumpy().position(1.0) > TRIGGER_TICK  # the jump passed cycle 0's bar-4 line
    assert 1.0 <= t <= 1.0 + CHECK_S + 0.002


# --- the follower on an Ableton Link clock ---------------------------------------------------------
#
# The session is simulated (tests/live_fakes.SimSession) on a host clock 0.25 s (half a beat at
# 120 BPM, two steps) away from the performer's, as CLOCK_MONOTONIC_RAW is from perf_counter: a
# note placed by mixing the two clocks would land two steps off.


def make_link(amount=1.0, beat0=0.0, start_delay=0.0):
    """Director, follower, sim, player port, session: a LinkClock on a session at ``beat0`` at time 0."""
    d = Director(TapEngine(), seed=SEED, temperature=TEMP, follow=amount)
    d.start()
    session = SimSession(BPM, beat0=beat0, host0_us=HOST_OFFSET_S * 1e6)
    clock = LinkClock(session, HostBridge(perf=lambda: 0.0, host_us=lambda: HOST_OFFSET_S * 1e6),
                      start_delay=start_delay)
    f = Follower(d, clock)
    sim = FollowSim(d, clock, f)
    clock.bridge = HostBridge(perf=lambda: sim.now, host_us=lambda: (sim.now + HOST_OFFSET_S) * 1e6)
    clock.start(0.0)
    return d, f, sim, MemoryInput(f.inbox), session


def beat_time(session, beat: float) -> float:
    """Performer time of a session beat (what a player in time with the session plays at)."""
    return session.host_at(beat) / 1e6 - HOST_OFFSET_S


def test_follow_on_a_link_clock_hears_what_it_hears_on_the_internal_clock():
    d, f, sim, port, session = make_link(amount=1.0)
    play(port, 0.0, late=0.2)  # session beat 0 is performer time 0 here: the same note times
    sim.run_to(3 * BAR_S + 0.01)
    assert f.requests == 1 and f.heard_cycle == 1
    want = rhythm_taps()
    assert np.array_equal(f.heard[:, 0], want[:, 0])
    assert np.allclose(f.heard[want[:, 0] > 0, 2], 0.2, atol=1e-4)
    sim.run_to(CYCLE_S + 0.5)
    heard_groove = TapEngine().sample(z=tap_z(want), temperature=TEMP, seed=SEED)
    assert sim.sched.patterns[1].equals(heard_groove) and "follow 100%" in d.current.label
    d.close()


def test_follow_on_a_link_session_joined_mid_song_uses_the_sessions_bars():
    # the session is at beat 37.3 when the performer joins: it starts on clock ceil(24 * 37.3) =
    # 896 (cycle 2, bar 2), and the next bar-4 line is cycle 2's (clock 768 + 288 = 1056)
    d, f, sim, port, session = make_link(beat0=37.3)
    for beat, vel in ((38.0, 60), (40.0, 127), (41.5, 90), (43.75, 30)):  # bars 2 and 3 of cycle 2
        port.push([0x90, 60, vel], beat_time(session, beat))
    port.push([0x90, 61, 100], beat_time(session, 44.0) + 0.01)  # bar 4: heard next cycle, not now
    sim.run_to(beat_time(session, 44.0) - 0.01)
    assert f.requests == 0
    sim.run_to(beat_time(session, 44.0) + 0.01)
    assert f.requests == 1 and f.heard_cycle == 3
    # window: clocks 672..1055 = global steps 112..175, laid out by their place in the cycle
    steps = [int(b * 4) % drums.STEPS for b in (38.0, 40.0, 41.5, 43.75)]
    assert np.flatnonzero(f.heard[:, 0]).tolist() == sorted(steps) == [24, 32, 38, 47]
    assert f.heard[sorted(steps), 1] == pytest.approx([drums.velocity_from_midi(v) for v in (60, 127, 90, 30)])
    assert np.allclose(f.heard[sorted(steps), 2], 0.0, atol=1e-3)  # on the session's grid: no offset
    d.close()


def test_follow_on_a_link_clock_places_notes_on_the_new_tempo_after_a_peers_change():
    d, f, sim, port, session = make_link()
    sim.run_to(1.0)
    session.change_tempo(150.0, (1.0 + HOST_OFFSET_S) * 1e6)  # a peer, at beat 2 (step 8)
    for beat in (3.0, 4.0, 6.5, 11.0):  # played on the session's grid at 150 BPM
        port.push([0x90, 60, 100], beat_time(session, beat))
    sim.run_to(beat_time(session, 12.0) + 0.01)
    assert f.requests == 1
    assert np.flatnonzero(f.heard[:, 0]).tolist() == [12, 16, 26, 44]
    assert np.abs(f.heard[f.heard[:, 0] > 0, 2]).max() < 0.05  # within 1/20 step of the grid
    d.close()


# --- the follow amount: a key and a CC -------------------------------------------------------------


def test_the_key_steps_the_amount_and_wraps_to_0_and_the_cc_sets_it():
    e = TapEngine()
    d = Director(e, seed=SEED, temperature=TEMP, follow=0.5)
    d.start()
    try:
        c = Controller(d)
        key = ACTIONS["follow_up"].keys[0]
        seen = []
        for _ in range(4):
            c.key(key)
            seen.append(d.status()["next_follow"])
        assert seen == [0.75, 1.0, 0.0, 0.25]
        c.midi(("cc", 0, ACTIONS["follow"].cc, 127))
        assert d.follow_amount() == 1.0
        calls, playing = len(e.calls), d.pattern_for(0)
        assert d.wait_decoded(5.0)
        assert d.pattern_for(1) is playing and len(e.calls) == calls  # a knob alone re-decodes nothing
        assert d.current.follow == 1.0
    finally:
        d.close()


def test_the_view_shows_the_amount_and_what_was_heard():
    d, f, sim, port = make(amount=0.5)
    play(port, 0.0, bars=(0,), steps=(0, 4))
    sim.run_to(3 * BAR_S + 0.01)
    d.request("set_follow", 0.25)
    lines = render({"director": d.status(), "follow": f.status(), "transport": "playing"})
    text = "\n".join(lines)
    assert "follow 50% (next cycle: 25%)" in text and "heard for cycle 2: 2 onsets" in text
    strip = next(ln for ln in lines if ln.startswith("heard"))
    assert strip.split()[1].startswith("X...X...-...-...|-...")
    silent = render({"director": d.status(), "follow": {"heard": None, "heard_cycle": None, "port": "p"}})
    assert any("nothing heard yet" in ln for ln in silent)
    d.close()


# --- the app wiring (in process, memory ports, real threads) ---------------------------------------


def test_the_app_follows_a_player_on_its_follow_input():
    from performer.app import LiveApp, LiveOptions
    from performer.ports import MemoryOutput
    from tests.live_fakes import LogSink, wait_until

    inbox, follow_inbox = queue.SimpleQueue(), queue.SimpleQueue()
    player = MemoryInput(follow_inbox, "player")
    app = LiveApp(LiveOptions(bpm=400, headless=True, seed=SEED, follow="", follow_amount=1.0, temperature=TEMP),
                  engine=TapEngine(), output=MemoryOutput("out"), input_port=MemoryInput(inbox), inbox=inbox,
                  follow_port=player, follow_inbox=follow_inbox, sinks=[LogSink()])
    done = threading.Event()

    def ready(info):
        assert info["follow"] == "player"
        clock = app.clock
        assert wait_until(lambda: clock.time_at(0) is not None, 5.0)
        for s in (0, 4, 8, 12, 16, 20):  # bar 1 and 2 of cycle 1, before bar 4 is reached
            player.push([0x90, 60, 100], clock.time_at(s * TICKS_PER_STEP))
        done.set()

    th = threading.Thread(target=app.run, kwargs={"on_ready": ready}, daemon=True)
    th.start()
    try:
        assert done.wait(10.0)
        assert wait_until(lambda: "follow" in app.director.current.label, 15.0), app.director.current.label
        st = app.status()["follow"]
        assert np.flatnonzero(st["heard"][:, 0]).tolist() == [0, 4, 8, 12, 16, 20]
    finally:
        app.request_stop()
        th.join(10.0)


def test_the_app_follows_a_player_on_a_link_clock(monkeypatch):
    """The app's wiring with a LinkClock on the real clocks: the session's host time is
    CLOCK_MONOTONIC_RAW (as Link's is), the performer's perf_counter; only the session itself
    is simulated (no network: a real peer runs only in a private namespace, test_link_real)."""
    import time

    from performer import app as app_mod
    from performer.app import LiveApp, LiveOptions
    from performer.ports import MemoryOutput
    from tests.live_fakes import LogSink, wait_until

    raw_us = lambda: time.clock_gettime(time.CLOCK_MONOTONIC_RAW) * 1e6  # noqa: E731
    session = SimSession(400.0, beat0=0.0, host0_us=raw_us())
    clocks = []

    def link_clock(opts, clock_input=None):
        clocks.append(LinkClock(session, HostBridge(time.perf_counter, raw_us)))
        return clocks[-1]

    monkeypatch.setattr(app_mod, "open_clock", link_clock)
    inbox, follow_inbox = queue.SimpleQueue(), queue.SimpleQueue()
    player = MemoryInput(follow_inbox, "player")
    app = LiveApp(LiveOptions(bpm=400, headless=True, seed=SEED, follow="", follow_amount=1.0, temperature=TEMP),
                  engine=TapEngine(), output=MemoryOutput("out"), input_port=MemoryInput(inbox), inbox=inbox,
                  follow_port=player, follow_inbox=follow_inbox, sinks=[LogSink()])
    done = threading.Event()
    cycle = []

    def ready(info):
        clock = app.clock
        assert wait_until(lambda: clock.running and clock.time_at(0) is not None, 5.0)
        # bars 1 and 2 of the next whole cycle, played on the session's grid
        k = int(clock.position(time.perf_counter())) // TICKS_PER_CYCLE + 1
        cycle.append(k)
        for s in (0, 4, 8, 12, 16, 20):
            player.push([0x90, 60, 100], clock.time_at(k * TICKS_PER_CYCLE + s * TICKS_PER_STEP))
        done.set()

    th = threading.Thread(target=app.run, kwargs={"on_ready": ready}, daemon=True)
    th.start()
    try:
        assert done.wait(10.0)
        assert clocks and app.clock is clocks[0]
        assert wait_until(lambda: app.follower.heard_cycle == cycle[0] + 1, 30.0), app.follower.status()
        st = app.status()["follow"]
        assert np.flatnonzero(st["heard"][:, 0]).tolist() == [0, 4, 8, 12, 16, 20]
        assert np.abs(st["heard"][st["heard"][:, 0] > 0, 2]).max() < 0.05  # on the session's grid
        assert wait_until(lambda: "follow" in app.director.current.label, 15.0), app.director.current.label
    finally:
        app.request_stop()
        th.join(10.0)


# --- --humanize and --groove FILE -----------------------------------------------------------------


def _clip(path, bars=4, numerator=4, hits=((0, 36), (4, 38), (8, 36), (12, 38)), channel=9):
    mid = mido.MidiFile(ticks_per_beat=96)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=4))
    evs = []
    for b in range(bars):
        for s, pitch in hits:
            t = (b * 16 + s) * 24
            evs += [(t, mido.Message("note_on", note=pitch, velocity=100, channel=channel)),
                    (t + 12, mido.Message("note_off", note=pitch, velocity=0, channel=channel))]
    last = 0
    for t, m in sorted(evs, key=lambda e: e[0]):
        tr.append(m.copy(time=t - last))
        last = t
    mid.save(str(path))
    return str(path)


def test_load_groove_loops_a_short_clip_and_says_so(tmp_path):
    p, note = band.load_groove(_clip(tmp_path / "two.mid", bars=2))
    assert note == "2-bar clip looped to 4 bars"
    assert p.steps == drums.STEPS and int(p.hits.sum()) == 16
    p4, note4 = band.load_groove(_clip(tmp_path / "four.mid"))
    assert note4 == "" and p4.equals(p)


def test_load_groove_pads_a_clip_shorter_than_a_bar_and_says_so(tmp_path):
    half = tmp_path / "half.mid"
    mid = mido.MidiFile(ticks_per_beat=96)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr += [mido.Message("note_on", note=36, velocity=100, channel=9, time=0),
           mido.Message("note_off", note=36, velocity=0, channel=9, time=12),
           mido.Message("note_on", note=38, velocity=100, channel=9, time=84),  # beat 2
           mido.Message("note_off", note=38, velocity=0, channel=9, time=12)]
    mid.save(str(half))
    p, note = band.load_groove(str(half))
    assert note == "clip shorter than a bar: padded to one bar; 1-bar clip looped to 4 bars"
    bar = np.zeros((drums.STEPS_PER_BAR, drums.NUM_VOICES), bool)
    bar[0, 0] = bar[4, 1] = True  # the half bar, then rest to the bar line
    assert np.array_equal(p.hits, np.tile(bar, (drums.BARS, 1)))
    tr.append(mido.MetaMessage("end_of_track", time=4 * 96 - 96 - 12))  # the clip ends at the bar line
    mid.save(str(half))
    p1, full = band.load_groove(str(half))  # a whole bar: looped, not padded
    assert full == "1-bar clip looped to 4 bars" and p1.equals(p)


@pytest.mark.parametrize("kind,needle", [("waltz", "not 4/4"), ("bass", "drum channel"), ("junk", "unreadable")])
def test_bad_groove_files_are_one_clear_error(tmp_path, kind, needle):
    if kind == "waltz":
        path = _clip(tmp_path / "w.mid", numerator=3)
    elif kind == "bass":
        path = _clip(tmp_path / "b.mid", channel=0)
    else:
        path = str(tmp_path / "j.mid")
        (tmp_path / "j.mid").write_bytes(b"MThd nonsense")
    with pytest.raises(band.BandError, match=needle):
        band.load_groove(path)


def test_bad_groove_file_stops_the_cli_before_any_port_opens(tmp_path):
    # no MIDI system is needed to get this far: the clip is checked before the model and the ports
    proc = run_cli("--groove", _clip(tmp_path / "w.mid", numerator=3), "--headless", "--bpm", "120")
    assert_one_line_error(proc, "--groove", "not 4/4")


@pytest.mark.parametrize("args,needle", [(["--follow-amount", "1.5"], "--follow-amount"),
                                         (["--quantize", "--groove"], "not allowed")])
def test_bad_follow_arguments_are_one_line(args, needle):
    assert_one_line_error(run_cli(*args), needle)


@pytest.fixture(scope="module")
def engine():
    from performer.engine import Engine

    return Engine.load()


def test_a_user_groove_plays_as_loaded_and_humanize_gives_it_the_models_dynamics(tmp_path, engine):
    clip, _ = band.load_groove(_clip(tmp_path / "beat.mid"))
    plain = Director(engine, seed=3, groove=clip, groove_label="groove beat.mid")
    assert plain.pattern_for(0).equals(clip) and plain.current.label == "groove beat.mid"
    human = Director(engine, seed=3, groove=clip, humanize=True)
    p = human.pattern_for(0)
    assert np.array_equal(p.hits, clip.hits)  # every hit kept, nothing added
    assert p.equals(band.humanize_pattern(engine, clip))
    assert not np.allclose(p.velocity[p.hits], clip.velocity[clip.hits])  # no longer flat 100s


def test_humanize_gives_a_locks_result_the_humanizers_dynamics(engine):
    d = Director(engine, seed=3, temperature=0.5, humanize=True)
    d.start()
    try:
        before = d.pattern_for(0)
        keep = np.zeros(drums.NUM_VOICES, bool)
        keep[:2] = True  # kick and snare stay
        d.request("lock", keep)
        assert d.wait_decoded(5.0)
        after = d.pattern_for(1)
        locked = engine.sample(z=d.current.z, temperature=0.5, seed=d.current.seed, lock=(before, keep))
        assert np.array_equal(after.hits, locked.hits)
        assert np.array_equal(after.hits[:, :2], before.hits[:, :2])
        assert after.equals(band.humanize_pattern(engine, locked))
    finally:
        d.close()


def test_the_shipped_model_follows_a_played_rhythm(engine):
    """The real tap encoder: kick and snare land on the played steps more often when following."""
    taps = np.zeros((drums.STEPS, 3), np.float32)
    played = [s for b in range(4) for s in (b * 16, b * 16 + 6, b * 16 + 10)]  # a 3-3-2-ish figure
    taps[played] = (1.0, 0.8, 0.0)
    share = {}
    for amount in (0.0, 1.0):
        hits = 0
        on = 0
        for seed in range(8):
            d = Director(engine, seed=seed, temperature=0.5, follow=amount)
            d.start()
            try:
                d.request("follow", taps)
                assert d.wait_decoded(5.0)
                p = d.pattern_for(1)
            finally:
                d.close()
            ks = p.hits[:, :2].any(1)
            hits += int(ks.sum())
            on += int(ks[played].sum())
        share[amount] = on / max(hits, 1)
    assert share[1.0] > share[0.0] + 0.1, share



def test_the_follow_input_is_matched_like_the_clock_port_or_created_virtual(monkeypatch):
    from performer import ports
    from tests.live_fakes import FakeRtMidi

    avail = ["Keys MIDI 1", "Synth In", "drum-performer-clock:Drum Performer Clock"]
    made = []

    def fake_open(kind, api="auto", client=None):
        made.append((kind, client))
        return FakeRtMidi(avail), "alsa"

    monkeypatch.setattr(ports, "open_midi", fake_open)
    keys = ports.open_follow_input(queue.SimpleQueue(), "keys", "alsa")
    assert keys.name == "Keys MIDI 1" and keys.polled and not keys.virtual
    assert made[-1] == ("in", ports.FOLLOW_CLIENT_NAME)
    virtual = ports.open_follow_input(queue.SimpleQueue(), None, "alsa")
    assert virtual.virtual and virtual.name == "Drum Performer Follow"
    with pytest.raises(ports.PortError, match="no MIDI input port matches 'drum performer'"):
        ports.open_follow_input(queue.SimpleQueue(), "drum performer", "alsa")  # never our own ports
