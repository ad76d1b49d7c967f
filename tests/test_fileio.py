"""One way to write a file (model/fileio.py): the old file or the new one, never half, never a stray temp."""

from pathlib import Path

import numpy as np
import pytest

from model import drums, midifile
from model.fileio import atomic_savez, atomic_write, temp_path
from train import evaluate


def _disk_full(tmp: Path, *_a, **_k):
    Path.write_bytes(tmp, b"half")
    raise OSError(28, "No space left on device")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("old")
    with pytest.raises(OSError, match="No space"):
        atomic_write(p, _disk_full)
    assert p.read_text() == "old"
    assert list(tmp_path.iterdir()) == [p]


def test_npz_goes_through_an_open_file_and_leaves_only_the_target(tmp_path):
    assert temp_path(tmp_path / "cache.npz").name == "cache.npz.tmp"  # what leftover checks glob for
    p = atomic_savez(tmp_path / "cache.npz", a=np.arange(3))
    assert [x.name for x in tmp_path.iterdir()] == ["cache.npz"]  # np.savez appends .npz to any other name
    with np.load(p) as z:
        assert list(z["a"]) == [0, 1, 2]


def test_eval_report_never_leaves_a_torn_file(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    out.write_text('{"old": 1}')
    monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **k: _disk_full(self))
    with pytest.raises(OSError):
        evaluate.write_report({"model": "m"}, out)
    monkeypatch.undo()
    assert out.read_text() == '{"old": 1}'
    assert [x.name for x in tmp_path.iterdir()] == ["r.json"]


def test_a_midi_write_that_fails_leaves_no_temp(tmp_path, monkeypatch):
    import pretty_midi

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", lambda self, path: _disk_full(Path(path)))
    with pytest.raises(OSError):
        midifile.write_pattern(drums.Pattern.empty(), tmp_path / "g.mid")
    assert list(tmp_path.iterdir()) == []
