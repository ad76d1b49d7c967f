"""The built-in kit, the block renderer, ``sample --wav`` and the SoundFont path (issue 10)."""

from __future__ import annotations

import argparse
import sys
import wave

import numpy as np
import pytest

from benchmarks import audio_onsets as ao
from performer import sound
from performer.sound import SAMPLE_RATE, Event
from tests.conftest import FIXTURES, assert_one_line_error, run_cli

SR = SAMPLE_RATE


def _render(events, frames, block=sound.BLOCK):
    r = sound.Renderer()
    for e in events:
        r.schedule(e)
    out = [r.render(min(block, frames - k)) for k in range(0, frames, block)]
    return np.concatenate(out), r


def test_every_kit_voice_sounds_on_its_frame():
    """Each GM pitch of the model sounds, starts exactly on its frame and is silent before."""
    from model import drums

    for pitch in drums.OUTPUT_PITCHES:
        audio, _ = _render([Event(1000, pitch, 100)], 6000)
        assert not audio[:1000].any(), pitch
        assert np.abs(audio[1000:1010]).max() > 0, pitch
        assert np.abs(audio).max() > 0.05, pitch


def test_velocity_changes_level_and_brightness():
    def centroid(x):
        spec = np.abs(np.fft.rfft(x))
        return float((spec * np.fft.rfftfreq(len(x), 1 / SR)).sum() / spec.sum())

    for pitch in (36, 38, 42, 49):
        soft, _ = _render([Event(0, pitch, 30)], 8192)
        hard, _ = _render([Event(0, pitch, 120)], 8192)
        s, h = soft.mean(axis=1), hard.mean(axis=1)
        assert np.sqrt(np.mean(h**2)) > 4 * np.sqrt(np.mean(s**2)), pitch  # about 20 dB from 30 to 120
        assert centroid(h) > centroid(s), pitch


def test_closed_hat_chokes_open_hat():
    open_only, _ = _render([Event(0, 46, 100)], 20000)
    choked, _ = _render([Event(0, 46, 100), Event(5000, 42, 1)], 20000)  # a closed hat at velocity 1: all but silent
    after = slice(5000 + round(sound.CHOKE_S * SR) + 2000, 20000)
    assert np.array_equal(open_only[:5000], choked[:5000])
    ring = np.abs(open_only[after]).max()
    left = np.abs(choked[after]).max()
    assert ring > 0.01 and left < 0.2 * ring


def test_a_closed_hat_note_off_does_not_choke_the_open_hat():
    """MIDI files carry a note-off for every closed hat; only the strike closes the hat
    (a note-off choking the ringing open hat dropped notes from rendered WAVs)."""
    open_only, _ = _render([Event(0, 46, 100)], 20000)
    with_off, _ = _render([Event(0, 46, 100), Event(5000, 42, 0)], 20000)
    np.testing.assert_array_equal(with_off, open_only)


def test_block_size_does_not_change_the_sound():
    """The live callback's block size varies; the audio must not."""
    events = [Event(f, p, v) for f, p, v in [(0, 36, 110), (700, 42, 60), (1500, 46, 90), (5513, 42, 80),
                                            (11025, 38, 127), (11030, 49, 100), (20000, 51, 70)]]
    ref, _ = _render(events, 40000, block=512)
    for block in (64, 441, 1000, 4096):
        got, _ = _render(events, 40000, block=block)
        np.testing.assert_array_equal(got, ref)


def test_kit_at_48k_keeps_its_sound():
    """A live device may run at 48 kHz: the kit is built at that rate, same length in seconds."""
    r = sound.Renderer(sample_rate=48000)
    r.schedule(Event(480, 38, 100))
    out = np.concatenate([r.render(512) for _ in range(40)])
    assert not out[:480].any() and np.abs(out[480:490]).max() > 0
    assert len(sound.synth_kit(48000)[38].hard) == round(len(sound.synth_kit()[38].hard) * 48000 / SR)


def test_late_note_starts_at_the_block_and_is_counted():
    r = sound.Renderer()
    r.render(1024)
    r.schedule(Event(100, 38, 100))  # already past
    out = r.render(512)
    assert r.late == 1
    assert np.abs(out[:5]).max() > 0


def test_clear_silences_and_forgets_only_what_came_before():
    r = sound.Renderer()
    r.schedule(Event(0, 49, 127))
    r.schedule(Event(3000, 36, 127))
    r.render(512)
    r.clear()  # from another thread in the live sink: it only queues a marker
    r.schedule(Event(6000, 38, 100))
    out = r.render(8192)
    assert not out[: 6000 - 512].any()
    assert np.abs(out[6000 - 512 :]).max() > 0.05


def test_detector_places_a_known_onset_and_sees_a_shift():
    """The measurement itself: within 0.5 ms of a known onset on a ride tail, and a 3 ms shift shows as 3 ms."""
    f0 = 30000
    audio, _ = _render([Event(0, 51, 110), Event(f0, 38, 100), Event(f0 + 9000, 42, 90)], 50000)
    exp = np.array([f0, f0 + 9000])
    found = ao.onset_frames(audio, exp, SR)
    assert np.abs(found - exp).max() <= ao.WINDOW  # 0.5 ms
    shift = round(0.003 * SR)
    late = np.concatenate([np.zeros((shift, 2), np.float32), audio])[: len(audio)]
    np.testing.assert_array_equal(ao.onset_frames(late, exp, SR) - found, shift)


def _check_wav_format(path):
    with wave.open(str(path), "rb") as w:
        assert (w.getsampwidth(), w.getframerate(), w.getnchannels()) == (2, 44100, 2)
        return w.getnframes()


def test_sample_wav_onsets_match_midi(tmp_path):
    """Must show: ``sample -n 2 --seed 21 --wav`` -- audio onsets on the .mid's note-ons within 2 ms."""
    out = tmp_path / "g"
    p = run_cli("sample", "-n", "2", "--seed", "21", "--wav", "--out", str(out))
    assert p.returncode == 0, p.stderr
    listed = [line.strip() for line in p.stdout.splitlines() if line.startswith("  ")]
    assert listed == [str(out / n) for n in ("groove_21.mid", "groove_21.wav", "groove_22.mid", "groove_22.wav")]
    assert not list(out.glob("*.tmp"))
    errs, onsets = [], 0
    for mid in sorted(out.glob("*.mid")):
        wav = mid.with_suffix(".wav")
        frames = _check_wav_format(wav)
        assert frames >= 8.0 * SR  # four bars at 120 BPM, plus the ringing tail
        # Every note: the frames the WAV was rendered at are pretty_midi's note-on times of the file.
        got = sorted((e.frame, e.pitch, e.velocity) for e in sound.midi_events(mid) if e.velocity > 0)
        assert got == ao.midi_notes(mid, SR)
        e, n = ao.file_errors_ms(mid, wav)
        errs.append(e)
        onsets += n
        # every note, masked ones included: its own sound starts on its note-on
        own = np.abs(ao.contribution_errors_ms(mid, wav))
        assert own.max() <= 2.0, own
    errs = np.abs(np.concatenate(errs))
    assert errs.size >= 20 and onsets > 100
    assert errs.max() <= 2.0, errs  # measured: median 0.05 ms, max 0.27 ms (benchmarks/results/audio_onsets.json)


def test_quantized_interpolation_wav_follows_bpm(tmp_path):
    a = FIXTURES / "gmd/drummer3/session2/37_rock_92_beat_4-4.mid"
    b = FIXTURES / "gmd/drummer7/session3/130_soul_105_beat_4-4.mid"
    out = tmp_path / "m"
    p = run_cli("sample", "--interpolate", str(a), str(b), "--steps", "2", "--wav", "--quantize", "--bpm", "90", "--out", str(out))
    assert p.returncode == 0, p.stderr
    step = 60 / 90 / 4 * SR
    for mid in (out / "morph_00.mid", out / "morph_01.mid"):
        assert str(mid.with_suffix(".wav")) in p.stdout
        assert _check_wav_format(mid.with_suffix(".wav")) >= 64 * step
        frames = np.array([e.frame for e in sound.midi_events(mid)])
        # on the grid at 90 BPM: note-ons and note-offs (half a step later) on multiples of half a step
        assert np.abs(frames / (step / 2) - np.round(frames / (step / 2))).max() * step / 2 <= 1.0


def test_write_wav_round_trip_and_clip(tmp_path):
    x = np.stack([np.linspace(-1.5, 1.5, 1000), np.zeros(1000)], axis=1).astype(np.float32)
    sound.write_wav(tmp_path / "a.wav", x)
    y, sr = sound.read_wav(tmp_path / "a.wav")
    assert sr == SR and y.shape == (1000, 2)
    assert np.abs(y - np.clip(x, -1, 1)).max() <= 1 / 32767
    assert not list(tmp_path.glob("*.tmp"))


def test_soundfont_bad_input_is_one_line(tmp_path):
    assert_one_line_error(run_cli("sample", "--out", str(tmp_path), "--soundfont", str(tmp_path / "none.sf2")), "does not exist")


def test_soundfont_missing_library_names_the_install(tmp_path, monkeypatch):
    sf2 = tmp_path / "kit.sf2"
    sf2.write_bytes(b"RIFF")
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "fluidsynth", None)
    with pytest.raises(argparse.ArgumentTypeError, match=r"pip install 'drum-performer\[audio\]'"):
        sound.soundfont_arg(str(sf2))


def test_fluidsynth_is_the_fallback(monkeypatch):
    from performer import soundfont

    if not soundfont._importable("fluidsynth"):
        pytest.skip("pyfluidsynth or libfluidsynth not installed")
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    assert soundfont.require() == "fluidsynth"


def test_not_a_soundfont_is_one_line(tmp_path):
    pytest.importorskip("tinysoundfont")
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont at all")
    assert_one_line_error(run_cli("sample", "-n", "1", "--out", str(tmp_path / "o"), "--soundfont", str(bad)), "soundfont")


SF2 = [p for p in ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2") if __import__("os").path.exists(p)]


@pytest.mark.skipif(not SF2, reason="no GM SoundFont installed (Debian: timgm6mb-soundfont)")
@pytest.mark.parametrize("font", SF2)
def test_soundfont_notes_start_on_their_frames(font):
    """Sample-exact with tinysoundfont: the block is split at the note's frame."""
    pytest.importorskip("tinysoundfont")
    from benchmarks.soundfont_compare import _first_loud
    from performer.soundfont import SoundFontRenderer

    lags = []
    for f in (0, 1000, 5001, 9733, 20000 + 37):
        r = SoundFontRenderer(font, backend="tinysoundfont")
        r.schedule(Event(f, 38, 110))
        r.schedule(Event(f + 2000, 38, 0))
        audio = np.concatenate([r.render(512) for _ in range(60)])
        assert not audio[:f].any()
        lags.append(_first_loud(audio) - f)
    assert max(lags) - min(lags) <= 1, lags


@pytest.mark.skipif(not SF2, reason="no GM SoundFont installed (Debian: timgm6mb-soundfont)")
def test_sample_wav_with_soundfont(tmp_path):
    pytest.importorskip("tinysoundfont")
    out = tmp_path / "sf"
    p = run_cli("sample", "-n", "1", "--seed", "3", "--soundfont", SF2[0], "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert _check_wav_format(out / "groove_3.wav") >= 8 * SR
    audio, _ = sound.read_wav(out / "groove_3.wav")
    assert np.abs(audio).max() > 0.05


def test_a_struck_voice_is_its_two_layers_mixed_by_velocity_then_panned():
    """A note is the voice's soft and hard layers mixed by velocity, at the voice's level and
    pan (the renderer adds the kit's panned layers, ``Voice.soft_lr`` and ``hard_lr``)."""
    r = sound.Renderer()
    for pitch, velocity in ((42, 90), (50, 40), (49, 127)):
        v = r.kit[pitch]
        audio, _ = _render([Event(0, pitch, velocity)], len(v.soft), block=128)
        mix = velocity / 127.0
        mono = sound.velocity_gain(velocity) * v.level * ((1.0 - mix) * v.soft + mix * v.hard)
        want = sound.soft_clip(np.stack([v.pan[0] * mono, v.pan[1] * mono], axis=1) * sound.MASTER_GAIN)
        np.testing.assert_allclose(audio, want, rtol=1e-6, atol=1e-7, err_msg=str(pitch))
