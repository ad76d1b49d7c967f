import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, assert_one_line_error, run_cli
from train import evaluate

KEYS = ("recon_accuracy", "teacher_forced_accuracy", "hit_f1", "hits_per_voice", "velocity_mae", "offset_mae", "kl", "sample_oa", "sample_oa_per_feature")


def test_overlap_area():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 2000)
    assert evaluate.overlap_area(a, rng.normal(0, 1, 2000)) > 0.9
    assert evaluate.overlap_area(a, rng.normal(5, 1, 2000)) < 0.05
    assert evaluate.overlap_area(np.ones(10), np.ones(10)) == 1.0


def test_syncopation_scores_offbeat_onsets_before_silent_beats():
    on_beats = np.zeros((1, 16), bool)
    on_beats[0, ::4] = True
    offbeat = np.zeros((1, 16), bool)
    offbeat[0, [3, 7, 11, 15]] = True  # each followed by a silent stronger position
    assert evaluate.syncopation(on_beats)[0] == 0
    assert evaluate.syncopation(offbeat)[0] > 0


def test_last_bar_density_counts_a_silent_bar_4_as_sparse_even_when_judged_a_fill():
    from model import drums

    hits = np.zeros((2, drums.STEPS, drums.NUM_VOICES), bool)
    hits[:, :48:4, 0] = True  # bars 1-3: kick on every beat
    hits[0, 48:64:2, 1] = True  # window 0, bar 4: 8 snare steps
    hits[0, 60, drums.VOICES.index("crash")] = True  # ... and a crash on one of them
    hits[1, 48, drums.VOICES.index("low_tom")] = True  # window 1, bar 4: one tom hit
    d = evaluate.last_bar_density(hits, np.array([True, True]))
    assert d["bar4_steps"] == pytest.approx((8 + 1) / 2)
    assert d["bar4_toms_crash"] == pytest.approx((1 + 1) / 2)
    assert d["bar4_sparse"] == 0.5 and d["bar4_played_fill"] == 0.5


def test_eval_of_a_run_writes_json_markdown_and_curve(tiny_run, gmd_fixture, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "rep" / "test.json"
    p = run_cli("eval", "--run", str(tiny_run), "--data", str(gmd_fixture), "--split", "test", "--json", str(out), "--samples", "50")
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    for k in KEYS:
        assert k in rep, k
    assert 0 <= rep["recon_accuracy"] <= 1 and 0 <= rep["sample_oa"] <= 1
    assert rep["windows"] == 13 and rep["split"] == "test"
    assert "| recon_accuracy |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_eval_of_an_exported_model_needs_no_torch(tiny_model, gmd_fixture, tmp_path):
    out = tmp_path / "onnx.json"
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import now fails
        "from performer.cli import main\n"
        f"sys.exit(main(['eval', '--model', {str(tiny_model)!r}, '--data', {str(gmd_fixture)!r}, '--json', {str(out)!r}, '--samples', '50']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    assert rep["model"].startswith("exported") and "teacher_forced_accuracy" not in rep
    for k in ("recon_accuracy", "hit_f1", "sample_oa"):
        assert 0 <= rep[k] <= 1


def test_onnx_and_torch_eval_agree(tiny_run, tiny_model, gmd_fixture):
    pytest.importorskip("torch")
    from performer.engine import Engine
    from train import data, trainer

    ws = data.WindowSet(data.preprocess(gmd_fixture)[0]["test"])
    model, _ = trainer.load_model(tiny_run)
    from train import prior

    a = evaluate.evaluate(evaluate.torch_backend(model, prior_arrays=prior.load(tiny_run / prior.PRIOR)), ws, samples=64)
    b = evaluate.evaluate(evaluate.engine_backend(Engine.load(tiny_model)), ws, samples=64)
    for k in ("recon_accuracy", "hit_f1", "sample_oa"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k


def test_eval_bad_input(tmp_path, gmd_fixture):
    assert_one_line_error(run_cli("eval", "--data", str(gmd_fixture), "--json", str(tmp_path / "x.json"), "--model", str(tmp_path)), "not an exported model")
    assert_one_line_error(run_cli("eval", "--data", str(tmp_path / "none"), "--json", str(tmp_path / "x.json")), "does not exist")
