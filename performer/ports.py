"""MIDI ports: find them by name, open or create them, survive them going away.

``--port NAME`` matching (the same for ``--clock-port``): an exact name first,
then a case-insensitive one, then every word of NAME appearing in the port
name ("IAC Bus 1" finds "IAC Driver Bus 1"). Several matches at the first
level that has any is an error that lists them; none is an error that lists
what exists. Without a name the performer creates virtual ports ("Drum
Performer" out, "Drum Performer Clock" in); Windows has none, so there the
error points to loopMIDI.

Ports are context managers. ``send`` is thread-safe and never raises: a port
that vanished drops messages, is reported once, and :meth:`check` (called
about once a second) reopens it when a port of that name is back. Under JACK
every client this module creates is named ``drum-performer...``.

:class:`MemoryOutput` and :class:`MemoryInput` are in-process ports (in the
spirit of mido's) for tests and embedding.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from model.errors import DrumPerformerError

log = logging.getLogger(__name__)

CLIENT_NAME = "drum-performer"
CLOCK_CLIENT_NAME = "drum-performer-clock"
OUT_NAME = "Drum Performer"
CLOCK_NAME = "Drum Performer Clock"
API_CHOICES = ("auto", "alsa", "jack", "coremidi", "winmm")
_API_ATTR = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE", "winmm": "API_WINDOWS_MM"}
_API_LABEL = {"alsa": "ALSA", "jack": "JACK", "coremidi": "CoreMIDI", "winmm": "Windows MultiMedia"}
LOOPMIDI_HINT = (
    "Windows has no virtual MIDI ports: install loopMIDI (https://www.tobias-erichsen.de/software/loopmidi.html), "
    "create a port in it and pass --port NAME (and --clock-port NAME for the DAW's clock)"
)


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
    if api == "auto" and sys.platform.startswith("linux"):
        raise MidiSystemError(
            "no MIDI system available: no ALSA sequencer (/dev/snd/seq) and no JACK server running "
            "(start jackd, or load snd-seq)" + (f" [{'; '.join(errors)}]" if errors else "")
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


# --- ports -------------------------------------------------------------------------------


class _RtPort:
    """Shared open / watch / reopen logic of an rtmidi port (``midi``: an rtmidi object)."""

    kind = "output"

    def __init__(self, midi, api: str, target: str | None, local_name: str) -> None:
        self._midi = midi
        self.api = api
        self.target = target
        self.local_name = local_name
        self._lock = threading.Lock()
        self.status = "closed"
        self.name = local_name
        self.reconnects = 0
        self.last_error: str | None = None
        if target is None:
            if not virtual_supported(api):
                raise PortError(LOOPMIDI_HINT)
            try:
                midi.open_virtual_port(local_name)
            except Exception as e:
                raise PortError(f"cannot create the virtual {self.kind} port {local_name!r}: {_short(e)}") from None
            self.virtual = True
        else:
            self.virtual = False
            ports = self._ports()
            i = match_port(target, ports, self.kind)
            self.name = ports[i]
            self._open(i)
        self.status = "ok"

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

    def describe(self) -> str:
        where = f"virtual {self.name!r}" if self.virtual else repr(self.name)
        return where if self.status == "ok" else f"{where} ({self.status})"

    def check(self) -> None:
        """Notice a vanished port and reopen it when it is back (call about once a second)."""
        if self.virtual or self.status == "closed":
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

    def _on_reopen(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            if self.status == "closed":
                return
            self.status = "closed"
            with contextlib.suppress(Exception):
                self._midi.close_port()
            with contextlib.suppress(Exception):
                self._midi.delete()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RtMidiOutput(_RtPort):
    kind = "output"

    def __init__(self, midi, api: str, target: str | None = None, local_name: str = OUT_NAME) -> None:
        super().__init__(midi, api, target, local_name)
        self.sent = 0
        self.dropped = 0

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


class RtMidiInput(_RtPort):
    """Clock and controls in. Nothing of ours runs on the driver's thread.

    rtmidi queues each message with the driver's own delta time (per JACK
    period, CoreMIDI packet, ALSA event). By default (``polled``) the sender
    thread drains that queue itself, every millisecond: a Python callback
    would run on the driver's thread and, under JACK, make the realtime
    process thread wait for the GIL, which a busy machine turns into xruns.
    With ``polled=False`` a callback only timestamps and queues into ``inbox``.
    Either way the items are (arrival time, driver delta, bytes).
    """

    kind = "input"

    def __init__(self, midi, api: str, inbox: queue.SimpleQueue, target: str | None = None,
                 local_name: str = CLOCK_NAME, polled: bool = True) -> None:
        self.inbox = inbox
        self.polled = polled
        # every message type: the parser decides, and rtmidi's deltas stay continuous
        midi.ignore_types(sysex=False, timing=False, active_sense=False)
        if not polled:
            put, now = inbox.put, time.perf_counter

            def callback(event, data=None):
                put((now(), event[1], event[0]))

            midi.set_callback(callback)
        super().__init__(midi, api, target, local_name)

    def poll(self) -> list:
        """Messages queued by the driver since the last call (sender thread)."""
        if not self.polled or self.status != "ok":
            return []
        out = []
        now = time.perf_counter
        get = self._midi.get_message
        with self._lock:
            while True:
                try:
                    m = get()
                except Exception:
                    return out
                if m is None:
                    return out
                out.append((now(), m[1], m[0]))

    def _on_reopen(self) -> None:
        # the driver's timeline restarted: the sender's stamp mapper must not trust old deltas
        self.inbox.put((time.perf_counter(), None, []))

    def close(self) -> None:
        if not self.polled:
            with contextlib.suppress(Exception):
                self._midi.cancel_callback()
        super().close()


def open_output(target: str | None = None, api: str = "auto") -> RtMidiOutput:
    if target is None and (sys.platform == "win32" or api == "winmm"):
        raise PortError(LOOPMIDI_HINT)
    midi, name = open_midi("out", api)
    try:
        return RtMidiOutput(midi, name, target)
    except BaseException:
        with contextlib.suppress(Exception):
            midi.delete()
        raise


def open_input(inbox: queue.SimpleQueue, target: str | None = None, api: str = "auto") -> RtMidiInput:
    if target is None and (sys.platform == "win32" or api == "winmm"):
        raise PortError(LOOPMIDI_HINT)
    midi, name = open_midi("in", api)
    try:
        return RtMidiInput(midi, name, inbox, target)
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
