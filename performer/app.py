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
from types import SimpleNamespace

from model import drums
from model.errors import DrumPerformerError
from performer import band
from performer import ports as ports_mod
from performer.clock import TICKS_PER_CYCLE, TICKS_PER_STEP, ClockSource, Transport
from performer.controls import Controller, MidiMap
from performer.director import Director
from performer.link_clock import require_binding
from performer.options import LiveError, LiveOptions, check_record_path, free_path
from performer.scheduler import Player, Scheduler
from performer.wiring import PortSink, Recorder, Sink, connect_ahead, open_clock, open_sinks

__all__ = ["LiveApp", "LiveError", "LiveOptions", "Recorder", "check_record_path", "free_path"]

log = logging.getLogger(__name__)

# Send this much before a note's predicted time, on top of --latency-ms: the
# sender's typical wake-up delay, so that on average notes leave on time.
DEFAULT_LEAD = 0.0002
PORT_CHECK_INTERVAL = 1.0
# The sender must win the GIL quickly when its deadline comes; Python's default
# switch interval (5 ms) would let the view or decoder hold it for that long.
SWITCH_INTERVAL = 0.0005


# --- the app -----------------------------------------------------------------------------------


def _period(port) -> float:
    """The period in which ``port`` moves its messages (0 without one: ALSA, CoreMIDI, none)."""
    return getattr(port, "period_s", 0.0) if port is not None else 0.0


def _next_input(*ports):
    """The first polled port's ``next_input`` (they share one JACK cycle), or None."""
    return next((p.next_input for p in ports if p is not None and p.polled), None)


class LiveApp:
    """One live performance. ``engine``, ``output``, ``input_port`` and ``inbox`` may be
    injected (tests, embedding); otherwise the model and the MIDI ports are opened here.
    ``sinks`` are more outputs, after the port and the recorder (see performer.wiring.Sink)."""

    def __init__(self, opts: LiveOptions, *, engine=None, output=None, input_port=None,
                 inbox: queue.SimpleQueue | None = None, term=None, sinks: list[Sink] = (),
                 follow_port=None, follow_inbox: queue.SimpleQueue | None = None) -> None:
        opts.validate()
        self.opts = opts
        self.engine = engine
        self.output = output
        self.input = input_port
        self.inbox = inbox if inbox is not None else queue.SimpleQueue()
        self.term = term
        self._stop = threading.Event()
        self.exit_code = 0
        self.help = False
        self.director: Director | None = None
        self.scheduler: Scheduler | None = None
        self.player: Player | None = None
        self.clock: ClockSource | None = None
        self.extra_sinks = list(sinks)
        self.follow_port = follow_port  # --follow: the player's input (injected, or opened in run)
        self.follow_inbox = follow_inbox if follow_inbox is not None else queue.SimpleQueue()
        self.follower = None
        self.sinks: list[Sink] = []
        self.controller: Controller | None = None
        self.seed: int | None = None
        self.log_buffer = None
        self.ready_s: float | None = None
        self._told_unconnected = False
        self._audio_stand_in = SimpleNamespace()

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
        transport = clock.state(now) if clock else "stopped"
        cycle = None
        step = None
        pattern = d.current.pattern if d else None
        if running and pos is not None and pos >= 0:
            cycle = int(pos) // TICKS_PER_CYCLE
            step = int(pos) // TICKS_PER_STEP % drums.STEPS
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
            "out": self._out_text() if self.output else "-",
            "clock": clock.describe() if clock else "-",
            "mode": mode,
            "help": self.help,
            "last_action": self.controller.last_action if self.controller else "",
            "follow": self.follower.status() if self.follower is not None else None,
            "messages": list(self.log_buffer.lines) if self.log_buffer else [],
        }

    def _out_text(self) -> str:
        """The MIDI output, and the audio output when there is one (``--audio``)."""
        return " + ".join([self.output.describe()] + [s.describe() for s in self.sinks if hasattr(s, "lead_s")])

    # -- run

    def run(self, on_ready: Callable[[dict], None] | None = None) -> int:
        t0 = time.perf_counter()
        opts = self.opts
        midi_map = MidiMap.load(opts.map)
        groove = None
        if opts.groove_file is not None:  # a bad clip: one line before the model or any port is opened
            groove, note = band.load_groove(opts.groove_file)
            if note:
                log.warning("--groove %s: %s", opts.groove_file, note)
        if opts.link:
            require_binding()  # one line before the model or any port is opened
        if opts.audio:
            from performer.audio_out import check_installed

            check_installed()  # one line saying what to install, before the model loads
        if self.engine is None:
            from performer.engine import Engine  # onnxruntime: only the live path pays for it

            self.engine = Engine.load(opts.model)
        self.seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        temperature = self.engine.default_temperature if opts.temperature is None else opts.temperature
        lo, hi = getattr(self.engine, "temperature_range", (0.0, math.inf))
        if not lo <= temperature <= hi:
            raise LiveError(f"--temperature {temperature:g} is outside this model's range {lo:g}..{hi:g}")
        if opts.style not in (None, "any") and hasattr(self.engine, "style_index"):
            self.engine.style_index(opts.style)  # an unknown style: one line naming the known ones
        if opts.fills_every and not getattr(self.engine, "has_fills", False):
            raise LiveError("--fills: this model has no fills (it was trained without GMD's fill clips)")
        if opts.follow is not None and hasattr(self.engine, "meta") and not band.has_tap(self.engine):
            raise LiveError(f"--follow: the model in {self.engine.folder} has no tap encoder (drum-performer train-tap)")
        self.director = Director(self.engine, self.seed, temperature, opts.morph_cycles,
                                 style=opts.style, fills_every=opts.fills_every,
                                 follow=opts.follow_amount if opts.follow is not None else 0.0,
                                 humanize=opts.humanize, groove=groove,
                                 groove_label=f"groove {os.path.basename(opts.groove_file or '')}")
        headless = opts.headless
        if headless is None:
            headless = self.term is None and not (sys.stdin.isatty() and sys.stdout.isatty())
        old_switch = sys.getswitchinterval()
        handlers: dict[int, object] = {}
        first_error: BaseException | None = None
        try:
            self._open_ports()
            self.clock = open_clock(opts, self.input)
            self.scheduler = Scheduler(
                self.director,
                channel=opts.channel - 1,
                quantize=opts.quantize,
                swing=opts.swing / 100.0,
                lead=self._midi_lead(),
            )
            self.sinks = open_sinks(opts, self.output, self.clock) + self.extra_sinks
            connect_ahead(self.sinks, self.scheduler)
            self.controller = Controller(
                self.director, midi_map, on_quit=lambda: self.request_stop(0), on_help=self.toggle_help
            )
            poll = self.input.poll if self.input is not None and self.input.polled else None
            if opts.follow is not None:
                from performer.follow import Follower

                self.follower = Follower(self.director, self.clock, self.follow_port, self.follow_inbox)
                poll = self._follow_poll(poll)
            self.player = Player(
                self.clock, self.scheduler, self._send, self.inbox,
                on_control=self.controller.midi, on_transport=self._on_transport, poll=poll,
                next_input=_next_input(self.input, self.follow_port),
                server_report=self.input.server_report if self.input is not None and self.input.polled else None,
            )
            self._align_periods()
            handlers = self._install_signals()
            sys.setswitchinterval(SWITCH_INTERVAL)
            self.director.start()
            self.clock.start(time.perf_counter())
            self.player.start()
            self.player.ready.wait(2.0)
            self.ready_s = time.perf_counter() - t0
            info = {
                "out": self._out_text(),
                "clock": self.clock.describe(),
                "seed": self.seed,
                "api": self.output.api,
                "ready_s": self.ready_s,
                "headless": headless,
                "follow": self.follow_port.describe() if self.follow_port is not None else None,
            }
            log.info("ready in %.2f s: out %s, clock %s, seed %d", self.ready_s, info["out"], info["clock"], self.seed)
            if on_ready is not None:
                on_ready(info)
            if headless:
                self._wait_headless()
            else:
                self._interactive()
        except BaseException as e:
            first_error = e
            raise
        finally:
            try:
                self._shutdown()
            except Exception as e:
                if first_error is None:
                    raise
                log.error("%s", e)  # the error that ended the performance is the one to report
            finally:
                sys.setswitchinterval(old_switch)
                self._restore_signals(handlers)
        if self.player is not None and self.player.error is not None:
            e = self.player.error
            raise LiveError(f"internal error in the sender ({type(e).__name__}: {e}); all notes were released")
        return self.exit_code

    def _open_ports(self) -> None:
        opts = self.opts
        if self.output is None:
            self.output = ports_mod.open_output(opts.port, opts.api)
        self._open_clock_input()
        # after the clock input: whoever looks for the performer's new input finds the clock's first
        if opts.follow is not None and self.follow_port is None:
            self.follow_port = ports_mod.open_follow_input(self.follow_inbox, opts.follow or None, self.output.api)

    def _open_clock_input(self) -> None:
        opts = self.opts
        if self.input is None:
            api = self.output.api
            if opts.clock_port is None and not ports_mod.virtual_supported(api):
                if not opts.bpm and not opts.link:
                    raise LiveError(
                        "no clock input: " + ports_mod.LOOPMIDI_HINT.split(": ", 1)[1]
                        + " (or play on the internal clock with --bpm N)"
                    )
                log.info("no virtual ports here; MIDI controls need --clock-port")
                return
            self.input = ports_mod.open_input(self.inbox, opts.clock_port, api)

    def _follow_poll(self, clock_poll):
        """The sender thread's poll with --follow: the player's input is drained first (it only
        queues and places notes), then the clock input's messages go on as before."""
        follower, now = self.follower, time.perf_counter

        def poll() -> list:
            follower.drain(now())
            return clock_poll() if clock_poll is not None else []

        return poll

    def _send(self, msg: list[int], pos: float | None) -> None:
        for sink in self.sinks:
            sink.send(msg, pos)

    def _on_transport(self, ev: Transport) -> None:
        if self.follower is not None:
            self.follower.transport(ev)
        for sink in self.sinks:
            sink.transport(ev)

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

    def _midi_lead(self) -> float:
        """How early the MIDI lane sends: the sender's wake-up, ``--latency-ms``, and half of
        the output's period (see :meth:`_align_periods`)."""
        return DEFAULT_LEAD + self.opts.latency_ms / 1000.0 + _period(self.output) / 2

    def _align_periods(self) -> None:
        """Put the ports' per-period moves back on JACK's frame timeline (``period_s``).

        Input stamps half a period later (``StampMapper.shift``); the MIDI lane sent half
        a period earlier (the scheduler's ``lead``). With a MIDI clock both halves cancel in
        the MIDI out; what each corrects is the timeline the audio lane plays on (measured:
        ``--audio`` heard 1.0 ms early against the clock without the shift) and MIDI out
        against a clock that is not MIDI (``--link``: notes 1.41 ms late on average before).
        The clock's tempo fit takes its stamps as a period coarse (``input_period``).
        Run at start and at each port check (a changed JACK period is taken up there).
        """
        if self.player is not None:
            self.player.stamper.shift = _period(self.input) / 2
            self.player.clock.input_period(_period(self.input))
        if self.follower is not None:
            self.follower.stamper.shift = _period(self.follow_port) / 2
        if self.scheduler is not None:
            self.scheduler.lead = self._midi_lead()

    # -- main-thread loops

    def _housekeeping(self, last_check: float) -> float:
        now = time.monotonic()
        if now - last_check >= PORT_CHECK_INTERVAL:
            for p in (*self.sinks, self.input, self.follow_port):
                if p is not None:
                    try:
                        p.check()
                    except Exception:
                        log.exception("checking %s failed", p)
            self._align_periods()
            last_check = now
            if not self._told_unconnected and self.ready_s is not None:
                # --audio: the drums are heard without a listener on the MIDI output; only the
                # clock input is checked (a stand-in output has no listeners to report)
                out = self._audio_stand_in if self.opts.audio else self.output
                self._told_unconnected = ports_mod.warn_unconnected(out, None if self.opts.bpm else self.input)
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
        close_clock = getattr(self.clock, "close", None)  # a Link clock leaves its session
        if close_clock is not None:
            close_clock()
        ports_mod.quiet_jack_watches()
        for port in (self.input, self.follow_port):
            if port is not None:
                with contextlib.suppress(Exception):
                    port.close()
        if not self.sinks and self.output is not None:  # it failed before the sinks were made
            self.sinks = [PortSink(self.output)]
        first: DrumPerformerError | None = None
        for sink in self.sinks:  # every sink is closed, whatever the one before it did
            try:
                sink.close()
            except DrumPerformerError as e:
                first = first or e
            except Exception:
                log.exception("closing %s failed", sink.describe())
        if first is not None:
            raise first
