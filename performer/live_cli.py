"""Command line of the live performer: ``drum-performer [live] ...`` and ``drum-performer ports``.

Only argument handling lives here; :mod:`performer.app` does the work. The
CLI prints (one ready line, the port list); library code only logs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from model.ranges import number
from performer.clock import SPP_UNITS
from performer.controls import epilog
from performer.options import LiveError, LiveOptions, fills_arg
from performer.ports import API_CHOICES
from performer.sound import soundfont_arg

SEED_EPILOG = """\
--seed S: the first groove is exactly the model's sample for seed S; each later request
that needs new randomness (n, v, m, l) takes the next seed S+1, S+2, ... in order."""


_R = LiveOptions.RANGES


def _ranged(name: str):
    """The argparse type of a live option, from its range in LiveOptions.RANGES."""
    r = _R[name]
    return number(r.kind, r.lo, r.hi if math.isfinite(r.hi) else None, r.unit)


class _GrooveArg(argparse.Action):
    """``--groove`` alone: the default playing mode (kept for scripts); ``--groove FILE.mid``: a clip."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is None:
            namespace.groove_mode = True
        else:
            namespace.groove_file = values


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "live",
        help="play live (the default): follow the DAW's MIDI clock, or --bpm, and send drums",
        description="Play drums live. Follows MIDI clock on the clock input (Start, Stop, Continue, "
        "Song Position) and sends notes on the output; --bpm plays on an internal clock instead.",
        epilog=epilog() + "\n\n" + SEED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("ports")
    g.add_argument("--port", metavar="NAME",
                   help="play into this existing MIDI output; exact, then case-insensitive, then all words "
                   "of NAME (default: create a virtual output 'Drum Performer')")
    g.add_argument("--clock-port", metavar="NAME",
                   help="take clock and MIDI controls from this input (default: a virtual input 'Drum Performer Clock')")
    g.add_argument("--follow", nargs="?", const="", default=None, metavar="NAME",
                   help="listen to a player on this MIDI input (matched like --clock-port; default: a virtual "
                   "input 'Drum Performer Follow'): each cycle's groove is drumified from the 4 bars heard")
    g.add_argument("--follow-amount", type=_ranged("follow_amount"), default=LiveOptions.follow_amount, metavar="A",
                   help="how far each cycle's groove moves towards what the player played, "
                   f"{_R['follow_amount'].text()} (0 ignores the player; default {LiveOptions.follow_amount:g}; "
                   "F and CC 31 change it live)")
    g.add_argument("--api", choices=API_CHOICES, default="auto", help="MIDI backend (default: auto)")
    g.add_argument("--channel", type=_ranged("channel"), default=LiveOptions.channel, metavar="N",
                   help=f"MIDI channel of the drums, {_R['channel'].text()} (default: 10, General MIDI drums)")
    c = p.add_argument_group("clock")
    c.add_argument("--bpm", type=_ranged("bpm"), metavar="N",
                   help="play on an internal clock at N BPM instead of following MIDI clock")
    c.add_argument("--link", action="store_true",
                   help="join an Ableton Link session on the local network: tempo, beat and start/stop "
                   "come from it (--bpm N: the tempo proposed to it); needs pip install 'drum-performer[link]'")
    c.add_argument("--start-on-clock", action="store_true",
                   help="start when clock arrives without a Start (for masters that never send transport)")
    c.add_argument("--spp-units", choices=SPP_UNITS, default="16ths",
                   help="what the master's Song Position Pointer counts: 16ths (the MIDI spec, most DAWs; "
                   "default) or clocks (Ardour 7: see the README's DAW list)")
    c.add_argument("--latency-ms", type=_ranged("latency_ms"), default=LiveOptions.latency_ms, metavar="MS",
                   help="send notes MS earlier to make up for output latency (negative: later)")
    m = p.add_argument_group("groove")
    m.add_argument("--groove", nargs="?", action=_GrooveArg, default=None, metavar="FILE.mid", dest="groove_file",
                   help="play the model's velocities and microtiming (default); with FILE.mid: start from "
                   "this drum clip (4 bars: shorter ones are looped, longer ones cut)")
    m.add_argument("--quantize", dest="quantize", action="store_true",
                   help="play on the 16th grid, keeping the model's velocities")
    m.add_argument("--humanize", action="store_true",
                   help="give a --groove clip and a lock's result the model's velocities and microtiming "
                   "(the hits stay as they are)")
    m.add_argument("--swing", type=_ranged("swing"), default=LiveOptions.swing, metavar="PCT",
                   help="delay every second 16th by PCT percent of a 16th (33 = triplet shuffle; default 0)")
    m.add_argument("--seed", type=_ranged("seed"), metavar="N",
                   help="make the performance reproducible (default: random, shown at start)")
    m.add_argument("--temperature", type=_ranged("temperature"), default=None, metavar="T",
                   help="sampling temperature within the model's range (the shipped model: 0..2; "
                   "default: the model's, 0.5; 0 = the most likely groove)")
    m.add_argument("--model", metavar="DIR", help="exported model folder (default: the shipped model)")
    m.add_argument("--style", metavar="NAME", help="start in this style (see 'drum-performer styles'; default: any)")
    m.add_argument("--fills", type=fills_arg, default=0, metavar="every:N|off",
                   help="a learned fill in bar 4 of every N-th cycle (default: off; the f key asks for one)")
    m.add_argument("--morph-cycles", type=_ranged("morph_cycles"), default=LiveOptions.morph_cycles, metavar="N",
                   help=f"cycles a morph (m) takes, {_R['morph_cycles'].text()} (default 4)")
    au = p.add_argument_group("audio")
    au.add_argument("--audio", action="store_true",
                    help="also play the drums through the default audio output with a built-in kit "
                    "(no DAW or synth needed; needs pip install 'drum-performer[audio]'); with --api jack, into JACK")
    au.add_argument("--soundfont", type=soundfont_arg, metavar="FILE.sf2",
                    help="--audio with this SoundFont's General MIDI drum kit instead of the built-in one "
                    "(implies --audio)")
    o = p.add_argument_group("other")
    o.add_argument("--record", metavar="FILE.mid", help="write what was played to this MIDI file on exit")
    o.add_argument("--map", metavar="FILE", help="JSON file mapping MIDI CCs / notes to controls")
    # -v after the live options too (``drum-performer --bpm 120 -v``); SUPPRESS keeps a -v given
    # before the subcommand when none comes after it
    o.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    o.add_argument("--headless", action="store_true",
                   help="no terminal view or keys, even on a terminal (controls from MIDI only)")
    p.set_defaults(func=run_live, quantize=False, groove_mode=False)

    q = sub.add_parser("ports", help="list MIDI inputs and outputs")
    q.add_argument("--api", choices=API_CHOICES, default="auto", help="MIDI backend (default: auto)")
    q.set_defaults(func=run_ports)


def run_live(a) -> int:
    from performer.app import LiveApp

    opts = LiveOptions(
        port=a.port,
        clock_port=a.clock_port,
        api=a.api,
        bpm=a.bpm,
        channel=a.channel,
        quantize=a.quantize,
        swing=a.swing,
        seed=a.seed,
        temperature=a.temperature,
        model=a.model,
        record=a.record,
        map=a.map,
        morph_cycles=a.morph_cycles,
        start_on_clock=a.start_on_clock,
        headless=True if a.headless else None,
        latency_ms=a.latency_ms,
        spp_units=a.spp_units,
        style=a.style,
        fills_every=a.fills,
        link=a.link,
        follow=a.follow,
        follow_amount=a.follow_amount,
        humanize=a.humanize,
        groove_file=a.groove_file,
        audio=a.audio or a.soundfont is not None,
        soundfont=a.soundfont,
    )
    if a.groove_mode and a.quantize:
        raise LiveError("argument --groove: not allowed with argument --quantize (they are the two playing modes)")
    if a.record is not None:
        opts.validate()  # the --record check, before anything plays: one line if it fails
        if Path(opts.record) != Path(a.record).expanduser():
            print(f"drum-performer: {a.record} exists; this take will go to {opts.record}", file=sys.stderr)
    app = LiveApp(opts)

    def ready(info: dict) -> None:
        if info["headless"]:
            clock = info["clock"]
            follow = f", following {info['follow']}" if info.get("follow") else ""
            print(
                f"drum-performer: ready in {info['ready_s']:.2f} s: drums to {info['out']}, clock from {clock}, "
                f"seed {info['seed']}{follow} (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )

    code = app.run(on_ready=ready)
    if opts.record:
        print(f"recorded to {opts.record}", file=sys.stderr)
    return code


def run_ports(a) -> int:
    from performer.ports import list_ports

    api, ins, outs = list_ports(a.api)
    print(f"MIDI system: {api}")
    print("outputs (drums go here: --port NAME):")
    for p in outs:
        print(f"  {p}")
    if not outs:
        print("  (none)")
    print("inputs (clock and controls come from here: --clock-port NAME):")
    for p in ins:
        print(f"  {p}")
    if not ins:
        print("  (none)")
    return 0
