import shutil

import numpy as np
import pretty_midi
import pytest

from model import drums
from train import data


def test_gmd_fixture_uses_official_splits_and_skips_non_44(gmd_fixture, tmp_path):
    tracks, s = data.preprocess(gmd_fixture, tmp_path)
    assert s.source == "info.csv"
    assert s.files_seen == 7 and s.files_used == 6
    assert s.skipped == {"time signature 3/4 is not 4/4": 1}
    assert all(s.windows[k] > 0 for k in data.SPLITS)
    # the one test-split fixture file is in test, not in train
    assert len(tracks["test"].starts) == 2
    ws = data.WindowSet(tracks["train"])
    assert ws.classes.shape == (len(ws), drums.STEPS)
    assert ws.velocity.shape == ws.offset.shape == (len(ws), drums.STEPS, drums.NUM_VOICES)
    assert (ws.classes != 0).any(axis=1).all()  # no silent windows
    assert np.array_equal(ws.hits > 0.5, drums.index_to_hits(ws.classes))


def test_windows_carry_the_genre_word_and_fills_follow_three_bars_of_their_sessions_beat(gmd_fixture, tmp_path):
    tracks, s = data.preprocess(gmd_fixture, tmp_path)
    tr = tracks["train"]
    assert s.fill_windows["train"] == 4  # one fill clip, four different 3-bar grooves before it
    ws = data.WindowSet(tr, ["rock", "soul"])
    assert set(ws.style_names) == {"rock", "soul"}
    assert ws.is_fill.sum() == 4 and not ws.is_fill[: len(ws) - 4].any()  # beats first, then fills
    assert (ws.fill[ws.is_fill] == [0, 0, 0, 1]).all() and not ws.fill[~ws.is_fill].any()
    S = drums.STEPS_PER_BAR
    fill_track = [i for i in range(len(tr.starts) - 1) if tr.info(i).kind == "fill"]
    beat_track = [i for i in range(len(tr.starts) - 1) if tr.info(i).session == tr.info(fill_track[0]).session
                  and tr.info(i).kind == "beat"]
    assert len(fill_track) == 1 and len(beat_track) == 1
    a = tr.starts[fill_track[0]]
    beat = tr.classes[tr.starts[beat_track[0]] : tr.starts[beat_track[0] + 1]]
    for w in np.flatnonzero(ws.is_fill):
        assert np.array_equal(ws.classes[w, 3 * S :], tr.classes[a : a + S])  # bar 4: the clip's first bar
        ctx = ws.classes[w, : 3 * S]
        # bars 1-3: a bar-aligned stretch of the same session's beat recording
        assert any(np.array_equal(ctx, beat[k : k + 3 * S]) for k in range(0, len(beat) - 3 * S + 1, S))
        assert ws.style_names[w] == "soul" and ws.style[w] == 2
    # a style the model does not know is "any" (0); without info.csv every file is "any"
    assert (data.WindowSet(tr, ["rock"]).style[ws.style == 2] == 0).all()


def test_genre_is_the_first_word_of_gmds_style():
    assert data.genre("funk/groove1") == "funk" and data.genre("Jazz/Funk") == "jazz" and data.genre("") == "any"


def test_cache_is_reused_and_identical(gmd_fixture, tmp_path):
    a, s1 = data.preprocess(gmd_fixture, tmp_path)
    b, s2 = data.preprocess(gmd_fixture, tmp_path)
    assert not s1.cached and s2.cached
    assert s2.windows == s1.windows and s2.skipped == s1.skipped
    for k in data.SPLITS:
        assert np.array_equal(a[k].classes, b[k].classes)
        assert np.array_equal(a[k].velocity, b[k].velocity)


def test_folder_without_info_csv_uses_a_stable_hash_split(gmd_fixture, tmp_path):
    folder = tmp_path / "mine"
    for f in gmd_fixture.rglob("*.mid"):
        dst = folder / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
    tracks, s = data.preprocess(folder, tmp_path / "cache")
    assert s.source == "hash split" and s.files_used == 6
    assert data.hash_split("a/b.mid") == data.hash_split("a/b.mid")
    splits = [data.hash_split(f"f{i}.mid") for i in range(1000)]
    assert 700 < splits.count("train") < 900


def test_bad_files_are_skipped_and_counted(gmd_fixture, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(gmd_fixture / "drummer3/session2/37_rock_92_beat_4-4.mid", folder / "good.mid")
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    (folder / "empty.mid").write_bytes(b"")
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(90, 60, 0.0, 0.5))
    pm.instruments.append(inst)
    pm.write(str(folder / "piano.mid"))
    drums_unknown = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0, is_drum=True)
    inst.notes.append(pretty_midi.Note(90, 100, 0.0, 0.1))  # not a drum pitch
    drums_unknown.instruments.append(inst)
    drums_unknown.write(str(folder / "odd.mid"))
    _, s = data.preprocess(folder, tmp_path / "c")
    assert s.files_seen == 5 and s.files_used == 1
    reasons = " | ".join(s.skipped)
    assert "unreadable" in reasons and "drum channel" in reasons and "known drum pitches" in reasons
    assert sum(s.skipped.values()) == 4
    assert s.unknown_pitches[100] == 1


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.preprocess(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no info.csv and no .mid"):
        data.preprocess(tmp_path / "empty", tmp_path)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.mid").write_bytes(b"xx")
    with pytest.raises(data.DataError, match="no 4-bar drum windows.*1 files listed, 0 usable"):
        data.preprocess(junk, tmp_path)


def test_full_gmd_window_counts(gmd_full, tmp_path):
    _, s = data.preprocess(gmd_full, tmp_path)
    assert s.files_seen == 1150
    assert sum(s.skipped.values()) == 12  # the non-4/4 files
    assert 14000 < s.windows["train"] < 18000
    assert s.windows["validation"] > 1500 and s.windows["test"] > 1500


def test_windows_skip_silence_and_stay_inside_their_track():
    """The one window cutter (Tracks.windows): silent windows and windows across tracks are not cut."""
    c = np.zeros(16 * 8, np.int16)
    c[16 * 6] = 1  # one kick in bar 7 of 8: only the windows starting at bars 4 and 5 hold it
    z = np.zeros((len(c), drums.NUM_VOICES), np.float16)
    one = data.Tracks(c, z, z, np.array([0, len(c)]))
    assert list(one.windows()) == [16 * 3, 16 * 4]
    silent = data.Tracks(np.zeros_like(c), z, z, np.array([0, len(c)]))
    assert len(silent.windows()) == 0
    two = data.Tracks(c, z, z, np.array([0, 16 * 5, len(c)]))  # bars 1-5, then bars 6-8
    assert len(two.windows()) == 0  # the kick's track is 3 bars long: no 4-bar window fits
