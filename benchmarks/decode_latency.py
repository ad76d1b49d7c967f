"""Pattern decode latency: PyTorch eager vs the ONNX Runtime engine, same weights, one process.

    python -m benchmarks.decode_latency [--run runs/default] [--model DIR] [--iters 300] [--json FILE]

Both sides use one thread and decode a whole 4-bar pattern (64 steps) from a
latent with Gumbel noise at temperature 1. Blocks of 10 calls alternate between
the two so they see the same machine conditions. Also measured: cold start of a fresh
runtime-only process (interpreter start -> first pattern ready) and its peak
resident memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLD = """
import sys, time
from performer.engine import Engine
e = Engine.load({model!r})
p = e.sample(seed=0)
t_ready = time.time()
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024.0
print(t_ready, hwm, "torch" in sys.modules)
"""


def cold_start(model: str | None, runs: int = 5) -> tuple[float, float, bool]:
    times, rss, torch_loaded = [], [], False
    for _ in range(runs):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", COLD.format(model=model)], capture_output=True, text=True, check=True)
        ready, mb, tl = out.stdout.split()
        times.append(float(ready) - t0)
        rss.append(float(mb))
        torch_loaded |= tl == "True"
    return float(np.median(times)), float(max(rss)), torch_loaded


def stats(ts: list[float]) -> tuple[float, float]:
    a = np.asarray(ts) * 1000.0
    return float(np.median(a)), float(np.percentile(a, 99))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/default", help="run folder with the torch weights")
    ap.add_argument("--model", default=None, help="exported model of that run (default: the shipped one)")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)

    import torch

    from model.sampling import gumbel
    from performer.engine import Engine
    from train import trainer

    torch.set_num_threads(1)
    model, cfg = trainer.load_model(Path(a.run))
    engine = Engine.load(a.model)
    if engine.z_size != cfg.model.z:
        print(f"error: {a.model or 'the shipped model'} is not an export of {a.run}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    T, C = cfg.model.steps, cfg.model.num_classes

    def inputs(b):
        z = rng.standard_normal((b, cfg.model.z)).astype(np.float32)
        return z, gumbel(rng, (b, T, C))

    # same weights: identical choices on the same z and noise
    z, nz = inputs(4)
    tc, _, _ = model.sample(torch.from_numpy(z), 1.0, torch.from_numpy(nz))
    ec, _, _ = engine.decode(z, 1.0, nz)
    if not np.array_equal(tc.numpy(), ec):
        print("error: the engine's model and the run's weights disagree", file=sys.stderr)
        return 1

    res: dict = {}
    for b in (1, 8):
        z, nz = inputs(b)
        zt, nt = torch.from_numpy(z), torch.from_numpy(nz)
        for _ in range(10):  # warm-up
            model.sample(zt, 1.0, nt)
            engine.decode(z, 1.0, nz)
        t_torch, t_eng = [], []
        iters = a.iters if b == 1 else max(20, a.iters // 4)
        # alternate in blocks: both sides see the same machine conditions, and neither pays
        # for the other evicting its weights from cache on every single call
        block = 10
        for _ in range(max(1, iters // block)):
            for _ in range(block):
                t = time.perf_counter()
                model.sample(zt, 1.0, nt)
                t_torch.append(time.perf_counter() - t)
            for _ in range(block):
                t = time.perf_counter()
                engine.decode(z, 1.0, nz)
                t_eng.append(time.perf_counter() - t)
        res[f"torch_b{b}_median_ms"], res[f"torch_b{b}_p99_ms"] = stats(t_torch)
        res[f"engine_b{b}_median_ms"], res[f"engine_b{b}_p99_ms"] = stats(t_eng)
        res[f"speedup_b{b}"] = res[f"torch_b{b}_median_ms"] / res[f"engine_b{b}_median_ms"]
    # the full call the live loop makes: noise from the seed + decode + Pattern
    t_full = []
    for i in range(a.iters):
        t = time.perf_counter()
        engine.sample(seed=i)
        t_full.append(time.perf_counter() - t)
    res["engine_sample_median_ms"], res["engine_sample_p99_ms"] = stats(t_full)
    res["cold_start_s"], res["runtime_rss_mb"], torch_in_runtime = cold_start(a.model)
    res["torch_in_runtime_process"] = torch_in_runtime
    res["machine"] = f"{platform.machine()}, {platform.processor() or '?'}, python {platform.python_version()}"
    res["model"] = {"run": a.run, "params": sum(p.numel() for p in model.parameters()), "dec_hidden": cfg.model.dec_hidden}

    print(f"{'4-bar pattern decode, 1 thread':34s} {'median ms':>10s} {'p99 ms':>10s}")
    for b in (1, 8):
        for side in ("torch", "engine"):
            print(f"{side + ' eager' if side == 'torch' else side + ' (ONNX Runtime)':22s} batch {b:<5d} {res[f'{side}_b{b}_median_ms']:10.3f} {res[f'{side}_b{b}_p99_ms']:10.3f}")
        print(f"{'speedup (torch / engine median)':34s} {res[f'speedup_b{b}']:10.1f}x")
    print(f"{'engine.sample (seed -> Pattern)':34s} {res['engine_sample_median_ms']:10.3f} {res['engine_sample_p99_ms']:10.3f}")
    print(f"cold start (process -> first pattern): {res['cold_start_s']:.3f} s, peak RSS {res['runtime_rss_mb']:.0f} MB, torch loaded: {torch_in_runtime}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
