"""Export the small networks of ``train.tap`` (tap.onnx, humanize.onnx) beside a model's graphs.

Kept apart from ``export.exporter.export`` so an exported folder can gain an
encoder without re-exporting (and re-checking) the sampler: the encoder is
traced, checked against torch, copied in, and model.json's ``files`` (the
checksums the engine verifies) is rewritten last, atomically.

The encoders are trained in float32; their weights are rounded to float16 for
the folder (:func:`rounded`, stored by ``graphs.store_float16``, computed in
float32 by ONNX Runtime), which halves tap.onnx and humanize.onnx. The parity
gate compares the graph with the torch encoder holding the same rounded
weights, at the same tolerance as before; what the rounding itself moves is
recorded beside it in model.json (``rounding``, on the parity probe).

Why this is acceptable, measured for runs/groove-q on the 1918 GMD test windows
(benchmarks/humanize_drumify.py, float32 vs float16 folder): the tap z moved
by at most 2.4e-3 (mean 9e-5; its entries reach 2.9), so 87 of 122,752
drumified steps (0.07 %, 32 windows) chose another class at temperature 0 and
192 (0.16 %) at 0.5; drumify hit F1 0.5567 -> 0.5568 (T=0) and 0.5510 ->
0.5509 (T=0.5). The humanizer's outputs moved by at most 0.1 MIDI velocity and
0.08 ms; its velocity MAE 20.935 -> 20.935, timing MAE 16.841 -> 16.841 ms.
tap.onnx 3.43 -> 1.72 MB, humanize.onnx 2.34 -> 1.17 MB.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from export.graphs import max_diff, store_float16
from model import drums
from model.errors import DrumPerformerError
from train import tap, trainer

OPSET = 17
PARITY_ATOL = 1e-4


class BandExportError(DrumPerformerError):
    pass


def _same_model(run: Path, folder: Path) -> bool:
    """Whether the folder's encoder.onnx is this run's encoder (same output on a random window)."""
    import onnxruntime as ort

    model, _ = trainer.load_model(run)
    rng = np.random.default_rng(0)
    classes = rng.integers(0, drums.NUM_CLASSES, (2, drums.STEPS))
    hits = drums.index_to_hits(classes)
    vel = (hits * rng.random(hits.shape)).astype(np.float32)
    off = (hits * (rng.random(hits.shape) - 0.5)).astype(np.float32)
    sess = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    omu = sess.run(None, {"classes": classes, "velocity": vel, "offset": off})[0]
    with torch.no_grad():
        mu = model.encoder(torch.from_numpy(classes), torch.from_numpy(vel), torch.from_numpy(off))[0].numpy()
    return omu.shape == mu.shape and bool(np.abs(omu - mu).max() < 1e-3)


def rounded(enc: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``enc`` whose float parameters are rounded to float16 (and held as float32):
    exactly what the exported graph computes. A tensor that does not fit float16 (inf after
    rounding) keeps its float32 values, and the graph then stores it as float32."""
    out = copy.deepcopy(enc).eval()
    with torch.no_grad():
        for p in out.parameters():
            if p.is_floating_point():
                half = p.to(torch.float16)
                if torch.isfinite(half).all():
                    p.copy_(half.to(p.dtype))
    return out


def add_encoder(run: str | Path, folder: str | Path, kind: str) -> dict:
    """Trace RUN/<kind>.pt to FOLDER/<kind>.onnx and list it in FOLDER/model.json. -> parity report."""
    run, folder = Path(run), Path(folder)
    meta_p = folder / "model.json"
    if not meta_p.exists():
        raise BandExportError(f"{folder} is not an exported model (no model.json)")
    if not _same_model(run, folder):
        raise BandExportError(f"{folder} was not exported from {run} (its encoder differs): export the run first")
    enc, summary = tap.load(run, kind)
    name = f"{kind}.onnx"
    tmp = folder / (name + ".tmp")
    half = rounded(enc)
    x = torch.zeros(1, drums.STEPS, tap.input_size(kind))
    outs = ["z"] if kind == "tap" else ["velocity", "offset"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(half, (x,), str(tmp), dynamo=False, input_names=["taps"], output_names=outs,
                          dynamic_axes={"taps": {0: "B"}, **{o: {0: "B"} for o in outs}}, opset_version=OPSET)
    graph = onnx.load(str(tmp))
    store_float16(graph)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(tmp))
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    probe = rng.random((4, drums.STEPS, tap.input_size(kind))).astype(np.float32) - 0.25
    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, {"taps": probe})

    def torch_out(net):
        with torch.no_grad():
            out = net(torch.from_numpy(probe))
        return [out.numpy()] if kind == "tap" else [o.numpy() for o in out]

    want, trained = torch_out(half), torch_out(enc)
    diff = max(max_diff(g, w) for g, w in zip(got, want, strict=True))
    if not diff <= PARITY_ATOL:
        tmp.unlink()
        raise BandExportError(f"{kind} encoder: torch vs ONNX Runtime differ by {diff:.2e}, nothing written")
    rounding = max(max_diff(h, w) for h, w in zip(want, trained, strict=True))
    os.replace(tmp, folder / name)
    meta = json.loads(meta_p.read_text())
    meta.setdefault("files", {})[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    meta.setdefault("encoders", {})[kind] = {"validation": summary["validation"], "steps": summary.get("total_steps", summary["config"]["steps"]),
                                            "parity": diff, "rounding": rounding}
    t = meta_p.with_name("model.json.tmp")
    t.write_text(json.dumps(meta, indent=1))
    os.replace(t, meta_p)
    return {"max_diff": diff, "rounding": rounding}


def add_encoders(run: str | Path, folder: str | Path) -> list[str]:
    """Every small encoder the run has (tap.pt, humanize.pt) -> the exported folder."""
    done = []
    for kind in tap.KINDS:
        if tap.weights_path(Path(run), kind).exists():
            add_encoder(run, folder, kind)
            done.append(kind)
    return done
