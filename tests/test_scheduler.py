"""The step scheduler in simulated time: what is sent, and when."""

from __future__ import annotations

import collections
import math
import queue
import time

import numpy as np
import pytest

from model import drums
from performer.clock import (
    CONTINUE,
    SPP,
    START,
    STOP,
    TICKS_PER_STEP,
    InternalClock,
    MidiClock,
    bpm_to_period,
)
from performer.scheduler import Player, Scheduler, compile_pattern
from tests.live_fakes import (
    PANIC_TAIL,
    FakeEngine,
    LogSink,
    Q,
    Sent,
    StaticSource,
    balanced,
    grid_time,
    internal_sim,
    midi_sim,
    quantized,
    simple_pattern,
)

BPM = 120.0
STEP_S = 60.0 / BPM / 4


def onsets(sent: Sent):
    """(time, pitch, velocity) of every note-on."""
    return [(t, m[1], m[2]) for t, m, _ in sent.note_ons()]


def test_quantize_plays_the_pattern_on_the_grid():
    pat = FakeEngine().sample(seed=3)
    sim, clock = internal_sim(StaticSource(pat), BPM, quantize=True)
    sim.run_until(grid_time(0, BPM, 64) - 0.01)
    got = sorted((round(t / STEP_S), p) for t, p, _ in onsets(sim.sent))
    want = sorted((t, drums.OUTPUT_PITCHES[v]) for t, v in zip(*np.nonzero(pat.hits), strict=True))
    assert got == want
    for t, _, _ in onsets(sim.sent):
        assert abs(t - round(t / STEP_S) * STEP_S) < 1e-9  # lead 0: exactly on the grid tick
    vel = {(int(s), drums.OUTPUT_PITCHES[v]): drums.velocity_to_midi(pat.velocity[s, v]) for s, v in zip(*np.nonzero(pat.hits), strict=True)}
    for t, p, v in onsets(sim.sent):
        assert vel[(round(t / STEP_S), p)] == v


def test_groove_mode_plays_offsets_and_early_notes_go_before_their_tick():
    pat = simple_pattern({0: [0], 4: [1], 8: [0], 16: [1]}, offsets={(4, 1): -0.25, (8, 0): 0.3, (16, 1): -0.5})
    sim, _ = internal_sim(StaticSource(pat), BPM)
    sim.run_until(grid_time(0, BPM, 20))
    got = [(round(t, 6), p) for t, p, _ in onsets(sim.sent)]
    assert got == [
        (0.0, 36),
        (round(grid_time(0, BPM, 3.75), 6), 38),
        (round(grid_time(0, BPM, 8.3), 6), 36),
        (round(grid_time(0, BPM, 15.5), 6), 38),
    ]


def test_early_note_of_the_next_cycle_goes_before_the_boundary():
    a = simple_pattern({0: [0]})
    b = simple_pattern({0: [1]}, offsets={(0, 1): -0.4})
    src = StaticSource(a, b)
    sim, _ = internal_sim(src, BPM)
    sim.run_until(grid_time(0, BPM, 64))
    t_snare = [t for t, p, _ in onsets(sim.sent) if p == 38]
    assert t_snare == [pytest.approx(grid_time(0, BPM, 63.6))]
    assert src.asked == [0, 1]


def test_swing_delays_every_second_sixteenth():
    pat = simple_pattern({0: [2], 1: [2], 2: [2], 3: [2]})
    sim, _ = internal_sim(StaticSource(pat), BPM, quantize=True, swing=1 / 3)
    sim.run_until(grid_time(0, BPM, 4))
    ts = [t for t, _, _ in onsets(sim.sent)]
    assert ts == pytest.approx([grid_time(0, BPM, s) for s in (0, 1 + 1 / 3, 2, 3 + 1 / 3)])


def test_every_note_on_gets_a_note_off_and_retrigger_releases_first():
    # the same voice twice within the gate (offsets pull them together)
    pat = simple_pattern({4: [1], 5: [1]}, offsets={(4, 1): 0.45, (5, 1): -0.45})
    sim, _ = internal_sim(StaticSource(pat), BPM)
    sim.run_until(grid_time(0, BPM, 10))
    seq = [(m[0] & 0xF0, m[1]) for _, m, _ in sim.sent.log]
    assert seq == [(0x90, 38), (0x80, 38), (0x90, 38), (0x80, 38)]
    ons, offs = sim.sent.note_ons(), sim.sent.note_offs()
    assert offs[-1][0] - ons[-1][0] == pytest.approx(0.5 * STEP_S)  # half-a-16th gate


def test_mutes_land_on_the_next_bar_line():
    pat = simple_pattern({s: [0] for s in range(0, 64, 4)})
    src = StaticSource(pat)
    sim, _ = internal_sim(src, BPM, quantize=True)
    sim.run_until(grid_time(0, BPM, 5))  # in bar 1
    src.mute[0] = True
    sim.run_until(grid_time(0, BPM, 40))
    steps = [round(t / STEP_S) for t, _, _ in onsets(sim.sent)]
    assert steps == [0, 4, 8, 12]  # bar 1 plays out, then silence from bar 2


def test_a_bar_change_plays_from_its_bar_line_to_the_end_of_that_cycle_only():
    """PatternSource.pattern_at_bar: what a fill in bar 4 uses."""
    groove = simple_pattern({s: [0] for s in range(0, 64, 4)})  # kick on every beat
    fill = simple_pattern({s: [1] for s in range(64)})  # snare on every 16th

    class FillInBar4(StaticSource):
        def pattern_at_bar(self, cycle, bar):
            return fill if (cycle, bar) == (0, 3) else None

    sim, _ = internal_sim(FillInBar4(groove), BPM, quantize=True)
    sim.run_until(grid_time(0, BPM, 64 + 16))
    played = [(round(t / STEP_S), drums.OUTPUT_PITCHES.index(p)) for t, p, _ in onsets(sim.sent)]
    want = [(s, 0) for s in range(0, 48, 4)] + [(s, 1) for s in range(48, 64)] + [(s, 0) for s in range(64, 81, 4)]
    assert played == want


def test_stop_releases_everything_then_cc123():
    pat = simple_pattern({0: [0, 1, 2]})
    sim, clock = internal_sim(StaticSource(pat), BPM)
    sim.run_until(0.001)
    assert len(sim.sent.note_ons()) == 3
    clock.stop(0.002)
    sim.run_until(0.003)
    tail = [m for _, m, _ in sim.sent.log[3:]]
    assert sorted(m[1] for m in tail[:3]) == [36, 38, 42] and all(m[0] == 0x89 for m in tail[:3])
    assert tail[3] == [0xB9, 123, 0]
    assert not sim.sched.playing


def test_panic_on_exit_adds_all_sound_off():
    sched = Scheduler(StaticSource(simple_pattern({0: [0]})))
    sent = Sent(time.perf_counter)
    sched.panic(sent, exiting=True)
    assert [m for _, m, _ in sent.log] == [[0xB9, 123, 0], [0xB9, 120, 0]]


def test_channel_option_puts_notes_and_their_offs_on_that_channel():
    sim, _ = internal_sim(StaticSource(simple_pattern({0: [0]})), BPM, channel=0)
    sim.run_until(0.2)
    assert {m[0] for _, m, _ in sim.sent.log} == {0x90, 0x80}


# --- following MIDI clock --------------------------------------------------------------


def test_start_mid_cycle_after_spp_plays_the_right_step():
    pat = simple_pattern({s: [0] for s in range(64)})  # a kick on every step
    p = bpm_to_period(BPM)
    sim, clock = midi_sim(StaticSource(pat), quantize=True)
    sim.feed_at(0.0, (SPP, 64 + 37))  # cycle 1, step 37
    sim.feed_at(0.01, (CONTINUE,))
    sim.ticks(0.02, p, 6 * 8)
    sim.run_until(0.02 + 6 * 8 * p)
    first = sim.sent.note_ons()[0]
    assert first[2] == (64 + 37) * TICKS_PER_STEP
    assert first[0] == pytest.approx(0.02)
    assert [pos for _, _, pos in sim.sent.note_ons()][:3] == [(101 + k) * 6 for k in range(3)]


def test_notes_go_out_on_the_predicted_tick_not_on_arrival():
    """Stamps quantised to JACK periods; ticks arrive late: prediction sends them on time."""
    pat = simple_pattern({s: [2] for s in range(64)})
    p = bpm_to_period(BPM)
    q = 128 / 48000
    sim, clock = midi_sim(StaticSource(pat), quantize=True)
    sim.feed_at(0.0, (START,))
    t0 = 0.001
    for k in range(400):
        true = t0 + k * p
        arrival = math.floor(true / q) * q + q  # delivered one period later than its stamp
        sim.feed_at(arrival, ("clock",), stamp=math.floor(true / q) * q)
    sim.run_until(t0 + 400 * p)
    errs = []
    for t, _m, pos in sim.sent.note_ons():
        true = t0 + pos * p
        if pos >= 96:  # after the first bar (the fit has settled)
            errs.append(t - true)
    errs = np.array(errs)
    # the stamps sit on average half a period before the truth, so predicted sends do too;
    # a note is never held back until its tick's (late) arrival
    assert np.all(errs < 0.0)
    assert np.all(errs > -q - 0.0005)
    assert abs(np.median(errs) + q / 2) < 0.0005


def test_stop_from_the_master_silences_at_once():
    pat = simple_pattern({s: [0, 2] for s in range(64)})
    p = bpm_to_period(BPM)
    sim, clock = midi_sim(StaticSource(pat), quantize=True)
    sim.feed_at(0.0, (START,))
    sim.ticks(0.0, p, 50)
    sim.feed_at(50 * p - p / 2, (STOP,))
    sim.run_until(3.0)
    last_on = max(t for t, _, _ in sim.sent.note_ons())
    assert last_on < 50 * p
    log = sim.sent.log
    i = max(i for i, (_, m, _) in enumerate(log) if m == [0xB9, 123, 0])
    assert log[i][0] == pytest.approx(50 * p - p / 2)
    assert balanced(m for _, m, _ in log)  # nothing sounding after the stop
    assert sim.transports[-1].kind == STOP


def test_no_prediction_without_tempo_waits_for_the_tick():
    pat = simple_pattern({0: [0], 1: [1]}, offsets={(1, 1): 0.2})
    p = bpm_to_period(BPM)
    sim, clock = midi_sim(StaticSource(pat))
    sim.feed_at(0.0, (START,))
    sim.feed_at(0.001, ("clock",))
    sim.run_until(0.001 + p / 2)
    assert [m[1] for _, m, _ in sim.sent.note_ons()] == [36]  # on the first tick, not before


def test_dropout_freewheels_and_stops_cleanly():
    pat = simple_pattern({s: [2] for s in range(64)})
    p = bpm_to_period(BPM)
    sim, clock = midi_sim(StaticSource(pat), quantize=True)
    sim.feed_at(0.0, (START,))
    sim.ticks(0.0, p, 48)  # then the cable is pulled
    sim.run_until(3.0)
    steps = sorted({pos // 6 for _, _, pos in sim.sent.note_ons()})
    # the second half-bar was clocked, the freewheel plays on for at most a bar
    assert steps[-1] <= 8 + 16 and steps[-1] >= 8 + 12
    assert sim.transports[-1].reason == "dropout"
    assert sim.sent.ccs(123)


# --- a clock that stalls or comes in bursts: positions follow the count of clocks ------------

def _follow(ticks: list[tuple[float, float]], until: float, voices=(0, 2)):
    """Play a kick and a hi-hat on every step, quantized, on the given (arrival, stamp)
    of each clock after a Start; return the sim and every note-on as (time, pitch, pos)."""
    pat = simple_pattern({s: list(voices) for s in range(64)})
    sim, _ = midi_sim(StaticSource(pat), quantize=True)
    sim.feed_at(0.0, (START,))
    for arrival, stamp in ticks:
        sim.feed_at(arrival, ("clock",), stamp=stamp)
    sim.run_until(until)
    return sim, [(t, m[1], pos) for t, m, pos in sim.sent.note_ons()]


def _once_in_order(ons) -> None:
    """No (position, pitch) played twice, and the song position never went back."""
    twice = {k: n for k, n in collections.Counter((pos, pitch) for _, pitch, pos in ons).items() if n > 1}
    assert not twice, f"played twice: {twice}"
    positions = [pos for _, _, pos in ons]
    assert positions == sorted(positions), "a note for an earlier position after a later one"


@pytest.mark.parametrize("stall", [0.098, 0.35])
def test_a_stalled_clock_is_followed_again_and_nothing_is_played_twice(stall):
    """The clock stops for ``stall`` s mid-bar and resumes, no clock lost (the master
    stalled too). A short stall is waited out; a long one freewheels, and what the
    freewheel played is not played again when the clocks catch up. From a beat after
    the clocks resume, every note is on the master's tick again."""
    p = bpm_to_period(BPM)
    stalled_after = 50

    def true(k):
        return 0.0013 + k * p + (stall if k > stalled_after else 0.0)

    n = 240
    sim, ons = _follow([(quantized(true(k)) + Q, quantized(true(k))) for k in range(n)], true(n - 1) + 0.001)
    _once_in_order(ons)
    assert not any(e.kind == STOP for e in sim.transports), "the stall was taken for a dropout"
    steps = {pos // TICKS_PER_STEP for _, _, pos in ons}
    last = (n - 1) // TICKS_PER_STEP
    settled = [(t, pos) for t, _, pos in ons if pos >= stalled_after + 1 + 24]
    assert settled
    errs = [t - true(pos) for t, pos in settled]
    assert max(abs(e) for e in errs) < Q + 0.0005, [round(1000 * e, 2) for e in errs[:20]]
    if stall < 0.2:
        # waited out: every step played, in time with the master's count
        assert steps == set(range(last + 1))
    else:
        # the freewheel went on at the last tempo: steps it dropped (overdue when it began) or
        # played ahead are not played again, and every step after its reach is played
        during = [pos for t, _, pos in ons if true(stalled_after) < t < true(stalled_after + 1)]
        assert during and sim.sched.dropped, "the long stall was not freewheeled through"
        reach = stalled_after + stall / p
        assert steps >= set(range(math.ceil(reach / TICKS_PER_STEP) + 1, last + 1))
        assert steps >= set(range(stalled_after // TICKS_PER_STEP + 1))


@pytest.mark.parametrize("stamped", ["late", "early"])
def test_a_burst_of_clocks_with_one_timestamp_plays_every_step_once_on_time(stamped):
    """Clocks 61..63 (and in a second burst 157..159) are held up and delivered together
    with one timestamp, as rtmidi's JACK input does while a SysEx is open. Every step is
    played exactly once, and every note whose tick was not held up is on time."""
    p = bpm_to_period(BPM)

    def true(k):
        return 0.0011 + k * p

    bursts = [range(61, 64), range(157, 160)]
    ticks = []
    for k in range(240):
        b = next((b for b in bursts if k in b), None)
        if b is None:
            ticks.append((quantized(true(k)) + Q, quantized(true(k))))
            continue
        t0 = true(b.start - 1)
        stamp = quantized(t0 + 0.075) if stamped == "late" else quantized(t0 + 0.003)
        ticks.append((quantized(t0 + 0.075) + Q, stamp))
    sim, ons = _follow(ticks, true(239) + 0.001)
    _once_in_order(ons)
    steps = {pos // TICKS_PER_STEP for _, _, pos in ons}
    assert steps == set(range(239 // TICKS_PER_STEP + 1))
    held = set().union(*bursts)
    errs = [(pos, round(1000 * (t - true(pos)), 2)) for t, _, pos in ons if pos not in held]
    bad = [e for e in errs if abs(e[1]) > 1000 * (Q + 0.0005)]
    assert not bad, bad


def test_compile_pattern_offsets_in_ticks():
    pat = simple_pattern({1: [0]}, offsets={(1, 0): -0.5})
    c = compile_pattern(pat, quantize=False, swing=0.5)
    assert c[1] == [(-3.0 + 3.0, 0, 36, drums.velocity_to_midi(0.8))]
    assert compile_pattern(pat, quantize=True, swing=0.0)[1][0][0] == 0.0


# --- the sender thread ---------------------------------------------------------------------


def test_player_thread_plays_each_arrived_step_once_and_panics_on_stop():
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    sched = Scheduler(src, quantize=True)
    clock = MidiClock()
    log = LogSink()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    player = Player(clock, sched, log.send, inbox)
    player.start()
    inbox.put((time.perf_counter(), None, [0xFA] + [0xF8] * 60))  # Start and song positions 0..59
    assert log.wait_notes(10)
    player.stop()
    player.join(2)
    assert not player.is_alive() and player.error is None
    assert [pos for _, pos in log.note_ons()] == [6.0 * k for k in range(10)]  # steps 0..9, once each
    assert log.messages()[-2:] == PANIC_TAIL


def test_player_internal_error_still_releases_every_note_and_panics():
    class Broken(StaticSource):
        def pattern_for(self, cycle):
            if cycle >= 1:
                raise RuntimeError("boom")
            return super().pattern_for(cycle)

    src = Broken(simple_pattern({s: [0, 1] for s in range(64)}))
    sched = Scheduler(src, quantize=True)
    from performer.clock import InternalClock

    clock = InternalClock(400.0, start_delay=0.0)
    sent = Sent(time.perf_counter)
    player = Player(clock, sched, sent)
    clock.start(time.perf_counter() - 380 * clock.tick)  # almost at the end of cycle 0
    player.start()
    player.join(3)
    assert isinstance(player.error, RuntimeError)
    msgs = [m for _, m, _ in sent.log]
    assert balanced(msgs) and msgs[-2:] == PANIC_TAIL


def test_player_polls_faster_while_a_start_or_continue_is_waited_for():
    """Stopped, or started and waiting for the first clock: the cued notes are a reaction to
    the input, so the port is polled at the short interval; once clocks run, at the normal one."""
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    clock = MidiClock()
    player = Player(clock, Scheduler(src, quantize=True), LogSink().send,
                    poll=list, poll_interval=0.002, cue_poll_interval=0.0005)
    t = 10.0
    for _ in range(30):  # a master streaming clocks while stopped
        t += 0.02
        clock.feed(("clock",), t)
    assert player.poll_cap(0.002, t) == 0.0005  # stopped
    clock.feed(("continue",), t + 0.001)
    assert player.poll_cap(0.002, t + 0.002) == 0.0005  # running, its first clock not yet here
    clock.feed(("clock",), t + 0.02)
    assert player.poll_cap(0.002, t + 0.021) == 0.002  # playing
    clock.feed(("stop",), t + 0.03)
    assert player.poll_cap(0.002, t + 0.031) == 0.0005
    internal = InternalClock(120.0, start_delay=0.0)
    player.clock = internal
    internal.start(t)
    assert player.poll_cap(0.002, t + 0.01) == 0.002  # an internal clock plays at once: nothing to await


def test_player_polls_just_after_each_input_cycle_where_the_port_says_when():
    """A port that moves input once a cycle (JACK) says when the next cycle's input is in: the
    sender sleeps exactly until then, stopped or playing (no fixed 0.5 / 2 ms interval),
    never beyond max_wait; a port that cannot say (None) is polled on the fixed intervals."""
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    clock = MidiClock()
    answer = {"t": None}
    asked = []

    def next_input(now, awaiting):
        asked.append(awaiting)
        return answer["t"]

    player = Player(clock, Scheduler(src, quantize=True), LogSink().send, poll=list, poll_interval=0.002,
                    cue_poll_interval=0.0005, max_wait=0.05, next_input=next_input)
    t = 10.0
    answer["t"] = t + 0.0023
    assert player.poll_wait(0.002, t) == pytest.approx(0.0023)  # stopped: no 0.5 ms polls
    clock.feed(("continue",), t)
    clock.feed(("clock",), t + 0.001)
    clock.feed(("clock",), t + 0.021)
    answer["t"] = t + 0.0252
    assert player.poll_wait(0.002, t + 0.022) == pytest.approx(0.0032)  # playing: no 2 ms polls
    assert asked == [True, False]  # awaiting a Start/Continue, then playing
    answer["t"] = t + 0.021  # a cycle that is late: poll at once, never a negative sleep
    assert player.poll_wait(0.002, t + 0.022) == 0.0
    answer["t"] = t + 1.0
    assert player.poll_wait(0.002, t + 0.022) == 0.05  # never beyond max_wait
    answer["t"] = None  # the server went away: the fixed intervals again
    assert player.poll_wait(0.002, t + 0.022) == 0.002
    clock.feed(("stop",), t + 0.03)
    assert player.poll_wait(0.002, t + 0.031) == 0.0005


def test_a_jack_input_is_polled_once_its_cycle_has_run():
    """RtMidiInput.next_input from the server's cycle position: early in a cycle, at its settle
    point (the cycle's input may not be in yet); then at half the period (a cycle whose clients
    ran late); after that, at the next cycle's settle point. Off JACK: no answer."""
    from types import SimpleNamespace

    from performer.ports import INPUT_SETTLE_S, RtMidiInput

    period = 0.004
    where = {}
    port = SimpleNamespace(_watch=SimpleNamespace(cycle_position=lambda: where.get("pos")))
    assert RtMidiInput.next_input(port, 5.0) is None  # no server answers
    where["pos"] = (INPUT_SETTLE_S, period - INPUT_SETTLE_S, period)
    playing = RtMidiInput.next_input(port, 5.0, awaiting=False)  # playing: once a cycle
    assert playing == pytest.approx(5.0 + period)
    where["pos"] = (0.0001, period - 0.0001, period)
    assert RtMidiInput.next_input(port, 5.0) == pytest.approx(5.0 + INPUT_SETTLE_S - 0.0001)
    where["pos"] = (INPUT_SETTLE_S, period - INPUT_SETTLE_S, period)
    assert RtMidiInput.next_input(port, 5.0) == pytest.approx(5.0 + period / 2 - INPUT_SETTLE_S)
    where["pos"] = (0.0025, period - 0.0025, period)
    assert RtMidiInput.next_input(port, 5.0) == pytest.approx(5.0 + period - 0.0025 + INPUT_SETTLE_S)
    where["pos"] = (period + 0.001, -0.001, period)  # the next cycle is overdue
    assert RtMidiInput.next_input(port, 5.0) == pytest.approx(5.0 + INPUT_SETTLE_S)
    short = 0.0006  # a period shorter than twice the settle time: polled at its half only
    where["pos"] = (0.0001, short - 0.0001, short)
    assert RtMidiInput.next_input(port, 5.0) == pytest.approx(5.0 + short / 2 - 0.0001)
    assert RtMidiInput.next_input(SimpleNamespace(_watch=None), 5.0) is None  # not JACK


def test_player_reports_a_stall_of_its_own_process_to_the_clock():
    """The sender's pass plus sleep took 60 ms longer than it asked (here: its time source
    jumps, as the wall clock does for a process the OS stopped): the clock is told the
    interval, so that it can count the clocks lost meanwhile (MidiClock.stalled)."""
    from tests.live_fakes import wait_until

    class Told(InternalClock):
        def __init__(self):
            super().__init__(120.0, start_delay=0.0)
            self.stalls = []

        def stalled(self, t0, t1):
            self.stalls.append((t0, t1))

    jump = [0.0]
    clock = Told()
    player = Player(clock, Scheduler(StaticSource(simple_pattern({0: [0]})), quantize=True), LogSink().send,
                    now=lambda: time.perf_counter() + jump[0], poll=list)
    player.start()
    try:
        assert wait_until(lambda: player.wakeups > 20)
        jump[0] = 0.06
        assert wait_until(lambda: any(t1 - t0 >= 0.06 for t0, t1 in clock.stalls))
    finally:
        player.stop()
        player.join(2)
    assert player.error is None


def test_player_tells_the_clock_of_xruns_before_the_input_read_with_them():
    """JACK's xruns reach the clock before the clock messages read in the same pass: the
    clock that ends a silence is judged with the xrun that made it (MidiClock.server)."""
    order = []

    class Told(InternalClock):
        def __init__(self):
            super().__init__(120.0, start_delay=0.0)

        def server(self, xruns, lag):
            order.append(("xruns", list(xruns), lag))

        def feed(self, msg, t):
            order.append(("feed", msg[0]))

    reports = [([], 0.5), ([(1.0, 0.0)], 0.5), ([], 0.5)]
    reads = [[], [(1.001, 0.0, [0xF8])], []]
    clock = Told()
    player = Player(clock, Scheduler(StaticSource(simple_pattern({0: [0]})), quantize=True), LogSink().send,
                    poll=lambda: reads.pop(0) if reads else [],
                    server_report=lambda: reports.pop(0))
    for _ in range(3):
        player._drain(None)
    assert order == [("xruns", [], 0.5), ("xruns", [(1.0, 0.0)], 0.5), ("feed", "clock"), ("xruns", [], 0.5)]


@pytest.fixture
def compiles(monkeypatch) -> list:
    """Every pattern the scheduler compiles (compile_pattern's first argument), in order."""
    import performer.scheduler as scheduler_mod

    calls: list = []
    real = scheduler_mod.compile_pattern

    def counting(pattern, quantize, swing):
        calls.append(pattern)
        return real(pattern, quantize, swing)

    monkeypatch.setattr(scheduler_mod, "compile_pattern", counting)
    return calls


def _cue_sim(*patterns):
    src = StaticSource(*patterns)
    sim, _ = midi_sim(src, quantize=True)
    return sim, src


KICKS = simple_pattern({s: [0] for s in range(64)})  # a kick on every step
SNARES = simple_pattern({s: [1] for s in range(64)})
HATS = simple_pattern({s: [2] for s in range(64)})


@pytest.mark.parametrize("how", ["continue", "start"])
def test_the_cued_cycle_is_compiled_while_stopped_and_start_or_continue_only_sends(compiles, how):
    """Continue (after SPP into cycle 1) and Start (position 0) are reactions that must reach the
    output within a JACK period: their first cycle's notes are compiled before they come, and
    the reaction lands the cycle (pattern_for, once) and sends, compiling nothing."""
    p = bpm_to_period(BPM)
    sim, src = _cue_sim(KICKS, SNARES)
    sim.feed_at(0.0, (SPP, 64 + 37))  # cycle 1, step 37
    sim.run_until(0.0099)
    assert any(c is KICKS for c in compiles) and any(c is SNARES for c in compiles)  # Start's cycle and the cue's
    assert src.asked == []  # nothing landed while stopped
    before = len(compiles)
    sim.feed_at(0.01, (CONTINUE if how == "continue" else START,))
    sim.ticks(0.01, p, 6 * 8)  # the first clock in the same frame as the Continue, as jack_midi_clock sends it
    sim.run_until(0.01 + 6 * 8 * p)
    assert compiles[before:] == []
    first = sim.sent.note_ons()[0]
    assert first[0] == pytest.approx(0.01)
    if how == "continue":
        assert src.asked == [1] and first[2] == (64 + 37) * TICKS_PER_STEP
        assert first[1][1] == drums.OUTPUT_PITCHES[1]
    else:
        assert src.asked == [0] and first[2] == 0 and first[1][1] == drums.OUTPUT_PITCHES[0]


def test_a_pattern_that_changes_while_stopped_is_compiled_again_before_continue(compiles):
    """The precompute is a peek, safe to redo: a groove decoded while stopped (here the source's
    pattern replaced) is compiled at the next input, and Continue plays it without compiling."""
    p = bpm_to_period(BPM)
    sim, src = _cue_sim(KICKS)
    sim.feed_at(0.0, (SPP, 10))
    sim.run_until(0.05)
    src.list[0] = HATS  # a request landed in the director while stopped
    sim.ticks(0.1, p, 3)  # a master that streams clocks while stopped
    sim.run_until(0.1 + 3 * p)
    assert any(c is HATS for c in compiles)
    before = len(compiles)
    sim.feed_at(0.2, (CONTINUE,))
    sim.ticks(0.2, p, 12)
    sim.run_until(0.2 + 12 * p)
    assert compiles[before:] == []
    assert {m[1] for _, m, _ in sim.sent.note_ons()} == {drums.OUTPUT_PITCHES[2]}


def test_a_pattern_that_changes_after_the_last_input_while_stopped_still_plays_at_continue(compiles):
    """No input since the groove changed (the master sends no clocks while stopped): Continue
    plays the new groove, compiling it then (the old cost, never the old notes)."""
    p = bpm_to_period(BPM)
    sim, src = _cue_sim(KICKS)
    sim.feed_at(0.0, (SPP, 10))
    sim.run_until(0.05)
    src.list[0] = HATS
    sim.feed_at(0.2, (CONTINUE,))
    sim.ticks(0.2, p, 12)
    sim.run_until(0.2 + 12 * p)
    assert sum(c is HATS for c in compiles) == 1
    assert {m[1] for _, m, _ in sim.sent.note_ons()} == {drums.OUTPUT_PITCHES[2]}
