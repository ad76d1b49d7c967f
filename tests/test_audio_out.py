"""The live --audio output without a sound card: the engine's frame mapping, the scheduler's ahead
lane, the sink's protocol, and the one-line errors when the library is missing.

The real device path (PortAudio over JACK's dummy driver) is tests/jack/test_audio_live.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from performer import audio_out as ao
from performer.audio import AudioError, Event
from performer.clock import STOP, Transport
from performer.options import LiveOptions
from performer.scheduler import CC_ALL_NOTES_OFF
from performer.sound import Renderer
from tests.live_fakes import StaticSource, internal_sim, midi_sim, simple_pattern

RATE = 48000
BLOCK = 128
LAT = 256 / RATE  # outputBufferDacTime - currentTime, as PortAudio's JACK host API reports at -p 128


class FakeRenderer:
    """Keeps what was scheduled, renders silence; ``frame`` advances like the real one's."""

    def __init__(self) -> None:
        self.frame = 0
        self.events: list = []
        self.cleared = 0

    def schedule(self, ev: Event) -> None:
        self.events.append(ev)

    def clear(self) -> None:
        self.events.append("clear")
        self.cleared += 1

    def render(self, frames: int) -> np.ndarray:
        self.frame += frames
        return np.zeros((frames, 2), dtype=np.float32)


def run_blocks(engine: ao.AudioEngine, n: int, t0: float = 100.0, stream0: float = 5.0,
               jitter=lambda k: 0.0) -> float:
    """``n`` callbacks of BLOCK frames: block k starts (stream clock) at stream0 + k*BLOCK/RATE and its
    callback runs at perf time t0 + the same + jitter(k). Returns the perf time after the last."""
    for k in range(n):
        st = stream0 + k * BLOCK / RATE
        engine.process(BLOCK, t0 + k * BLOCK / RATE + jitter(k), st, st + LAT)
    return t0 + n * BLOCK / RATE


def dac_frame(t: float, t0: float = 100.0) -> int:
    """The renderer frame heard at perf time t, when frame 0 is heard at t0 + LAT."""
    return round((t - t0 - LAT) * RATE)


# --- the engine: perf_counter time -> the stream's frames -----------------------------------


def test_a_note_is_rendered_at_the_frame_heard_at_its_time_latency_compensated():
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 10)
    t = 100.0 + 0.05  # 50 ms after the first callback: well ahead of its block
    eng.note(t, 38, 100, 0.05)
    run_blocks(eng, 1, t0=100.0 + 10 * BLOCK / RATE, stream0=5.0 + 10 * BLOCK / RATE)
    on = [e for e in r.events if e != "clear" and e.velocity > 0]
    assert on == [Event(dac_frame(t), 38, 100)]
    assert dac_frame(t) == round((0.05 - LAT) * RATE)  # 256 frames earlier than without compensation
    assert eng.late == 0


def test_late_callbacks_do_not_move_the_mapping():
    """A callback that woke 2 ms late must not make notes late: the smallest offset wins."""
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 20, jitter=lambda k: 0.002 if k % 3 else 0.0)
    t = 100.2
    eng.note(t, 36, 90, 0.05)
    run_blocks(eng, 1, t0=100.0 + 20 * BLOCK / RATE + 0.002, stream0=5.0 + 20 * BLOCK / RATE)
    assert [e.frame for e in r.events if e != "clear" and e.velocity] == [dac_frame(t)]


def test_after_an_underflow_the_mapping_starts_afresh():
    """The device played 3 blocks this stream never rendered: frame f is now heard 3 blocks later
    than before. The underflow flag makes the next note land on the new timeline at once."""
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 10)
    skip = 3 * BLOCK / RATE
    t1 = 100.0 + 10 * BLOCK / RATE + skip  # the next callback, late by the skipped blocks
    eng.process(BLOCK, t1, 0.0, LAT, glitch=True)
    t = t1 + 0.05
    eng.note(t, 38, 100, 0.05)
    eng.process(BLOCK, t1 + BLOCK / RATE, 0.0, LAT)
    assert [e.frame for e in r.events if e != "clear" and e.velocity] == [10 * BLOCK + round((0.05 - LAT) * RATE)]


def test_a_step_of_the_timeline_without_an_underflow_flag_is_followed_within_a_few_blocks():
    """Under JACK an xrun can cost the stream a block with no underflow flag: every later
    callback comes a block later against its frames. After STEP_CALLBACKS such callbacks the
    mapping is the new one (before: the old minimum held for its whole 0.5 s window, and every
    note in it was heard a block late)."""
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 40, jitter=lambda k: 0.0003 * (k % 2))
    skip = BLOCK / RATE
    t0 = 100.0 + skip  # from block 40 on, each callback is one block later than before
    for k in range(40, 40 + ao.STEP_CALLBACKS):
        st = 5.0 + k * BLOCK / RATE
        eng.process(BLOCK, t0 + k * BLOCK / RATE, st, st + LAT)
    t = t0 + (40 + ao.STEP_CALLBACKS) * BLOCK / RATE + 0.05
    eng.note(t, 38, 100, 0.05)
    run_blocks(eng, 1, t0=t0 + (40 + ao.STEP_CALLBACKS) * BLOCK / RATE,
               stream0=5.0 + (40 + ao.STEP_CALLBACKS) * BLOCK / RATE)
    assert [e.frame for e in r.events if e != "clear" and e.velocity] == [dac_frame(t, t0=t0)]
    assert eng._clock.steps == 1


def test_wake_up_jitter_is_not_a_step():
    """Callbacks that wake up to 3 ms late, but never STEP_CALLBACKS in a row, keep the mapping."""
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 200, jitter=lambda k: 0.003 if k % ao.STEP_CALLBACKS else 0.0)
    assert eng._clock.steps == 0
    eng.note(100.0 + 200 * BLOCK / RATE + 0.05, 36, 90, 0.05)
    run_blocks(eng, 1, t0=100.0 + 200 * BLOCK / RATE, stream0=5.0 + 200 * BLOCK / RATE)
    assert [e.frame for e in r.events if e != "clear" and e.velocity] == [dac_frame(100.0 + 200 * BLOCK / RATE + 0.05)]


def test_an_outlier_stream_time_does_not_move_the_mapping():
    """Under JACK PortAudio's currentTime jumps by up to a period now and then; only the
    latency (dac - current, a constant) is taken from it."""
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    for k in range(20):
        st = 5.0 + k * BLOCK / RATE + (BLOCK / RATE if k == 7 else 0.0)
        eng.process(BLOCK, 100.0 + k * BLOCK / RATE, st, st + LAT)
    eng.note(100.2, 36, 90, 0.05)
    run_blocks(eng, 1, t0=100.0 + 20 * BLOCK / RATE, stream0=5.0 + 20 * BLOCK / RATE)
    assert [e.frame for e in r.events if e != "clear" and e.velocity] == [dac_frame(100.2)]


def test_a_note_that_comes_too_late_plays_at_the_next_block_and_is_counted():
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 10)
    eng.note(100.0, 42, 80, 0.05)  # its frame was rendered long ago
    run_blocks(eng, 1, t0=100.0 + 10 * BLOCK / RATE, stream0=5.0 + 10 * BLOCK / RATE)
    assert eng.late == 1


def test_every_note_on_gets_its_note_off_gate_later_and_a_restrike_releases_first():
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 2)
    eng.note(100.05, 38, 100, 0.02)
    eng.note(100.06, 38, 90, 0.02)  # struck again 10 ms later, inside the first one's gate
    eng.note(100.05, 36, 100, 0.02)
    run_blocks(eng, 60, t0=100.0 + 2 * BLOCK / RATE, stream0=5.0 + 2 * BLOCK / RATE)
    evs = [e for e in r.events if e != "clear"]
    snare = [e for e in evs if e.pitch == 38]
    f1, f2 = dac_frame(100.05), dac_frame(100.06)
    assert snare == [Event(f1, 38, 100), Event(f2, 38, 0), Event(f2, 38, 90), Event(f2 + round(0.02 * RATE), 38, 0)]
    assert [e for e in evs if e.pitch == 36] == [Event(f1, 36, 100), Event(f1 + round(0.02 * RATE), 36, 0)]


def test_clear_drops_the_queue_and_pending_note_offs():
    r = FakeRenderer()
    eng = ao.AudioEngine(r, RATE)
    run_blocks(eng, 2)
    eng.note(100.05, 38, 100, 0.05)
    run_blocks(eng, 1, t0=100.0 + 2 * BLOCK / RATE, stream0=5.0 + 2 * BLOCK / RATE)
    eng.clear()
    run_blocks(eng, 60, t0=100.0 + 3 * BLOCK / RATE, stream0=5.0 + 3 * BLOCK / RATE)
    assert r.cleared == 1
    assert [e for e in r.events if e != "clear" and e.velocity == 0] == []  # the renderer's clear silences it


def test_with_the_built_in_kit_the_sound_starts_on_the_mapped_frame():
    eng = ao.AudioEngine(Renderer(sample_rate=RATE), RATE)
    out = [np.zeros((0, 2), np.float32)]
    st = 5.0
    for k in range(40):
        if k == 2:
            eng.note(100.03, 38, 110, 0.05)
        s = st + k * BLOCK / RATE
        out.append(eng.process(BLOCK, 100.0 + k * BLOCK / RATE, s, s + LAT))
    audio = np.concatenate(out)
    first = int(np.flatnonzero(np.abs(audio).max(axis=1) > 1e-4)[0])
    assert first == dac_frame(100.03)


def test_lead_covers_a_block_the_latency_and_a_margin():
    eng = ao.AudioEngine(FakeRenderer(), RATE)
    run_blocks(eng, 3)
    assert eng.lead_s == pytest.approx(LAT + BLOCK / RATE + ao.LEAD_MARGIN_S)


# --- the scheduler's ahead lane --------------------------------------------------------------


class AheadLog:
    def __init__(self, now) -> None:
        self.now = now
        self.got: list[tuple[float, float, float, int, int, float]] = []  # (arrived, pos, t, pitch, vel, gate)

    def __call__(self, pos, t, pitch, vel, gate) -> None:
        self.got.append((self.now(), pos, t, pitch, vel, gate))


def test_the_ahead_lane_hands_every_note_on_ahead_s_before_its_time_and_midi_is_unchanged():
    src = StaticSource(simple_pattern({s: [0, 2] for s in range(0, 64, 2)}))
    plain, _ = internal_sim(src, bpm=180.0)
    plain.run_until(3.0)
    sim, clock = internal_sim(src, bpm=180.0)
    lane = AheadLog(lambda: sim.now)
    sim.sched.set_ahead(lane, 0.014)
    sim.run_until(3.0)
    assert sim.sent.log == plain.sent.log  # the MIDI lane: the same messages at the same times
    ons = [(t, m[1]) for t, m, _ in sim.sent.log if m[0] & 0xF0 == 0x90]
    assert [(round(g[2], 9), g[3]) for g in lane.got] == [(round(clock.time_at(p), 9), n) for p, n in
                                                         [(g[1], g[3]) for g in lane.got]]
    assert len(lane.got) >= len(ons) and len(ons) > 20
    for arrived, _pos, t, _p, _v, gate in lane.got:
        assert arrived == pytest.approx(max(t - 0.014, 0.0), abs=1e-6)  # from the start on: at once
        assert 0.01 <= gate <= 0.1


def test_stop_empties_the_ahead_lane():
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    sim, clock = internal_sim(src, bpm=120.0)
    lane = AheadLog(lambda: sim.now)
    sim.sched.set_ahead(lane, 0.5)  # half a second ahead: several notes are waiting in it
    sim.run_until(1.0)
    clock.stop(1.0)
    n = len(lane.got)
    sim.run_until(3.0)
    assert len(lane.got) == n
    assert all(g[2] <= 1.0 + 0.5 for g in lane.got)


def test_the_ahead_lane_never_passes_the_midi_clocks_send_limit():
    """A MIDI clock that stops: no note beyond the last tick + the guard reaches the audio."""
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    sim, clock = midi_sim(src)
    lane = AheadLog(lambda: sim.now)
    sim.sched.set_ahead(lane, 0.05)
    period = 60.0 / (24 * 120.0)
    sim.feed_at(0.0, ("start",))
    sim.ticks(0.001, period, 48)  # two beats, then nothing
    sim.run_until(48 * period + 0.05)
    last = 47
    # the lane's limit runs ahead_s (2.4 clocks here) ahead of the MIDI lane's (1.5 past the last)
    assert lane.got and max(g[1] for g in lane.got) <= last + clock.guard_ticks + 0.05 / period
    assert 54 not in [g[1] for g in lane.got]  # the next 16th after the clock stopped never goes


def test_following_midi_clock_at_180_bpm_the_audio_still_gets_its_notes_ahead_s_early():
    """At 180 BPM a clock is 13.9 ms: held to the MIDI lane's limit (1.5 clocks past the last one
    received), the audio would get notes only ~14 ms early, less than the 16.7 ms it asks for."""
    src = StaticSource(simple_pattern({s: [0] for s in range(64)}))
    sim, clock = midi_sim(src)
    lane = AheadLog(lambda: sim.now)
    sim.sched.set_ahead(lane, 0.0167)
    period = 60.0 / (24 * 180.0)
    sim.feed_at(0.0, ("start",))
    sim.ticks(0.001, period, 24 * 8)
    sim.run_until(24 * 8 * period)
    steady = [g for g in lane.got if g[1] >= 24]  # after the first beat (the tempo is known)
    assert len(steady) > 20
    assert min(t - arrived for arrived, _, t, *_ in steady) >= 0.0167 - 1e-6


# --- the sink in the performer ----------------------------------------------------------------


class FakeProc:
    def __init__(self) -> None:
        self.stdin = io.BytesIO()
        self.stdout = io.BytesIO(b"S 10 blocks\n")
        self.returncode = None
        self.closed_input = False

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        self.returncode = 0
        return 0

    def kill(self):
        self.returncode = -9


def test_the_sink_forwards_note_ons_and_clears_on_stop_and_panic():
    proc = FakeProc()
    sink = ao.AudioSink(proc, 0.014, "audio test")
    sink.ahead(96.0, 12.5, 38, 100, 0.05)
    sink.send([0x99, 38, 100], 96.0)  # the MIDI lane's copy: already sent ahead, ignored
    sink.send([0x89, 38, 0], None)  # the scheduler's wall-time note-off: the engine makes its own
    sink.transport(Transport(STOP, 100, 13.0))
    sink.send([0xB9, CC_ALL_NOTES_OFF, 0], None)
    lines = proc.stdin.getvalue().splitlines()
    assert lines == [b"N 12.5 38 100 0.05", b"C", b"C"]
    assert sink.describe() == "audio test" and sink.lead_s == 0.014


def test_the_sink_survives_a_dead_audio_process():
    proc = FakeProc()

    def broken(_):
        raise BrokenPipeError

    proc.stdin.write = broken
    proc.returncode = 1
    sink = ao.AudioSink(proc, 0.014, "audio test")
    sink.ahead(0.0, 1.0, 36, 100, 0.05)  # no exception: MIDI goes on
    sink.check()
    sink.ahead(0.0, 1.0, 36, 100, 0.05)


def test_a_full_pipe_drops_the_note_and_never_blocks_or_silences_the_sink():
    proc = FakeProc()
    write, full = proc.stdin.write, [True]

    def stalled(data):
        if full[0]:
            raise BlockingIOError(11, "the audio process is not reading")
        return write(data)

    proc.stdin.write = stalled
    sink = ao.AudioSink(proc, 0.014, "audio test")
    sink.ahead(0.0, 1.0, 36, 100, 0.05)  # returns at once: the note is dropped, counted
    assert sink.dropped == 1
    full[0] = False
    sink.ahead(0.0, 2.0, 38, 90, 0.05)  # the audio process reads again: notes flow again
    assert proc.stdin.getvalue().splitlines() == [b"N 2.0 38 90 0.05"]


def test_an_app_with_an_early_sink_gives_it_the_notes_lead_s_ahead():
    class Early:
        lead_s = 0.03

        def __init__(self) -> None:
            self.got: list[tuple[float, float]] = []
            self.done = threading.Event()

        def ahead(self, pos, t, pitch, vel, gate):
            self.got.append((time.perf_counter(), t))
            if len(self.got) >= 8:
                self.done.set()

        def send(self, msg, pos):
            pass

        def transport(self, ev):
            pass

        def describe(self):
            return "early"

        def check(self):
            pass

        def close(self):
            pass

    early = Early()
    run2 = AppRunWith([early], bpm=240, quantize=True, seed=3)
    try:
        assert early.done.wait(10), "no notes reached the early sink"
        assert run2.app.status()["out"].endswith(" + early")  # the view's out line names it
    finally:
        run2.finish()
    leads = [t - arrived for arrived, t in early.got[:8]]
    assert min(leads) > 0.02, leads  # sent ~30 ms ahead (a loaded machine may wake a few ms late)


def AppRunWith(sinks, **kw):
    """tests.test_app.Live (an app on a thread with fake ports) with more sinks after its log sink."""
    from performer.app import LiveApp
    from tests.test_app import Live

    orig = LiveApp.__init__

    def init(self, opts, **k):
        k["sinks"] = [*k.get("sinks", ()), *sinks]
        orig(self, opts, **k)

    LiveApp.__init__ = init
    try:
        return Live(**kw)
    finally:
        LiveApp.__init__ = orig


# --- missing pieces: one line, what to install --------------------------------------------------


def test_missing_sounddevice_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(AudioError, match=r"pip install 'drum-performer\[audio\]'"):
        ao.check_installed()
    with pytest.raises(AudioError, match=r"pip install 'drum-performer\[audio\]'"):
        ao.require()


def test_missing_portaudio_is_one_line_naming_the_system_package(monkeypatch, tmp_path):
    """sounddevice imports but finds no PortAudio library (an OSError, as sounddevice raises it):
    the audio process says so and the performer turns it into one line."""
    (tmp_path / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path[1:])}")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AudioError) as e:
        ao.open_audio_sink()
    assert str(e.value).startswith("--audio needs the PortAudio library: sudo apt install libportaudio2")
    assert "\n" not in str(e.value)


def test_the_cli_says_one_line_and_exits_non_zero_without_sounddevice():
    code = ("import sys; sys.modules['sounddevice'] = None\n"
            "from performer.cli import main\n"
            "sys.exit(main(['--bpm', '120', '--audio', '--headless']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["drum-performer: error: --audio needs the sounddevice package: "
                     "pip install 'drum-performer[audio]'"], r.stderr


def test_live_audio_options_parse_and_a_missing_soundfont_is_refused(tmp_path):
    import argparse

    from performer.live_cli import add_parsers

    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers())
    with pytest.raises(SystemExit):
        p.parse_args(["live", "--soundfont", str(tmp_path / "nope.sf2")])
    with pytest.raises(Exception, match="does not exist"):
        LiveOptions(soundfont=str(tmp_path / "nope.sf2")).validate()
    a = p.parse_args(["live", "--audio"])
    assert a.audio and a.soundfont is None


def test_with_link_the_audio_gets_each_note_at_the_sessions_grid_time_across_a_tempo_change():
    """--link --audio: the ahead lane on a Link clock (the simulated session of test_link_clock) hands
    every note ahead_s before the performer time of its session 16th, before and after a peer's
    tempo change, and the engine renders it on the frame heard then."""
    from model import drums
    from performer.scheduler import Scheduler
    from tests.live_fakes import Sim
    from tests.test_link_clock import HOST_OFFSET_S, SimSession, host, make

    pat = simple_pattern({s: [0] for s in range(0, drums.STEPS, 2)})
    st, session, clock = make(SimSession(120.0, beat0=0.0, host0_us=host(0.0)))
    sched = Scheduler(StaticSource(pat), quantize=True)
    sim = Sim(sched, clock)
    clock.bridge.perf = lambda: sim.now
    clock.bridge.host_us = lambda: (sim.now + HOST_OFFSET_S) * 1e6
    lane = AheadLog(lambda: sim.now)
    sched.set_ahead(lane, 0.014)
    clock.start(0.0)
    sim.run_until(4.0)
    session.change_tempo(150.0, host(4.0))
    sim.run_until(8.0)
    assert len(lane.got) > 30
    for arrived, pos, t, *_ in lane.got:
        step = session.beat_at(host(t)) * 4
        assert abs(step - pos / 6) < 1e-6  # the note of step k sounds at session step k
        assert t - arrived == pytest.approx(0.014, abs=1e-6)  # ahead_s early, at either tempo
    eng = ao.AudioEngine(FakeRenderer(), RATE)
    for _, _, t, pitch, vel, gate in lane.got[:3]:
        eng.note(t + 100.0, pitch, vel, gate)  # the stream below starts at perf time 100
    run_blocks(eng, 400)
    assert [e.frame for e in eng.renderer.events if e != "clear" and e.velocity] == [
        dac_frame(t + 100.0) for _, _, t, *_ in lane.got[:3]]


def test_with_a_soundfont_the_sound_starts_on_the_mapped_frame():
    from pathlib import Path

    sf2 = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
    if not sf2.is_file():
        pytest.skip("no TimGM6mb.sf2 here")
    pytest.importorskip("tinysoundfont")
    from performer.soundfont import SoundFontRenderer

    eng = ao.AudioEngine(SoundFontRenderer(sf2, sample_rate=RATE), RATE)
    out = []
    for k in range(400):
        if k == 2:
            eng.note(100.03, 38, 110, 0.05)
        s = 5.0 + k * BLOCK / RATE
        out.append(eng.process(BLOCK, 100.0 + k * BLOCK / RATE, s, s + LAT))
    audio = np.abs(np.concatenate(out)).max(axis=1)
    first = int(np.flatnonzero(audio > 1e-4)[0])
    assert 0 <= first - dac_frame(100.03) <= round(0.002 * RATE)
    assert eng.late == 0
