"""The training loop: single process, or DistributedDataParallel under torchrun.

Run folder (the only hand-off to export and eval):

* ``config.json``      RunConfig (model + train settings, preset name, data folder)
* ``checkpoint.pt``    last state for ``--resume`` (model, optimiser, schedule, step)
* ``model.pt``         best weights on validation (``select``), float16 (what export reads)
* ``metrics.jsonl``    one JSON object per log/eval line

Every random draw at a step is seeded from (seed, step, rank), so resuming from
a checkpoint continues exactly as if training had never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model import drums
from model.config import RunConfig
from model.errors import DrumPerformerError
from model.fileio import atomic_write, atomic_write_text
from model.vae import GrooveVAE, losses
from train.data import WindowSet, preprocess, style_counts
from train.evaluate import features
from train.prior import PRIOR

log = logging.getLogger(__name__)

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"
METRICS = "metrics.jsonl"
ATTRIBUTES = "attributes.json"  # latent attribute vectors, from the training windows


class TrainError(DrumPerformerError):
    """Training cannot go on; the message is one line for the user."""


@dataclass
class TrainResult:
    metrics: dict  # the last logged values (train and validation)
    model: nn.Module  # the final weights of this process (not the best ones)
    rank: int


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the torchrun process group when launched by torchrun; else single process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return Dist(device=dev)
    import torch.distributed as tdist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        tdist.init_process_group("nccl")
        dev = torch.device("cuda", local)
    else:
        tdist.init_process_group("gloo")
        dev = torch.device("cpu")
    return Dist(rank, world, dev)


def atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_run_config(run: Path) -> RunConfig:
    p = Path(run) / CONFIG
    if not p.exists():
        raise TrainError(f"no run folder at {run} (missing {CONFIG})")
    try:
        return RunConfig.from_dict(json.loads(p.read_text()))
    except (ValueError, TypeError) as e:
        raise TrainError(f"{p} is not a valid run config: {e}") from None


def _reason(e: Exception) -> str:
    """The first sentence of torch's (often many-line) load error: the rest is advice for developers."""
    text = str(e).strip()
    return (text.splitlines()[0].split(". ")[0] if text else "") or type(e).__name__


def load_model(run: Path, weights: str = WEIGHTS) -> tuple[GrooveVAE, RunConfig]:
    """Rebuild the model from the run folder alone (config + weights)."""
    cfg = load_run_config(run)
    path = Path(run) / weights
    if not path.exists():
        raise TrainError(f"run folder {run} has no {weights} (train it first)")
    model = GrooveVAE(cfg.model)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainError(f"{path} is not a readable weights file ({_reason(e)}); is it cut short?") from None
    state = state.get("model", state)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError:
        raise TrainError(
            f"{path} does not match the model in {run}/{CONFIG} (checkpoint from another config?)"
        ) from None
    model.eval()
    return model, cfg


@torch.no_grad()
def compute_attributes(model: GrooveVAE, windows, batch: int = 512) -> dict[str, list[float]]:
    """Latent directions: mean z of the top quarter minus the bottom quarter, per feature."""
    mus = []
    for a in range(0, len(windows), batch):
        b = windows.batch(np.arange(a, min(len(windows), a + batch)))
        mu, _ = model.encoder(
            torch.from_numpy(b["classes"]), torch.from_numpy(b["velocity"]), torch.from_numpy(b["offset"])
        )
        mus.append(mu.numpy())
    mu = np.concatenate(mus)  # (W, Z)
    f = features(windows.hits > 0.5)
    named = {"density": f["onsets_per_bar"], "syncopation": f["syncopation"]}
    out = {}
    for name, val in named.items():
        order = np.argsort(val, kind="stable")
        q = max(1, len(order) // 4)
        out[name] = (mu[order[-q:]].mean(0) - mu[order[:q]].mean(0)).astype(np.float32).tolist()
    return out


@torch.no_grad()
def compute_prior(model: GrooveVAE, windows, batch: int = 512, seed: int = 0) -> dict:
    """The learned latent prior (train/prior.py) from one posterior sample z ~ q(z | x) of each
    training beat window (the aggregate posterior: the z the decoder was trained on), one
    mixture per style (row 0: all of them), stamped with the weights it belongs to."""
    from train import prior

    beats = np.flatnonzero(~windows.is_fill)
    rng = np.random.default_rng(seed)
    zs = []
    for a in range(0, len(beats), batch):
        b = windows.batch(beats[a : a + batch])
        mu, logvar = model.encoder(
            torch.from_numpy(b["classes"]), torch.from_numpy(b["velocity"]), torch.from_numpy(b["offset"])
        )
        eps = rng.standard_normal(mu.shape).astype(np.float32)
        zs.append(mu.numpy() + np.exp(0.5 * logvar.numpy()) * eps)
    return prior.fit(np.concatenate(zs), windows.style[beats], len(model.config.styles) + 1)


def weights_digest(run: Path) -> str:
    """SHA-256 of the run's model.pt: what its prior and attributes were computed from."""
    import hashlib

    return hashlib.sha256((Path(run) / WEIGHTS).read_bytes()).hexdigest()


def write_prior(run: Path, model: GrooveVAE, windows) -> dict:
    from train import prior

    p = compute_prior(model, windows)
    p["weights_sha256"] = np.array(weights_digest(run))
    prior.save(p, Path(run) / prior.PRIOR)
    return p


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    atomic_write_text("".join(ln + "\n" for ln in keep), path)


CYMBALS = np.array([v in ("closed_hihat", "open_hihat", "crash", "ride") for v in drums.VOICES])  # (V,)


def augment(batch: dict, pool, rng: np.random.Generator, mix: float, drop: float) -> dict:
    """New patterns from real ones, same for input and target (an autoencoder's task).

    mix: cymbals from another random training window (drums from this one);
    drop: one voice removed entirely. Classes are rebuilt from the hits.
    """
    hits, vel, off = batch["hits"].copy(), batch["velocity"].copy(), batch["offset"].copy()
    B = len(hits)
    # fill windows stay as played: their encoder input is another bar 4 (see WindowSet)
    beat = ~(batch["fill"][:, -1] > 0) if "fill" in batch else np.ones(B, bool)
    if mix > 0:
        who = np.flatnonzero((rng.random(B) < mix) & beat)
        if len(who):
            other = pool.batch(rng.integers(0, len(pool), len(who)))
            for k, arr in (("hits", hits), ("velocity", vel), ("offset", off)):
                arr[who] = np.where(CYMBALS, other[k], arr[who])  # (W, T, V)
    if drop > 0:
        who = np.flatnonzero((rng.random(B) < drop) & beat)
        voice = rng.integers(0, drums.NUM_VOICES, len(who))
        for arr in (hits, vel, off):
            arr[who, :, voice] = 0.0
    classes = drums.hits_to_index(hits > 0.5)
    keep = (classes != 0).any(axis=1)  # never train on a window the augmentation emptied
    if not keep.all():
        for arr, src in ((hits, batch["hits"]), (vel, batch["velocity"]), (off, batch["offset"])):
            arr[~keep] = src[~keep]
        classes = drums.hits_to_index(hits > 0.5)
    out = {**batch, "classes": classes, "velocity": vel, "offset": off, "hits": hits}
    if "enc_classes" in batch:  # a beat window's encoder sees what it must reconstruct
        out["enc_classes"] = np.where(beat[:, None], classes, batch["enc_classes"])
        out["enc_velocity"] = np.where(beat[:, None, None], vel, batch["enc_velocity"])
        out["enc_offset"] = np.where(beat[:, None, None], off, batch["enc_offset"])
    return out


def _batch_to(batch: dict, dev: torch.device) -> dict:
    return {k: torch.from_numpy(v).to(dev) for k, v in batch.items()}


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(n)


def _batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """Global batch `step` of an endless sequence of shuffled epochs (no state to save)."""
    per_epoch = max(1, n // batch)
    epoch, i = divmod(step, per_epoch)
    return _epoch_order(seed, epoch, n)[i * batch : (i + 1) * batch]


def _mixed_indices(seed: int, step: int, ws: WindowSet, batch: int, fill_share: float) -> np.ndarray:
    """Batch `step`: beat windows in shuffled epochs, plus ``fill_share`` of the batch drawn
    from the fill windows (they are ~11 % of GMD's windows and the only place fills are seen)."""
    beats, fills = np.flatnonzero(~ws.is_fill), np.flatnonzero(ws.is_fill)
    nf = int(round(fill_share * batch)) if len(fills) else 0
    idx = beats[_batch_indices(seed, step, len(beats), batch - nf)]
    if nf:
        idx = np.concatenate([idx, np.random.default_rng((seed, step, 7)).choice(fills, nf)])
    return idx


def choose_styles(tracks, min_windows: int) -> list[str]:
    """The genres with at least ``min_windows`` training windows, alphabetical (index order)."""
    from train.data import ANY_STYLE

    counts = style_counts(tracks)
    return sorted(s for s, n in counts.items() if n >= min_windows and s != ANY_STYLE)


@torch.no_grad()
def warm_start(model: GrooveVAE, run: Path) -> int:
    """Copy another run's weights into ``model``. A tensor that grew (an input added to the
    conductor) keeps the old values in its leading slice and zeros elsewhere, so the new
    inputs start with no effect and the warm model plays exactly like the old one.
    Returns the number of tensors copied."""
    path = Path(run) / WEIGHTS
    if not path.exists():
        raise TrainError(f"cannot start from {run}: it has no {WEIGHTS}")
    try:
        old = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a cut or foreign file: torch raises many types
        raise TrainError(f"cannot start from {run}: cannot read {path} ({_reason(e)})") from None
    n = 0
    for k, t in model.state_dict().items():
        if k not in old:
            continue
        o = old[k].float()
        if o.shape == t.shape:
            t.copy_(o)
        elif o.dim() == t.dim() and all(a <= b for a, b in zip(o.shape, t.shape, strict=True)):
            t.zero_()
            t[tuple(slice(0, a) for a in o.shape)] = o
        else:
            raise TrainError(f"cannot start from {run}: {k} has shape {tuple(o.shape)}, this model {tuple(t.shape)}")
        n += 1
    return n


@torch.no_grad()
def validate(model: GrooveVAE, ws: WindowSet, cfg: RunConfig, dev: torch.device, limit: int = 2048) -> dict:
    model.eval()
    torch.manual_seed(12345)  # the same z noise every validation
    n = min(len(ws), limit)
    tot: dict[str, float] = {}
    bs = 256
    for a in range(0, n, bs):
        b = _batch_to(ws.batch(np.arange(a, min(n, a + bs))), dev)
        _, st = losses(model, b, cfg.train.beta, cfg.train)
        k = len(b["classes"])
        for key, v in st.items():
            tot[key] = tot.get(key, 0.0) + float(v) * k
    # free-running argmax reconstruction from the posterior mean (the recon_accuracy of eval)
    correct, m = 0, min(n, 512)
    for a in range(0, m, bs):
        b = _batch_to(ws.batch(np.arange(a, min(m, a + bs))), dev)
        mu, _ = model.encoder(b["enc_classes"], b["enc_velocity"], b["enc_offset"])
        noise = torch.zeros(len(mu), cfg.model.steps, cfg.model.num_classes, device=dev)
        pred, _, _ = model.sample(mu, 0.0, noise, style=b["style"], fill=b["fill"])
        correct += int((pred == b["classes"]).sum())
    model.train()
    out = {f"val_{k}": v / n for k, v in tot.items()}
    out["val_recon"] = correct / (m * cfg.model.steps)
    return out


RUN_FILES = frozenset({CONFIG, CHECKPOINT, WEIGHTS, METRICS, ATTRIBUTES, PRIOR, "eval"})
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "step", "best")
WEIGHTS_DIGEST = "weights_sha256"  # in attributes.json: the model.pt the vectors were computed from


class TrainInterrupted(TrainError):
    """Stopped by a signal after saving a checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, msg: str, exit_code: int) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


def _is_run_config(path: Path) -> bool:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and isinstance(d.get("model"), dict) and isinstance(d.get("train"), dict)


def check_run_folder(run: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse, before any data is read or any file written, what would clobber the user's work.

    A finished run (model.pt with or without checkpoint.pt) is continued only
    with ``resume`` and started again only with ``overwrite``; a folder holding
    anything that is not a run's file is never trained into without
    ``overwrite``. Looking only for checkpoint.pt (as before) let a new run
    replace a finished run's model.pt and a user's own config.json.
    """
    if cfg.train.seed < 0:
        raise TrainError(f"seed {cfg.train.seed} must be 0 or more")
    if resume and overwrite:
        raise TrainError("--resume continues a run and --overwrite starts it again: give one")
    if run.exists() and not run.is_dir():
        raise TrainError(f"--run {run} exists and is not a folder")
    if resume:
        if not (run / CHECKPOINT).exists():
            raise TrainError(f"nothing to resume: {run / CHECKPOINT} does not exist")
        return
    names = {p.name for p in run.iterdir() if not p.name.endswith(".tmp")} if run.exists() else set()
    if not names or overwrite:
        return
    foreign = sorted(names - RUN_FILES)
    if CONFIG in names and not _is_run_config(run / CONFIG):
        foreign.insert(0, CONFIG)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise TrainError(
            f"{run} is not a run folder (it holds {shown}); give a new or empty --run folder, "
            "or --overwrite to train into it anyway"
        )
    raise TrainError(
        f"{run} already holds a run; use --resume to continue it, --overwrite to start it again, "
        "or another --run folder"
    )


def clear_run(run: Path) -> None:
    """--overwrite: remove the old run's files (only ours), so nothing of it is appended to or kept."""
    for name in (CHECKPOINT, WEIGHTS, METRICS, ATTRIBUTES, PRIOR):
        (run / name).unlink(missing_ok=True)


def load_checkpoint(run: Path, steps: int, device) -> dict:
    """The checkpoint to resume from, checked: readable, complete, and not already finished."""
    path = run / CHECKPOINT
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # torch raises many types for a cut or foreign file
        raise TrainError(
            f"cannot read the checkpoint {path} ({_reason(e)}); it may be cut short: "
            "start again with --overwrite, or use another --run folder"
        ) from None
    if not isinstance(ck, dict) or any(k not in ck for k in CHECKPOINT_KEYS):
        raise TrainError(f"{path} is not a checkpoint of this program (it lacks {', '.join(CHECKPOINT_KEYS)})")
    if ck["step"] >= steps:
        raise TrainError(
            f"{run} finished at step {ck['step']} of {steps}; to train on, --resume with --steps above {ck['step']}"
        )
    return ck


def write_attributes(run: Path, model: GrooveVAE, windows) -> dict:
    """Attribute vectors of ``model`` (the model.pt in ``run``), stored with that file's digest.

    Always recomputed at the end of training (not only when missing): after
    --resume or --overwrite the old vectors belong to other weights. Export
    checks the digest and recomputes on a mismatch.
    """
    attrs = compute_attributes(model, windows)
    atomic_write_text(json.dumps({**attrs, WEIGHTS_DIGEST: weights_digest(run)}), run / ATTRIBUTES)
    return attrs


def catch_stop_signals(flag: dict) -> dict:
    """SIGINT/SIGTERM set ``flag["signal"]``; the loop then checkpoints and stops.

    A signal mid-step must not lose the steps since the last checkpoint (up to
    ckpt_every of them). A second signal stops at once (KeyboardInterrupt), for
    a user who will not wait. Only the main thread can install handlers.
    Returns the old handlers, for restore_signals.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if flag.get("signal"):
            raise KeyboardInterrupt
        flag["signal"] = signum

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)


def _signalled(flag: dict, dist: Dist) -> int:
    """The signal that stops the run (0: none), the same on every rank so none waits alone."""
    sig = int(flag.get("signal") or 0)
    if dist.world > 1:
        import torch.distributed as tdist

        t = torch.tensor([sig], device=dist.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        sig = int(t.item())
    return sig


@dataclass
class _State:
    """What a training run carries from step to step (and what a checkpoint holds)."""

    model: GrooveVAE
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    best: float = math.inf  # lowest selection score so far (validation loss, or minus val_recon)

    def checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "step": self.step, "best": self.best}


def _load_windows(data, cache_dir, cfg: RunConfig, resume: bool, on_summary) -> tuple:
    """Stage 1: the dataset -> training and validation windows (and the styles, on a new run)."""
    tc = cfg.train
    tracks, summary = preprocess(data, cache_dir)
    if on_summary:
        on_summary(summary.lines())
    if cfg.model.style_embed and not cfg.model.styles and not resume:
        cfg.model.styles = choose_styles(tracks["train"], tc.min_style_windows)
    train_ws = WindowSet(tracks["train"], cfg.model.styles, fills=cfg.model.fills)
    val_ws = WindowSet(tracks["validation"], cfg.model.styles, fills=cfg.model.fills)
    if len(train_ws) < tc.batch_size:
        raise TrainError(f"only {len(train_ws)} training windows, fewer than one batch of {tc.batch_size}")
    return tracks, summary, train_ws, val_ws


def _build(cfg: RunConfig, dist: Dist, ck: dict | None) -> _State:
    """Stage 2: the model, optimiser and schedule, fresh (or warm-started) or from a checkpoint."""
    tc = cfg.train
    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    model = GrooveVAE(cfg.model).to(dist.device)
    if tc.init and ck is None:
        warm_start(model, Path(tc.init))
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.steps, eta_min=tc.lr_min)
    state = _State(model, opt, sched)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        sched.T_max = tc.steps  # resuming with more steps stretches the schedule
        state.step, state.best = ck["step"], ck["best"]
    return state


def _write_config(run: Path, cfg: RunConfig, summary, tracks, overwrite: bool) -> None:
    """A new run's config.json: the settings plus what data they saw (rank 0)."""
    run.mkdir(parents=True, exist_ok=True)
    if overwrite:
        clear_run(run)
    d = cfg.to_dict()
    d["data"] = {"folder": summary.folder, "source": summary.source, "windows": summary.windows,
                 "fill_windows": summary.fill_windows, "style_windows": style_counts(tracks["train"])}
    atomic_write_text(json.dumps(d, indent=2), run / CONFIG)


def _train_step(net: nn.Module, s: _State, ws: WindowSet, tc, dist: Dist, run: Path) -> dict:
    """Stage 3: one optimiser step on batch ``s.step``; every random draw seeded from
    (seed, step, rank), so a resumed run takes exactly the same steps."""
    per_rank = tc.batch_size // dist.world
    idx = _mixed_indices(tc.seed, s.step, ws, tc.batch_size, tc.fill_share)
    idx = idx[dist.rank * per_rank : (dist.rank + 1) * per_rank]
    nb = ws.batch(idx)
    rng = np.random.default_rng((tc.seed, s.step, dist.rank))
    if tc.mix_groups > 0 or tc.drop_voice > 0:
        nb = augment(nb, ws, rng, tc.mix_groups, tc.drop_voice)
    if tc.style_dropout > 0:
        nb["style"] = np.where(rng.random(len(idx)) < tc.style_dropout, 0, nb["style"])
    batch = _batch_to(nb, dist.device)
    torch.manual_seed(hash((tc.seed, s.step, dist.rank)) & 0x7FFFFFFF)
    beta = tc.beta * min(1.0, s.step / max(1, tc.beta_anneal_steps))
    loss, st = losses(net, batch, beta, tc)
    if not torch.isfinite(loss):
        raise TrainError(
            f"loss became {float(loss.detach())} at step {s.step + 1}; stopped, the last good checkpoint "
            f"in {run} is kept (try a lower --lr)"
        )
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), tc.grad_clip)
    if not torch.isfinite(gnorm):
        raise TrainError(
            f"gradient became {float(gnorm)} at step {s.step + 1}; stopped, the last good checkpoint "
            f"in {run} is kept (try a lower --lr)"
        )
    s.opt.step()
    s.sched.step()
    s.step += 1
    out = {k: float(v) for k, v in st.items()}
    out.update(step=s.step, beta=beta, lr=s.sched.get_last_lr()[0])
    return out


def _validate_and_select(s: _State, val_ws: WindowSet, cfg: RunConfig, dist: Dist, run: Path, train_loss: float) -> dict:
    """Stage 4: validation; model.pt keeps the best weights so far (``select``), float16."""
    v = validate(s.model, val_ws, cfg, dist.device) if len(val_ws) else {}
    v["step"] = s.step
    # lower is better: validation loss, or minus free-running reconstruction accuracy
    score = -v["val_recon"] if cfg.train.select == "val_recon" and "val_recon" in v else v.get("val_loss", train_loss)
    if score < s.best and dist.main:
        s.best = score
        sd = {k: t.detach().to("cpu", torch.float16) for k, t in s.model.state_dict().items()}
        atomic_save(sd, run / WEIGHTS)
    return v


def train(
    data: str | Path,
    run: str | Path,
    cfg: RunConfig,
    resume: bool = False,
    cache_dir: str | Path | None = None,
    on_progress: Callable[[int, int, dict], None] | None = None,
    on_summary: Callable[[list[str]], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train (or resume) a run. Raises TrainError / DataError.

    The stages, in order: look at the run folder; windows (:func:`_load_windows`);
    model and optimiser (:func:`_build`); config.json; the step loop
    (:func:`_train_step`, metrics, :func:`_validate_and_select`, checkpoints,
    signals); the best weights' attributes and prior.

    ``overwrite``: start again in a folder that holds a run or other files
    (the old run's files are removed). A SIGINT/SIGTERM saves a checkpoint and
    raises TrainInterrupted.
    """
    run = Path(run)
    dist = setup_distributed()
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    check_run_folder(run, cfg, resume, overwrite)
    if dist.world > 1:  # every rank has looked before rank 0 writes the first file
        import torch.distributed as tdist

        tdist.barrier()
    # the caller passes the run's saved config on resume (see load_run_config), maybe with more steps
    ck = load_checkpoint(run, tc.steps, dist.device) if resume else None
    tracks, summary, train_ws, val_ws = _load_windows(data, cache_dir, cfg, resume, on_summary if dist.main else None)
    if tc.batch_size % dist.world:
        raise TrainError(f"batch size {tc.batch_size} is not divisible by {dist.world} processes")
    s = _build(cfg, dist, ck)
    if dist.main:
        if ck is not None:
            _truncate_metrics(run / METRICS, s.step)
        else:
            _write_config(run, cfg, summary, tracks, overwrite)

    net: nn.Module = nn.parallel.DistributedDataParallel(s.model) if dist.world > 1 else s.model
    eval_every = tc.eval_every or max(1, len(train_ws) // tc.batch_size)  # 0: once per epoch
    metrics_f = open(run / METRICS, "a") if dist.main else None  # noqa: SIM115
    last: dict = {}
    t0, seen0 = time.perf_counter(), s.step

    def emit(rec: dict) -> None:
        if metrics_f:
            metrics_f.write(json.dumps(rec) + "\n")
            metrics_f.flush()

    def checkpoint() -> None:
        if dist.main:
            atomic_save(s.checkpoint(), run / CHECKPOINT)

    stop: dict = {}
    old_handlers = catch_stop_signals(stop)
    try:
        s.model.train()
        while s.step < tc.steps:
            last = _train_step(net, s, train_ws, tc, dist, run)
            if s.step % tc.log_every == 0 or s.step == tc.steps:
                last["windows_per_s"] = (s.step - seen0) * tc.batch_size / max(time.perf_counter() - t0, 1e-9)
                emit(last)
            if on_progress and dist.main:
                on_progress(s.step, tc.steps, last)
            if s.step % eval_every == 0 or s.step == tc.steps:
                v = _validate_and_select(s, val_ws, cfg, dist, run, last["loss"])
                emit(v)
                last.update(v)
            if s.step % tc.ckpt_every == 0 or s.step == tc.steps:
                checkpoint()
            sig = _signalled(stop, dist)
            if sig:
                checkpoint()
                raise TrainInterrupted(
                    f"stopped at step {s.step} of {tc.steps} by {signal.Signals(sig).name}, checkpoint saved; "
                    f"resume with: drum-performer train --data {data} --run {run} --resume",
                    128 + sig,
                )
        if dist.main and (run / WEIGHTS).exists():
            best_model, _ = load_model(run)
            write_attributes(run, best_model, train_ws)
            write_prior(run, best_model, train_ws)
        if dist.world > 1:
            # No process leaves before the run folder is whole: torchrun ends every process as
            # soon as one exits with an error, and one CI run lost the prior so (rank 1 aborted
            # at exit, "terminate called without an active exception", while rank 0 wrote it).
            tdist.barrier()
    finally:
        restore_signals(old_handlers)
        if metrics_f:
            metrics_f.close()
        if dist.world > 1:
            tdist.destroy_process_group()
    return TrainResult(last, s.model, dist.rank)
