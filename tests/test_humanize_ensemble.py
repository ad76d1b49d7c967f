"""The humanizer ensemble (train-tap --kind humanize --members N): one graph whose velocities and
offsets are the mean of N independently seeded humanizers, trained, loaded and exported as one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from model import drums
from tests.conftest import GMD_FIXTURE, need_torch


def test_ensemble_outputs_the_mean_of_its_members():
    need_torch()
    import torch

    from train import tap

    torch.manual_seed(0)
    ens = tap.build("humanize", 8, 4, members=3)
    assert isinstance(ens, tap.Ensemble) and len(ens.members) == 3
    ens.eval()
    x = torch.rand(2, drums.STEPS, tap.input_size("humanize"))
    with torch.no_grad():
        v, o = ens(x)
        each = [m(x) for m in ens.members]
    assert not torch.allclose(each[0][0], each[1][0])  # members start apart
    assert torch.allclose(v, sum(e[0] for e in each) / 3, atol=1e-6)
    assert torch.allclose(o, sum(e[1] for e in each) / 3, atol=1e-6)


def test_dropout_changes_training_only():
    """Dropout has no weights: a humanizer trained with it loads (and exports) as one without."""
    need_torch()
    import torch

    from train import tap

    a = tap.build("humanize", 8, 4, dropout=0.5)
    b = tap.build("humanize", 8, 4)
    assert a.state_dict().keys() == b.state_dict().keys()
    b.load_state_dict(a.state_dict())
    a.eval()
    x = torch.rand(1, drums.STEPS, tap.input_size("humanize"))
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x)[0])


def test_trained_ensemble_loads_and_exports_as_one_graph(tiny_run, tiny_model, tmp_path):
    need_torch()
    from export.band import add_encoder
    from performer import band
    from performer.engine import Engine
    from train import tap

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    s = tap.train(run, GMD_FIXTURE, tap.TapConfig(kind="humanize", hidden=8, steps=3, batch_size=4, members=2,
                                                  dropout=0.3))
    assert {h["member"] for h in s["history"]} == {0, 1}
    enc, summary = tap.load(run, "humanize")
    assert isinstance(enc, tap.Ensemble) and len(enc.members) == 2
    assert summary["config"]["members"] == 2
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    add_encoder(run, out, "humanize")
    e = Engine.load(out)
    classes = np.random.default_rng(0).integers(0, drums.NUM_CLASSES, (2, drums.STEPS))
    v, o = band.humanize_arrays(e, classes)
    hits = drums.index_to_hits(classes)
    assert v.shape == hits.shape and (v[hits] > 0).all() and (v[~hits] == 0).all() and (o[~hits] == 0).all()


def test_resume_refuses_another_shape(tiny_run, tmp_path):
    need_torch()
    from train import tap

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    tap.train(run, GMD_FIXTURE, tap.TapConfig(kind="humanize", hidden=8, steps=2, batch_size=4))
    with pytest.raises(tap.TapError, match="another shape"):
        tap.train(run, GMD_FIXTURE, tap.TapConfig(kind="humanize", hidden=8, steps=2, batch_size=4, members=2,
                                                  resume=True))


def test_tap_ensemble_with_positions_exports_and_old_encoders_still_load(tiny_run, tiny_model, tmp_path):
    """A tap encoder trained now (positions inside the graph, two members) keeps the (B, T, 3)
    input; one saved before the option (no "positions" in its config) loads without them."""
    need_torch()
    import torch

    from export.band import add_encoder
    from performer import band
    from performer.engine import Engine
    from train import tap

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    tap.train(run, GMD_FIXTURE, tap.TapConfig(kind="tap", hidden=8, steps=2, batch_size=4, members=2))
    enc, summary = tap.load(run, "tap")
    assert isinstance(enc, tap.Ensemble) and all(m.positions for m in enc.members)
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    add_encoder(run, out, "tap")
    e = Engine.load(out)
    taps = np.zeros((3, drums.STEPS, 3), np.float32)
    taps[:, ::4, 0] = 1.0
    z = band.tap_z(e, taps)
    with torch.no_grad():
        assert np.allclose(z, enc(torch.from_numpy(taps)).numpy(), atol=1e-4)
    # an encoder from before the option
    blob = torch.load(run / "tap.pt", weights_only=False)
    old = tap.build("tap", 8, summary["z"])
    cfg = {k: v for k, v in blob["summary"]["config"].items() if k not in ("positions", "members")}
    torch.save({"state": old.state_dict(), "summary": {**blob["summary"], "config": cfg}}, run / "tap.pt")
    again, _ = tap.load(run, "tap")
    assert isinstance(again, tap.TapEncoder) and not again.positions


def test_export_replaces_a_model_folder_that_has_encoders(tiny_run, tiny_model, tmp_path):
    """The shipped folder holds tap.onnx and humanize.onnx: re-exporting into it must work (it
    was refused as 'not an exported model' before those names were a model folder's files)."""
    need_torch()
    from export import exporter
    from export.band import add_encoder
    from model import bundle
    from train import tap

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for kind in tap.KINDS:
        tap.train(run, GMD_FIXTURE, tap.TapConfig(kind=kind, hidden=8, steps=2, batch_size=4))
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    for kind in tap.KINDS:
        add_encoder(run, out, kind)
    assert bundle.is_model_folder(out)
    meta = exporter.export(run, out)
    assert {"tap.onnx", "humanize.onnx"} <= set(meta["files"])
