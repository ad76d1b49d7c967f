"""``--link`` over the real path: a real second Link peer, a private JACK server, the CLI.

Link peers must never run in this machine's own network namespace (multicast
on every interface). The peer refuses unless it is in a namespace made for
it with only loopback (checked by the first two tests, which start no peer),
and the end-to-end test runs the whole rig through ``unshare --net`` (see
tests/link_rig.py and benchmarks/link_timing.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from performer.link_clock import MISSING_LINE
from tests import link_rig
from tests.jack import harness as h

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop(link_rig.OUTER_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


# A run of link_timing with more xruns than this (it lasts ~15 s) is run again: the runs here that
# judged well had 2-69, two that did not 81 and 302 (notes 3-4 ms late away from any xrun, timed
# then by jackd's own frame-time estimate, which walks for seconds after late cycles; the timing
# is the benchmark's, on a quiet machine)
LINK_RUN_MOST_XRUNS = 50


def _link_timing(out: Path, args: list[str], judged: list[tuple[str, str, int]]) -> dict:
    """``benchmarks.link_timing --json out ARGS``, run again (3 runs in all) while the machine's
    xruns left too little to judge: more than LINK_RUN_MOST_XRUNS, or for any (judged, of, least)
    fewer than ``least`` of ``res[judged]`` (counted away from xruns) or more than 40 % of
    ``res[of]`` (all of them) at xruns, as tests/jack's assert_on_time rule (seen: 302 xruns in
    a 15 s run, half the notes at one). Such a run says nothing about the performer. The last
    run's results."""
    for _ in range(3):
        r = subprocess.run([sys.executable, "-m", "benchmarks.link_timing", "--json", str(out), *args],
                           text=True, capture_output=True, env=_env(), timeout=240, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        res = json.loads(out.read_text())
        if res["xruns"] <= LINK_RUN_MOST_XRUNS and all(res[j] >= max(least, 0.6 * res[of]) for j, of, least in judged):
            break
    return res


def test_cycle_clock_places_frames_at_their_cycle_starts_through_late_wakeups_and_a_slip():
    """The benchmark's frame -> time map: cycle starts from the recorder's stamps (each a start
    plus a wake-up delay), through delayed wake-ups (not slips) and a late cycle that shifts
    every later one (the dummy driver never catches up)."""
    import numpy as np

    from benchmarks.link_timing import CycleClock

    rng = np.random.default_rng(3)
    period, n, real_us = 128, 3000, 2700.0  # the driver sleeps a little over a period
    starts = 1e9 + real_us * np.arange(n)
    starts[1500:] += 15_000.0  # one cycle 15 ms late: all later ones too
    delay = rng.exponential(30.0, n)
    delay[rng.choice(n, 60, replace=False)] += 2_000.0  # the recorder woke 2 ms late now and then
    frames = period * np.arange(n) + 5_000
    stamps = [(int(f), int(round(1e3 * (s + d)))) for f, s, d in zip(frames, starts, delay, strict=True)]
    cc = CycleClock(stamps[::-1], period, 48000)  # order does not matter
    assert abs(cc.us_per_frame - real_us / period) < 0.01
    err = np.array([cc.host_us(int(f)) - s for f, s in zip(frames, starts, strict=True)])
    # within 0.1 ms (the measure is in ms): the rate comes from the stamps (here ~1 us a cycle off,
    # ~30 us over a window), and the last cycle, or one just before the slip, has few stamps on its line
    assert np.abs(err).max() < 100.0, np.abs(err).max()  # us
    # within a cycle, frames advance at the measured rate
    assert abs(cc.host_us(int(frames[10]) + 64) - (starts[10] + 64 * real_us / period)) < 100.0
    # the stamps alone would be up to 2 ms late; a start before the slip is not moved by it
    assert (np.array([t / 1e3 for _, t in stamps]) - starts).max() > 2_000.0
    assert abs(cc.host_us(int(frames[1499])) - starts[1499]) < 100.0


def test_peer_refuses_to_start_outside_a_private_namespace():
    r = subprocess.run([sys.executable, "-m", "tests.link_peer"], input="quit\n", text=True,
                       capture_output=True, env=_env(), timeout=30)
    assert r.returncode != 0
    assert "refusing to start a Link peer" in r.stderr
    assert '"ready"' not in r.stdout


def test_peer_refuses_in_the_namespace_it_was_launched_from():
    """A forged record of the outer namespace (ours) is caught: same inode, refused."""
    r = subprocess.run([sys.executable, "-m", "tests.link_peer"], input="quit\n", text=True,
                       capture_output=True, env=_env(**{link_rig.OUTER_ENV: str(link_rig.netns_inode())}),
                       timeout=30)
    assert r.returncode != 0
    assert "still in the launching network namespace" in r.stderr


def test_link_without_the_binding_is_one_line(tmp_path):
    shadow = tmp_path / "link"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('no Link binding here')\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    r = subprocess.run([sys.executable, "-m", "performer.cli", "--link", "--headless"], text=True,
                       capture_output=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and MISSING_LINE in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.jack
@pytest.mark.slow
def test_performer_follows_a_real_link_peer(tmp_path):
    """The peer sets the tempo, starts, changes the tempo, stops, starts again, stops;
    the performer's notes, recorded over JACK frames, follow every step."""
    why = link_rig.unavailable() or h.missing_tools()
    if why:
        pytest.skip(why)
    # jackd stopped for 20 ms just after the peer's tempo change: its cycles run late from there on
    # (the last CI failed this test when the machine did that: follow 1.44 beats, then measured
    # by jackd's own frame-time estimate, which takes seconds to come back to the wall clock)
    res = _link_timing(tmp_path / "link.json", ["--seconds", "5", "--after", "3", "--pause-ms", "20"],
                       [("notes_120_away", "notes_120", 10)])
    # it really ran in a namespace of its own, with loopback only
    assert res["netns"]["interfaces"] == ["lo"]
    assert res["netns"]["inode"] != res["netns"]["launching_inode"]
    assert res["netns"]["launching_inode"] == link_rig.netns_inode()
    # JACK's clock is Link's clock (CLOCK_MONOTONIC_RAW), and so are the recorder's cycle stamps
    # the notes are timed by: the measurement is on one timeline
    assert res["jack_vs_raw_us_median"] < 50
    period_ms = 1000.0 * res["jack_period"] / 48000
    assert res["notes_120"] >= 20, res["log_tail"]
    # on the peer's 16th grid: JACK delivers at the next period start, so within a period (+1 ms);
    # judged away from xruns, as the live timing is (the run's headline figures take them all)
    assert res["notes_120_away"] >= 10, f"{res['notes_120_away']} notes away from {res['xruns']} xruns"
    assert res["link_median_abs_err_ms_away"] <= period_ms
    assert res["link_p95_abs_err_ms_away"] <= period_ms + 1.0
    # the peer's tempo change is followed within a beat
    assert res["notes_after_change"] >= 10
    assert res["link_tempo_follow_beats"] is not None and res["link_tempo_follow_beats"] <= 1.0, \
        (res["after_change_beats"], res["after_change_errs_ms"], res["xruns"])
    # the peer's stop stops the performer; its start starts it on the peer's bar, on the grid
    assert res["notes_after_stop"] == 0
    assert res["notes_after_restart"] > 0
    assert -5.0 <= res["restart_first_note_minus_peer_start_ms"] <= 60000.0 / res["to_bpm"]
    # one note: judged on the grid unless an xrun came just before it (the median and p95
    # above judge the many); it failed once in about ten CI runs (-4.16 ms), xruns not recorded then
    if not res["restart_first_note_near_xrun"]:
        assert abs(res["restart_first_note_grid_err_ms"]) <= period_ms + 1.0, (
            f"first note after the restart {res['restart_first_note_grid_err_ms']:.2f} ms off the peer's grid; "
            f"{res['xruns']} xruns in the take")
    assert res["unreleased"] == 0


@pytest.mark.jack
@pytest.mark.slow
def test_link_with_audio_sounds_each_note_when_its_midi_plays(tmp_path):
    """``--link --audio`` against a real peer: the MIDI stays on the peer's grid, and each
    audible onset of the built-in kit (recorded over JACK) is within 3 ms of its MIDI note-on."""
    why = link_rig.unavailable() or h.missing_tools()
    if why:
        pytest.skip(why)
    pytest.importorskip("sounddevice", reason="--audio needs the audio extra (sounddevice)")
    res = _link_timing(tmp_path / "link-audio.json", ["--audio", "--audio-dir", str(tmp_path), "--seed", "21",
                                                      "--seconds", "6", "--after", "2"],
                       [("notes_120_away", "notes_120", 10), ("audio_onsets_no_xrun", "audio_onsets", 8)])
    assert res["netns"]["interfaces"] == ["lo"]
    period_ms = 1000.0 * res["jack_period"] / 48000
    assert res["notes_120"] >= 20, res["log_tail"]
    assert res["link_median_abs_err_ms_away"] <= period_ms
    # onsets near an xrun are left out (the server itself missed its deadline there)
    assert res["audio_onsets_no_xrun"] >= 8, res
    assert res["audio_max_abs_err_ms_no_xrun"] <= 3.0, (res["audio_errs_ms"], res["audio_err_beats"])
    assert res["unreleased"] == 0


@pytest.mark.slow
def test_link_clock_on_the_real_binding_follows_a_real_peer_and_leads_its_tempo():
    """LinkClock + LinkSession (the binding) against a peer process: our tempo change reaches
    the peer, the peer's tempo, start and stop reach our clock, and the beat phase agrees."""
    why = link_rig.unavailable()
    if why:
        pytest.skip(why)
    r = link_rig.run_in_private_netns("tests.link_session_check", [], timeout=120, capture=True)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["interfaces"] == ["lo"]
    assert res["joined"]
    assert res["describe"] == "Ableton Link, 1 peer"
    assert res["peer_tempo_after_ours"] == pytest.approx(133.0, abs=1e-3)
    assert res["our_bpm_after_peer"] == pytest.approx(90.0, abs=1e-3)
    assert res["phase_diff_beats"] < 1e-3  # quantum 4: bars line up
    assert res["stopped_after_peer_stop"] and res["started_after_peer_start"]
    assert res["start_pos"] is not None and res["start_pos"] % 96 == 0  # the peer starts on its bar
    assert abs(res["start_time_minus_peer_start_us"]) < 100
    assert res["stops"] == 1
