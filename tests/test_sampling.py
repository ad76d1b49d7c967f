"""Gumbel noise and KL: one definition each, numpy and torch agreeing."""

import numpy as np
import pytest

from model import sampling


def test_gumbel_is_the_seeded_uniform_draw_transformed():
    g = sampling.gumbel(np.random.default_rng(3), (2, 64, 512))
    u = np.random.default_rng(3).random((2, 64, 512), dtype=np.float32)
    assert g.dtype == np.float32 and np.isfinite(g).all()
    assert np.array_equal(g, -np.log(-np.log(np.clip(u, sampling.GUMBEL_LO, sampling.GUMBEL_HI))))


def test_torch_side_uses_the_same_kl_and_clip():
    torch = pytest.importorskip("torch")
    from model import vae

    rng = np.random.default_rng(0)
    mu, lv = rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)
    t = vae.kl_divergence(torch.from_numpy(mu), torch.from_numpy(lv)).numpy()
    assert np.allclose(t, sampling.kl_divergence(mu, lv), rtol=1e-6)
    g = vae.gumbel((10000,), generator=torch.Generator().manual_seed(0))
    top = -np.log(-np.log(np.float32(sampling.GUMBEL_HI)))
    assert torch.isfinite(g).all() and float(g.max()) <= top + 1e-4


def _scores(logits, temperature, noise):
    """What the sampler adds up before its argmax (export/graphs.py, model/vae.py), in float32."""
    return logits + np.float32(temperature) * noise


@pytest.mark.parametrize("temperature", [0.0, 0.5, 0.7])
def test_bar_temperatures_keep_the_other_bars_bit_for_bit_and_heat_the_fill_bar(temperature):
    rng = np.random.default_rng(1)
    B, T, C, N = 3, 64, 512, 4
    logits = rng.normal(size=(B, T, C)).astype(np.float32)
    noise = sampling.gumbel(rng, (B, T, C))
    fill = np.zeros((B, N), np.float32)
    fill[:, -1] = 1.5
    fill[1, -1] = 0.0  # one row asks no fill
    t, n = sampling.bar_temperatures(temperature, noise, fill, 1.0)
    got, plain = _scores(logits, t, n), _scores(logits, temperature, noise)
    assert np.array_equal(got[:, :48], plain[:, :48])  # bars 1-3: the same scores, so the same groove
    assert np.array_equal(got[1], plain[1])  # no fill asked in that row: nothing changes
    assert np.array_equal(got[[0, 2], 48:], _scores(logits, 1.0, noise)[[0, 2], 48:])  # bar 4 at 1.0


def test_bar_temperatures_leave_inputs_alone_when_nothing_is_hotter():
    noise = sampling.gumbel(np.random.default_rng(2), (1, 64, 512))
    fill = np.array([[0, 0, 0, 1.5]], np.float32)
    for args in ((0.5, noise, None, 1.0), (0.5, noise, np.zeros((1, 4)), 1.0), (1.2, noise, fill, 1.0)):
        t, n = sampling.bar_temperatures(*args)
        assert t == args[0] and n is noise
