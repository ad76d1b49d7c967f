"""Live audio output (``--audio [--soundfont FILE.sf2]``): hear the groove without a DAW.

:class:`AudioSink` is one more :class:`performer.wiring.Sink`. It plays the
built-in kit (:mod:`performer.sound`) or a SoundFont kit through an audio
output stream, beside the MIDI port and ``--record``.

Timing. A note must sound at its song position's time, not when a Python
thread got to it. The stream's callback renders a block some time before that
block reaches the DAC, so a note has to be known *before* the callback that
renders its frame runs: at least the output latency plus one block ahead.
The MIDI port gets each note only ``lead`` (a fraction of a millisecond)
before its time, so this sink takes its notes from the scheduler's *ahead
lane* (:meth:`performer.scheduler.Scheduler.set_ahead`) :attr:`AudioSink.lead_s`
seconds early: the same notes, from the same pattern and the same clock
prediction, so MIDI and audio cannot disagree on what is played, and the
scheduler keeps its safety rules (a Stop or a dropout stops both lanes).
Why not the other ways: a larger ``lead`` for every sink would make the MIDI
port early; a second scheduler reading the pattern source would ask the
director twice for each cycle (it hands out fills and morph steps once); and
a constant delay of the audio would put it a block plus latency behind MIDI.

The stream runs in a process of its own (:class:`AudioSink` says why);
notes reach it as lines on a pipe. Clock domains: a note's time is on the
performer's timeline, ``time.perf_counter`` (CLOCK_MONOTONIC on Linux,
system-wide, so the same in both processes); JACK's and Link's clocks
(CLOCK_MONOTONIC_RAW) are never read here. The time is put on the
stream's frame timeline *inside the audio callback* (:class:`StreamClock`):
the callback's own ``perf_counter()``, its block's first frame and the
output latency PortAudio reports (``outputBufferDacTime - currentTime``, a
difference within the stream's clock, never compared with another clock)
give when that frame is heard; the earliest-woken callback of the last half
second is kept. The output latency is compensated by that DAC time: a note
is rendered at ``frame0 + (t - dac) * rate``. Note-offs are made here too, ``gate`` after
each note-on's frame (a SoundFont voice needs them; the built-in kit ignores
them); the scheduler's wall-time note-offs would reach the stream a block
plus latency late. Stop, CC123 and CC120 clear the renderer: queued notes
dropped, every voice silenced.

Why ``sounddevice`` (PortAudio) as the audio library, measured in
``benchmarks/audio_backends.py`` (results in benchmarks/results/audio_backends.json):
it reaches the default output on Linux (ALSA, PulseAudio or PipeWire through
ALSA), macOS and Windows (its wheels bundle PortAudio there), and JACK
through PortAudio's JACK host API (compiled into Debian's libportaudio2),
which is how it is tested here over the dummy driver. It hands numpy arrays
to the callback and gives the DAC time of each block. PyAudio (also
PortAudio, already pulled in by tinysoundfont) wants bytes back from each
callback and has wheels with PortAudio only for Windows; JACK-Client's own
ports would be the most direct under JACK but reach no output where JACK
is not running, which is most users' machines.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from performer.audio import CHANNELS, AudioError, BlockRenderer, Event
from performer.clock import STOP, Transport

log = logging.getLogger(__name__)

JACK_HOSTAPI = "JACK Audio Connection Kit"
# Added to latency + block in lead_s: the audio callback's wake-up jitter and the
# sender's own (a note that misses its callback is heard late, at the next block's start)
LEAD_MARGIN_S = 0.006
MIN_OFFSET_WINDOW_S = 0.5  # the frame-0 time is the minimum over the last 0.5 s of callbacks
# This many callbacks in a row, each later than the kept minimum by STEP_S, are a step of the
# timeline (frames the device played and this stream never rendered, with no underflow flag):
# the minimum starts afresh. Measured before (tests/jack, 180 BPM, cymbals muted): after one
# xrun the onsets were 5.4-6.5 ms late from 44 to 463 ms after it, as long as the old minimum
# stayed in its 0.5 s window, which a flagged underflow would have cleared (that minute: 11
# xruns, 6 underflows flagged). A false step costs nothing: the next early callback takes the
# minimum down again.
STEP_CALLBACKS = 4
STEP_S = 0.001
CC_ALL_SOUND_OFF, CC_ALL_NOTES_OFF = 120, 123
_CLEAR = None  # in the sink's inbox: clear the renderer at this point of the queue


def missing_line(err: BaseException) -> str:
    """The one line for a missing audio library: what to install."""
    if isinstance(err, OSError):  # sounddevice imports, but the PortAudio library is not there
        return ("--audio needs the PortAudio library: sudo apt install libportaudio2 (Debian/Ubuntu), "
                "sudo dnf install portaudio (Fedora), or your system's portaudio package")
    return "--audio needs the sounddevice package: pip install 'drum-performer[audio]'"


def check_installed() -> None:
    """An :class:`AudioError` saying what to install if ``sounddevice`` is not there.

    Only looks for it: importing it would start PortAudio in the performer's own
    process (under JACK, a JACK client of its own); the audio process imports it,
    and reports a missing PortAudio library with :func:`missing_line`'s line.
    """
    try:
        spec = importlib.util.find_spec("sounddevice")
    except (ImportError, ValueError, AttributeError):
        spec = None
    if spec is None:
        raise AudioError(missing_line(ImportError("sounddevice")))


def require():
    """The ``sounddevice`` module, or an :class:`AudioError` saying what to install."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise AudioError(missing_line(e)) from None
    return sounddevice


class StreamClock:
    """When the stream's frame 0 is heard, on the ``time.perf_counter`` timeline.

    Frame ``f`` is heard at ``A + f / rate``. Each callback for the block that
    starts at frame ``f0`` runs one output latency ``L`` (the callback's
    ``outputBufferDacTime - currentTime``) before that block is heard, plus
    however late the audio thread woke, so ``now - f0 / rate + L`` is ``A``
    plus a wake-up delay, never less: the smallest value over the last
    ``window`` seconds is the estimate (a sliding minimum). Why frames and not
    PortAudio's ``currentTime`` itself: under JACK that is interpolated and
    jumps by up to a period now and then, and one early outlier would hold a
    minimum wrong for the whole window. An underflow (the device played
    frames this stream never rendered) moves ``A`` later: the estimate starts
    afresh when the device flags it, or when ``STEP_CALLBACKS`` callbacks in a
    row all come ``STEP_S`` or more after the minimum (a step no flag told of).
    """

    def __init__(self, window: float = MIN_OFFSET_WINDOW_S) -> None:
        self.window = window
        self.resets = 0  # flagged underflows
        self.steps = 0  # unflagged steps of the timeline
        self._above = 0  # callbacks in a row later than the minimum by STEP_S
        self._win: deque[tuple[float, float]] = deque()  # (callback time, observed A), A increasing

    def update(self, now: float, frame_s: float, latency: float, glitch: bool = False) -> float:
        """``frame_s``: the block's first frame in seconds (frame / rate); returns ``A``."""
        win = self._win
        a = now - frame_s + latency
        if glitch and win:
            self.resets += 1
            win.clear()
        self._above = self._above + 1 if win and a > win[0][1] + STEP_S else 0
        if self._above >= STEP_CALLBACKS:
            self.steps += 1
            self._above = 0
            win.clear()
        while win and win[-1][1] >= a:
            win.pop()
        win.append((now, a))
        while win[0][0] < now - self.window:
            win.popleft()
        return win[0][1]


class AudioEngine:
    """The audio process's side: notes in, blocks of the renderer out, in the stream's callback.

    :meth:`process` is the whole callback minus the device (tests drive it with
    simulated stream times); :meth:`note` and :meth:`clear` come from the
    process's reader thread.
    """

    def __init__(self, renderer: BlockRenderer, rate: int, *, name: str = "audio",
                 latency: float = 0.0, block: int = 0, now=time.perf_counter) -> None:
        self.renderer = renderer
        self.rate = int(rate)
        self.name = name
        self.latency = latency  # seconds from a callback to its block's DAC time (refined when it runs)
        self.block = block  # frames per callback (0: unknown until it runs; 1024 assumed)
        self.now = now
        self.stream = None
        self.late = 0  # note-ons that reached the callback after their frame's block
        self.underflows = 0  # blocks the device played before the callback had filled them
        self.callbacks = 0
        self.errors = 0
        self.max_gap = 0.0  # longest time between two callbacks' starts (s): a stalled audio thread
        self.max_busy = 0.0  # longest callback (s)
        self._last_cb: float | None = None
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._offs: dict[int, int] = {}  # pitch -> frame of its note-off (audio thread only)
        self._clock = StreamClock()
        self.input_fd = -1  # the audio process: notes are read from here inside the callback
        self.eof = threading.Event()
        self._partial = b""

    @property
    def lead_s(self) -> float:
        """Seconds before its time a note must be here: a block, the latency, a margin."""
        block = self.block or 1024
        return self.latency + block / self.rate + LEAD_MARGIN_S

    def note(self, t: float, pitch: int, velocity: int, gate: float) -> None:
        """Sound ``pitch`` at ``t`` (perf_counter seconds), released ``gate`` seconds later."""
        self._inbox.put((t, pitch, velocity, gate))

    def clear(self) -> None:
        """Drop what is queued and silence every voice, at the next block."""
        self._inbox.put(_CLEAR)

    # -- the audio thread

    def process(self, frames: int, now: float, stream_time: float, dac_time: float,
                glitch: bool = False) -> np.ndarray:
        """One block: the notes queued so far onto frames, then the renderer's audio.

        ``stream_time`` and ``dac_time`` are the callback's ``currentTime`` and
        ``outputBufferDacTime`` (the stream's clock), ``now`` is perf_counter at
        the callback's start; ``glitch``: the device reported an underflow.
        """
        self.callbacks += 1
        self.block = frames
        self.latency = max(0.0, dac_time - stream_time)
        r = self.renderer
        f0 = r.frame
        # this block's DAC time on the perf_counter timeline
        dac = self._clock.update(now, f0 / self.rate, self.latency, glitch) + f0 / self.rate
        f1 = f0 + frames
        offs = self._offs
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is _CLEAR:
                offs.clear()
                r.clear()
                continue
            t, pitch, velocity, gate = item
            f = f0 + round((t - dac) * self.rate)
            if f < f0:
                self.late += 1
            off = offs.pop(pitch, None)
            if off is not None:
                r.schedule(Event(min(off, max(f, f0)), pitch, 0))  # a re-strike releases first
            r.schedule(Event(f, pitch, velocity))
            offs[pitch] = max(f, f0) + max(1, round(gate * self.rate))
        for pitch in [p for p, off in offs.items() if off < f1]:
            r.schedule(Event(offs.pop(pitch), pitch, 0))
        return r.render(frames)

    def read_input(self) -> None:
        """Take the note lines waiting on ``input_fd`` (non-blocking): ``N t pitch velocity gate``
        and ``C``; at its end, set ``eof``."""
        try:
            data = os.read(self.input_fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self.input_fd = -1
            self.eof.set()
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            f = line.split()
            if len(f) == 5 and f[0] == b"N":
                self.note(float(f[1]), int(f[2]), int(f[3]), float(f[4]))
            elif f and f[0] == b"C":
                self.clear()

    def _callback(self, out, frames, time_info, status) -> None:
        now = self.now()
        if self.input_fd >= 0:
            self.read_input()
        if self._last_cb is not None and now - self._last_cb > self.max_gap:
            self.max_gap = now - self._last_cb
        self._last_cb = now
        glitch = bool(status and status.output_underflow)
        if glitch:
            self.underflows += 1
        try:
            block = self.process(frames, now, time_info.currentTime, time_info.outputBufferDacTime, glitch)
            if out.shape[1] == block.shape[1]:
                out[:] = block
            else:  # a mono device
                out[:, 0] = block.mean(axis=1)
        except Exception:  # never raise into PortAudio: silence this block and say so once
            out.fill(0)
            self.errors += 1
            if self.errors == 1:
                log.exception("the audio callback failed; this block is silent")
        busy = self.now() - now
        if busy > self.max_busy:
            self.max_busy = busy

    # -- the stream

    def attach(self, stream) -> None:
        """Use ``stream`` (already opened with :meth:`_callback`) and start it."""
        self.stream = stream
        lat = getattr(stream, "latency", None)
        if isinstance(lat, int | float) and lat > self.latency:
            self.latency = float(lat)
        bs = getattr(stream, "blocksize", 0)
        if bs:
            self.block = bs
        stream.start()

    def stats(self) -> str:
        return (f"{self.callbacks} blocks, {self.underflows} underflows, {self._clock.resets} clock resets, "
                f"{self._clock.steps} unflagged steps, "
                f"{self.late} late notes, "
                f"longest callback {1000 * self.max_busy:.2f} ms, "
                f"longest gap between callbacks {1000 * self.max_gap:.2f} ms")

    def close(self) -> None:
        s, self.stream = self.stream, None
        if s is not None:
            with contextlib.suppress(Exception):  # the notes are off already; a device that will not close is moot
                s.stop()
            with contextlib.suppress(Exception):
                s.close()


def block_frames(hostapi: str, low_latency_s: float, rate: int) -> int:
    """Frames per callback: under JACK, the device's low latency in frames (PortAudio reports
    the server's playback latency there: a whole number of periods, 256 frames at -p 128);
    elsewhere 0, PortAudio's own choice for a low latency.

    Why not one JACK period: each callback costs the Python call as much as the
    rendering, and at -p 128 (2.7 ms) the audio process used 5.5-7.1 % of a core at
    180 BPM, 3.3-4.2 % with callbacks of 256 frames (measured here, 12 s each). The
    larger block adds a period to the latency, which is compensated (notes are
    sent that much earlier), not heard.
    """
    if hostapi != JACK_HOSTAPI or low_latency_s <= 0:
        return 0
    return max(1, round(low_latency_s * rate))


def pick_device(sd, api: str) -> int:
    """The output device: JACK's when the MIDI goes over JACK (``--api jack``) and PortAudio
    sees a JACK server, else the system's default output."""
    if str(api).lower() == "jack":
        for h in sd.query_hostapis():
            if h["name"] == JACK_HOSTAPI and h["default_output_device"] >= 0:
                return h["default_output_device"]
    dev = sd.default.device[1]
    if dev is None or dev < 0:
        try:
            dev = sd.query_devices(kind="output")["index"]
        except Exception:
            dev = -1
    if dev < 0:
        raise AudioError("--audio: no audio output device found (is a sound card or sound server there?)")
    return dev


class AudioSink:
    """The ``--audio`` sink in the performer: notes go, a line each, to the audio process.

    Why a process of its own: the stream's callback is Python and needs the
    GIL every block (every 2.7 ms under JACK at -p 128, on JACK's realtime
    thread). In the performer the GIL is shared with the decoder, the view and
    the main thread, ordinary threads that the OS may preempt while they hold
    it; measured here on a loaded 2-core machine, the callback then waited up
    to 34 ms, and JACK counted about 10 xruns a second. In its own process the
    callback is the only Python thread that runs: it reads the notes from the
    pipe itself. The two processes share the timeline: ``time.perf_counter``
    is the system-wide monotonic clock (CLOCK_MONOTONIC on Linux).
    """

    def __init__(self, proc, lead_s: float, name: str) -> None:
        self.proc = proc
        self.lead_s = lead_s
        self.name = name
        self._out = proc.stdin
        self._lock = threading.Lock()  # the sender writes notes, the main thread may close
        self._told_gone = False
        self.dropped = 0  # lines not written because the audio process did not read them

    def _write(self, line: str) -> None:
        with self._lock:
            if self._out is None:
                return
            try:
                self._out.write(line.encode())
                self._out.flush()
            except BlockingIOError:
                self.dropped += 1  # the pipe is full (the audio process is not reading): MIDI goes on
            except (OSError, ValueError):
                self._out = None  # the audio process is gone: check() says so, MIDI goes on

    def ahead(self, pos: float, t: float, pitch: int, velocity: int, gate: float) -> None:
        """A note-on from the scheduler's ahead lane, to sound at ``t`` (perf_counter seconds)."""
        self._write(f"N {t!r} {pitch} {velocity} {gate!r}\n")

    def send(self, msg: list[int], pos: float | None) -> None:
        """MIDI lane: the notes came on the ahead lane already; CC123 / CC120 (stop, panic) clear."""
        if len(msg) >= 2 and msg[0] & 0xF0 == 0xB0 and msg[1] in (CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF):
            self._write("C\n")

    def transport(self, ev: Transport) -> None:
        if ev.kind == STOP:
            self._write("C\n")

    def describe(self) -> str:
        return self.name

    def check(self) -> None:
        if not self._told_gone and self.proc.poll() is not None:
            self._told_gone = True
            log.warning("the audio output stopped (exit %s); MIDI goes on: %s", self.proc.returncode,
                        _last_line(self.proc))

    def close(self) -> None:
        self._write("C\n")
        with self._lock:
            out, self._out = self._out, None
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()  # the audio process ends at the end of its input
        try:
            self.proc.wait(3.0)
        except subprocess.TimeoutExpired:
            log.warning("the audio process did not end; killing it")
            self.proc.kill()
            self.proc.wait(3.0)
        line = _last_line(self.proc)
        if line.startswith("S "):
            log.info("audio: %s", line[2:])


def _last_line(proc) -> str:
    with contextlib.suppress(Exception):
        rest = proc.stdout.read().decode(errors="replace").strip().splitlines()
        return rest[-1] if rest else ""
    return ""


def open_audio_sink(soundfont: str | None = None, api: str = "auto", timeout: float = 20.0) -> AudioSink:
    """Start the audio process (``python -m performer.audio_out``) and wait until its stream runs.

    Its first line says ready (``R lead_s description``) or why not (``E line``),
    which becomes this one line to the user.
    """
    check_installed()  # the one line about what to install, before a process is started
    cmd = [sys.executable, "-m", "performer.audio_out", "--api", api]
    if soundfont:
        cmd += ["--soundfont", str(soundfont)]
    # stderr: PortAudio's and ALSA's probing chatter would garble the view; the process
    # reports its own failures on stdout, as one line
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # the sender thread writes the notes: a stalled audio process must never make it wait
    os.set_blocking(proc.stdin.fileno(), False)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    line = got[0].decode(errors="replace").strip() if got else ""
    kind, _, rest = line.partition(" ")
    if kind == "R":
        lead, _, name = rest.partition(" ")
        log.info("audio out: %s, notes %.1f ms ahead", name, 1000 * float(lead))
        return AudioSink(proc, float(lead), name)
    with contextlib.suppress(Exception):
        proc.kill()
        proc.wait(3.0)
    if kind == "E":
        raise AudioError(rest)
    raise AudioError(f"--audio: the audio output did not start within {timeout:g} s"
                     if not got else f"--audio: the audio process failed ({line or 'no answer'})")


# --- the audio process ------------------------------------------------------------------------


def _open_engine(soundfont: str | None, api: str) -> AudioEngine:
    """The engine on the chosen device, its stream started (silent until notes come)."""
    from performer.sound import make_renderer

    sd = require()
    try:
        dev = pick_device(sd, api)
        info = sd.query_devices(dev)
        hostapi = sd.query_hostapis(info["hostapi"])["name"]
        rate = int(info["default_samplerate"])
        channels = min(CHANNELS, int(info["max_output_channels"])) or CHANNELS
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"--audio: cannot query the audio output ({e})") from None
    renderer = make_renderer(soundfont, sample_rate=rate)
    kit = f"SoundFont {Path(soundfont).name}" if soundfont else "built-in kit"
    engine = AudioEngine(renderer, rate, name=f"audio {info['name']} via {hostapi}, {kit}")
    try:
        stream = sd.OutputStream(device=dev, samplerate=rate, channels=channels, dtype="float32",
                                 latency="low", callback=engine._callback,
                                 blocksize=block_frames(hostapi, float(info["default_low_output_latency"]), rate))
        engine.attach(stream)
    except Exception as e:  # PortAudioError and friends: one line, no traceback
        engine.close()
        raise AudioError(f"--audio: cannot open the audio output {info['name']!r} ({e})") from None
    return engine


def child_main(argv: list[str] | None = None) -> int:
    """The audio process: ``N t pitch velocity gate`` and ``C`` lines on stdin, until its end.

    Garbage collection is off once set up: the callback allocates no cycles, and a
    collection pass would hold the GIL across several blocks. The notes are read by the
    callback itself (see below).
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m performer.audio_out")
    p.add_argument("--api", default="auto")
    p.add_argument("--soundfont")
    a = p.parse_args(argv)
    out = sys.stdout
    # Ctrl-C reaches the whole process group: the performer decides when the sound ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = _open_engine(a.soundfont, a.api)
    except AudioError as e:
        out.write(f"E {e}\n")
        out.flush()
        return 1
    except Exception as e:  # anything else: still one line for the user, not a silent hang
        out.write(f"E --audio: the audio output failed to start ({type(e).__name__}: {e})\n")
        out.flush()
        return 1
    deadline = time.monotonic() + 2.0  # the first blocks tell the latency and the block size
    while engine.callbacks < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    gc.collect()
    gc.freeze()
    gc.disable()
    # The callback reads the notes itself (a non-blocking read of the pipe at each block):
    # a reader thread would take the GIL for each line, and the callback, on JACK's
    # realtime thread, would wait whenever that thread was preempted holding it (measured:
    # callbacks of up to 15 ms, and xruns). This thread only waits, without the GIL.
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    engine.input_fd = fd
    out.write(f"R {engine.lead_s!r} {engine.name} ({1000 * engine.latency:.1f} ms)\n")
    out.flush()
    while not engine.eof.wait(0.5):
        if engine.stream is not None and not engine.stream.active:  # the device stopped: read here
            os.set_blocking(fd, True)
            for line in sys.stdin.buffer:
                if line.startswith(b"C"):
                    engine.clear()
            break
    time.sleep(2 * (engine.block or 1024) / engine.rate)  # let a last clear() reach the renderer
    engine.close()
    out.write(f"S {engine.stats()}\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
