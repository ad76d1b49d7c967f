"""A run folder is the user's work: train never clobbers it, a signal never loses it (issue 11 items 2, 4, 8, 10)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, tiny_train_config

torch = pytest.importorskip("torch", reason="needs the train extra (torch)")

from train import trainer  # noqa: E402
from train.data import WindowSet, preprocess  # noqa: E402


def _cfg(steps=20):
    return tiny_train_config(steps)


def _train_windows(model, data):
    """The training windows as the trainer builds them (styles and fills of the model)."""
    return WindowSet(preprocess(data)[0]["train"], model.config.styles, fills=model.config.fills)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# --- 2: refuse a finished run or foreign files; attributes always match model.pt ---------------


def test_a_finished_run_without_its_checkpoint_is_not_trained_over(tiny_run, tmp_path, gmd_fixture):
    """Like the shipped runs/default: model.pt, config.json, metrics.jsonl, no checkpoint.pt."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "checkpoint.pt").unlink()
    before = _snapshot(run)
    with pytest.raises(trainer.TrainError, match="--overwrite"):
        trainer.train(gmd_fixture, run, _cfg(4))
    assert _snapshot(run) == before


def test_a_folder_of_foreign_files_is_not_trained_into(tmp_path, gmd_fixture):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.json").write_text('{"my": "settings"}')
    (run / "notes.txt").write_text("mine")
    before = _snapshot(run)
    with pytest.raises(trainer.TrainError, match="not a run folder"):
        trainer.train(gmd_fixture, run, _cfg(4))
    assert _snapshot(run) == before


def test_overwrite_starts_the_run_afresh(tiny_run, tmp_path, gmd_fixture):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    trainer.train(gmd_fixture, run, _cfg(5), overwrite=True)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 5  # the old run's lines are gone, not appended to
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 5


def test_attributes_always_belong_to_the_weights_beside_them(tiny_run, tmp_path, gmd_fixture):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    stale = {"density": [9.0] * 8, "syncopation": [9.0] * 8}
    (run / "attributes.json").write_text(json.dumps(stale))  # from older weights
    trainer.train(gmd_fixture, run, _resumed(run, 24), resume=True)
    got = json.loads((run / "attributes.json").read_text())
    model, _ = trainer.load_model(run)
    want = trainer.compute_attributes(model, _train_windows(model, gmd_fixture))
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-5), k


def _resumed(run, steps):
    cfg = trainer.load_run_config(run)
    cfg.train.steps = steps
    cfg.train.threads = 1
    return cfg


def test_export_never_ships_stale_attributes(tiny_run, tmp_path, gmd_fixture):
    from export import exporter

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "attributes.json").write_text(json.dumps({"density": [9.0] * 8, "syncopation": [9.0] * 8}))
    meta = exporter.export(run, tmp_path / "m")
    model, _ = trainer.load_model(run)
    want = trainer.compute_attributes(model, _train_windows(model, gmd_fixture))
    assert meta["attributes"]["density"] == pytest.approx(want["density"], abs=1e-5)
    assert set(meta["attributes"]) == {"density", "syncopation"}


# --- 4: a signal saves a checkpoint and says how to resume ------------------------------------


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_saves_a_checkpoint(tmp_path, gmd_fixture, sig, code):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "performer.cli", "train", "--data", str(gmd_fixture), "--run", str(run),
           "--preset", "tiny", "--steps", "100000", "--threads", "1", "--no-progress"]
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + 120
        # the loop is running once a metrics line is out (tiny logs every 5 steps); stop between checkpoints
        while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
            time.sleep(0.05)
        os.kill(child.pid, sig)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == code, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    step = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert f"stopped at step {step}" in last and "--resume" in last, last
    assert f"--run {run}" in last, last
    # and it does resume from there
    cfg = _resumed(run, step + 2)
    res = trainer.train(gmd_fixture, run, cfg, resume=True)
    assert res.metrics["step"] == step + 2


# --- 8: negative seeds -------------------------------------------------------------------------


def test_negative_seed_leaves_no_half_made_run(tmp_path, gmd_fixture):
    cfg = _cfg(4)
    cfg.train.seed = -1
    with pytest.raises(trainer.TrainError, match="seed"):
        trainer.train(gmd_fixture, tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()


# --- 10: resuming a finished run, a truncated checkpoint ---------------------------------------


def test_resume_of_a_finished_run_is_one_clear_error(tiny_run, tmp_path, gmd_fixture):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = _snapshot(run)
    with pytest.raises(trainer.TrainError, match="finished at step 20"):
        trainer.train(gmd_fixture, run, trainer.load_run_config(run), resume=True)
    assert _snapshot(run) == before


def test_resume_from_a_truncated_checkpoint_is_one_clear_error(tiny_run, tmp_path, gmd_fixture):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ck = run / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    with pytest.raises(trainer.TrainError, match="cannot read the checkpoint"):
        trainer.train(gmd_fixture, run, _resumed(run, 30), resume=True)


# --- 7: a disk that fills during training ------------------------------------------------------


def test_a_full_disk_during_training_is_one_line_and_leaves_no_tmp(tmp_path, gmd_fixture, monkeypatch, capsys):
    """Simulated at the write call: torch.save creates the file, then ENOSPC (as a full disk does)."""
    import errno

    from performer import cli

    real_save = torch.save

    def full(obj, f, *a, **kw):
        if str(f).endswith("checkpoint.pt.tmp"):
            open(f, "wb").close()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    code = cli.main(["train", "--data", str(gmd_fixture), "--run", str(run), "--preset", "tiny", "--threads", "1", "--no-progress"])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"drum-performer: error: cannot write {run / 'checkpoint.pt.tmp'}: No space left on device"
    )
    assert not list(run.glob("*.tmp"))
