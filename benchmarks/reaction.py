"""Reactions over JACK: how soon the performer answers a Stop, and plays the step a Continue cues.

Both are reactions to input, not notes sent ahead on the clock's prediction:
jack_midi_clock sends a Continue in the same frame as the clock of the step it
resumes at, and a Stop must silence the drums at once. rtmidi moves MIDI once a
JACK period, so a reaction that is not written before the next period starts
lands a whole period later. One performer (``--quantize``) on a private JACK
server is stopped and resumed ``--takes`` times: each take locates to another
16th (so the master sends a Song Position Pointer, then Continue), plays about
a bar and stops. Recorded with the harness's frame-accurate recorder:

* ``stop``: Stop's frame -> the first CC123 (all notes off) on the output;
* ``continue``: the first note-on of the cued step -> its clock tick (only takes
  where the cued step has a note);
* ``late``: how many of each came more than one period + 1 ms after (the
  tolerance of tests/jack/test_e2e.py);
* the performer's CPU while stopped (the clock streaming) and while playing.

    python -m benchmarks.reaction [--takes 30] [--period 128] [--json FILE]

Paired runs of two trees: ``DRUM_PERFORMER_COMMAND="env PYTHONPATH=TREE python -P
-m performer.cli"`` (tests/jack/harness.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from benchmarks.live_timing import XRUN_BEFORE_MS, h_pitches, jack_model, jack_options, machine
from tests.jack import harness as h

BPM = 120.0
STEP_S = 60.0 / BPM / 4  # seconds per 16th


def _cc123(e: h.Event) -> bool:
    return e.data == bytes([h.CONTROL | h.DRUM_CHANNEL, h.CC_ALL_NOTES_OFF, 0])


def run(server: h.JackServer, model: Path, seed: int, takes: int, rng: random.Random) -> dict:
    args = ["--model", str(model), "--seed", str(seed), "--quantize"]
    stops, conts, cpu_stopped, cpu_playing = [], [], [], []
    step_frames = round(server.rate * STEP_S)
    with h.Rig(server, args, bpm=BPM, clock_kw={"resync_delay": 0.5}) as rig:
        pid = rig.performer.pid
        rig.start()
        assert rig.wait_pos(4 * h.PPQN), "the clock did not roll"
        for _ in range(takes):
            c0, w0 = h.cpu_seconds(pid), time.monotonic()
            time.sleep(0.8)  # about a bar and a half at 120 BPM
            c1, w1 = h.cpu_seconds(pid), time.monotonic()
            cpu_playing.append(100.0 * (c1 - c0) / (w1 - w0))
            stop = rig.stop()
            c0, w0 = h.cpu_seconds(pid), time.monotonic()
            time.sleep(0.4)
            c1, w1 = h.cpu_seconds(pid), time.monotonic()
            cpu_stopped.append(100.0 * (c1 - c0) / (w1 - w0))
            step = 2 * rng.randrange(4, 30)  # an 8th: most grooves have a hit there
            rig.locate(step * step_frames)
            since = rig.rec.mark()
            rig.transport.play()
            cont = rig.rec.wait_for(lambda e: e.data[:1] == bytes([h.CONTINUE]), 10.0, since, "clock")
            assert cont is not None, "no Continue from jack_midi_clock"
            stops.append(stop.frame)
            conts.append(cont.frame)
        time.sleep(0.6)
        rig.stop()
        rig.rec.settle()
        track = rig.track(fill=False)
        events = rig.rec.events("notes")
        xrun_frames = list(rig.rec.xrun_frames)
    placed = h.place(h.notes(events), track, h_pitches())
    tol = server.period_ms + 1.0

    def near_xrun(frame: int) -> bool:
        return any(-server.frames(XRUN_BEFORE_MS) <= frame - f <= server.frames(250.0) for f in xrun_frames)

    stop_ms = []
    for f in stops:
        first = next((e for e in events if e.frame >= f and _cc123(e)), None)
        if first is not None and not near_xrun(f):
            stop_ms.append(server.ms(first.frame - f))
    cont_ms = []
    for f in conts:
        resumed = next((k for k in track.ticks if k.frame >= f), None)
        if resumed is None or near_xrun(f):
            continue
        cued = -(-resumed.pos // h.TICKS_PER_STEP)
        first = [p for p in placed if f <= p.note.frame < f + server.rate and p.step == cued]
        if first:
            cont_ms.append(server.ms(min(first, key=lambda p: p.note.frame).error_frames))
    return {
        "stop": summary(stop_ms, tol),
        "continue": summary(cont_ms, tol),
        "tolerance_ms": tol,
        "takes": takes,
        "xruns": len(xrun_frames),
        "cpu_percent_playing": sum(cpu_playing) / len(cpu_playing),
        "cpu_percent_stopped": sum(cpu_stopped) / len(cpu_stopped),
    }


def summary(xs: list[float], tol: float) -> dict:
    return {
        "n": len(xs),
        "median_ms": h.percentile(xs, 50),
        "p95_ms": h.percentile(xs, 95),
        "max_ms": max(xs, default=float("nan")),
        "late": sum(x > tol for x in xs),
        "values_ms": [round(x, 3) for x in xs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reaction", description=__doc__.split("\n\n")[0])
    ap.add_argument("--takes", type=int, default=30, help="stop + locate + continue rounds (default 30)")
    jack_options(ap, seed=5)
    a = ap.parse_args(argv)
    model = jack_model("reaction", a.model)
    if model is None:
        return 2
    info = machine()
    with h.JackServer(period=a.period) as server:
        r = run(server, model, a.seed, a.takes, random.Random(a.seed))
        realtime = server.realtime
    print(f"drum-performer reactions over JACK (dummy driver, period {a.period}, "
          f"{'realtime' if realtime else 'no-realtime'}), {a.takes} takes at {BPM:g} BPM, "
          f"load {info['loadavg_at_start'][0]:.2f} at start; performer: {h.performer_command()}")
    for what in ("stop", "continue"):
        s = r[what]
        print(f"{what:>9}: n {s['n']:3d}  median {s['median_ms']:.3f}  p95 {s['p95_ms']:.3f}  max {s['max_ms']:.3f} ms"
              f"  late (> {r['tolerance_ms']:.3f} ms) {s['late']}")
    print(f"cpu: playing {r['cpu_percent_playing']:.1f} %, stopped {r['cpu_percent_stopped']:.1f} %; xruns {r['xruns']}")
    if a.json:
        a.json.write_text(json.dumps({
            "command": " ".join(["python", "-m", "benchmarks.reaction", *(argv or sys.argv[1:])]),
            "machine": info, "performer": h.performer_command(), "period": a.period, "results": r,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
