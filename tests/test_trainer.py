import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, assert_one_line_error, run_cli, tiny_train_config

torch = pytest.importorskip("torch", reason="needs the train extra (torch)")

from model.config import preset  # noqa: E402
from train import trainer  # noqa: E402


def _cfg(steps=20):
    return tiny_train_config(steps)


def _weights(path):
    ck = torch.load(path, weights_only=False)
    return ck.get("model", ck)


def test_tiny_run_folder(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "checkpoint.pt", "model.pt", "metrics.jsonl", "attributes.json"} <= names
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["model"]["z"] == 8 and cfg["data"]["source"] == "info.csv"
    rows = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in rows) and any("windows_per_s" in r for r in rows)
    # export needs nothing but the run folder: the model is rebuilt from config + weights
    model, rc = trainer.load_model(tiny_run)
    assert rc.model.z == 8 and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float16 for v in torch.load(tiny_run / "model.pt").values())


def test_resume_continues_exactly(gmd_fixture, tmp_path):
    straight = tmp_path / "straight"
    trainer.train(gmd_fixture, straight, _cfg(20))

    interrupted = tmp_path / "interrupted"

    def stop_at_13(step, total, st):
        if step == 13:  # past the step-10 checkpoint: the work of steps 11-13 is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.train(gmd_fixture, interrupted, _cfg(20), on_progress=stop_at_13)
    assert torch.load(interrupted / "checkpoint.pt", weights_only=False)["step"] == 10
    trainer.train(gmd_fixture, interrupted, trainer.load_run_config(interrupted), resume=True)

    a, b = _weights(straight / "checkpoint.pt"), _weights(interrupted / "checkpoint.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(x)["step"] for x in (straight / "metrics.jsonl").read_text().splitlines()]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(gmd_fixture, tmp_path, monkeypatch):
    real = trainer.losses
    calls = {"n": 0}

    def poisoned(model, batch, beta, tc):
        calls["n"] += model.training  # count training steps, not validation batches
        loss, st = real(model, batch, beta, tc)
        return (loss * float("nan") if calls["n"] >= 14 else loss), st

    monkeypatch.setattr(trainer, "losses", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(trainer.TrainError, match="loss became nan at step 14.*last good checkpoint"):
        trainer.train(gmd_fixture, run, _cfg(20))
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 10
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert not list(run.glob("*.tmp"))  # nothing half-written


def test_checkpoint_from_another_config_is_refused(tiny_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model"]["z"] = 12
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(trainer.TrainError, match="does not match"):
        trainer.load_model(other)
    assert_one_line_error(run_cli("export", "--run", str(other), "--out", str(tmp_path / "m")), "does not match")


def test_cli_bad_input(tmp_path, gmd_fixture, tiny_run):
    assert_one_line_error(run_cli("train", "--data", str(tmp_path / "nope"), "--run", str(tmp_path / "r")), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("train", "--data", str(empty), "--run", str(tmp_path / "r")), str(empty))
    assert_one_line_error(run_cli("train", "--data", str(gmd_fixture), "--run", str(tmp_path / "r2"), "--resume"), "no run folder")
    assert_one_line_error(run_cli("train", "--data", str(gmd_fixture), "--run", str(tiny_run), "--preset", "tiny"), "--resume")
    assert_one_line_error(run_cli("train", "--data", str(gmd_fixture), "--run", str(tmp_path / "r3"), "--preset", "huge"), "unknown preset")
    assert_one_line_error(run_cli("eval", "--run", str(tmp_path / "none"), "--data", str(gmd_fixture), "--json", str(tmp_path / "e.json")), "no run folder")
    assert_one_line_error(run_cli("export", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "m")), "no run folder")
    assert_one_line_error(run_cli("train", "--data", str(gmd_fixture), "--run", str(tmp_path / "r4"), "--steps", "-3"), "at least 1")


def test_cli_train_shows_progress_and_summary(gmd_fixture, tmp_path):
    p = run_cli("train", "--data", str(gmd_fixture), "--run", str(tmp_path / "cli"), "--preset", "tiny", "--steps", "6", "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert "files: 7 seen, 6 used, 1 skipped" in p.stderr
    assert "6/6" in p.stderr and "loss=" in p.stderr and "acc=" in p.stderr  # tqdm bar with metrics
    assert p.stdout.startswith("done: step 6")


@pytest.mark.slow
def test_torchrun_two_processes_agree_and_only_rank0_writes(gmd_fixture, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    run, out = tmp_path / "ddp", tmp_path / "hashes"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(ROOT / "tests" / "ddp_worker.py"), str(gmd_fixture), str(run), str(out)],
        capture_output=True, text=True, timeout=240, env=env, cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    h0, h1 = (out / "rank0.sha256").read_text(), (out / "rank1.sha256").read_text()
    assert h0 == h1  # DDP kept both replicas identical
    assert sorted(x.name for x in run.iterdir()) == ["attributes.json", "checkpoint.pt", "config.json", "metrics.jsonl", "model.pt", "prior.npz"]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in x and "val_loss" not in x]
    assert steps == sorted(set(steps))  # one writer: no line logged twice


def test_scheduled_sampling_feeds_the_models_own_classes():
    from model.config import ModelConfig
    from model.vae import GrooveVAE

    torch.manual_seed(0)
    m = GrooveVAE(ModelConfig(**preset("tiny").model.__dict__))
    m.train()
    classes = torch.randint(0, 512, (4, 64))
    vel, off = torch.rand(4, 64, 9), torch.zeros(4, 64, 9)
    torch.manual_seed(1)
    a = m(classes, vel, off)[0]
    torch.manual_seed(1)
    b = m(classes, vel, off, sched_sampling=0.0)[0]
    torch.manual_seed(1)
    c = m(classes, vel, off, sched_sampling=1.0)[0]
    assert torch.equal(a, b)  # off: plain teacher forcing
    assert not torch.allclose(a, c)  # on: other inputs, other predictions


def test_training_with_scheduled_sampling(gmd_fixture, tmp_path):
    cfg = _cfg(6)
    cfg.train.sched_sampling = 0.5
    res = trainer.train(gmd_fixture, tmp_path / "ss", cfg)
    assert res.metrics["step"] == 6 and res.metrics["loss"] == res.metrics["loss"]
