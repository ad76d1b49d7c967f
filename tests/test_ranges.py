"""Shared ranges (model/ranges.py) and the run config's strictness."""

import json

import pytest

from model import bundle
from model.config import RunConfig, preset
from model.ranges import BPM, Range
from performer.cli import build_parser
from tests.conftest import assert_one_line_error, run_cli


def _parse_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(list(argv))
    assert e.value.code == 2
    return capsys.readouterr().err.strip()


def test_temperature_is_checked_against_the_model_folders_range(capsys, tmp_path):
    """The command line asks only for >= 0; the range is the model's (model.json, written from
    bundle.TEMPERATURE), so a folder with another range is honoured, and the error names it."""
    assert (bundle.TEMPERATURE.lo, bundle.TEMPERATURE.hi) == (bundle.temperature()["min"], bundle.temperature()["max"])
    for cmd in (["live"], ["sample", "--out", "x"]):
        assert "at least 0" in _parse_error(capsys, *cmd, "--temperature", "-1")
        assert build_parser().parse_args([*cmd, "--temperature", "5"]).temperature == 5.0
    assert_one_line_error(run_cli("sample", "--temperature", "5", "--out", str(tmp_path / "o")), "temperature", "0.0..2.0")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cmd", [["sample", "--out", "x"], ["eval", "--data", "d", "--json", "j"],
                                 ["train", "--data", "d", "--run", "r"]])
def test_every_seed_is_checked_against_one_range(capsys, cmd):
    assert "--seed: -1 must be at least 0" in _parse_error(capsys, *cmd, "--seed", "-1")
    assert build_parser().parse_args([*cmd, "--seed", "0"]).seed == 0


def test_live_seed_limit_prints_as_a_whole_number(capsys):
    err = _parse_error(capsys, "live", "--seed", "99999999999")
    assert "outside 0..4294957295" in err and "e+" not in err  # not 4.29496e+09


def test_negative_sample_seed_is_one_line(tmp_path):
    assert_one_line_error(run_cli("sample", "--seed", "-5", "--out", str(tmp_path / "o")), "--seed")
    assert not (tmp_path / "o").exists()


def test_bpm_is_one_range_for_files_and_live(capsys):
    for cmd in (["live"], ["sample", "--out", "x"]):
        assert "outside 20..400 BPM" in _parse_error(capsys, *cmd, "--bpm", "401")


def test_range_membership():
    r = Range(0, 10, kind=int)
    assert 0 in r and 10 in r and 11 not in r and -1 not in r
    assert True not in r and "3" not in r and float("nan") not in BPM


def test_run_config_refuses_unknown_keys_with_one_line():
    d = preset("tiny").to_dict()
    d["data"] = {"folder": "x"}  # what the trainer adds: known
    assert RunConfig.from_dict(d).model.z == 8
    d["train"]["setps"] = 10
    with pytest.raises(ValueError, match="unknown setting train.setps"):
        RunConfig.from_dict(d)
    with pytest.raises(ValueError, match="unknown setting modle"):
        RunConfig.from_dict({"modle": {}})
    with pytest.raises(ValueError, match="'model' must be an object"):
        RunConfig.from_dict({"model": [1]})


def test_resume_with_a_misspelt_setting_is_one_line(tmp_path):
    pytest.importorskip("torch", reason="train needs the train extra (torch)")
    run = tmp_path / "run"
    run.mkdir()
    d = preset("tiny").to_dict()
    d["model"]["zz"] = 3
    (run / "config.json").write_text(json.dumps(d))
    assert_one_line_error(run_cli("train", "--data", "x", "--run", str(run), "--resume"), "model.zz")
