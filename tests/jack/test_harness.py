"""The harness proves itself before it judges the performer.

Pure checks of the decoding and analysis helpers on hand-made event streams,
and, over a private JACK server, that the real clock master and transport
produce what the end-to-end tests assume: ticks at exactly the BPM's interval
(so the recorder's frame stamps are exact), Start, Stop, SPP and Continue.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.jack import harness as h
from tests.jack.harness import CLOCK, CONTINUE, SPP, START, STOP, ClockTrack, Event, Note

# --- decoding, no JACK needed ----------------------------------------------------


def ev(frame: int, *data: int, port: str = "clock") -> Event:
    return Event(frame, port, bytes(data))


def test_clock_track_follows_midi_semantics():
    evs = [
        ev(0, CLOCK),  # before Start: tempo only
        ev(10, START),
        *[ev(100 + 10 * i, CLOCK) for i in range(8)],  # positions 0..7
        ev(190, STOP),
        ev(195, CLOCK),  # stopped: does not advance
        ev(200, SPP, 5, 0),  # 16th 5 -> clock 30
        ev(205, CLOCK),
        ev(210, CONTINUE),
        ev(220, CLOCK),
        ev(230, CLOCK),
    ]
    t = ClockTrack.from_events(evs)
    assert [k.pos for k in t.ticks] == [*range(8), 30, 31]
    assert [k.run for k in t.ticks] == [0] * 8 + [1, 1]
    assert t.idle_ticks == [0, 195, 205]
    assert t.spps == [(200, 5)]
    assert t.intervals() == [10] * 7 + [10]
    assert [k.pos for k in t.grid()] == [0, 6, 30]


def test_continue_without_spp_resumes_where_the_song_stopped():
    evs = [ev(0, START), *[ev(10 * i + 1, CLOCK) for i in range(9)], ev(100, STOP),
           ev(200, CONTINUE), ev(201, CLOCK)]
    t = ClockTrack.from_events(evs)
    assert t.ticks[-1].pos == 9


def test_spp_while_playing_does_not_relocate():
    t = ClockTrack.from_events([ev(0, START), ev(1, CLOCK), ev(2, SPP, 10, 0), ev(3, CLOCK)])
    assert [k.pos for k in t.ticks] == [0, 1]


def test_place_maps_notes_to_the_nearest_step_and_measures_error():
    t = ClockTrack.from_events([ev(0, START), *[ev(1000 * i, CLOCK) for i in range(1, 25)]])
    pitches = (36, 38)
    ns = [Note(1000 + 50, True, 9, 36, 100),  # step 0, late by 50
          Note(7000 - 30, True, 9, 38, 90),  # step 1, early by 30
          Note(13000 + 2000, True, 9, 99, 10),  # step 2 + 1/3 step: still step 2, foreign pitch
          Note(7100, False, 9, 38, 0)]  # note-offs are not placed
    placed = h.place(ns, t, pitches)
    assert [(p.step, p.voice, p.error_frames) for p in placed] == [(0, 0, 50), (1, 1, -30), (2, None, 2000)]


def test_unreleased_wants_each_note_off_before_its_key_is_struck_again():
    ns = [Note(1, True, 9, 36, 100), Note(2, True, 9, 36, 100), Note(3, False, 9, 36, 0),
          Note(4, True, 9, 38, 100)]
    assert h.notes([Event(5, "n", bytes([0x99, 42, 0]))])[0].on is False
    left = h.unreleased(ns)
    assert [(n.frame, n.pitch) for n in left] == [(1, 36), (4, 38)]


def test_one_lost_note_off_leaves_only_its_own_note_on_open():
    """A note-off lost early does not make the key's last note-on look stuck."""
    ns = [Note(10 * i, i % 2 == 0, 9, 38, 90 if i % 2 == 0 else 0) for i in range(10)]  # 5 on/off pairs
    lost = ns[3]  # the second note-on's off
    left = h.unreleased([n for n in ns if n is not lost])
    assert left == [ns[2]]
    assert h.unreleased([n for n in ns if n is not lost], blind=[(25, 35)]) == []  # its off may be there
    assert h.unreleased([n for n in ns if n is not lost], blind=[(45, 55)]) == [ns[2]]  # a later window


def test_expected_hits_wraps_cycles():
    import numpy as np

    hits = np.zeros((64, 9), bool)
    hits[0, 0] = hits[63, 2] = True
    assert h.expected_hits(hits, range(60, 66)) == {(63, 2), (64, 0)}


def test_percentile_matches_numpy():
    import numpy as np

    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0, 50, 99, 100):
        assert h.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_cpu_seconds_reads_proc():
    import os

    t0 = h.cpu_seconds(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert h.cpu_seconds(os.getpid()) > t0
    assert h.rss_bytes(os.getpid()) > 1_000_000


# --- the real peers ------------------------------------------------------------


@pytest.mark.jack
@pytest.mark.parametrize("bpm", [90, 120, 180])
@h.retry_invalid()
def test_clock_ticks_are_recorded_at_the_bpm_interval(server, bpm):
    with h.Rig(server, bpm=bpm, start_performer=False) as rig:
        rig.start()
        x0 = rig.rec.xruns
        assert rig.wait_pos(3 * h.PPQN), "the clock did not roll"
        rig.stop()
        t = rig.track()
        xruns = rig.rec.xruns - x0
    expect = h.frames_per_tick(server, bpm)
    iv = t.intervals()
    assert len(iv) >= 3 * h.PPQN - 1
    # jack_midi_clock rounds each tick to a frame: exact stamps differ by < 1 frame
    odd = [x for x in iv if abs(x - expect) > 1.0]
    if odd and xruns:
        raise h.InvalidTake(f"{xruns} xruns while recording; intervals {odd}")
    assert not odd, (expect, sorted(set(iv)))
    assert t.ticks[0].pos == 0 and len(t.starts) == 1 and len(t.stops) == 1


@pytest.mark.jack
def test_transport_drives_start_stop_spp_continue(server):
    with h.Rig(server, bpm=120, start_performer=False) as rig:
        start = rig.start()
        rig.wait_pos(h.PPQN)
        stop = rig.stop()
        since = rig.rec.mark()
        step = 40
        rig.locate(step * 6000)  # a 16th is 6000 frames at 120 BPM and 48 kHz
        spp = rig.rec.wait_for(lambda e: e.data[:1] == bytes([SPP]), 5.0, since, "clock")
        assert spp is not None, "no SPP after a locate while stopped"
        rig.transport.play()
        cont = rig.rec.wait_for(lambda e: e.data[:1] == bytes([CONTINUE]), 5.0, since, "clock")
        assert cont is not None, "no Continue after play from a located position"
        rig.wait_pos(1)  # at least one tick after the Continue
        time.sleep(0.1)
        rig.stop()
        t = rig.track()
    assert start.frame < stop.frame < spp.frame < cont.frame
    value = spp.data[1] | spp.data[2] << 7
    # jack_midi_clock announces the position it will continue at: located + resync lead
    assert value >= step
    resumed = [k for k in t.ticks if k.frame >= cont.frame]
    assert resumed and resumed[0].pos == value * h.TICKS_PER_STEP
    assert t.idle_ticks, "ticks between play and Continue are expected (jack_midi_clock's resync lead)"


@pytest.mark.jack
def test_clock_without_position_continues_from_the_stop(server):
    with h.Rig(server, bpm=120, start_performer=False, clock_kw={"no_position": True}) as rig:
        rig.start()
        rig.wait_pos(h.PPQN)
        rig.stop()
        before = rig.track().ticks[-1].pos
        since = rig.rec.mark()
        rig.transport.play()
        assert rig.rec.wait_for(lambda e: e.data[:1] == bytes([CONTINUE]), 5.0, since, "clock")
        time.sleep(0.2)
        rig.stop()
        t = rig.track()
    assert not t.spps
    assert [k.pos for k in t.ticks if k.run == 1][0] == before + 1


def _jittered_ticks(seed: int) -> list[int]:
    """200 clock frames, ±20 % jitter, the tempo up by a third halfway."""
    import random

    rnd = random.Random(seed)
    frames, f = [], 0
    for i in range(200):
        f += (1000 if i < 100 else 750) + rnd.randint(-200, 200)
        frames.append(f)
    return frames


def test_gaps_find_a_lost_clock_but_not_jitter_or_tempo_changes():
    frames = _jittered_ticks(1)
    evs = [ev(0, START), *[ev(x, CLOCK) for i, x in enumerate(frames) if i != 150]]
    t = ClockTrack.from_events(evs)
    assert [k.frame for k in t.gaps()] == [frames[151]]


def test_doubled_finds_a_tick_taken_twice_but_not_jitter_or_tempo_changes():
    frames = _jittered_ticks(2)
    evs = [ev(0, START), *[ev(x, CLOCK) for x in frames]]
    assert ClockTrack.from_events(evs).doubled() == []
    evs.insert(121, ev(frames[119] + 128, CLOCK))  # the 120th tick again, a JACK period later
    t = ClockTrack.from_events(evs)
    assert [k.frame for k in t.doubled()] == [frames[119] + 128]
    assert t.gaps() == []


def test_positions_on_the_master_line_count_a_hole_as_the_clock_it_was():
    """benchmarks.long_takes reads song positions off the master's line: after a clock
    missing from the recording, the recorder's count is one short and the line's is not."""
    frames = [500 + 1000 * i for i in range(100)]
    evs = [ev(0, START), *[ev(x, CLOCK) for i, x in enumerate(frames) if i != 40]]
    t = ClockTrack.from_events(evs)
    assert [k.pos for k in t.ticks][39:41] == [39, 40]  # the message count: one short from 41 on
    assert [k.pos for k in t.on_master_line().ticks][39:41] == [39, 41]
    assert [k.pos for k in t.on_master_line().ticks][-1] == 99


def test_fill_puts_back_the_clocks_of_a_hole_whole_clocks_long():
    """A clock the recorder (or the master) missed at an xrun, and three in a row: the
    filled track counts them where the master was, with the frames they had."""
    frames = [500 + 1000 * i for i in range(100)]
    gone = {30, 60, 61, 62}
    evs = [ev(0, START), *[ev(x, CLOCK) for i, x in enumerate(frames) if i not in gone]]
    raw = ClockTrack.from_events(evs)
    assert [k.frame for k in raw.gaps()] == [frames[31], frames[63]]
    t = ClockTrack.from_events(evs, fill=True)
    assert [(k.frame, k.pos) for k in t.ticks] == [(x, i) for i, x in enumerate(frames)]
    assert sorted(k.pos for k in t.put_back) == sorted(gone)
    assert t.gaps() == []


def test_fill_leaves_holes_it_cannot_place():
    """Too long (a stall), not whole clocks, at a tempo change, or too near the run's start:
    each stays a hole, and the take is not judged."""
    def clocks(f0, iv, n):
        return [f0 + iv * i for i in range(n)]

    long_hole = clocks(500, 1000, 40) + clocks(40500 + 8 * 1000, 1000, 40)  # 8 clocks missing
    half = clocks(500, 1000, 40) + clocks(40500 + 1500, 1000, 40)  # 2.5 clocks apart
    tempo = clocks(500, 1000, 40) + clocks(39500 + 2 * 1000, 800, 40)  # then 150 BPM
    early = clocks(500, 1000, 2) + clocks(1500 + 2000, 1000, 40)  # after 2 clocks
    for frames in (long_hole, half, tempo, early):
        evs = [ev(0, START), *[ev(x, CLOCK) for x in frames]]
        t = ClockTrack.from_events(evs, fill=True)
        assert t.put_back == [] and len(t.gaps()) == 1


def test_fill_carries_its_count_into_a_continue_and_not_past_a_start():
    frames = [500 + 1000 * i for i in range(60)]
    evs = [ev(0, START), *[ev(x, CLOCK) for i, x in enumerate(frames[:40]) if i != 20]]
    evs += [ev(41000, STOP), ev(50000, CONTINUE), *[ev(50500 + 1000 * i, CLOCK) for i in range(20)]]
    evs += [ev(80000, STOP), ev(90000, START), *[ev(90500 + 1000 * i, CLOCK) for i in range(20)]]
    t = ClockTrack.from_events(evs, fill=True)
    assert [k.pos for k in t.ticks if k.run == 1] == list(range(40, 60))
    assert [k.pos for k in t.ticks if k.run == 2] == list(range(20))


def test_fill_puts_back_nothing_in_jitter_or_a_tempo_change():
    frames = _jittered_ticks(3)
    evs = [ev(0, START), *[ev(x, CLOCK) for x in frames]]
    assert ClockTrack.from_events(evs, fill=True).put_back == []


def test_the_master_line_holds_a_minute_at_a_clock_of_fractional_frames():
    """180 BPM at 48 kHz: a clock every 666.67 frames, placed at whole frames. A minute of it
    (4,320 clocks, two missing) keeps every position; a whole-frame interval would not."""
    frames = [300 + round(i * 48000 * 60 / (180 * 24)) for i in range(4320)]
    evs = [ev(0, START), *[ev(x, CLOCK) for i, x in enumerate(frames) if i not in (1000, 3000)]]
    line = ClockTrack.from_events(evs).on_master_line()
    assert [k.pos for k in line.ticks] == [i for i in range(4320) if i not in (1000, 3000)]


def test_stale_servers_names_the_registry_slots_of_dead_jackd_processes(tmp_path):
    """A jackd killed without unregistering keeps its slot in jackd2's registry of 8; the
    harness frees such slots when a server will not start ("Too many servers already active")."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    reg = bytearray(h._SLOT0 + h._SLOTS * h._SLOT_BYTES)
    for i, (pid, name) in enumerate([(os.getpid(), b"jack-0:alive-one:"), (dead, b"jack-0:dead-one:"), (0, b"")]):
        off = h._SLOT0 + i * h._SLOT_BYTES
        reg[off:off + 4] = pid.to_bytes(4, "little", signed=True)
        reg[off + 4:off + 4 + len(name)] = name
    path = tmp_path / "registry"
    path.write_bytes(bytes(reg))
    assert h.stale_servers(path) == ["dead-one"]
    assert h.stale_servers(tmp_path / "missing") == []


# --- a take with cycles the notes recorder missed ---------------------------------


def _blind_take(blind: list[tuple[int, int]]):
    from tests.jack.test_e2e import Take

    clocks = [ev(100 + 1000 * i, CLOCK) for i in range(48)]  # 8 steps, 6000 frames a step
    track = ClockTrack.from_events([ev(10, START), *clocks])
    return Take(track, [], [], [], "", 0, [], blind=blind)


def test_blind_steps_are_the_steps_within_half_a_step_of_a_missed_cycle():
    t = _blind_take([(12100, 12228)])  # exactly at step 2's tick
    assert t.blind_steps() == {2}
    t = _blind_take([(14900, 15028)])  # step 2's tick + 2800 frames: not yet half-way to step 3
    assert t.blind_steps() == {2}
    t = _blind_take([(15200, 15328)])  # past half-way: step 3's groove notes could sit there
    assert t.blind_steps() == {3}
    assert _blind_take([]).blind_steps() == set()


def test_unreleased_excuses_a_note_off_that_may_have_gone_out_unrecorded():
    """A note-on with no note-off in the recording is stuck, unless the notes recorder missed
    a cycle after it (the off may have gone out there)."""
    kick_off = Note(1400, False, 9, 36, 0)
    snare, kick = Note(2000, True, 9, 38, 90), Note(9000, True, 9, 36, 100)
    t = _blind_take([])
    t.notes = [Note(1000, True, 9, 36, 100), kick_off, snare, kick]
    assert t.unreleased() == [snare, kick]
    t.blind = [(3000, 3128)]  # after the snare, before the second kick
    assert t.unreleased() == [kick]
    t.blind = [(9200, 9328)]  # after both
    assert t.unreleased() == []
    t.blind = [(500, 628)]  # before both
    assert t.unreleased() == [snare, kick]
    assert t.blind_after(400) and not t.blind_after(700)


def test_a_blind_step_excuses_missing_notes_but_not_wrong_ones():
    from types import SimpleNamespace

    from tests.jack.test_e2e import assert_plays

    hits = np.zeros((h.STEPS_PER_CYCLE, 9), bool)
    hits[[0, 2, 4], 0] = True
    pattern = SimpleNamespace(hits=hits, grid=lambda: "")
    played = [h.Placed(Note(0, True, 9, 36, 100), s, 0, 0) for s in (0, 4)]
    assert_plays(played, pattern, range(0, 6), "step 2 blind", blind={2})
    with pytest.raises(AssertionError, match="missing"):
        assert_plays(played, pattern, range(0, 6), "nothing blind")
    wrong = [*played, h.Placed(Note(0, True, 9, 38, 100), 2, 1, 0)]  # a snare where the kick was due
    with pytest.raises(AssertionError, match="extra"):
        assert_plays(wrong, pattern, range(0, 6), "step 2 blind", blind={2})


# --- the exact onset measurement against the built-in kit --------------------------------


def _kit_take(placed: list[tuple[int, int, int]], frames: int, rate: int = 48000) -> dict:
    """A recording as the audio recorder makes it: the kit's stereo output summed into one input."""
    from performer import sound

    r = sound.Renderer(sample_rate=rate)
    for f, p, v in placed:
        r.schedule(sound.Event(f, p, v))
    return {"start": 0, "audio": r.render(frames).sum(axis=1)}


def test_kit_onsets_finds_each_group_where_it_sounds_even_under_a_ringing_snare():
    from tests.jack import audio_rig as ar

    rate = 48000
    midi = [(4800, 38, 120), (8800, 38, 30), (12800, 36, 100), (12800, 45, 90), (16800, 38, 60)]
    shift = {4800: 0, 8800: 96, 12800: -48, 16800: 3}  # frames: 0, +2, -1 ms and 3 frames
    take = _kit_take([(f + shift[f], p, v) for f, p, v in midi], 24000, rate)
    k = ar.kit_onsets(take, midi, latency=0, rate=rate)
    assert k.frames.tolist() == [4800, 8800, 12800, 16800]
    assert np.allclose(k.errors_ms, [0.0, 2.0, -1.0, 3 * 1000 / rate])
    assert k.exact.all() and not k.gap.any()
    # the ghost snare (velocity 30) 83 ms after a loud one: the kit's model of the ring explains it
    late = ar.kit_onsets(take, [(f + (200 if f == 8800 else 0), p, v) for f, p, v in midi], latency=0, rate=rate)
    assert late.errors_ms[1] == pytest.approx((96 - 200) * 1000 / rate)


def test_kit_onsets_fits_around_a_gap_of_the_recorder_and_flags_a_sound_that_is_not_the_kit():
    from tests.jack import audio_rig as ar

    rate = 48000
    midi = [(4800, 38, 120), (9600, 36, 100)]
    take = _kit_take(midi, 16000, rate)
    take["audio"][9600 + 200 : 9600 + 328] = 0.0  # a period the recorder missed
    take["gap_frames"] = np.array([[9600 + 200, 128]])
    k = ar.kit_onsets(take, midi, latency=0, rate=rate)
    assert k.gap.tolist() == [False, True]
    # fitted without the missing samples: the rest of its window is the kit, to the frame
    assert k.exact.tolist() == [True, True] and k.errors_ms.tolist() == [0.0, 0.0]
    stopped = _kit_take(midi, 16000, rate)
    stopped["audio"][9700:] = 0.0  # the transport's Stop silenced every voice 2 ms after the kick
    assert ar.kit_onsets(stopped, midi, latency=0, rate=rate).exact.tolist() == [True, False]
    assert ar.kit_onsets(stopped, midi, latency=0, rate=rate, stop=9700).exact.tolist() == [True, True]
    other = _kit_take([(4800, 38, 120), (9600, 38, 100)], 16000, rate)  # a snare where a kick was sent
    assert ar.kit_onsets(other, midi, latency=0, rate=rate).exact.tolist() == [True, False]


@pytest.mark.jack
def test_a_paused_server_runs_its_cycles_late_and_the_cycle_stamps_show_it(tmp_path):
    """JackServer.pause: jackd stopped for 20 ms, its cycles run that late (the dummy driver never
    catches up), and the recorder's cycle stamps show the line moved while the frames go on."""
    server = h.JackServer(period=128, workdir=tmp_path).start()  # its own: the xrun stays here
    rec = None
    try:
        rec = h.Recorder(server, name="dp-late-rec", inputs=("notes",), cycle_times=True)
        assert h.wait_until(lambda: len(rec.cycle_times) > 100, 10.0), "no cycles stamped"
        rec.sync()
        n0 = len(rec.cycle_times)
        server.pause(20)
        assert h.wait_until(lambda: len(rec.cycle_times) > n0 + 100, 10.0)
        rec.sync()
        st = sorted(rec.cycle_times[n0 - 1:])  # from the last stamp before the pause
        # stamps (ns) against frames: the pause moved the line by most of 20 ms at once
        shift_ms = [((t1 - t0) / 1e6) - 1000.0 * (f1 - f0) / server.rate
                    for (f0, t0), (f1, t1) in zip(st[:-1], st[1:], strict=True)]
        assert max(shift_ms) > 15.0, max(shift_ms)
        assert sorted(shift_ms)[len(shift_ms) // 2] < 1.0  # the other cycles a period apart
    finally:
        if rec is not None:
            rec.close()
        server.stop()
