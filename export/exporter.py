"""Run folder -> exported model folder (ONNX graphs + metadata JSON), with a parity gate.

Exported folder (the only thing the performer reads):

* ``sampler.onnx``  z (B, Z), temperature (1,), noise (B, T, C), [mask (B, T, C) bool]
                    -> classes (B, T) int64, velocity (B, T, V), offset (B, T, V)
* ``encoder.onnx``  classes (B, T) int64, velocity (B, T, V), offset (B, T, V) -> mu, logvar (B, Z)
* ``model.json``    vocabulary, sizes, attribution, metrics, attribute vectors, file hashes

The folder's contract (names, format, fields, graph inputs and outputs) is
:mod:`model.bundle`, the same module the engine reads it with; a new folder
is checked by the engine's own loader before it replaces anything.

Weights are stored as float16 where that is exact (the run's weights are
float16 already) and cast to float32 inside the graph (:func:`store_float16`),
so the files are half the size and torch vs ONNX Runtime parity is unaffected. Export writes into a
temporary folder and renames it into place only after parity passes.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.graphs import EncoderGraph, Sampler, condition_inputs, max_diff, store_float16
from model import bundle, drums, paths
from model.bundle import ENCODER, SAMPLER
from model.bundle import META as META  # noqa: I001 (exporter.META, like .SAMPLER/.ENCODER, for callers)
from model.errors import DrumPerformerError
from model.vae import GrooveVAE, gumbel
from performer import engine as runtime
from train import trainer

log = logging.getLogger(__name__)

OPSET = 17
PARITY_ATOL = 1e-4
GMD_ATTRIBUTION = (
    "Groove MIDI Dataset (GMD) v1.0.0 by Jon Gillick, Adam Roberts, Jesse Engel, Douglas Eck and "
    "David Bamman, 'Learning to Groove with Inverse Sequence Transformations', ICML 2019; "
    "licensed under Creative Commons Attribution 4.0 (CC BY 4.0)"
)


class ExportError(DrumPerformerError):
    pass


# --- attribute vectors --------------------------------------------------------


def run_attributes(run: Path, model: GrooveVAE, data: str | None) -> dict:
    """The run's attribute vectors, kept in the run beside the model.pt they were computed from.

    Used only if their stored digest is that of today's model.pt: vectors of
    older weights (a run resumed or retrained, an attributes.json from before
    digests) would steer the live density control the wrong way. Otherwise
    they are computed again from the training windows.
    """
    p = run / trainer.ATTRIBUTES
    if p.exists():
        try:
            stored = json.loads(p.read_text())
        except ValueError:
            stored = None
        if isinstance(stored, dict) and stored.get(trainer.WEIGHTS_DIGEST) == trainer.weights_digest(run):
            return {k: v for k, v in stored.items() if k != trainer.WEIGHTS_DIGEST}
        log.info("%s does not belong to %s: computing it again", p, trainer.WEIGHTS)
    if data is None:
        cfg = json.loads((run / trainer.CONFIG).read_text())
        data = cfg.get("data", {}).get("folder")
    if not data or not Path(data).exists():
        raise ExportError(
            f"{run} has no {trainer.ATTRIBUTES} of its {trainer.WEIGHTS} and its training data is not at {data!r}: pass --data DIR"
        )
    from train.data import WindowSet, preprocess

    tracks, _ = preprocess(data)
    # the windows training used at its end, so a recomputed vector equals the trainer's
    ws = WindowSet(tracks["train"], model.config.styles, fills=model.config.fills)
    return trainer.write_attributes(run, model, ws)


def run_prior(run: Path, model: GrooveVAE, data: str | None) -> dict:
    """The run's learned latent prior, refitted when it is missing or belongs to other weights."""
    from train import prior

    p = run / prior.PRIOR
    if p.exists():
        arrays = prior.load(p)
        if arrays.get("weights_sha256") == trainer.weights_digest(run):
            return arrays
        log.info("%s belongs to other weights: refitting", p)
    cfg = json.loads((run / trainer.CONFIG).read_text())
    data = data or cfg.get("data", {}).get("folder")
    if not data or not Path(data).exists():
        raise ExportError(f"{run} has no current {prior.PRIOR} and its training data is not at {data!r}: pass --data DIR")
    from train.data import WindowSet, preprocess

    tracks, _ = preprocess(data)
    ws = WindowSet(tracks["train"], model.config.styles, fills=model.config.fills)
    return trainer.write_prior(run, model, ws)


# --- ONNX -------------------------------------------------------------------


def _trace(module, args, path: Path, inputs, outputs, dynamic) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about python loops is expected: we unroll
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=False,  # keep raw (float16-exact) weights; ORT folds at load
        )


def _default_mask(model: onnx.ModelProto, steps: int, classes: int) -> None:
    """Give the mask input a default (all allowed), making it optional for callers."""
    model.graph.initializer.append(
        numpy_helper.from_array(np.ones((1, steps, classes), dtype=bool), "mask")
    )


def check_parity(model: GrooveVAE, folder: Path, n: int = 16, seed: int = 0) -> dict:
    """torch vs ONNX Runtime on random z and noise (T=1, T=0 and a masked case)."""
    c = model.config
    sess_s, sess_e = runtime.session(folder / SAMPLER), runtime.session(folder / ENCODER)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c.z, generator=g)
    noise = gumbel((n, c.steps, c.num_classes), generator=g)
    rng = np.random.default_rng(seed)
    mask = torch.from_numpy(rng.random((n, c.steps, c.num_classes)) < 0.3)
    mask[..., 0] = True  # a rest is always allowed, so no step is empty
    report = {"samples": n, "class_mismatches": 0, "max_velocity_diff": 0.0, "max_offset_diff": 0.0}
    cond = {}
    if c.style_embed:
        cond["style"] = torch.from_numpy(rng.integers(0, len(c.styles) + 1, n))
    if c.fills:
        cond["fill"] = torch.from_numpy((rng.random((n, c.bars)) < 0.5).astype(np.float32))
    for temp, m in ((1.0, None), (0.0, None), (1.0, mask)):
        tc, tv, to = model.sample(z, temp, noise, m, **cond)
        feed = {"z": z.numpy(), "temperature": np.array([temp], np.float32), "noise": noise.numpy()}
        feed.update({k: v.numpy() for k, v in cond.items()})
        if m is not None:
            feed["mask"] = m.numpy()
        oc, ov, oo = sess_s.run(None, feed)
        report["class_mismatches"] += int((oc != tc.numpy()).sum())
        if m is not None and not m.numpy()[np.arange(n)[:, None], np.arange(c.steps)[None, :], oc].all():
            report["mask_violations"] = True
        report["max_velocity_diff"] = max(report["max_velocity_diff"], max_diff(ov, tv.numpy()))
        report["max_offset_diff"] = max(report["max_offset_diff"], max_diff(oo, to.numpy()))
    # encoder on the sampled patterns
    tcls, tvel, toff = model.sample(z, 1.0, noise)
    with torch.no_grad():
        mu, lv = model.encoder(tcls, tvel, toff)
    omu, olv = sess_e.run(None, {"classes": tcls.numpy(), "velocity": tvel.numpy(), "offset": toff.numpy()})
    report["max_mu_diff"] = max_diff(omu, mu.numpy())
    report["max_logvar_diff"] = max_diff(olv, lv.numpy())
    report["ok"] = bool(
        report["class_mismatches"] == 0
        and not report.get("mask_violations")
        and report["max_velocity_diff"] <= PARITY_ATOL
        and report["max_offset_diff"] <= PARITY_ATOL
        and report["max_mu_diff"] <= 1e-3
    )
    return report


is_model_folder = bundle.is_model_folder  # only such a folder may be replaced by an export


def check_out(out: Path, run: Path) -> Path:
    """Where the model folder goes, checked before any work; returns it resolved.

    Raises ExportError for anything export may not replace or cannot create.
    """
    out = paths.check_dir(str(out), "--out").absolute()
    if out.resolve() == Path(run).resolve():
        raise ExportError(f"--out {out} is the run folder itself; give a new folder for the model")
    if out.is_symlink():
        raise ExportError(f"--out {out} is a link; give a new folder for the model")
    if out.exists() and any(out.iterdir()) and not is_model_folder(out):
        raise ExportError(
            f"--out {out} holds files that are not an exported model; export replaces only a "
            "model folder it wrote: give a new or empty folder"
        )
    return out


def export(run: str | Path, out: str | Path, data: str | None = None, eval_json: str | Path | None = None) -> dict:
    """Export a run; returns the metadata written. Raises ExportError (nothing written) on failure."""
    run = Path(run)
    out = check_out(Path(out), run)
    model, cfg = trainer.load_model(run)
    c = cfg.model
    if (c.num_classes, c.num_voices, c.steps) != (drums.NUM_CLASSES, drums.NUM_VOICES, drums.STEPS):
        raise ExportError(f"{run} was trained with another vocabulary (classes {c.num_classes}, steps {c.steps})")
    attrs = run_attributes(run, model, data)
    latent_prior = run_prior(run, model, data)
    tmp = out.with_name(out.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        raise ExportError(f"cannot create the model folder {out}: {e.strerror or e}") from None
    try:
        B = 1
        z = torch.zeros(B, c.z)
        args = (z, torch.ones(1), torch.zeros(B, c.steps, c.num_classes), torch.ones(B, c.steps, c.num_classes, dtype=torch.bool))
        conds = condition_inputs(c)
        cond_args = {"style": torch.zeros(B, dtype=torch.long), "fill": torch.zeros(B, c.bars)}
        _trace(
            Sampler(model).eval(), args + tuple(cond_args[k] for k in conds), tmp / SAMPLER,
            ["z", "temperature", "noise", "mask", *conds], ["classes", "velocity", "offset"],
            {"z": {0: "B"}, "noise": {0: "B"}, "mask": {0: "Bm"}, "classes": {0: "B"}, "velocity": {0: "B"}, "offset": {0: "B"},
             **{k: {0: "B"} for k in conds}},
        )
        enc_args = (torch.zeros(B, c.steps, dtype=torch.long), torch.zeros(B, c.steps, c.num_voices), torch.zeros(B, c.steps, c.num_voices))
        _trace(
            EncoderGraph(model).eval(), enc_args, tmp / ENCODER,
            ["classes", "velocity", "offset"], ["mu", "logvar"],
            {"classes": {0: "B"}, "velocity": {0: "B"}, "offset": {0: "B"}, "mu": {0: "B"}, "logvar": {0: "B"}},
        )
        for name in (SAMPLER, ENCODER):
            m = onnx.load(str(tmp / name))
            store_float16(m)
            if name == SAMPLER:
                _default_mask(m, c.steps, c.num_classes)
            onnx.checker.check_model(m)
            onnx.save(m, str(tmp / name))
        parity = check_parity(model, tmp)
        if not parity["ok"]:
            raise ExportError(f"torch vs ONNX Runtime parity failed, nothing written: {parity}")
        if latent_prior is not None:
            from train import prior

            prior.save({k: latent_prior[k] for k in prior.ARRAYS}, tmp / bundle.PRIOR)
        try:  # checksums of every file present (the prior too), then the engine's own checks
            meta = bundle.write(tmp, _metadata(run, cfg, attrs, parity, eval_json))
            runtime.verify(tmp)
        except (bundle.BundleError, runtime.EngineError) as e:
            raise ExportError(f"the exported folder fails the engine's checks, nothing written: {e}") from None
        _replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the model folder {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the run's tap encoder and humanizer, when trained (train-tap)
    from export.band import add_encoders

    if add_encoders(run, out):
        meta = json.loads((out / META).read_text())
    return meta


def _replace(tmp: Path, out: Path) -> None:
    """Put the finished folder at ``out``; an old model folder there is removed only once
    the new one is in place (checked again here: it may have changed since check_out)."""
    if not out.exists():
        tmp.rename(out)
        return
    if any(out.iterdir()) and not is_model_folder(out):
        raise ExportError(f"--out {out} changed during export and is no longer a model folder; nothing replaced")
    old = out.with_name(out.name + ".old-export")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _metadata(run: Path, cfg, attrs: dict, parity: dict, eval_json) -> dict:
    runcfg = json.loads((run / trainer.CONFIG).read_text())
    data = runcfg.get("data", {})
    is_gmd = data.get("source") == "info.csv"
    metrics = {}
    ej = Path(eval_json) if eval_json else run / "eval" / "test.json"
    if ej.exists():
        rep = json.loads(ej.read_text())
        metrics = {k: rep[k] for k in ("recon_accuracy", "teacher_forced_accuracy", "hit_f1", "sample_oa", "kl", "velocity_mae", "offset_mae") if k in rep}
        metrics["split"] = rep.get("split")
    return {
        "format": bundle.FORMAT,
        "name": run.name,
        "vocabulary": bundle.vocabulary(),
        "z_size": cfg.model.z,
        "styles": list(cfg.model.styles),  # style input i+1 = styles[i]; 0 = "any"
        "fills": bool(cfg.model.fills),  # the sampler has a per-bar fill input
        "style_windows": {k: v for k, v in data.get("style_windows", {}).items() if k in cfg.model.styles},
        "temperature": bundle.temperature(),
        "preset": cfg.preset,
        "model_config": runcfg.get("model", {}),
        "training": {
            "data": "Groove MIDI Dataset v1.0.0" if is_gmd else Path(data.get("folder", "?")).name,
            "windows": data.get("windows"),
            "steps": cfg.train.steps,
        },
        "attribution": GMD_ATTRIBUTION if is_gmd else "trained on the user's own drum MIDI",
        "license": "CC BY 4.0 (training data)" if is_gmd else None,
        "metrics": metrics,
        "attributes": attrs,
        "parity": parity,
    }
