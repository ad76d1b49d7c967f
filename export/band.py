"""Export the small networks of ``train.tap`` (tap.onnx, humanize.onnx) beside a model's graphs.

Kept apart from ``export.exporter.export`` so an exported folder can gain an
encoder without re-exporting (and re-checking) the sampler: the encoder is
traced, checked against torch, copied in, and model.json's ``files`` (the
checksums the engine verifies) is rewritten last, atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

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
    x = torch.zeros(1, drums.STEPS, tap.input_size(kind))
    outs = ["z"] if kind == "tap" else ["velocity", "offset"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(enc, (x,), str(tmp), dynamo=False, input_names=["taps"], output_names=outs,
                          dynamic_axes={"taps": {0: "B"}, **{o: {0: "B"} for o in outs}}, opset_version=OPSET)
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    probe = rng.random((4, drums.STEPS, tap.input_size(kind))).astype(np.float32) - 0.25
    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, {"taps": probe})
    with torch.no_grad():
        want = enc(torch.from_numpy(probe))
    want = [want] if kind == "tap" else list(want)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
    if diff > PARITY_ATOL:
        tmp.unlink()
        raise BandExportError(f"{kind} encoder: torch vs ONNX Runtime differ by {diff:.2e}, nothing written")
    os.replace(tmp, folder / name)
    meta = json.loads(meta_p.read_text())
    meta.setdefault("files", {})[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    meta.setdefault("encoders", {})[kind] = {"validation": summary["validation"], "steps": summary.get("total_steps", summary["config"]["steps"]),
                                            "parity": diff}
    t = meta_p.with_name("model.json.tmp")
    t.write_text(json.dumps(meta, indent=1))
    os.replace(t, meta_p)
    return {"max_diff": diff}


def add_encoders(run: str | Path, folder: str | Path) -> list[str]:
    """Every small encoder the run has (tap.pt, humanize.pt) -> the exported folder."""
    done = []
    for kind in tap.KINDS:
        if tap.weights_path(Path(run), kind).exists():
            add_encoder(run, folder, kind)
            done.append(kind)
    return done
