"""Shared fixtures: GMD fixture files, a tiny trained run and its exported model.

The tiny run trains the ``tiny`` preset for a few steps on the shipped GMD
fixtures; export needs torch, so tests that use these skip without it (CI
installs torch, so they never skip there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GMD_FIXTURE = FIXTURES / "gmd"
# The full Groove MIDI Dataset, used when present, never required: $DRUM_PERFORMER_GMD, or the
# workspace's shared dataset folder beside (or above) the checkout.
_GMD_CANDIDATES = [
    Path(os.environ["DRUM_PERFORMER_GMD"]) if os.environ.get("DRUM_PERFORMER_GMD") else None,
    ROOT.parent / "shared" / "datasets" / "groove",
    ROOT.parent.parent / "shared" / "datasets" / "groove",
]
GMD_FULL = next((p for p in _GMD_CANDIDATES if p is not None and (p / "info.csv").exists()), _GMD_CANDIDATES[1])


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep preprocessing caches out of the user's cache dir."""
    os.environ["DRUM_PERFORMER_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def gmd_fixture() -> Path:
    return GMD_FIXTURE


@pytest.fixture(scope="session")
def gmd_full() -> Path:
    if not (GMD_FULL / "info.csv").exists():
        pytest.skip(f"the full Groove MIDI Dataset is not at {GMD_FULL}")
    return GMD_FULL


def need_torch():
    return pytest.importorskip("torch", reason="needs the train extra (torch)")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny-preset run folder trained for 20 steps on the GMD fixtures."""
    need_torch()
    from model.config import preset
    from train import trainer

    run = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = preset("tiny")
    cfg.train.threads = 1
    trainer.train(GMD_FIXTURE, run, cfg)
    return run


@pytest.fixture(scope="session")
def tiny_model(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported to an ONNX model folder."""
    from export import exporter

    out = tmp_path_factory.mktemp("models") / "tiny"
    exporter.export(tiny_run, out)
    return out


@pytest.fixture(scope="session")
def tiny_engine(tiny_model):
    from performer.engine import Engine

    return Engine.load(tiny_model)


def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "performer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=ROOT,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Bad input: non-zero exit, one clear error line, no traceback."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1] if err else ""
    assert "error" in last.lower(), err
    for n in needles:
        assert n.lower() in last.lower(), err


def tiny_train_config(steps: int = 20):
    """The ``tiny`` preset for ``steps`` steps on one thread: what the trainer tests train."""
    from model.config import preset

    cfg = preset("tiny")
    cfg.train.steps = steps
    cfg.train.threads = 1
    return cfg
