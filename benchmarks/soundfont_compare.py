"""Which SoundFont library renders the drums: tinysoundfont vs pyfluidsynth (and the built-in kit).

    python -m benchmarks.soundfont_compare [--fonts A.sf2 B.sf2] [--seconds 60] [--json FILE]

Each (library, font) runs in its own subprocess, through the product's own
:class:`performer.soundfont.SoundFontRenderer` (blocks of 512 frames, split at
note frames), and reports:

* ``load_s``: synth creation + SoundFont load + drum-kit select (median of 3, warm disk cache);
* ``rss_mb``: resident memory added by the load;
* ``cpu_per_audio_s``: CPU seconds per second of audio for a dense groove at
  180 BPM (16th hats, kick, snare with ghosts, toms, a crash per bar,
  +-10 ms microtiming): the live sink's budget is 1.0, far less in practice;
* onset timing: 60 snare hits, each at a random frame, 2 s apart (silence
  before each): the first frame above 1 % of the hit's peak, minus the
  scheduled frame, minus the same lag for a hit on frame 0 (the font's own
  sample start): ``onset_median_abs_err_ms``, ``onset_max_abs_err_ms``.

The built-in kit runs the same groove and timing test as a reference.
Why "1 % of the peak" and not the first non-zero frame: FluidSynth dithers its
16-bit output (never exactly silent), and some fonts' samples begin with a few
quiet frames; the font's own lag is removed by the frame-0 reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

FONTS = ["/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2"]

CHILD = r"""
import json, sys, time, resource
import numpy as np
from benchmarks.soundfont_compare import groove_events, timing_errors, cpu_per_second
backend, font, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024.0
if backend == "builtin":
    from performer import sound
    t = time.perf_counter(); r0 = rss()
    sound.synth_kit()
    load = time.perf_counter() - t; mem = rss() - r0
    make = lambda: sound.Renderer()
else:
    from performer import soundfont as sf
    loads, keep = [], []
    r0 = rss()
    for k in range(3):
        t = time.perf_counter()
        keep.append(sf._BACKENDS[backend](__import__("pathlib").Path(font), 44100))
        loads.append(time.perf_counter() - t)
        if k == 0:
            mem = rss() - r0  # the first synth, kept alive
    del keep
    load = float(np.median(loads))
    make = lambda: sf.SoundFontRenderer(font, backend=backend)
out = {"load_s": round(load, 4), "rss_mb": round(mem, 1)}
out["cpu_per_audio_s"] = round(cpu_per_second(make(), seconds), 5)
err = timing_errors(make)
out["onset_median_abs_err_ms"] = round(float(np.median(np.abs(err))), 3)
out["onset_max_abs_err_ms"] = round(float(np.max(np.abs(err))), 3)
print(json.dumps(out))
"""


def groove_events(seconds: float, bpm: float = 180.0, seed: int = 0):
    """A dense drum part as (frame, pitch, velocity) note-ons plus note-offs half a step later."""
    from performer.sound import SAMPLE_RATE, Event

    rng = np.random.default_rng(seed)
    step = 60.0 / bpm / 4 * SAMPLE_RATE
    events = []
    for k in range(int(seconds * SAMPLE_RATE / step)):
        hits = [(42, 50 + 40 * (k % 2 == 0))]
        if k % 8 == 0:
            hits.append((36, 110))
        if k % 8 == 4:
            hits.append((38, 115))
        elif rng.random() < 0.2:
            hits.append((38, 35))
        if k % 16 == 0:
            hits.append((49, 100))
        if k % 16 in (13, 14, 15):
            hits.append(((50, 47, 43)[k % 16 - 13], 95))
        for pitch, vel in hits:
            f = max(0, round(k * step + rng.uniform(-0.01, 0.01) * SAMPLE_RATE))
            events.append(Event(f, pitch, int(vel)))
            events.append(Event(f + round(step / 2), pitch, 0))
    return events


def cpu_per_second(renderer, seconds: float) -> float:
    import time

    from performer.sound import BLOCK, SAMPLE_RATE

    for ev in groove_events(seconds):
        renderer.schedule(ev)
    frames = int(seconds * SAMPLE_RATE)
    t = time.process_time()
    for _ in range(0, frames, BLOCK):
        renderer.render(BLOCK)
    return (time.process_time() - t) / seconds


def _first_loud(x: np.ndarray) -> int:
    mag = np.abs(x).max(axis=1)
    return int(np.argmax(mag > 0.01 * mag.max()))


def timing_errors(make, hits: int = 60, seed: int = 1) -> np.ndarray:
    """ms between each hit's scheduled frame and its audio onset, less the font's own lag."""
    from performer.sound import BLOCK, SAMPLE_RATE, Event

    def render(frames_at):
        r = make()
        for f in frames_at:
            r.schedule(Event(f, 38, 100))
            r.schedule(Event(f + SAMPLE_RATE // 10, 38, 0))
        total = max(frames_at) + SAMPLE_RATE
        return np.concatenate([r.render(BLOCK) for _ in range(0, total, BLOCK)])

    lag0 = _first_loud(render([0]))
    rng = np.random.default_rng(seed)
    frames = [2 * SAMPLE_RATE * (k + 1) + int(rng.integers(0, BLOCK)) for k in range(hits)]
    audio = render(frames)
    pre, post = SAMPLE_RATE // 4, SAMPLE_RATE // 2  # the previous hit (2 s before) has died away
    err = [(_first_loud(audio[f - pre : f + post]) - pre - lag0) for f in frames]
    return np.array(err) * 1000.0 / SAMPLE_RATE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fonts", nargs="+", default=[f for f in FONTS if Path(f).exists()])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    runs = [("builtin", "-")] + [(b, f) for f in a.fonts for b in ("tinysoundfont", "fluidsynth")]
    results = []
    for backend, font in runs:
        p = subprocess.run([sys.executable, "-c", CHILD, backend, font, str(a.seconds)], capture_output=True, text=True)
        row = {"backend": backend, "font": Path(font).name if font != "-" else "built-in kit"}
        if p.returncode == 0:
            row.update(json.loads(p.stdout.strip().splitlines()[-1]))
        else:
            row["error"] = (p.stderr.strip().splitlines() or ["failed"])[-1]
        results.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "block_frames": 512,
        "groove": "180 BPM, 16th hats, kick/snare/ghosts, tom fills, crash per bar, +-10 ms microtiming",
        "results": results,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
