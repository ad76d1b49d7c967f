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
from model.config import FILL_STRENGTH, FILL_TEMPERATURE
from model.fileio import atomic_write, atomic_write_text
from model.sampling import bar_temperatures, gumbel, kl_divergence

log = logging.getLogger(__name__)


@dataclass
class Backend:
    name: str
    z_size: int
    encode: Callable  # batch -> mu, logvar
    decode: Callable  # (z, temperature, noise, style, fill) -> classes, velocity, offset
    teacher: Callable | None = None  # (z, batch) -> teacher-forced argmax classes, velocity, offset
    prior: Callable | None = None  # (n, rng, style) -> (n, Z) latents the product samples from
    styles: tuple = ()  # style input i+1 = styles[i]; 0 = "any"
    fills: bool = False  # decode takes a per-bar fill flag

    def draw(self, n: int, rng: np.random.Generator, style: int = 0) -> np.ndarray:
        if self.prior is None:
            return rng.standard_normal((n, self.z_size)).astype(np.float32)
        return self.prior(n, rng, style)


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
    train_windows=None,
) -> dict:
    """Score a backend on a WindowSet. Returns a JSON-ready dict.

    With ``train_windows`` (the training split's WindowSet) also: novelty against the
    training set, and, for a model with styles / fills, the style and fill checks."""
    n = len(windows) if limit is None else min(limit, len(windows))
    if n == 0:
        raise ValueError("no windows to evaluate")
    rng = np.random.default_rng(seed)
    zero_noise = np.zeros((batch, drums.STEPS, drums.NUM_CLASSES), np.float32)
    free_c, free_v, free_o, tf_c, tf_v, tf_o, kls = [], [], [], [], [], [], []
    for a in range(0, n, batch):
        idx = np.arange(a, min(n, a + batch))
        b = windows.batch(idx)
        # a fill window is encoded from its groove (the beat bar the fill replaced), like training
        mu, logvar = backend.encode({"classes": b["enc_classes"], "velocity": b["enc_velocity"], "offset": b["enc_offset"]})
        kls.append(kl_divergence(mu, logvar))
        c, v, o = backend.decode(mu, 0.0, zero_noise[: len(idx)], b["style"], b["fill"])
        free_c.append(c)
        free_v.append(v)
        free_o.append(o)
        if backend.teacher is not None:
            c, v, o = backend.teacher(mu, b)
            tf_c.append(c)
            tf_v.append(v)
            tf_o.append(o)
    # reconstruction figures on the beat windows (comparable across models); fill windows apart
    beats = ~np.asarray(windows.is_fill[:n])
    true = windows.batch(np.flatnonzero(beats))
    tc, th = true["classes"], true["hits"] > 0.5
    fc_all = np.concatenate(free_c)
    fc = fc_all[beats]
    fh = drums.index_to_hits(fc)
    free_v, free_o = [np.concatenate(x)[beats] for x in (free_v, free_o)]
    rep: dict = {
        "model": backend.name,
        "windows": int(beats.sum()),
        "fill_windows": int((~beats).sum()),
        "recon_accuracy": float((fc == tc).mean()),
        "recon_accuracy_nonrest": float((fc == tc)[tc != 0].mean()),
        "kl": float(np.concatenate(kls)[beats].mean()),
    }
    if (~beats).any():
        rep["recon_accuracy_fill_windows"] = float((fc_all[~beats] == windows.classes[:n][~beats]).mean())
    per_voice = {v: _prf(fh[..., i], th[..., i]) for i, v in enumerate(drums.VOICES)}
    micro = _prf(fh, th)
    rep["hit_f1"] = micro["f1"]
    rep["hit_precision"] = micro["precision"]
    rep["hit_recall"] = micro["recall"]
    rep["hits_per_voice"] = per_voice
    both = fh & th  # groove errors where the reconstruction hits a true hit
    rep["velocity_mae_free"] = float(np.abs(free_v - true["velocity"])[both].mean())
    rep["offset_mae_free"] = float(np.abs(free_o - true["offset"])[both].mean())
    if tf_c:
        tfc = np.concatenate(tf_c)[beats]
        rep["teacher_forced_accuracy"] = float((tfc == tc).mean())
        rep["velocity_mae"] = float(np.abs(np.concatenate(tf_v)[beats] - true["velocity"])[th].mean())
        rep["offset_mae"] = float(np.abs(np.concatenate(tf_o)[beats] - true["offset"])[th].mean())

    # prior samples (style "any", no fill: what the product plays by default) against the real beat windows
    gen = sample_hits(backend, samples, temperature, rng, batch=batch)
    gf, rf = features(gen), features(th)
    oa = {k: overlap_area(gf[k], rf[k]) for k in rf}
    rep["sample_oa"] = float(np.mean(list(oa.values())))
    rep["sample_oa_min"] = float(min(oa.values()))
    rep["sample_oa_per_feature"] = oa
    rep["sample_stats"] = {
        k: {"samples_mean": float(gf[k].mean()), "test_mean": float(rf[k].mean())} for k in rf
    }
    rep["samples"] = samples
    rep["temperature"] = temperature
    if train_windows is not None:
        rep.update(novelty(gen, th, train_windows))
        if backend.styles:
            rep["style"] = style_check(backend, windows, train_windows, temperature, seed, batch)
        if backend.fills:
            rep["fill"] = fill_check(backend, windows, train_windows, temperature, seed, batch)
    return rep


def sample_hits(backend: Backend, n: int, temperature: float, rng: np.random.Generator, style: int = 0,
                fill: np.ndarray | None = None, batch: int = 128) -> np.ndarray:
    """(n, T, V) hits of prior samples of one style (with a per-bar fill flag, or none)."""
    out = []
    for a in range(0, n, batch):
        k = min(batch, n - a)
        z = backend.draw(k, rng, style)
        noise = gumbel(rng, (k, drums.STEPS, drums.NUM_CLASSES))
        f = None if fill is None else np.broadcast_to(np.asarray(fill, np.float32), (k, drums.BARS))
        c, _, _ = backend.decode(z, temperature, noise, np.full(k, style, np.int64), f)
        out.append(drums.index_to_hits(c))
    return np.concatenate(out)


def novelty(gen_hits: np.ndarray, real_hits: np.ndarray, train_windows) -> dict:
    """How new the samples are: Jaccard similarity of each one's hits to the nearest training
    window, against the same figure for real unseen windows of the split."""
    train_hits = train_windows.hits[~train_windows.is_fill] > 0.5
    g = nearest_similarity(gen_hits, train_hits)
    r = nearest_similarity(real_hits, train_hits)
    return {
        "novelty": {
            "samples_near_copies": float((g >= 0.9).mean()),  # share at 0.9 or more
            "samples_nearest_median": float(np.median(g)),
            "real_near_copies": float((r >= 0.9).mean()),
            "real_nearest_median": float(np.median(r)),
        }
    }


def style_check(backend: Backend, windows, train_windows, temperature: float, seed: int, batch: int,
                per_style: int = 200) -> dict:
    """A style classifier trained on real training windows, scored on real windows of the split
    and on samples of each style; ``ratio`` is samples / real accuracy, averaged over styles."""
    from train import judges

    names = backend.styles
    tw = train_windows
    m = (~tw.is_fill) & (tw.style > 0)
    judge = judges.Softmax.fit(judges.window_features(tw.hits[m], tw.velocity[m], tw.offset[m]), tw.style[m] - 1, names)
    rng = np.random.default_rng((seed, 2))
    real_m = (~windows.is_fill) & (windows.style > 0)
    xr = judges.window_features(windows.hits[real_m], windows.velocity[real_m], windows.offset[real_m])
    pr, yr = judge.predict(xr), windows.style[real_m] - 1
    per, confusion = {}, {}
    for k, name in enumerate(names):
        c, v, o = [], [], []
        for a in range(0, per_style, batch):
            n = min(batch, per_style - a)
            z = backend.draw(n, rng, k + 1)
            cc, vv, oo = backend.decode(z, temperature, gumbel(rng, (n, drums.STEPS, drums.NUM_CLASSES)),
                                        np.full(n, k + 1, np.int64), None)
            c.append(cc)
            v.append(vv)
            o.append(oo)
        hits = drums.index_to_hits(np.concatenate(c))
        ps = judge.predict(judges.window_features(hits, np.concatenate(v), np.concatenate(o)))
        confusion[name] = {names[j]: int((ps == j).sum()) for j in range(len(names))}
        real_n = int((yr == k).sum())
        per[name] = {
            "real_windows": real_n,
            "real_accuracy": float((pr[yr == k] == k).mean()) if real_n else None,
            "sample_accuracy": float((ps == k).mean()),
        }
    scored = [p for p in per.values() if p["real_accuracy"]]
    ratio = float(np.mean([p["sample_accuracy"] / p["real_accuracy"] for p in scored])) if scored else None
    return {"per_style": per, "confusion_samples": confusion, "ratio": ratio,
            "real_accuracy_mean": float(np.mean([p["real_accuracy"] for p in scored])) if scored else None,
            "sample_accuracy_mean": float(np.mean([p["sample_accuracy"] for p in scored])) if scored else None}


def fill_check(backend: Backend, windows, train_windows, temperature: float, seed: int, batch: int,
               n: int = 500) -> dict:
    """A fill/beat bar classifier trained on GMD's fill and beat bars, asked about samples drawn
    with the fill flag on bar 4 and the same latents and noise without it."""
    from train import judges

    judge = judges.Softmax.fit(*judges.fill_training_bars(train_windows, np.random.default_rng(seed)), ("beat", "fill"))
    fill = np.zeros(drums.BARS, np.float32)
    fill[-1] = FILL_STRENGTH  # what the product feeds
    out = {}
    for name, f in (("with_fill", fill), ("without_fill", None)):
        rng = np.random.default_rng((seed, 3))  # the same z and noise for both
        c, v = [], []
        for a in range(0, n, batch):
            k = min(batch, n - a)
            z = backend.draw(k, rng, 0)
            cc, vv, _ = backend.decode(z, temperature, gumbel(rng, (k, drums.STEPS, drums.NUM_CLASSES)),
                                       np.zeros(k, np.int64), None if f is None else np.broadcast_to(f, (k, drums.BARS)))
            c.append(cc)
            v.append(vv)
        hits = drums.index_to_hits(np.concatenate(c))  # (n, T, V)
        verdict = judges.bars_are_fills(judge, hits, np.concatenate(v))  # (n, 3): bars 2-4
        out[name] = {"bar4_fill": float(verdict[:, -1].mean()), "bars2_3_fill": float(verdict[:, :-1].mean()),
                     **last_bar_density(hits, verdict[:, -1])}
    real_hits = windows.hits > 0.5
    real = judges.bars_are_fills(judge, real_hits, windows.velocity)
    out["real"] = {
        "fill_bar4_fill": float(real[windows.is_fill, -1].mean()) if windows.is_fill.any() else None,
        "beat_bars_fill": float(real[~windows.is_fill].mean()),
    }
    if windows.is_fill.any():
        out["real_fill_bars"] = last_bar_density(real_hits[windows.is_fill], real[windows.is_fill, -1])
    return out


SPARSE_BAR_STEPS = 2  # a bar with at most this many sounding steps is a break, not a fill


def last_bar_steps(hits: np.ndarray) -> np.ndarray:
    """(W, T, V) hits -> (W,) sounding steps (any voice) of each window's bar 4."""
    return np.asarray(hits, bool).reshape(len(hits), drums.BARS, drums.STEPS_PER_BAR, -1)[:, -1].any(-1).sum(-1)


def last_bar_density(hits: np.ndarray, judged_fill: np.ndarray) -> dict:
    """How full bar 4 is: hits (W, T, V) bool, judged_fill (W,) the fill judge's verdict on bar 4.

    The judge alone hears a near-empty bar 4 as a fill (it is unlike a beat bar); these figures
    say whether the fill is played: sounding steps, toms + crash hits, the share of sparse bars
    and of bars that are both judged fills and not sparse."""
    bar4 = np.asarray(hits, bool).reshape(len(hits), drums.BARS, drums.STEPS_PER_BAR, -1)[:, -1]  # (W, S, V)
    steps = last_bar_steps(hits)  # (W,)
    toms_crash = bar4[..., TOMS_CRASH].sum((1, 2))
    sparse = steps <= SPARSE_BAR_STEPS
    return {"bar4_steps": float(steps.mean()), "bar4_toms_crash": float(toms_crash.mean()),
            "bar4_sparse": float(sparse.mean()), "bar4_played_fill": float((np.asarray(judged_fill) & ~sparse).mean())}


# --- backends ---------------------------------------------------------------


def torch_backend(model, name: str = "torch", prior_arrays: dict | None = None) -> Backend:
    """Backend over a GrooveVAE (imports torch); ``prior_arrays``: the run's learned prior."""
    import torch

    model.eval()

    def t(x, dtype=torch.float32):
        return torch.as_tensor(np.array(x), dtype=dtype)

    @torch.no_grad()
    def encode(b):
        mu, logvar = model.encoder(t(b["classes"], torch.long), t(b["velocity"]), t(b["offset"]))
        return mu.numpy(), logvar.numpy()

    cfg = model.config

    def cond(style, fill, n):
        s = t(np.broadcast_to(np.asarray(style), (n,)), torch.long) if cfg.style_embed else None
        f = t(fill) if cfg.fills and fill is not None else None
        return s, f

    @torch.no_grad()
    def decode(z, temperature, noise, style=0, fill=None):
        s, f = cond(style, fill, len(z))
        if cfg.fills:  # fill bars drawn as hot as the engine draws them
            temperature, noise = bar_temperatures(float(temperature), noise, fill, FILL_TEMPERATURE)
        c, v, o = model.sample(t(z), float(temperature), t(noise), style=s, fill=f)
        return c.numpy(), v.numpy(), o.numpy()

    @torch.no_grad()
    def teacher(z, b):
        s, f = cond(b.get("style", 0), b.get("fill"), len(z))
        logits, v, o = model.decoder(model.conductor(t(z), s, f), t(b["classes"], torch.long))
        return logits.argmax(-1).numpy(), v.numpy(), o.numpy()

    draw = None
    if prior_arrays is not None:
        from train import prior as prior_mod

        def draw(n, rng, style):
            return prior_mod.draw(prior_arrays, style, rng, n)

    return Backend(name, cfg.z, encode, decode, teacher, draw, tuple(cfg.styles), bool(cfg.fills))


def engine_backend(engine) -> Backend:
    """Backend over an exported model through the runtime engine (no torch)."""

    def encode(b):
        return engine.encode_arrays(b["classes"], b["velocity"], b["offset"])

    def decode(z, temperature, noise, style=0, fill=None):
        return engine.decode(z, float(temperature), np.ascontiguousarray(noise, np.float32), style=style, fill=fill)

    draw = None
    if engine.prior_mixture is not None:
        from train import prior as prior_mod

        arrays = dict(zip(("weights", "means", "scales"), engine.prior_mixture, strict=True))

        def draw(n, rng, style):  # the same draws as a torch backend over the run's prior
            return prior_mod.draw(arrays, style, rng, n)

    return Backend(f"exported {engine.folder}", engine.z_size, encode, decode, None, draw, engine.styles, engine.has_fills)


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
    if rep.get("fill"):
        f = rep["fill"]
        lines += ["", "## Fills (bar 4 of prior samples with the fill input, and of the real fill windows)", "",
                  "| bar 4 of | judged fill | judged and played | sparse (<= 2 steps) | sounding steps | toms + crash |",
                  "|---|---|---|---|---|---|"]
        for name, label in (("with_fill", "samples, fill asked"), ("without_fill", "samples, no fill"),
                            ("real_fill_bars", "real fill windows")):
            r = f.get(name)
            if r and "bar4_steps" in r:
                judged = r.get("bar4_fill", f["real"].get("fill_bar4_fill") if name == "real_fill_bars" else None)
                lines.append(f"| {label} | {judged:.3f} | {r['bar4_played_fill']:.3f} | {r['bar4_sparse']:.3f} | "
                             f"{r['bar4_steps']:.2f} | {r['bar4_toms_crash']:.2f} |")
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
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
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
