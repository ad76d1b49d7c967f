"""Inference graphs traced to ONNX: the sampler (conductor + decoder) and the encoder.

The sampler re-expresses the trained decoder for batch-1 latency without
changing its maths:

* the one-hot/embedding input becomes a gather from a precomputed (C+1, 4H)
  table of input-gate terms (``embed @ W_ih``), so a step needs no input matmul;
* the bar embedding's gate term, bias sums and initial state are computed once
  per bar, not once per step;
* the velocity / offset heads do not feed back, so they run once over all 64
  steps after the loop, again with the chosen class's term gathered from a table.

The folded tables are built from the weights inside the graph (constant
subgraphs that ONNX Runtime folds when the session loads), so the file keeps
the original float16-exact weights and stays small. Shapes: B batch, T steps,
C classes, V voices, H decoder units, Z latent.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from model.vae import GrooveVAE


def condition_inputs(c) -> list[str]:
    """The sampler's inputs after z, temperature, noise and mask, for this model config:
    ``style`` (B,) int64 when the model knows styles, ``fill`` (B, N) float when it plays fills."""
    return (["style"] if c.style_embed else []) + (["fill"] if c.fills else [])


class Sampler(nn.Module):
    """z, temperature, Gumbel noise, allowed-class mask[, style][, fill] -> classes, velocity, offset."""

    def __init__(self, vae: GrooveVAE):
        super().__init__()
        self.c = vae.config
        self.conductor = vae.conductor
        self.dec = vae.decoder

    def forward(self, z, temperature, noise, mask, *cond):
        # z (B, Z); temperature (1,); noise (B, T, C) float; mask (B|1, T, C) bool;
        # cond: style (B,) int64 and/or fill (B, N) float, as condition_inputs(config) names them
        c, dec = self.c, self.dec
        named = dict(zip(condition_inputs(c), cond, strict=True))
        H, L, E = c.dec_hidden, c.dec_layers, c.embed
        B = z.shape[0]
        lstm = dec.lstm
        # gate rows reordered from torch's (i, f, g, o) to (i, f, o, g): one sigmoid per step
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        w_ih = [getattr(lstm, f"weight_ih_l{i}")[order] for i in range(L)]  # (4H, in)
        w_hh = [getattr(lstm, f"weight_hh_l{i}")[order].t() for i in range(L)]  # (H, 4H)
        bias = [(getattr(lstm, f"bias_ih_l{i}") + getattr(lstm, f"bias_hh_l{i}"))[order] for i in range(L)]
        gather_in = dec.embed.weight @ w_ih[0][:, :E].t()  # (C + 1, 4H): the one-hot input as a gather
        w_bar = w_ih[0][:, E:].t()  # (Eb, 4H)
        w_up = [w.t() for w in w_ih[1:]]  # (H, 4H) for layers above the first
        w_out = dec.logits.weight.t()  # (H, C)
        # everything added to the logits, for all steps at once: bias, temperature x noise, mask
        score_add = (dec.logits.bias + temperature * noise).masked_fill(~mask, float("-inf"))  # (B, T, C)

        bars = self.conductor(z, named.get("style"), named.get("fill"))  # (B, N, Eb)
        prev = torch.full((B,), dec.start, dtype=torch.long)  # (B,)
        hs, choices = [], []
        for n in range(c.bars):
            bar = bars[:, n]  # (B, Eb)
            hc = torch.tanh(dec.init(bar)).view(B, 2, L, H)  # per bar, once
            h = [hc[:, 0, i] for i in range(L)]  # (B, H) each
            cell = [hc[:, 1, i] for i in range(L)]
            bar_term = bar @ w_bar + bias[0]  # (B, 4H), once per bar
            for s in range(c.steps_per_bar):
                t = n * c.steps_per_bar + s
                x = gather_in[prev] + bar_term  # (B, 4H)
                for i in range(L):
                    if i:
                        x = h[i - 1] @ w_up[i - 1] + bias[i]
                    gates = x + h[i] @ w_hh[i]  # (B, 4H)
                    sg = torch.sigmoid(gates[:, : 3 * H])  # (B, 3H): input, forget, output
                    cell[i] = sg[:, H : 2 * H] * cell[i] + sg[:, :H] * torch.tanh(gates[:, 3 * H :])
                    h[i] = sg[:, 2 * H :] * torch.tanh(cell[i])  # (B, H)
                prev = (h[-1] @ w_out + score_add[:, t]).argmax(dim=-1)  # (B,)
                hs.append(h[-1])
                choices.append(prev)
        hs_t = torch.stack(hs, 1)  # (B, T, H)
        classes = torch.stack(choices, 1)  # (B, T)
        # heads once over all steps: Linear(cat(h, out_embed[class])) split into two gathers
        lin1 = dec.head[0]
        w1h = lin1.weight[:, :H].t()  # (H, Hh)
        gather_head = dec.out_embed.weight @ lin1.weight[:, H:].t()  # (C, Hh)
        pre = hs_t @ w1h + gather_head[classes] + lin1.bias  # (B, T, Hh)
        vo = dec.head[2](torch.tanh(pre))  # (B, T, 2V)
        vel, off = vo.split(c.num_voices, dim=-1)
        return classes, torch.sigmoid(vel), 0.5 * torch.tanh(off)


class EncoderGraph(nn.Module):
    """classes, velocity, offset -> mu, logvar (the trained encoder as is)."""

    def __init__(self, vae: GrooveVAE):
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, classes, velocity, offset):
        return self.encoder(classes, velocity, offset)


# --- storage and parity, shared by export.exporter and export.band ------------------


def store_float16(model: onnx.ModelProto) -> None:
    """Store float32 initializers that are exactly float16 as float16 + a Cast node.

    Lossless by construction (a value that is not float16-exact stays float32), and the
    runtime still computes in float32: ONNX Runtime folds each Cast of a constant once when
    the session is created. export.band rounds its encoders' weights to float16 first and
    checks parity against the rounded torch model, so their graphs shrink the same way."""
    g = model.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 64 and np.array_equal(arr.astype(np.float16).astype(np.float32), arr):
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__f16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)


def max_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference; inf when either side holds a NaN or inf (a NaN difference
    compares False with any tolerance, so a graph that outputs NaN would pass a plain max)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not (np.isfinite(got).all() and np.isfinite(want).all()):
        return float("inf")
    return float(np.abs(got - want).max(initial=0.0))
