"""Does the live audio stream's Python callback make the JACK graph xrun? Measured against the floor.

``--audio`` runs the built-in kit from a Python callback that PortAudio's JACK
host API calls in JACK's process thread: a late callback (the GIL, a garbage
collection) would make the whole graph miss its cycle. The other way would keep
Python out of that thread: a *blocking* PortAudio stream, written by a Python
thread through PortAudio's ring buffer (the notes' frames then known less
directly). Before redesigning for it, this counts xruns on a private JACK server
(dummy driver, 48 kHz, ``--period``) while jack_midi_clock plays at 180 BPM and
our recorder listens (as in every live benchmark), with, in a process of its own:

- ``none``: nothing more (the machine's floor);
- ``callback``: a PortAudio stream whose Python callback renders the kit (16th
  hi-hats, kick, snare, a crash each bar at 180 BPM), as the live sink does;
- ``blocking``: the same kit rendered by a Python thread into a blocking stream.

The three alternate, ``--rounds`` times, ``--seconds`` each, so that a change of
the machine's floor (on these VMs 0 to 100 xruns a minute from one hour to the
next) reaches each alike.

    python -m benchmarks.audio_xruns [--seconds 20] [--rounds 3] [--json FILE]

Result (benchmarks/results/audio_xruns.json, 2026-12-02, AMD EPYC 2-vCPU VM,
``--seconds 20 --rounds 4``): xruns per run none 48, 3, 6, 10; callback 27, 0,
0, 0; blocking 0, 0, 13, 0. They come in bursts whatever runs, and the
callback runs had no more than the floor's: the live sink keeps its callback
(which places each note at its frame from the DAC time of its block).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.live_timing import machine
from tests.jack import harness as h

MODES = ("none", "callback", "blocking")
OPEN_S = 1.5  # a child's start and its stream's opening, not counted
BPM = 180.0


def _child(mode: str, seconds: float) -> dict:
    """Play the kit for ``seconds`` in ``mode`` (runs in its own process); its own figures."""
    import sounddevice as sd

    from performer.audio_out import JACK_HOSTAPI
    from performer.sound import Event, Renderer

    rate = 48000
    r = Renderer(sample_rate=rate)
    step = round(rate * 60 / BPM / 4)  # a 16th
    for i in range(int((seconds + OPEN_S + 1) * rate / step)):
        r.schedule(Event(i * step, 42, 90))
        if i % 4 == 0:
            r.schedule(Event(i * step, 36, 110))
        if i % 8 == 4:
            r.schedule(Event(i * step, 38, 110))
        if i % 16 == 0:
            r.schedule(Event(i * step, 49, 100))
    api = next(i for i, a in enumerate(sd.query_hostapis()) if a["name"] == JACK_HOSTAPI)
    dev = sd.query_hostapis(api)["default_output_device"]
    got = {"underflows": 0, "blocks": 0}
    if mode == "callback":
        def callback(out, frames, _time, status) -> None:
            got["underflows"] += int(status.output_underflow)
            out[:] = r.render(frames)
            got["blocks"] += 1

        with sd.OutputStream(device=dev, samplerate=rate, channels=2, dtype="float32", latency="low",
                             callback=callback):
            time.sleep(OPEN_S + seconds)
    elif mode == "blocking":
        with sd.OutputStream(device=dev, samplerate=rate, channels=2, dtype="float32", latency="low") as s:
            end = time.monotonic() + OPEN_S + seconds
            while time.monotonic() < end:
                got["underflows"] += int(bool(s.write(r.render(256))))
                got["blocks"] += 1
    else:
        time.sleep(OPEN_S + seconds)
    return got


def run(seconds: float, rounds: int, period: int) -> dict:
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp, h.JackServer(rate=48000, period=period, workdir=Path(tmp)) as server, \
            h.Rig(server, start_performer=False, bpm=BPM) as rig:
        rig.start()
        for _ in range(rounds):
            for mode in MODES:
                p = subprocess.Popen([sys.executable, "-m", "benchmarks.audio_xruns", "--child", mode,
                                      "--seconds", str(seconds)], env=server.env, stdout=subprocess.PIPE, text=True)
                time.sleep(OPEN_S)
                before = rig.rec.xruns
                out, _ = p.communicate(timeout=seconds + 60)
                xruns = rig.rec.xruns - before
                own = json.loads(out.strip().splitlines()[-1]) if p.returncode == 0 else {"exit": p.returncode}
                results[mode].append({"xruns": xruns, **own})
                print(f"{mode:9} {xruns:4d} xruns  {own}", flush=True)
        rig.stop()
    return {m: {"xruns": [r["xruns"] for r in rs], "xruns_total": sum(r["xruns"] for r in rs), "runs": rs}
            for m, rs in results.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.audio_xruns", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="counted seconds per run (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (none, callback, blocking) (default 3)")
    ap.add_argument("--period", type=int, default=128, help="JACK period in frames (default 128)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.seconds)))
        return
    report = {"command": "python -m benchmarks.audio_xruns " + " ".join(sys.argv[1:]), "machine": machine(),
              "config": {"seconds": a.seconds, "rounds": a.rounds, "period": a.period, "bpm": BPM}}
    report["results"] = run(a.seconds, a.rounds, a.period)
    print(json.dumps({m: r["xruns"] for m, r in report["results"].items()}))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
