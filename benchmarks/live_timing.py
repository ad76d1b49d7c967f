"""Live timing over JACK: how close the performer's notes land to the incoming clock's grid.

For each tempo a fresh ``drum-performer --api jack --quantize`` is started on a
private JACK server (dummy driver), driven by ``jack_midi_clock`` (with
``jack_transport`` as transport and timebase master) and recorded by the test
harness's frame-accurate recorder. Every note-on is placed on its 16th step and
its error is its frame minus the frame of that step's clock tick, as recorded
from the same clock the performer follows.

Reported per tempo: median / p99 / max absolute error (ms), p99 with notes
near an xrun left out (30 ms before to one beat after), the performer's CPU use while playing (utime +
stime from /proc over the wall time, as % of one core), its CPU while stopped
(the clock streaming, before Start), its resident memory, and cold start: command -> JACK ports registered, and command -> the
performer's "ready" line (model loaded, sender running).

Targets (issue 4): median <= 1.5 ms, p99 <= one period + 0.5 ms at -p 128,
CPU < 5 % of one core, cold start < 2 s.

    python -m benchmarks.live_timing [--bpm 90 120 180] [--cycles 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.jack import harness as h

# Notes left out of p99*: from 30 ms before an xrun's report to one beat after
# it (see tests/jack/test_e2e.py: the server's frame time and the wall clock part
# at an xrun, and a performer sending at predicted times is off until its tempo
# fit catches up).
XRUN_BEFORE_MS = 30.0
STOPPED_S = 3.0  # seconds of CPU measured while stopped, before Start


def machine() -> dict:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    jackd = subprocess.run(["jackd", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "jackd": jackd[0] if jackd else "?",
    }


def jack_options(ap: argparse.ArgumentParser, seed: int) -> None:
    """The options every JACK benchmark takes: the server's period, the model, the seed, --json."""
    ap.add_argument("--period", type=int, default=128, help="JACK period in frames (default 128)")
    ap.add_argument("--model", type=Path, help="exported model folder (default: the shipped model)")
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--json", type=Path, help="also write the results here")


def jack_model(prog: str, model: Path | None) -> Path | None:
    """The exported model a JACK benchmark plays (the shipped one by default), or None after one
    line saying why it cannot run here (a JACK tool or the model missing)."""
    reason = h.missing_tools()
    if reason:
        print(f"{prog}: {reason}", file=sys.stderr)
        return None
    if model is None:
        from performer.engine import default_model_dir

        model = default_model_dir()
    if not (model / "model.json").exists():
        print(f"{prog}: no exported model at {model} (pass --model DIR)", file=sys.stderr)
        return None
    return model


def stats(xs: list[float]) -> dict:
    a = [abs(x) for x in xs]
    return {
        "n": len(a),
        "median_ms": h.percentile(a, 50),
        "p99_ms": h.percentile(a, 99),
        "max_ms": max(a, default=float("nan")),
        "mean_signed_ms": sum(xs) / len(xs) if xs else float("nan"),
    }


def run_tempo(server: h.JackServer, bpm: float, model: Path, seed: int, cycles: int,
              extra: list[str] = ()) -> dict:
    args = ["--model", str(model), "--seed", str(seed), "--quantize", *extra]
    with h.Rig(server, args, bpm=bpm) as rig:
        perf = rig.performer
        ready_line_s = perf.wait_ready_line(10.0)
        # CPU while stopped, the clock streaming: the input is polled fast then (a Start is awaited)
        s0, v0 = h.cpu_seconds(perf.pid), time.monotonic()
        time.sleep(STOPPED_S)
        s1, v1 = h.cpu_seconds(perf.pid), time.monotonic()
        rig.start()
        # CPU over whole cycles of playing, after the first bar (the start-up decode is cold start's)
        assert rig.wait_pos(h.PPQN * 4), "the clock did not roll"
        c0, w0 = h.cpu_seconds(perf.pid), time.monotonic()
        assert rig.wait_pos(cycles * h.TICKS_PER_CYCLE, timeout=cycles * 4 * 4 * 60 / bpm + 30)
        c1, w1 = h.cpu_seconds(perf.pid), time.monotonic()
        mem = h.memory_kb(perf.pid)
        time.sleep(0.2)
        rig.stop()
        rig.rec.settle()
        track = rig.track(fill=False)
        notes = rig.notes()
        xrun_frames = list(rig.rec.xrun_frames)
        log_tail = perf.output()[-2000:]
    # positions off the master's line: a clock our recorder missed would shift every later note
    # a clock (benchmarks/audio_live.py saw it); clock_holes below still counts such holes
    placed = [p for p in h.place(notes, track.on_master_line(), h_pitches()) if p.step < cycles * h.STEPS_PER_CYCLE]
    errs = [server.ms(p.error_frames) for p in placed]
    before, after = server.frames(XRUN_BEFORE_MS), server.rate * 60.0 / bpm

    def near_xrun(frame: int) -> bool:
        return any(-before <= frame - f <= after for f in xrun_frames)

    clean = [server.ms(p.error_frames) for p in placed if not near_xrun(p.note.frame)]
    first = [f for f in track.starts]
    xruns_playing = [f for f in xrun_frames if first and f >= first[0]]
    return {
        "bpm": bpm,
        "notes": len(placed),
        "all": stats(errs),
        "no_xrun": stats(clean),
        "notes_near_xruns": len(placed) - len(clean),
        "xruns_while_playing": len(xruns_playing),
        "clock_holes": len(track.gaps()),
        "clock_doubled": len(track.doubled()),
        "cpu_percent": 100.0 * (c1 - c0) / (w1 - w0),
        "cpu_percent_stopped": 100.0 * (s1 - s0) / (v1 - v0),
        "rss_mb": mem.get("VmRSS", 0) / 1024,
        "own_mb": (mem.get("RssAnon", 0) + mem.get("RssFile", 0)) / 1024,  # without JACK's shared memory
        "jack_shm_mb": mem.get("RssShmem", 0) / 1024,
        "pss_mb": mem.get("Pss", 0) / 1024,
        "cold_start_ports_s": perf.ready_s,
        "cold_start_ready_s": ready_line_s,
        "log_tail": log_tail if not placed else "",
    }


def h_pitches() -> tuple[int, ...]:
    from model import drums

    return drums.OUTPUT_PITCHES


def table(results: list[dict], period_ms: float) -> str:
    head = (f"{'BPM':>5} {'notes':>6} {'median':>7} {'p99':>7} {'max':>7} | {'p99*':>7} {'xruns':>5} | "
            f"{'CPU %':>6} {'stop %':>6} {'RSS MB':>7} {'own MB':>7} {'PSS MB':>7} | {'ports s':>7} {'ready s':>7}")
    rows = [head, "-" * len(head)]
    for r in results:
        ready = r["cold_start_ready_s"]
        rows.append(
            f"{r['bpm']:>5g} {r['notes']:>6d} {r['all']['median_ms']:>7.3f} {r['all']['p99_ms']:>7.3f} "
            f"{r['all']['max_ms']:>7.3f} | {r['no_xrun']['p99_ms']:>7.3f} {r['xruns_while_playing']:>5d} | "
            f"{r['cpu_percent']:>6.2f} {r['cpu_percent_stopped']:>6.2f} {r['rss_mb']:>7.1f} {r['own_mb']:>7.1f} {r['pss_mb']:>7.1f} | {r['cold_start_ports_s']:>7.3f} "
            f"{ready if ready is not None else float('nan'):>7.3f}")
    rows.append(f"errors in ms, |note-on frame - its step's tick frame|; p99* leaves out notes from "
                f"{XRUN_BEFORE_MS:g} ms before to one beat after an xrun")
    rows.append("memory: RSS includes JACK's shared memory that every JACK client maps; own = RssAnon + RssFile")
    rows.append(f"targets: median <= 1.5 ms, p99 <= {period_ms + 0.5:.3f} ms (period + 0.5), "
                f"CPU < 5 %, cold start < 2 s")
    return "\n".join(rows)


def verdict(results: list[dict], period_ms: float) -> list[str]:
    misses = []
    for r in results:
        b = r["bpm"]
        if r["clock_holes"]:
            misses.append(f"{b:g} BPM: no valid take (clock recording had holes 3 times)")
        if not r["all"]["median_ms"] <= 1.5:
            misses.append(f"{b:g} BPM: median {r['all']['median_ms']:.3f} ms > 1.5 ms")
        if not r["all"]["p99_ms"] <= period_ms + 0.5:
            misses.append(f"{b:g} BPM: p99 {r['all']['p99_ms']:.3f} ms > {period_ms + 0.5:.3f} ms")
        if not r["cpu_percent"] < 5.0:
            misses.append(f"{b:g} BPM: CPU {r['cpu_percent']:.2f} % >= 5 %")
        if not r["cold_start_ports_s"] < 2.0:
            misses.append(f"{b:g} BPM: cold start {r['cold_start_ports_s']:.3f} s >= 2 s")
    return misses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.live_timing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bpm", type=float, nargs="+", default=[90.0, 120.0, 180.0])
    ap.add_argument("--cycles", type=int, default=4, help="4-bar cycles played per tempo (default 4)")
    jack_options(ap, seed=1)
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--performer-args", default="",
                    help='more options for the performer, e.g. "--fills every:1 --style funk"')
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    model = jack_model("live_timing", a.model)
    if model is None:
        return 2

    info = machine()
    results = []
    with h.JackServer(rate=a.rate, period=a.period) as server:
        for bpm in a.bpm:
            # A hole in the clock recording (the recorder missed a period on an
            # overloaded machine) shifts every later note by a tick: measure again.
            for attempt in range(1, 4):
                r = run_tempo(server, bpm, model, a.seed, a.cycles, shlex.split(a.performer_args))
                r["attempts"] = attempt
                if not r["clock_holes"]:
                    break
                print(f"{bpm:g} BPM: the clock recording has {r['clock_holes']} hole(s); measuring again",
                      file=sys.stderr)
            results.append(r)
        realtime = server.realtime
    print(f"drum-performer live timing over JACK (dummy driver, {a.rate} Hz, period {a.period} = "
          f"{1000 * a.period / a.rate:.3f} ms, {'realtime' if realtime else 'no-realtime'}), "
          f"model {model}, seed {a.seed}, {a.cycles} cycles per tempo")
    print(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg_at_start'][0]:.2f} at start")
    period_ms = 1000.0 * a.period / a.rate
    print(table(results, period_ms))
    misses = verdict(results, period_ms)
    print("all targets met" if not misses else "missed: " + "; ".join(misses))
    if a.json:
        a.json.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.live_timing", *(argv or sys.argv[1:])]),
            "machine": info,
            "config": {"rate": a.rate, "period": a.period, "realtime": realtime, "model": str(model),
                       "seed": a.seed, "cycles": a.cycles, "performer": h.performer_command(),
                       "performer_args": a.performer_args},
            "results": results,
            "missed": misses,
        }, indent=2))
    return 1 if (a.check and misses) else 0


if __name__ == "__main__":
    sys.exit(main())
