"""The learned latent prior: a diagonal Gaussian mixture per style over the training posteriors.

Why: the trained posteriors sit far from N(0, I) (KL ~250 nats under 256 free
bits), so z ~ N(0, I) lands where the decoder never trained: the samples of
stop 5 repeated bar to bar far less than GMD and hit twice as many toms and
crashes. A mixture fitted to the training windows' posteriors puts z where
the decoder knows what to play: to one sample z ~ q(z | x) per window (the
aggregate posterior, the z the decoder saw in training; the means alone fit a
narrower cloud). Few, broad components (diagonal covariance, a variance floor)
keep it a smooth density, not a lookup of training windows:
benchmarks/prior_choice.py measures both sides of that trade on the validation
split (feature overlap, and nearest-training-window similarity) for N(0, I),
mixtures of several sizes, a prior temperature, means vs samples and the
replay baseline.

Arrays (saved as ``prior.npz`` in the run and in the exported model folder):
``weights`` (S, K), ``means`` (S, K, Z), ``scales`` (S, K, Z); style row 0 is
"any" (every training window), row i+1 the model's style i.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.bundle import PRIOR as PRIOR  # the same file name in the run and in the model folder
from model.fileio import atomic_savez_compressed
from model.sampling import mixture_draw

COMPONENTS = 128  # at most, per style; chosen on validation by benchmarks/prior_choice.py. runs/default:
#                  mean feature overlap 0.71 with N(0, I), 0.82 at K=16, 0.86 at K=64; near copies 0 %, 1.3 %, 3.5 %.
#                  runs/groove, held-out log-likelihood of the validation posterior means (the density fit
#                  itself, not a sample statistic): K=8 -190.8, 16 -187.1, 32 -185.3, 64 -181.2, 128 -177.2,
#                  192 -179.5, 256 -177.0: it stops improving at 128, and past it samples start to replay
#                  (near copies 3.5 % at 128, 6.3 % at 192, 8.4 % at 256; the issue allows 5 %). Mean
#                  overlap with the validation windows: 0.850 at 64, 0.863 at 128. Fitted to one posterior
#                  sample of each window (the aggregate posterior, what compute_prior does) instead of the
#                  means, three seeds of 1000 samples at K=128: mean overlap 0.860 vs 0.859 (the same; one
#                  seed's spread is about +-0.005), near copies 3.4-4.4 % vs 4.8-6.3 %: as close to the data,
#                  further from replaying it.
MIN_PER_COMPONENT = 40  # a style with few windows gets fewer components (at least 1)
VAR_FLOOR = 1e-2  # smallest per-dimension variance of a component (keeps it a density)


def fit(mu: np.ndarray, style: np.ndarray, n_styles: int, components: int = COMPONENTS, seed: int = 0) -> dict:
    """mu (W, Z) latents (posterior samples or means), style (W,) in [0, n_styles) -> mixture arrays (K padded with
    zero-weight components where a style has fewer)."""
    from sklearn.mixture import GaussianMixture

    mu = np.asarray(mu, np.float64)
    Z = mu.shape[1]
    weights = np.zeros((n_styles, components))
    means = np.zeros((n_styles, components, Z))
    scales = np.ones((n_styles, components, Z))
    for s in range(n_styles):
        rows = mu if s == 0 else mu[style == s]
        if len(rows) < 2:  # a style with no windows falls back to "any"
            rows = mu
        k = max(1, min(components, len(rows) // MIN_PER_COMPONENT))
        gm = GaussianMixture(k, covariance_type="diag", reg_covar=VAR_FLOOR, random_state=seed, max_iter=200)
        gm.fit(rows)
        weights[s, :k] = gm.weights_
        means[s, :k] = gm.means_
        scales[s, :k] = np.sqrt(gm.covariances_)
    # float16 keeps the shipped file small (11 styles x 128 x 256 x 2 values: 1.4 MB); every user
    # of the arrays (engine, eval) computes with the same rounded values
    return {"weights": weights.astype(np.float32), "means": means.astype(np.float16), "scales": scales.astype(np.float16)}


def draw(prior: dict, style: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, Z) draws from one style's mixture (model.sampling.mixture_draw, as the engine)."""
    return mixture_draw(rng, prior["weights"][style], prior["means"][style], prior["scales"][style], n)


def save(prior: dict, path: Path) -> None:
    """Atomic, compressed .npz write (model.fileio).

    Compressed because the arrays are mostly padding: a style with few windows gets few
    components and the rest of its K rows are zero-weight (means 0, scales 1), so runs/groove-q's
    prior is 1.45 MB stored and 0.45 MB deflated, the same arrays (lossless; ``np.load`` reads
    either kind, so the engine and older readers need no change)."""
    atomic_savez_compressed(path, **{k: np.asarray(v) for k, v in prior.items()})


ARRAYS = ("weights", "means", "scales")


def load(path: Path) -> dict:
    with np.load(path) as f:
        out = {k: f[k] for k in ARRAYS}
        if "weights_sha256" in f:
            out["weights_sha256"] = str(f["weights_sha256"])
    return out
