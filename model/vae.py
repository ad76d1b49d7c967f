"""The hierarchical groove VAE (MusicVAE-style, GrooVAE heads) in torch.

Shapes use B = batch, T = steps (64), N = bars (4), S = steps per bar (16),
C = classes (512), V = voices (9), Z = latent size. The network sees class
indices, velocities and offsets as arrays; it never sees MIDI (``model.drums``
owns that conversion).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model import sampling
from model.config import ModelConfig


def _init_state(linear: nn.Linear, x: torch.Tensor, layers: int, hidden: int):
    """Initial (h, c) for an LSTM from a vector, as MusicVAE does: tanh(linear(x))."""
    hc = torch.tanh(linear(x))  # (B', 2 * layers * H)
    hc = hc.view(x.shape[0], 2, layers, hidden).permute(1, 2, 0, 3).contiguous()
    return hc[0], hc[1]  # each (layers, B', H)


class Encoder(nn.Module):
    """Bidirectional LSTM over the pattern -> mu, log-variance of q(z | x)."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.num_classes, c.embed)
        self.lstm = nn.LSTM(
            c.embed + 2 * c.num_voices, c.enc_hidden, c.enc_layers, batch_first=True, bidirectional=True
        )
        self.to_mu = nn.Linear(2 * c.enc_hidden, c.z)
        self.to_logvar = nn.Linear(2 * c.enc_hidden, c.z)

    def forward(self, classes: torch.Tensor, velocity: torch.Tensor, offset: torch.Tensor):
        # classes (B, T) long; velocity, offset (B, T, V); offsets x2 to span [-1, 1)
        x = torch.cat([self.embed(classes), velocity, 2.0 * offset], dim=-1)  # (B, T, E + 2V)
        _, (h, _) = self.lstm(x)  # h: (layers * 2, B, H)
        h = torch.cat([h[-2], h[-1]], dim=-1)  # (B, 2H): last layer, both directions
        return self.to_mu(h), self.to_logvar(h)  # (B, Z) each


class Conductor(nn.Module):
    """LSTM that turns z (and the style, and which bars are fills) into one embedding per bar.

    The conditions enter as inputs beside z at every bar, not as the initial
    state: the LSTM is causal, so a fill flag on bar 4 leaves bars 1-3 exactly
    as they were (same z, same noise -> the same groove, then a fill).
    """

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.init = nn.Linear(c.z, 2 * c.conductor_hidden)
        self.style = nn.Embedding(len(c.styles) + 1, c.style_embed) if c.style_embed else None
        self.lstm = nn.LSTM(c.conductor_input, c.conductor_hidden, 1, batch_first=True)
        self.out = nn.Linear(c.conductor_hidden, c.bar_embed)

    def inputs(self, z: torch.Tensor, style: torch.Tensor | None, fill: torch.Tensor | None) -> torch.Tensor:
        """(B, N, Z + Es + F): z, the style embedding and the bar's fill flag, per bar."""
        c = self.c
        B = z.shape[0]
        parts = [z.unsqueeze(1).expand(-1, c.bars, -1)]  # (B, N, Z)
        if self.style is not None:
            s = style if style is not None else torch.zeros(B, dtype=torch.long, device=z.device)
            parts.append(self.style(s).unsqueeze(1).expand(-1, c.bars, -1))  # (B, N, Es)
        if c.fills:
            f = fill if fill is not None else z.new_zeros(B, c.bars)
            parts.append(f.to(z.dtype).unsqueeze(-1))  # (B, N, 1)
        return torch.cat(parts, dim=-1)

    def forward(self, z: torch.Tensor, style: torch.Tensor | None = None, fill: torch.Tensor | None = None):
        h0, c0 = _init_state(self.init, z, 1, self.c.conductor_hidden)  # (1, B, Hc)
        out, _ = self.lstm(self.inputs(z, style, fill), (h0, c0))  # (B, N, Hc)
        return torch.tanh(self.out(out))  # (B, N, Eb)


class Decoder(nn.Module):
    """Per-bar LSTM: state from the bar embedding, input = previous class + bar embedding.

    Outputs logits over the 512 classes per step, and per-voice velocity and
    offset from the hidden state plus the class actually chosen at the step.
    """

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.start = c.num_classes  # index of the start token fed before step 0
        self.embed = nn.Embedding(c.num_classes + 1, c.embed)
        self.init = nn.Linear(c.bar_embed, 2 * c.dec_layers * c.dec_hidden)
        self.lstm = nn.LSTM(c.embed + c.bar_embed, c.dec_hidden, c.dec_layers, batch_first=True)
        self.drop = nn.Dropout(c.dropout)
        self.logits = nn.Linear(c.dec_hidden, c.num_classes)
        self.out_embed = nn.Embedding(c.num_classes, c.embed)
        self.head = nn.Sequential(
            nn.Linear(c.dec_hidden + c.embed, c.head_hidden), nn.Tanh(), nn.Linear(c.head_hidden, 2 * c.num_voices)
        )

    def heads(self, h: torch.Tensor, classes: torch.Tensor):
        # h (..., H), classes (...) -> velocity, offset (..., V)
        vo = self.head(torch.cat([h, self.out_embed(classes)], dim=-1))
        vel, off = vo.split(self.c.num_voices, dim=-1)
        return torch.sigmoid(vel), 0.5 * torch.tanh(off)

    def forward(self, bars: torch.Tensor, classes: torch.Tensor, fed: torch.Tensor | None = None):
        """Teacher forcing: every bar in parallel. bars (B, N, Eb), classes (B, T).

        ``fed`` (B, T): the classes fed back as previous steps, when they are not the
        true ones (scheduled sampling); the heads always see the true classes.
        """
        c = self.c
        B = classes.shape[0]
        fed = classes if fed is None else fed
        prev = torch.cat([fed.new_full((B, 1), self.start), fed[:, :-1]], dim=1)  # (B, T)
        if self.training and c.input_dropout > 0:
            drop = torch.rand(prev.shape, device=prev.device) < c.input_dropout  # (B, T)
            prev = prev.masked_fill(drop, self.start)
        prev = prev.reshape(B * c.bars, c.steps_per_bar)  # (BN, S)
        bar = bars.reshape(B * c.bars, 1, c.bar_embed)  # (BN, 1, Eb)
        x = torch.cat([self.embed(prev), bar.expand(-1, c.steps_per_bar, -1)], dim=-1)  # (BN, S, E + Eb)
        state = _init_state(self.init, bar[:, 0], c.dec_layers, c.dec_hidden)  # (L, BN, H) x2
        h, _ = self.lstm(x, state)  # (BN, S, H)
        h = self.drop(h).reshape(B, c.steps, c.dec_hidden)  # (B, T, H)
        vel, off = self.heads(h, classes)  # (B, T, V) each
        return self.logits(h), vel, off  # (B, T, C), (B, T, V), (B, T, V)

    def sample(
        self,
        bars: torch.Tensor,
        temperature: torch.Tensor | float,
        noise: torch.Tensor,
        mask: torch.Tensor | None = None,
        forced: torch.Tensor | None = None,
    ):
        """Free-running decode, one step at a time.

        bars (B, N, Eb); noise (B, T, C) standard Gumbel; mask (B, T, C) bool of
        allowed classes or None. ``argmax(logits + temperature * noise)`` is
        Gumbel-max sampling at that temperature, and plain argmax at 0.
        ``forced`` (B, T) feeds the true classes back instead (teacher-forced
        accuracy) while still reporting the argmax choice.
        """
        c = self.c
        B = bars.shape[0]
        prev = bars.new_full((B,), self.start, dtype=torch.long)  # (B,)
        out_c, out_v, out_o = [], [], []
        for n in range(c.bars):
            bar = bars[:, n]  # (B, Eb)
            h, cc = _init_state(self.init, bar, c.dec_layers, c.dec_hidden)  # (L, B, H)
            for s in range(c.steps_per_bar):
                t = n * c.steps_per_bar + s
                x = torch.cat([self.embed(prev), bar], dim=-1).unsqueeze(1)  # (B, 1, E + Eb)
                o, (h, cc) = self.lstm(x, (h, cc))  # (B, 1, H)
                o = o[:, 0]  # (B, H)
                score = self.logits(o) + temperature * noise[:, t]  # (B, C)
                if mask is not None:
                    score = score.masked_fill(~mask[:, t], float("-inf"))
                choice = score.argmax(dim=-1)  # (B,)
                vel, off = self.heads(o, choice)  # (B, V) each
                out_c.append(choice)
                out_v.append(vel)
                out_o.append(off)
                prev = forced[:, t] if forced is not None else choice
        return torch.stack(out_c, 1), torch.stack(out_v, 1), torch.stack(out_o, 1)  # (B, T), (B, T, V) x2


class GrooveVAE(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.encoder = Encoder(c)
        self.conductor = Conductor(c)
        self.decoder = Decoder(c)

    def forward(self, classes, velocity, offset, sample_z: bool = True, sched_sampling: float = 0.0,
                style=None, fill=None, encoder_input=None):
        """-> logits (B, T, C), velocity (B, T, V), offset (B, T, V), mu, logvar (B, Z).

        sched_sampling: the chance that a step is fed the model's own sampled class
        instead of the true one. Sampled from a teacher-forced pass first, so every
        bar still runs in parallel (parallel scheduled sampling, Duckworth et al. 2019).
        """
        mu, logvar = self.encoder(*(encoder_input or (classes, velocity, offset)))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample_z else mu  # (B, Z)
        bars = self.conductor(z, style, fill)  # (B, N, Eb)
        fed = None
        if sched_sampling > 0:
            with torch.no_grad():
                guess = self.decoder(bars, classes)[0]  # (B, T, C)
                own = torch.distributions.Categorical(logits=guess).sample()  # (B, T)
            fed = torch.where(torch.rand(classes.shape, device=classes.device) < sched_sampling, own, classes)
        logits, vel, off = self.decoder(bars, classes, fed)
        return logits, vel, off, mu, logvar

    @torch.no_grad()
    def sample(self, z, temperature=1.0, noise=None, mask=None, generator=None, style=None, fill=None):
        """z (B, Z) [style (B,) long, fill (B, N)] -> classes (B, T), velocity (B, T, V), offset (B, T, V)."""
        c = self.config
        if noise is None:
            noise = gumbel((z.shape[0], c.steps, c.num_classes), generator=generator)
        return self.decoder.sample(self.conductor(z, style, fill), temperature, noise, mask)


def gumbel(shape, generator=None) -> torch.Tensor:
    """Standard Gumbel noise in torch, clipped as :func:`model.sampling.gumbel` is."""
    u = torch.rand(shape, generator=generator).clamp_(sampling.GUMBEL_LO, sampling.GUMBEL_HI)
    return -torch.log(-torch.log(u))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q || N(0, I)) per example, in nats. (B, Z) -> (B,); the formula is model.sampling's."""
    return sampling.kl_divergence(mu, logvar, exp=torch.exp)


def losses(model: GrooveVAE, batch: dict, beta: float, tc) -> tuple[torch.Tensor, dict]:
    """Training objective. Sums over steps (per example), means over the batch."""
    classes, vel, off, hits = batch["classes"], batch["velocity"], batch["offset"], batch["hits"]
    ss = tc.sched_sampling if model.training else 0.0
    enc = (batch["enc_classes"], batch["enc_velocity"], batch["enc_offset"]) if "enc_classes" in batch else None
    logits, pv, po, mu, logvar = model(
        classes, vel, off, sched_sampling=ss, style=batch.get("style"), fill=batch.get("fill"), encoder_input=enc
    )
    ce = F.cross_entropy(logits.transpose(1, 2), classes, reduction="none").sum(1)  # (B,)
    kl = kl_divergence(mu, logvar)  # (B,)
    kl_cost = torch.clamp(kl - tc.free_bits, min=0.0)
    v_err = ((pv - vel) ** 2 * hits).sum(dim=(1, 2))  # (B,)
    o_err = ((po - off) ** 2 * hits).sum(dim=(1, 2))  # (B,)
    loss = (ce + beta * kl_cost + tc.velocity_weight * v_err + tc.offset_weight * o_err).mean()
    with torch.no_grad():
        acc = (logits.argmax(-1) == classes).float().mean()
    return loss, {
        "loss": loss.detach(),
        "ce": ce.mean().detach(),
        "kl": kl.mean().detach(),
        "vel_se": v_err.mean().detach(),
        "off_se": o_err.mean().detach(),
        "acc": acc,
    }
