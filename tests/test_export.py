import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch)")

from export import exporter  # noqa: E402
from tests.conftest import assert_one_line_error, run_cli  # noqa: E402


def test_export_writes_graphs_metadata_and_passes_parity(tiny_model):
    names = sorted(p.name for p in tiny_model.iterdir())
    assert names == ["encoder.onnx", "model.json", "prior.npz", "sampler.onnx"]
    meta = json.loads((tiny_model / "model.json").read_text())
    assert set(meta["files"]) == {"encoder.onnx", "sampler.onnx", "prior.npz"}
    assert meta["styles"] == ["rock", "soul"] and meta["fills"] is True  # the fixture's training genres
    assert meta["vocabulary"]["output_pitches"] == [36, 38, 42, 46, 43, 47, 50, 49, 51]
    assert meta["vocabulary"]["num_classes"] == 512 and meta["vocabulary"]["steps"] == 64
    assert meta["z_size"] == 8 and meta["preset"] == "tiny"
    assert "Groove MIDI Dataset" in meta["attribution"] and "CC BY 4.0" in meta["attribution"]
    assert len(meta["attributes"]["density"]) == 8
    p = meta["parity"]
    assert p["ok"] and p["class_mismatches"] == 0 and p["max_velocity_diff"] <= 1e-4


def test_sampler_graph_is_lean(tiny_model):
    g = onnx.load(str(tiny_model / "sampler.onnx")).graph
    inputs = [i.name for i in g.input]
    assert inputs[:3] == ["z", "temperature", "noise"] and "mask" in inputs
    assert "style" in inputs and "fill" in inputs  # the tiny preset has both conditions
    assert "mask" in {i.name for i in g.initializer}  # mask has a default: optional for callers
    assert [o.name for o in g.output] == ["classes", "velocity", "offset"]
    ops = [n.op_type for n in g.node]
    assert ops.count("ArgMax") == 64  # one choice per step, unrolled
    assert "OneHot" not in ops  # the one-hot input is a gather
    # weights are stored as float16 (the run's weights are float16-exact)
    halves = [i for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert halves and sum(np.prod(i.dims) for i in halves) > 1000


def test_parity_failure_refuses_to_write(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(exporter, "check_parity", lambda model, folder: {"ok": False, "class_mismatches": 3})
    out = tmp_path / "refused"
    with pytest.raises(exporter.ExportError, match="parity failed"):
        exporter.export(tiny_run, out)
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp-export"))


def test_parity_check_detects_a_wrong_graph(tiny_run, tiny_model):
    """The gate is real: a model with other weights than the graph fails it."""
    from train import trainer

    model, _ = trainer.load_model(tiny_run)
    assert exporter.check_parity(model, tiny_model)["ok"]
    with torch.no_grad():
        model.decoder.head[2].bias.add_(0.01)  # velocities and offsets drift by far more than 1e-4
    assert not exporter.check_parity(model, tiny_model)["ok"]


def test_max_diff_counts_nan_and_inf_as_a_failure():
    """A graph that outputs NaN must fail the gate: NaN > tolerance is False, so a plain max passed it."""
    a = np.zeros((2, 3), np.float32)
    assert exporter.max_diff(a, a + 1e-6) == pytest.approx(1e-6)
    for bad in (np.nan, np.inf):
        b = a.copy()
        b[1, 2] = bad
        assert not exporter.max_diff(b, a) <= exporter.PARITY_ATOL
        assert not exporter.max_diff(a, b) <= exporter.PARITY_ATOL
    assert not exporter.max_diff(a, a[:1]) <= exporter.PARITY_ATOL  # another shape is no match


def test_export_cli(tiny_run, tmp_path):
    p = run_cli("export", "--run", str(tiny_run), "--out", str(tmp_path / "m"))
    assert p.returncode == 0, p.stderr
    assert "parity ok" in p.stdout
    assert (tmp_path / "m" / "model.json").exists()


def test_export_without_data_or_attributes_is_a_clear_error(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "attributes.json").unlink()
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["folder"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(run_cli("export", "--run", str(run), "--out", str(tmp_path / "m")), "--data")


def test_export_checks_the_new_folder_with_the_engine_before_it_replaces_anything(tiny_run, tiny_model, tmp_path, monkeypatch):
    import shutil

    real = exporter._metadata
    monkeypatch.setattr(exporter, "_metadata", lambda *a: {**real(*a), "z_size": 16, "attributes": {}})
    out = tmp_path / "m"
    shutil.copytree(tiny_model, out)  # an earlier export, which a good export may replace
    before = (out / "model.json").read_text()
    with pytest.raises(exporter.ExportError, match="fails the engine's checks.*input 'z'"):
        exporter.export(tiny_run, out)
    assert (out / "model.json").read_text() == before  # the old folder is untouched
    assert not list(tmp_path.glob("*.tmp-export"))
