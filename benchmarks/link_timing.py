"""Link timing over JACK: the performer's notes against another Link peer's beat grid.

Everything runs in a private network namespace made for the run (see
tests/link_rig.py: launched outside one, this module re-runs itself under
``unshare --net`` and refuses to start a peer unless the namespace has only
loopback). Inside it: a private jackd (dummy driver), the frame-accurate
recorder of tests/jack, the other Link peer (tests/link_peer.py, a small
process on the same binding) and ``drum-performer --link --api jack
--quantize`` as a subprocess.

The run: the performer joins alone at ``--bpm 97`` (so the session's tempo
is its own), the peer joins, sets 120 BPM and starts the transport on its
next bar (start/stop sync); after ``--seconds`` the peer changes the tempo
to ``--to-bpm``, after ``--after`` more it stops the transport.

Every note-on the recorder got is turned from its JACK frame into Link host
time (CLOCK_MONOTONIC_RAW) through the recorder's own stamp of that clock at
the start of each cycle (:class:`CycleClock`). Its error is its distance to
the nearest 16th of the peer's beat grid, as the peer reported its timeline
when it started and when it changed the tempo. jackd's own estimate
(``jack_frames_to_time``, also on CLOCK_MONOTONIC_RAW: ``jack_vs_raw_us``)
is reported beside it (``server_estimate_minus_stamps_ms``): it agrees to
~0.15 ms on a quiet run and is off by several ms for seconds after a late
cycle.

Keys: ``link_median_abs_err_ms`` and ``link_p95_abs_err_ms`` (120 BPM part),
``link_tempo_follow_beats`` (peer beats from the tempo change to the first
of 8 notes in a row within 4 ms, the p95 target, of the new grid; notes at
an xrun are left out of the row), and the
checks the real-path test asserts (start on the peer's bar, no note after
the stop, every note-on released, the tempo the performer gave the session).
``link_tempo_follow_beats_by_server_estimate`` is the same follow with the
notes timed by jackd's estimate. ``--pause-ms 20`` stops jackd for 20 ms
0.3 s after the tempo change (its cycles run that late, as on a busy
machine): measured here, follow 0.09-0.36 beats by the stamps and 2.8-3.4 by
the server's estimate, which was 15-17 ms off at the worst note.

Binding choice (measured in a private namespace on this machine): the
``link`` module of LinkPython-extern 1.3.0 installs as a wheel on CPython
3.11, exposes Link's session state at any host time (beatAtTime, timeAtBeat,
setTempo at a time, start/stop) and reads CLOCK_MONOTONIC_RAW (its clock and
clock_gettime agree to 0.1 us); two instances agree on the phase to
~0.004 ms. aalink 0.2.3 also installs as a wheel and agrees to ~0.006 ms,
but gives only "the beat now" (no beat at a chosen host time, no tempo change
at a time) and needs an asyncio event loop. LinkPython 0.1.1 (Ableton's
original) ships only a 2021 source package whose bundled pybind11 does not
compile against Python 3.11.

With ``--audio`` the performer also plays its built-in kit (``--link
--audio``), an audio client of ours records it, and each audible onset is
placed against its own MIDI note-on (tests/jack/audio_rig.py): keys
``audio_median_abs_err_ms``, ``audio_max_abs_err_ms`` (120 BPM part).

    python -m benchmarks.link_timing [--json FILE] [--seconds 16] [--after 8] [--to-bpm 150] [--audio] [--pause-ms MS]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from tests import link_rig

TARGETS = {"link_median_abs_err_ms": 2.0, "link_p95_abs_err_ms": 4.0, "link_tempo_follow_beats": 1.0}
FOLLOW_RUN = 8  # notes in a row on the new grid: following, not a lucky note (nor one xrun later)
FOLLOW_TOL_MS = 4.0  # the p95 target: JACK delivers at period starts, 0..2.7 ms after the send


class FrameClock:
    """(JACK frame, Link host time) pairs sampled during the run, interpolated.

    jack_frames_to_time reads jackd2's clock (CLOCK_MONOTONIC_RAW on Linux);
    sampling it every 50 ms and interpolating between samples follows the
    dummy driver's rate against that clock."""

    def __init__(self, client) -> None:
        import ctypes
        import ctypes.util

        import jack

        # JACK-Client does not wrap jack_frames_to_time / jack_get_time: call libjack itself
        lib = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
        lib.jack_frames_to_time.restype = ctypes.c_uint64
        lib.jack_frames_to_time.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
        lib.jack_get_time.restype = ctypes.c_uint64
        ptr = ctypes.c_void_p(int(jack._ffi.cast("uintptr_t", client._ptr)))
        self._to_time = lambda f: lib.jack_frames_to_time(ptr, f & 0xFFFFFFFF)
        self._now = lib.jack_get_time
        self.client = client
        self.pairs: list[tuple[int, float]] = []
        self.jack_vs_raw_us: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            f = self.client.frame_time
            self.pairs.append((f, float(self._to_time(f))))
            a = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
            t = self._now()
            b = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
            self.jack_vs_raw_us.append(t - 0.5e6 * (a + b))
            self._stop.wait(0.05)

    def close(self) -> None:
        self._stop.set()
        self._t.join(2.0)

    def host_us(self, frame: int) -> float:
        import bisect

        ps = self.pairs
        if len(ps) < 2:
            raise RuntimeError("no JACK frame/time pairs were sampled")
        i = min(max(bisect.bisect_left([p[0] for p in ps], frame), 1), len(ps) - 1)
        (f0, t0), (f1, t1) = ps[i - 1], ps[i]
        return t0 + (frame - f0) * (t1 - t0) / (f1 - f0)


class CycleClock:
    """JACK frame -> Link host time (us) from the recorder's own stamps, one per cycle.

    The recorder notes CLOCK_MONOTONIC_RAW when its process callback begins
    (``Recorder(cycle_times=True)``). That is the cycle's start plus the
    wake-up and the graph's work before it (never less), so a cycle's start
    is taken as the least over it and the ``WINDOW`` cycles after it of each
    stamp moved back by its frames at the driver's measured rate. The dummy
    driver does not catch up lost time (it sleeps a period from each cycle's
    begin; after a late cycle it runs the next one at once, then keeps its
    period: seen with a 20 ms stop of jackd, a 22.2 ms gap, then 0.07 ms), so
    a late cycle shifts every later one: later stamps are not earlier than a
    cycle's line, and the least is its start. (The one cycle before such a
    catch-up is placed up to a period early; it is at the xrun, not judged.)

    Why not jackd's ``jack_frames_to_time`` (:class:`FrameClock`): that is
    the server's filtered estimate (a delay-locked loop), and after a late
    cycle it walks back to the wall clock over seconds. Seen here: one xrun
    just after the peer's tempo change, and the notes then read 14.6 ms
    early, then 11, 8, 5.6, 3.3 ms, through 0 to +4.4 ms over 7 beats (the
    run's follow 2.99 beats), while the performer plays by the wall clock."""

    WINDOW = 32  # cycles (85 ms at 128 frames): enough for one undelayed stamp, short against drift

    def __init__(self, stamps: list[tuple[int, int]], period: int, rate: int) -> None:
        import numpy as np

        st = sorted(set(stamps))
        if len(st) < 2:
            raise RuntimeError("the recorder stamped no cycles")
        f = np.array([x[0] for x in st], dtype=np.int64)
        t = np.array([x[1] for x in st], dtype=np.float64) / 1e3  # us
        step = np.diff(f) == period
        self.us_per_frame = float(np.median(np.diff(t)[step]) / period) if step.any() else 1e6 / rate
        r = t - (f - f[0]) * self.us_per_frame  # each stamp moved back to frame f[0]
        pad = np.concatenate([r, np.full(self.WINDOW, np.inf)])
        low = np.lib.stride_tricks.sliding_window_view(pad, self.WINDOW + 1)[: len(r)].min(axis=1)
        self.frames = f
        self.starts = low + (f - f[0]) * self.us_per_frame  # the cycles' starts, us
        self.delay_us = t - self.starts  # how long after its start each stamp was taken

    def host_us(self, frame: int) -> float:
        import numpy as np

        k = max(int(np.searchsorted(self.frames, frame, side="right")) - 1, 0)
        return float(self.starts[k] + (frame - self.frames[k]) * self.us_per_frame)


def follow_beats(errs: list[tuple[float, float]], change: dict) -> float | None:
    """Peer beats from the tempo change to the first of FOLLOW_RUN notes in a row (``errs``:
    their (error ms, peer beat) on the new grid) within FOLLOW_TOL_MS; None if never."""
    for i in range(len(errs) - FOLLOW_RUN + 1):
        if all(abs(e) <= FOLLOW_TOL_MS for e, _ in errs[i:i + FOLLOW_RUN]):
            return errs[i][1] - change["beat"]
    return None


def grid_error_ms(t_us: float, seg: dict) -> tuple[float, float]:
    """(signed error to the nearest 16th in ms, peer beat) of host time t_us on timeline seg."""
    beat = seg["beat"] + (t_us - seg["host_us"]) / seg["us_per_beat"]
    step = beat * 4.0
    return (step - round(step)) * seg["us_per_beat"] / 4.0 / 1000.0, beat


def run(a) -> dict:
    from tests.jack import harness as h

    link_rig.setup_loopback()
    link_rig.require_private_netns()  # before the first peer: only loopback, not the launching namespace
    netns = {"interfaces": link_rig.interfaces(), "inode": link_rig.netns_inode(),
             "launching_inode": int(os.environ[link_rig.OUTER_ENV])}
    reason = h.missing_tools()
    if reason:
        raise SystemExit(reason)
    server = h.JackServer(period=a.period).start()
    rec = fc = peer = perf = arec = pad = None
    latency, outs, audio = 0, [], None
    try:
        rec = h.Recorder(server, name=f"dp-link-rec-{uuid.uuid4().hex[:4]}", inputs=("notes",), cycle_times=True)
        fc = FrameClock(rec.client)
        if a.audio:
            from tests.jack import audio_rig as ar

            arec = ar.AudioRecorder(server, Path(a.audio_dir) / f"link-audio-{uuid.uuid4().hex[:6]}.npz",
                                    a.seconds + a.after + 30.0)
            before = set(ar.audio_ports(rec))
        perf = h.Performer(server, rec, ["--link", "--bpm", "97", "--quantize", "--seed", str(a.seed),
                                         "--latency-ms", f"{a.latency_ms:g}",
                                         *(["--audio"] if a.audio else []),
                                         *(["--model", a.model] if a.model else [])], need_clock=False)
        rec.connect(perf.out_port, rec.port("notes"))
        if perf.wait_ready_line(30.0) is None:
            raise RuntimeError(f"the performer never said it was ready:\n{perf.output()[-2000:]}")
        if arec is not None:
            outs = ar.audio_ports(rec, before)
            if not outs:
                raise RuntimeError(f"no audio ports from the performer:\n{perf.output()[-2000:]}")
            for port in outs:
                rec.connect(port, arec.port)
            latency = ar.playback_latency(server, outs[0])
            if perf.clock_port:  # cymbals ring over the next onsets: muted with the performer's pads
                from performer.controls import ACTIONS

                pad = h.Sender(server, f"dp-pad-{uuid.uuid4().hex[:4]}")
                rec.connect(pad.port_name, perf.clock_port)
                for v in ar.CYMBALS:
                    pad.send(bytes([0x90, ACTIONS["mute"].note + v - 1, 100]))
                    pad.send(bytes([0x80, ACTIONS["mute"].note + v - 1, 0]))
        peer = link_rig.Peer(120.0, env=server.env)
        if not peer.wait_peers(1, 15.0):
            raise RuntimeError("the peer never saw the performer in the Link session")
        joined = peer.ask("grid")
        peer.ask(f"tempo {a.bpm:g}")
        time.sleep(0.3)
        start = peer.ask("play")
        c0, w0 = h.cpu_seconds(perf.pid), time.monotonic()
        time.sleep(a.seconds)
        cpu = 100.0 * (h.cpu_seconds(perf.pid) - c0) / (time.monotonic() - w0)
        change = peer.ask(f"tempo {a.to_bpm:g}")
        if a.pause_ms > 0:  # the server late, just after the change (a busy machine, on demand)
            time.sleep(0.3)
            server.pause(a.pause_ms)
            time.sleep(max(0.0, a.after - 0.3))
        else:
            time.sleep(a.after)
        stop = peer.ask("stop")
        time.sleep(1.0)
        restart = peer.ask("play")  # now the performer waits for the peer's bar: it follows start/stop
        time.sleep(max(0.0, (restart["start_us"] - restart["host_us"]) / 1e6) + 2.0)
        stop2 = peer.ask("stop")
        time.sleep(0.5)
        rec.settle()
        events = rec.events("notes")
        xruns_at = list(rec.xrun_frames)
        missed = list(rec.missed)
        cycles = list(rec.cycle_times)
        log_tail = perf.output()[-3000:]
        if arec is not None:
            audio = arec.take()
    finally:
        for x in (arec, pad):
            if x is not None:
                x.close()
        for x in (peer, perf):
            if x is not None:
                x.close() if x is peer else x.stop()
        if fc is not None:
            fc.close()
        if rec is not None:
            rec.close()
        server.stop()
    notes = h.notes(events)
    cc = CycleClock(cycles, a.period, server.rate)
    ons = [(cc.host_us(n.frame), n) for n in notes if n.on]
    # the server's own estimate at the same notes, against ours (jackd's filter after late cycles)
    dll_minus = [(fc.host_us(n.frame) - t) / 1000.0 for t, n in ons]
    start_us = start["start_us"]
    before = [(t, n) for t, n in ons if start_us <= t < change["host_us"]]
    after = [(t, n) for t, n in ons if change["host_us"] <= t <= stop["host_us"]]
    errs = [grid_error_ms(t, start)[0] for t, _ in before]
    # an xrun from 100 ms before a note to 10 ms after it: JACK delivered late, or the frame
    # clock the note is timed by jumped (such a note is not judged)
    xrun_us = [cc.host_us(x) for x in xruns_at]

    def at_xrun(t: float) -> bool:
        return any(-100e3 <= t - x <= 10e3 for x in xrun_us)

    # following: FOLLOW_RUN notes in a row on the new grid, those at an xrun left out of the row
    # (one at an xrun broke the row in a CI run on a noisy machine: 2.07 beats)
    a_errs = [grid_error_ms(t, change) for t, _ in after if not at_xrun(t)]
    follow = follow_beats(a_errs, change)
    # the same judged with jackd's estimate of the notes' times (what this benchmark used before)
    follow_server = follow_beats([grid_error_ms(fc.host_us(n.frame), change) for t, n in after if not at_xrun(t)],
                                 change)
    absd = [abs(e) for e in errs]
    away = [abs(grid_error_ms(t, start)[0]) for t, _ in before if not at_xrun(t)]  # as live_timing's p99*
    heard = {}
    if audio is not None:  # --audio: each audible onset against its own MIDI note-on (120 BPM part)
        on = [(n.frame, n.pitch, n.velocity) for n in notes if n.on and start_us <= cc.host_us(n.frame) < change["host_us"]]
        aerr, n_exp, frames = ar.onset_errors_ms(audio, on, latency, server.rate, channels=len(outs))
        ab = [abs(float(e)) for e in aerr]
        xf = list(rec.xrun_frames)
        near = [any(-server.frames(30.0) <= int(f) - x <= server.rate * 60.0 / a.bpm for x in xf) for f in frames]
        clean = [e for e, n in zip(ab, near, strict=True) if not n]
        heard = {"audio_onsets": len(ab), "audio_note_times": n_exp,
                 "audio_median_abs_err_ms": h.percentile(ab, 50) if ab else None,
                 "audio_p95_abs_err_ms": h.percentile(ab, 95) if ab else None,
                 "audio_max_abs_err_ms": max(ab, default=None),
                 # onsets from 30 ms before an xrun to one beat after it left out (as live_timing's p99*)
                 "audio_onsets_no_xrun": len(clean),
                 "audio_max_abs_err_ms_no_xrun": max(clean, default=None),
                 "audio_errs_ms": [round(float(e), 2) for e in aerr],
                 "audio_err_beats": [round(grid_error_ms(cc.host_us(int(f)), start)[1] - start["beat"], 2)
                                     for f in frames]}
    after_stop = [t for t, _ in ons if stop["host_us"] + 30e3 < t < restart["start_us"] - 5e3]
    second = [t for t, _ in ons if t >= restart["start_us"] - 5e3]
    first = min(second, default=None)
    after_stop2 = [t for t, _ in ons if t > stop2["host_us"] + 30e3]
    restart_xrun = first is not None and at_xrun(first)  # the one note is not judged then
    return {
        "link_median_abs_err_ms": h.percentile(absd, 50),
        "link_p95_abs_err_ms": h.percentile(absd, 95),
        "link_max_abs_err_ms": max(absd, default=float("nan")),
        # the notes not at an xrun (100 ms before to 10 ms after one): what the test judges, as a
        # noisy machine's bursts of xruns move the rest (seen: a median of 2.82 ms in one CI pass)
        "link_median_abs_err_ms_away": h.percentile(away, 50) if away else None,
        "link_p95_abs_err_ms_away": h.percentile(away, 95) if away else None,
        "notes_120_away": len(away),
        "link_mean_signed_err_ms": sum(errs) / len(errs) if errs else float("nan"),
        "link_tempo_follow_beats": follow,
        "link_tempo_follow_beats_by_server_estimate": follow_server,
        "notes_120": len(errs),
        "notes_after_change": len(after),
        "notes_after_change_at_xruns": len(after) - len(a_errs),
        "bpm": a.bpm,
        "to_bpm": a.to_bpm,
        "session_tempo_when_peer_joined": joined["tempo"],
        # the performer plays on its own until the session's transport is seen in use (documented)
        "notes_before_first_peer_start": sum(1 for t, _ in ons if t < start_us - 5e3),
        "notes_after_stop": len(after_stop) + len(after_stop2),
        "notes_after_restart": len(second),
        "restart_first_note_minus_peer_start_ms": (first - restart["start_us"]) / 1000.0 if first else None,
        "restart_first_note_grid_err_ms": grid_error_ms(first, restart)[0] if first else None,
        "restart_first_note_near_xrun": restart_xrun,
        # a note-on whose note-off may have gone out in a cycle our recorder missed is not counted
        "unreleased": len(h.unreleased(notes, [(a, b) for inp, a, b in missed if inp == "notes"])),
        "cpu_percent_120": cpu,  # the performer process, % of one core, while playing at --bpm
        "latency_ms": a.latency_ms,
        "pause_ms": a.pause_ms,
        "jack_period": a.period,
        "jack_vs_raw_us_median": h.percentile([abs(x) for x in fc.jack_vs_raw_us], 50),
        # notes timed by jackd's jack_frames_to_time instead of the cycle stamps: how far off (ms)
        "server_estimate_minus_stamps_ms": {"median_abs": h.percentile([abs(x) for x in dll_minus], 50),
                                            "max_abs": max((abs(x) for x in dll_minus), default=None)},
        "cycle_stamp_delay_us": {"median": h.percentile(list(cc.delay_us), 50),
                                 "p99": h.percentile(list(cc.delay_us), 99)},
        "xruns": rec.xruns,
        "netns": netns,
        "after_change_errs_ms": [round(e, 2) for e, _ in a_errs[:40]],
        "after_change_beats": [round(b - change["beat"], 3) for _, b in a_errs[:40]],
        "log_tail": log_tail if not ons else "",
        **heard,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--bpm", type=float, default=120.0)
    p.add_argument("--to-bpm", type=float, default=150.0)
    p.add_argument("--seconds", type=float, default=16.0, help="playing at --bpm before the change")
    p.add_argument("--after", type=float, default=8.0, help="playing at --to-bpm before the stop")
    p.add_argument("--period", type=int, default=128)
    p.add_argument("--pause-ms", type=float, default=0.0,
                   help="stop jackd this long 0.3 s after the tempo change: its cycles run that late")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--latency-ms", type=float, default=0.0, help="the performer's --latency-ms")
    p.add_argument("--model", help="exported model folder (default: the shipped one)")
    p.add_argument("--audio", action="store_true",
                   help="the performer also plays --audio; its onsets are placed against its MIDI")
    p.add_argument("--audio-dir", default="/tmp", help="where the audio recording is kept (with --audio)")
    raw = sys.argv[1:] if argv is None else argv
    a = p.parse_args(raw)
    if link_rig.netns_problem():
        why = link_rig.unavailable()
        if why:
            print(f"link_timing: {why}", file=sys.stderr)
            return 2
        return link_rig.run_in_private_netns("benchmarks.link_timing", raw).returncode
    res = run(a)
    text = json.dumps(res, indent=2)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
