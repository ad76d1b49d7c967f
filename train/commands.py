"""``drum-performer train`` and ``drum-performer eval``: their parsers and runners.

Evaluation lives with training because it scores runs with the same data
pipeline; an exported model is scored through the runtime engine
(:func:`train.evaluate.engine_backend`), which needs numpy and ONNX Runtime
only. Nothing heavy is imported here until a command runs: torch only for
``train`` and ``eval --run``.
"""

from __future__ import annotations

import sys

from model.errors import UserError, need_torch
from model.paths import check_dir, check_file
from model.ranges import NONNEGATIVE, POSITIVE_INT, SEED


def add_parsers(sub) -> None:
    _add_train(sub)
    _add_eval(sub)
    _add_train_tap(sub)


# --- train ------------------------------------------------------------------


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on GMD or any folder of drum MIDI (needs the train extra)")
    p.add_argument("--data", required=True, help="dataset folder (GMD with info.csv, or any drum MIDI)")
    p.add_argument("--run", required=True, help="run folder to write (config, checkpoints, metrics)")
    p.add_argument("--preset", default="default", help="model/training preset: tiny, default")
    p.add_argument("--steps", type=POSITIVE_INT.arg(), help="optimiser steps (default: the preset's)")
    p.add_argument("--batch-size", type=POSITIVE_INT.arg(), help="windows per step (default: the preset's)")
    p.add_argument("--lr", type=NONNEGATIVE.arg(), help="Adam learning rate (default 1e-4, the original design)")
    p.add_argument("--seed", type=SEED.arg(), help="random seed, 0 or more (default 0)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a --run folder that holds a run or other files (the old run's files go)")
    p.add_argument("--init", help="start from the weights of this finished run folder (a warm start)")
    p.add_argument("--cache", help="preprocessing cache folder (default: the user cache dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=run_train)


def run_train(a) -> int:
    need_torch("train")
    from pathlib import Path

    from model.config import preset
    from train import trainer

    run = Path(a.run)
    check_dir(a.run, "--run")
    if a.cache is not None:
        check_dir(a.cache, "--cache")
    if a.resume:
        cfg = trainer.load_run_config(run)
    else:
        try:
            cfg = preset(a.preset)
        except KeyError as e:
            raise UserError(e.args[0]) from None
    for name, val in (("steps", a.steps), ("batch_size", a.batch_size), ("lr", a.lr), ("seed", a.seed), ("threads", a.threads), ("init", a.init)):
        if val is not None:
            setattr(cfg.train, name, val)

    bar = None

    def on_summary(lines):
        for line in lines:
            print(line, file=sys.stderr)

    def on_progress(step, total, st):
        nonlocal bar
        if a.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=step - 1, unit="step", dynamic_ncols=True, file=sys.stderr)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{st['loss']:.2f}", kl=f"{st['kl']:.1f}", acc=f"{st['acc']:.3f}", refresh=False)

    try:
        last = trainer.train(
            a.data, run, cfg, resume=a.resume, cache_dir=a.cache, on_progress=on_progress, on_summary=on_summary,
            overwrite=a.overwrite,
        ).metrics
    except OSError as e:
        raise UserError(f"cannot write {e.filename or run}: {e.strerror or e}") from None
    finally:
        if bar is not None:
            bar.close()
    keys = ("step", "loss", "kl", "acc", "val_loss", "val_acc")
    print(f"done: step {last['step']}, " + ", ".join(f"{k} {last[k]:.4g}" for k in keys[1:] if k in last))
    return 0


# --- eval -------------------------------------------------------------------


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="quality report of a model on a data split (JSON + Markdown + PNG)")
    p.add_argument("--run", help="run folder (needs torch); without it, the exported --model is scored")
    p.add_argument("--model", help="exported model folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--json", required=True, help="report file; .md and .png are written beside it")
    p.add_argument("--samples", type=POSITIVE_INT.arg(), default=1000, help="prior samples for the statistics")
    p.add_argument("--temperature", type=NONNEGATIVE.arg(), help="sampling temperature of the prior samples (default 0.5, the product's)")
    p.add_argument("--limit", type=POSITIVE_INT.arg(), help="score only the first N windows (quick checks)")
    p.add_argument("--seed", type=SEED.arg(), default=0, help="seed of the prior samples, 0 or more")
    p.add_argument("--cache", help="preprocessing cache folder")
    p.set_defaults(func=run_eval)


def run_eval(a) -> int:
    from pathlib import Path

    from train import data, evaluate

    check_file(a.json, "--json")
    if a.cache is not None:
        check_dir(a.cache, "--cache")
    tracks, summary = data.preprocess(a.data, a.cache)
    metrics = None
    if a.run:
        need_torch("eval --run")
        from train import prior, trainer

        model, _ = trainer.load_model(Path(a.run))
        pp = Path(a.run) / prior.PRIOR
        backend = evaluate.torch_backend(model, name=f"run {a.run}", prior_arrays=prior.load(pp) if pp.exists() else None)
        metrics = Path(a.run) / trainer.METRICS
    else:
        from performer.engine import Engine

        backend = evaluate.engine_backend(Engine.load(a.model))
    ws = data.WindowSet(tracks[a.split], backend.styles, fills=backend.fills)
    if len(ws) == 0:
        raise UserError(f"split {a.split!r} of {a.data} has no windows")
    train_ws = data.WindowSet(tracks["train"], backend.styles, fills=backend.fills) if a.split != "train" else ws
    from model.config import SAMPLE_TEMPERATURE

    temperature = SAMPLE_TEMPERATURE if a.temperature is None else a.temperature
    rep = evaluate.evaluate(backend, ws, samples=a.samples, temperature=temperature, seed=a.seed, limit=a.limit,
                            train_windows=train_ws if len(train_ws) else None)
    rep.update(split=a.split, data=summary.folder)
    try:
        paths = evaluate.write_report(rep, Path(a.json), metrics)
    except OSError as e:
        raise UserError(f"cannot write the report {a.json}: {e.strerror or e}") from None
    print(
        f"recon_accuracy {rep['recon_accuracy']:.4f}  hit_f1 {rep['hit_f1']:.4f}  "
        f"sample_oa {rep['sample_oa']:.4f}  kl {rep['kl']:.1f}"
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


# --- train-tap (drumify / humanize encoders) ---------------------------------


def _add_train_tap(sub) -> None:
    p = sub.add_parser("train-tap", help="train the tap (drumify) or humanize encoder into a run's latent space "
                       "(needs the train extra)")
    p.add_argument("--run", required=True, help="trained run folder (its model stays frozen)")
    p.add_argument("--data", required=True, help="dataset folder (GMD)")
    p.add_argument("--kind", choices=("tap", "humanize"), default="tap",
                   help="tap: one-voice onsets -> z; humanize: quantised drums -> velocities and offsets")
    p.add_argument("--steps", type=POSITIVE_INT.arg(), help="optimiser steps (default 3000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--resume", action="store_true", help="continue from the run's weights of this kind")
    p.add_argument("--objective", choices=("mu", "decode"), default="mu",
                   help="tap: match the posterior mean, or also the frozen decoder's cross-entropy (slower)")
    p.add_argument("--lr", type=NONNEGATIVE.arg(), help="Adam learning rate (default 2e-3)")
    p.add_argument("--hidden", type=POSITIVE_INT.arg(), help="BiLSTM units per direction (default 128)")
    p.add_argument("--dropout", type=NONNEGATIVE.arg(), help="humanize: dropout on the BiLSTM outputs while training (default 0)")
    p.add_argument("--members", type=POSITIVE_INT.arg(), help="humanize: networks averaged, each from its own seed (default 1)")
    p.add_argument("--cache", help="preprocessing cache folder")
    p.set_defaults(func=run_train_tap)


def run_train_tap(a) -> int:
    need_torch("train-tap")
    from train import tap

    code = tap.run_cli(a)
    # shipping it is export's job (train never imports export): export puts tap.onnx / humanize.onnx
    # beside the other graphs whenever the run folder holds tap.pt / humanize.pt
    print(f"{a.kind}.pt is in {a.run}; 'drum-performer export --run {a.run} --out DIR' ships it")
    return code
