import mido
import numpy as np
import pretty_midi
import pytest

from model import drums, midifile


def _random_pattern(seed=0, density=0.2):
    rng = np.random.default_rng(seed)
    hits = rng.random((64, 9)) < density
    vel = rng.uniform(0.1, 1.0, (64, 9))
    off = rng.uniform(-0.45, 0.45, (64, 9))
    off[0] = np.abs(off[0])  # a file cannot start before time 0
    return drums.Pattern(hits, vel, off)


@pytest.mark.parametrize("bpm", [73.0, 120.0, 181.0])
def test_write_then_read_gives_the_same_pattern(tmp_path, bpm):
    p = _random_pattern()
    f = tmp_path / "p.mid"
    midifile.write_pattern(p, f, bpm=bpm)
    q = midifile.read_pattern(f)
    assert np.array_equal(q.hits, p.hits)
    assert np.abs(q.velocity - p.velocity).max() <= 0.5 / 127 + 1e-6
    assert np.abs(q.offset - p.offset).max() <= 1 / 120 + 1e-6  # 480 ticks per beat = 120 per step


def test_written_file_is_gm_drums_with_tempo(tmp_path):
    f = tmp_path / "p.mid"
    midifile.write_pattern(_random_pattern(), f, bpm=97)
    pm = pretty_midi.PrettyMIDI(str(f))
    assert len(pm.instruments) == 1 and pm.instruments[0].is_drum
    assert {n.pitch for n in pm.instruments[0].notes} <= set(drums.OUTPUT_PITCHES)
    assert pm.get_tempo_changes()[1][0] == pytest.approx(97, abs=0.01)


def test_quantized_write_is_on_the_grid(tmp_path):
    f = tmp_path / "q.mid"
    midifile.write_pattern(_random_pattern(), f, quantize=True)
    assert not midifile.read_pattern(f).offset.any()


def test_gmd_fixture_reads_onto_the_grid(gmd_fixture):
    track = midifile.read_drum_track(gmd_fixture / "drummer3/session2/37_rock_92_beat_4-4.mid")
    assert track.bpm == pytest.approx(92, abs=0.5)
    p = track.pattern
    assert p.steps % drums.STEPS_PER_BAR == 0 and p.steps >= 9 * 16
    assert p.hits[:, 0].sum() > 20 and p.hits[:, 1].sum() > 20  # a rock beat: kicks and snares
    assert (p.offset >= -0.5).all() and (p.offset < 0.5).all()


def test_non_44_file_is_refused(gmd_fixture):
    with pytest.raises(midifile.MidiReadError, match="3/4"):
        midifile.read_drum_track(gmd_fixture / "drummer1/session2/1_latin-chacarera_157_beat_3-4.mid")


def test_bad_files(tmp_path):
    garbage = tmp_path / "garbage.mid"
    garbage.write_bytes(b"not a midi file at all")
    with pytest.raises(midifile.MidiReadError, match="unreadable"):
        midifile.read_drum_track(garbage)
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    with pytest.raises(midifile.MidiReadError, match="no notes"):
        midifile.read_drum_track(empty)
    piano = tmp_path / "piano.mid"
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(100, 60, 0, 1))
    pm.instruments.append(inst)
    pm.write(str(piano))
    with pytest.raises(midifile.MidiReadError, match="drum channel"):
        midifile.read_drum_track(piano)


def _drum_track_file(path, first_tick, ticks_per_beat=480):
    mf = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    tr = mido.MidiTrack()
    mf.tracks.append(tr)
    tr.append(mido.Message("note_on", channel=9, note=36, velocity=100, time=first_tick))
    tr.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=60))
    mf.save(str(path))
    return path


def test_a_clip_whose_notes_all_lie_beyond_the_bars_read_says_so(tmp_path):
    # was "unreadable MIDI (ValueError: max() arg is an empty sequence)": the cut left an empty track
    f = _drum_track_file(tmp_path / "late.mid", first_tick=480 * 4 * 8)  # bar 9
    with pytest.raises(midifile.MidiReadError, match=r"^no notes in the first 6 bars$"):
        midifile.read_drum_track(f, max_bars=6)
    assert midifile.read_drum_track(f).pattern.steps == 9 * drums.STEPS_PER_BAR  # read whole: it is fine


def test_the_length_read_is_the_files_end(tmp_path):
    f = _drum_track_file(tmp_path / "beat.mid", first_tick=480)  # beat 2, note-off 60 ticks later
    assert midifile.read_drum_track(f).length_steps == pytest.approx((480 + 60) / 120)
    g = _drum_track_file(tmp_path / "long.mid", first_tick=0)
    mf = mido.MidiFile(str(g))
    mf.tracks[0].append(mido.Message("note_on", channel=9, note=38, velocity=100, time=480 * 4 * 10))  # bar 11
    mf.save(str(g))
    assert midifile.read_drum_track(g, max_bars=6).length_steps == 6 * drums.STEPS_PER_BAR  # as far as read
