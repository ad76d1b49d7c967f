"""Issue 11, the live path without JACK: the clock parser under fuzz, the SysEx unsticker,
the view's words and numbers, the command line's limits and first-run hints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import drums
from performer import ports
from performer.clock import CLOCK, SPP, TICKS_PER_STEP, MidiClock, MidiParser
from performer.director import Director
from performer.view import action_words, render
from tests.live_fakes import FakeEngine

ROOT = Path(__file__).resolve().parent.parent


# --- the clock input's parser under fuzz -----------------------------------------------------

class _Draws:
    """numpy's RNG drawn in bulk (one call per million numbers, not per number), read in order."""

    def __init__(self, seed: int, n: int = 1 << 20) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = n
        self._refill()

    def _refill(self) -> None:
        self.u = self.rng.random(self.n).tolist()
        self.i = 0
        self.b7 = self.rng.integers(0, 0x80, self.n, dtype=np.uint8).tobytes()  # data bytes
        self.b8 = self.rng.integers(0, 0x100, self.n, dtype=np.uint8).tobytes()  # any bytes
        self.j = 0

    def __call__(self) -> float:
        if self.i == self.n:
            self._refill()
        self.i += 1
        return self.u[self.i - 1]

    def int(self, lo: int, hi: int) -> int:
        """lo <= x < hi"""
        return lo + int(self() * (hi - lo))

    def data(self, n: int, any_byte: bool = False) -> bytes:
        if self.j + n > self.n:
            self._refill()
        self.j += n
        return (self.b8 if any_byte else self.b7)[self.j - n:self.j]


def _fuzz_stream(r: _Draws) -> tuple[bytes, int]:
    """A random byte stream of MIDI-ish pieces and the number of 0xF8 bytes in it.

    Pieces: SysEx (some never closed, some with realtime bytes inside), channel messages
    with and without running status (some cut short), system common, realtime bytes, and
    plain random bytes. Every 0xF8 is a clock, wherever it sits (MIDI 1.0: realtime
    bytes may appear inside any message)."""
    out = bytearray()
    for _ in range(r.int(1, 12)):
        k = r.int(0, 7)
        if k == 0:  # SysEx, maybe unterminated, maybe with realtime inside
            out += b"\xf0" + r.data(r.int(0, 20))
            if r() < 0.5:
                out.append((0xF8, 0xFA, 0xFC, 0xFE)[r.int(0, 4)])
                out += r.data(r.int(0, 4))
            if r() < 0.7:
                out.append(0xF7)
        elif k == 1:  # a channel message, then running-status data
            st = r.int(0x80, 0xF0)
            n = 1 if 0xC0 <= st < 0xE0 else 2
            out.append(st)
            out += r.data(n * r.int(1, 4))
        elif k == 2:  # cut short
            out.append(r.int(0x80, 0xF0))
            out += r.data(r.int(0, 2))
        elif k == 3:  # system common (MTC, SPP, song select, undefined, tune request)
            out.append(r.int(0xF1, 0xF7))
            out += r.data(r.int(0, 3))
        elif k == 4:  # realtime, defined or not
            out += bytes(r.int(0xF8, 0x100) for _ in range(r.int(1, 5)))
        elif k == 5:  # anything at all
            out += r.data(r.int(1, 10), any_byte=True)
        else:  # a lone end of SysEx
            out.append(0xF7)
    return bytes(out), out.count(0xF8)


def test_parser_fuzz_never_raises_and_counts_every_clock():
    """10^5 random streams, each fed in random pieces to a fresh parser and whole to one
    long-lived parser: no exception, and exactly as many clocks out as 0xF8 bytes in."""
    r = _Draws(20261130)
    shared = MidiParser()
    n_streams = 100_000
    total_in = total_out = streams_with_clocks = 0
    for _ in range(n_streams):
        data, clocks = _fuzz_stream(r)
        fresh = MidiParser()
        cuts = sorted(r.int(0, len(data) + 1) for _ in range(r.int(0, 3)))
        got = 0
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            got += sum(1 for m in fresh.feed(data[a:b]) if m[0] == CLOCK)
        assert got == clocks, data.hex()
        assert sum(1 for m in shared.feed(data) if m[0] == CLOCK) == clocks, data.hex()
        total_in += clocks
        total_out += got
        streams_with_clocks += clocks > 0
    assert total_out == total_in and streams_with_clocks > n_streams // 4


def test_glued_bytes_give_back_every_clock_start_and_control():
    """What python-rtmidi's JACK input delivers after an open SysEx: everything since, glued
    behind it, ended by an F7. The clocks, the Start and the control inside all count."""
    glued = bytes([0xF0, 0x7E, 0x01, 0x02, 0xF8, 0xFA, 0xF8, 0xB9, 0x14, 0x7F, 0xF8, 0xF7])
    msgs = MidiParser().feed(glued)
    assert msgs == [(CLOCK,), ("start",), (CLOCK,), ("cc", 9, 0x14, 0x7F), (CLOCK,)]


# --- the SysEx unsticker ------------------------------------------------------------------------

class _FakeOut:
    def __init__(self):
        self.sent = []
        self.opened = None

    def open_port(self, i, name=None):
        self.opened = i

    def send_message(self, msg):
        self.sent.append(list(msg))


def test_unsticker_sends_f7_when_the_input_goes_quiet_and_backs_off_when_idle():
    out = _FakeOut()
    u = ports.SysexUnsticker(out, 3)
    assert out.opened == 3
    t = 0.0
    for _ in range(48):  # clocks at 120 BPM: never quiet for long, no F7
        u.seen(t, [0xF8])
        u.tick(t + 0.001)
        t += 0.0208
    assert out.sent == [] and 0.025 < u.quiet < 0.04
    # an open SysEx holds the next clocks: after ~1.5 clock periods an F7 goes out
    last = t - 0.0208
    u.tick(last + 0.025)
    assert out.sent == []
    u.tick(last + u.quiet + 0.001)
    assert out.sent == [[0xF7]]
    assert not u.seen(t + 0.04, [0xF0, 0x7E, 0x01, 0x02, 0xF8, 0xF8, 0xF7])  # released, glued: passed on
    assert u.released == 1
    # idle (no clock at all): F7s come back alone, each next one waits twice as long
    sent_at = []
    now = t + 0.05
    while now < t + 5.0:
        before = len(out.sent)
        u.tick(now)
        if len(out.sent) > before:
            sent_at.append(now)
            assert u.seen(now + 0.003, [0xF7])  # our own, back alone: not passed on
        now += 0.001
    gaps = np.diff(sent_at)
    assert len(sent_at) < 16 and gaps[-1] >= 0.45, sent_at


def test_a_glued_message_restarts_the_stamp_timeline():
    """Its delta counts from the last glued event, not from the last message: trusting it
    would put every later stamp early by the time the SysEx was open."""
    assert ports._delta(([0xF0, 0x01, 0xF8, 0xF7], 0.001)) is None
    assert ports._delta(([0xF8], 0.0208)) == 0.0208


# --- Song Position in clocks (Ardour) -------------------------------------------------------------

@pytest.mark.parametrize("units,cue", [("16ths", 32 * TICKS_PER_STEP), ("clocks", 32)])
def test_spp_units(units, cue):
    c = MidiClock(spp_units=units)
    c.feed((SPP, 32), 0.0)
    assert c.cue == cue


def test_spp_units_must_be_known():
    with pytest.raises(ValueError):
        MidiClock(spp_units="beats")


# --- the view --------------------------------------------------------------------------------

def test_a_new_temperature_shows_at_once_and_says_when_it_lands():
    d = Director(FakeEngine(), seed=1, temperature=0.5)
    d.request("temperature", +1)
    d.request("density", -1)
    s = d.status()
    assert s["temperature"] == 0.5 and s["next_temperature"] == pytest.approx(0.6)
    assert s["next_density"] == pytest.approx(-0.25)
    line = render({"director": s, "transport": "playing", "position": 10.0, "cycle": 0, "step": 1})[1]
    assert "T 0.60" in line and "density -0.25" in line and "(next cycle)" in line
    assert "pending" not in line
    d.request("new")
    line = render({"director": d.status()})[1]
    assert "next cycle: new groove" in line


def test_cycles_count_from_one_like_bars():
    head = render({"transport": "playing", "position": 6.0, "cycle": 0, "step": 1})[0]
    assert "bar   1.1.2" in head and "cycle 1" in head


def test_the_last_line_speaks_words_not_names():
    assert action_words("temperature_down") == "temperature down"
    assert action_words("morph_longer") == "longer morph"
    assert action_words("mute 3 on") == f"mute voice 3 ({drums.VOICE_LABELS[2]}) on"
    line = render({"last_action": "density_up"})[-1]
    assert "density up" in line and "_" not in line.split("h/?")[0]


def test_help_explains_the_grid_symbols():
    text = "\n".join(render({"help": True}))
    for sym in ("X loud", "x soft", "- a beat", ". a 16th", "| a bar", "^ the playhead", "M muted", "L locked"):
        assert sym in text


# --- the command line ----------------------------------------------------------------------------

def _cli(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "performer.cli", *args], capture_output=True, text=True,
                          timeout=60, env=e, cwd=ROOT)


def test_verbose_before_live_options_is_parsed():
    from performer import cli

    seen = {}

    def fake_live(a):
        seen.update(bpm=a.bpm, verbose=a.verbose)
        return 0

    import performer.live_cli as lc

    orig = lc.run_live
    lc.run_live = fake_live
    try:
        parser_args = ["-v", "--bpm", "120"]
        assert cli.main(parser_args) == 0
    finally:
        lc.run_live = orig
    assert seen == {"bpm": 120.0, "verbose": 1}


def test_seed_limit_prints_as_a_whole_number():
    p = _cli("--seed", "99999999999")
    assert p.returncode == 2 and "0..4294957295" in p.stderr and "e+" not in p.stderr


def test_temperature_beyond_the_models_range_names_that_range():
    p = _cli("--temperature", "5", "--bpm", "120", "--headless")
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last == "drum-performer: error: --temperature 5 is outside this model's range 0..2", p.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/dev/snd/seq"),
                    reason="needs a Linux machine without an ALSA sequencer")
@pytest.mark.parametrize("api", ["auto", "jack"])
def test_no_midi_system_says_how_to_start_jackd(api):
    p = _cli("--bpm", "120", "--api", api,
             env={"JACK_DEFAULT_SERVER": f"no-such-server-{os.getpid()}", "JACK_NO_START_SERVER": "1"})
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "jackd -d alsa -r 48000 -p 256" in lines[0] and "jackd -d dummy" in lines[0], lines[0]


def test_our_own_f7_back_alone_is_dropped_and_its_time_carried():
    """The sender never sees the unsticker's echoes, and the next message's delta still
    spans the time since the last message it did see."""
    import queue

    from tests.live_fakes import FakeRtMidi

    class In(FakeRtMidi):
        def __init__(self):
            super().__init__([])
            self.q = []

        def get_message(self):
            return self.q.pop(0) if self.q else None

    rt = In()
    inp = ports.RtMidiInput(rt, "alsa", queue.SimpleQueue())
    inp.unsticker = ports.SysexUnsticker(_FakeOut(), 0)
    inp.unsticker._pending = 1
    rt.q = [([0xF7], 0.010), ([0xF8], 0.011)]
    got = inp.poll()
    assert [(m, d) for _, d, m in got] == [([0xF8], pytest.approx(0.021))]
