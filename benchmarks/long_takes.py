"""Long takes over JACK: does the performer keep the master's song position through xruns?

A short take rarely meets an xrun; a long one on this kind of machine meets several
(at -p 128 on a 2-core VM: 0-10 in 160 s). An xrun can lose a clock message on its
way to the performer, and a follower that counts messages then plays a clock behind
(or ahead) until the next Start: 20 ms at 120 BPM, for the rest of the song. The
JACK tests cannot see this: a take whose recorder missed a cycle is measured again.

Each take: a fresh ``drum-performer --quantize -v`` on one private JACK server,
following ``jack_midi_clock`` for CYCLES 4-bar cycles. Every note-on is placed on
its 16th step against the recorded clock, with each tick's song position read off
the master's line (jack_midi_clock puts clock k at a fixed frame from Start, and
skips the clocks of a cycle it missed), not off the recorder's message count, which
a hole in the recording would shift. Reported per take: notes, notes off by half a
clock or more ("whole-clock": the performer's position parted from the master's),
notes 3 ms or more off, xruns, holes in the recorded clock, and the performer's
clock log lines (clocks counted in, silences kept out of the count).

    python -m benchmarks.long_takes [--takes 5] [--bpm 120] [--cycles 20] [--audio] [--baseline CMD] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.live_timing import h_pitches, jack_model, jack_options, machine
from tests.jack import audio_rig
from tests.jack import harness as h


def run_take(server: h.JackServer, model: Path, bpm: float, cycles: int, seed: int, audio: bool = False) -> dict:
    args = ["--model", str(model), "--seed", str(seed), "--quantize", "-vv"]  # -vv: relocks and silences too
    if audio:
        # the audio rig: the performer with --audio, its output recorded (the graph of
        # tests/jack/test_audio_live.py, which meets more xruns than MIDI alone)
        with tempfile.TemporaryDirectory() as tmp:
            live = audio_rig.play(server, args, bpm, cycles * 16 * 60 / bpm, Path(tmp))
        rolled, track, notes, xruns, log = True, live.track, live.notes, live.xrun_frames, live.log
    else:
        with h.Rig(server, args, bpm=bpm) as rig:
            rig.performer.wait_ready_line(10.0)
            time.sleep(0.5)
            rig.start()
            rolled = rig.wait_pos(cycles * h.TICKS_PER_CYCLE, timeout=cycles * 16 * 60 / bpm + 30)
            time.sleep(0.2)
            rig.stop()
            rig.rec.settle()
            track, notes = rig.track(fill=False), rig.notes()
            xruns = list(rig.rec.xrun_frames)
            log = rig.performer.output()
    start = track.starts[0] if track.starts else 0
    placed = h.place(notes, track.on_master_line(), h_pitches())
    clock = server.rate * 60.0 / bpm / h.PPQN  # frames per MIDI clock
    whole = [p for p in placed if abs(p.error_frames) >= 0.5 * clock]
    return {
        "rolled": bool(rolled),
        "notes": len(placed),
        "whole_clock_off": len(whole),
        "whole_clock_off_from_s": round((whole[0].note.frame - start) / server.rate, 3) if whole else None,
        # the song position (clocks) there, to find it in the performer's log
        "whole_clock_off_from_pos": round((whole[0].note.frame - start) / clock) if whole else None,
        # ... and still at the end (for good), or only for a while
        "ended_off": bool(placed) and abs(placed[-1].error_frames) >= 0.5 * clock,
        "off_3ms": sum(abs(server.ms(p.error_frames)) >= 3.0 for p in placed),
        "xruns": len(xruns),
        "xruns_at_s": [round((x - start) / server.rate, 3) for x in xruns],
        "clock_holes_at_s": [round((k.frame - start) / server.rate, 3) for k in track.gaps()],
        "clock_log": [ln.split("performer.clock: ", 1)[-1] for ln in log.splitlines() if "performer.clock:" in ln],
        "played_s": round(cycles * 16 * 60 / bpm, 1),
    }


def _summary(takes: list[dict]) -> str:
    off = sum(1 for r in takes if r["whole_clock_off"])
    end = sum(1 for r in takes if r.get("ended_off"))
    return (f"{off} of {len(takes)} takes had notes a clock off ({sum(r['whole_clock_off'] for r in takes)} notes "
            f"of {sum(r['notes'] for r in takes)}), {end} still at the end; {sum(r['xruns'] for r in takes)} xruns")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.long_takes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--takes", type=int, default=5)
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--cycles", type=int, default=20, help="4-bar cycles per take (default 20: 160 s at 120 BPM)")
    ap.add_argument("--audio", action="store_true", help="the performer plays --audio too, its output recorded")
    ap.add_argument("--baseline", metavar="CMD",
                    help="another build's command (e.g. 'env PYTHONPATH=/tmp/old python -P -m performer.cli'): "
                         "--takes takes of each, alternating (which goes first swaps each pair), one server")
    jack_options(ap, seed=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model = jack_model("long_takes", a.model)
    if model is None:
        return 2
    info = machine()
    ours = os.environ.get("DRUM_PERFORMER_COMMAND")
    arms = {"this": ours, "baseline": a.baseline} if a.baseline else {"this": ours}
    takes: dict[str, list[dict]] = {name: [] for name in arms}
    with h.JackServer(period=a.period) as server:
        for i in range(a.takes):
            for name in (list(arms) if i % 2 == 0 else list(arms)[::-1]):
                if arms[name]:
                    os.environ["DRUM_PERFORMER_COMMAND"] = arms[name]
                else:
                    os.environ.pop("DRUM_PERFORMER_COMMAND", None)
                r = run_take(server, model, a.bpm, a.cycles, a.seed, a.audio)
                takes[name].append(r)
                print(f"take {i + 1} ({name}): {r['notes']} notes, {r['whole_clock_off']} a clock or more off"
                      f"{' from ' + str(r['whole_clock_off_from_s']) + ' s' if r['whole_clock_off'] else ''}"
                      f"{' to the end' if r['ended_off'] else ''}, "
                      f"{r['off_3ms']} >= 3 ms off, {r['xruns']} xruns, {len(r['clock_holes_at_s'])} recorder holes",
                      flush=True)
                for ln in r["clock_log"]:
                    print("    " + ln, flush=True)
    if ours:
        os.environ["DRUM_PERFORMER_COMMAND"] = ours
    else:
        os.environ.pop("DRUM_PERFORMER_COMMAND", None)
    for name, rs in takes.items():
        print(f"{name}: {_summary(rs)} ({a.bpm:g} BPM, {a.cycles} cycles each{', --audio' if a.audio else ''})")
    if a.json:
        a.json.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.long_takes", *(argv or sys.argv[1:])]),
            "machine": info, "config": {"bpm": a.bpm, "cycles": a.cycles, "audio": a.audio, "period": a.period,
                                        "seed": a.seed, "model": str(model), "performer": h.performer_command(),
                                        "baseline": a.baseline},
            "takes": takes["this"], "takes_off_by_a_clock": sum(1 for r in takes["this"] if r["whole_clock_off"]),
            "takes_ended_off": sum(1 for r in takes["this"] if r["ended_off"]),
            **({"baseline_takes": takes["baseline"],
                "baseline_takes_off_by_a_clock": sum(1 for r in takes["baseline"] if r["whole_clock_off"]),
                "baseline_takes_ended_off": sum(1 for r in takes["baseline"] if r["ended_off"])}
               if a.baseline else {}),
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
