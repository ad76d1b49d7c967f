"""The live performer over JACK when the studio misbehaves (issue 11, items 5, 6, 11, 14).

An open SysEx that never ends on the clock input, the JACK server going away
and coming back, two performers at once, no listener on the output, and a
master (like Ardour 7) whose Song Position Pointer counts clocks, not 16ths.
"""

from __future__ import annotations

import functools
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest

from model import drums
from tests.jack import harness as h
from tests.jack import test_e2e as e2e
from tests.jack.test_e2e import (
    BPM,
    STEP,
    assert_on_time,
    assert_plays,
    performer_args,
    stop_and_take,
)

pytestmark = [pytest.mark.jack, pytest.mark.slow]

# the end-to-end suite's fixtures: the engine, and the seed whose groove is busy enough
engine = e2e.engine
groove = e2e.groove


@h.retry_invalid()
def test_a_sysex_that_never_ends_does_not_stop_the_clock(server, live_model, groove):
    """F0 7E 01 02 and no F7, ever, from another source on the clock input, at beat 2.

    python-rtmidi's JACK input then holds every later event (the clock too) until an
    F7; the performer must go on playing every step with the pattern's notes, and be
    on time again a beat after the SysEx."""
    seed, pattern = groove
    sender = h.Sender(server, f"dp-open-sysex-{uuid.uuid4().hex[:4]}")
    try:
        with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
            rig.rec.connect(sender.port_name, rig.performer.clock_port)
            rig.start()
            assert rig.wait_pos(2 * h.PPQN + 3)
            sender.send(bytes([0xF0, 0x7E, 0x01, 0x02]))
            reached = rig.wait_pos(62 * STEP, timeout=15.0)
            alive, t = stop_and_take(rig)
    finally:
        sender.close()
    assert alive, f"the performer died of an open SysEx:\n{t.output[-3000:]}"
    assert reached, "the clock master stopped?"
    placed = [p for p in t.placed() if p.step < 62]
    assert_plays(placed, pattern, range(0, 62), "with a SysEx left open on the clock input at step 8",
                 t.blind_steps())
    assert_on_time([p for p in placed if p.step >= 16], t, server, "a beat after the open SysEx: ")
    assert not t.unreleased()


def _reported_out(perf: h.Performer, timeout: float = 30.0) -> str:
    """The output name the performer's ready line reports: "... drums to virtual 'NAME' ..."."""
    pat = re.compile(r"drums to virtual '([^']+)'")
    m = h.wait_until(lambda: pat.search(perf.output()), timeout)
    assert m, f"no ready line naming the output:\n{perf.output()[-2000:]}"
    return m.group(1)


def test_two_instances_report_the_names_jack_gave_and_warn_when_unconnected(server, live_model, groove):
    """Two performers at once: JACK names the second client drum-performer-01; each must
    report the name it really has. Nothing is connected to either output: each warns
    once, saying how to connect it or hear it."""
    seed, _ = groove
    rec = h.Recorder(server, f"dp-names-{uuid.uuid4().hex[:4]}", inputs=("x",))
    a = b = None
    try:
        a = h.Performer(server, rec, performer_args(live_model, seed, "--headless"))
        b = h.Performer(server, rec, performer_args(live_model, seed, "--headless"))
        name_a, name_b = _reported_out(a), _reported_out(b)
        graph = rec.port_names(is_midi=True, is_output=True)
        assert name_a != name_b, f"both report {name_a!r}"
        assert name_a in graph and name_b in graph, f"reported {name_a!r}, {name_b!r}; JACK has {graph}"
        assert {name_a, name_b} == {a.out_port, b.out_port}
        for p in (a, b):
            said = h.wait_until(lambda p=p: "nothing is connected" in p.output(), 10.0)
            assert said, f"no warning about the unconnected output:\n{p.output()[-2000:]}"
            line = next(ln for ln in p.output().splitlines() if "nothing is connected" in ln)
            assert "jack_connect" in line and "fluidsynth" in line, line
            assert p.output().count("nothing is connected") == 1
    finally:
        for p in (a, b):
            if p is not None:
                p.stop()
        rec.close()


def test_a_connected_output_gets_no_unconnected_warning(server, live_model, groove):
    seed, _ = groove
    with h.Rig(server, performer_args(live_model, seed, "--quantize", "-v"), bpm=BPM) as rig:
        # the performer says where its drums go once it has looked (after a grace of ~3 s)
        said = h.wait_until(lambda: "drums output" in rig.performer.output(), 10.0)
        out = rig.performer.output()
    assert said, out[-2000:]
    assert rig.rec.port("notes") in out, out[-2000:]
    assert "nothing is connected" not in out and "nothing sends clock" not in out, out[-2000:]


@pytest.fixture
def own_server(tmp_path):
    """A private server of this test's own: the test stops and restarts it."""
    reason = h.missing_tools()
    if reason:
        pytest.skip(reason)
    s = h.JackServer(period=128, workdir=tmp_path)
    s.start()
    yield s
    s.stop()


def test_the_jack_server_going_away_and_coming_back(own_server, live_model, groove):
    """The JACK server dies while the performer plays and a server of the same name
    comes back: the performer keeps running, says so, creates its ports again under
    the same names, makes its old connections again once the clock master and the
    recorder are back (nobody here reconnects it), and plays when the clock starts."""
    seed, pattern = groove
    srv = own_server
    rig = h.Rig(srv, performer_args(live_model, seed, "--quantize"), bpm=BPM)
    perf = rig.performer
    try:
        rig.start()
        assert rig.wait_pos(8 * STEP)
        srv.stop()  # every client loses the server
        for child in (rig.clock, rig.transport):
            child.stop()
        rig.rec.close()
        said = h.wait_until(lambda: "JACK server went away" in perf.output(), 5.0)
        assert said, f"the loss of the server was not reported:\n{perf.output()[-2000:]}"
        assert perf.alive(), f"the performer died with the server:\n{perf.output()[-2000:]}"
        log_before = len(perf.output())

        srv.start()
        rec = h.Recorder(srv, rig.rec.name)  # the same client names as before
        transport = h.Transport(srv, BPM)
        clock = h.ClockMaster(srv, rec, BPM)
        try:
            rec.connect(clock.port, rec.port("clock"))
            ports = h.wait_until(lambda: all(h.find_performer_ports(rec)) and h.find_performer_ports(rec), 10.0)
            assert ports, (f"the performer did not create its ports again:\n"
                           f"{perf.output()[log_before:][-2000:]}\nJACK has {rec.port_names(is_midi=True)}")
            assert ports == (perf.out_port, perf.clock_port), ports
            relinked = h.wait_until(lambda: f"reconnected {clock.port} -> {perf.clock_port}" in perf.output()
                                    and f"reconnected {perf.out_port} -> {rec.port('notes')}" in perf.output(), 10.0)
            assert relinked, f"the old connections were not made again:\n{perf.output()[log_before:][-2000:]}"
            since = rec.mark()
            transport.locate(0)
            time.sleep(0.05)
            transport.play()
            got = rec.wait_for(lambda e: any(n.on for n in h.notes([e])), 10.0, since, "notes")
            report = perf.output()[log_before:]
            assert got is not None, f"no notes after the server came back:\n{report[-2000:]}"
            assert "JACK server is back" in report, report[-2000:]
            assert perf.alive()
            transport.stop_transport()
        finally:
            clock.stop()
            transport.stop()
            rec.close()
    finally:
        perf.stop()
        for child in (rig.clock, rig.transport):
            child.stop()


def steps_played(clock_events: list[h.Event], notes: list[h.Note], spp_in_clocks: bool = True
                 ) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """Decode a clock stream whose SPP counts clocks (``spp_in_clocks``) and place the
    note-ons on its 16th grid: ([(frame, song position)] of the ticks, {(step, pitch)})."""
    ticks, playing, pos = [], False, 0
    for e in clock_events:
        b = e.data[:1]
        if b == bytes([h.START]):
            playing, pos = True, 0
        elif b == bytes([h.CONTINUE]):
            playing = True
        elif b == bytes([h.STOP]):
            playing = False
        elif b == bytes([h.SPP]) and len(e.data) == 3 and not playing:
            pos = (e.data[1] | e.data[2] << 7) * (1 if spp_in_clocks else STEP)
        elif b == bytes([h.CLOCK]) and playing:
            ticks.append((e.frame, pos))
            pos += 1
    grid = [(f, p) for f, p in ticks if p % STEP == 0]
    played = set()
    for n in notes:
        if n.on and grid:
            f, p = min(grid, key=lambda g: abs(g[0] - n.frame))
            played.add((p // STEP, n.pitch))
    return ticks, played


def pattern_hits(pattern, steps: range) -> set[tuple[int, int]]:
    return {(s, p) for s in steps for v, p in enumerate(drums.OUTPUT_PITCHES) if pattern.hits[s % 64, v]}


@h.retry_invalid()
def test_song_position_in_clocks_with_spp_units_clocks(server, live_model, groove):
    """A fake master that sends Song Position in MIDI clocks (as Ardour 7 does), then
    Continue and clocks: with --spp-units clocks the performer starts at that clock."""
    seed, pattern = groove
    # a bar whose first beat the pattern plays differently from the step a 16ths reading gives
    spp = next(v for v in (96, 192, 288, 24, 48, 72)
               if (pattern.hits[v // STEP % 64: v // STEP % 64 + 4] != pattern.hits[v % 64: v % 64 + 4]).any())
    sender = h.Sender(server, f"dp-ardour-{uuid.uuid4().hex[:4]}")
    try:
        with h.Rig(server, bpm=BPM, start_performer=False, recorder_inputs=("clock", "notes")) as rig:
            rig.clock.stop()  # the sender is the master here
            rig.performer = h.Performer(server, rig.rec, performer_args(
                live_model, seed, "--quantize", "--spp-units", "clocks"))
            rig.rec.connect(rig.performer.out_port, rig.rec.port("notes"))
            rig.performer.wait_ready_line(5.0)
            rig.rec.connect(sender.port_name, rig.performer.clock_port)
            rig.rec.connect(sender.port_name, rig.rec.port("clock"))
            period = 60.0 / (BPM * h.PPQN)
            sender.send(bytes([h.STOP]))
            sender.send(bytes([h.SPP, spp & 0x7F, spp >> 7]))
            began = rig.rec.now()
            t0 = time.perf_counter() + 0.1
            sender.send(bytes([h.CONTINUE]))
            for i in range(4 * h.PPQN + 1):  # one bar of clocks on absolute deadlines
                while time.perf_counter() < t0 + i * period:
                    time.sleep(0.001)
                sender.send(bytes([h.CLOCK]))
            time.sleep(0.2)
            sender.send(bytes([h.STOP]))
            time.sleep(0.2)
            rig.rec.settle()
            clock_evs = rig.rec.events("clock")
            notes = rig.notes()
            out = rig.performer.output()
            # a cycle our recorder missed loses its clocks or notes (a CI run: 94 of 96) and
            # shifts every later song position: the take says nothing about the performer
            rig.missed_since(began, "continue", ("clock", "notes"))
    finally:
        sender.close()
    ticks, played = steps_played(clock_evs, notes)
    assert len(ticks) >= 4 * h.PPQN, f"only {len(ticks)} clocks recorded"
    first = spp // STEP
    steps = range(first, first + 12)
    got = {x for x in played if x[0] in steps}
    want = pattern_hits(pattern, steps)
    assert got == want, (f"SPP {spp} clocks = step {first}: played {sorted(got)[:20]}, "
                         f"want {sorted(want)[:20]}\n{out[-1500:]}")


ARDOUR_LUA = Path(__file__).with_name("ardour_master.lua")


class Ardour(h._Child):
    """Ardour 7, headless (``ardour7-lua`` running ardour_master.lua), as the clock master."""

    def __init__(self, server: h.JackServer, session_dir: Path, timeout: float = 60.0):
        env_server = server.env
        client = f"ardour-{uuid.uuid4().hex[:4]}"
        self.client = client
        self._lines: list[str] = []
        import subprocess
        import threading

        env = dict(env_server, ARDOUR_SESSION_DIR=str(session_dir), ARDOUR_CLIENT_NAME=client)
        self.server = server
        self.cmd = ["ardour7-lua", str(ARDOUR_LUA)]
        self.log_path = server.workdir / f"{client}.log"
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not h.wait_until(lambda: any(ln.startswith("ready") for ln in self._lines) or not self.alive(),
                            timeout) or not self.alive():
            self.stop()
            raise RuntimeError("ardour7-lua did not start:\n" + "".join(self._lines)[-2000:])

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    def output(self) -> str:
        return "".join(self._lines)

    def send(self, command: str, timeout: float = 10.0) -> None:
        n = sum(ln.startswith("ok ") for ln in self._lines)
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        if not h.wait_until(lambda: sum(ln.startswith("ok ") for ln in self._lines) > n, timeout):
            raise RuntimeError(f"ardour7-lua did not do {command!r}:\n{self.output()[-2000:]}")

    def stop(self, sig=None, timeout: float = 20.0):
        if self.alive():
            import contextlib
            import subprocess

            with contextlib.suppress(OSError, RuntimeError):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        return super().stop()


def _clock_out(rec: h.Recorder, client: str) -> str | None:
    """Ardour's MIDI clock output port, once it is there."""
    return next((p for p in rec.port_names(is_midi=True, is_output=True)
                 if p.startswith(client) and p.endswith("MIDI Clock out")), None)


@pytest.fixture
def ardour_server(tmp_path):
    """A private server that is not realtime. On a realtime jackd (1.9.21), Ardour 7.3's
    client and the server fell out of step while the session was created in 3 of 5
    tries here ("CheckSize error", then the server exits); without realtime, 5 of 5 ran."""
    reason = h.missing_tools()
    if reason:
        pytest.skip(reason)
    s = h.JackServer(period=128, workdir=tmp_path / "jack")
    s.workdir.mkdir()
    s.start(modes=(False,))
    yield s
    s.stop()


@pytest.mark.skipif(shutil.which("ardour7-lua") is None,
                    reason="Ardour 7 not installed (apt-get install --no-install-recommends ardour)")
def test_ardour_7_as_the_clock_master_with_spp_units_clocks(ardour_server, live_model, groove, tmp_path):
    """Ardour itself (7.3, headless) as the clock master on its own JACK server: a locate to
    bar 3 and Play, then a locate two and a half beats into bar 3 and Play. Ardour sends
    SPP in clocks (192; then the next quarter's, 264, with Continue on that quarter);
    with --spp-units clocks the performer plays the pattern's steps from there (with the
    default 16ths it plays cycle 4's first steps instead: checked by hand)."""
    seed, pattern = groove
    srv = ardour_server
    ardour = rec = perf = None
    try:
        for attempt in range(2):
            ardour = Ardour(srv, tmp_path / f"session-{attempt}")
            rec = h.Recorder(srv, f"dp-rec-{uuid.uuid4().hex[:4]}")
            clock_out = h.wait_until(functools.partial(_clock_out, rec, ardour.client), 10.0)
            if clock_out:
                break
            # The peer did not come up, not the performer: Ardour's JACK connection was reset while it
            # made its session (jackd's log: "CheckSize error", "Unknown request"; 3 of 6 CI runs of
            # stops 12-13 skipped here). Once more on a fresh server, then skip.
            why = (f"Ardour 7 did not create its MIDI Clock out port on this server: "
                   f"{rec.port_names(is_midi=True)}; {ardour.output()[-300:]!r}")
            rec.close()
            ardour.stop()
            rec = ardour = None
            srv.stop()
            srv.start(modes=(False,))
        else:
            pytest.skip(why)
        rec.connect(clock_out, rec.port("clock"))
        perf = h.Performer(srv, rec, performer_args(live_model, seed, "--quantize", "--spp-units", "clocks"))
        rec.connect(clock_out, perf.clock_port)
        rec.connect(perf.out_port, rec.port("notes"))
        perf.wait_ready_line(5.0)
        bar = srv.rate * 2  # 120 BPM in 4/4: a bar is 2 s
        takes = []
        for at in (2 * bar, 2 * bar + srv.rate * 5 // 4):  # bar 3; 2.5 beats into bar 3
            since = rec.mark()
            ardour.send(f"locate {at}")
            time.sleep(0.3)
            ardour.send("play")
            time.sleep(1.6)
            ardour.send("stop")
            time.sleep(0.3)
            rec.settle()
            takes.append(rec.events(since=since))
        out = perf.output()
    finally:
        if perf is not None:
            perf.stop()
        if ardour is not None:
            ardour.stop()
        if rec is not None:
            rec.close()
    for evs in takes:
        clock_evs = [e for e in evs if e.port == "clock"]
        spps = [e.data[1] | e.data[2] << 7 for e in clock_evs if e.data[:1] == bytes([h.SPP]) and len(e.data) == 3]
        assert spps and spps[-1] % h.PPQN == 0, f"Ardour sent SPP {spps}: not a quarter in clocks?"
        ticks, played = steps_played(clock_evs, h.notes([e for e in evs if e.port == "notes"]))
        if not ticks:  # seen once in CI: Ardour sent its SPP and never rolled -- the peer, not the performer
            pytest.skip(f"Ardour 7 sent no clock after its SPP {spps} in this take")
        first = ticks[0][1] // STEP
        steps = range(first, first + 8)
        got = {x for x in played if x[0] in steps}
        want = pattern_hits(pattern, steps)
        assert got == want, (f"after Ardour's SPP {spps[-1]} (clock {ticks[0][1]} = step {first}): "
                             f"played {sorted(got)[:20]}, want {sorted(want)[:20]}\n{out[-1500:]}")
