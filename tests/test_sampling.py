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
