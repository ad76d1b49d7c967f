"""--follow over a private JACK server: a player's rhythm drives the next cycle's groove.

Two performers with the same --seed listen to the same player (a JACK client
of ours sending note-ons into each one's "Drum Performer Follow" input) while
jack_midi_clock is the clock master: A follows fully (--follow-amount 1), B
not at all (--follow-amount 0). The player plays a figure in bars 1-3 of the
first cycle; at bar 4 each performer drumifies the 4 bars it heard.

"Line up", measurably: the share of the kick and snare onsets of the next
cycle that fall on the steps of the played figure (its places in the bar).
For A it must be at least FOLLOW_SHARE and at least MARGIN above the same share
of the groove the seed plays without following (the engine's own sample,
which B must play note for note: follow 0 changes nothing). Everything waits
on recorded events (the clock's song position, the Stop), never on a sleep.
"""

from __future__ import annotations

import json
import uuid

import pytest

from model import drums
from tests.jack import harness as h
from tests.jack.test_e2e import Take, assert_plays

pytestmark = [pytest.mark.jack, pytest.mark.slow]

BPM = 120.0
SEED, TEMPERATURE = 5, 0.5
STEP = h.TICKS_PER_STEP
S = drums.STEPS_PER_BAR
CYCLE = drums.STEPS
RHYTHM = (0, 4, 6, 8, 12, 14)  # a bass figure: the beats and the 8th before beats 2 and 4
FOLLOW_SHARE, MARGIN = 0.6, 0.25
KICK_SNARE = (drums.OUTPUT_PITCHES[0], drums.OUTPUT_PITCHES[1])
FOLLOW_PORT = "Drum Performer Follow"


def share_on_rhythm(steps) -> float:
    steps = list(steps)
    return sum(1 for s in steps if s % S in RHYTHM) / max(len(steps), 1)


def follow_ports(rec: h.Recorder) -> set[str]:
    return {p for p in rec.port_names(is_midi=True, is_input=True) if p.endswith(":" + FOLLOW_PORT)}


def args(model, amount: float) -> list[str]:
    return ["--model", str(model), "--seed", str(SEED), "--temperature", f"{TEMPERATURE:g}", "--quantize",
            "--follow", "--follow-amount", f"{amount:g}", "-v"]


@h.retry_invalid()
def test_the_next_cycle_lines_up_with_a_played_rhythm_and_follow_0_changes_nothing(server, live_model):
    from performer.engine import Engine

    if "tap.onnx" not in json.loads((live_model / "model.json").read_text()).get("files", {}):
        pytest.skip("the model under test has no tap encoder")
    seed_groove = Engine.load(live_model).sample(seed=SEED, temperature=TEMPERATURE)
    k0 = [s for s in range(CYCLE) if seed_groove.hits[s, :2].any()]
    baseline = share_on_rhythm(k0)

    player = h.Sender(server, f"dp-player-{uuid.uuid4().hex[:4]}")
    try:
        with h.Rig(server, args(live_model, 1.0), bpm=BPM,
                   recorder_inputs=("clock", "notes", "zero", "player")) as rig:
            port_a = follow_ports(rig.rec)
            b = h.Performer(server, rig.rec, args(live_model, 0.0))
            try:
                rig.rec.connect(rig.clock.port, b.clock_port)
                rig.rec.connect(b.out_port, rig.rec.port("zero"))
                b.wait_ready_line(5.0)
                port_b = follow_ports(rig.rec) - port_a
                assert len(port_a) == 1 and len(port_b) == 1, (port_a, port_b)
                for dst in (*port_a, *port_b, rig.rec.port("player")):
                    rig.rec.connect(player.port_name, dst)
                rig.start()
                for bar in range(3):  # bars 1-3 of cycle 1: what bar 4 drumifies for cycle 2
                    for s in RHYTHM:
                        assert rig.wait_pos((bar * S + s) * STEP), "the clock stopped"
                        player.send(bytes([0x90, 45, 100]))
                        player.send(bytes([0x80, 45, 0]))
                assert rig.wait_pos(2 * CYCLE * STEP + STEP), "the clock did not reach cycle 3"
                rig.stop()
                rig.rec.settle()
                out_a, out_b = rig.performer.output(), b.output()
            finally:
                b.stop()
            track = rig.track()
            if track.gaps():
                raise h.InvalidTake(f"the clock recording has holes ({rig.rec.xruns} xruns)")
            played = h.place(h.notes(rig.rec.events("player")), track, [45])
            if sorted(p.step for p in played) != [bar * S + s for bar in range(3) for s in RHYTHM]:
                raise h.InvalidTake(f"the player's notes landed elsewhere: {[p.step for p in played]}")
            notes_a = h.notes(rig.rec.events("notes"))
            notes_b = h.notes(rig.rec.events("zero"))
            # cycles our recorder's inputs missed (as test_e2e.take): steps and note-offs there excused
            take_a, take_b = (Take(track, n, [], [], "", rig.rec.xruns, list(rig.rec.xrun_frames),
                                   blind=[(x, y) for inp, x, y in rig.rec.missed if inp == name])
                              for n, name in ((notes_a, "notes"), (notes_b, "zero")))
    finally:
        player.close()

    a = h.place(notes_a, track, drums.OUTPUT_PITCHES)
    bb = h.place(notes_b, track, drums.OUTPUT_PITCHES)
    assert not take_a.unreleased() and not take_b.unreleased()
    # follow 0: exactly what the seed plays without --follow, both cycles
    assert bb, f"performer B played nothing:\n{out_b[-3000:]}"
    assert_plays(bb, seed_groove, range(0, 2 * CYCLE), "--follow-amount 0", take_b.blind_steps())
    # follow 1: the first cycle is the seed's groove; the next one lines up with the figure
    assert_plays(a, seed_groove, range(0, CYCLE), "--follow-amount 1, cycle 1", take_a.blind_steps())
    k1 = sorted({p.step for p in a if CYCLE <= p.step < 2 * CYCLE and p.note.pitch in KICK_SNARE})
    share = share_on_rhythm(k1)
    report = (f"kick/snare steps of cycle 2: {[s - CYCLE for s in k1]}; share on the figure {share:.2f} "
              f"(without follow {baseline:.2f}: {k0})\nperformer A log:\n{out_a[-1500:]}\nB:\n{out_b[-500:]}")
    assert "follow 100%" in out_a, report
    assert len(k1) >= 4, report
    assert share >= FOLLOW_SHARE and share >= baseline + MARGIN, report
