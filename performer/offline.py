"""``drum-performer sample``: four-bar grooves (or a morph between two clips) as MIDI files.

Seeds: file ``i`` of ``sample -n N --seed S`` is ``Engine.sample(seed=S + i)``,
the same groove the live performer plays first with ``--seed S + i``.
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

import numpy as np

from model import drums, midifile, paths
from model.errors import DrumPerformerError
from model.fileio import atomic_write
from model.ranges import BPM, NONNEGATIVE, POSITIVE_INT, SEED
from performer import sound

log = logging.getLogger(__name__)


class SampleError(DrumPerformerError):
    pass


def add_parsers(sub) -> None:
    _add_sample(sub)
    _add_styles(sub)


def _add_sample(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="write four-bar grooves as MIDI files (or --interpolate A.mid B.mid)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-n", type=POSITIVE_INT.arg(), default=4, help="number of grooves")
    p.add_argument("--out", required=True, help="folder to write into (created if needed)")
    p.add_argument("--seed", type=SEED.arg(), help="first seed, 0 or more (file i uses seed+i); default: random, printed")
    p.add_argument("--temperature", type=NONNEGATIVE.arg(), help="sampling temperature (0 = most likely); default: the model's (0.5), 0 for --interpolate")
    p.add_argument("--bpm", type=BPM.arg(), default=120.0, help="tempo written to the files")
    p.add_argument("--model", help="exported model folder (default: the shipped model)")
    p.add_argument("--quantize", action="store_true", help="write on the grid (keep velocities, drop microtiming)")
    p.add_argument("--interpolate", nargs=2, metavar=("A.mid", "B.mid"), help="morph from clip A to clip B")
    p.add_argument("--steps", type=POSITIVE_INT.arg(), default=5, help="grooves on the morph path, ends included")
    p.add_argument("--style", help="play in this style (see 'drum-performer styles'; default: any)")
    p.add_argument("--fill", action="store_true", help="bar 4 of each groove is a fill (bars 1-3 stay the groove)")
    p.add_argument("--png", action="store_true", help="also draw each groove's grid as a PNG (needs matplotlib)")
    p.add_argument("--wav", action="store_true", help="also render each groove to a 16-bit 44.1 kHz WAV (built-in kit)")
    p.add_argument("--soundfont", metavar="FILE.sf2", type=sound.soundfont_arg, help="render the WAVs with this General MIDI SoundFont (implies --wav; needs the audio extra)")
    p.set_defaults(func=run)


def have_matplotlib() -> bool:
    """Checked before anything is written (the runtime install has no matplotlib)."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None


def _add_styles(sub) -> None:
    p = sub.add_parser("styles", help="list the styles of a model, one per line, name first")
    p.add_argument("--model", help="exported model folder (default: the shipped model)")
    p.set_defaults(func=run_styles)


def run_styles(a) -> int:
    from performer.engine import Engine

    engine = Engine.load(a.model, warm=False)
    counts = engine.meta.get("style_windows", {})
    for name in ("any", *engine.styles):
        note = "every style mixed" if name == "any" else (f"{counts[name]} training windows" if name in counts else "")
        print(f"{name}\t{note}" if note else name)
    return 0


def draw_png(pattern: drums.Pattern, path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SampleError("--png needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(12, 2.6))
    img = np.where(pattern.hits, 0.25 + 0.75 * pattern.velocity, 0.0).T  # (V, T)
    ax.imshow(img, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest", origin="lower")
    for x in range(0, pattern.steps + 1, drums.STEPS_PER_BEAT):
        ax.axvline(x - 0.5, color="tab:blue" if x % drums.STEPS_PER_BAR == 0 else "0.85", lw=0.8 if x % drums.STEPS_PER_BAR else 1.5)
    ax.set_yticks(range(drums.NUM_VOICES), drums.VOICE_LABELS)
    ax.set_xlabel("sixteenth step")
    ax.set_title(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    finally:
        plt.close(fig)


def read_clip(path: str) -> drums.Pattern:
    """A clip for --interpolate; errors name the file."""
    if not Path(path).exists():
        raise SampleError(f"clip {path} does not exist")
    try:
        return midifile.read_pattern(path)
    except midifile.MidiReadError as e:
        raise SampleError(f"clip {path}: {e}") from None


def run(a) -> int:
    from performer.engine import Engine

    # Everything that can fail is checked before the folder is made or a file written.
    out = paths.check_dir(a.out, "--out")
    if a.png and not have_matplotlib():
        raise SampleError("--png needs matplotlib, which this install lacks: pip install matplotlib (or leave out --png)")
    engine = Engine.load(a.model)
    engine.style_index(a.style)  # an unknown style fails here, before anything is written
    if a.temperature is not None:
        engine.check_temperature(a.temperature)  # and so does a temperature outside the model's range
    if a.fill and not engine.has_fills:
        raise SampleError(f"the model in {engine.folder} has no fills (it was trained without GMD's fill clips)")
    clips = [read_clip(c) for c in a.interpolate] if a.interpolate else []
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = _generate(engine, clips, out, a)
    except OSError as e:
        raise SampleError(f"cannot write into {out}: {e.strerror or e}") from None
    for w in written:
        print(f"  {w}")
    return 0


def _generate(engine, clips: list[drums.Pattern], out: Path, a) -> list[Path]:
    written: list[Path] = []
    if clips:
        temp = 0.0 if a.temperature is None else a.temperature
        za, zb = (engine.encode(c) for c in clips)
        seed = a.seed if a.seed is not None else 0
        for i, z in enumerate(engine.slerp(za, zb, a.steps)):
            p = engine.sample(z=z, temperature=temp, seed=seed, style=a.style, fill=a.fill)
            written += _write(p, out / f"morph_{i:02d}.mid", a, f"morph {i + 1}/{a.steps}")
        print(f"morph {a.interpolate[0]} -> {a.interpolate[1]} in {a.steps} grooves (temperature {temp})")
    else:
        temp = engine.default_temperature if a.temperature is None else a.temperature
        seed = a.seed if a.seed is not None else random.randrange(2**31)
        style = a.style or "any"
        for i in range(a.n):
            p = engine.sample(temperature=temp, seed=seed + i, style=a.style, fill=a.fill)
            title = f"seed {seed + i}, {style}{', fill in bar 4' if a.fill else ''}, temperature {temp}"
            written += _write(p, out / f"groove_{seed + i}.mid", a, title)
        print(f"{a.n} grooves, style {style}{', fills' if a.fill else ''}, seeds {seed}..{seed + a.n - 1}, "
              f"temperature {temp}, {a.bpm:g} BPM")
    return written


def _write(p: drums.Pattern, path: Path, a, title: str) -> list[Path]:
    midifile.write_pattern(p, path, bpm=a.bpm, quantize=a.quantize)
    written = [path]
    if a.png:
        draw_png(p, path.with_suffix(".png"), title)
        written.append(path.with_suffix(".png"))
    if a.wav or a.soundfont:  # rendered from the file just written, so audio and MIDI agree
        sound.midi_to_wav(path, path.with_suffix(".wav"), p.steps * 60 / a.bpm / drums.STEPS_PER_BEAT, a.soundfont)
        written.append(path.with_suffix(".wav"))
    return written
