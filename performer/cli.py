"""The ``drum-performer`` command.

``drum-performer [live options]`` plays live; subcommands: ``sample``, ``train``,
``export``, ``eval``, ``ports``. Training, evaluation of a run and export need
the ``train`` extra (torch); they are imported only when asked for, so the live
and sample paths start fast and never load torch.

Every expected failure is one ``drum-performer: error: ...`` line on stderr and
a non-zero exit; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from model.errors import DrumPerformerError
from model.paths import check_dir, check_file

PROG = "drum-performer"
SUBCOMMANDS = ("sample", "styles", "train", "export", "eval", "ports", "live", "humanize", "drumify", "train-tap")


class UserError(DrumPerformerError):
    """Anything the user can fix: printed as one line, exit status 1."""


def _die(msg: str, code: int = 1) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return code


def number(kind: type = float, lo: float | None = None, hi: float | None = None, what: str = ""):
    """An argparse type: a finite int/float within [lo, hi], with a one-line message otherwise."""

    def show(x: float) -> str:
        # whole-number limits in full: 4294957295, not 4.29496e+09
        return str(int(x)) if kind is int or float(x).is_integer() else f"{x:g}"

    def conv(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a {'whole number' if kind is int else 'number'}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{s!r} is not a finite number")
        if lo is not None and hi is not None and not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{s} is outside {show(lo)}..{show(hi)}{what}")
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"{s} must be at least {show(lo)}{what}")
        return v

    return conv


_positive_int = number(int, 1)
_nonneg_float = number(float, 0)
_bpm = number(float, 20, 400, " BPM")


# --- train ------------------------------------------------------------------


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on GMD or any folder of drum MIDI (needs the train extra)")
    p.add_argument("--data", required=True, help="dataset folder (GMD with info.csv, or any drum MIDI)")
    p.add_argument("--run", required=True, help="run folder to write (config, checkpoints, metrics)")
    p.add_argument("--preset", default="default", help="model/training preset: tiny, default")
    p.add_argument("--steps", type=_positive_int, help="optimiser steps (default: the preset's)")
    p.add_argument("--batch-size", type=_positive_int, help="windows per step (default: the preset's)")
    p.add_argument("--lr", type=_nonneg_float, help="Adam learning rate (default 1e-4, the original design)")
    p.add_argument("--seed", type=number(int, 0), help="random seed, 0 or more (default 0)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a --run folder that holds a run or other files (the old run's files go)")
    p.add_argument("--init", help="start from the weights of this finished run folder (a warm start)")
    p.add_argument("--cache", help="preprocessing cache folder (default: the user cache dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=_cmd_train)


def _need_torch(what: str) -> None:
    # find_spec, not import: the check itself must not load torch into the process
    from importlib.util import find_spec

    if find_spec("torch") is None:
        raise UserError(
            f"{what} needs PyTorch: pip install 'drum-performer[train]' (CPU: pip install torch==2.13.0 first)"
        )


def _cmd_train(a) -> int:
    _need_torch("train")
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


# --- export -----------------------------------------------------------------


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="run folder -> ONNX model folder for the live loop (needs the train extra)")
    p.add_argument("--run", required=True, help="trained run folder")
    p.add_argument("--out", required=True, help="model folder to write (replaced only if parity passes)")
    p.add_argument("--data", help="training data, if the run has no attributes.json yet (default: the run's)")
    p.add_argument("--eval-json", help="eval report whose figures go into the metadata (default: RUN/eval/test.json)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(a) -> int:
    _need_torch("export")
    from export import exporter

    meta = exporter.export(a.run, a.out, data=a.data, eval_json=a.eval_json)
    par = meta["parity"]
    print(
        f"exported {a.run} -> {a.out}: parity ok ({par['samples']} samples x 3 modes, class mismatches "
        f"{par['class_mismatches']}, max velocity diff {par['max_velocity_diff']:.2e})"
    )
    return 0


# --- eval -------------------------------------------------------------------


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="quality report of a model on a data split (JSON + Markdown + PNG)")
    p.add_argument("--run", help="run folder (needs torch); without it, the exported --model is scored")
    p.add_argument("--model", help="exported model folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--json", required=True, help="report file; .md and .png are written beside it")
    p.add_argument("--samples", type=_positive_int, default=1000, help="prior samples for the statistics")
    p.add_argument("--temperature", type=_nonneg_float, help="sampling temperature of the prior samples (default 0.5, the product's)")
    p.add_argument("--limit", type=_positive_int, help="score only the first N windows (quick checks)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="seed of the prior samples, 0 or more")
    p.add_argument("--cache", help="preprocessing cache folder")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(a) -> int:
    from pathlib import Path

    from train import data, evaluate

    check_file(a.json, "--json")
    if a.cache is not None:
        check_dir(a.cache, "--cache")
    tracks, summary = data.preprocess(a.data, a.cache)
    metrics = None
    if a.run:
        _need_torch("eval --run")
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


# --- main -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one error line (and where to look), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="An AI drummer that follows your DAW's MIDI clock. "
        "Without a subcommand it plays live (see 'drum-performer live --help').",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", metavar="{live,sample,styles,train,export,eval,ports}")
    from performer import offline

    offline.add_parser(sub, _positive_int, _nonneg_float, _bpm)
    offline.add_styles_parser(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_export(sub)
    from performer import live_cli

    live_cli.add_parsers(sub)
    from performer import band_cli  # humanize, drumify, train-tap (issue 9)

    band_cli.add_parsers(sub, _positive_int, _nonneg_float, _bpm)
    for hook in _EXTRA_PARSERS:
        hook(sub)
    return p


# Later modules register their subcommands here (keeps this file the one entry point).
_EXTRA_PARSERS: list = []


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # No subcommand (or only options) means the live performer; -v before the live
    # options (``-v --bpm 120``) is still the top-level flag, so "live" goes after it.
    i = 0
    while i < len(argv) and (argv[i] == "--verbose" or re.fullmatch(r"-v+", argv[i])):
        i += 1
    if i == len(argv) or (argv[i] not in SUBCOMMANDS and argv[i] not in ("-h", "--help")):
        argv = [*argv[:i], "live", *argv[i:]]
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(a.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return a.func(a)
    except DrumPerformerError as e:
        return _die(str(e), getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1

if __name__ == "__main__":
    sys.exit(main())
