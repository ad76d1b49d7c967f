"""Live follow latency: the decode of a followed groove beside a sampled one, same run, same machine state.

    python -m benchmarks.follow_latency [--model DIR] [--iters 400] [--json FILE]

What the director's worker runs for each request kind, batch 1, the engine's
own sessions (one thread):

* sampled: a new groove, ``engine.sample(seed=k)`` (prior z + sampler);
* follow: the live follow path, ``band.follow_z`` (tap encoder on the 4 bars
  heard + slerp with the playing z at amount 0.5) then ``engine.sample(z=...)``;
  and at amount 1 (tap encoder, no blend).

Blocks of 10 calls alternate between the kinds so they see the same machine
conditions. Also timed: what the sender thread does for follow at bar 4
(``band.heard_taps`` over a busy player's 4 bars, 256 onsets), since that runs
on the thread that must never be late. The taps are GMD-like figures: random
onset grids of 25-50 % density with velocities and small offsets.

And the follower's share of every poll of the sender thread (``sender_poll``):
``Follower.drain`` every 2 ms over 4 cycles of MIDI clock at 120 BPM delivered
per JACK period (128 frames, 48 kHz), a player's note-on on every 8th; the
figures are per poll (most polls have nothing to do), per second of playing,
and how many polls read the playhead (``looks``).

The budget a follow decode must fit is the sampled decode's (spec: p99 well
under one clock tick at 200 BPM, 12.5 ms); a follow request has a whole bar
(600 ms at 400 BPM) between being asked and its boundary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from model import drums
from performer import band
from performer.engine import Engine


def figures(ts: list[float]) -> dict:
    a = np.asarray(ts) * 1000.0
    return {"median_ms": round(float(np.median(a)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "max_ms": round(float(a.max()), 4), "n": int(len(a))}


def taps_set(n: int, rng: np.random.Generator) -> np.ndarray:
    hits = rng.random((n, drums.STEPS)) < rng.uniform(0.25, 0.5, (n, 1))
    vel = np.where(hits, rng.uniform(0.3, 1.0, hits.shape), 0.0)
    off = np.where(hits, rng.uniform(-0.2, 0.2, hits.shape), 0.0)
    return np.stack([hits, vel, off], -1).astype(np.float32)


def sender_poll(cycles: int = 4, poll_s: float = 0.002) -> dict:
    """Time ``Follower.drain`` as the sender thread calls it (see the module docstring)."""
    from performer.clock import MidiClock, bpm_to_period
    from performer.follow import Follower
    from performer.ports import MemoryInput

    class Quiet:  # the director: follow amount 1, requests dropped (the decode is timed above)
        def follow_amount(self):
            return 1.0

        def request(self, *a):
            pass

    clock = MidiClock()
    f = Follower(Quiet(), clock)
    player = MemoryInput(f.inbox, "player")
    period, jack = bpm_to_period(120.0), 128 / 48000
    n_ticks = cycles * drums.STEPS * 6 + 1
    ticks = [k * period // jack * jack for k in range(n_ticks)]
    clock.feed(("start",), 0.0)
    fed, played, times, t = 0, 0, [], 0.0
    while t < ticks[-1]:
        while fed < n_ticks and ticks[fed] <= t:
            clock.feed(("clock",), ticks[fed])
            fed += 1
        while played * 12 * period <= t:  # an 8th note
            player.push([0x90, 60, 100], played * 12 * period)
            played += 1
        t0 = time.perf_counter()
        f.drain(t)
        times.append(time.perf_counter() - t0)
        t += poll_s
    a = np.asarray(times) * 1e6
    return {"polls": len(a), "looks": getattr(f, "looks", None), "notes": f.notes, "requests": f.requests,
            "median_us": round(float(np.median(a)), 3), "p99_us": round(float(np.percentile(a, 99)), 3),
            "max_us": round(float(a.max()), 3), "us_per_s_playing": round(float(a.sum()) / ticks[-1], 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="exported model folder with tap.onnx (default: the shipped one)")
    ap.add_argument("--iters", type=int, default=400, help="calls per kind (a multiple of 10)")
    ap.add_argument("--temperature", type=float, help="default: the model's")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    engine = Engine.load(a.model)
    if not band.has_tap(engine):
        raise SystemExit(f"{engine.folder} has no tap encoder")
    temp = engine.default_temperature if a.temperature is None else a.temperature
    rng = np.random.default_rng(0)
    taps = taps_set(64, rng)
    for i in range(20):  # warm every session
        band.follow_z(engine, engine.prior(i), taps[i], 0.5)
        engine.sample(seed=i, temperature=temp)
    kinds = {
        "sampled": lambda k: engine.sample(seed=k, temperature=temp),
        "follow_0.5": lambda k: engine.sample(z=band.follow_z(engine, engine.prior(k), taps[k % len(taps)], 0.5),
                                              temperature=temp, seed=k),
        "follow_1": lambda k: engine.sample(z=band.follow_z(engine, engine.prior(k), taps[k % len(taps)], 1.0),
                                            temperature=temp, seed=k),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for block in range(a.iters // 10):
        for name, fn in kinds.items():
            for i in range(10):
                k = block * 10 + i
                t0 = time.perf_counter()
                fn(k)
                times[name].append(time.perf_counter() - t0)
    # the sender thread's share: 256 onsets (a busy player, 16ths in every bar) -> taps
    onsets = [(s + float(rng.uniform(-0.3, 0.3)), float(rng.uniform(0.2, 1.0))) for s in range(-16, 240)]
    heard = []
    for _ in range(200):
        t0 = time.perf_counter()
        band.heard_taps(onsets, 48)
        heard.append(time.perf_counter() - t0)
    rep = {
        "model": str(engine.folder.name),
        "machine": platform.processor() or platform.machine(),
        "temperature": temp,
        "iters_per_kind": a.iters,
        "decode": {k: figures(v) for k, v in times.items()},
        "sender_heard_taps_256_onsets": figures(heard),
        "sender_poll": min((sender_poll() for _ in range(5)), key=lambda r: r["us_per_s_playing"]),
    }
    s, f = rep["decode"]["sampled"], rep["decode"]["follow_0.5"]
    rep["follow_over_sampled_median_ms"] = round(f["median_ms"] - s["median_ms"], 4)
    text = json.dumps(rep, indent=1)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
