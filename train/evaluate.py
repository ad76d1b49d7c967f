"""Quality report of a model on a split: reconstruction, hits, groove and sample statistics.

The metric code is numpy only, so it scores a torch run folder and an exported
ONNX model alike. A backend is three functions over arrays:

* ``encode(batch) -> (mu, logvar)``                (B, Z) each
* ``decode(z, temperature, noise) -> (classes, velocity, offset)``  free-running
* ``teacher(z, batch) -> (classes, velocity, offset)`` teacher-forced argmax, or None

:func:`torch_backend` scores a run's weights, :func:`engine_backend` an exported
model through the runtime engine (evaluation uses the engine, not the other
way round: the runtime knows nothing of evaluation).

Sample statistics follow Yang & Lerch (2020): for each feature the overlapping
area (OA) of the smoothed distributions of generated and real examples;
``sample_oa`` is the mean OA over the features.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import drums
from model.fileio import atomic_write, atomic_write_text
from model.sampling import gumbel, kl_divergence

log = logging.getLogger(__name__)


@dataclass
class Backend:
    name: str
    z_size: int
    encode: Callable
    decode: Callable
    teacher: Callable | None = None


# --- features ---------------------------------------------------------------

# Metrical weight of each 16th in a 4/4 bar (Longuet-Higgins & Lee): bar 0, half 1,
# quarter 2, eighth 3, sixteenth 4 -- lower is stronger.
_LEVEL = np.array([0, 4, 3, 4, 2, 4, 3, 4, 1, 4, 3, 4, 2, 4, 3, 4])


def syncopation(occupied: np.ndarray) -> np.ndarray:
    """LHL-style syncopation per pattern from (N, T) step occupancy, per bar.

    An onset on a weak position followed by silence on the next stronger
    position (before the next onset) scores the difference of their levels.
    """
    n, t = occupied.shape
    level = np.tile(_LEVEL, t // drums.STEPS_PER_BAR)
    score = np.zeros(n)
    for i in range(n):
        on = np.flatnonzero(occupied[i])
        for k, s in enumerate(on):
            nxt = on[k + 1] if k + 1 < len(on) else t
            for j in range(s + 1, nxt):
                if level[j] < level[s]:
                    score[i] += level[s] - level[j]
                    break
    return score / (t / drums.STEPS_PER_BAR)


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard similarity of two (..., K) bool arrays over the last axis (1 where both are empty)."""
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


_V = {v: i for i, v in enumerate(drums.VOICES)}
TOMS_CRASH = [_V["low_tom"], _V["mid_tom"], _V["high_tom"], _V["crash"]]


def bar_features(hits: np.ndarray) -> dict[str, np.ndarray]:
    """What a drummer's groove does bar to bar, per pattern, from (N, T, V) hits.

    * ``bar_repetition``: mean Jaccard similarity of the hits of consecutive bars
      (a groove repeats; a random step sequencer does not);
    * ``kick_snare_repetition``: the same for kick and snare only;
    * ``toms_crash_per_bar``: tom and crash hits per bar (accents, not time keeping);
    * ``kick_on_one``: share of bars with a kick on beat 1;
    * ``snare_backbeat``: share of bars with a snare on beats 2 and 4.
    """
    hits = np.asarray(hits, dtype=bool)
    n, t, v = hits.shape
    S = drums.STEPS_PER_BAR
    bars = hits.reshape(n, t // S, S, v)  # (N, B, S, V)
    flat = bars.reshape(n, t // S, S * v)
    ks = bars[..., [_V["kick"], _V["snare"]]].reshape(n, t // S, -1)
    return {
        "bar_repetition": _jaccard(flat[:, 1:], flat[:, :-1]).mean(1),
        "kick_snare_repetition": _jaccard(ks[:, 1:], ks[:, :-1]).mean(1),
        "toms_crash_per_bar": bars[..., TOMS_CRASH].sum((1, 2, 3)) / (t // S),
        "kick_on_one": bars[:, :, 0, _V["kick"]].mean(1),
        "snare_backbeat": (bars[:, :, 4, _V["snare"]] & bars[:, :, 12, _V["snare"]]).mean(1),
    }


def features(hits: np.ndarray) -> dict[str, np.ndarray]:
    """(N, T, V) bool -> named (N,) feature arrays."""
    hits = np.asarray(hits, dtype=bool)
    occupied = hits.any(-1)  # (N, T)
    bars = hits.shape[1] / drums.STEPS_PER_BAR
    f = {f"density_{v}": hits[:, :, i].mean(1) for i, v in enumerate(drums.VOICES)}
    f["onsets_per_bar"] = hits.sum((1, 2)) / bars
    f["step_occupancy"] = occupied.mean(1)
    f["syncopation"] = syncopation(occupied)
    f.update(bar_features(hits))
    return f


def nearest_similarity(hits: np.ndarray, reference: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(N,) Jaccard similarity of each pattern's hits to its nearest pattern in ``reference``.

    The novelty check: a sample at 0.9 or more is a near copy of a training window.
    """
    a = np.asarray(hits, bool).reshape(len(hits), -1).astype(np.float32)  # (N, T*V)
    r = np.asarray(reference, bool).reshape(len(reference), -1).astype(np.float32)  # (R, T*V)
    ra = r.sum(1)
    out = np.empty(len(a))
    for i in range(0, len(a), chunk):
        x = a[i : i + chunk]
        inter = x @ r.T  # (n, R)
        union = x.sum(1, keepdims=True) + ra[None, :] - inter
        out[i : i + chunk] = np.where(union > 0, inter / np.maximum(union, 1), 1.0).max(1)
    return out


def overlap_area(a: np.ndarray, b: np.ndarray, points: int = 512) -> float:
    """Overlapping area of two 1-D samples' Gaussian KDEs (Scott bandwidth)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi - lo < 1e-12:
        return 1.0
    pad = 0.1 * (hi - lo)
    xs = np.linspace(lo - pad, hi + pad, points)

    def kde(x):
        bw = max(1.06 * x.std() * len(x) ** (-0.2), (hi - lo) / 200)
        d = (xs[:, None] - x[None, :]) / bw
        y = np.exp(-0.5 * d * d).sum(1)
        return y / np.trapezoid(y, xs)

    return float(np.trapezoid(np.minimum(kde(a), kde(b)), xs))


gumbel_noise = gumbel  # standard Gumbel noise; the one numpy definition is model.sampling.gumbel


# --- metrics ----------------------------------------------------------------


def _prf(pred: np.ndarray, true: np.ndarray) -> dict:
    tp = float((pred & true).sum())
    fp = float((pred & ~true).sum())
    fn = float((~pred & true).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": int(tp + fn)}


def evaluate(
    backend: Backend,
    windows,
    samples: int = 1000,
    temperature: float = 1.0,
    seed: int = 0,
    batch: int = 128,
    limit: int | None = None,
) -> dict:
    """Score a backend on a WindowSet. Returns a JSON-ready dict."""
    n = len(windows) if limit is None else min(limit, len(windows))
    if n == 0:
        raise ValueError("no windows to evaluate")
    rng = np.random.default_rng(seed)
    zero_noise = np.zeros((batch, drums.STEPS, drums.NUM_CLASSES), np.float32)
    free_c, free_v, free_o, tf_c, tf_v, tf_o, kls = [], [], [], [], [], [], []
    for a in range(0, n, batch):
        idx = np.arange(a, min(n, a + batch))
        b = windows.batch(idx)
        mu, logvar = backend.encode(b)
        kls.append(kl_divergence(mu, logvar))
        c, v, o = backend.decode(mu, 0.0, zero_noise[: len(idx)])
        free_c.append(c)
        free_v.append(v)
        free_o.append(o)
        if backend.teacher is not None:
            c, v, o = backend.teacher(mu, b)
            tf_c.append(c)
            tf_v.append(v)
            tf_o.append(o)
    true = windows.batch(np.arange(n))
    tc, th = true["classes"], true["hits"] > 0.5
    fc = np.concatenate(free_c)
    fh = drums.index_to_hits(fc)
    rep: dict = {
        "model": backend.name,
        "windows": int(n),
        "recon_accuracy": float((fc == tc).mean()),
        "recon_accuracy_nonrest": float((fc == tc)[tc != 0].mean()),
        "kl": float(np.concatenate(kls).mean()),
    }
    per_voice = {v: _prf(fh[..., i], th[..., i]) for i, v in enumerate(drums.VOICES)}
    micro = _prf(fh, th)
    rep["hit_f1"] = micro["f1"]
    rep["hit_precision"] = micro["precision"]
    rep["hit_recall"] = micro["recall"]
    rep["hits_per_voice"] = per_voice
    both = fh & th  # groove errors where the reconstruction hits a true hit
    rep["velocity_mae_free"] = float(np.abs(np.concatenate(free_v) - true["velocity"])[both].mean())
    rep["offset_mae_free"] = float(np.abs(np.concatenate(free_o) - true["offset"])[both].mean())
    if tf_c:
        tfc = np.concatenate(tf_c)
        rep["teacher_forced_accuracy"] = float((tfc == tc).mean())
        rep["velocity_mae"] = float(np.abs(np.concatenate(tf_v) - true["velocity"])[th].mean())
        rep["offset_mae"] = float(np.abs(np.concatenate(tf_o) - true["offset"])[th].mean())

    # prior samples against the real windows
    gen = []
    for a in range(0, samples, batch):
        k = min(batch, samples - a)
        z = rng.standard_normal((k, backend.z_size)).astype(np.float32)
        noise = gumbel(rng, (k, drums.STEPS, drums.NUM_CLASSES))
        c, _, _ = backend.decode(z, temperature, noise)
        gen.append(drums.index_to_hits(c))
    gf, rf = features(np.concatenate(gen)), features(th)
    oa = {k: overlap_area(gf[k], rf[k]) for k in rf}
    rep["sample_oa"] = float(np.mean(list(oa.values())))
    rep["sample_oa_per_feature"] = oa
    rep["sample_stats"] = {
        k: {"samples_mean": float(gf[k].mean()), "test_mean": float(rf[k].mean())} for k in rf
    }
    rep["samples"] = samples
    rep["temperature"] = temperature
    return rep


# --- backends ---------------------------------------------------------------


def torch_backend(model, name: str = "torch") -> Backend:
    """Backend over a GrooveVAE (imports torch)."""
    import torch

    model.eval()

    def t(x, dtype=torch.float32):
        return torch.as_tensor(np.asarray(x), dtype=dtype)

    @torch.no_grad()
    def encode(b):
        mu, logvar = model.encoder(t(b["classes"], torch.long), t(b["velocity"]), t(b["offset"]))
        return mu.numpy(), logvar.numpy()

    @torch.no_grad()
    def decode(z, temperature, noise):
        c, v, o = model.sample(t(z), float(temperature), t(noise))
        return c.numpy(), v.numpy(), o.numpy()

    @torch.no_grad()
    def teacher(z, b):
        logits, v, o = model.decoder(model.conductor(t(z)), t(b["classes"], torch.long))
        return logits.argmax(-1).numpy(), v.numpy(), o.numpy()

    return Backend(name, model.config.z, encode, decode, teacher)


def engine_backend(engine) -> Backend:
    """Backend over an exported model: a :class:`performer.engine.Engine` (numpy and ONNX Runtime)."""

    def encode(b):
        return engine.encode_arrays(b["classes"], b["velocity"], b["offset"])

    def decode(z, temperature, noise):
        return engine.decode(z, float(temperature), np.ascontiguousarray(noise, np.float32))

    return Backend(f"exported {engine.folder}", engine.z_size, encode, decode, None)


# --- report -----------------------------------------------------------------


def markdown(rep: dict) -> str:
    lines = [
        f"# Evaluation: {rep['model']}",
        "",
        f"Split `{rep.get('split', '?')}` of `{rep.get('data', '?')}`, {rep['windows']} four-bar windows.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for k in (
        "recon_accuracy",
        "recon_accuracy_nonrest",
        "teacher_forced_accuracy",
        "hit_f1",
        "hit_precision",
        "hit_recall",
        "velocity_mae",
        "offset_mae",
        "velocity_mae_free",
        "offset_mae_free",
        "kl",
        "sample_oa",
    ):
        if k in rep:
            lines.append(f"| {k} | {rep[k]:.4f} |")
    lines += ["", "## Hits per voice (free-running reconstruction)", "", "| voice | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for v, m in rep["hits_per_voice"].items():
        lines.append(f"| {v} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += [
        "",
        f"## Prior samples ({rep['samples']} at temperature {rep['temperature']}) vs the split",
        "",
        "| feature | OA | samples mean | split mean |",
        "|---|---|---|---|",
    ]
    for k, oa in rep["sample_oa_per_feature"].items():
        s = rep["sample_stats"][k]
        lines.append(f"| {k} | {oa:.3f} | {s['samples_mean']:.4f} | {s['test_mean']:.4f} |")
    lines += [
        "",
        "recon_accuracy: per-step class accuracy of the free-running argmax decode from the posterior mean. "
        "teacher_forced_accuracy: the same with the true previous step fed back. velocity/offset MAE: "
        "teacher-forced, on true hits (`_free`: free-running, where it hits a true hit).",
    ]
    return "\n".join(lines) + "\n"


def training_curve(metrics_path: Path, out_png: Path) -> bool:
    """Plot loss, KL and accuracy from metrics.jsonl. False when there is nothing to plot."""
    if not metrics_path.exists():
        return False
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    tr = [r for r in rows if "loss" in r]
    va = [r for r in rows if "val_loss" in r]
    if not tr:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for a_, key, title in zip(ax, ("loss", "kl", "acc"), ("loss", "KL (nats)", "teacher-forced accuracy"), strict=True):
        a_.plot([r["step"] for r in tr], [r[key] for r in tr], lw=0.8, label="train")
        if va:
            a_.plot([r["step"] for r in va], [r["val_" + key] for r in va], "o-", ms=3, label="validation")
        a_.set_title(title)
        a_.set_xlabel("step")
        a_.legend()
    fig.tight_layout()
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)
    return True


def write_report(rep: dict, json_path: Path, metrics_path: Path | None = None) -> list[Path]:
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(rep, indent=2), json_path)
    md = json_path.with_suffix(".md")
    atomic_write_text(markdown(rep), md)
    out = [json_path, md]
    if metrics_path is not None:
        png = json_path.with_suffix(".png")
        try:
            if training_curve(Path(metrics_path), png):
                out.append(png)
        except ImportError:
            log.warning("matplotlib is not installed: no training-curve PNG")
    return out
