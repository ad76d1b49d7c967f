"""What the built-in kit costs per audio block, as the live audio process renders it.

A groove from the shipped model (``sample --seed``, 180 BPM, played ``--loops``
times) is rendered by :class:`performer.sound.Renderer` in blocks of
``--block`` frames (128: what PortAudio's JACK host API asks for at a 128-frame
period) and each block's time is measured; the CPU share is the mean time
times the blocks a second. The slowest blocks and the page faults taken while
rendering matter as much: the live callback runs in JACK's cycle. ``--baseline DIR`` renders the same in a tree of an
earlier revision (``git archive REV | tar -x -C DIR``) in the same run, side by
side, with the ratio.

    python -m benchmarks.render_cost [--baseline DIR] [--rounds 3] [--json FILE]

Result (benchmarks/results/render_cost.json, 2026-12-02, AMD EPYC 2-vCPU VM,
against fc63921, 5 rounds): mean per 128-frame block 0.067-0.069 ms before
(2.5-2.6 % of a core at 375 blocks a second), 0.039-0.041 ms after (1.5 %),
0.59x; p99 0.110-0.143 -> 0.065-0.080 ms, p99.9 0.13-0.19 -> 0.09-0.13 ms; the
slowest block 1.3-2.0 ms in both; page faults 105-106 -> 118. The kit keeps
each voice's two layers panned (``Voice.soft_lr``, ``hard_lr``), so a block
adds its slice of each times the strike's gains, in one contiguous add,
instead of mixing both layers and then panning into each channel (the output
differs by at most 1.8e-7, float rounding, and still not at all with the
block size). Tried first: mixing and panning each note once when struck.
0.46x on the mean, but it allocates up to 1.3 MB in the audio callback: 45,000
page faults over a like run (12 loops), p99.9 1.5 ms and the slowest block
2.5 ms, near a 128-frame period (2.67 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE = 48000
BPM = 180


def measure(loops: int, block: int, seed: int) -> dict:
    """Render the groove in ``block``-frame blocks with this tree's Renderer; per-block times."""
    import numpy as np

    from performer.audio import Event
    from performer.sound import Renderer, midi_events

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "performer.cli", "sample", "-n", "1", "--seed", str(seed),
                        "--bpm", str(BPM), "--out", tmp], check=True, capture_output=True)
        events = midi_events(next(Path(tmp).glob("*.mid")), sample_rate=RATE)  # note-ons and -offs
    cycle = round(16 * 60 / BPM * RATE)  # four bars
    r = Renderer(sample_rate=RATE)
    for k in range(loops):
        for e in events:
            r.schedule(Event(k * cycle + e.frame, e.pitch, e.velocity))
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(loops * cycle // block):
        a = time.perf_counter()
        r.render(block)
        times.append(time.perf_counter() - a)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    ms = np.array(times) * 1e3
    per_s = RATE / block
    return {"events": len(events) * loops, "blocks": len(ms), "mean_ms": float(ms.mean()),
            "median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "p999_ms": float(np.percentile(ms, 99.9)), "max_ms": float(ms.max()),
            "minor_page_faults": faults, "cpu_percent": float(ms.mean() * per_s / 10.0)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.render_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="a tree of an earlier revision, measured in the same run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--loops", type=int, default=6, help="times the 4-bar groove is played (default 6)")
    ap.add_argument("--block", type=int, default=128, help="frames per block (default 128)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.loops, a.block, a.seed)))
        return
    trees = {"this": None, **({"baseline": a.baseline} if a.baseline else {})}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(a.rounds):
        for name, tree in trees.items():
            env = dict(os.environ)
            # this file run as a script (it imports only the standard library at the top): the
            # performer package it then imports is the baseline's where PYTHONPATH names it
            cmd = [sys.executable, "-P", __file__, "--child", "--loops", str(a.loops),
                   "--block", str(a.block), "--seed", str(a.seed)]
            if tree is not None:
                env["PYTHONPATH"] = str(tree.resolve())
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            r = runs[name][-1]
            print(f"{name:9} mean {r['mean_ms']:.4f} ms  median {r['median_ms']:.4f}  p99 {r['p99_ms']:.4f}  "
                  f"p99.9 {r['p999_ms']:.4f}  max {r['max_ms']:.3f}  page faults {r['minor_page_faults']}  "
                  f"cpu {r['cpu_percent']:.2f} %", flush=True)
    report = {"command": "python -m benchmarks.render_cost " + " ".join(sys.argv[1:]), "runs": runs}
    if a.baseline:
        mean = {k: sum(r["mean_ms"] for r in rs) / len(rs) for k, rs in runs.items()}
        report["this_over_baseline"] = mean["this"] / mean["baseline"]
        print(f"this / baseline (mean block time): {report['this_over_baseline']:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
