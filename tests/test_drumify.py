"""drum-performer drumify and train-tap: any clip's onsets -> drum parts, through a tap encoder
trained into a run's latent space and exported beside its graphs."""

from __future__ import annotations

import json
import shutil

import mido
import numpy as np
import pytest

from model import drums, midifile
from performer import band, band_cli
from tests.conftest import GMD_FIXTURE, assert_one_line_error, need_torch, run_cli


def _melody(path, notes, tpb=480, meter=(4, 4), channel=0, length_steps=None):
    """(step, pitch, velocity) notes on one melodic channel, as a type-0 file."""
    tps = tpb // 4
    evs = []
    for step, pitch, vel in notes:
        evs.append((round(step * tps), 1, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
        evs.append((round(step * tps) + tps, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    evs.sort(key=lambda e: (e[0], e[1]))
    tr = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1])])
    last = 0
    for t, _, m in evs:
        tr.append(m.copy(time=t - last))
        last = t
    if length_steps is not None:
        tr.append(mido.MetaMessage("end_of_track", time=max(0, length_steps * tps - last)))
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    mid.tracks.append(tr)
    mid.save(str(path))
    return path


def test_flatten_takes_the_loudest_voice_per_step():
    hits = np.zeros((1, 4, 9), bool)
    vel = np.zeros((1, 4, 9), np.float32)
    off = np.zeros((1, 4, 9), np.float32)
    hits[0, 1, [0, 2]] = True
    vel[0, 1, [0, 2]] = [0.9, 0.4]
    off[0, 1, [0, 2]] = [-0.1, 0.2]
    t = band.flatten(hits, vel, off)[0]
    assert t[:, 0].tolist() == [0, 1, 0, 0]
    assert t[1, 1] == pytest.approx(0.9) and t[1, 2] == pytest.approx(-0.1)


def test_onsets_of_a_melodic_clip_match_the_flattened_drums(tmp_path):
    """The MIDI path (every note-on, any channel) gives the taps the encoder was trained on."""
    notes = [(0, 40, 110), (3.2, 43, 60), (3.2, 47, 90), (8, 40, 100), (10.9, 45, 70)]
    pos, vel, bpm, length = band_cli.read_onsets(_melody(tmp_path / "bass.mid", notes, length_steps=16))
    taps, note = band_cli.taps_from_onsets(pos, vel, length)
    assert taps.shape == (drums.STEPS, 3)
    assert note == "1-bar clip looped to 4 bars"
    assert np.nonzero(taps[:16, 0])[0].tolist() == [0, 3, 8, 11]
    assert taps[3, 1] == pytest.approx(90 / 127) and taps[3, 2] == pytest.approx(0.2, abs=0.01)
    assert taps[11, 2] == pytest.approx(-0.1, abs=0.01)
    assert np.array_equal(taps[16:32], taps[:16])


def test_channel_filter_and_short_clip(tmp_path):
    clip = _melody(tmp_path / "c.mid", [(0, 60, 100), (2, 60, 100)], channel=4)
    with pytest.raises(band_cli.ClipError, match="no note-ons on channel 1"):
        band_cli.read_onsets(clip, channel=1)
    pos, vel, _, length = band_cli.read_onsets(clip, channel=5)
    taps, note = band_cli.taps_from_onsets(pos, vel, length)
    assert "shorter than a bar" in note
    assert taps[:, 0].sum() == 8  # two onsets, padded to a bar, looped four times


@pytest.fixture(scope="module")
def tap_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run (the shared one stays as it is) with a tiny tap encoder and humanizer."""
    need_torch()
    from train import tap

    run = tmp_path_factory.mktemp("runs") / "tiny_tap"
    shutil.copytree(tiny_run, run)
    for kind in tap.KINDS:
        tap.train(run, GMD_FIXTURE, tap.TapConfig(kind=kind, hidden=8, steps=4, batch_size=4))
    return run


@pytest.fixture(scope="module")
def tap_model(tap_run, tiny_model, tmp_path_factory):
    """The tiny model with the encoders added beside its graphs (no re-export)."""
    from export.band import add_encoder
    from train import tap

    out = tmp_path_factory.mktemp("models") / "tap"
    shutil.copytree(tiny_model, out)
    for kind in tap.KINDS:
        add_encoder(tap_run, out, kind)
    return out


def test_export_of_a_run_with_encoders_ships_them(tap_run, tmp_path):
    from export import exporter
    from performer.engine import Engine

    meta = exporter.export(tap_run, tmp_path / "m")
    assert {"tap.onnx", "humanize.onnx"} <= set(meta["files"])
    assert band.has_tap(Engine.load(tmp_path / "m"))


def test_export_lists_the_encoders_and_the_engine_checks_them(tap_model):
    from performer.engine import Engine, EngineError

    meta = json.loads((tap_model / "model.json").read_text())
    assert {"tap.onnx", "humanize.onnx"} <= set(meta["files"])
    e = Engine.load(tap_model)
    assert band.tap_z(e, np.zeros((2, drums.STEPS, 3), np.float32)).shape == (2, e.z_size)
    blob = (tap_model / "tap.onnx").read_bytes()
    (tap_model / "tap.onnx").write_bytes(blob[:-4] + b"\0\0\0\0")
    try:
        with pytest.raises(EngineError, match="tap.onnx is corrupt"):
            Engine.load(tap_model)
    finally:
        (tap_model / "tap.onnx").write_bytes(blob)


def test_encoders_are_stored_as_float16_and_match_the_rounded_torch_encoder(tap_run, tap_model):
    """tap.onnx / humanize.onnx hold float16 weights; the graph computes what the torch encoder
    with the same rounded weights computes (the parity gate's reference), and model.json records
    how far the rounding moved the outputs from the float32 weights."""
    import onnx
    import onnxruntime as ort
    import torch

    from export.band import rounded
    from train import tap

    meta = json.loads((tap_model / "model.json").read_text())
    for kind in tap.KINDS:
        g = onnx.load(str(tap_model / f"{kind}.onnx")).graph
        halves = [i for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT16]
        singles = [i for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) >= 64]
        assert halves and not singles  # every weight of any size is stored as float16
        enc, _ = tap.load(tap_run, kind)
        half = rounded(enc)
        assert all(torch.equal(p, p.half().float()) for p in half.parameters())
        assert any(not torch.equal(p, q) for p, q in zip(half.parameters(), enc.parameters(), strict=True))
        x = np.random.default_rng(3).random((2, drums.STEPS, tap.input_size(kind))).astype(np.float32)
        got = ort.InferenceSession(str(tap_model / f"{kind}.onnx"), providers=["CPUExecutionProvider"]).run(None, {"taps": x})
        with torch.no_grad():
            want = half(torch.from_numpy(x))
        want = [want] if kind == "tap" else list(want)
        assert all(np.abs(a - b.numpy()).max() <= 1e-5 for a, b in zip(got, want, strict=True))
        rec = meta["encoders"][kind]
        assert rec["parity"] <= 1e-4 and 0 < rec["rounding"] < 0.05


@pytest.mark.parametrize("damage", ["shifted", "nan"])
def test_encoder_parity_gate_fails_on_a_broken_graph(tap_run, tap_model, tmp_path, monkeypatch, damage):
    """The gate compares the graph with the rounded torch encoder: a graph whose stored weights
    differ from it (shifted), or that outputs NaN (a NaN difference passes any '> tolerance'
    test), is refused and the folder is left as it was."""
    import onnx
    from onnx import numpy_helper

    from export import band as band_export

    real = band_export.store_float16

    def broken(model):
        real(model)
        init = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
        arr = numpy_helper.to_array(init).copy()
        arr.flat[0] = np.nan if damage == "nan" else arr.flat[0] + 0.5
        init.CopyFrom(numpy_helper.from_array(arr, init.name))

    out = tmp_path / "m"
    shutil.copytree(tap_model, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(band_export, "store_float16", broken)
    for kind in ("tap", "humanize"):
        with pytest.raises(band_export.BandExportError, match="differ"):
            band_export.add_encoder(tap_run, out, kind)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, no .tmp left


def test_add_encoder_refuses_a_model_of_another_run(tiny_run, tmp_path):
    from export.band import BandExportError, add_encoder
    from performer.engine import default_model_dir

    other = tmp_path / "shipped"
    shutil.copytree(default_model_dir(), other)
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    with pytest.raises(BandExportError, match="not exported from"):
        add_encoder(tiny_run, other, "tap")
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before  # nothing written


def test_cli_drumify_writes_n_drum_parts(tap_model, tmp_path):
    clip = _melody(tmp_path / "keys.mid", [(s, 60 + s % 7, 70 + s) for s in (0, 3, 6, 8, 11, 14)], length_steps=32)
    r = run_cli("drumify", str(clip), "--out", str(tmp_path / "out"), "-n", "3", "--seed", "5",
                "--model", str(tap_model), "--quantize")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "out").glob("*.mid"))
    assert [f.name for f in files] == ["drumify_5.mid", "drumify_6.mid", "drumify_7.mid"]
    for f in files:
        p = midifile.read_drum_track(f).pattern
        assert p.steps <= drums.STEPS and np.all(p.offset == 0)
    assert "2-bar clip looped" in r.stdout


def test_humanizer_keeps_hits(tap_model, tmp_path):
    from performer.engine import Engine

    e = Engine.load(tap_model)
    rng = np.random.default_rng(0)
    classes = rng.integers(0, drums.NUM_CLASSES, (2, drums.STEPS)) * (rng.random((2, drums.STEPS)) < 0.5)
    v, o = band.humanize_arrays(e, classes)
    hits = drums.index_to_hits(classes)
    assert np.all((v > 0) == hits) and np.all(o[~hits] == 0)


@pytest.mark.parametrize("case", ["empty", "waltz", "no_tap", "missing"])
def test_cli_drumify_bad_input_one_line_nothing_written(tmp_path, case):
    out = tmp_path / "out"
    args = []
    if case == "empty":
        clip, needle = _melody(tmp_path / "e.mid", []), "no note-ons"
    elif case == "waltz":
        clip, needle = GMD_FIXTURE / "drummer1/session2/1_latin-chacarera_157_beat_3-4.mid", "3/4"
    elif case == "no_tap":  # the model folder has no tap encoder
        clip, needle = _melody(tmp_path / "k.mid", [(0, 60, 100)]), "tap"
        shipped = tmp_path / "m"
        from performer.engine import default_model_dir

        shutil.copytree(default_model_dir(), shipped)
        meta = json.loads((shipped / "model.json").read_text())
        meta["files"].pop("tap.onnx", None)
        (shipped / "model.json").write_text(json.dumps(meta))
        args = ["--model", str(shipped)]
    else:
        clip, needle = tmp_path / "nope.mid", "does not exist"
    r = run_cli("drumify", str(clip), "--out", str(out), *args)
    assert_one_line_error(r, needle)
    assert not out.exists()


def test_drumify_on_onsets_plays_exactly_on_the_rhythm(tap_model):
    from performer.engine import Engine

    e = Engine.load(tap_model)
    taps = np.zeros((drums.STEPS, 3), np.float32)
    taps[[0, 3, 6, 10, 16, 19, 22, 26, 40, 63], 0] = 1.0
    taps[:, 1] = taps[:, 0] * 0.8
    for p in band.drumify(e, taps, n=3, seed=1, on_onsets=True):
        assert np.array_equal(p.hits.any(1), taps[:, 0] > 0.5)
    a = band.drumify(e, taps, n=2, seed=1)
    b = band.drumify(e, taps, n=2, seed=1)
    assert all(x.equals(y) for x, y in zip(a, b, strict=True))  # seeded
