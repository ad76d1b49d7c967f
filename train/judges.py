"""Listeners that judge generated drums the way the issue asks: which style is it, is this bar a fill.

Both are small softmax regressions (numpy only, so they judge ONNX samples
without torch) trained on real GMD windows of the training split and scored on
real windows of another split, so that "the style classifier recognises 61 %
of real funk windows and 55 % of sampled funk" is a like-for-like comparison.
They are instruments, not products: simple, deterministic (fixed seed, full
batch), a few seconds to train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model import drums

S, V, N = drums.STEPS_PER_BAR, drums.NUM_VOICES, drums.BARS


def window_features(hits: np.ndarray, velocity: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(W, T, V) x3 -> (W, F) style features: where in the bar each voice plays (and how loud,
    how early or late), averaged over the 4 bars, plus per-voice density."""
    h = np.asarray(hits, np.float32).reshape(len(hits), N, S, V)
    vel = np.asarray(velocity, np.float32).reshape(h.shape) * h
    off = np.asarray(offset, np.float32).reshape(h.shape) * h
    n_hits = np.maximum(h.sum((1, 2)), 1.0)  # (W, V)
    return np.concatenate(
        [
            h.mean(1).reshape(len(h), -1),  # (W, S*V) position profile
            vel.mean(1).reshape(len(h), -1),  # (W, S*V) accents
            off.sum((1, 2)) / n_hits,  # (W, V) push / lay back per voice
            (off[:, :, 2::4].sum((1, 2)) / np.maximum(h[:, :, 2::4].sum((1, 2)), 1.0)),  # (W, V) 8th offbeats (swing)
            h.mean((1, 2)),  # (W, V) density
        ],
        axis=1,
    )


def bar_features(hits: np.ndarray, velocity: np.ndarray, prev_hits: np.ndarray) -> np.ndarray:
    """(K, S, V) bars + the bar before each -> (K, F) fill features: what the bar plays, how
    loud, and how it departs from the bar before it (a fill breaks the groove)."""
    h = np.asarray(hits, np.float32)
    p = np.asarray(prev_hits, np.float32)
    inter = (h * p).sum((1, 2))
    union = np.maximum(h.sum((1, 2)) + p.sum((1, 2)) - inter, 1.0)
    return np.concatenate(
        [
            h.reshape(len(h), -1),
            (np.asarray(velocity, np.float32) * h).reshape(len(h), -1),
            h.sum(1) - p.sum(1),  # (K, V) more toms, fewer hats ...
            (inter / union)[:, None],  # (K, 1) similarity to the bar before
            h.sum((1, 2))[:, None] / S,
        ],
        axis=1,
    )


@dataclass
class Softmax:
    """Multinomial logistic regression with standardised inputs and L2, balanced classes."""

    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray  # (F, K)
    b: np.ndarray  # (K,)
    labels: tuple

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, labels, l2: float = 1e-3, steps: int = 400, lr: float = 0.05):
        x = np.asarray(x, np.float64)
        mean, std = x.mean(0), x.std(0) + 1e-6
        xs = (x - mean) / std
        k = len(labels)
        counts = np.bincount(y, minlength=k).astype(np.float64)
        sw = (len(y) / (k * np.maximum(counts, 1)))[y]  # balanced: every class weighs the same
        sw /= sw.sum()
        w, b = np.zeros((x.shape[1], k)), np.zeros(k)
        onehot = np.eye(k)[y]
        m_w, v_w, m_b, v_b = (np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b))
        for t in range(1, steps + 1):  # Adam, full batch: deterministic
            logits = xs @ w + b
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            g = (p - onehot) * sw[:, None]  # (n, k)
            gw, gb = xs.T @ g + l2 * w, g.sum(0)
            for m, v, gr, par in ((m_w, v_w, gw, w), (m_b, v_b, gb, b)):
                m *= 0.9
                m += 0.1 * gr
                v *= 0.999
                v += 0.001 * gr * gr
                par -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        return cls(mean, std, w, b, tuple(labels))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(((np.asarray(x, np.float64) - self.mean) / self.std) @ self.w + self.b, axis=1)


def fill_training_bars(ws, rng: np.random.Generator, beat_bars: int = 20000):
    """(features, labels) from a WindowSet: bar 4 of every fill window (label 1) and a
    sample of bars 2-4 of beat windows (label 0), each with the bar before it."""
    hits = ws.hits.reshape(len(ws), N, S, V) > 0.5
    vel = ws.velocity.reshape(len(ws), N, S, V)
    fills = np.flatnonzero(ws.is_fill)
    beats = np.flatnonzero(~ws.is_fill)
    pick = rng.choice(len(beats) * (N - 1), min(beat_bars, len(beats) * (N - 1)), replace=False)
    bw, bb = beats[pick // (N - 1)], pick % (N - 1) + 1
    x = np.concatenate(
        [
            bar_features(hits[fills, -1], vel[fills, -1], hits[fills, -2]),
            bar_features(hits[bw, bb], vel[bw, bb], hits[bw, bb - 1]),
        ]
    )
    y = np.concatenate([np.ones(len(fills), np.int64), np.zeros(len(bw), np.int64)])
    return x, y


def bars_are_fills(judge: Softmax, hits: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """(W, T, V) patterns -> (W, N-1) bool: the judge's verdict on bars 2..4 (each with the bar before)."""
    h = np.asarray(hits, bool).reshape(len(hits), N, S, V)
    v = np.asarray(velocity, np.float32).reshape(h.shape)
    out = np.zeros((len(h), N - 1), bool)
    for b in range(1, N):
        out[:, b - 1] = judge.predict(bar_features(h[:, b], v[:, b], h[:, b - 1])) == 1
    return out
