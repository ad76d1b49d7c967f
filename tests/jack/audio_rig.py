"""Recording the performer's ``--audio`` output over JACK, and placing its onsets against its MIDI.

Used by tests/jack/test_audio_live.py and benchmarks/audio_live.py.

What is compared. The MIDI note times are the frames at which the note-ons
left the performer (the recorder's "notes" input: frame-accurate). The audio
note times are when the drum sound reaches the output, as the sink promises:
the frame at which the audio passes through the performer's audio port plus
that port's playback latency as JACK reports it (``jack_lsp -l``; the
dummy driver's 256 frames at -p 128). That is what "output latency
compensated" means: the audio is rendered that much ahead of its time so that
it is *heard* at the note's time, as an ideal synth on the MIDI port would
sound the note the moment it arrives.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import audio_onsets as ao
from tests.jack import harness as h

GUARD_S = 0.003  # the tolerance of the test: audio may sound this far from its MIDI note
# MIDI note-ons this close are one onset: the notes of one step may leave in two JACK periods
GROUP_LIVE_S = 0.003
AUDIO_CLIENT = re.compile(r"^PortAudio")  # PortAudio's JACK host API names its client so


class AudioRecorder:
    """One audio input (audio_recorder_proc.py in its own process); ``take()`` ends it."""

    def __init__(self, server: h.JackServer, out: Path, seconds: float, timeout: float = 15.0) -> None:
        self.out = Path(out)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("audio_recorder_proc.py")), server.name,
             f"dp-audio-rec-{uuid.uuid4().hex[:4]}", str(self.out), str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=server.env, text=True, bufsize=1)
        got: list[str] = []
        t = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not got or not got[0].startswith("R "):
            self.close()
            raise RuntimeError("the audio recorder client did not start")
        self.port = got[0].split(" ", 1)[1].strip() + ":in"

    def take(self) -> dict:
        """Stop recording; {"start": frame, "audio": samples, "xruns": n, "gaps": n}."""
        self.proc.stdin.close()
        self.proc.stdout.readline()  # "D" once written
        self.proc.wait(10.0)
        with np.load(self.out) as z:
            return {k: z[k] for k in z.files}

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def audio_ports(rec: h.Recorder, before: set[str] = frozenset()) -> list[str]:
    """The performer's audio outputs (PortAudio's JACK client) that appeared after ``before``."""
    return [p for p in rec.port_names(is_audio=True, is_output=True)
            if AUDIO_CLIENT.match(p) and p not in before]


def playback_latency(server: h.JackServer, port: str) -> int:
    """The port's playback latency in frames (the max of JACK's range), from ``jack_lsp -l``."""
    out = subprocess.run(["jack_lsp", "-l", port], capture_output=True, text=True, env=server.env,
                         timeout=10).stdout
    m = re.search(r"playback latency = \[ (\d+) (\d+) \]", out)
    if not m:
        raise RuntimeError(f"no playback latency for {port} in: {out!r}")
    return int(m.group(2))


def onset_errors_ms(take: dict, note_frames: list[tuple[int, int, int]], latency: int,
                    rate: int, channels: int = 2,
                    skip_before: int | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """Audio onset (heard: recorded frame + ``latency``) minus MIDI note-on frame, in ms, for each
    audible onset (benchmarks.audio_onsets' detector and selection), and the number of distinct
    note times inside the recording, and the (MIDI) frame of each measured onset. ``note_frames``: (frame, pitch, velocity) of each MIDI note-on;
    ``channels``: how many outputs were summed into the recorder's input (the mean is compared
    with the kit's mono template); notes before frame ``skip_before`` are left out."""
    audio = take["audio"] / channels
    start = int(take["start"])
    # where each note should be in the recording: its MIDI frame, less the latency it is heard after
    notes = sorted((f - latency - start, p, v) for f, p, v in note_frames
                   if 0 <= f - latency - start < len(audio) - int(ao.SEARCH_S * rate)
                   and (skip_before is None or f >= skip_before))
    if not notes:
        return np.array([]), 0, np.array([], dtype=np.int64)
    within = GROUP_LIVE_S
    exp = ao.group(np.array([n[0] for n in notes]), rate, within)
    # audible: the note's attack against the mix in the 2 ms before the earliest it may start
    # (GUARD_S before its MIDI time: rtmidi's JACK output sends the MIDI up to a period late)
    guard = round(GUARD_S * rate)
    clear = ao.audible(audio, [(f - guard, p, v) for f, p, v in notes], ao.kit_template, rate,
                       within_s=within) + guard
    got = dict(zip(exp.tolist(), ao.onset_frames(audio, exp, rate).tolist(), strict=True))
    errs = np.array([got[f] - f for f in clear.tolist()], dtype=float) * 1000.0 / rate
    return errs, len(exp), clear + latency + start


# The built-in kit is deterministic: a note's sound is the same samples wherever it starts
# (performer.sound.Renderer), and the recording is the renderer's float32 output copied by
# JACK. So the recording can be explained exactly, note group by note group, from the start:
# render every note before the group where it was found, take that from the recording, and
# the rest is the group's own sound; the frame where the group's sound (rendered alone) fits
# it best, by least squares over +-KIT_SEARCH_S, is where it was heard. Every note counts,
# masked or not. Where that fit leaves nothing (|residual| <= KIT_EXACT, -80 dB) the kit at
# the frames found IS the recording: the measurement is exact there. Why not the energy
# detector alone: it placed notes 10-16 ms off that the recording shows on time. Two looked at
# (one-minute takes at 180 BPM): a ghost snare after a loud one read +10.33 ms with no xrun
# near, this fit +0.69 ms (exact); a snare read -16.00 ms 20 ms after an xrun, this fit +0.02 ms.
KIT_SEARCH_S = 0.020
KIT_AFTER_S = 0.005  # samples after the latest candidate start that the fit still compares
KIT_EXACT = 1e-4


def near_xruns(frames, xrun_frames: list[int], before: float, after: float) -> np.ndarray:
    """For each frame: an xrun came from ``after`` frames before it to ``before`` frames after it."""
    f = np.asarray(frames, dtype=np.int64)
    x = np.asarray(xrun_frames, dtype=np.int64)
    if not len(x) or not len(f):
        return np.zeros(len(f), dtype=bool)
    d = f[:, None] - x[None, :]
    return ((d >= -before) & (d <= after)).any(axis=1)


@dataclass
class KitOnsets:
    """Per note group (MIDI note-ons within GROUP_LIVE_S), from :func:`kit_onsets`."""

    frames: np.ndarray  # the group's MIDI note-on frame (its first note's)
    errors_ms: np.ndarray  # heard (recorded frame + latency) minus that, in ms
    exact: np.ndarray  # bool: the kit at the frames found is the recording around this group
    gap: np.ndarray  # bool: the audio recorder missed a period in this group's window (left out of the fit)
    ring_frames: int = 0  # the longest sound of a voice played: how long a misplaced tail lasts

    def away(self, xrun_frames: list[int], before: float, after: float) -> np.ndarray:
        """Groups not within ``before`` frames before to ``after`` frames after an xrun, nor at a gap."""
        return ~(near_xruns(self.frames, xrun_frames, before, after) | self.gap)

    def unexplained(self, xrun_frames: list[int], before: float) -> np.ndarray:
        """Groups the kit does not reproduce with no xrun in the ring before them. At an xrun the
        audio process can miss a period: what rings on is then a period off its start, and the
        groups under that ring are not exact until it has died away (so not measured there)."""
        return ~self.exact & self.away(xrun_frames, before, self.ring_frames)


def kit_onsets(take: dict, note_frames: list[tuple[int, int, int]], latency: int, rate: int,
               channels: int = 2, skip_before: int | None = None, stop: int | None = None) -> KitOnsets:
    """Where each group of MIDI note-ons (frame, pitch, velocity) was heard in ``take`` (an
    :class:`AudioRecorder` take of the built-in kit; ``channels`` outputs summed into its
    input). Groups before ``skip_before`` are rendered (their tails ring on) but not reported.
    ``stop``: the frame of the transport's Stop, from which the performer silences every voice
    (what is heard from then on is left out of the fit)."""
    import copy
    import queue

    from performer import sound

    mono = take["audio"].astype(np.float64) / channels
    start = int(take["start"])
    gaps = [(int(a) - start, int(a) - start + int(n)) for a, n in take.get("gap_frames", np.zeros((0, 2), int))]
    silenced = stop - start if stop is not None else None  # never judged as a gap, only left out
    groups: list[tuple[int, list[tuple[int, int]]]] = []  # (expected index in the recording, [(pitch, vel)])
    for f, p, v in sorted(note_frames):
        i = f - latency - start
        if groups and i - groups[-1][0] <= GROUP_LIVE_S * rate:
            groups[-1][1].append((p, v))
        else:
            groups.append((i, [(p, v)]))
    s, after = round(KIT_SEARCH_S * rate), round(KIT_AFTER_S * rate)
    base = sound.Renderer(sample_rate=rate)  # every group before the current one, where found
    base.frame = groups[0][0] - s if groups else 0
    out = []
    for k, (e, notes) in enumerate(groups):
        a = e - s
        b = min(e + s + after, groups[k + 1][0] - s if k + 1 < len(groups) else e + s + after, len(mono))
        if a < max(base.frame, 0) or b - a <= s:
            break  # the recording ends (or began after this group): nothing more to explain
        base.render(a - base.frame)
        tails = copy.copy(base)  # its own queues and voices (the kit's samples are shared)
        tails._pending, tails._playing = list(base._pending), [copy.copy(x) for x in base._playing]
        tails._inbox = queue.SimpleQueue()
        r = mono[a:b] - tails.render(b - a).mean(axis=1)
        alone = sound.Renderer(sample_rate=rate)
        for p, v in notes:
            alone.schedule(sound.Event(0, p, v))
        g = alone.render(b - a).mean(axis=1).astype(np.float64)
        n = b - a
        # the samples the recorder missed (zeros) say nothing: left out of the fit, or a group
        # placed wrong there would leave its tail wrong under the next second of groups
        w = np.ones(n)
        for ga, gb in gaps:
            w[max(ga - a, 0):max(min(gb - a, n), 0)] = 0.0
        if silenced is not None:
            w[max(silenced - a, 0):] = 0.0
        # squared error of the group starting at r[i0], for i0 = 0..2s: |w r|^2 - 2 (w r).g + w.g^2
        dots = np.correlate(w * r, g, mode="full")[n - 1 :]
        gg = np.correlate(w, g * g, mode="full")[n - 1 :]
        cand = min(2 * s, n - 1) + 1
        i0 = int(np.argmin(gg[:cand] - 2.0 * dots[:cand]))
        resid = r.copy()
        resid[i0:] -= g[: n - i0]
        resid *= w
        found = a + i0
        for p, v in notes:
            base.schedule(sound.Event(found, p, v))
        if skip_before is None or e + latency + start >= skip_before:
            out.append((e + latency + start, (found - e) * 1000.0 / rate,
                        float(np.abs(resid).max()) <= KIT_EXACT, any(ga < b and gb > a for ga, gb in gaps)))
    cols = list(zip(*out, strict=True)) if out else [[], [], [], []]
    ring = max((len(base.kit[sound._ALIASES.get(p, p)].soft) for _, notes in groups for p, _ in notes
                if sound._ALIASES.get(p, p) in base.kit), default=0)
    return KitOnsets(np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=float),
                     np.array(cols[2], dtype=bool), np.array(cols[3], dtype=bool), ring)


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (the audio process of a performer), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


@dataclass
class LiveTake:
    """One live run: the MIDI recording, the audio recording (``--audio``) and what it cost."""

    bpm: float
    started: int  # frame of the recorded Start
    stopped: int  # frame of the recorded Stop
    track: h.ClockTrack
    notes: list[h.Note]
    xrun_frames: list[int]  # as the MIDI recorder was told
    audio: dict | None  # AudioRecorder.take()
    channels: int
    latency: int  # playback latency of the audio port, frames
    cpu_performer: float  # % of one core while playing
    cpu_audio: float  # % of one core, the audio process
    log: str

    def xruns_playing(self) -> int:
        return sum(1 for f in self.xrun_frames if self.started <= f <= self.stopped)

    def onset_errors_ms(self, rate: int, skip_s: float) -> tuple[np.ndarray, int, np.ndarray]:
        on = [(n.frame, n.pitch, n.velocity) for n in self.notes if n.on]
        return onset_errors_ms(self.audio, on, self.latency, rate, channels=self.channels,
                               skip_before=self.started + int(skip_s * rate))

    def kit_onsets(self, rate: int, skip_s: float) -> KitOnsets:
        """:func:`kit_onsets` of this take (the built-in kit), from ``skip_s`` after Start."""
        on = [(n.frame, n.pitch, n.velocity) for n in self.notes if n.on]
        return kit_onsets(self.audio, on, self.latency, rate, channels=self.channels,
                          skip_before=self.started + int(skip_s * rate), stop=self.stopped)

    def grid_offsets_ms(self, rate: int, frames) -> np.ndarray:
        """For each MIDI frame: its offset from the nearest 16th of the recorded clock (ms)."""
        grid = [k.frame for k in self.track.on_master_line().grid()]
        if not grid:
            return np.array([])
        return np.array([f - grid[h.nearest(grid, f)] for f in frames], dtype=float) * 1000.0 / rate


# Voices muted (1-based, model.drums order) for a clear onset measurement: the hi-hats, crash and
# ride ring through the next notes, and an energy detector cannot place a note under them.
CYMBALS = (3, 4, 8, 9)


def play(server: h.JackServer, args: list[str], bpm: float, seconds: float, workdir: Path,
         audio: bool = True, mute: tuple[int, ...] = ()) -> LiveTake:
    """Run ``drum-performer ARGS [--audio]`` on jack_midi_clock at ``bpm`` for ``seconds`` of playing,
    recording its MIDI and (with ``audio``) its audio output. The audio recorder runs either way,
    so that a run without audio has the same JACK graph to compare xruns with. ``mute``: voices
    muted before Start with the performer's own control (its mute pads on the clock input)."""
    from performer.controls import ACTIONS

    arec = AudioRecorder(server, workdir / f"audio-{uuid.uuid4().hex[:6]}.npz", seconds + 20.0)
    pad = h.Sender(server, f"dp-pad-{uuid.uuid4().hex[:4]}") if mute else None
    try:
        with h.Rig(server, start_performer=False, bpm=bpm) as rig:
            before = set(audio_ports(rig.rec))
            perf = rig.start_performer([*args, "--audio"] if audio else list(args))
            outs: list[str] = []
            latency = 0
            if audio:
                outs = audio_ports(rig.rec, before)
                if not outs:
                    raise RuntimeError(f"no audio ports from the performer:\n{perf.output()[-2000:]}")
                for p in outs:
                    rig.rec.connect(p, arec.port)
                latency = playback_latency(server, outs[0])
            if pad is not None:
                rig.rec.connect(pad.port_name, perf.clock_port)
                for v in mute:
                    pad.send(bytes([0x90, ACTIONS["mute"].note + v - 1, 100]))
                    pad.send(bytes([0x80, ACTIONS["mute"].note + v - 1, 0]))
                time.sleep(0.1)
            started = rig.start().frame
            assert rig.wait_pos(h.PPQN * 2), "the clock did not roll"
            kids = child_pids(perf.pid)
            c0, k0, w0 = h.cpu_seconds(perf.pid), sum(h.cpu_seconds(k) for k in kids), time.monotonic()
            ok = rig.wait_pos(int(seconds * bpm / 60 * h.PPQN), timeout=seconds + 30)
            c1, k1, w1 = h.cpu_seconds(perf.pid), sum(h.cpu_seconds(k) for k in kids), time.monotonic()
            assert ok, "the clock stopped rolling"
            stopped = rig.stop().frame
            time.sleep(0.3)
            rig.rec.settle()
            track, notes, xruns = rig.track(), rig.notes(), list(rig.rec.xrun_frames)
        take = arec.take() if audio else None
        log = perf.output()
    finally:
        arec.close()
        if pad is not None:
            pad.close()
    return LiveTake(bpm, started, stopped, track, notes, xruns, take, len(outs), latency,
                    100.0 * (c1 - c0) / (w1 - w0), 100.0 * (k1 - k0) / (w1 - w0), log)
