"""Small networks beside a trained model: the tap encoder (drumify) and the humanizer.

Both are BiLSTMs over a reduced view of a GMD window, trained with the run's
own model frozen, so the decoder (and the shipped sampler graph) stays exactly
as it is:

* ``tap``: the window flattened to one voice (per step: any hit, the loudest
  velocity and its offset; ``performer.band.flatten``) -> z. Objective
  ``mu``: the squared distance to the frozen full encoder's posterior mean of
  the real window, the cheap way into the latent space (GrooVAE's Tap2Drum
  trained a whole VAE instead; the brief here is a few thousand CPU steps).
  Objective ``decode`` adds the frozen decoder's teacher-forced cross-entropy
  of the real classes, pulling z toward what makes the decoder play the hits.
  Measured on the shipped model (test hit F1 at temperature 0): 3000 ``mu``
  steps 0.501; + 1500 ``decode`` steps 0.484 (worse, and 4x slower per step);
  3000 + 2000 + 2000 ``mu`` steps (``--resume``) 0.513. Losses through the
  frozen decoder, fine-tuning that encoder (validation F1, 1024 windows, from
  0.486): per-voice hit BCE of the teacher-forced class marginals 0.467 after
  500 steps, the same with 50 % / 100 % of the fed classes replaced by the start
  token 0.463 / 0.467, the same fed the decoder's own greedy decode (+ ``mu``)
  0.478 after 250; the posterior-variance-weighted distance (the NLL of z
  under q(z | x)) 0.466-0.492. All lower the argmax decode's F1 while their
  loss falls: the teacher-forced marginals are not what the free-running
  argmax plays. What helped: the step's place in the bar as an input and an
  ensemble (``TapEncoder``, ``Ensemble``). Picking the best of 8 decodes of
  one z by how well their onsets match the taps: 0.487 (the best of the 8
  against the real drums is only 0.514: z decides, not the decoding).
* ``humanize``: the window quantised (its hits, plus where each step sits in
  the bar) -> per step and voice a velocity and an offset, trained with L1 on
  the real performance (the figure of merit is a mean absolute error, and L1
  gives the conditional median). Why its own small network and not z for the
  frozen decoder's heads: with the shipped model even the true posterior mean
  of the real window, forced through the sampler with the exact classes, cut
  the timing error only to 0.82x of "no offsets" (300 test windows), and z
  encoded from the quantised window to 0.88x; the heads were trained to
  explain a performance given z, not to guess it from the hits. It learns
  its training sessions by heart (L1 0.22 on training batches, 0.31 on
  validation), hence dropout while training and a seeded ensemble. Its
  timing has a ceiling: even knowing each test window's own median offset
  per voice (9 numbers a hits-only model cannot see) gives 0.72x of "no
  offsets", and the clip's tempo does not help (a per-tempo table of offsets
  by position and voice: 0.897x vs 0.896x without tempo, validation).

Shipped (runs/groove-q, benchmarks/results/humanize_drumify.md, GMD test):
``train-tap --kind tap --members 3 --steps 5000 --lr 0.002`` (positions on):
drumify hit F1 0.557 at temperature 0, 1.69x unconditioned samples (members
alone 0.540-0.550 through torch); ``train-tap --kind humanize --members 3
--dropout 0.3 --steps 3000``: velocity MAE 0.732x, timing MAE 0.832x the
baselines (members alone 0.740-0.767x and 0.840-0.852x).

Weights go to ``RUN/tap.pt`` / ``RUN/humanize.pt`` with the config they were
built with and the digest of the model weights they were trained against.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
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
    layers: int = 1  # humanizer BiLSTM layers
    steps: int = 3000  # optimiser steps
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1  # the machine is shared: one core by default
    resume: bool = False  # start from the run's existing weights of this kind (train longer in stages)
    objective: str = "mu"  # tap: "mu" (distance to the posterior mean) or "decode" (+ the frozen decoder's
    #                        teacher-forced class cross-entropy per step: asks for the z that plays the hits)
    decode_weight: float = 1.0
    dropout: float = 0.0  # humanizer: dropout on the BiLSTM outputs while training (it overfits its sessions)
    members: int = 1  # independently seeded networks whose outputs are averaged (an ensemble, one graph)
    positions: bool = True  # tap: the step's place in the bar beside the taps (as the humanizer has it)


def input_size(kind: str) -> int:
    return 3 if kind == "tap" else band.HUMANIZE_FEATURES


def inputs(kind: str, hits: np.ndarray, velocity: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(B, T, V) real windows -> (B, T, F) input of this kind (the same views the performer
    builds from a MIDI clip: ``band.flatten`` / ``band.humanize_input``)."""
    if kind == "tap":
        return band.flatten(hits, velocity, offset)
    return band.humanize_input(hits)


class TapEncoder(nn.Module):
    """(B, T, F) per-step features -> z (B, Z) from the final BiLSTM states (tap).

    ``positions``: the one-hot place of each step in the bar is appended inside the network (a
    constant buffer), so the graph's input stays the (B, T, 3) taps. Why: without it the LSTM has
    to count steps to tell a downbeat from an offbeat; with it (5000 ``mu`` steps from scratch)
    drumify's hit F1 on the full validation split went from 0.496 (the encoder shipped before,
    7000 steps) to 0.504, on the test split from 0.513 to 0.541."""

    def __init__(self, features: int, hidden: int, z: int, positions: bool = False):
        super().__init__()
        self.positions = positions
        extra = drums.STEPS_PER_BAR if positions else 0
        if positions:
            pos = np.eye(drums.STEPS_PER_BAR, dtype=np.float32)[np.arange(drums.STEPS) % drums.STEPS_PER_BAR]
            self.register_buffer("pos", torch.from_numpy(pos))  # (T, 16)
        self.lstm = nn.LSTM(features + extra, hidden, 1, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.Tanh(), nn.Linear(2 * hidden, z))

    def forward(self, taps: torch.Tensor) -> torch.Tensor:
        if self.positions:
            taps = torch.cat([taps, self.pos.expand(taps.shape[0], -1, -1)], dim=-1)  # (B, T, F + 16)
        out, (h, _) = self.lstm(taps)  # h (2, B, H)
        return self.out(torch.cat([h[-2], h[-1]], dim=-1))


class Humanizer(nn.Module):
    """(B, T, F) quantised steps -> velocity (B, T, V) in 0..1, offset (B, T, V) in [-0.5, 0.5),
    the same ranges as the decoder's heads."""

    def __init__(self, features: int, hidden: int, layers: int = 1, voices: int = drums.NUM_VOICES,
                 dropout: float = 0.0):
        super().__init__()
        self.v = voices
        self.lstm = nn.LSTM(features, hidden, layers, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)  # no weights: the state dict and the exported graph are unchanged
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2 * voices))

    def forward(self, steps: torch.Tensor):
        h, _ = self.lstm(steps)  # (B, T, 2H)
        vel, off = self.out(self.drop(h)).split(self.v, dim=-1)
        return torch.sigmoid(vel), 0.5 * torch.tanh(off)


class Ensemble(nn.Module):
    """The mean of several networks' outputs (tap: z; humanize: velocities and offsets), one graph
    with the same inputs and outputs as one network.

    Why: a small network learns its training sessions by heart (the humanizer: train L1 0.22 vs
    validation 0.31) and which of them it leans on is an accident of its seed; the mean of
    independently seeded ones keeps what they agree on (for the tap encoder: a better estimate
    of the posterior mean it regresses). Measured on the GMD test windows, two members each:
    humanize velocity 0.748x / 0.753x the baseline alone, 0.732x averaged, timing 0.858x / 0.847x
    alone, 0.838x averaged; drumify hit F1 on the validation split 0.496 / 0.504 alone, 0.510
    from the mean z."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor):
        outs = [m(x) for m in self.members]
        if isinstance(outs[0], torch.Tensor):
            return torch.stack(outs).mean(0)
        return tuple(torch.stack(parts).mean(0) for parts in zip(*outs, strict=True))


def build(kind: str, hidden: int, z: int, layers: int = 1, members: int = 1, dropout: float = 0.0,
          positions: bool = False) -> nn.Module:
    if members > 1:
        return Ensemble([build(kind, hidden, z, layers, 1, dropout, positions) for _ in range(members)])
    if kind == "tap":
        return TapEncoder(input_size(kind), hidden, z, positions)
    return Humanizer(input_size(kind), hidden, layers, dropout=dropout)


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
    need_mu = cfg.kind == "tap"
    mus = {s: posterior_means(model, ws) if need_mu else None for s, ws in sets.items()}
    feats = {s: inputs(cfg.kind, ws.hits > 0.5, ws.velocity, ws.offset) for s, ws in sets.items()}
    log.info("inputs of %d windows in %.0f s", len(sets["train"]), time.perf_counter() - t0)
    done_steps = 0
    if cfg.resume:
        prev, prev_summary = load(run, cfg.kind)
        cfg.positions = bool(prev_summary["config"].get("positions", False))  # the input it was trained on
    enc = build(cfg.kind, cfg.hidden, rc.model.z, cfg.layers, cfg.members, cfg.dropout, cfg.positions)
    if cfg.resume:
        try:
            enc.load_state_dict(prev.state_dict())
        except RuntimeError:
            raise TapError(f"{run}/{cfg.kind}.pt has another shape (hidden, layers or members): "
                           "train without --resume") from None
        done_steps = int(prev_summary.get("total_steps", prev_summary["config"]["steps"]))
    ws, n = sets["train"], len(sets["train"])
    hist = []
    # an ensemble trains its members one after the other, each from its own seed
    nets = list(enc.members) if isinstance(enc, Ensemble) else [enc]
    for k, net in enumerate(nets):
        if k:
            torch.manual_seed(cfg.seed + k)
            if not cfg.resume:
                net.load_state_dict(build(cfg.kind, cfg.hidden, rc.model.z, cfg.layers, 1, cfg.dropout,
                                          cfg.positions).state_dict())
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
        rng = np.random.default_rng(cfg.seed + k)
        for step in range(1, cfg.steps + 1):
            idx = rng.integers(0, n, cfg.batch_size)
            loss, parts = _loss(model, net, cfg, ws, feats["train"], mus["train"], idx)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % 100 == 0 or step == cfg.steps:
                hist.append({"member": k, "step": step, **parts})
                if on_log:
                    on_log(step, parts)
    enc.eval()
    val = _validate(model, enc, cfg, sets["validation"], feats["validation"], mus["validation"])
    summary = {"kind": cfg.kind, "config": asdict(cfg), "validation": val, "seconds": time.perf_counter() - t0,
               "total_steps": done_steps + cfg.steps,
               "model_weights_sha256": trainer.weights_digest(run), "z": rc.model.z, "history": hist}
    trainer.atomic_save({"state": enc.state_dict(), "summary": summary}, weights_path(run, cfg.kind))
    (run / f"{cfg.kind}.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return summary


def _loss(model, enc, cfg, ws, feats, mus, idx):
    x = torch.from_numpy(feats[idx])
    if cfg.kind == "tap":
        z = enc(x)
        mse = ((z - torch.from_numpy(mus[idx])) ** 2).mean()
        parts = {"mu_mse": float(mse.detach())}
        loss = mse
        if cfg.objective == "decode":
            classes = torch.from_numpy(ws.classes[idx])
            logits = model.decoder(model.conductor(z), classes)[0]  # (B, T, C), the model's own weights frozen
            ce = nn.functional.cross_entropy(logits.transpose(1, 2), classes)
            loss = loss + cfg.decode_weight * ce
            parts["ce"] = float(ce.detach())
        parts["loss"] = float(loss.detach())
        return loss, parts
    b = ws.batch(idx)
    hits = torch.from_numpy(b["hits"])
    pv, po = enc(x)
    n_hits = hits.sum().clamp(min=1.0)
    v_err = ((pv - torch.from_numpy(b["velocity"])).abs() * hits).sum() / n_hits
    o_err = ((po - torch.from_numpy(b["offset"])).abs() * hits).sum() / n_hits
    loss = v_err + o_err
    return loss, {"vel_mae": float(v_err.detach()), "off_mae": float(o_err.detach()), "loss": float(loss.detach())}


@torch.no_grad()
def _validate(model, enc, cfg, ws, feats, mus, limit: int = 1024) -> dict:
    idx = np.arange(min(limit, len(ws)))
    if len(idx) == 0:
        return {}
    return _loss(model, enc, cfg, ws, feats, mus, idx)[1]


def load(run: str | Path, kind: str) -> tuple[nn.Module, dict]:
    p = weights_path(Path(run), kind)
    if not p.exists():
        raise TapError(f"{run} has no {p.name}: run drum-performer train-tap --kind {kind} first")
    blob = torch.load(p, map_location="cpu", weights_only=False)
    s = blob["summary"]
    known = {f.name for f in fields(TapConfig)}
    c = TapConfig(**{k: v for k, v in s["config"].items() if k in known})
    # a summary without "positions" is from before the option: those encoders had no positions
    enc = build(kind, c.hidden, s["z"], c.layers, c.members, positions=bool(s["config"].get("positions", False)))
    enc.load_state_dict(blob["state"])
    enc.eval()
    return enc, s


# --- CLI (the parser is in performer.band_cli, which must not import torch) -----------------------------


def run_cli(a) -> int:
    cfg = TapConfig(kind=a.kind, threads=a.threads, resume=a.resume, objective=a.objective)
    if a.lr:
        cfg.lr = a.lr
    if a.steps:
        cfg.steps = a.steps
    for name in ("hidden", "dropout", "members"):
        if getattr(a, name, None) is not None:
            setattr(cfg, name, getattr(a, name))
    if cfg.dropout >= 1:
        raise TapError(f"--dropout must be below 1, got {cfg.dropout:g}")

    def on_log(step, parts):
        log.info("step %d %s", step, " ".join(f"{k} {v:.4f}" for k, v in parts.items()))

    s = train(a.run, a.data, cfg, a.cache, on_log)
    print(f"{a.kind} encoder: {cfg.steps} steps in {s['seconds']:.0f} s; validation "
          + ", ".join(f"{k} {v:.4f}" for k, v in s["validation"].items()))
    return 0
