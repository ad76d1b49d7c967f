"""Small encoders into a trained model's latent space: tap (drumify) and humanize.

Both are a BiLSTM from a reduced view of a GMD window to z, trained with the
run's own model frozen, so the decoder (and the shipped sampler graph) stays
exactly as it is:

* ``tap``: the window flattened to one voice (per step: any hit, the loudest
  velocity and its offset; ``performer.band.flatten``) -> z. Objective
  ``mu``: the squared distance to the frozen full encoder's posterior mean of
  the real window, the cheap way into the latent space (GrooVAE's Tap2Drum
  trained a whole VAE instead; the brief here is a few thousand CPU steps).
* ``humanize``: the window quantised (hits kept, velocity 100, offsets 0) ->
  z. Objective ``decode``: the mu term plus the frozen decoder's velocity and
  offset error (L1, hits only) on the real performance, teacher-forced with the
  true classes. Why not mu alone: even the true posterior mean decodes the
  offsets only ~0.82x better than "no offsets" (shipped model, 300 test
  windows), so the encoder is asked for the z that makes the heads right, and
  L1 because the figure of merit is a mean absolute error.

Weights go to ``RUN/tap.pt`` / ``RUN/humanize.pt`` with the config they were
built with and the digest of the model weights they were trained against.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model import drums
from model.errors import DrumPerformerError
from performer import band
from train import trainer

log = logging.getLogger(__name__)

KINDS = ("tap", "humanize")


class TapError(DrumPerformerError):
    pass


@dataclass
class TapConfig:
    kind: str = "tap"
    hidden: int = 128  # BiLSTM units per direction (small: a few thousand CPU steps)
    steps: int = 3000  # optimiser steps
    batch_size: int = 64
    lr: float = 2e-3
    objective: str = "mu"  # "mu" or "decode" (see the module docstring)
    decode_weight: float = 1.0  # weight of the heads' L1 error (per hit) against the mu term (per z unit)
    seed: int = 0
    threads: int = 1  # the machine is shared: one core by default


def input_size(kind: str) -> int:
    return 3 if kind == "tap" else 3 * drums.NUM_VOICES


def inputs(kind: str, hits: np.ndarray, velocity: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(B, T, V) real windows -> (B, T, F) encoder input of this kind (the same views the
    performer builds from a MIDI clip: ``band.flatten`` / ``band.quantise``)."""
    if kind == "tap":
        return band.flatten(hits, velocity, offset)
    qv, qo = band.quantise(hits)
    return band._steps_input(hits, qv, qo)


class TapEncoder(nn.Module):
    """(B, T, F) per-step features -> z (B, Z). Offsets (the last feature block) are doubled
    to span [-1, 1), as the full encoder does."""

    def __init__(self, features: int, hidden: int, z: int):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, 1, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.Tanh(), nn.Linear(2 * hidden, z))

    def forward(self, taps: torch.Tensor) -> torch.Tensor:
        out, (h, _) = self.lstm(taps)  # h (2, B, H)
        return self.out(torch.cat([h[-2], h[-1]], dim=-1))


def weights_path(run: Path, kind: str) -> Path:
    return Path(run) / f"{kind}.pt"


@torch.no_grad()
def posterior_means(model, ws, batch: int = 512) -> np.ndarray:
    out = [np.zeros((0, model.config.z), np.float32)]
    for a in range(0, len(ws), batch):
        b = ws.batch(np.arange(a, min(a + batch, len(ws))))
        mu, _ = model.encoder(torch.from_numpy(b["classes"]), torch.from_numpy(b["velocity"]),
                              torch.from_numpy(b["offset"]))
        out.append(mu.numpy())
    return np.concatenate(out).astype(np.float32)


def train(run: str | Path, data_folder: str | Path, cfg: TapConfig, cache_dir=None, on_log=None) -> dict:
    """Train one small encoder against the frozen model in ``run``; writes RUN/<kind>.pt. -> summary."""
    from train.data import WindowSet, preprocess

    if cfg.kind not in KINDS:
        raise TapError(f"unknown encoder kind {cfg.kind!r} (choose from {', '.join(KINDS)})")
    run = Path(run)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, rc = trainer.load_model(run)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    tracks, _ = preprocess(data_folder, cache_dir)
    sets = {s: WindowSet(tracks[s], rc.model.styles, fills=False) for s in ("train", "validation")}
    if len(sets["train"]) == 0:
        raise TapError(f"{data_folder} has no training windows")
    t0 = time.perf_counter()
    mus = {s: posterior_means(model, ws) for s, ws in sets.items()}
    feats = {s: inputs(cfg.kind, ws.hits > 0.5, ws.velocity, ws.offset) for s, ws in sets.items()}
    log.info("posterior means of %d windows in %.0f s", len(sets["train"]), time.perf_counter() - t0)
    enc = TapEncoder(input_size(cfg.kind), cfg.hidden, rc.model.z)
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    rng = np.random.default_rng(cfg.seed)
    ws, n = sets["train"], len(sets["train"])
    hist = []
    for step in range(1, cfg.steps + 1):
        idx = rng.integers(0, n, cfg.batch_size)
        loss, parts = _loss(model, enc, cfg, ws, feats["train"], mus["train"], idx)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps:
            hist.append({"step": step, **parts})
            if on_log:
                on_log(step, parts)
    enc.eval()
    val = _validate(model, enc, cfg, sets["validation"], feats["validation"], mus["validation"])
    summary = {"kind": cfg.kind, "config": asdict(cfg), "validation": val, "seconds": time.perf_counter() - t0,
               "model_weights_sha256": trainer.weights_digest(run), "z": rc.model.z, "history": hist}
    trainer.atomic_save({"state": enc.state_dict(), "summary": summary}, weights_path(run, cfg.kind))
    (run / f"{cfg.kind}.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return summary


def _loss(model, enc, cfg, ws, feats, mus, idx):
    z = enc(torch.from_numpy(feats[idx]))
    mu = torch.from_numpy(mus[idx])
    mse = ((z - mu) ** 2).mean()
    parts = {"mu_mse": float(mse.detach())}
    loss = mse
    if cfg.objective == "decode":
        b = ws.batch(idx)
        classes = torch.from_numpy(b["classes"])
        hits = torch.from_numpy(b["hits"])
        _, pv, po = model.decoder(model.conductor(z), classes)
        n_hits = hits.sum().clamp(min=1.0)
        v_err = ((pv - torch.from_numpy(b["velocity"])).abs() * hits).sum() / n_hits
        o_err = ((po - torch.from_numpy(b["offset"])).abs() * hits).sum() / n_hits
        loss = loss + cfg.decode_weight * (v_err + o_err)
        parts.update(vel_mae=float(v_err.detach()), off_mae=float(o_err.detach()))
    parts["loss"] = float(loss.detach())
    return loss, parts


@torch.no_grad()
def _validate(model, enc, cfg, ws, feats, mus, limit: int = 1024) -> dict:
    idx = np.arange(min(limit, len(ws)))
    if len(idx) == 0:
        return {}
    _, parts = _loss(model, enc, TapConfig(**{**asdict(cfg), "objective": "decode"}), ws, feats, mus, idx)
    return parts


def load(run: str | Path, kind: str) -> tuple[TapEncoder, dict]:
    p = weights_path(Path(run), kind)
    if not p.exists():
        raise TapError(f"{run} has no {p.name}: run drum-performer train-tap --kind {kind} first")
    blob = torch.load(p, map_location="cpu", weights_only=False)
    s = blob["summary"]
    c = TapConfig(**s["config"])
    enc = TapEncoder(input_size(kind), c.hidden, s["z"])
    enc.load_state_dict(blob["state"])
    enc.eval()
    return enc, s


# --- CLI (the parser is in performer.band_cli, which must not import torch) -----------------------------


def run_cli(a) -> int:
    cfg = TapConfig(kind=a.kind, objective=a.objective or ("mu" if a.kind == "tap" else "decode"), threads=a.threads)
    if a.steps:
        cfg.steps = a.steps

    def on_log(step, parts):
        log.info("step %d %s", step, " ".join(f"{k} {v:.4f}" for k, v in parts.items()))

    s = train(a.run, a.data, cfg, a.cache, on_log)
    print(f"{a.kind} encoder: {cfg.steps} steps in {s['seconds']:.0f} s; validation "
          + ", ".join(f"{k} {v:.4f}" for k, v in s["validation"].items()))
    if a.model:
        from export.band import add_encoder

        add_encoder(a.run, a.model, a.kind)
        print(f"added {a.kind}.onnx to {a.model}")
    return 0
