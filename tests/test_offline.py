import numpy as np

from model import midifile
from performer.engine import Engine
from tests.conftest import assert_one_line_error, run_cli


def test_sample_writes_the_engines_patterns(tiny_model, tmp_path):
    out = tmp_path / "grooves"
    p = run_cli("sample", "-n", "3", "--out", str(out), "--seed", "40", "--model", str(tiny_model), "--bpm", "100")
    assert p.returncode == 0, p.stderr
    files = sorted(out.glob("*.mid"))
    assert [f.name for f in files] == ["groove_40.mid", "groove_41.mid", "groove_42.mid"]
    engine = Engine.load(tiny_model)
    for i, f in enumerate(files):
        want = engine.sample(seed=40 + i)  # the model's default temperature, as the CLI
        got = midifile.read_pattern(f)
        early0 = want.offset[0] < 0  # a file cannot start before 0: step-0 early hits are clamped
        assert np.array_equal(got.hits, want.hits)
        assert np.abs(got.velocity - want.velocity).max() <= 0.5 / 127 + 1e-6
        ok = np.abs(got.offset - want.offset) <= 1 / 120 + 1e-6
        ok[0] |= early0
        assert ok.all()


def test_quantized_and_png(tiny_model, tmp_path):
    out = tmp_path / "q"
    p = run_cli("sample", "-n", "1", "--out", str(out), "--seed", "1", "--model", str(tiny_model), "--quantize", "--png")
    assert p.returncode == 0, p.stderr
    assert not midifile.read_pattern(out / "groove_1.mid").offset.any()
    assert (out / "groove_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interpolate_between_two_clips(tiny_model, tmp_path, gmd_fixture):
    a = gmd_fixture / "drummer3/session2/37_rock_92_beat_4-4.mid"
    b = gmd_fixture / "drummer7/session3/130_soul_105_beat_4-4.mid"
    out = tmp_path / "morph"
    p = run_cli("sample", "--interpolate", str(a), str(b), "--steps", "4", "--out", str(out), "--model", str(tiny_model))
    assert p.returncode == 0, p.stderr
    files = sorted(out.glob("morph_*.mid"))
    assert len(files) == 4
    engine = Engine.load(tiny_model)
    first = engine.sample(z=engine.encode_file(a), temperature=0.0)
    last = engine.sample(z=engine.encode_file(b), temperature=0.0)
    assert np.array_equal(midifile.read_pattern(files[0]).hits, first.hits)
    assert np.array_equal(midifile.read_pattern(files[-1]).hits, last.hits)


def test_sample_bad_input(tiny_model, tmp_path):
    assert_one_line_error(run_cli("sample", "-n", "0", "--out", str(tmp_path)), "at least 1")
    assert_one_line_error(run_cli("sample", "--out", str(tmp_path), "--model", str(tmp_path / "none")), "does not exist")
    assert_one_line_error(run_cli("sample", "--out", str(tmp_path), "--temperature", "abc"), "not a number")
    assert_one_line_error(run_cli("sample", "--out", str(tmp_path), "--bpm", "1000"), "BPM")
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run_cli("sample", "--out", str(f), "--model", str(tiny_model)), "not a folder")
    assert_one_line_error(
        run_cli("sample", "--interpolate", str(tmp_path / "a.mid"), str(tmp_path / "b.mid"), "--out", str(tmp_path / "o"), "--model", str(tiny_model)),
        "does not exist",
    )
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"garbage")
    assert_one_line_error(
        run_cli("sample", "--interpolate", str(bad), str(bad), "--out", str(tmp_path / "o"), "--model", str(tiny_model)),
        "unreadable",
    )


def test_styles_lists_any_then_the_models_styles_name_first(tiny_model):
    p = run_cli("styles", "--model", str(tiny_model))
    assert p.returncode == 0, p.stderr
    names = [line.split("\t")[0] for line in p.stdout.splitlines()]
    assert names == ["any", "rock", "soul"]  # the tiny model's training genres (tests/fixtures/gmd)


def test_sample_style_and_fill_are_the_engines_and_fill_changes_only_bar_4(tiny_model, tmp_path):
    engine = Engine.load(tiny_model)
    plain, filled = tmp_path / "plain", tmp_path / "filled"
    for out, extra in ((plain, []), (filled, ["--fill"])):
        p = run_cli("sample", "-n", "2", "--seed", "5", "--style", "soul", "--quantize", "--out", str(out),
                    "--model", str(tiny_model), *extra)
        assert p.returncode == 0, p.stderr
    for seed in (5, 6):
        a = midifile.read_pattern(plain / f"groove_{seed}.mid")
        b = midifile.read_pattern(filled / f"groove_{seed}.mid")
        assert np.array_equal(a.hits, engine.sample(seed=seed, style="soul").hits)
        assert np.array_equal(b.hits, engine.sample(seed=seed, style="soul", fill=True).hits)
        assert np.array_equal(a.hits[:48], b.hits[:48])  # bars 1-3 stay the groove


def test_unknown_style_is_one_line_naming_the_known_ones_and_writes_nothing(tiny_model, tmp_path):
    out = tmp_path / "none"
    p = run_cli("sample", "--style", "polka", "--out", str(out), "--model", str(tiny_model))
    assert_one_line_error(p)
    assert "polka" in p.stderr and "rock" in p.stderr and "soul" in p.stderr
    assert not out.exists()
