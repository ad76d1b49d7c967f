"""Which latent prior keeps prior samples on the data manifold without replaying the training set?

Measured on the validation split (the test split stays for the final report):
for each candidate prior, ``--samples`` grooves at the product temperature are
compared with the validation beat windows (overlapping area of every eval
feature, bar-to-bar repetition, toms+crash per bar) and checked for novelty
(Jaccard similarity of each sample's hits to its nearest training window; the
same figure for real validation windows is the yardstick).

Candidates: N(0, I) (what stop 5 shipped), diagonal mixtures of K components
fitted to the training posterior means, the same mixture fitted to posterior
samples (the aggregate posterior), a "prior temperature" (every component's
scales times tau), and the "replay" baseline the issue warns about (a training
posterior mean plus its own posterior noise). Each mixture also gets its
held-out fit: the mean log-likelihood of the validation posterior means
(``val_ll``), the principled way to choose K (a better density of where real
unseen grooves sit in z), which the sample figures then check.

    python -m benchmarks.prior_choice --model performer/models/default --data PATH/groove --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from model.sampling import gumbel
from performer.engine import Engine
from train import data, evaluate, prior


def encode_all(engine: Engine, ws, idx, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    mus, lvs = [], []
    for a in range(0, len(idx), batch):
        mu, lv = engine.encode_batch(ws.patterns(idx[a : a + batch]))
        mus.append(mu)
        lvs.append(lv)
    return np.concatenate(mus), np.concatenate(lvs)


def decode_hits(engine: Engine, z: np.ndarray, temperature: float, rng: np.random.Generator, style: int = 0,
                batch: int = 64) -> np.ndarray:
    out = []
    for a in range(0, len(z), batch):
        zz = z[a : a + batch]
        noise = gumbel(rng, (len(zz), 64, 512))
        c, _, _ = engine.decode(zz, temperature, noise, style=style)
        out.append(c)
    from model import drums

    return drums.index_to_hits(np.concatenate(out))


def log_likelihood(p: dict, x: np.ndarray, style: int = 0) -> float:
    """Mean log-density of the rows of x (N, Z) under one style's diagonal mixture."""
    w, m, s = (np.asarray(p[k][style], np.float64) for k in ("weights", "means", "scales"))
    keep = w > 0
    w, m, s = w[keep] / w[keep].sum(), m[keep], s[keep]
    out = []
    for a in range(0, len(x), 256):
        xx = np.asarray(x[a : a + 256], np.float64)
        lp = (-0.5 * (((xx[:, None] - m[None]) / s[None]) ** 2).sum(-1) - np.log(s).sum(-1)[None]
              - 0.5 * x.shape[1] * np.log(2 * np.pi) + np.log(w)[None])  # (n, K)
        mx = lp.max(1, keepdims=True)
        out.append(mx[:, 0] + np.log(np.exp(lp - mx).sum(1)))
    return float(np.concatenate(out).mean())


def scaled(p: dict, tau: float) -> dict:
    """The mixture with every component's scales times tau (a prior temperature)."""
    return {**p, "scales": (np.asarray(p["scales"], np.float32) * tau).astype(np.float32)}


def score(gen_hits, real_hits, train_hits, real_nearest_median) -> dict:
    gf, rf = evaluate.features(gen_hits), evaluate.features(real_hits)
    oa = {k: evaluate.overlap_area(gf[k], rf[k]) for k in rf}
    near = evaluate.nearest_similarity(gen_hits, train_hits)
    return {
        "mean_oa": float(np.mean(list(oa.values()))),
        "min_oa": float(min(oa.values())),
        "min_oa_feature": min(oa, key=oa.get),
        "bar_repetition": float(gf["bar_repetition"].mean()),
        "toms_crash_per_bar": float(gf["toms_crash_per_bar"].mean()),
        "kick_on_one": float(gf["kick_on_one"].mean()),
        "snare_backbeat": float(gf["snare_backbeat"].mean()),
        "oa_per_feature": oa,
        "near_copies": float((near >= 0.9).mean()),
        "nearest_median": float(np.median(near)),
        "nearest_median_minus_real": float(np.median(near) - real_nearest_median),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="exported model folder (default: the shipped one)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--components", default="1,4,16,64,128,256")
    ap.add_argument("--taus", default="0.7,0.85", help="prior temperatures tried on the shipped mixture size")
    ap.add_argument("--tau-components", type=int, default=prior.COMPONENTS)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    engine = Engine.load(a.model)
    temp = engine.default_temperature if a.temperature is None else a.temperature
    tracks, _ = data.preprocess(a.data)
    tr = data.WindowSet(tracks["train"], engine.styles)
    va = data.WindowSet(tracks["validation"], engine.styles)
    tr_beats, va_beats = np.flatnonzero(~tr.is_fill), np.flatnonzero(~va.is_fill)
    train_hits, real_hits = tr.hits[tr_beats] > 0.5, va.hits[va_beats] > 0.5
    t0 = time.perf_counter()
    mu, logvar = encode_all(engine, tr, tr_beats)
    val_mu, _ = encode_all(engine, va, va_beats)
    real_near = evaluate.nearest_similarity(real_hits, train_hits)
    rows = {"validation windows (real)": {**score(real_hits, real_hits, train_hits, float(np.median(real_near)))}}
    rows["validation windows (real)"].update(near_copies=float((real_near >= 0.9).mean()), nearest_median=float(np.median(real_near)))
    rng = np.random.default_rng(0)
    cands = {"N(0, I)": rng.standard_normal((a.samples, engine.z_size)).astype(np.float32)}
    style = tr.style[tr_beats]
    fits = {}
    for k in (int(x) for x in a.components.split(",")):
        p = prior.fit(mu, style, 1, components=k)
        fits[f"mixture K={k}"] = p
        cands[f"mixture K={k}"] = prior.draw(p, 0, rng, a.samples)
    base = fits.get(f"mixture K={a.tau_components}") or prior.fit(mu, style, 1, components=a.tau_components)
    for tau in (float(x) for x in a.taus.split(",") if x):
        name = f"mixture K={a.tau_components} tau={tau:g}"
        fits[name] = scaled(base, tau)
        cands[name] = prior.draw(fits[name], 0, rng, a.samples)
    zs = (mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)).astype(np.float32)
    name = f"mixture K={a.tau_components} on posterior samples"
    fits[name] = prior.fit(zs, style, 1, components=a.tau_components)
    cands[name] = prior.draw(fits[name], 0, rng, a.samples)
    pick = rng.integers(0, len(mu), a.samples)
    cands["replay (posterior + its noise)"] = (mu[pick] + np.exp(0.5 * logvar[pick]) * rng.standard_normal(mu[pick].shape)).astype(np.float32)
    for name, z in cands.items():
        rows[name] = score(decode_hits(engine, z, temp, np.random.default_rng(1)), real_hits, train_hits, float(np.median(real_near)))
        if name in fits:
            rows[name]["val_ll"] = log_likelihood(fits[name], val_mu)
    out = {"model": str(engine.folder), "temperature": temp, "samples": a.samples, "seconds": time.perf_counter() - t0, "rows": rows}
    cols = ("val_ll", "mean_oa", "min_oa", "bar_repetition", "toms_crash_per_bar", "kick_on_one", "snare_backbeat",
            "near_copies", "nearest_median")
    print(f"{'prior':34s} " + " ".join(f"{c[:12]:>12s}" for c in cols))
    for name, r in rows.items():
        print(f"{name:34s} " + " ".join(f"{r.get(c, float('nan')):12.3f}" for c in cols))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
