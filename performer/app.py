"""The live performer: wiring, threads, signals, recording.

Threads and what they may do:

* the MIDI driver's thread: rtmidi queues input with the driver's timestamps;
  no Python runs there (under JACK it is the realtime process thread);
* the sender (:class:`performer.scheduler.Player`): reads that queue, clock,
  scheduler, output; the only thread that sends notes while playing
  (SCHED_FIFO where allowed);
* the decoder (:class:`performer.director.Director`): the model, ahead of time;
* the view: reads state and redraws, ~12 times a second;
* the main thread: keys (or just waiting, headless), signals, port checks
  about once a second, and the orderly shutdown.

Whatever ends the performance -- ``q``, Ctrl-C, SIGTERM, SIGHUP, an internal
error -- the sender releases every sounding note, then sends CC123 and CC120
on the drum channel before the ports close. ``--record`` then writes what
was played, atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model import drums, paths
from model.errors import DrumPerformerError
from performer import ports as ports_mod
from performer.clock import SPP_UNITS, STOP, TICKS_PER_BAR, InternalClock, MidiClock, Transport
from performer.controls import Controller, MidiMap
from performer.director import Director
from performer.scheduler import Player, Scheduler

log = logging.getLogger(__name__)

# Send this much before a note's predicted time, on top of --latency-ms: the
# sender's typical wake-up delay, so that on average notes leave on time.
DEFAULT_LEAD = 0.0002
PORT_CHECK_INTERVAL = 1.0
# The sender must win the GIL quickly when its deadline comes; Python's default
# switch interval (5 ms) would let the view or decoder hold it for that long.
SWITCH_INTERVAL = 0.0005


class LiveError(DrumPerformerError):
    pass


@dataclass
class LiveOptions:
    port: str | None = None
    clock_port: str | None = None
    api: str = "auto"
    bpm: float | None = None
    channel: int = 10  # 1..16, GM drums
    quantize: bool = False
    swing: float = 0.0  # percent of a 16th that every second 16th is delayed (0..75)
    seed: int | None = None
    temperature: float | None = None  # None: the model's default
    model: str | None = None
    record: str | None = None
    map: str | None = None
    morph_cycles: int = 4
    start_on_clock: bool = False
    headless: bool | None = None  # None: headless when there is no terminal
    latency_ms: float = 0.0
    spp_units: str = "16ths"  # what the master's Song Position Pointer counts: "16ths" (the spec) or "clocks" (Ardour)

    def validate(self) -> None:
        if not 1 <= self.channel <= 16:
            raise LiveError(f"--channel {self.channel} must be 1..16")
        if not 0 <= self.swing <= 75:
            raise LiveError(f"--swing {self.swing:g} must be 0..75 (percent of a 16th)")
        if self.bpm is not None and not 20 <= self.bpm <= 400:
            raise LiveError(f"--bpm {self.bpm:g} must be 20..400")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise LiveError(f"--temperature {self.temperature} must be a number >= 0")
        if not 1 <= self.morph_cycles <= 16:
            raise LiveError(f"--morph-cycles {self.morph_cycles} must be 1..16")
        if not -50 <= self.latency_ms <= 50:
            raise LiveError(f"--latency-ms {self.latency_ms:g} must be -50..50")
        if self.spp_units not in SPP_UNITS:
            raise LiveError(f"--spp-units {self.spp_units!r} must be one of {', '.join(SPP_UNITS)}")
        if self.api not in ports_mod.API_CHOICES:
            raise LiveError(f"--api {self.api!r} must be one of {', '.join(ports_mod.API_CHOICES)}")
        if self.seed is not None and not 0 <= self.seed < 2**32 - 10_000:
            raise LiveError(f"--seed {self.seed} must be 0..{2**32 - 10_001}")
        if self.record is not None:
            self.record = str(check_record_path(self.record))


# --- recording -------------------------------------------------------------------------------


def free_path(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``stem-2.ext``, ``stem-3.ext``, ...

    A numbered name rather than an overwrite flag: a take is cheap to rename and
    expensive to lose, and the user is told the name at start and at exit.
    """
    if not os.path.lexists(path):
        return path
    n = 2
    while os.path.lexists(path.with_name(f"{path.stem}-{n}{path.suffix}")):
        n += 1
    return path.with_name(f"{path.stem}-{n}{path.suffix}")


def check_record_path(record: str) -> Path:
    """The file ``--record`` will write, checked before the performance starts.

    Everything that would make the write fail at exit is refused now, so a take
    is never played and then lost: an empty name, a folder, a missing or
    unwritable parent, a parent that is a file, a target that is not a regular
    file (a FIFO or device node: the atomic rename would replace it). An
    existing file is kept: the take goes to a numbered name beside it.
    """
    if not record.strip():
        raise LiveError("--record needs a file name, like take1.mid")
    p = Path(record).expanduser()
    if p.is_dir():
        raise LiveError(f"--record {p} is a folder; give a file name like take1.mid")
    paths.check_file(record, "--record")  # a file in the way, a read-only folder
    if not p.parent.is_dir():
        raise LiveError(f"--record {p}: folder {p.parent} does not exist")
    if os.path.lexists(p) and not (p.is_file() and not p.is_symlink()):
        raise LiveError(f"--record {p} exists and is not a regular file; give a new file name")
    return free_path(p)


def fallback_record_path(path: Path) -> Path:
    """Where a take goes when its own path cannot be written at exit: the temp folder."""
    import tempfile

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return free_path(Path(tempfile.gettempdir()) / f"drum-performer-{stamp}-{path.name or 'take.mid'}")


class Recorder:
    """What was played, on a timeline of MIDI clocks, written as a Standard MIDI File.

    The first run keeps its song positions (so the file lines up with the
    DAW's bars when placed at bar 1); each later run (after Stop and
    Start/Continue) follows the previous material at the next bar line, with
    its own position within the bar.
    """

    RESOLUTION = 480  # ticks per quarter in the file: 20 per MIDI clock

    def __init__(self, path: str | Path, channel: int) -> None:
        self.path = Path(path)
        self.channel = channel
        self.events: list[tuple[float, list[int]]] = []
        self._offset = 0.0
        self._end = 0.0
        self._runs = 0
        self._on_pos: dict[int, float] = {}
        self.bpm: float | None = None

    def transport(self, ev: Transport) -> None:
        if ev.kind == STOP:
            return
        if self._runs:
            bar = TICKS_PER_BAR
            self._offset = math.ceil(self._end / bar) * bar - (ev.pos // bar) * bar
        self._runs += 1

    def add(self, msg: list[int], pos: float | None, fallback_pos: float) -> None:
        kind = msg[0] & 0xF0
        if kind not in (0x80, 0x90):
            return
        p = (pos if pos is not None else fallback_pos) + self._offset
        if kind == 0x90:
            self._on_pos[msg[1]] = p
        else:
            p = max(p, self._on_pos.pop(msg[1], p))  # an off never precedes its on
        p = max(p, 0.0)
        self._end = max(self._end, p)
        self.events.append((p, list(msg)))

    def write(self) -> Path:
        import mido

        mf = mido.MidiFile(ticks_per_beat=self.RESOLUTION)
        tr = mido.MidiTrack()
        mf.tracks.append(tr)
        tr.append(mido.MetaMessage("track_name", name="drum-performer", time=0))
        tr.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
        tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(self.bpm or 120.0), time=0))
        per_clock = self.RESOLUTION / 24
        now = 0
        for p, msg in sorted(self.events, key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90)):
            tick = int(round(p * per_clock))
            tr.append(mido.Message.from_bytes(msg, time=max(0, tick - now)))
            now = max(now, tick)
        tr.append(mido.MetaMessage("end_of_track", time=0))
        return self.save(mf, self.path)

    def save(self, mf, path: Path) -> Path:
        """Write atomically to ``path``; never over something that appeared there meanwhile."""
        if os.path.lexists(path):
            if path.is_file() and not path.is_symlink():
                path = free_path(path)
            else:
                raise OSError(f"{path} is no longer a regular file")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            mf.save(str(tmp))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.path = path
        return path

    def write_somewhere(self) -> tuple[Path, str | None]:
        """Write the take; if its path fails, to the temp folder. Returns (where, why the first failed)."""
        try:
            return self.write(), None
        except OSError as e:
            why = e.strerror or str(e)
            wanted = self.path
        self.path = fallback_record_path(wanted)
        return self.write(), f"cannot write {wanted}: {why}"


# --- the app -----------------------------------------------------------------------------------


class LiveApp:
    """One live performance. ``engine``, ``output``, ``input_port`` and ``inbox`` may be
    injected (tests, embedding); otherwise the model and the MIDI ports are opened here."""

    def __init__(self, opts: LiveOptions, *, engine=None, output=None, input_port=None,
                 inbox: queue.SimpleQueue | None = None, term=None) -> None:
        opts.validate()
        self.opts = opts
        self.engine = engine
        self.output = output
        self.input = input_port
        self.inbox = inbox if inbox is not None else queue.SimpleQueue()
        self.term = term
        self._stop = threading.Event()
        self.exit_code = 0
        self.record_error: str | None = None
        self.help = False
        self.director: Director | None = None
        self.scheduler: Scheduler | None = None
        self.player: Player | None = None
        self.clock = None
        self.controller: Controller | None = None
        self.recorder: Recorder | None = None
        self.seed: int | None = None
        self.log_buffer = None
        self.ready_s: float | None = None
        self._told_unconnected = False

    # -- control from outside

    def request_stop(self, code: int = 0) -> None:
        if not self._stop.is_set():
            self.exit_code = code
        self._stop.set()

    def toggle_help(self) -> None:
        self.help = not self.help

    # -- status for the view

    def status(self) -> dict:
        now = time.perf_counter()
        clock, sched, d = self.clock, self.scheduler, self.director
        running = bool(clock and clock.running)
        pos = clock.position(now) if clock else None
        if running and clock.arrived() == -math.inf and not isinstance(clock, InternalClock):
            transport = "starting"
        elif running:
            transport = "playing"
            if isinstance(clock, MidiClock) and clock.freewheeling(now):
                transport = "freewheel"
        else:
            transport = "stopped"
        cycle = None
        step = None
        pattern = d.current.pattern if d else None
        if running and pos is not None and pos >= 0:
            cycle = int(pos) // (6 * drums.STEPS)
            step = int(pos) // 6 % drums.STEPS
            if sched is not None:
                pattern = sched.pattern_at(cycle) or pattern
        mode = "quantize" if self.opts.quantize else "groove"
        if self.opts.swing:
            mode += f", swing {self.opts.swing:g}%"
        mode += f", channel {self.opts.channel}, seed {self.seed}"
        return {
            "transport": transport,
            "bpm": clock.bpm() if clock else None,
            "position": pos,
            "cycle": cycle,
            "step": step,
            "pattern": pattern,
            "director": d.status() if d else {},
            "out": self.output.describe() if self.output else "-",
            "clock": (f"internal {self.opts.bpm:g} BPM" if self.opts.bpm else
                      (self.input.describe() if self.input else "-")),
            "mode": mode,
            "help": self.help,
            "last_action": self.controller.last_action if self.controller else "",
            "messages": list(self.log_buffer.lines) if self.log_buffer else [],
        }

    # -- run

    def run(self, on_ready: Callable[[dict], None] | None = None) -> int:
        t0 = time.perf_counter()
        opts = self.opts
        midi_map = MidiMap.load(opts.map)
        if self.engine is None:
            from performer.engine import Engine  # onnxruntime: only the live path pays for it

            self.engine = Engine.load(opts.model)
        self.seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        temperature = self.engine.default_temperature if opts.temperature is None else opts.temperature
        lo, hi = getattr(self.engine, "temperature_range", (0.0, math.inf))
        if not lo <= temperature <= hi:
            raise LiveError(f"--temperature {temperature:g} is outside this model's range {lo:g}..{hi:g}")
        self.director = Director(self.engine, self.seed, temperature, opts.morph_cycles)
        headless = opts.headless
        if headless is None:
            headless = self.term is None and not (sys.stdin.isatty() and sys.stdout.isatty())
        old_switch = sys.getswitchinterval()
        handlers: dict[int, object] = {}
        try:
            self._open_ports()
            self.clock = InternalClock(opts.bpm) if opts.bpm else MidiClock(
                start_on_clock=opts.start_on_clock, spp_units=opts.spp_units)
            self.scheduler = Scheduler(
                self.director,
                channel=opts.channel - 1,
                quantize=opts.quantize,
                swing=opts.swing / 100.0,
                lead=DEFAULT_LEAD + opts.latency_ms / 1000.0,
            )
            if opts.record:
                self.recorder = Recorder(opts.record, opts.channel - 1)
            self.controller = Controller(
                self.director, midi_map, on_quit=lambda: self.request_stop(0), on_help=self.toggle_help
            )
            poll = getattr(self.input, "poll", None) if getattr(self.input, "polled", False) else None
            self.player = Player(
                self.clock, self.scheduler, self._send, self.inbox,
                on_control=self.controller.midi, on_transport=self._on_transport, poll=poll,
            )
            handlers = self._install_signals()
            sys.setswitchinterval(SWITCH_INTERVAL)
            self.director.start()
            if isinstance(self.clock, InternalClock):
                self.clock.start(time.perf_counter())
            self.player.start()
            self.player.ready.wait(2.0)
            self.ready_s = time.perf_counter() - t0
            info = {
                "out": self.output.describe(),
                "clock": f"internal {opts.bpm:g} BPM" if opts.bpm else (self.input.describe() if self.input else "-"),
                "seed": self.seed,
                "api": getattr(self.output, "api", "memory"),
                "ready_s": self.ready_s,
                "headless": headless,
            }
            log.info("ready in %.2f s: out %s, clock %s, seed %d", self.ready_s, info["out"], info["clock"], self.seed)
            if on_ready is not None:
                on_ready(info)
            if headless:
                self._wait_headless()
            else:
                self._interactive()
        finally:
            self._shutdown()
            sys.setswitchinterval(old_switch)
            self._restore_signals(handlers)
        if self.record_error:
            raise LiveError(self.record_error)
        if self.player is not None and self.player.error is not None:
            e = self.player.error
            raise LiveError(f"internal error in the sender ({type(e).__name__}: {e}); all notes were released")
        return self.exit_code

    def _open_ports(self) -> None:
        opts = self.opts
        if self.output is None:
            self.output = ports_mod.open_output(opts.port, opts.api)
        if self.input is None:
            api = getattr(self.output, "api", opts.api)
            if opts.clock_port is None and not ports_mod.virtual_supported(api):
                if not opts.bpm:
                    raise LiveError(
                        "no clock input: " + ports_mod.LOOPMIDI_HINT.split(": ", 1)[1]
                        + " (or play on the internal clock with --bpm N)"
                    )
                log.info("no virtual ports here; MIDI controls need --clock-port")
                return
            self.input = ports_mod.open_input(self.inbox, opts.clock_port, api)

    def _send(self, msg: list[int], pos: float | None) -> None:
        self.output.send(msg)
        rec = self.recorder
        if rec is not None:
            fallback = 0.0
            if pos is None and self.clock is not None:
                fallback = self.clock.position(time.perf_counter())
            rec.add(msg, pos, fallback)
            if rec.bpm is None and msg[0] & 0xF0 == 0x90 and self.clock is not None:
                bpm = self.clock.bpm()
                if bpm:
                    rec.bpm = round(bpm, 2)  # the file's tempo: the one the first note was played at

    def _on_transport(self, ev: Transport) -> None:
        if self.recorder is not None:
            self.recorder.transport(ev)

    # -- signals

    def _install_signals(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        # every signal whose default action would end the process mid-note ends it cleanly
        # instead (notes released, CC123 and CC120 sent); Ctrl-C and Ctrl-\ keep the shell's codes
        codes = {signal.SIGINT: 130, signal.SIGTERM: 0}
        for name, code in (("SIGHUP", 0), ("SIGQUIT", 131), ("SIGUSR1", 0), ("SIGUSR2", 0),
                           ("SIGALRM", 0)):
            if hasattr(signal, name):
                codes[getattr(signal, name)] = code
        for sig, code in codes.items():
            def handler(signum, frame, code=code):
                log.info("signal %d: stopping", signum)
                self.request_stop(code)

            with contextlib.suppress(ValueError, OSError):
                old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signals(old: dict) -> None:
        for sig, h in old.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, h)

    # -- main-thread loops

    def _housekeeping(self, last_check: float) -> float:
        now = time.monotonic()
        if now - last_check >= PORT_CHECK_INTERVAL:
            for p in (self.output, self.input):
                if p is not None:
                    try:
                        p.check()
                    except Exception:
                        log.exception("checking port %s failed", p)
            last_check = now
            if not self._told_unconnected and self.ready_s is not None:
                self._told_unconnected = ports_mod.warn_unconnected(
                    self.output, None if self.opts.bpm else self.input)
        if self.player is not None and not self.player.is_alive() and not self._stop.is_set():
            self.request_stop(1)
        return last_check

    def _wait_headless(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.1):
            last = self._housekeeping(last)

    def _interactive(self) -> None:
        from performer.view import LogBuffer, View

        term = self.term
        if term is None:
            # blessed probes the terminal at start and waits up to 5 s for an answer that
            # a terminal without the extension never sends; half a second is plenty
            os.environ.setdefault("BLESSED_QUERY_TIMEOUT_SECONDS", "0.5")
            import blessed

            term = blessed.Terminal()
        root = logging.getLogger()
        self.log_buffer = LogBuffer()
        removed = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                   and getattr(h, "stream", None) in (sys.stderr, sys.stdout)]
        for h in removed:
            root.removeHandler(h)
        root.addHandler(self.log_buffer)
        view = View(term, self.status)
        try:
            with term.fullscreen(), term.cbreak(), term.hidden_cursor():
                view.start()
                last = time.monotonic()
                while not self._stop.is_set():
                    key = term.inkey(timeout=0.1)
                    if key and not key.is_sequence:
                        self.controller.key(str(key))
                    last = self._housekeeping(last)
        finally:
            view.stop()
            view.join(1.0)
            root.removeHandler(self.log_buffer)
            for h in removed:
                root.addHandler(h)

    # -- shutdown

    def _shutdown(self) -> None:
        self._stop.set()
        p = self.player
        if p is not None and p.is_alive():
            p.stop()
            p.join(3.0)
            if p.is_alive():  # wedged: release the notes from here rather than leave them hanging
                log.error("the sender did not stop; releasing notes from the main thread")
                p.final_panic()
        if self.director is not None:
            self.director.close()
        for port in (self.input, self.output):
            if port is not None:
                with contextlib.suppress(Exception):
                    port.close()
        if self.recorder is not None:
            wanted = self.recorder.path
            try:
                path, why = self.recorder.write_somewhere()
            except OSError as e:
                # reported by run() after the rest of the shutdown (signals, switch interval) is done
                self.record_error = f"cannot write the recording {wanted} nor a copy in the temp folder: {e}"
                return
            self.opts.record = str(path)
            if why:
                self.record_error = f"{why}; the take is saved in {path}"
                return
            log.info("recorded %d events to %s", len(self.recorder.events), path)
