"""Sampling maths every side shares: Gumbel noise and the KL term (numpy; torch-free).

The engine, evaluation and the benchmark draw their noise with :func:`gumbel`;
the torch model (:func:`model.vae.gumbel`) clips with the same bounds, and its
training loss uses :func:`kl_divergence` with ``exp=torch.exp``. One
definition each, so a seed gives the same noise on every path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Uniform draws are clipped into [GUMBEL_LO, GUMBEL_HI] before -log(-log(u)): a draw of 0 would
# give -inf. The top bound is 1 - 1e-7, not 1 - 1e-9: the latter is 1.0 in float32 (no bound at
# all), and 1 - 1e-7 is what the engine has always used, so every seed keeps its groove.
GUMBEL_LO = 1e-9
GUMBEL_HI = 1.0 - 1e-7


def gumbel(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard Gumbel noise, float32, from one ``rng.random`` draw of ``shape``."""
    u = rng.random(shape, dtype=np.float32)
    np.clip(u, GUMBEL_LO, GUMBEL_HI, out=u)
    return -np.log(-np.log(u))


def bar_temperatures(temperature: float, noise: np.ndarray, fill, fill_temperature: float):
    """(temperature, noise) to feed a sampler so that the bars asked as fills are drawn at
    ``max(temperature, fill_temperature)`` and every other bar at ``temperature``.

    The sampler picks ``argmax(logits + temperature * noise)`` (Gumbel-max sampling), so a
    per-step temperature is the noise scaled per step with a fed temperature of 1. The other
    bars get bit for bit the scores they get without fills (float32 products, and 1 * x is
    x), so bars 1-3 of a fill stay exactly the groove. ``noise`` (B, T, C) float32; ``fill``
    (B|1, N) per-bar fill inputs (> 0 = a fill) or None.
    """
    if fill is None or fill_temperature <= temperature:
        return temperature, noise
    asked = np.asarray(fill) > 0  # (B|1, N)
    if not asked.any():
        return temperature, noise
    noise = np.asarray(noise, np.float32)
    tau = np.where(asked, np.float32(fill_temperature), np.float32(temperature)).astype(np.float32)  # (B|1, N)
    tau = np.repeat(tau, noise.shape[1] // tau.shape[1], axis=1)[:, :, None]  # (B|1, T, 1)
    return 1.0, np.ascontiguousarray(noise * tau, dtype=np.float32)


def mixture_draw(rng: np.random.Generator, weights, means, scales, n: int) -> np.ndarray:
    """(n, Z) float32 draws from a diagonal Gaussian mixture: weights (K,), means and scales (K, Z).

    The learned latent prior's one sampler: the engine draws a live groove's z with it
    (n = 1) and evaluation draws batches, so a seed gives the same z on both paths.
    """
    w = np.asarray(weights, np.float64)
    k = rng.choice(len(w), size=n, p=w / w.sum())
    eps = rng.standard_normal((n, np.shape(means)[-1])).astype(np.float32)
    return (np.asarray(means, np.float32)[k] + np.asarray(scales, np.float32)[k] * eps).astype(np.float32)


def kl_divergence(mu, logvar, exp: Callable = np.exp):
    """KL(q || N(0, I)) per example, in nats: (B, Z) -> (B,).

    Array-library neutral: numpy by default, ``exp=torch.exp`` for tensors (the
    rest of the formula is operators both libraries share).
    """
    return 0.5 * (mu**2 + exp(logvar) - 1.0 - logvar).sum(-1)
