"""Test doubles for the live performer: a fake engine and a simulated-time driver.

Kept out of conftest.py so the live tests' helpers and the shared fixtures
never collide.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time

import numpy as np

from model import drums
from performer.clock import TICKS_PER_STEP, InternalClock, MidiClock
from performer.link_clock import LinkSnapshot
from performer.scheduler import Player, Scheduler


class FakeEngine:
    """Deterministic stand-in for performer.engine.Engine (same method shapes).

    A pattern is a pure function of (z, temperature, noise seed, lock), with
    the engine's convention that z=None draws z from the seed's generator first.
    """

    z_size = 8
    temperature_range = (0.0, 2.0)
    default_temperature = 0.5
    styles = ("funk", "rock")
    has_fills = True
    FILL_VOICE = drums.VOICES.index("high_tom")  # a fill bar: the high tom on every 16th, nothing else

    def __init__(self, density: float = 0.18, hold: threading.Event | None = None) -> None:
        self.hold = hold  # while clear, every decode waits for it: a decode that is "not done yet"
        self.density = density
        self.calls: list[dict] = []
        self.fail = False
        self._lock = threading.Lock()

    def prior(self, seed=None, style=None) -> np.ndarray:
        z = np.random.default_rng(seed).standard_normal(self.z_size).astype(np.float32)
        return z + (self.styles.index(style) + 1 if style else 0)  # each style its own region

    def attribute(self, name: str = "density") -> np.ndarray:
        return np.full(self.z_size, 0.5, np.float32)

    @staticmethod
    def slerp(z_a, z_b, n):
        ts = np.linspace(0, 1, n)[:, None]
        return ((1 - ts) * np.asarray(z_a) + ts * np.asarray(z_b)).astype(np.float32)

    def sample(self, z=None, temperature=1.0, seed=None, lock=None, style=None, fill=False) -> drums.Pattern:
        with self._lock:
            self.calls.append({"z": None if z is None else np.array(z), "temperature": temperature,
                               "seed": seed, "lock": lock, "style": style, "fill": fill})
        if self.fail:
            raise RuntimeError("fake decode failure")
        if self.hold is not None:
            self.hold.wait(10.0)
        rng = np.random.default_rng(seed)
        if z is None:
            z = rng.standard_normal(self.z_size).astype(np.float32) + (self.styles.index(style) + 1 if style else 0)
        h = hashlib.sha256(np.asarray(z, np.float32).tobytes() + repr(round(temperature, 6)).encode())
        h.update(rng.random(4).tobytes())  # the "noise": a different seed, a different decode
        r = np.random.default_rng(int.from_bytes(h.digest()[:8], "little"))
        dens = self.density * (1 + 0.2 * float(np.tanh(np.mean(z))))
        hits = r.random((drums.STEPS, drums.NUM_VOICES)) < dens
        hits[0, 0] = True  # a kick on the one, always: an easy anchor for tests
        if fill:  # like the real model: the same bars 1-3, a different bar 4
            hits[3 * drums.STEPS_PER_BAR :] = False
            hits[3 * drums.STEPS_PER_BAR :, self.FILL_VOICE] = True
        vel = 0.3 + 0.7 * r.random(hits.shape)
        off = (r.random(hits.shape) - 0.5) * 0.6
        p = drums.Pattern(hits, vel.astype(np.float32), off.astype(np.float32))
        if lock is not None:
            src, keep = lock
            p = p.with_voices(src, keep)
        return p


class StaticSource:
    """A PatternSource that plays fixed patterns (one per cycle, the last repeating)."""

    def __init__(self, *patterns: drums.Pattern, mutes=None) -> None:
        self.list = list(patterns)
        self.asked: list[int] = []  # pattern_for calls (the cycles that started)
        self.mute = np.zeros(drums.NUM_VOICES, bool) if mutes is None else np.asarray(mutes, bool)

    def pattern_for(self, cycle: int) -> drums.Pattern:
        self.asked.append(cycle)
        return self.peek(cycle)

    def peek(self, cycle: int) -> drums.Pattern:
        return self.list[min(cycle, len(self.list) - 1)] if cycle >= 0 else self.list[0]

    def pattern_at_bar(self, cycle: int, bar: int) -> drums.Pattern | None:
        return None

    def mutes(self) -> tuple[bool, ...]:
        return tuple(self.mute.tolist())


def simple_pattern(steps_voices: dict[int, list[int]], velocity: float = 0.8, offsets=None) -> drums.Pattern:
    hits = np.zeros((drums.STEPS, drums.NUM_VOICES), bool)
    off = np.zeros(hits.shape, np.float32)
    for s, vs in steps_voices.items():
        for v in vs:
            hits[s, v] = True
            if offsets and (s, v) in offsets:
                off[s, v] = offsets[(s, v)]
    return drums.Pattern(hits, np.full(hits.shape, velocity, np.float32), off)


class Sent:
    """A send() that keeps (time, message, pos)."""

    def __init__(self, clock_fn) -> None:
        self.clock_fn = clock_fn
        self.log: list[tuple[float, list[int], float | None]] = []

    def __call__(self, msg, pos) -> None:
        self.log.append((self.clock_fn(), list(msg), pos))

    def note_ons(self):
        return [(t, m, p) for t, m, p in self.log if m[0] & 0xF0 == 0x90 and m[2] > 0]

    def note_offs(self):
        return [(t, m, p) for t, m, p in self.log if m[0] & 0xF0 == 0x80]

    def ccs(self, number=None):
        return [(t, m) for t, m, _ in self.log if m[0] & 0xF0 == 0xB0 and (number is None or m[1] == number)]


def balanced(msgs) -> bool:
    """Every note-on released by a later note-off (``msgs``: MIDI byte lists or tuples)."""
    on: dict[int, int] = {}
    for m in msgs:
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            on[m[1]] = on.get(m[1], 0) + 1
        elif m[0] & 0xF0 == 0x80:
            on[m[1]] = max(0, on.get(m[1], 0) - 1)
    return all(v == 0 for v in on.values())


PANIC_TAIL = [[0xB9, 123, 0], [0xB9, 120, 0]]  # what every exit ends with on the drum channel


Q = 128 / 48000  # a JACK period at 48 kHz: rtmidi's JACK input stamps per period


def quantized(t: float) -> float:
    """``t`` floored to a JACK period, the way rtmidi's JACK input stamps."""
    return math.floor(t / Q) * Q


def wait_until(pred, timeout: float = 10.0) -> bool:
    """For state that announces nothing (a clock's cue, the director's mutes, a control list):
    poll ``pred`` every millisecond until it holds; False on timeout (the caller asserts)."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


class LogSink:
    """A performer sink (performer.wiring.Sink) that keeps (message, song position) and lets a
    test wait for what it expects instead of sleeping."""

    def __init__(self) -> None:
        self.log: list[tuple[list[int], float | None]] = []
        self._cond = threading.Condition()

    def send(self, msg, pos) -> None:
        with self._cond:
            self.log.append((list(msg), pos))
            self._cond.notify_all()

    def transport(self, ev) -> None:
        pass

    def describe(self) -> str:
        return "test log"

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass

    def messages(self) -> list[list[int]]:
        with self._cond:
            return [m for m, _ in self.log]

    def note_ons(self) -> list[tuple[list[int], float | None]]:
        with self._cond:
            return [(m, p) for m, p in self.log if m[0] & 0xF0 == 0x90 and m[2] > 0]

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        """Wait until ``pred(self)`` holds (checked at every message); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: pred(self), timeout)

    def wait_notes(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: sum(1 for m, _ in s.log if m[0] & 0xF0 == 0x90 and m[2] > 0) >= n, timeout)


class Sim:
    """Simulated time: drives a Scheduler and a clock without sleeping.

    ``run_until(t)`` advances time to each deadline the scheduler asks for,
    feeding clock ticks at their (optionally quantised) arrival times, and
    runs :meth:`Player.step` there, as the sender thread's loop does, with an
    optional wake-up latency.
    """

    def __init__(self, sched: Scheduler, clock, *, wake_latency: float = 0.0) -> None:
        self.sched = sched
        self.clock = clock
        self.now = 0.0
        self.sent = Sent(lambda: self.now)
        self.inputs: list[tuple[float, tuple]] = []  # (arrival, parsed message), sorted
        self.wake_latency = wake_latency
        self.transports = []
        # the sender thread's own step, never started as a thread: the sim is its loop
        self.player = Player(clock, sched, self.sent, on_transport=self.transports.append, now=lambda: self.now)

    def feed_at(self, t: float, msg: tuple, stamp: float | None = None) -> None:
        self.inputs.append((t, msg, t if stamp is None else stamp))
        self.inputs.sort(key=lambda x: x[0])

    def ticks(self, t0: float, period: float, n: int, quantum: float = 0.0, first_pos_msg=None):
        """n clocks from t0; with ``quantum`` the arrival (and stamp) is floored to it (JACK periods)."""
        for k in range(n):
            t = t0 + k * period
            if quantum:
                t = math.floor(t / quantum) * quantum
            self.feed_at(t, ("clock",))

    def _process(self) -> None:
        self.wake = self.player.step(self.now)

    def run_until(self, t_end: float) -> None:
        self.wake = self.now
        self._process()
        while True:
            nxt_in = self.inputs[0][0] if self.inputs else math.inf
            nxt = min(self.wake + self.wake_latency, nxt_in)
            if nxt > t_end:
                self.now = t_end
                self._process()
                return
            self.now = max(self.now, nxt)
            while self.inputs and self.inputs[0][0] <= self.now:
                _, msg, stamp = self.inputs.pop(0)
                self.clock.feed(msg, stamp)
            self._process()


def internal_sim(source, bpm=120.0, **kw) -> tuple[Sim, InternalClock]:
    clock = InternalClock(bpm, start_delay=0.0)
    sched = Scheduler(source, **kw)
    sim = Sim(sched, clock)
    clock.start(0.0)
    return sim, clock


def midi_sim(source, **kw) -> tuple[Sim, MidiClock]:
    clock = MidiClock()
    sched = Scheduler(source, **kw)
    return Sim(sched, clock), clock


def grid_time(t0: float, bpm: float, step: float) -> float:
    return t0 + step * TICKS_PER_STEP * 60.0 / (24 * bpm)


class FakeRtMidi:
    """Duck-typed rtmidi.MidiOut / MidiIn over a shared, mutable list of port names."""

    def __init__(self, ports: list[str]) -> None:
        self.ports = ports
        self.opened: str | None = None
        self.sent: list[tuple[str | None, list[int]]] = []
        self.opens = 0
        self.callback = None

    def get_ports(self):
        return list(self.ports)

    def open_port(self, i, name=None):
        self.opened = self.ports[i]
        self.opens += 1

    def open_virtual_port(self, name=None):
        self.opened = name

    def close_port(self):
        self.opened = None

    def send_message(self, msg):
        self.sent.append((self.opened, list(msg)))

    def ignore_types(self, **kw):
        self.ignored = kw

    def set_callback(self, cb, data=None):
        self.callback = cb

    def cancel_callback(self):
        self.callback = None

    def delete(self):
        pass


def private_jack_server(tmp_path_factory):
    """Start a private jackd (dummy driver) for this module's tests, or skip with the reason."""
    from tests.jack import harness

    return harness.start_private_server(tmp_path_factory.mktemp("jack-live"))


def signal_child_main(out_path: str, bpm: float = 400.0) -> None:
    """Entry point of a child process for signal tests: a live app on fake ports.

    Prints READY once its ports are open and PLAYING at its first note-on (so
    notes are sounding when the test signals it); on exit writes every sent
    message to ``out_path`` (JSON) and exits with the app's code.
    """
    import json
    import queue as _queue
    import sys

    from performer.app import LiveApp, LiveOptions
    from performer.ports import MemoryInput, MemoryOutput

    inbox: _queue.SimpleQueue = _queue.SimpleQueue()
    out = MemoryOutput("child")

    class Announce(LogSink):
        def send(self, msg, pos) -> None:
            if msg[0] & 0xF0 == 0x90 and not self.note_ons():
                print("PLAYING", flush=True)
            super().send(msg, pos)

    app = LiveApp(LiveOptions(bpm=bpm, headless=True, seed=5, quantize=True), engine=FakeEngine(density=0.5),
                  output=out, input_port=MemoryInput(inbox), inbox=inbox, sinks=[Announce()])

    def ready(info):
        print("READY", flush=True)

    code = app.run(on_ready=ready)
    with open(out_path, "w") as f:
        json.dump([list(m) for _, m in out.messages], f)
    sys.exit(code)


def tty_child_main() -> None:
    """Entry point of a child process on a pty: the interactive app with fake engine and ports."""
    import queue as _queue
    import sys

    from performer.app import LiveApp, LiveOptions
    from performer.ports import MemoryInput, MemoryOutput

    inbox: _queue.SimpleQueue = _queue.SimpleQueue()
    app = LiveApp(LiveOptions(bpm=200, seed=5), engine=FakeEngine(), output=MemoryOutput("pty-out"),
                  input_port=MemoryInput(inbox), inbox=inbox)
    code = app.run()
    sys.stderr.write(f"mutes {''.join('M' if m else '.' for m in app.director.mutes())} "
                     f"pending {app.director.status()['pending']}\n")
    sys.exit(code)


# --- a simulated Ableton Link session (tests/test_link_clock.py, tests/test_follow.py) ----------------

HOST_OFFSET_S = 0.25  # Link host time minus performer time


class SimTime:
    def __init__(self) -> None:
        self.now = 0.0  # performer time (s)

    def host_us(self) -> float:
        return (self.now + HOST_OFFSET_S) * 1e6


class SimSession:
    """A Link session: a piecewise-linear beat timeline on host time, a transport, peers."""

    def __init__(self, bpm: float = 120.0, beat0: float = 0.0, host0_us: float = 0.0) -> None:
        self.segments = [(host0_us, beat0, bpm)]  # (host time, beat there, tempo from there)
        self.playing = False
        self.play_us = 0.0
        self.peers = 1
        self.enabled = False
        self.tempo_requests: list[tuple[float, float]] = []

    def _seg(self, host_us: float):
        seg = self.segments[0]
        for s in self.segments:
            if s[0] <= host_us:
                seg = s
        return seg

    def beat_at(self, host_us: float) -> float:
        h0, b0, bpm = self._seg(host_us)
        return b0 + (host_us - h0) * bpm / 60e6

    def host_at(self, beat: float) -> float:
        seg = self.segments[0]
        for s in self.segments:
            if s[1] <= beat:
                seg = s
        h0, b0, bpm = seg
        return h0 + (beat - b0) * 60e6 / bpm

    def change_tempo(self, bpm: float, host_us: float) -> None:
        self.segments.append((host_us, self.beat_at(host_us), bpm))

    def start_stop(self, playing: bool, host_us: float) -> None:
        self.playing, self.play_us = playing, host_us

    # Session protocol
    def enable(self, on: bool) -> None:
        self.enabled = on

    def capture(self, host_us: float) -> LinkSnapshot:
        bpm = self._seg(host_us)[2]
        return LinkSnapshot(host_us, self.beat_at(host_us), 60e6 / bpm, bpm, self.playing,
                            self.play_us, self.peers)

    def set_tempo(self, bpm: float, host_us: float) -> None:
        self.tempo_requests.append((bpm, host_us))
        self.change_tempo(bpm, host_us)
