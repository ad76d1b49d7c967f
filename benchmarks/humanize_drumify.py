"""Humanize and drumify on the GMD test windows, against naive baselines; drumify decode latency.

    python -m benchmarks.humanize_drumify --data GMD [--model DIR] [--cache DIR] [--json FILE] [--limit N]

Humanize: each test window is quantised (hits kept, velocity 100, offsets 0),
humanized, and compared with the real performance on the real hits: velocity
MAE (MIDI units, 0..127) against "every voice at its mean training velocity",
timing MAE (ms at 120 BPM, one step = 125 ms) against "no offsets"; per voice,
and the swing (mean offset of 8th-note offbeats minus that of beats, ms) of the
model and of the data.

Drumify: each test window is flattened to one voice and written as a MIDI clip
on channel 1 (pitch 60), read back through the CLI's reader (every note-on,
velocities too) and drumified; hit F1 over (step, voice) cells against the
window's real drums, against unconditioned samples of the same model (prior z)
at the same temperature, scored against the same windows.

Latency: batch-1 decode of a drumified groove (tap encoder + sampler) vs a
sampled one (prior z + sampler), alternating blocks, one thread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import mido
import numpy as np

from model import drums
from performer import band, band_cli
from performer.engine import Engine

MS_PER_STEP = 60_000 / 120 / drums.STEPS_PER_BEAT  # 125 ms at 120 BPM


def _windows(data: str, cache: str | None):
    from train.data import WindowSet, preprocess

    tracks, _ = preprocess(data, cache)
    return WindowSet(tracks["test"], (), fills=False), WindowSet(tracks["train"], (), fills=False)


def humanize_figures(engine, ws, train_ws, idx, batch: int = 64) -> dict:
    H = ws.hits[idx] > 0.5
    V, OFF, C = ws.velocity[idx], ws.offset[idx], ws.classes[idx]
    pv, po = [], []
    for a in range(0, len(idx), batch):
        v, o = band.humanize_arrays(engine, C[a : a + batch])
        pv.append(v)
        po.append(o)
    PV, PO = np.concatenate(pv), np.concatenate(po)
    th = train_ws.hits > 0.5
    mean_v = (train_ws.velocity * th).sum((0, 1)) / np.maximum(th.sum((0, 1)), 1)  # (V,)
    BV = np.broadcast_to(mean_v, V.shape)
    out = {"windows": int(len(idx)), "hits": int(H.sum()), "per_voice": {}}

    def mae(a, b, m):
        return float(np.abs(a - b)[m].mean()) if m.any() else float("nan")

    out["velocity_mae_model"] = mae(PV, V, H) * 127
    out["velocity_mae_baseline"] = mae(BV, V, H) * 127
    out["timing_mae_model_ms"] = mae(PO, OFF, H) * MS_PER_STEP
    out["timing_mae_baseline_ms"] = mae(0.0, OFF, H) * MS_PER_STEP
    out["velocity_ratio"] = out["velocity_mae_model"] / out["velocity_mae_baseline"]
    out["timing_ratio"] = out["timing_mae_model_ms"] / out["timing_mae_baseline_ms"]
    for v, name in enumerate(drums.VOICES):
        m = H[..., v]
        out["per_voice"][name] = {
            "hits": int(m.sum()),
            "velocity_mae_model": mae(PV[..., v], V[..., v], m) * 127,
            "velocity_mae_baseline": mae(BV[..., v], V[..., v], m) * 127,
            "timing_mae_model_ms": mae(PO[..., v], OFF[..., v], m) * MS_PER_STEP,
            "timing_mae_baseline_ms": mae(0.0, OFF[..., v], m) * MS_PER_STEP,
        }
    pos = np.arange(drums.STEPS) % drums.STEPS_PER_BAR
    for name, off_pos, on_pos in (("8th", pos % 4 == 2, pos % 4 == 0), ("16th", pos % 2 == 1, pos % 2 == 0)):
        offb = H & off_pos[None, :, None]
        onb = H & on_pos[None, :, None]

        def swing(x, offb=offb, onb=onb):
            return float((x[offb].mean() - x[onb].mean()) * MS_PER_STEP)

        # per window, for the windows with both kinds of hits: does the model follow each groove's feel?
        both = offb.any((1, 2)) & onb.any((1, 2))

        def per_win(x, offb=offb, onb=onb, both=both):
            s = (x * offb).sum((1, 2)) / np.maximum(offb.sum((1, 2)), 1) - (x * onb).sum((1, 2)) / np.maximum(onb.sum((1, 2)), 1)
            return s[both] * MS_PER_STEP

        d, m = per_win(OFF), per_win(PO)
        out[f"swing_{name}"] = {"data_ms": swing(OFF), "model_ms": swing(PO), "baseline_ms": 0.0,
                                "per_window_corr": float(np.corrcoef(d, m)[0, 1]) if len(d) > 2 else float("nan"),
                                "per_window_mae_model_ms": float(np.abs(d - m).mean()),
                                "per_window_mae_baseline_ms": float(np.abs(d).mean())}
    return out


def _clip_of(taps: np.ndarray, path: Path) -> Path:
    """One voice of taps as a melodic MIDI clip: channel 1, pitch 60, onsets with their offsets."""
    tpb = 480
    tps = tpb // drums.STEPS_PER_BEAT
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    evs = []
    for t in np.nonzero(taps[:, 0] > 0.5)[0]:
        on = max(0, round((t + float(taps[t, 2])) * tps))
        evs += [(on, 1, mido.Message("note_on", channel=0, note=60, velocity=drums.velocity_to_midi(taps[t, 1]))),
                (on + tps // 2, 0, mido.Message("note_off", channel=0, note=60, velocity=0))]
    evs.sort(key=lambda e: (e[0], e[1]))
    tr, last = mido.MidiTrack(), 0
    for t, _, m in evs:
        tr.append(m.copy(time=t - last))
        last = t
    tr.append(mido.MetaMessage("end_of_track", time=drums.STEPS * tps - last))
    mid.tracks.append(tr)
    mid.save(str(path))
    return path


def f1(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(B, T, V) bool -> mean per-window F1, pooled F1."""
    tp = (pred & true).sum((1, 2))
    denom = pred.sum((1, 2)) + true.sum((1, 2))
    per = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    return float(per.mean()), float(2 * tp.sum() / max(denom.sum(), 1))


def drumify_figures(engine, ws, idx, temperature: float, seed: int = 0) -> dict:
    H = ws.hits[idx] > 0.5
    taps = band.flatten(H, ws.velocity[idx], ws.offset[idx])
    read = []
    with tempfile.TemporaryDirectory() as d:
        for i, tp in enumerate(taps):
            pos, vel, _, length = band_cli.read_onsets(_clip_of(tp, Path(d) / f"{i}.mid"), channel=1)
            read.append(band_cli.taps_from_onsets(pos, vel, length)[0])
    read = np.stack(read)
    # the MIDI path may only lose what MIDI ticks cannot hold (offsets to 1/120 of a step)
    assert np.array_equal(read[..., 0], taps[..., 0]), "tap hits changed through MIDI"
    z = band.tap_z(engine, read)
    rng = np.random.default_rng(seed)
    out = {"windows": int(len(idx)), "temperature": temperature}
    prior_z = np.stack([engine.draw_z(rng) for _ in idx])
    mask = band.onset_mask(read)
    for name, zs, m in (("drumify", z, None), ("drumify_on_onsets", z, mask), ("unconditioned", prior_z, None)):
        noise = None
        if temperature > 0:
            noise = band_noise(rng, len(idx))
        preds = []
        for a in range(0, len(idx), 64):
            c, _, _ = engine.decode(zs[a : a + 64], temperature, None if noise is None else noise[a : a + 64],
                                    None if m is None else m[a : a + 64])
            preds.append(drums.index_to_hits(c))
        P = np.concatenate(preds)
        out[f"{name}_f1_mean"], out[f"{name}_f1_pooled"] = f1(P, H)
        out[f"{name}_hits_per_window"] = float(P.sum((1, 2)).mean())
    out["true_hits_per_window"] = float(H.sum((1, 2)).mean())
    out["f1_ratio"] = out["drumify_f1_mean"] / max(out["unconditioned_f1_mean"], 1e-9)
    return out


def band_noise(rng, n: int) -> np.ndarray:
    u = rng.random((n, drums.STEPS, drums.NUM_CLASSES), dtype=np.float32)
    np.clip(u, 1e-9, 1.0 - 1e-7, out=u)
    return -np.log(-np.log(u))


def latency(engine, taps: np.ndarray, iters: int = 200) -> dict:
    sampled, drumified = [], []
    for block in range(iters // 10):
        for _ in range(10):
            t0 = time.perf_counter()
            engine.sample(seed=block)
            sampled.append(time.perf_counter() - t0)
        for i in range(10):
            t0 = time.perf_counter()
            band.drumify(engine, taps[(block * 10 + i) % len(taps)], 1, block)
            drumified.append(time.perf_counter() - t0)

    def st(x):
        a = np.asarray(x) * 1000
        return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99))}

    return {"sampled": st(sampled), "drumified": st(drumified), "iters": iters}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="exported model folder with tap.onnx (default: the shipped one)")
    ap.add_argument("--data", required=True, help="the GMD folder (with info.csv), as for train and eval")
    ap.add_argument("--cache", help="preprocessing cache folder, as for train and eval")
    ap.add_argument("--limit", type=int, help="first N test windows only")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    engine = Engine.load(a.model)
    ws, train_ws = _windows(a.data, a.cache)
    idx = np.arange(len(ws) if a.limit is None else min(a.limit, len(ws)))
    rep = {"model": str(engine.folder), "model_name": engine.meta.get("name"),
           "encoders": sorted(k for k in engine.meta.get("files", {}) if k in (band.TAP, band.HUMANIZE))}
    rep["humanize"] = humanize_figures(engine, ws, train_ws, idx)
    if band.has_tap(engine):
        rep["drumify"] = {f"t{t:g}": drumify_figures(engine, ws, idx, t) for t in (0.0, engine.default_temperature)}
        taps = band.flatten(ws.hits[idx[:50]] > 0.5, ws.velocity[idx[:50]], ws.offset[idx[:50]])
        rep["latency"] = latency(engine, taps)
    text = json.dumps(rep, indent=1)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
        Path(a.json).with_suffix(".md").write_text(markdown(rep))
    return 0


def markdown(rep: dict) -> str:
    """The figures as tables (humanize per voice, swing, drumify F1, latency)."""
    h = rep["humanize"]
    out = [f"# Humanize and drumify on the GMD test windows ({h['windows']} windows, model {rep['model_name']})", "",
           "## Humanize (quantised -> humanized vs the real performance; baselines: per-voice mean velocity, no offsets)",
           "", "| voice | hits | velocity MAE model | baseline | ratio | timing MAE model (ms) | baseline | ratio |",
           "|---|---|---|---|---|---|---|---|"]
    rows = [("all", {"hits": h["hits"], **{k: h[k] for k in ("velocity_mae_model", "velocity_mae_baseline")},
                     "timing_mae_model_ms": h["timing_mae_model_ms"], "timing_mae_baseline_ms": h["timing_mae_baseline_ms"]})]
    for name, r in [*rows, *h["per_voice"].items()]:
        out.append(f"| {name} | {r['hits']} | {r['velocity_mae_model']:.2f} | {r['velocity_mae_baseline']:.2f} | "
                   f"{r['velocity_mae_model'] / r['velocity_mae_baseline']:.3f} | {r['timing_mae_model_ms']:.2f} | "
                   f"{r['timing_mae_baseline_ms']:.2f} | {r['timing_mae_model_ms'] / r['timing_mae_baseline_ms']:.3f} |")
    out += ["", "Velocity in MIDI units (0..127), timing in ms at 120 BPM.", "",
            "| swing (offbeat minus beat offset, ms) | data | model | per-window corr | per-window MAE model | baseline (0) |",
            "|---|---|---|---|---|---|"]
    for k in ("8th", "16th"):
        sw = h[f"swing_{k}"]
        out.append(f"| {k} | {sw['data_ms']:.2f} | {sw['model_ms']:.2f} | {sw['per_window_corr']:.3f} | "
                   f"{sw['per_window_mae_model_ms']:.2f} | {sw['per_window_mae_baseline_ms']:.2f} |")
    if "drumify" in rep:
        out += ["", "## Drumify (flattened to one voice, channel 1, read back as MIDI; hit F1 vs the real drums)", "",
                "| temperature | drumify F1 | --on-onsets F1 | unconditioned F1 | ratio | ratio --on-onsets |",
                "|---|---|---|---|---|---|"]
        for d in rep["drumify"].values():
            out.append(f"| {d['temperature']:g} | {d['drumify_f1_mean']:.3f} | {d['drumify_on_onsets_f1_mean']:.3f} | "
                       f"{d['unconditioned_f1_mean']:.3f} | {d['f1_ratio']:.2f} | "
                       f"{d['drumify_on_onsets_f1_mean'] / d['unconditioned_f1_mean']:.2f} |")
        lat = rep["latency"]
        out += ["", f"Decode latency, batch 1, one thread, alternating blocks ({lat['iters']} each): sampled "
                f"median {lat['sampled']['median_ms']:.2f} ms (p99 {lat['sampled']['p99_ms']:.2f}), drumified "
                f"(tap encoder + decode) median {lat['drumified']['median_ms']:.2f} ms (p99 {lat['drumified']['p99_ms']:.2f})."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
