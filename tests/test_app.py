"""The live app end to end on fake and real ports: reproducibility, recording, no stuck notes.

Most tests run the app in-process with the FakeEngine and in-memory ports;
signals are tested on a child process; one test plays over a private JACK
server (skipped where jackd is missing; CI installs it).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from model import drums
from performer.app import DEFAULT_LEAD, LiveApp, LiveError, LiveOptions, Recorder
from performer.clock import STOP, Transport
from performer.ports import INPUT_SETTLE_S, MemoryInput, MemoryOutput
from tests.conftest import assert_one_line_error, run_cli
from tests.live_fakes import (
    PANIC_TAIL,
    FakeEngine,
    LogSink,
    balanced,
    private_jack_server,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent


class Live:
    """An app running on a thread with fake ports, driven by the test.

    ``log`` is an extra sink that keeps every message with its song position, so a
    test reads where each note was played instead of timing it, and waits for what it
    expects instead of sleeping.
    """

    def __init__(self, **kw) -> None:
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.out = MemoryOutput()
        self.inp = MemoryInput(self.inbox)
        self.log = LogSink()
        self.engine = kw.pop("engine", None) or FakeEngine(density=0.35)
        opts = LiveOptions(headless=True, **kw)
        self.app = LiveApp(opts, engine=self.engine, output=self.out, input_port=self.inp, inbox=self.inbox,
                           sinks=[self.log])
        self.ready = threading.Event()
        self.result: dict = {}

        def run():
            try:
                self.result["code"] = self.app.run(on_ready=lambda info: self.ready.set())
            except BaseException as e:
                self.result["error"] = e
                self.ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def clocks(self, n: int, first: list[int] = ()) -> None:
        """``first`` (e.g. Start) and n clocks as one burst: all arrive at once, each counts."""
        self.inp.push([*first, *([0xF8] * n)])

    def settled(self) -> None:
        """Wait until the sender has handled everything pushed so far: an SPP while stopped
        moves the cue, which the clock shows (only valid while stopped)."""
        self.inp.push([0xF2, 5, 0])
        assert wait_until(lambda: self.app.clock.position(0.0) == 5 * 6)

    def finish(self, timeout=5.0):
        self.app.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return [list(m) for _, m in self.out.messages]


def steps_played(log: LogSink) -> set[tuple[int, int, int]]:
    """(16th step, voice, velocity) of every note-on, from its song position."""
    return {(int(pos) // 6, drums.OUTPUT_PITCHES.index(m[1]), m[2]) for m, pos in log.note_ons()}


def reference_hits(pattern: drums.Pattern, steps: range) -> set[tuple[int, int, int]]:
    return {(int(s), int(v), drums.velocity_to_midi(pattern.velocity[s, v]))
            for s, v in zip(*np.nonzero(pattern.hits), strict=True) if s in steps}


def test_first_groove_is_exactly_the_engine_sample_for_the_seed():
    """--seed S --temperature T: the first cycle plays engine.sample(seed=S, temperature=T)."""
    ref = FakeEngine(density=0.35).sample(seed=42, temperature=0.7)
    want = reference_hits(ref, range(33))  # two bars and the downbeat of bar 3
    live = Live(seed=42, temperature=0.7, quantize=True)
    try:
        live.clocks(96 * 2 + 1, first=[0xFA])
        live.log.wait_notes(len(want))
    finally:
        msgs = live.finish()
    assert steps_played(live.log) == want
    assert balanced(msgs)
    assert msgs[-2:] == PANIC_TAIL


def test_stop_from_the_daw_releases_every_note_then_sends_all_notes_off_and_nothing_more():
    live = Live(seed=1, quantize=True)
    try:
        live.clocks(60, first=[0xFA])
        assert live.log.wait_notes(1)
        live.inp.push([0xFC])
        assert live.log.wait_for(lambda s: s.messages()[-1] == [0xB9, 123, 0])
        after_stop = len(live.out.messages)
        live.clocks(24)  # clocks while stopped only keep the tempo warm
        live.settled()
        msgs = [list(m) for _, m in live.out.messages]
        assert balanced(msgs)
        assert len(msgs) == after_stop  # silence: nothing more until Start
    finally:
        live.finish()


def test_continue_after_spp_resumes_at_the_right_step():
    ref = FakeEngine(density=0.35).sample(seed=2, temperature=1.0)
    want = reference_hits(ref, range(40, 43))  # 13 clocks from step 40: steps 40, 41, 42
    live = Live(seed=2, quantize=True, temperature=1.0)
    try:
        live.clocks(13, first=[0xF2, 40, 0, 0xFB])  # SPP: 16th 40 = step 40 of cycle 0; Continue
        live.log.wait_notes(len(want))
    finally:
        live.finish()
    assert steps_played(live.log) == want


def test_quit_key_exits_with_code_0_and_every_note_released():
    live = Live(seed=3, bpm=300)
    assert live.log.wait_notes(3)
    live.app.controller.key("q")
    live.thread.join(5)
    assert live.result.get("code") == 0
    msgs = [list(m) for _, m in live.out.messages]
    assert msgs and balanced(msgs) and msgs[-2:] == PANIC_TAIL


def test_internal_error_releases_notes_and_reports_one_line():
    live = Live(seed=4, bpm=400)
    assert live.log.wait_notes(1)

    def broken():
        raise RuntimeError("simulated bug")

    live.app.director.mutes = broken  # read at the next bar line, on the sender thread
    live.thread.join(5)
    err = live.result.get("error")
    assert isinstance(err, LiveError) and "simulated bug" in str(err) and "\n" not in str(err)
    msgs = [list(m) for _, m in live.out.messages]
    assert balanced(msgs) and msgs[-2:] == PANIC_TAIL


def test_midi_controls_on_the_clock_input_reach_the_director():
    live = Live(seed=5, bpm=300)
    try:
        live.inp.push([0xB0, 20, 127])  # CC20 = new groove
        live.inp.push([0x90, 74, 100])  # note 74 = mute voice 3
        assert wait_until(lambda: live.app.controller.last_action == "mute 3")  # the later of the two
        st = live.app.director.status()
        assert st["mutes"][2] and (st["pending"] or live.app.director.changes == 1)
    finally:
        live.finish()


def test_record_writes_what_was_played_on_the_16th_grid_at_the_played_tempo(tmp_path):
    import mido

    f = tmp_path / "take.mid"
    live = Live(seed=6, bpm=400, quantize=True, record=str(f))
    assert live.log.wait_notes(20)
    msgs = live.finish()
    mf = mido.MidiFile(f)
    played = [list(m.bytes()) for m in mf.tracks[0] if not m.is_meta]
    assert played and [m for m in played if m[0] & 0xF0 == 0x90] == [m for m in msgs if m[0] & 0xF0 == 0x90]
    tempo = next(m.tempo for m in mf.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(400)
    # positions: on the 16th grid in quantize mode (480 per quarter = 120 per 16th)
    t = 0
    for m in mf.tracks[0]:
        t += m.time
        if not m.is_meta and m.type == "note_on":
            assert t % 120 == 0
    assert not list(tmp_path.glob(".*tmp*"))


def test_recorder_lays_later_runs_after_the_previous_at_a_bar_line():
    r = Recorder("/dev/null", 9)
    r.transport(Transport("start", 0, 0.0))
    r.add([0x99, 36, 100], 0.0, 0.0)
    r.add([0x89, 36, 0], None, 3.0)
    r.add([0x99, 38, 100], 150.0, 0.0)
    r.transport(Transport(STOP, 160, 1.0))
    r.transport(Transport("continue", 96 * 7 + 12, 2.0))  # bar 8, 2 16ths in
    r.add([0x99, 42, 100], 96 * 7 + 12, 0.0)
    assert [p for p, _ in r.events] == [0.0, 3.0, 150.0, 192.0 + 12]


def test_recorder_writes_a_note_released_at_its_own_position_on_then_off(tmp_path):
    """A Stop releases a note sent ahead of the clock (on at 384, Stop at 381): its off lands at
    the on's position and must follow it in the file, or the file ends on a note that never
    stops (seen in the performer's own takes over JACK). A re-strike keeps off-then-on."""
    import mido

    r = Recorder(tmp_path / "take.mid", 9)
    r.transport(Transport("start", 0, 0.0))
    r.add([0x99, 38, 90], 378.0, 0.0)
    r.add([0x89, 38, 0], None, 378.0)  # the re-strike's release, sent before the new on
    r.add([0x99, 38, 100], 378.0, 0.0)
    r.add([0x99, 36, 100], 384.0, 0.0)  # sent ahead, then the Stop at 381 releases both
    r.transport(Transport(STOP, 381, 1.0))
    r.add([0x89, 36, 0], None, 381.0)
    r.add([0x89, 38, 0], None, 381.0)
    msgs = [m for m in mido.MidiFile(r.write()).tracks[0] if not m.is_meta]
    assert [(m.type, m.note) for m in msgs] == [("note_on", 38), ("note_off", 38), ("note_on", 38),
                                                 ("note_off", 38), ("note_on", 36), ("note_off", 36)]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signals_release_every_note_and_exit_with_their_code(tmp_path, sig, code):
    out = tmp_path / "sent.json"
    child = subprocess.Popen(
        [sys.executable, "-c", f"from tests.live_fakes import signal_child_main; signal_child_main({str(out)!r})"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "READY", child.stderr.read()
        assert child.stdout.readline().strip() == "PLAYING", child.stderr.read()  # notes are sounding
        os.kill(child.pid, sig)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == code, child.stderr.read()
    msgs = [tuple(m) for m in json.loads(out.read_text())]
    assert any(m[0] == 0x99 for m in msgs)
    assert balanced(msgs)
    assert [list(m) for m in msgs[-2:]] == PANIC_TAIL


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--swing", "80"], "--swing"),
        (["--channel", "0"], "--channel"),
        (["--bpm", "5"], "--bpm"),
        (["--bpm", "fast"], "--bpm"),
        (["--api", "beos"], "--api"),
        (["--morph-cycles", "0"], "--morph-cycles"),
        (["--quantize", "--groove"], "not allowed"),
    ],
)
def test_bad_arguments_are_one_line(args, needle):
    assert_one_line_error(run_cli(*args), needle)


def test_missing_model_is_one_line(tmp_path):
    assert_one_line_error(run_cli("--model", str(tmp_path / "nope"), "--headless"), "does not exist")


def test_bad_map_file_is_one_line(tmp_path):
    f = tmp_path / "m.json"
    f.write_text("{")
    assert_one_line_error(run_cli("--map", str(f), "--headless"), "not valid JSON")


def test_record_into_a_missing_folder_is_one_line(tmp_path):
    assert_one_line_error(run_cli("--record", str(tmp_path / "no" / "x.mid")), "does not exist")


def test_live_help_lists_the_keys():
    p = run_cli("live", "--help")
    assert p.returncode == 0 and "n new groove" in p.stdout and "--record" in p.stdout


def test_performer_never_imports_torch():
    code = (
        "import sys, performer.app, performer.live_cli, performer.view, performer.ports, "
        "performer.controls, performer.director, performer.scheduler, performer.clock; "
        "print('torch' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.stdout.strip() == "False", p.stderr


# --- over a real JACK server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def jackd(tmp_path_factory):
    server = private_jack_server(tmp_path_factory)
    yield server
    server.stop()


@pytest.mark.jack
def test_internal_clock_over_jack_plays_in_time_and_releases_everything(jackd, monkeypatch):
    """The real path: rtmidi JACK ports, a JACK client of ours recording with frame times."""
    from tests.jack.harness import Recorder as JackRecorder
    from tests.jack.harness import notes

    monkeypatch.setenv("JACK_DEFAULT_SERVER", jackd.name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    rec = JackRecorder(jackd, name="dp-app-rec", inputs=("notes",))
    engine = FakeEngine(density=0.3)
    played = LogSink()
    app = LiveApp(LiveOptions(api="jack", bpm=240, quantize=True, seed=9, headless=True), engine=engine,
                  sinks=[played])
    ready = threading.Event()
    result = {}

    def on_ready(info):
        rec.connect("drum-performer:Drum Performer", rec.port("notes"))
        ready.set()

    def run():
        result["code"] = app.run(on_ready=on_ready)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        assert ready.wait(10)
        names = rec.port_names(is_midi=True)
        assert "drum-performer-clock:Drum Performer Clock" in names
        assert played.wait_notes(40, timeout=10)
        # the sender polls the clock input just after each JACK cycle has run (next_input), from
        # the server's own cycle timer
        since, until, per = app.input._watch.cycle_position()
        assert per == pytest.approx(jackd.period / jackd.rate, rel=0.01)
        # one cycle's window around now (how far into it depends on when this thread ran: on a
        # loaded machine more than two periods, seen once with both cores busy)
        assert since >= -0.001 and until <= per + 0.001
        assert since + until == pytest.approx(per, rel=0.05)
        now = time.perf_counter()
        wait = app.player.next_input(now) - now
        assert 0 < wait <= per + INPUT_SETTLE_S + 0.001, wait
    finally:
        app.request_stop()
        th.join(5)
        evs = rec.events("notes")
        rec.close()
    assert result.get("code") == 0
    # rtmidi moves messages once a JACK period: the clock input's stamps and the MIDI lane are
    # put back on the frame timeline by half a period each (LiveApp._align_periods)
    half = jackd.period / jackd.rate / 2
    assert app.player.stamper.shift == pytest.approx(half)
    assert app.scheduler.lead == pytest.approx(DEFAULT_LEAD + half)
    ns = notes(evs)
    on = [n for n in ns if n.on]
    assert len(on) > 20
    assert balanced([e.data for e in evs])
    assert evs[-2].data == bytes([0xB9, 123, 0]) and evs[-1].data == bytes([0xB9, 120, 0])
    # every note-on within a period (+1 ms of wake-up) of the 16th grid at 240 BPM
    frames_per_step = jackd.rate * 60 / 240 / 4
    f0 = on[0].frame
    errs = []
    for n in on:
        k = round((n.frame - f0) / frames_per_step)
        errs.append(abs(n.frame - f0 - k * frames_per_step))
    assert max(errs) <= jackd.period + jackd.frames(1.0), max(errs)


def test_ports_that_move_messages_per_period_are_aligned_and_a_new_period_is_taken_up():
    """Ports without periods (ALSA, CoreMIDI, these fakes) change nothing; a port that reports
    one (rtmidi under JACK) gets half of it back, also when it changes while playing."""
    live = Live(bpm=120, seed=3)
    try:
        app = live.app
        assert app.player.stamper.shift == 0.0 and app.scheduler.lead == pytest.approx(DEFAULT_LEAD)
        live.inp.period_s, live.out.period_s = 0.004, 0.0053
        assert wait_until(lambda: app.scheduler.lead == pytest.approx(DEFAULT_LEAD + 0.00265), timeout=5)
        assert app.player.stamper.shift == pytest.approx(0.002)
    finally:
        live.finish()


def test_a_clock_input_that_moves_messages_per_period_tells_the_tempo_fit_how_coarse():
    """Following MIDI clock, the input's period also reaches the clock's tempo fit
    (MidiClock.input_period): at 512 frames it averages a bar of clocks, at 128 the usual 24."""
    live = Live(seed=3, quantize=True)
    try:
        est = live.app.clock.est
        assert est.window == 24 and est.quantum == 0.0
        live.inp.period_s = 512 / 48000
        assert wait_until(lambda: est.window == 96, timeout=5)
        assert est.quantum == pytest.approx(512 / 48000)
        live.inp.period_s = 128 / 48000
        assert wait_until(lambda: est.window == 24, timeout=5)
    finally:
        live.finish()


# --- shutdown when the recording cannot be written ------------------------------------------------


def _app_whose_recording_fails(tmp_path, monkeypatch) -> LiveApp:
    """A headless app on fake ports whose --record file turns out unwritable at exit."""
    def unwritable(self):
        raise OSError("disk full")

    monkeypatch.setattr(Recorder, "write", unwritable)
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    return LiveApp(LiveOptions(bpm=200, headless=True, seed=1, record=str(tmp_path / "take.mid")),
                   engine=FakeEngine(), output=MemoryOutput(), input_port=MemoryInput(inbox), inbox=inbox)


def _process_state():
    return sys.getswitchinterval(), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def test_a_failed_recording_is_reported_and_switch_interval_and_signals_are_restored(tmp_path, monkeypatch):
    app = _app_whose_recording_fails(tmp_path, monkeypatch)
    before = _process_state()
    with pytest.raises(LiveError, match="cannot write the recording .*disk full"):
        app.run(on_ready=lambda info: app.request_stop())
    assert _process_state() == before
    assert app.output.status == "closed"  # the port was closed before the recording failed


def test_an_error_during_the_performance_is_not_hidden_by_a_failed_recording(tmp_path, monkeypatch):
    app = _app_whose_recording_fails(tmp_path, monkeypatch)
    before = _process_state()

    def ready(info):
        raise RuntimeError("the first error")

    with pytest.raises(RuntimeError, match="the first error"):
        app.run(on_ready=ready)
    assert _process_state() == before
