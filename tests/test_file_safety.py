"""Never lose a user's file (issue 11 items 1, 2, 3, 4, 7, 10, 12).

The one-line messages themselves are checked in tests/test_bad_input.py (the
table in docs/bad_input.md); here: what is (not) written, replaced or kept.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from model import midifile
from performer import app as live_app
from performer import cli
from performer.app import LiveError
from tests.test_app import Live
from tests.test_bad_input import drum_file, make_readonly

# --- 1: export replaces only a model folder it made ------------------------------------------


def test_export_never_empties_a_folder_it_did_not_make(tiny_run, tmp_path):
    pytest.importorskip("torch")
    from export import exporter

    user = tmp_path / "userstuff"
    user.mkdir()
    songs = {f"song{i}.mid": os.urandom(50) for i in range(17)}
    for name, data in songs.items():
        (user / name).write_bytes(data)
    with pytest.raises(exporter.ExportError, match="not an exported model"):
        exporter.export(tiny_run, user)
    assert {p.name: p.read_bytes() for p in user.iterdir()} == songs
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.is_file()}
    with pytest.raises(exporter.ExportError, match="run folder itself"):
        exporter.export(tiny_run, tiny_run)
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.is_file()} == before


def test_export_replaces_its_own_model_folder_but_not_one_with_a_stray_file(tiny_run, tiny_model, tmp_path):
    pytest.importorskip("torch")
    from export import exporter

    out = tmp_path / "m"
    shutil.copytree(tiny_model, out)
    old_json = (out / "model.json").read_text()
    exporter.export(tiny_run, out)  # a model folder of ours: replaced
    assert exporter.is_model_folder(out) and (out / "model.json").read_text() != ""
    assert json.loads((out / "model.json").read_text())["files"] == json.loads(old_json)["files"]
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(exporter.ExportError, match="not an exported model"):
        exporter.export(tiny_run, out)
    assert (out / "notes.txt").read_text() == "the user's"
    assert not list(tmp_path.glob("*.tmp-export")) and not list(tmp_path.glob("*.old-export"))


# --- 3: --record ---------------------------------------------------------------------------------


def test_record_never_overwrites_an_existing_take(tmp_path):
    take = tmp_path / "take.mid"
    take.write_bytes(b"yesterday's take")
    assert live_app.check_record_path(str(take)) == tmp_path / "take-2.mid"
    live = Live(seed=6, bpm=400, quantize=True, record=str(take))
    assert live.log.wait_notes(4)  # a take with notes in it
    live.finish()
    assert "error" not in live.result
    assert take.read_bytes() == b"yesterday's take"
    new = tmp_path / "take-2.mid"
    assert live.app.opts.record == str(new)
    assert any(not m.is_meta for m in mido.MidiFile(new).tracks[0])


def test_record_cli_says_where_the_take_goes(tmp_path, monkeypatch, capsys):
    from performer import app

    take = tmp_path / "take.mid"
    take.write_bytes(b"keep me")
    seen = {}

    def fake_run(self, on_ready=None):
        seen["record"] = self.opts.record
        return 0

    monkeypatch.setattr(app.LiveApp, "__init__", lambda self, opts, **kw: setattr(self, "opts", opts))
    monkeypatch.setattr(app.LiveApp, "run", fake_run)
    assert cli.main(["--bpm", "120", "--headless", "--record", str(take)]) == 0
    err = capsys.readouterr().err
    assert f"{take} exists; this take will go to {tmp_path / 'take-2.mid'}" in err
    assert seen["record"] == str(tmp_path / "take-2.mid")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_record_refuses_a_device_node_and_leaves_it_alone(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null twin
    with pytest.raises(LiveError, match="not a regular file"):
        live_app.LiveOptions(record=str(node)).validate()
    assert stat.S_ISCHR(node.stat().st_mode)


def test_record_refuses_a_fifo_before_playing(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(LiveError, match="not a regular file"):
        Live(seed=1, bpm=400, record=str(fifo))
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_take_that_cannot_be_written_at_exit_is_saved_elsewhere(tmp_path, monkeypatch):
    import tempfile

    fallback = tmp_path / "fallback"
    fallback.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    folder = tmp_path / "gig"
    folder.mkdir()
    live = Live(seed=6, bpm=400, quantize=True, record=str(folder / "take.mid"))
    assert live.log.wait_notes(4)
    undo = make_readonly(folder)  # the folder went read-only during the take
    if undo is None:
        pytest.skip("cannot make a read-only folder here")
    try:
        live.finish()
    finally:
        undo()
    err = live.result.get("error")
    assert isinstance(err, LiveError), live.result
    saved = list(fallback.glob("drum-performer-*take.mid"))
    assert len(saved) == 1 and f"the take is saved in {saved[0]}" in str(err)
    assert f"cannot write {folder / 'take.mid'}" in str(err)
    assert any(m.type == "note_on" for m in mido.MidiFile(saved[0]).tracks[0])
    assert not list(folder.iterdir())


# --- 7: write errors -----------------------------------------------------------------------------


def test_sample_on_a_full_disk_is_one_line_and_leaves_no_tmp(tmp_path, monkeypatch, capsys):
    """Simulated at the write call (the file is created empty, then ENOSPC), as a full disk does."""
    import pretty_midi

    def full(self, filename):
        Path(filename).write_bytes(b"")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", full)
    out = tmp_path / "out"
    assert cli.main(["sample", "-n", "2", "--seed", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"drum-performer: error: cannot write into {out}: No space left on device"
    assert list(out.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tiny tmpfs here (needs root and mount rights)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("extra", [[], ["--wav"]])
def test_sample_on_a_really_full_disk(tiny_disk, extra):
    """A real 12 KiB tmpfs: the run fills it part way through (with --wav: at the first WAV)."""
    p = subprocess.run([sys.executable, "-m", "performer.cli", "sample", "-n", "40", "--seed", "1", "--out", str(tiny_disk / "o"), *extra],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == f"drum-performer: error: cannot write into {tiny_disk / 'o'}: No space left on device"
    left = sorted(f.name for f in (tiny_disk / "o").iterdir())
    assert left and not [n for n in left if n.endswith(".tmp")], left
    assert all((tiny_disk / "o" / n).stat().st_size > 0 for n in left)


def test_eval_report_write_failure_is_one_line(tmp_path, monkeypatch, capsys, gmd_fixture):
    """The report folder goes away between the start check and the write (simulated at the write)."""
    from train import evaluate

    def fail(rep, path, metrics=None):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(evaluate, "write_report", fail)
    js = tmp_path / "r.json"
    code = cli.main(["eval", "--data", str(gmd_fixture), "--json", str(js), "--samples", "4", "--limit", "4"])
    assert code == 1
    assert capsys.readouterr().err.strip() == f"drum-performer: error: cannot write the report {js}: Read-only file system"


def test_cache_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path, gmd_fixture, caplog):
    from train import data

    ro = tmp_path / "ro"
    ro.mkdir()
    undo = make_readonly(ro)
    if undo is None:
        pytest.skip("cannot make a read-only folder here")
    try:
        tracks, summary = data.preprocess(gmd_fixture, ro / "cache")
    finally:
        undo()
    assert summary.windows["train"] > 0 and "cannot write the preprocessing cache" in caplog.text
    assert not (ro / "cache").exists()


# --- 10: clips -----------------------------------------------------------------------------------


def test_a_long_valid_clip_reads_its_first_bars(tmp_path):
    drum_file(tmp_path / "long.mid", 10_000)
    drum_file(tmp_path / "short.mid", 4)
    long, short = midifile.read_pattern(tmp_path / "long.mid"), midifile.read_pattern(tmp_path / "short.mid")
    assert long.hits.sum() == 16 and np.array_equal(long.hits, short.hits)


def test_a_tempo_0_clip_reads_on_its_ticks(tmp_path):
    drum_file(tmp_path / "t0.mid", 4, tempo=0)
    drum_file(tmp_path / "t.mid", 4)
    a, b = midifile.read_pattern(tmp_path / "t0.mid"), midifile.read_pattern(tmp_path / "t.mid")
    assert a.hits.sum() == 16 and np.array_equal(a.hits, b.hits)


def test_a_failing_clip_creates_no_output_folder(tmp_path, gmd_fixture, capsys):
    (tmp_path / "empty.mid").write_bytes(b"")
    out = tmp_path / "out"
    good = str(gmd_fixture / "drummer3/session2/37_rock_92_beat_4-4.mid")
    assert cli.main(["sample", "--out", str(out), "--interpolate", good, str(tmp_path / "empty.mid")]) == 1
    assert f"clip {tmp_path / 'empty.mid'}:" in capsys.readouterr().err
    assert not out.exists()


# --- 12: pictures ----------------------------------------------------------------------------------


def test_png_list_includes_the_pictures(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "o"
    assert cli.main(["sample", "-n", "2", "--seed", "3", "--out", str(out), "--png"]) == 0
    listed = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert listed == [str(out / n) for n in ("groove_3.mid", "groove_3.png", "groove_4.mid", "groove_4.png")]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(n).name for n in listed)


def test_png_without_matplotlib_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "o"
    assert cli.main(["sample", "-n", "2", "--out", str(out), "--png"]) == 1
    assert "--png needs matplotlib" in capsys.readouterr().err
    assert not out.exists()
