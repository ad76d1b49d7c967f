"""The live performer end to end, over a private JACK server with real peers.

``drum-performer --api jack`` runs as a subprocess of its own command line;
``jack_midi_clock`` is the clock master, ``jack_transport`` the transport (start,
stop, locate, tempo) and timebase master, and a JACK client of ours records the
clock and everything the performer sends with frame-accurate stamps. Expected
notes come from the engine itself: ``Engine.load(model).sample(seed, temperature)``
is, by contract, the first groove the performer plays for ``--seed``.

Timing tolerance is the spec's: one JACK period + 1 ms (the performer can only
write MIDI at the start of a period, so a note reacting to a tick lands up to a
period later).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from model import drums
from tests.jack import harness as h

pytestmark = [pytest.mark.jack, pytest.mark.slow]

TEMPERATURE = 1.0
BPM = 120.0
PITCHES = drums.OUTPUT_PITCHES
log = logging.getLogger(__name__)
STEP = h.TICKS_PER_STEP


# Timing is not judged near an xrun: the server itself missed its deadline there,
# so its frame time and the wall clock part by a few ms; a performer that sends
# at predicted wall times (as this one does, to be early for negative offsets)
# lands that much off until its tempo fit over the last beat of ticks has
# caught up. Observed on this 2-core machine under load: 4-20 ms errors from
# just before the reported xrun to ~45 ms after it. The window: 30 ms before the
# xrun's report, one beat (at 120 BPM) after. The failure says how many notes
# were left out.
XRUN_BEFORE_MS = 30.0
XRUN_AFTER_MS = 500.0
# and the report comes a few periods after the xrun: at 256 frames a groove note 7.6 ms early
# was 43 ms before the xrun's report
XRUN_REPORT_PERIODS = 4


def tolerance_ms(server: h.JackServer) -> float:
    return server.period_ms + 1.0


def assert_on_time(placed: list[h.Placed], t: Take, server: h.JackServer, what: str = "") -> None:
    """Every note-on within the tolerance of its step's tick, except right at an xrun."""
    tol = tolerance_ms(server)
    near = {id(p) for p in placed if t.near_xrun(p.note.frame, server)}
    if placed and len(near) > 0.4 * len(placed):
        raise h.InvalidTake(f"{len(near)} of {len(placed)} notes near an xrun")
    judged = [p for p in placed if id(p) not in near]
    bad = [p for p in judged if abs(server.ms(p.error_frames)) > tol]
    assert not bad, (what + timing_report(judged, server, tol)
                     + f"\n({len(near)} notes near the take's {len(t.xrun_frames)} xruns and {len(t.late)} cycles "
                                           f"our recorder missed not judged)")


@pytest.fixture(scope="session")
def engine(live_model):
    from performer.engine import Engine

    return Engine.load(live_model)


@pytest.fixture(scope="session")
def groove(engine):
    """(seed, its first groove): the first seed whose groove is busy enough to test with
    (hits on half the steps or more, three voices or more), else the busiest of 64."""
    best = None
    for seed in range(64):
        p = engine.sample(seed=seed, temperature=TEMPERATURE)
        steps, voices = int(p.hits.any(axis=1).sum()), int(p.hits.any(axis=0).sum())
        score = (steps >= 32 and voices >= 3, steps)
        if best is None or score > best[0]:
            best = (score, seed, p)
        if score[0]:
            break
    _, seed, pattern = best
    assert pattern.hits.any(), "every sampled groove is empty: nothing to test against"
    return seed, pattern


def performer_args(model: Path, seed: int, *extra: str) -> list[str]:
    return ["--model", str(model), "--seed", str(seed), "--temperature", f"{TEMPERATURE:g}", *extra]


def busiest_step(pattern, lo: int, hi: int) -> int:
    """The step in [lo, hi) with the most hits: stopping just after it leaves notes sounding."""
    counts = pattern.hits[lo:hi].sum(axis=1)
    return lo + int(np.argmax(counts))


@dataclass
class Take:
    """One recorded performance, decoded."""

    track: h.ClockTrack
    notes: list[h.Note]
    controls: list[h.Control]
    events: list[h.Event]  # the performer's output, in arrival order
    output: str  # the performer's log
    xruns: int
    xrun_frames: list[int]
    record: Path | None = None  # the performer's --record file, written when it exited
    blind: list[tuple[int, int]] = field(default_factory=list)  # [start, end) frames the notes recorder missed
    # first frames of cycles our recorder missed (any input; not those of a stall the test made):
    # the machine ran late there as at an xrun, often with no xrun reported (CI, 2026-12-02: the
    # recorder missed one cycle, and a note 3 cycles later went out in the cycle before its
    # tick's, 208 frames early, -4.3 ms)
    late: list[int] = field(default_factory=list)

    def blind_steps(self) -> set[int]:
        """Absolute steps whose notes may have gone out in a cycle the notes recorder missed:
        a blind window within half a step of the step's tick (a groove-mode note sits up to
        half a step off its tick)."""
        half = h.TICKS_PER_STEP * statistics.median(self.track.intervals()) / 2 if self.blind else 0
        return {k.pos // h.TICKS_PER_STEP for k in self.track.grid()
                if any(a - half <= k.frame < b + half for a, b in self.blind)}

    def blind_after(self, frame: float) -> bool:
        """Did the notes recorder miss a cycle after ``frame``? (What the performer sent then,
        a note-off or a CC123, is not in the recording.)"""
        return any(b > frame for _, b in self.blind)

    def unreleased(self) -> list[h.Note]:
        """Note-ons without their note-off in the recording, but for those whose note-off may
        have gone out in a cycle the notes recorder missed (:func:`h.unreleased`)."""
        return h.unreleased(self.notes, self.blind)

    def near_xrun(self, frame: float, server: h.JackServer) -> bool:
        """Is ``frame`` in the window of an xrun, or of a cycle our recorder missed (:attr:`late`)?"""
        before = server.frames(XRUN_BEFORE_MS) + XRUN_REPORT_PERIODS * server.period
        return any(-before <= frame - f <= server.frames(XRUN_AFTER_MS) for f in self.xrun_frames + self.late)

    def placed(self) -> list[h.Placed]:
        return h.place(self.notes, self.track, PITCHES)


def stop_and_take(rig: h.Rig) -> tuple[bool, Take]:
    """Stop the transport, let the last notes out, and take the recording (alive?, take).
    Cycles the notes recorder missed are in ``Take.blind``: judge with :meth:`Take.blind_steps`
    and :meth:`Take.unreleased`."""
    time.sleep(0.2)
    rig.stop()
    time.sleep(0.2)
    alive = rig.performer.alive()
    return alive, take(rig)


# After a stall the test made, the performer runs late for a while and the notes recorder
# (which JACK runs after it) misses cycles: measured in CI, up to 48 ms from the stall's start.
STALL_CATCH_UP_MS = 100.0


def take(rig: h.Rig, stalled: tuple[int, int] | None = None) -> Take:
    """The recording, decoded; an :class:`h.InvalidTake` when our copy of the clock is not
    whole. Cycles the notes recorder missed are kept in ``Take.blind``: what the performer sent
    then is not in the recording, so a test excuses the steps there (:meth:`Take.blind_steps`),
    the note-offs that may have gone out there (:meth:`Take.unreleased`), or, where it judges
    what went out at one moment (Stop, a signal), calls the take invalid when that moment is
    blind (:meth:`Take.blind_after`). On a noisy machine the notes recorder misses cycles in
    many takes (one pass of tests/jack, 2026-12-02, rejected 12 takes for it and failed 6 tests
    on it after 3 takes each), so no take is rejected for that alone.
    ``stalled``: frames of a stall the test made (SIGSTOP of the performer or the server),
    in and just after which the notes recorder, fed by the performer, misses cycles: not blind."""
    rig.rec.settle()
    t = Take(rig.track(), rig.notes(), rig.controls(), rig.rec.events("notes"),
             rig.performer.output() if rig.performer else "", rig.rec.xruns, list(rig.rec.xrun_frames))
    # A hole in our copy of the clock (the clock master or our recorder missed a
    # period) would make the performer look a tick off from there on. rig.track() has put
    # back the clocks of holes whole clocks long (harness.ClockTrack.fillable); any other
    # hole leaves the take unjudged.
    holes = t.track.gaps()
    if holes:
        raise h.InvalidTake(f"the clock recording has holes before song positions "
                            f"{[k.pos for k in holes]} ({t.xruns} xruns)")
    doubled = t.track.doubled()
    if doubled:
        raise h.InvalidTake(f"the clock recording has ticks taken twice at song positions "
                            f"{[k.pos for k in doubled]} ({t.xruns} xruns)")
    # cycles our notes recorder did not run in while the clock played: what the performer sent
    # then is not in the recording (in 12 of 38 recordings of one tests/jack pass it missed
    # some; a test failed on "missing" notes once)
    if t.track.ticks:
        lo, hi = t.track.ticks[0].frame, t.track.ticks[-1].frame + rig.server.rate  # and a second after
        def ours(a: int, b: int) -> bool:  # in or just after the stall the test made
            return bool(stalled) and stalled[0] <= b and a <= stalled[1] + rig.server.frames(STALL_CATCH_UP_MS)

        t.blind = [(a, b) for inp, a, b in rig.rec.missed if inp == "notes" and a < hi and b > lo and not ours(a, b)]
        t.late = sorted({a for _, a, b in rig.rec.missed if not ours(a, b)})
        missed = [(a, b - a) for a, b in t.blind]
        if missed:
            log.warning("the notes recorder missed cycles at (frame, frames) %s; steps %s excused",
                        missed, sorted(t.blind_steps()))
    return t


def timing_report(placed: list[h.Placed], server: h.JackServer, tol_ms: float, bpm: float = BPM) -> str:
    bad = [p for p in placed if abs(server.ms(p.error_frames)) > tol_ms]
    errs = [abs(server.ms(p.error_frames)) for p in placed]
    tick = h.frames_per_tick(server, bpm)
    # Off by whole clocks: the performer's song position and the clock's count parted.
    whole = sorted({round(p.error_frames / tick) for p in bad} - {0})
    hint = ""
    if any(w > 0 for w in whole):
        hint += "\nsome notes whole clocks late: the performer missed clock messages?"
    if any(w < 0 for w in whole):
        hint += ("\nsome notes whole clocks early: the performer counted more clocks than the "
                 "master sent (e.g. re-entering by time after clocks came late, at an xrun)?")
    if whole:
        hint += f" (off by {whole} clocks)"
    return (f"{len(bad)} of {len(placed)} note-ons off their tick by more than {tol_ms:.3f} ms "
            f"(median {h.percentile(errs, 50):.3f} ms, max {max(errs, default=0):.3f} ms):\n"
            + h.describe(sorted(bad, key=lambda p: -abs(p.error_frames)), server) + hint)


def assert_plays(placed: list[h.Placed], pattern, steps: range, what: str, blind: Collection[int] = ()) -> None:
    """The notes at ``steps`` of the first cycle are exactly the pattern's hits there.
    ``blind``: steps the recording may have missed notes of (:meth:`Take.blind_steps`);
    nothing there counts as missing, but a note there must still be the pattern's."""
    got = collections.Counter((p.step, p.voice) for p in placed if p.step in steps)
    want = h.expected_hits(pattern.hits, steps)
    doubled = {k: n for k, n in got.items() if n > 1}
    missing = sorted(k for k in want - set(got) if k[0] not in blind)
    extra = sorted(set(got) - want)
    assert not (missing or extra or doubled), (
        f"{what}: steps {steps.start}..{steps.stop - 1} differ from the engine's pattern\n"
        f"missing (step, voice): {missing[:20]}\nextra: {extra[:20]}\nplayed twice: {doubled}\n"
        f"pattern:\n{pattern.grid()}")


# --- one quantized cycle, shared by the checks that only need to look at it ---------


@pytest.fixture(scope="module")
def quantized_cycle(jack_server, live_model, groove, tmp_path_factory) -> Take:
    return _quantized_cycle(jack_server, live_model, groove, tmp_path_factory.mktemp("record"))


@h.retry_invalid()
def _quantized_cycle(jack_server, live_model, groove, folder: Path) -> Take:
    seed, _ = groove
    record = folder / f"take-{uuid.uuid4().hex[:6]}.mid"
    with h.Rig(jack_server, performer_args(live_model, seed, "--quantize", "--record", str(record)),
               bpm=BPM) as rig:
        rig.start()
        assert rig.wait_pos(h.TICKS_PER_CYCLE + 2 * STEP), "the clock did not reach the second cycle"
        time.sleep(0.3)  # room for the last note-offs
        rig.stop()
        time.sleep(0.3)
        t = take(rig)
    t.record = record  # written on exit: the rig has stopped the performer by now
    return t


def test_quantized_note_ons_land_on_the_tick_of_their_step(quantized_cycle, jack_server):
    placed = [p for p in quantized_cycle.placed() if p.cycle == 0]
    assert placed, f"no notes in the first cycle; performer log:\n{quantized_cycle.output[-2000:]}"
    assert_on_time(placed, quantized_cycle, jack_server)


def test_first_cycle_is_exactly_the_engines_pattern_for_the_seed(quantized_cycle, groove):
    _, pattern = groove
    ons = [n for n in quantized_cycle.notes if n.on]
    assert {n.channel for n in ons} == {h.DRUM_CHANNEL}, "notes must be on GM channel 10"
    foreign = sorted({n.pitch for n in ons} - set(PITCHES))
    assert not foreign, f"pitches outside model.drums.OUTPUT_PITCHES: {foreign}"
    placed = [p for p in quantized_cycle.placed() if p.cycle == 0]
    assert_plays(placed, pattern, range(h.STEPS_PER_CYCLE), "first cycle", quantized_cycle.blind_steps())
    wrong_vel = [(p.step, p.voice, p.note.velocity, drums.velocity_to_midi(pattern.velocity[p.step, p.voice]))
                 for p in placed
                 if abs(p.note.velocity - drums.velocity_to_midi(pattern.velocity[p.step, p.voice])) > 1]
    assert not wrong_vel, f"(step, voice, played, model) velocities differ by more than MIDI rounding: {wrong_vel[:20]}"


def test_record_file_holds_what_was_played(quantized_cycle):
    """--record FILE.mid: the file's notes are the ones that went out over JACK, on
    the song-position timeline (a quantized note at its step's position)."""
    import mido

    path = quantized_cycle.record
    assert path is not None and path.exists(), f"no --record file; performer log:\n{quantized_cycle.output[-2000:]}"
    mid = mido.MidiFile(path)
    per_step = mid.ticks_per_beat // 4
    in_file, now = [], 0
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            in_file.append((now / per_step, msg.channel, msg.note, msg.velocity))
    played = [(p.step, p.note.channel, p.note.pitch, p.note.velocity)
              for p in quantized_cycle.placed() if p.cycle == 0]
    # steps whose notes may have gone out in a cycle our notes recorder missed are not compared
    blind = quantized_cycle.blind_steps()
    first_cycle = sorted(x for x in in_file if x[0] < h.STEPS_PER_CYCLE and int(x[0]) not in blind)
    played = [x for x in played if x[0] not in blind]
    assert first_cycle == sorted((float(a), b, c, d) for a, b, c, d in played), (
        f"file vs played, first cycle: only in file {sorted(set(first_cycle) - set(played))[:10]}, "
        f"only played {sorted(set(played) - set(first_cycle))[:10]}")
    assert not h.unreleased(h.file_notes(path)), "a note-on without its note-off in the --record file"


def test_every_note_on_gets_its_note_off(quantized_cycle):
    stuck = quantized_cycle.unreleased()
    assert not stuck, f"note-ons never released: {stuck[:10]}"


# --- transport ----------------------------------------------------------------------


@h.retry_invalid()
def test_stop_silences_at_once_and_releases_every_note(server, live_model, groove):
    seed, pattern = groove
    s = busiest_step(pattern, 8, 40)
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
        rig.start()
        # one clock after the busiest step fired, so its notes are (very likely) still sounding
        assert rig.wait_pos(s * STEP + 1)
        stop = rig.stop()
        time.sleep(1.0)  # longer than a freewheel would wait for the next tick
        t = take(rig)
    # what was sounding at Stop and what the performer sent after it are judged: a cycle the notes
    # recorder missed from a beat before Stop on leaves the take unjudged (one before: excused)
    if t.blind_after(stop.frame - server.frames(500.0)):
        raise h.InvalidTake(f"the notes recorder missed cycles around Stop: {t.blind}")
    tol = tolerance_ms(server)
    # a note for the last tick before Stop may share Stop's frame (the start of the next period)
    after_stop = [n for n in t.notes if n.on and n.frame > stop.frame]
    assert not after_stop, f"note-ons after Stop (frame {stop.frame}): {after_stop[:10]}"
    stuck = t.unreleased()
    assert not stuck, f"note-ons never released after Stop: {stuck[:10]}"
    cc123 = [i for i, e in enumerate(t.events)
             if e.frame >= stop.frame and e.data == bytes([h.CONTROL | h.DRUM_CHANNEL, h.CC_ALL_NOTES_OFF, 0])]
    assert cc123, "no CC123 (all notes off) on channel 10 after Stop"
    judge_time = not t.near_xrun(stop.frame, server)
    first = t.events[cc123[0]]
    assert not judge_time or server.ms(first.frame - stop.frame) <= tol, (
        f"CC123 came {server.ms(first.frame - stop.frame):.3f} ms after Stop (tolerance {tol:.3f} ms)")
    # note-offs for what was sounding at Stop: flushed at once, before the CC123
    sounding = h.unreleased([n for n in t.notes if n.frame <= stop.frame], t.blind)
    if not sounding:
        raise h.InvalidTake("nothing was sounding at Stop (it came too late after the step)")
    offs = [(i, e) for i, e in enumerate(t.events)
            if e.frame >= stop.frame and any(not n.on for n in h.notes([e]))]
    for n in sounding:
        match = [(i, e) for i, e in offs if e.data[1] == n.pitch and e.data[0] & 0x0F == n.channel]
        assert match, f"note {n} sounding at Stop got no note-off"
        i, e = match[0]
        assert i < cc123[0], f"note-off of {n.pitch} came after the CC123"
        assert not judge_time or server.ms(e.frame - stop.frame) <= tol, (
            f"note-off of {n.pitch} came {server.ms(e.frame - stop.frame):.3f} ms after Stop")


# The first step after a Continue is a reaction: jack_midi_clock sends the Continue and its
# first clock in the same frame, so those notes must be written before the next JACK period.
# Once a non-strict xfail (one period late in 2 of 5 CI runs of stop 8). What fixed it
# (benchmarks/reaction.py, 120 BPM, -p 128): the input is read 0.4 ms into each cycle
# (Player.poll_wait), and the reaction has no numpy call left (PatternSource.mutes). Read ->
# reaction sent finished 0.64-1.62 ms into the cycle in 61 of 61 Starts/Continues; cued steps
# one period late: 0 of 289 (the tree before: 47 of 245).
@pytest.mark.parametrize("how", ["spp", "no-spp"])
@h.retry_invalid()
def test_continue_resumes_at_the_right_step(server, live_model, groove, how):
    """Stop mid-cycle, then continue: after locate + SPP at another step, or (clock
    with -P, no SPP) where the song stopped. The notes from the Continue on are the
    pattern's from exactly the song position the clock resumed at."""
    seed, pattern = groove
    clock_kw = {"no_position": True} if how == "no-spp" else {"resync_delay": 0.5}
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM, clock_kw=clock_kw) as rig:
        rig.start()
        assert rig.wait_pos(10 * STEP + 2)  # mid-step, so a resume without SPP is mid-step too
        stop = rig.stop()
        time.sleep(0.3)
        if how == "spp":
            rig.locate(24 * 6000)  # step 24 at 120 BPM, 48 kHz; the clock adds its resync lead
        since = rig.rec.mark()
        rig.transport.play()
        cont = rig.rec.wait_for(lambda e: e.data[:1] == bytes([h.CONTINUE]), 10.0, since, "clock")
        assert cont is not None, f"no Continue from jack_midi_clock:\n{rig.clock.output()[-1000:]}"
        assert rig.wait_pos(52 * STEP)
        time.sleep(0.2)
        rig.stop()
        time.sleep(0.2)
        t = take(rig)
    resumed = [k for k in t.track.ticks if k.frame >= cont.frame]
    assert resumed, "no clock after Continue"
    pos0 = resumed[0].pos
    if how == "spp":
        announced = [v for f, v in t.track.spps if f <= cont.frame]
        assert announced and pos0 == announced[-1] * STEP  # the harness's own premise
        assert pos0 > 24 * STEP
    first_step = -(-pos0 // STEP)  # the first step whose tick comes after the Continue
    last_step = resumed[-1].pos // STEP
    placed = t.placed()
    between = [n for n in t.notes if n.on and stop.frame < n.frame < cont.frame]
    assert not between, f"notes while stopped: {between[:10]}"
    before = [p for p in placed if p.note.frame <= stop.frame]
    after = [p for p in placed if p.note.frame >= cont.frame]
    assert_plays(before, pattern, range(0, 11), "before the Stop", t.blind_steps())
    assert_plays(after, pattern, range(first_step, last_step + 1),
                 f"after Continue at song position {pos0} ({how})", t.blind_steps())
    early = [p for p in after if p.step < first_step]
    assert not early, f"steps before the resume position were played: {early[:10]}"
    assert_on_time(after, t, server, f"after Continue at song position {pos0}: ")


@h.retry_invalid()
def test_tempo_change_is_followed_within_a_beat(server, live_model, groove):
    """120 -> 160 -> 100 BPM while rolling (jack_transport's tempo as timebase master):
    every step is still played once with its notes, and from one beat after each
    change on, notes are back on their ticks within the tolerance."""
    seed, pattern = groove
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
        rig.start()
        assert rig.wait_pos(12 * STEP)
        rig.transport.tempo(160)
        assert rig.wait_pos(36 * STEP)
        rig.transport.tempo(100)
        assert rig.wait_pos(62 * STEP)
        time.sleep(0.2)
        rig.stop()
        t = take(rig)
    ticks = t.track.ticks
    # where the clock's interval really changed (more than 10 %: jack_midi_clock rounds to frames)
    changes = [b for a, b, c in zip(ticks, ticks[1:], ticks[2:], strict=False)
               if abs((c.frame - b.frame) - (b.frame - a.frame)) > 0.1 * (b.frame - a.frame)]
    assert len(changes) >= 2, "the clock's tempo did not change twice: the test proves nothing"
    placed = [p for p in t.placed() if p.step < 62]
    assert_plays(placed, pattern, range(0, 62), "across tempo changes", t.blind_steps())
    settled = [p for p in placed
               if not any(c.pos <= p.step * STEP < c.pos + h.PPQN for c in changes)]
    assert_on_time(settled, t, server, f"tempo changes at song positions {[c.pos for c in changes]}\n")


# No clock is lost in a stall (the master's song position froze with the server,
# and the recorded ticks stay exactly 1000 frames apart), but the clocks after it
# come ~100 ms late on the wall clock. A performer that re-entered at the position
# wall time gave was then ~5 clocks ahead of the master until the next Start or
# SPP (and an xrun did the same by one clock); the position must be the count.
@h.retry_invalid()
def test_a_stalled_clock_is_followed_again_within_a_beat(server, live_model, groove):
    """The whole JACK server stops for 100 ms (SIGSTOP to our private jackd), as a
    DAW's audio thread or a USB interface can hiccup: clocks stop arriving, then
    resume, none lost. From a beat after the stall on, the notes must be on their
    ticks again and every step played once."""
    seed, pattern = groove
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
        rig.start()
        assert rig.wait_pos(8 * STEP + 2)
        stopped = rig.rec.now()
        server.pause(100)
        stalled_at = rig.track().ticks[-1].pos
        assert rig.wait_pos(40 * STEP)
        time.sleep(0.2)
        rig.stop()
        t = take(rig, stalled=(stopped, stopped))  # the server's frames stand still while it is stopped
    # the test's premise: the master lost no clock at the stall. A clock put back there that our
    # recorder's clock input missed a cycle for is ours (it can miss the cycles just after the
    # stall); one it did not miss, the master's: then the take proves nothing.
    ours = [(a, b) for inp, a, b in rig.rec.missed if inp == "clock"]
    lost = [k for k in t.track.put_back if stopped <= k.frame <= stopped + server.frames(300.0)
            and not any(a <= k.frame < b for a, b in ours)]
    if lost:
        raise h.InvalidTake(f"the master lost clocks at the stall (song positions {[k.pos for k in lost]}): "
                            f"the test's premise")
    placed = [p for p in t.placed() if p.step < 40]
    assert_plays(placed, pattern, range(0, 40), "around a 100 ms clock stall", t.blind_steps())
    settled = [p for p in placed if p.step * STEP >= stalled_at + h.PPQN + STEP]
    # judged from a beat after the stall: that beat is the re-lock's, as after a tempo change
    assert_on_time(settled, t, server, f"after a stall at song position {stalled_at}:\n")


# The performer's own process stalls (SIGSTOP, as swapping, a long page fault or an
# overloaded machine can): its JACK clock input does not run, and the clocks sent in
# those periods never reach it. The master did not stop, so its song position went on.
# Before MidiClock counted such clocks in (its sender reports the stall) the count stayed
# behind until the next Start or SPP (measured: 20 ms at 180 BPM -> 2 clocks late, 50 ms
# at 120 BPM -> 2 clocks, 23 of 23 notes at +41 ms). Stalls of at least a clock (20.8 ms at
# 120 BPM) are counted in from the sender's report; a shorter one that loses a clock from
# JACK's xrun (MidiClock's docstring says why both). Each stop begins 3/4 of a clock after a
# recorded tick, so the 12 ms one spans the next tick's time and loses that clock.
@pytest.mark.parametrize("stall_s", [0.012, 0.03, 0.05])
@h.retry_invalid()
def test_a_stall_of_the_performer_itself_loses_no_song_position(server, live_model, groove, stall_s):
    """The performer's process stops for 12, 30 or 50 ms (SIGSTOP) while the master keeps
    sending clocks (the recorded ticks show none missing). From a beat after the stall on,
    the notes must be on their ticks again."""
    seed, pattern = groove
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
        rig.start()
        assert rig.wait_pos(8 * STEP + 2)
        pid = rig.performer.pid
        per_tick = h.frames_per_tick(server, BPM)
        stop_at = rig.track().ticks[-1].frame + 0.75 * per_tick
        while stop_at < rig.rec.now() + server.frames(2.0):
            stop_at += per_tick
        time.sleep((stop_at - rig.rec.now()) / server.rate)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(stall_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = rig.rec.now()
        stalled_at = rig.track().ticks[-1].pos
        assert rig.wait_pos(40 * STEP)
        time.sleep(0.2)
        rig.stop()
        t = take(rig, stalled=(int(stop_at), resumed))  # take() rejects a recording with a lost clock
    settled = [p for p in t.placed() if p.step < 40 and p.step * STEP >= stalled_at + h.PPQN + STEP]
    assert settled, "no notes after the stall"
    # as everywhere (assert_on_time), not judged right at an xrun (one a note was 4 ms late 7 ms
    # after, 2.4 s past the stall)
    assert_on_time(settled, t, server, f"after the performer stalled at song position {stalled_at} "
                   f"(xruns at {[round(server.ms(f - resumed)) for f in t.xrun_frames][:40]} ms from the stall's end):\n")


@h.retry_invalid()
def test_clock_jitter_does_not_move_notes_off_their_steps(server, live_model, groove):
    """jack_midi_clock -J 20: every tick is displaced by up to 20 % of its interval.
    The notes must still be the pattern's, step for step."""
    seed, pattern = groove
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM,
               clock_kw={"jitter": 20}) as rig:
        rig.start()
        assert rig.wait_pos(32 * STEP)
        time.sleep(0.2)
        rig.stop()
        t = take(rig)
    iv = t.track.intervals()
    nominal = h.frames_per_tick(server, BPM)
    assert max(abs(x - nominal) for x in iv) > 0.05 * nominal, "the clock was not jittered"
    placed = [p for p in t.placed() if p.step < 32]
    assert_plays(placed, pattern, range(0, 32), "with a jittered clock", t.blind_steps())


@h.retry_invalid()
def test_groove_mode_plays_microtiming_around_the_grid(server, live_model, groove):
    """Without --quantize each hit sounds at its step + the model's offset (early notes
    go out before their grid tick), with the model's velocity. Same tolerance as on
    the grid. Checked on steps 1..31: a step-0 note with a negative offset would be
    due before Start."""
    seed, pattern = groove
    with h.Rig(server, performer_args(live_model, seed), bpm=BPM) as rig:
        rig.start()
        assert rig.wait_pos(32 * STEP + 3)
        time.sleep(0.2)
        rig.stop()
        t = take(rig)
    ticks = t.track.ticks
    pos = np.array([k.pos for k in ticks], float)
    frames = np.array([k.frame for k in ticks], float)

    def due(step: int, voice: int) -> float:  # frame where the clock says step + offset falls
        return float(np.interp((step + pattern.offset[step, voice]) * STEP, pos, frames))

    tol = server.frames(tolerance_ms(server))
    ons = [n for n in t.notes if n.on]
    used: set[int] = set()
    problems = []
    for st in range(1, 32):
        for v in np.nonzero(pattern.hits[st])[0]:
            d = due(st, int(v))
            if t.near_xrun(d, server) or any(a - tol <= d < b + tol for a, b in t.blind):
                continue  # at an xrun, or maybe sent in a cycle the notes recorder missed
            near = [i for i, n in enumerate(ons) if n.pitch == PITCHES[v] and abs(n.frame - d) <= tol]
            if len(near) != 1:
                closest = min((n.frame - d for n in ons if n.pitch == PITCHES[v]), key=abs, default=None)
                problems.append(f"step {st} voice {v}: {len(near)} notes within tolerance of its "
                                f"microtimed time (offset {pattern.offset[st, v]:+.3f} step, due at frame "
                                f"{d:.0f}; closest note {server.ms(closest) if closest is not None else 'none'} ms)")
                continue
            used.add(near[0])
            want = drums.velocity_to_midi(pattern.velocity[st, v])
            if abs(ons[near[0]].velocity - want) > 1:
                problems.append(f"step {st} voice {v}: velocity {ons[near[0]].velocity}, model {want}")
    lo, hi = np.interp([2 * STEP, 30 * STEP], pos, frames)
    extra = [n for i, n in enumerate(ons)
             if lo <= n.frame <= hi and i not in used and not t.near_xrun(n.frame, server)]
    assert not problems and not extra, ("\n".join(problems[:20]) + f"\nunexpected notes: {extra[:10]}"
                                        f"\nxruns at frames {t.xrun_frames}")


# --- reliability --------------------------------------------------------------------


def test_output_port_loss_is_reported_and_recovered_without_restart(server, live_model, groove):
    """--port on another client's input; that client goes away and comes back under the
    same name: the performer keeps running, reports it, and plays into it again."""
    seed, _ = groove
    synth_name = f"dp-synth-{uuid.uuid4().hex[:4]}"
    synth = h.Recorder(server, synth_name, inputs=("midi_in",), exact_name=True)
    target = synth.port("midi_in")
    try:
        with h.Rig(server, performer_args(live_model, seed, "--quantize", "--port", target), bpm=BPM,
                   performer_kw={"need_out": True}) as rig:
            rig.start()
            got = synth.wait_for(lambda e: h.notes([e]) != [], 10.0)
            assert got is not None, f"nothing reached {target}; performer log:\n{rig.performer.output()[-2000:]}"
            pid = rig.performer.pid
            log_before = len(rig.performer.output())
            synth.close()
            time.sleep(2.0)  # a couple of the performer's retries find nothing
            assert rig.performer.alive(), f"the performer died when its port went away:\n{rig.performer.output()[-2000:]}"
            synth = h.Recorder(server, synth_name, inputs=("midi_in",), exact_name=True)
            back = synth.wait_for(lambda e: bool(h.notes([e])) and h.notes([e])[0].on, 5.0)
            report = rig.performer.output()[log_before:]
            assert back is not None, (f"no notes at {target} within 5 s of it coming back "
                                      f"(the performer should retry about once a second); log since the loss:\n{report[-2000:]}")
            assert rig.performer.alive() and rig.performer.pid == pid
            assert "port" in report.lower() or synth_name in report, (
                f"the loss of {target} was not reported; log since the loss:\n{report[-2000:]}")
            rig.stop()
    finally:
        synth.close()


@h.retry_invalid()
def test_clock_dropout_freewheels_at_most_a_bar_then_stops_and_the_clock_comes_back(
        server, live_model, groove):
    """--clock-port on jack_midi_clock's port; the clock master dies mid-bar (its port
    goes away). The performer keeps time on the last tempo for at most one bar,
    then stops cleanly (every note released, CC123). When the clock master is
    back under the same name and the transport starts again, it plays again
    without a restart."""
    seed, pattern = groove
    with h.Rig(server, bpm=BPM, start_performer=False) as rig:
        rig.start_performer(performer_args(live_model, seed, "--quantize", "--clock-port", rig.clock.port))
        pid = rig.performer.pid
        rig.start()
        assert rig.wait_pos(8 * STEP + 2)
        rig.clock.stop()  # SIGTERM: jack_midi_clock has no handler, so it just vanishes
        time.sleep(3.0)  # more than a bar at 120 BPM
        t = take(rig)
        assert rig.performer.alive(), f"the performer died with its clock:\n{t.output[-2000:]}"
        log_before = len(t.output)

        rig.transport.stop_transport()
        time.sleep(0.3)
        rig.clock = h.ClockMaster(server, rig.rec, BPM)
        rig.rec.connect(rig.clock.port, rig.rec.port("clock"))
        since = rig.rec.mark()
        deadline = time.monotonic() + 5.0
        back = None
        # the performer reopens its clock input about once a second: start the transport
        # again until a Start reaches it (each Start is a new song from 0)
        while back is None and time.monotonic() < deadline:
            rig.start()
            back = rig.rec.wait_for(lambda e: any(n.on for n in h.notes([e])), 1.5, since, "notes")
        report = rig.performer.output()[log_before:]
        assert back is not None, (f"no notes within 5 s of the clock master coming back; "
                                  f"log since the dropout:\n{report[-2000:]}")
        assert rig.performer.pid == pid and rig.performer.alive()

    ticks = t.track.ticks
    last = ticks[-1]
    iv = sorted(b.frame - a.frame for a, b in zip(ticks[-25:], ticks[-24:], strict=False))[12]
    bar = 4 * h.PPQN * iv
    tol = server.frames(tolerance_ms(server))
    free = [n for n in t.notes if n.on and n.frame > last.frame + tol]
    beyond = [n for n in free if n.frame > last.frame + bar + tol]
    assert not beyond, f"note-ons more than a bar after the last clock: {beyond[:10]}"
    # freewheeling on the last tempo: on the extrapolated grid, the pattern's notes
    # Timing is not judged after an xrun: JACK's frame time and the wall clock part there by
    # whole periods (seen: 2-4 periods, 5.3-10.7 ms, after the clock master's exit gave 2-3
    # xruns), and with no clock to follow the freewheel never comes back to the frames. The
    # note must still be the pattern's.
    xrun_since = [f for f in t.xrun_frames + t.late if f >= last.frame - server.frames(XRUN_BEFORE_MS)]
    wrong = []
    for n in free:
        pos = last.pos + (n.frame - last.frame) / iv
        st = round(pos / STEP)
        err = n.frame - (last.frame + (st * STEP - last.pos) * iv)
        v = PITCHES.index(n.pitch) if n.pitch in PITCHES else None
        late = abs(err) > tol and not any(f <= n.frame for f in xrun_since)
        if v is None or not pattern.hits[st % h.STEPS_PER_CYCLE, v] or late:
            wrong.append((st, v, round(server.ms(err), 3)))
    assert not wrong, (f"freewheel notes (step, voice, ms off the extrapolated grid) not the pattern's: "
                       f"{wrong[:10]} ({len(t.xrun_frames)} xruns in the take)")
    stuck = t.unreleased()  # those whose note-off may be in a cycle the notes recorder missed excused
    assert not stuck, f"note-ons never released after the clock died: {stuck[:10]}"
    cc123 = [e for e in t.events if e.frame > last.frame
             and e.data == bytes([h.CONTROL | h.DRUM_CHANNEL, h.CC_ALL_NOTES_OFF, 0])]
    if not cc123 and t.blind_after(last.frame):
        # the master's exit gives an xrun or two, and our recorder can miss a cycle then (all 5
        # takes of this test in one CI run were rejected for a cycle missed after the last clock)
        raise h.InvalidTake(f"no CC123 recorded, and the notes recorder missed cycles after the clock died: {t.blind}")
    assert cc123, "no CC123 when the freewheel ended (a clean stop)"
    assert "port" in report.lower() or "clock" in report.lower(), f"the clock port's loss was not reported:\n{report}"


# What a misbehaving device can put on the clock input, each as one JACK event.
# Data bytes stay below 0x10 so nothing can be parsed into a mapped control
# (CC 20-28, notes 60-80) even by a parser that applies running status across events.
JUNK = [
    bytes([0xF0, 0x7D, 0x01, 0x02, 0xF7]),  # SysEx
    bytes([0xF0, 0x7D]) + bytes(range(1, 16)) * 40 + bytes([0xF7]),  # a long one
    bytes([0xF7]),  # a lone end of SysEx
    bytes([0x05]),  # stray data bytes: running status with no status
    bytes([0x05, 0x06, 0x07]),
    bytes([0xF4]), bytes([0xF5]), bytes([0xF9]), bytes([0xFD]),  # undefined
    bytes([0xF1, 0x01]), bytes([0xF3, 0x01]), bytes([0xF6]),  # MTC quarter frame, song select, tune request
    bytes([0xF2, 0x05]),  # a truncated SPP
    bytes([0xF2, 0x05, 0x00]),  # SPP while playing: to be ignored
    bytes([0xFB]),  # Continue while playing
    bytes([0xFE]),  # active sensing
    bytes([0x90]), bytes([0x80, 0x05]), bytes([0xB9, 0x05]),  # status without (all) its data
]
# (No 0xF8 inside junk: a realtime byte anywhere in the stream is a real clock.
# A SysEx left open is the next test's.)


@h.retry_invalid()
def test_malformed_input_on_the_clock_port_does_not_disturb_the_groove(server, live_model, groove):
    """A second source on the performer's clock input sends junk every ~40 ms while
    it plays the first cycle: it keeps playing exactly the engine's pattern, on time."""
    seed, pattern = groove
    sender = h.Sender(server, f"dp-junk-{uuid.uuid4().hex[:4]}")
    try:
        with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
            rig.rec.connect(sender.port_name, rig.performer.clock_port)
            rig.start()
            assert rig.wait_pos(STEP)
            i = 0
            while not rig.wait_pos(62 * STEP, timeout=0.04):
                sender.send(JUNK[i % len(JUNK)])
                i += 1
            alive, t = stop_and_take(rig)
    finally:
        sender.close()
    assert i >= 2 * len(JUNK), f"only {i} junk messages were sent"
    assert alive, f"the performer died of junk on its clock input:\n{t.output[-3000:]}"
    assert "Traceback" not in t.output, t.output[-3000:]
    placed = [p for p in t.placed() if p.step < 62]
    assert_plays(placed, pattern, range(0, 62), f"with {i} junk messages on the clock input", t.blind_steps())
    assert_on_time(placed, t, server, "with junk on the clock input: ")
    assert not t.unreleased()


# python-rtmidi 1.5.8's JACK input, after an event that opens a SysEx without F7,
# holds every later event on the port (jack_midi_clock's clocks too) until an F7
# and then delivers them as one message with the F7's timestamp: the performer
# sees 2-3 clocks at one instant, 60-110 ms after the clock before them. Each must
# count as one clock, and their stamps must not reach the tempo fit (it once played
# steps early, twice or not at all for a beat or two after each such burst).
@h.retry_invalid()
def test_a_sysex_split_across_events_does_not_disturb_the_groove(server, live_model, groove):
    """Another source on the clock input sends a SysEx in two parts 60 ms apart
    (F0 7D 01 ... then F7), every beat, as a slow device or a MIDI bridge
    passing a long dump on may. Clock bytes from jack_midi_clock arrive in between.
    Every step must still be played once with the pattern's notes; timing is not
    judged while a SysEx is open (the clock is held up in the MIDI layer then)."""
    seed, pattern = groove
    sender = h.Sender(server, f"dp-sysex-{uuid.uuid4().hex[:4]}")
    try:
        with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
            rig.rec.connect(sender.port_name, rig.performer.clock_port)
            rig.start()
            splits = 0
            for beat in range(2, 15):
                assert rig.wait_pos(beat * h.PPQN + 3)
                sender.send(bytes([0xF0, 0x7D, 0x01, 0x02]))
                time.sleep(0.06)
                sender.send(bytes([0x03, 0xF7]))
                splits += 1
            assert rig.wait_pos(62 * STEP)
            alive, t = stop_and_take(rig)
    finally:
        sender.close()
    assert alive, f"the performer died of a split SysEx:\n{t.output[-3000:]}"
    placed = [p for p in t.placed() if p.step < 62]
    assert_plays(placed, pattern, range(0, 62), f"with {splits} SysEx split across events on the clock input",
                 t.blind_steps())
    assert not t.unreleased()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                                 signal.SIGUSR1, signal.SIGALRM],
                         ids=["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGALRM"])
@h.retry_invalid()
def test_signal_while_playing_leaves_no_stuck_note(server, live_model, groove, sig):
    seed, pattern = groove
    s = busiest_step(pattern, 4, 32)
    with h.Rig(server, performer_args(live_model, seed, "--quantize"), bpm=BPM) as rig:
        rig.start()
        assert rig.wait_pos(s * STEP + 1)
        at = rig.rec.now()
        os.kill(rig.performer.pid, sig)
        try:
            code = rig.performer.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the performer did not exit within 10 s of {sig.name}:\n{rig.performer.output()[-2000:]}")
        time.sleep(0.2)
        t = take(rig)
    if t.blind_after(at - server.frames(500.0)):
        raise h.InvalidTake(f"the notes recorder missed cycles around the signal: {t.blind}")
    assert "Traceback" not in t.output, t.output[-3000:]
    assert code in (0, 128 + sig, -sig), f"exit status {code} after {sig.name}:\n{t.output[-2000:]}"
    stuck = t.unreleased()
    assert not stuck, f"note-ons never released after {sig.name}: {stuck[:10]}"
    # ``at`` is the server's frame-time estimate when we signalled. On a loaded machine the
    # server's processing trails that estimate, and the cycle it runs after the signal can
    # start before ``at``: with both cores busy, 4 of 328 runs of this test recorded the exit's
    # burst (note-offs, CC123, CC120) before ``at`` (one measured: 24 frames before it, after an
    # xrun). Only a Stop or an exit sends CC123 or CC120, and this test never stops the
    # transport, so looking from 500 ms before ``at`` cannot take another's.
    since = at - server.frames(500.0)

    def is_cc(e: h.Event, number: int) -> bool:
        return e.frame >= since and e.data == bytes([h.CONTROL | h.DRUM_CHANNEL, number, 0])

    cc123 = [i for i, e in enumerate(t.events) if is_cc(e, h.CC_ALL_NOTES_OFF)]
    cc120 = [i for i, e in enumerate(t.events) if is_cc(e, h.CC_ALL_SOUND_OFF)]
    after = [(e.frame - at, e.data.hex()) for e in t.events if e.frame >= since]
    assert cc123 and cc120, (f"after {sig.name}: CC123 seen {bool(cc123)}, CC120 seen {bool(cc120)}; "
                             f"recorded from 500 ms before the signal on (frames after it, bytes): {after[-12:]}; "
                             f"our recorder missed {rig.rec.missed}; xruns at {t.xrun_frames}; performer's log:\n"
                             f"{t.output[-1500:]}")
    assert cc123[0] < cc120[-1], "CC120 (all sound off) should follow CC123 on exit"
    late = [e for e in t.events[cc123[0]:] if any(n.on for n in h.notes([e]))]
    assert not late, f"note-ons after the all-notes-off on {sig.name}: {late[:10]}"


def test_ports_command_lists_jack_ports(server):
    """``drum-performer ports --api jack`` sees the graph: a clock source and a synth input."""
    rec = h.Recorder(server, f"dp-lister-{uuid.uuid4().hex[:4]}", inputs=("synth_in",))
    clock = h.ClockMaster(server, rec)
    try:
        out = subprocess.run([*h.performer_command(), "ports", "--api", "jack"], capture_output=True,
                             text=True, timeout=60, env=server.env)
    finally:
        clock.stop()
        rec.close()
    assert out.returncode == 0, out.stderr
    assert rec.port("synth_in") in out.stdout, out.stdout
    assert clock.port in out.stdout, out.stdout
