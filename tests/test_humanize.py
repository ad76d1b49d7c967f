"""drum-performer humanize: every hit kept, the model's velocities and offsets, the rest of the file untouched."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from model import drums, midifile
from performer import band, band_cli
from performer.engine import Engine
from tests.conftest import GMD_FIXTURE, assert_one_line_error, run_cli

ROCK = GMD_FIXTURE / "drummer3/session1/3_rock_105_beat_4-4.mid"  # 13 bars: more than one 4-bar chunk
WALTZ = GMD_FIXTURE / "drummer1/session2/1_latin-chacarera_157_beat_3-4.mid"


@pytest.fixture(scope="module")
def engine():
    return Engine.load()


def _clip(path, drum_notes, other_notes=(), tpb=480, meter=(4, 4), tempo_bpm=100.0):
    """A type-1 file: track 0 meta, track 1 drums (channel 10), track 2 a bass on channel 1.
    Notes are (step, pitch, velocity); steps are sixteenths."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    tps = tpb // 4
    meta = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1]),
                           mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))])
    mid.tracks.append(meta)
    for ch, notes in ((9, drum_notes), (0, other_notes)):
        evs = []
        for step, pitch, vel in notes:
            evs.append((step * tps, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
            evs.append((step * tps + tps // 2, 0, mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
        evs.sort(key=lambda e: (e[0], e[1]))
        tr, last = mido.MidiTrack(), 0
        for t, _, m in evs:
            tr.append(m.copy(time=t - last))
            last = t
        mid.tracks.append(tr)
    mid.save(str(path))
    return path


def _beat(bars=4):
    notes = []
    for b in range(bars):
        for s in range(0, 16, 2):
            notes.append((b * 16 + s, 42, 100))
        notes += [(b * 16, 36, 100), (b * 16 + 8, 36, 100), (b * 16 + 4, 38, 100), (b * 16 + 12, 38, 100)]
    return notes


def test_hits_unchanged_on_random_patterns(engine):
    """The mask forces the class: the sampler cannot add, drop or move a hit, whatever the pattern."""
    rng = np.random.default_rng(3)
    classes = rng.integers(0, drums.NUM_CLASSES, (3, drums.STEPS)) * (rng.random((3, drums.STEPS)) < 0.5)
    v, o = band.humanize_arrays(engine, classes)
    hits = drums.index_to_hits(classes)
    assert np.all(v[~hits] == 0) and np.all(o[~hits] == 0)
    assert np.all(v[hits] > 0)
    p = band.humanize_pattern(engine, drums.Pattern(hits.reshape(-1, 9), *band.quantise(hits.reshape(-1, 9))))
    assert np.array_equal(p.hits, hits.reshape(-1, 9))


def test_decoder_head_path_keeps_hits(engine):
    """Without a humanizer (or with a z): the sampler forced to the exact classes, its heads give the values."""
    rng = np.random.default_rng(4)
    classes = rng.integers(0, drums.NUM_CLASSES, (2, drums.STEPS)) * (rng.random((2, drums.STEPS)) < 0.4)
    v, o = band.humanize_arrays(engine, classes, z=band.humanize_z(engine, classes))
    hits = drums.index_to_hits(classes)
    assert np.all((v > 0) == hits) and np.all(o[~hits] == 0)


def test_humanize_file_keeps_every_hit_and_changes_dynamics(engine, tmp_path):
    out = tmp_path / "h.mid"
    s = band_cli.humanize_file(engine, ROCK, out)
    src = midifile.read_drum_track(ROCK).pattern
    got = midifile.read_drum_track(out).pattern
    assert s["chunks"] == 4  # 13 bars -> four 4-bar chunks, written back whole
    assert got.steps == src.steps
    assert np.array_equal(got.hits, src.hits)
    vel = got.velocity[got.hits]
    assert vel.std() > 0.03  # a programmed beat would be flat: the model gave dynamics
    assert np.abs(got.offset[got.hits]).max() > 0.01  # and microtiming


def test_humanize_keeps_other_notes_exactly(engine, tmp_path):
    bass = [(s, 40 + s % 5, 90) for s in range(0, 64, 3)]
    clip = _clip(tmp_path / "in.mid", _beat(), bass)
    out = tmp_path / "out.mid"
    band_cli.humanize_file(engine, clip, out)

    def non_drum(path):
        mid = mido.MidiFile(str(path))
        return [(t, m) for tr in mid.tracks for t, m in band_cli._abs(tr)
                if not (m.type in ("note_on", "note_off") and m.channel == 9) and m.type != "end_of_track"]

    assert non_drum(out) == non_drum(clip)
    ons = [m for tr in mido.MidiFile(str(out)).tracks for m in tr if m.type == "note_on" and m.channel == 9]
    assert len(ons) == len(_beat())
    assert len({m.velocity for m in ons}) > 3  # velocity 100 everywhere went in


def test_humanize_bpm_rewrites_the_tempo(engine, tmp_path):
    clip = _clip(tmp_path / "in.mid", _beat(1))
    out = tmp_path / "out.mid"
    band_cli.humanize_file(engine, clip, out, bpm=90.0)
    tempos = [m.tempo for tr in mido.MidiFile(str(out)).tracks for m in tr if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(90.0)]


def test_humanize_seeds_vary_with_temperature(engine):
    hits = np.zeros((drums.STEPS, 9), bool)
    hits[::2, 2] = True
    hits[::8, 0] = True
    p = drums.Pattern(hits, *band.quantise(hits))
    a = band.humanize_pattern(engine, p, temperature=0.0, seed=1)
    b = band.humanize_pattern(engine, p, temperature=0.0, seed=2)
    c = band.humanize_pattern(engine, p, temperature=1.0, seed=2)
    assert a.equals(b)
    assert not a.equals(c)
    assert np.array_equal(c.hits, hits)


def test_cli_humanize_short_clip_is_padded_and_said(tmp_path):
    clip = _clip(tmp_path / "short.mid", [(0, 36, 100), (4, 38, 100)])
    out = tmp_path / "o.mid"
    r = run_cli("humanize", str(clip), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "shorter than a bar" in r.stdout
    assert np.array_equal(midifile.read_drum_track(out).pattern.hits[[0, 4], [0, 1]], [True, True])


@pytest.mark.parametrize("case", ["empty", "no_drums", "waltz", "missing"])
def test_cli_humanize_bad_input_one_line_nothing_written(tmp_path, case):
    out = tmp_path / "o.mid"
    if case == "empty":
        clip, needle = _clip(tmp_path / "e.mid", []), "no notes"
    elif case == "no_drums":
        clip, needle = _clip(tmp_path / "b.mid", [], [(0, 40, 90)]), "drum"
    elif case == "waltz":
        clip, needle = WALTZ, "3/4"
    else:
        clip, needle = tmp_path / "nope.mid", "does not exist"
    r = run_cli("humanize", str(clip), "--out", str(out))
    assert_one_line_error(r, needle)
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_humanize_and_drumify_paths_never_import_torch(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    clip = _clip(tmp_path / "in.mid", _beat(1))
    code = (
        "import sys; from performer import cli, band, band_cli; "
        f"rc = cli.main(['humanize', {str(clip)!r}, '--out', {str(tmp_path / 'o.mid')!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.stdout.strip().splitlines()[-1] == "0 False", p.stderr
