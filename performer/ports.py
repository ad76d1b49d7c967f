"""MIDI ports: find them by name, open or create them, survive them going away.

``--port NAME`` matching (the same for ``--clock-port`` and ``--follow``): an exact name first,
then a case-insensitive one, then every word of NAME appearing in the port
name ("IAC Bus 1" finds "IAC Driver Bus 1"). Several matches at the first
level that has any is an error that lists them; none is an error that lists
what exists. Without a name the performer creates virtual ports ("Drum
Performer" out, "Drum Performer Clock" in, "Drum Performer Follow" in for
``--follow`` without a name); Windows has none, so there the
error points to loopMIDI.

Ports are context managers. ``send`` is thread-safe and never raises: a port
that vanished drops messages, is reported once, and :meth:`check` (called
about once a second) reopens it when a port of that name is back. Under JACK
every client this module creates is named ``drum-performer...``; the names
JACK really gave (``drum-performer-01`` for a second instance) are what the
ports report. Under JACK a small never-activated client of ours
(:class:`JackWatch`, libjack through ctypes) hears when the server goes away:
the ports then wait for it, and when a server of that name is back they are
created anew (and the connections they had are made again where the other
side is back too).

:class:`MemoryOutput` and :class:`MemoryInput` are in-process ports (in the
spirit of mido's) for tests and embedding.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from model.errors import DrumPerformerError

log = logging.getLogger(__name__)

CLIENT_NAME = "drum-performer"
CLOCK_CLIENT_NAME = "drum-performer-clock"
OUT_NAME = "Drum Performer"
CLOCK_NAME = "Drum Performer Clock"
FOLLOW_CLIENT_NAME = "drum-performer-follow"
FOLLOW_NAME = "Drum Performer Follow"
API_CHOICES = ("auto", "alsa", "jack", "coremidi", "winmm")
_API_ATTR = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE", "winmm": "API_WINDOWS_MM"}
_API_LABEL = {"alsa": "ALSA", "jack": "JACK", "coremidi": "CoreMIDI", "winmm": "Windows MultiMedia"}
LOOPMIDI_HINT = (
    "Windows has no virtual MIDI ports: install loopMIDI (https://www.tobias-erichsen.de/software/loopmidi.html), "
    "create a port in it and pass --port NAME (and --clock-port NAME for the DAW's clock)"
)


# The command a newcomer can paste (in another terminal): the ALSA driver plays a
# software synth through the sound card; the dummy driver needs none.
JACKD_HINT = "jackd -d alsa -r 48000 -p 256, or jackd -d dummy without a sound card"

# When rtmidi's JACK input holds a cycle's messages, after that cycle starts (jack_get_cycle_times):
# measured by busy-polling an input fed by jack_midi_clock (120 BPM, -p 128, 722 messages):
# median 95 us, p90 218 us, p99 378 us, max 1.07 ms (the clock master and our input client run
# first). So a port is polled 0.4 ms into each cycle; while a Start or Continue is awaited,
# again at half the period (a cycle whose clients ran late): the cued step's notes are the
# longest reaction (read -> sent 0.2-1.2 ms here). While playing only once: a second poll a cycle
# cost 1.1-1.4 % of a core (benchmarks/live_timing.py: 5.4-5.7 % playing with two, 4.0-4.3 %
# with one). One fixed point for both: the arrival times, whose least delay the stamp mapper
# takes for the driver's offset, then carry the same delay as with the 0.5-2 ms polls before
# (live_timing's mean signed error unchanged; a later point while playing, 0.8 ms, put it
# 0.2 ms later). Stamping a message at the server's cycle start instead went wrong after the
# server stalled: that start is its delay-locked loop's estimate (notes 4-5 ms early for
# seconds, tests/jack/test_e2e.py's 100 ms server stop).
INPUT_SETTLE_S = 0.0004


class PortError(DrumPerformerError):
    """A port name that matches nothing, or too much; a port that cannot be opened."""


class MidiSystemError(DrumPerformerError):
    """No usable MIDI system (no ALSA sequencer, no JACK server, unknown API...)."""


# --- names ----------------------------------------------------------------------------


def _is_own(port: str) -> bool:
    """A port of some drum-performer (never a sensible thing to play into or take clock from)."""
    return port.lower().startswith(CLIENT_NAME) or port.startswith(OUT_NAME)


def match_port(name: str, available: Sequence[str], kind: str = "output") -> int:
    """Index of the port ``name`` designates in ``available``; PortError otherwise."""
    cands = [(i, p) for i, p in enumerate(available) if not _is_own(p)]
    want = name.strip()
    low = want.lower()
    words = low.split()
    for level in (
        lambda p: p == want,
        lambda p: p.lower() == low,
        lambda p: bool(words) and all(w in p.lower() for w in words),
    ):
        hits = [(i, p) for i, p in cands if level(p)]
        if len(hits) == 1:
            return hits[0][0]
        if len(hits) > 1:
            names = "; ".join(repr(p) for _, p in hits)
            raise PortError(f"{kind} port {name!r} is ambiguous, it matches {names}: use more of the name")
    have = "; ".join(repr(p) for _, p in cands) or "none"
    raise PortError(f"no MIDI {kind} port matches {name!r} (available: {have})")


# --- the MIDI system -------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_c_stderr() -> Iterator[list[str]]:
    """Capture what C libraries (libjack, alsa-lib) print on fd 2 while probing.

    They write straight to the file descriptor, so redirecting sys.stderr is
    not enough; what they said goes to the debug log instead of the terminal.
    """
    said: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:
        yield said
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace").strip()
            if text:
                said.append(text)
                log.debug("MIDI system said: %s", text.replace("\n", " | "))


def _rtmidi():
    try:
        import rtmidi
    except ImportError as e:
        raise MidiSystemError(f"python-rtmidi is not usable ({e}): pip install python-rtmidi") from None
    return rtmidi


def _candidates(api: str) -> list[str]:
    if api != "auto":
        if api not in _API_ATTR:
            raise MidiSystemError(f"unknown MIDI API {api!r} (choose from {', '.join(API_CHOICES)})")
        return [api]
    if sys.platform == "darwin":
        return ["coremidi", "jack"]
    if sys.platform == "win32":
        return ["winmm"]
    # no sequencer device: trying ALSA would only print alsa-lib errors
    return (["alsa"] if os.path.exists("/dev/snd/seq") else []) + ["jack"]


def open_midi(kind: str, api: str = "auto", client: str | None = None):
    """(rtmidi object, API name) for ``kind`` "out" or "in", trying APIs in ``auto`` order."""
    rtmidi = _rtmidi()
    compiled = set(rtmidi.get_compiled_api())
    cls = rtmidi.MidiOut if kind == "out" else rtmidi.MidiIn
    client = client or (CLIENT_NAME if kind == "out" else CLOCK_CLIENT_NAME)
    errors = []
    for name in _candidates(api):
        const = getattr(rtmidi, _API_ATTR[name], None)
        if const is None or const not in compiled:
            errors.append(f"{_API_LABEL[name]} is not compiled into python-rtmidi")
            continue
        with _quiet_c_stderr():
            try:
                obj = cls(const, name=client)
            except Exception as e:
                errors.append(f"{_API_LABEL[name]}: {_short(e)}")
                continue
        return obj, name
    if sys.platform.startswith("linux") and api in ("auto", "alsa", "jack"):
        what, how = [], []
        if api in ("auto", "alsa"):
            what.append("no ALSA sequencer (/dev/snd/seq)")
        if api in ("auto", "jack"):
            what.append("no JACK server running")
            how.append(f"start one in another terminal: {JACKD_HINT}")
        if api in ("auto", "alsa"):
            how.append("load the ALSA sequencer: sudo modprobe snd-seq")
        raise MidiSystemError(
            f"no MIDI system available: {' and '.join(what)} ({'; or '.join(how)})"
            + (f" [{'; '.join(errors)}]" if errors else "")
        )
    raise MidiSystemError("no MIDI system available: " + "; ".join(errors or ["nothing to try"]))


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def list_ports(api: str = "auto") -> tuple[str, list[str], list[str]]:
    """(API name, input ports, output ports) of the MIDI system."""
    out, name = open_midi("out", api, client=CLIENT_NAME + "-list")
    try:
        with _quiet_c_stderr():
            outs = list(out.get_ports())
            inp, _ = open_midi("in", name, client=CLIENT_NAME + "-list")
            ins = list(inp.get_ports())
            inp.delete()
    finally:
        with contextlib.suppress(Exception):
            out.delete()
    return _API_LABEL[name], ins, outs


def virtual_supported(api: str) -> bool:
    return api != "winmm" and sys.platform != "win32"


# --- JACK: the server's comings and goings ----------------------------------------------------


class JackWatch:
    """A libjack client of ours (ctypes, no ports, no process callback) that watches the server.

    rtmidi does not say when the JACK server goes away: its clients keep a
    stale copy of the graph, sends vanish, and deleting them after a new server
    has started can crash the process. This client registers JACK's shutdown
    callback (called once, on a JACK thread; it only sets a flag) and its xrun
    callback (it only notes the time: :meth:`xruns`), and, being a client of
    its own, can list ports, count a port's connections and connect two ports
    for us. It is activated so that JACK delivers the callbacks; with no
    process callback it is not a realtime client and runs in no cycle. After a
    shutdown :meth:`revive` tries to open it again; each success bumps
    :attr:`generation`, which tells the ports to rebuild.
    Without libjack every method answers "unknown" (None / empty) and nothing
    else changes.
    """

    _SHUTDOWN = None  # the ctypes callback type, made with the library

    def __init__(self, name: str = CLIENT_NAME + "-watch") -> None:
        import ctypes
        import ctypes.util

        self._ct = ctypes
        self.name = name
        self.generation = 0
        self.dead = False
        self._client = None
        path = ctypes.util.find_library("jack") or "libjack.so.0"
        lib = ctypes.CDLL(path)
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        lib.jack_client_open.restype = vp
        lib.jack_client_open.argtypes = [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.jack_client_close.argtypes = [vp]
        lib.jack_get_ports.restype = ctypes.POINTER(cp)
        lib.jack_get_ports.argtypes = [vp, cp, cp, ctypes.c_ulong]
        lib.jack_port_by_name.restype = vp
        lib.jack_port_by_name.argtypes = [vp, cp]
        lib.jack_port_connected.argtypes = [vp]
        lib.jack_port_get_all_connections.restype = ctypes.POINTER(cp)
        lib.jack_port_get_all_connections.argtypes = [vp, vp]
        lib.jack_port_flags.argtypes = [vp]
        lib.jack_connect.argtypes = [vp, cp, cp]
        lib.jack_free.argtypes = [vp]
        lib.jack_get_buffer_size.restype = ctypes.c_uint32
        lib.jack_get_buffer_size.argtypes = [vp]
        lib.jack_get_sample_rate.restype = ctypes.c_uint32
        lib.jack_get_sample_rate.argtypes = [vp]
        lib.jack_get_time.restype = ctypes.c_uint64
        lib.jack_get_cycle_times.argtypes = [vp, ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint64),
                                             ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_float)]
        # out-parameters of jack_get_cycle_times, made once: the sender asks before each poll
        self._cycle_out = (ctypes.c_uint32(), ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_float())
        self._cycle_refs = tuple(ctypes.byref(x) for x in self._cycle_out)
        self._SHUTDOWN = ctypes.CFUNCTYPE(None, vp)
        lib.jack_on_shutdown.argtypes = [vp, self._SHUTDOWN, vp]
        self._XRUN = ctypes.CFUNCTYPE(ctypes.c_int, vp)
        lib.jack_set_xrun_callback.argtypes = [vp, self._XRUN, vp]
        lib.jack_activate.argtypes = [vp]
        lib.jack_deactivate.argtypes = [vp]
        lib.jack_get_xrun_delayed_usecs.restype = ctypes.c_float
        lib.jack_get_xrun_delayed_usecs.argtypes = [vp]
        self._lib = lib
        self._cb = self._SHUTDOWN(self._on_shutdown)  # kept: libjack holds only the pointer
        self._xrun_cb = self._XRUN(self._on_xrun)
        self._xrun_times: deque[tuple[float, float]] = deque(maxlen=64)  # (perf_counter, server late by)
        self._rate = 0
        if not self._open():
            raise OSError("no JACK server answers")

    def _on_shutdown(self, arg) -> None:  # JACK's thread: set a flag, nothing else
        self.dead = True

    def _on_xrun(self, arg) -> int:  # JACK's notification thread: note it, nothing else
        self._xrun_times.append((time.perf_counter(), 1e-6 * self._lib.jack_get_xrun_delayed_usecs(arg)))
        return 0

    def _open(self) -> bool:
        ct = self._ct
        status = ct.c_int(0)
        with _quiet_c_stderr():
            c = self._lib.jack_client_open(self.name.encode(), 0x01, ct.byref(status))  # JackNoStartServer
        if not c:
            return False
        self._lib.jack_on_shutdown(c, self._cb, None)
        self._lib.jack_set_xrun_callback(c, self._xrun_cb, c)  # arg: the client, for the delay
        if self._lib.jack_activate(c) != 0:  # no callbacks then: xruns() stays empty
            log.debug("the JACK watch client could not be activated")
        self._client = c
        self._rate = self._lib.jack_get_sample_rate(c)
        self.dead = False
        return True

    def revive(self) -> bool:
        """After a shutdown: True once a server answers again (a new generation)."""
        if not self.dead:
            return False
        # the old client's memory belongs to a server that is gone: leave it, do not close it
        self._client = None
        if self._open():
            self.generation += 1
            return True
        return False

    def _names(self, arr) -> list[str]:
        out: list[str] = []
        if not arr:
            return out
        i = 0
        while arr[i]:
            out.append(arr[i].decode(errors="replace"))
            i += 1
        self._lib.jack_free(self._ct.cast(arr, self._ct.c_void_p))
        return out

    def ports(self, pattern: str = "") -> list[str]:
        if self.dead or not self._client:
            return []
        with _quiet_c_stderr():
            return self._names(self._lib.jack_get_ports(self._client, pattern.encode() or None, None, 0))

    def connections(self, port: str) -> list[str] | None:
        """Full names of the ports ``port`` is connected to; None if it does not exist."""
        if self.dead or not self._client:
            return None
        p = self._lib.jack_port_by_name(self._client, port.encode())
        if not p:
            return None
        return self._names(self._lib.jack_port_get_all_connections(self._client, p))

    def connect(self, src: str, dst: str) -> bool:
        if self.dead or not self._client:
            return False
        with _quiet_c_stderr():
            rc = self._lib.jack_connect(self._client, src.encode(), dst.encode())
        return rc in (0, 17)  # 17: EEXIST, already connected

    def period_s(self) -> float | None:
        """Seconds per JACK period (buffer size / sample rate); None when no server answers."""
        if self.dead or not self._client:
            return None
        frames, rate = self._lib.jack_get_buffer_size(self._client), self._lib.jack_get_sample_rate(self._client)
        return frames / rate if frames and rate else None

    def cycle_position(self) -> tuple[float, float, float] | None:
        """Where the server's process cycle is now: (seconds since the current cycle started,
        seconds until the next one starts, seconds per cycle), from the server's own cycle
        timer (jack_get_cycle_times against jack_get_time, one clock); None when no server
        answers. Cheap (two calls reading the server's shared memory): the sender asks it
        before each poll of an input port."""
        if not self._read_cycle():
            return None
        now = self._lib.jack_get_time()
        _, cur, nxt, per = self._cycle_out
        if not cur.value or per.value <= 0:
            return None
        return (now - cur.value) * 1e-6, (nxt.value - now) * 1e-6, per.value * 1e-6

    def _read_cycle(self) -> bool:
        """The server's cycle timer into ``_cycle_out``; False when no server answers."""
        c = self._client
        return bool(not self.dead and c and self._lib.jack_get_cycle_times(c, *self._cycle_refs) == 0)

    def xruns(self) -> list[tuple[float, float]]:
        """The xruns reported since the last call: (when, ``time.perf_counter``; how late the
        server itself was, seconds). JACK tells every client of every xrun; the delay is 0
        when a client missed a cycle (measured: a 20 ms SIGSTOP of jack_midi_clock gave three
        xruns of 0 us; stops of jackd itself of 20 and 50 ms gave 20 and 46 ms)."""
        q = self._xrun_times
        if not q:  # the usual answer, asked before every read of the port
            return []
        out = []
        while q:
            out.append(q.popleft())
        return out

    def frame_lag(self) -> float | None:
        """The server's wall clock now minus its frame clock at the current cycle's start
        (seconds): constant plus where in its cycle the server is (0 to a period, and however
        late the caller runs), until the server itself loses time (its driver stalls), by
        which it grows at once. Read raw: the cycle timer's own microseconds are a filtered
        estimate that took seconds to follow a 50 ms stop of jackd (measured: 14 ms of it
        after 0.3 s). None when no server answers."""
        if not self._rate or not self._read_cycle():
            return None
        return self._lib.jack_get_time() * 1e-6 - self._cycle_out[0].value / self._rate

    def deactivate(self) -> None:
        """No more callbacks (xruns go unheard); the graph questions still work."""
        if self._client and not self.dead:
            with contextlib.suppress(Exception):
                self._lib.jack_deactivate(self._client)

    def close(self) -> None:
        if self._client and not self.dead:
            with contextlib.suppress(Exception):
                self._lib.jack_client_close(self._client)
        self._client = None


_watches: dict[str, JackWatch] = {}
_watch_lock = threading.Lock()


def jack_watch() -> JackWatch | None:
    """The JackWatch of the server this process's JACK clients go to (``JACK_DEFAULT_SERVER``,
    as libjack reads it), made on first use; None without libjack or a server."""
    key = os.environ.get("JACK_DEFAULT_SERVER", "default")
    with _watch_lock:
        w = _watches.get(key)
        if w is None:
            try:
                w = _watches[key] = JackWatch()
            except Exception as e:
                log.debug("no JACK watch client (%s): a server restart will not be noticed", e)
        return w


def quiet_jack_watches() -> None:
    """Before the performer closes its ports: no more JACK callbacks into Python. Closing
    JACK clients makes xruns; an xrun callback waiting for the GIL on JACK's notification
    thread, while the closing thread holds it inside rtmidi waiting on the server, may stall
    the close. A guess from one CI failure after the watch began to take xruns (the exit's
    CC123 and CC120 missing from the recording after SIGTERM), not reproduced alone."""
    with _watch_lock:
        for w in _watches.values():
            w.deactivate()


def _new_own_port(before: Sequence[str], after: Sequence[str], short: str) -> str | None:
    """The full JACK name of the port ``short`` that appeared between two listings."""
    new = [p for p in after if p not in set(before) and p.split(":", 1)[-1] == short]
    return new[0] if len(new) == 1 else None


# --- ports -------------------------------------------------------------------------------


class _RtPort:
    """Shared open / watch / reopen logic of an rtmidi port (``midi``: an rtmidi object).

    ``rebuild`` makes a fresh rtmidi object of the same API: after the JACK
    server went away and came back the old one is dead (see :class:`JackWatch`).
    """

    kind = "output"

    def __init__(self, midi, api: str, target: str | None, local_name: str,
                 rebuild: Callable[[], object] | None = None) -> None:
        self._midi = midi
        self.api = api
        self.target = target
        self.local_name = local_name
        self._rebuild = rebuild
        self._lock = threading.Lock()
        self.status = "closed"
        self.name = local_name
        self.own: str | None = None  # JACK: our own port's full name, as the server gave it
        self.reconnects = 0
        self.last_error: str | None = None
        # rtmidi objects of a server that went away: never deleted, since deleting them once a
        # new server runs can crash the process (they are few: one per server restart)
        self._graveyard: list[object] = []
        self._watch = jack_watch() if api == "jack" else None
        self._generation = self._watch.generation if self._watch else 0
        self._links: list[str] = []  # JACK: the ports ours was connected to, when last seen
        if target is None and not virtual_supported(api):
            raise PortError(LOOPMIDI_HINT)
        self.virtual = target is None
        self._prepare(midi)
        self._attach()
        self.status = "ok"

    def _prepare(self, midi) -> None:
        """Settings a fresh rtmidi object needs before its port opens."""

    def _attach(self) -> None:
        """Create the virtual port, or open the target; learn the names JACK gave."""
        w = self._watch
        before = w.ports() if w else []
        if self.virtual:
            try:
                self._midi.open_virtual_port(self.local_name)
            except Exception as e:
                raise PortError(f"cannot create the virtual {self.kind} port {self.local_name!r}: {_short(e)}") from None
            self.name = self.local_name
        else:
            ports = self._ports()
            i = match_port(self.target, ports, self.kind)
            self.name = ports[i]
            self._open(i)
        self.own = _new_own_port(before, w.ports(), self.local_name) if w else None
        if self.virtual and self.own:
            self.name = self.own  # "drum-performer-01:Drum Performer" when another instance runs
        self._after_attach()

    def _after_attach(self) -> None:
        pass

    def _ports(self) -> list[str]:
        try:
            return list(self._midi.get_ports())
        except Exception as e:
            log.debug("listing %s ports failed: %s", self.kind, e)
            return []

    def _open(self, index: int) -> None:
        try:
            self._midi.open_port(index, self.local_name)
        except Exception as e:
            raise PortError(f"cannot open {self.kind} port {self.name!r}: {_short(e)}") from None

    @property
    def period_s(self) -> float:
        """How far apart rtmidi moves this port's messages: one JACK period under JACK, 0 elsewhere.

        Under JACK rtmidi moves messages once a period: an input message is stamped
        when its period is processed, the period's start, and an output message is
        written at frame 0 of the first period processed after it was sent. On JACK's
        frame timeline the messages of a period fall anywhere in it, so input stamps
        are early and output late by half a period on average (``StampMapper.shift``
        and the scheduler's ``lead`` take that half back). ALSA and CoreMIDI move each
        message (packet) on its own: 0 there. Read when asked: a period changed while
        playing takes effect at the next port check.
        """
        w = self._watch
        return (w.period_s() or 0.0) if w is not None else 0.0

    def next_input(self, now: float, awaiting: bool = True) -> float | None:
        """When polling this port next can find something new, on the caller's clock ``now``:
        just after a JACK cycle has run (``INPUT_SETTLE_S`` after it starts, and once more at
        half the period for a cycle whose clients ran late), since rtmidi moves input only
        then. ``awaiting`` False (playing): the first of the two only. None off JACK or
        without a server: poll on a fixed interval. See ``Player.poll_wait`` for why."""
        w = self._watch
        pos = w.cycle_position() if w is not None else None
        if pos is None:
            return None
        since, until, period = pos
        first = min(INPUT_SETTLE_S, period / 2)
        for at in ((first, period / 2) if awaiting else (first,)):
            if since < at:
                return now + at - since  # this cycle's input may not all be in yet
        return now + max(until, 0.0) + first

    def server_report(self) -> tuple[list[tuple[float, float]], float | None] | None:
        """JACK's xruns since the last call and its frame lag now (:meth:`JackWatch.xruns`,
        :meth:`JackWatch.frame_lag`), for the clock this port feeds; None off JACK."""
        w = self._watch
        return (w.xruns(), w.frame_lag()) if w is not None else None

    def describe(self) -> str:
        where = f"virtual {self.name!r}" if self.virtual else repr(self.name)
        return where if self.status == "ok" else f"{where} ({self.status})"

    def listeners(self) -> list[str] | None:
        """JACK: the ports ours is connected to; None where that cannot be known."""
        if self._watch is None or self.status != "ok" or not self.own:
            return None
        return self._watch.connections(self.own)

    def check(self) -> None:
        """Notice a vanished port (or JACK server) and reopen it when it is back (about once a second)."""
        if self.status == "closed":
            return
        w = self._watch
        if w is not None and (w.dead or w.generation != self._generation or self.status == "server lost"):
            self._server_check(w)
            return
        if w is not None and self.status == "ok":
            self._remember_links(w)
        if self.virtual:
            return
        ports = self._ports()
        if self.status == "ok":
            if self.name not in ports:
                self.status = "lost"
                log.warning("MIDI %s port %r disappeared; retrying every second", self.kind, self.name)
                with self._lock, contextlib.suppress(Exception):
                    self._midi.close_port()
            return
        # lost: the same name back, else a unique match of what the user asked for
        if self.name in ports:
            i = ports.index(self.name)
        else:
            try:
                i = match_port(self.target or self.name, ports, self.kind)
            except PortError:
                return
        with self._lock:
            with contextlib.suppress(Exception):
                self._midi.close_port()
            try:
                self._midi.open_port(i, self.local_name)
            except Exception as e:
                self.last_error = _short(e)
                log.debug("reopening %r failed: %s", ports[i], e)
                return
            self.name = ports[i]
            self.status = "ok"
            self.reconnects += 1
        self._on_reopen()
        log.warning("MIDI %s port %r is back; reconnected", self.kind, self.name)

    # -- JACK server restarts

    def _remember_links(self, w: JackWatch) -> None:
        if self.own:
            links = w.connections(self.own)
            if links is not None:
                self._links = [p for p in links if not _is_own(p)]  # ours are remade with the port

    def _server_check(self, w: JackWatch) -> None:
        if self.status != "server lost":
            with self._lock:
                self.status = "server lost"
                self._graveyard.append(self._midi)
            self._bury()
            log.warning("the JACK server went away: the %s port %r waits for it to come back "
                        "(start it again: %s)", self.kind, self.name, JACKD_HINT)
        if w.dead and not w.revive():
            return
        if self._rebuild is None:
            return
        try:
            with _quiet_c_stderr():
                midi = self._rebuild()
        except Exception as e:
            log.debug("no new %s client yet: %s", self.kind, e)
            return
        self._generation = w.generation
        with self._lock:
            self._midi = midi
        try:
            self._prepare(midi)
            self._attach()
        except PortError as e:
            self.last_error = str(e)
            if self.virtual:  # try the whole rebuild again at the next check
                self._graveyard.append(midi)
                self._generation = -1
                log.debug("recreating %s port %r failed: %s", self.kind, self.local_name, e)
                return
            # a --port target that is not back yet: looked for every second like any lost port
            self.status = "lost"
            log.warning("the JACK server is back; waiting for %s port %r", self.kind, self.target)
            return
        self.status = "ok"
        self.reconnects += 1
        self._on_reopen()
        log.warning("the JACK server is back: %s port %s created again", self.kind, self.describe())
        self._relink(w)

    def _relink(self, w: JackWatch) -> None:
        """Make again the connections our port had before the server went away, where the
        other side is back; the rest are tried again on later checks."""
        if not self._links or not self.own:
            return
        have = set(w.ports())
        left = []
        for peer in self._links:
            src, dst = (self.own, peer) if self.kind == "output" else (peer, self.own)
            if peer in have and w.connect(src, dst):
                log.warning("reconnected %s -> %s", src, dst)
            else:
                left.append(peer)
        self._links = left

    def _bury(self) -> None:
        """Other rtmidi objects of a dead server to keep (not delete)."""

    def close(self) -> None:
        with self._lock:
            if self.status == "closed":
                return
            dead = self.status == "server lost"
            self.status = "closed"
            if dead:
                return  # the object belongs to a server that is gone: leave it alone
            with contextlib.suppress(Exception):
                self._midi.close_port()
            with contextlib.suppress(Exception):
                self._midi.delete()

    def _on_reopen(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RtMidiOutput(_RtPort):
    kind = "output"

    def __init__(self, midi, api: str, target: str | None = None, local_name: str = OUT_NAME,
                 rebuild: Callable[[], object] | None = None) -> None:
        self.sent = 0
        self.dropped = 0
        super().__init__(midi, api, target, local_name, rebuild)

    def send(self, msg: list[int]) -> None:
        with self._lock:
            if self.status != "ok":
                self.dropped += 1
                return
            try:
                self._midi.send_message(msg)
                self.sent += 1
            except Exception as e:
                self.dropped += 1
                if self.status == "ok" and not self.virtual:
                    self.status = "lost"
                    log.warning("sending to %r failed (%s); retrying every second", self.name, _short(e))


def _delta(m) -> float | None:
    """rtmidi's delta for message ``m``, or None where it is not the time since the last message.

    A message holding a SysEx may be several driver events glued together (see
    :class:`SysexUnsticker`); its delta is then the time since the last of them, and
    adding it up would put every later stamp early by the time the SysEx took. None
    restarts the stamp timeline at this message's arrival.
    """
    return None if 0xF0 in m[0] else m[1]


class SysexUnsticker:
    """Ends a SysEx left open on a JACK clock input, so that the clock behind it gets through.

    python-rtmidi's JACK input (RtMidi 5) appends every event after one that
    opens a SysEx without its F7 -- clocks, Start, controls -- to that SysEx and
    delivers nothing until an event ending in F7 arrives. A device that never
    sends the F7 would hold the clock back for good. This is a JACK output of
    ours connected to our own clock input: when the input has been silent for
    longer than the clocks' usual spacing, it sends a lone F7, which ends the
    SysEx and releases what was held as one message; the parser takes every
    clock, Start and control out of it (realtime bytes count wherever they are).
    The held clocks arrive late, together: they are counted, and the tempo fit
    leaves them out as a burst. A lone F7 that comes back alone says nothing
    was held: the next one waits twice as long (up to half a second), so an
    idle input costs two tiny messages a second.
    """

    MIN_QUIET, MAX_QUIET, IDLE_MAX = 0.004, 0.05, 0.5

    def __init__(self, midi_out, target_index: int) -> None:
        self._out = midi_out
        self._out.open_port(target_index, "SysEx end")
        self.quiet = 0.03  # silence after which something may be held up
        self._interval: float | None = None  # typical spacing of what arrives (EMA)
        self._backoff = self.quiet
        self._last_rx: float | None = None
        self._last_tx = -math.inf
        self._pending = 0  # F7s sent and not yet seen back
        self.released = 0  # times a held SysEx (and what it held) was let through

    def seen(self, now: float, data) -> bool:
        """A message came in at ``now`` (sender thread); True if it is our own F7 back
        alone, which says nothing and is not passed on."""
        if self._pending and data and data[-1] == 0xF7:
            self._pending = 0
            if len(data) == 1:  # our own F7, alone: nothing was held up
                self._backoff = min(2 * self._backoff, self.IDLE_MAX)
                return True
            self.released += 1
            self._backoff = self.quiet
        if self._last_rx is not None:
            dt = now - self._last_rx
            if dt < 0.2:
                self._interval = dt if self._interval is None else 0.9 * self._interval + 0.1 * dt
                self.quiet = min(self.MAX_QUIET, max(self.MIN_QUIET, 1.5 * self._interval + 0.002))
                self._backoff = self.quiet
        self._last_rx = now
        return False

    def tick(self, now: float) -> None:
        """Called after each drain: send an F7 if the input has been quiet too long."""
        last = self._last_rx if self._last_rx is not None else -math.inf
        if now - last > self.quiet and now - self._last_tx > self._backoff:
            self._last_tx = now
            self._pending += 1
            with contextlib.suppress(Exception):
                self._out.send_message([0xF7])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._out.close_port()
        with contextlib.suppress(Exception):
            self._out.delete()


class RtMidiInput(_RtPort):
    """Clock and controls in. Nothing of ours runs on the driver's thread.

    rtmidi queues each message with the driver's own delta time (per JACK
    period, CoreMIDI packet, ALSA event). By default (``polled``) the sender
    thread drains that queue itself (under JACK just after each cycle has run,
    :meth:`next_input`; elsewhere every 2 ms, 0.5 ms while a Start or
    Continue is awaited): a Python callback
    would run on the driver's thread and, under JACK, make the realtime
    process thread wait for the GIL, which a busy machine turns into xruns.
    With ``polled=False`` a callback only timestamps and queues into ``inbox``.
    Either way the items are (arrival time, driver delta, bytes). Under JACK,
    polled, a :class:`SysexUnsticker` keeps an open SysEx from holding the clock.
    """

    kind = "input"

    def __init__(self, midi, api: str, inbox: queue.SimpleQueue, target: str | None = None,
                 local_name: str = CLOCK_NAME, polled: bool = True,
                 rebuild: Callable[[], object] | None = None,
                 unsticker: Callable[[], object] | None = None) -> None:
        self.inbox = inbox
        self.polled = polled
        self._make_unsticker = unsticker  # () -> an rtmidi MidiOut of the same API
        self._carry = 0.0  # driver time of dropped echoes, added to the next message's delta
        self.unsticker: SysexUnsticker | None = None
        super().__init__(midi, api, target, local_name, rebuild)

    def _prepare(self, midi) -> None:
        # every message type: the parser decides, and rtmidi's deltas stay continuous
        midi.ignore_types(sysex=False, timing=False, active_sense=False)
        if not self.polled:
            put, now = self.inbox.put, time.perf_counter

            def callback(event, data=None):
                put((now(), _delta(event), event[0]))

            midi.set_callback(callback)

    def _after_attach(self) -> None:
        if not (self.polled and self._make_unsticker and self.own):
            return
        out = None
        try:
            with _quiet_c_stderr():
                out = self._make_unsticker()
                names = list(out.get_ports())
                self.unsticker = SysexUnsticker(out, names.index(self.own))
        except Exception as e:
            log.debug("no SysEx unsticker for %s: %s", self.own, e)
            if out is not None:
                with contextlib.suppress(Exception):
                    out.delete()

    def _bury(self) -> None:
        if self.unsticker is not None:
            self._graveyard.append(self.unsticker)
            self.unsticker = None

    def poll(self) -> list:
        """Messages queued by the driver since the last call (sender thread)."""
        if not self.polled:
            return []
        out = []
        now = time.perf_counter
        with self._lock:
            if self.status != "ok":
                return out
            get = self._midi.get_message
            u = self.unsticker
            while True:
                try:
                    m = get()
                except Exception:
                    break
                if m is None:
                    break
                t = now()
                if u is not None and u.seen(t, m[0]):
                    self._carry += m[1] or 0.0  # our F7 back: its time still counts
                    continue
                d = _delta(m)
                if d is not None:
                    d += self._carry
                self._carry = 0.0
                out.append((t, d, m[0]))
            if u is not None:
                u.tick(now())
        return out

    def _on_reopen(self) -> None:
        # the driver's timeline restarted: the sender's stamp mapper must not trust old deltas
        self.inbox.put((time.perf_counter(), None, []))

    def close(self) -> None:
        if not self.polled and self.status != "server lost":
            with contextlib.suppress(Exception):
                self._midi.cancel_callback()
        if self.unsticker is not None and self.status != "server lost":
            self.unsticker.close()
        self.unsticker = None
        super().close()


def open_output(target: str | None = None, api: str = "auto") -> RtMidiOutput:
    if target is None and (sys.platform == "win32" or api == "winmm"):
        raise PortError(LOOPMIDI_HINT)
    midi, name = open_midi("out", api)
    try:
        return RtMidiOutput(midi, name, target, rebuild=lambda: open_midi("out", name)[0])
    except BaseException:
        with contextlib.suppress(Exception):
            midi.delete()
        raise


def open_input(inbox: queue.SimpleQueue, target: str | None = None, api: str = "auto") -> RtMidiInput:
    if target is None and (sys.platform == "win32" or api == "winmm"):
        raise PortError(LOOPMIDI_HINT)
    midi, name = open_midi("in", api)
    unsticker = None
    if name == "jack":
        def unsticker():
            return open_midi("out", "jack", client=CLOCK_CLIENT_NAME + "-sysex-end")[0]
    try:
        return RtMidiInput(midi, name, inbox, target, rebuild=lambda: open_midi("in", name)[0],
                           unsticker=unsticker)
    except BaseException:
        with contextlib.suppress(Exception):
            midi.delete()
        raise


def open_follow_input(inbox: queue.SimpleQueue, target: str | None = None, api: str = "auto") -> RtMidiInput:
    """``--follow [NAME]``: the input the player's notes arrive on, matched like ``--clock-port``,
    or a virtual input "Drum Performer Follow". Polled (nothing of ours on the driver's thread),
    with the driver's deltas, exactly like the clock input; ``inbox`` gets its reopen marks."""
    if target is None and (sys.platform == "win32" or api == "winmm"):
        raise PortError(LOOPMIDI_HINT.replace("--clock-port NAME for the DAW's clock", "--follow NAME"))
    midi, name = open_midi("in", api, client=FOLLOW_CLIENT_NAME)
    try:
        return RtMidiInput(midi, name, inbox, target, local_name=FOLLOW_NAME,
                           rebuild=lambda: open_midi("in", name, client=FOLLOW_CLIENT_NAME)[0])
    except BaseException:
        with contextlib.suppress(Exception):
            midi.delete()
        raise


# --- in-memory ports --------------------------------------------------------------------------


class _MemoryPort:
    """What the in-memory ports share with the real ones: a status, check(), close(), a context."""

    name: str
    status: str
    api = "memory"
    polled = False  # what arrives is pushed into the inbox, never polled

    def check(self) -> None:
        pass

    def poll(self) -> list:
        return []

    def close(self) -> None:
        self.status = "closed"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemoryOutput(_MemoryPort):
    """Keeps (time, message) of everything sent; ``fail()`` / ``restore()`` simulate losing it."""

    def __init__(self, name: str = "memory", clock: Callable[[], float] = time.perf_counter) -> None:
        self.name = name
        self.clock = clock
        self.messages: list[tuple[float, tuple[int, ...]]] = []
        self.status = "ok"
        self.virtual = False
        self.dropped = 0
        self._lock = threading.Lock()

    def send(self, msg: list[int]) -> None:
        with self._lock:
            if self.status != "ok":
                self.dropped += 1
                return
            self.messages.append((self.clock(), tuple(msg)))

    def fail(self) -> None:
        self.status = "lost"

    def restore(self) -> None:
        self.status = "ok"

    def describe(self) -> str:
        return self.name if self.status == "ok" else f"{self.name} ({self.status})"


class MemoryInput(_MemoryPort):
    """Messages pushed here reach the sender's inbox exactly as the MIDI callback would put them."""

    def __init__(self, inbox: queue.SimpleQueue, name: str = "memory in") -> None:
        self.inbox = inbox
        self.name = name
        self.status = "ok"
        self.virtual = False
        self._last: float | None = None

    def push(self, data, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        delta = 0.0 if self._last is None else t - self._last
        self._last = t
        self.inbox.put((t, delta, list(data)))

    def describe(self) -> str:
        return self.name


# --- nobody listening ----------------------------------------------------------------------------

UNCONNECTED_GRACE_S = 3.0  # time to wire the ports after start before a warning is due


def warn_unconnected(output, clock_input=None, now: float | None = None) -> bool:
    """Warn once when nothing is connected to the drums output (or into the clock input).

    Called about once a second from the start; True once it has decided (warned or
    found listeners, or cannot know: only JACK says who is connected), after which the
    caller stops asking. Waits :data:`UNCONNECTED_GRACE_S` first, so a user or a
    session manager wiring the ports right after start is not warned.
    """
    now = time.monotonic() if now is None else now
    first = getattr(output, "_unconnected_first_check", None)
    if first is None:
        with contextlib.suppress(AttributeError):
            output._unconnected_first_check = now
        return False
    if now - first < UNCONNECTED_GRACE_S:
        return False
    outs = output.listeners() if hasattr(output, "listeners") else None
    if outs == []:
        own = output.own or output.name
        log.warning(
            "nothing is connected to the drums output %r, so nobody hears them: connect it to a "
            "synth or a DAW track, e.g. jack_connect '%s' 'SYNTH:PORT' (jack_lsp lists the ports), "
            "or start a General MIDI synth and connect to it: "
            "fluidsynth -a jack -m jack /usr/share/sounds/sf2/FluidR3_GM.sf2", own, own)
    elif outs:
        log.info("drums output %r is connected to %s", output.own or output.name, ", ".join(outs))
    ins = clock_input.listeners() if clock_input is not None and hasattr(clock_input, "listeners") else None
    if ins == []:
        own = clock_input.own or clock_input.name
        log.warning(
            "nothing sends clock into %r: connect the DAW's MIDI clock output to it, e.g. "
            "jack_connect 'jack_midi_clock:mclk_out' '%s', or play on the internal clock with --bpm 120",
            own, own)
    return True
