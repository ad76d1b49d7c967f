"""The terminal view: the playing 4-bar pattern as a 9 x 64 grid with a playhead.

:func:`render` is a pure function of a status snapshot (testable without a
terminal). :class:`View` redraws from its own thread at a modest rate and
writes only the lines that changed, so a redraw costs well under a
millisecond of the GIL and never touches the sender's state except to read
it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from model import drums
from performer.clock import TICKS_PER_STEP
from performer.controls import help_lines

log = logging.getLogger(__name__)

LABEL_W = 7  # "9 RD ML"

# what the `last:` line says for a control (the names inside are the actions')
ACTION_WORDS = {
    "new": "new groove", "variation": "variation", "morph": "morph", "lock": "lock muted voices",
    "morph_shorter": "shorter morph", "morph_longer": "longer morph",
    "temperature_up": "temperature up", "temperature_down": "temperature down",
    "density_up": "density up", "density_down": "density down",
    "set_temperature": "temperature knob", "set_density": "density knob", "morph_cycles": "morph length knob",
    "save": "save to slot", "recall": "recall slot", "help": "help", "quit": "quit", "mute": "mute voice",
    "fill": "fill in bar 4", "style_prev": "previous style", "style_next": "next style", "style": "style knob",
    "follow_up": "follow amount up", "follow": "follow knob",
}
PENDING_WORDS = {"new": "new groove", "variation": "variation", "morph": "morph", "lock": "lock",
                 "recall": "recall", "style": "style change", "set_style": "style change",
                 "follow": "follow the player"}


def action_words(last: str) -> str:
    """``temperature_down`` -> ``temperature down``; ``mute 3 on`` -> ``mute voice 3 (SN) on``."""
    if not last:
        return "-"
    name, _, rest = last.partition(" ")
    words = ACTION_WORDS.get(name, name.replace("_", " "))
    if name == "mute" and rest.split()[0].isdigit():
        v = int(rest.split()[0])
        if 1 <= v <= drums.NUM_VOICES:
            rest = rest.replace(str(v), f"{v} ({drums.VOICE_LABELS[v - 1]})", 1)
    return f"{words} {rest}".strip()


def _column(step: int) -> int:
    """Screen column of a step inside the grid (bar separators included)."""
    return LABEL_W + step + step // drums.STEPS_PER_BAR


def render(s: dict, width: int = 100) -> list[str]:
    """Lines of the view for a status snapshot ``s`` (see app.LiveApp.status)."""
    lines = []
    transport = s.get("transport", "stopped")
    bpm = s.get("bpm")
    tempo = f"{bpm:6.1f} BPM" if bpm else "  --.- BPM"
    pos = s.get("position")
    d = s.get("director", {})
    if pos is not None and transport != "stopped":
        ipos = int(pos) if pos >= 0 else 0
        bar, in_bar = divmod(ipos // TICKS_PER_STEP, drums.STEPS_PER_BAR)
        where = f"bar {bar + 1:3d}.{in_bar // drums.STEPS_PER_BEAT + 1}.{in_bar % drums.STEPS_PER_BEAT + 1}"
    else:
        where = "bar   -.-.-"
    cycle = s.get("cycle")
    # cycles count from 1, like bars (the status's cycle is the 0-based index)
    head = f"drum-performer  {transport:<9} {tempo}  {where}  cycle {cycle + 1 if cycle is not None else '-'}"
    lines.append(head)
    # a control's new value shows at once; "(next cycle)" says when it will be heard
    temp = d.get("next_temperature", d.get("temperature"))
    dens = d.get("next_density", d.get("density", 0.0))
    morph = d.get("morph")
    morph_s = f"morph {morph[0]}/{morph[1]}" if morph else "no morph"
    changed = (temp is not None and d.get("temperature") is not None and abs(temp - d["temperature"]) > 1e-9
               or abs(dens - d.get("density", 0.0)) > 1e-9)
    waiting = [PENDING_WORDS.get(a, a) for a in d.get("next_actions", ())]
    if "next_actions" not in d and d.get("pending"):
        waiting = ["change"]
    if waiting:
        pending = f"  (next cycle: {', '.join(dict.fromkeys(waiting))})"
    elif changed:
        pending = "  (next cycle)"
    else:
        pending = ""
    lines.append(
        f"{d.get('label', '')}  T {temp:.2f}  density {dens:+.2f}  {morph_s} (m: {d.get('morph_cycles', '-')} cycles)"
        f"{pending}" if temp is not None else d.get("label", "")
    )
    fills = d.get("fills_every")
    fill_s = "fill coming in bar 4" if d.get("fill") else (f"fills every {fills} cycles" if fills else "fills: f")
    lines.append(f"out {s.get('out', '-')}   clock {s.get('clock', '-')}   {s.get('mode', '')}")
    lines.append(f"style {d.get('style', 'any')}   {fill_s}")
    follow = s.get("follow")
    if follow is not None:
        amount, nxt = d.get("follow", 0.0), d.get("next_follow", d.get("follow", 0.0))
        then = f" (next cycle: {nxt:.0%})" if abs(nxt - amount) > 1e-9 else ""
        cyc = follow.get("heard_cycle")
        heard = "nothing heard yet" if cyc is None else f"heard for cycle {cyc + 1}: {_onsets(follow.get('heard'))}"
        lines.append(f"follow {amount:.0%}{then} from {follow.get('port', '-')}   {heard}")
    lines.append("")
    header = [" "] * (_column(drums.STEPS - 1) + 1)
    for b in range(drums.BARS):
        col = _column(b * drums.STEPS_PER_BAR)
        for i, ch in enumerate(str(b + 1)):
            header[col + i] = ch
    lines.append("".join(header).rstrip())
    pattern: drums.Pattern | None = s.get("pattern")
    mutes = d.get("mutes")
    locks = d.get("locks")
    for v in range(drums.NUM_VOICES):
        m = "M" if mutes is not None and mutes[v] else " "
        lk = "L" if locks is not None and locks[v] else " "
        label = f"{v + 1} {drums.VOICE_LABELS[v]} {m}{lk}"
        row = pattern.row(v) if pattern is not None else ""
        lines.append(f"{label:<{LABEL_W}}{row}")
    if follow is not None and follow.get("heard") is not None:
        lines.append(f"{'heard':<{LABEL_W}}{_strip(follow['heard'])}")
    step = s.get("step")
    marker = ""
    if step is not None and transport != "stopped":
        marker = " " * _column(int(step)) + "^"
    lines.append(marker)
    if s.get("help"):
        lines.append("")
        lines.extend(help_lines())
    else:
        lines.append(f"last: {action_words(s.get('last_action') or '')}    h/? help   q quit")
    for msg in s.get("messages", ()):
        lines.append(msg)
    return [ln[:width] for ln in lines]


def _strip(taps) -> str:
    """(64, 3) taps -> one row in the grid's notation (X loud, x soft, - beat, . 16th, | bar)."""
    hits = np.zeros((drums.STEPS, drums.NUM_VOICES), bool)
    vel = np.zeros(hits.shape, np.float32)
    hits[:, 0] = np.asarray(taps)[:, 0] > 0.5
    vel[:, 0] = np.asarray(taps)[:, 1]
    return drums.Pattern(hits, vel, np.zeros(hits.shape, np.float32)).row(0)


def _onsets(taps) -> str:
    n = int((np.asarray(taps)[:, 0] > 0.5).sum()) if taps is not None else 0
    return f"{n} onsets" if n else "silence (the groove goes on)"


class LogBuffer(logging.Handler):
    """Keeps the last few log lines for the view (a terminal in fullscreen has no room for stderr)."""

    def __init__(self, n: int = 3) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=n)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record).splitlines()[0])


class View(threading.Thread):
    """Redraws ``render(status())`` at ``fps`` on a blessed Terminal."""

    def __init__(self, term, status: Callable[[], dict], fps: float = 12.0, out=None) -> None:
        super().__init__(name="drum-performer-view", daemon=True)
        self.term = term
        self.status = status
        self.interval = 1.0 / fps
        self.out = out or sys.stdout
        self._quit = threading.Event()
        self._shown: list[str] = []
        self.frames = 0

    def stop(self) -> None:
        self._quit.set()

    def frame(self) -> None:
        t = self.term
        lines = render(self.status(), width=max(20, (t.width or 100) - 1))
        height = t.height or 40
        buf = []
        for i, line in enumerate(lines[:height]):
            if i >= len(self._shown) or self._shown[i] != line:
                buf.append(t.move_xy(0, i) + line + t.clear_eol)
        for i in range(len(lines), min(len(self._shown), height)):
            buf.append(t.move_xy(0, i) + t.clear_eol)
        self._shown = lines
        if buf:
            self.out.write("".join(buf))
            self.out.flush()
        self.frames += 1

    def run(self) -> None:
        next_t = time.perf_counter()
        while not self._quit.is_set():
            try:
                self.frame()
            except Exception:
                log.debug("view frame failed", exc_info=True)
            next_t += self.interval
            delay = next_t - time.perf_counter()
            if delay < 0:
                next_t = time.perf_counter()
                delay = self.interval
            self._quit.wait(delay)

