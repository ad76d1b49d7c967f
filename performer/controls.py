"""Controls: keys and MIDI (CC or notes on the clock input) -> performance actions.

One vocabulary of actions, two ways in. Keys use blessed (cbreak mode, no
echo); MIDI controls arrive on the clock input port and are mapped by a
default table that a JSON file (``--map FILE``) extends or replaces.

Where each change lands (the scheduler reads patterns at cycle boundaries and
mutes at bar lines):

=========  ===================================  ==================
key        action                               lands
=========  ===================================  ==================
n          new groove                           next cycle
v          variation (same latent, new decode)  next cycle
m          morph to a new groove over N cycles  starts next cycle
[ / ]      morph length N -1 / +1 (1..16)       next morph
+ / -      temperature up / down (0.1)          next cycle
d / D      density down / up                    next cycle
1 .. 9     mute / unmute voice 1..9             next bar
l          lock unmuted voices, regenerate the  next cycle
           muted ones (and unmute them);
           with nothing muted: unlock
s / r      save / recall slot 1                 now / next cycle
h or ?     help                                 now
q          quit (note-offs and panic first)     now
=========  ===================================  ==================

Mapping file (JSON), e.g.::

    {"defaults": true,
     "channel": null,
     "cc":    {"20": "new", "26": "temperature", "30": "mute:1"},
     "notes": {"60": "new", "62": "morph", "72": "save:2", "74": "recall:2"}}

``defaults`` false starts from an empty table; ``channel`` (1..16) listens to
one channel only (null: any). CC actions that take a value ("temperature",
"density", "morph_cycles", "mute:N") follow the controller's position;
trigger actions fire when the value rises to 64 or more. Note actions fire
on note-on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from model import drums
from model.errors import DrumPerformerError
from performer.clock import CC, NOTE_ON

log = logging.getLogger(__name__)


class MapError(DrumPerformerError):
    """A mapping file that cannot be used; the message names the file and the entry."""


# action -> help text. "mute:N", "save:N", "recall:N" take a number.
ACTIONS: dict[str, str] = {
    "new": "new groove at the next cycle",
    "variation": "variation of the groove (same latent, new decode)",
    "morph": "morph to a new groove over N cycles",
    "morph_shorter": "morph length N - 1",
    "morph_longer": "morph length N + 1",
    "temperature_up": "temperature + 0.1",
    "temperature_down": "temperature - 0.1",
    "density_up": "denser (along the density attribute)",
    "density_down": "sparser",
    "lock": "lock the unmuted voices and regenerate the muted ones",
    "save": "save the groove to a slot",
    "recall": "recall a slot at the next cycle",
    "mute": "mute / unmute a voice at the next bar",
    "help": "show / hide help",
    "quit": "quit",
    # continuous (CC value) actions
    "temperature": "temperature from the CC value (0..127 -> the model's range)",
    "density": "density from the CC value (64 = neutral)",
    "morph_cycles": "morph length from the CC value (1..16)",
}
_CONTINUOUS = {"temperature", "density", "morph_cycles"}
_NUMBERED = {"mute", "save", "recall"}

KEYS: dict[str, tuple[str, int | None]] = {
    "n": ("new", None),
    "v": ("variation", None),
    "m": ("morph", None),
    "[": ("morph_shorter", None),
    "]": ("morph_longer", None),
    "+": ("temperature_up", None),
    "=": ("temperature_up", None),  # the unshifted + key
    "-": ("temperature_down", None),
    "d": ("density_down", None),
    "D": ("density_up", None),
    "l": ("lock", None),
    "s": ("save", 1),
    "r": ("recall", 1),
    "h": ("help", None),
    "?": ("help", None),
    "q": ("quit", None),
    **{str(i + 1): ("mute", i + 1) for i in range(drums.NUM_VOICES)},
}

# Defaults: CC 20..31 and 102..119 are undefined in MIDI 1.0, free for this.
DEFAULT_CC: dict[int, str] = {
    20: "new",
    21: "variation",
    22: "morph",
    23: "lock",
    24: "save:1",
    25: "recall:1",
    26: "temperature",
    27: "density",
    28: "morph_cycles",
    **{102 + i: f"mute:{i + 1}" for i in range(drums.NUM_VOICES)},
}
# Notes from C3 (60) on a keyboard or pad bank; C4 (72) and up mute voices 1..9.
DEFAULT_NOTES: dict[int, str] = {
    60: "new",
    61: "variation",
    62: "morph",
    63: "morph_shorter",
    64: "morph_longer",
    65: "temperature_down",
    66: "temperature_up",
    67: "density_down",
    68: "density_up",
    69: "lock",
    70: "save:1",
    71: "recall:1",
    **{72 + i: f"mute:{i + 1}" for i in range(drums.NUM_VOICES)},
}


def parse_action(text: str, where: str = "") -> tuple[str, int | None]:
    name, _, num = str(text).strip().partition(":")
    if name not in ACTIONS:
        raise MapError(f"{where}unknown action {text!r} (known: {', '.join(sorted(ACTIONS))})")
    if name in _NUMBERED:
        if not num:
            num = "1"
        try:
            n = int(num)
        except ValueError:
            raise MapError(f"{where}{text!r}: the number after ':' must be a whole number") from None
        hi = drums.NUM_VOICES if name == "mute" else 99
        if not 1 <= n <= hi:
            raise MapError(f"{where}{text!r}: number must be 1..{hi}")
        return name, n
    if num:
        raise MapError(f"{where}{text!r}: {name} takes no number")
    return name, None


@dataclass
class MidiMap:
    cc: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    notes: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    channel: int | None = None  # 0-based; None = any

    @classmethod
    def default(cls) -> MidiMap:
        return cls(
            {k: parse_action(v) for k, v in DEFAULT_CC.items()},
            {k: parse_action(v) for k, v in DEFAULT_NOTES.items()},
        )

    @classmethod
    def load(cls, path: str | Path | None) -> MidiMap:
        if path is None:
            return cls.default()
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            raise MapError(f"mapping file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise MapError(f"cannot read mapping file {p}: {e}") from None
        except ValueError as e:
            raise MapError(f"mapping file {p} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise MapError(f"mapping file {p} must hold a JSON object")
        unknown = set(doc) - {"defaults", "channel", "cc", "notes"}
        if unknown:
            raise MapError(f"{p}: unknown keys {sorted(unknown)} (use defaults, channel, cc, notes)")
        m = cls.default() if doc.get("defaults", True) else cls()
        ch = doc.get("channel")
        if ch is not None:
            if not isinstance(ch, int) or not 1 <= ch <= 16:
                raise MapError(f"{p}: channel must be 1..16 or null")
            m.channel = ch - 1
        for section, table in (("cc", m.cc), ("notes", m.notes)):
            entries = doc.get(section, {})
            if not isinstance(entries, dict):
                raise MapError(f"{p}: {section!r} must be an object of number -> action")
            for k, v in entries.items():
                where = f"{p}: {section} {k}: "
                try:
                    num = int(k)
                except ValueError:
                    raise MapError(f"{where}key must be a number 0..127") from None
                if not 0 <= num <= 127:
                    raise MapError(f"{where}key must be 0..127")
                if v is None:
                    table.pop(num, None)  # null removes a default
                    continue
                act = parse_action(v, where)
                if section == "notes" and act[0] in _CONTINUOUS:
                    raise MapError(f"{where}{v!r} needs a CC value, a note cannot carry it")
                table[num] = act
        return m


class Controller:
    """Applies actions to a Director; the app supplies what quit and help do."""

    def __init__(
        self,
        director,
        midi_map: MidiMap | None = None,
        on_quit: Callable[[], None] | None = None,
        on_help: Callable[[], None] | None = None,
    ) -> None:
        self.director = director
        self.map = midi_map or MidiMap.default()
        self.on_quit = on_quit
        self.on_help = on_help
        self._cc_last: dict[int, int] = {}
        self.last_action = ""

    # -- entry points

    def key(self, k: str) -> bool:
        """A key press; False if the key means nothing."""
        act = KEYS.get(k)
        if act is None:
            return False
        self.apply(*act)
        return True

    def midi(self, msg: tuple) -> None:
        """A parsed channel message from the clock input (sender thread: must be quick)."""
        kind = msg[0]
        if kind not in (CC, NOTE_ON) or (self.map.channel is not None and msg[1] != self.map.channel):
            return
        if kind == NOTE_ON:
            act = self.map.notes.get(msg[2])
            if act is not None:
                self.apply(*act)
            return
        num, val = msg[2], msg[3]
        act = self.map.cc.get(num)
        if act is None:
            return
        name, arg = act
        prev = self._cc_last.get(num, 0)
        self._cc_last[num] = val
        if name in _CONTINUOUS:
            self.apply(name, None, value=val)
        elif name == "mute":
            self.director.set_mute(arg - 1, val >= 64)
            self.last_action = f"mute {arg} {'on' if val >= 64 else 'off'}"
        elif val >= 64 > prev:  # rising edge: a button sends 127 then 0
            self.apply(name, arg)

    # -- actions

    def apply(self, name: str, arg: int | None = None, value: int | None = None) -> None:
        d = self.director
        self.last_action = name if arg is None else f"{name} {arg}"
        if name in ("new", "variation", "morph"):
            d.request(name)
        elif name == "morph_shorter":
            d.change_morph_cycles(-1)
        elif name == "morph_longer":
            d.change_morph_cycles(+1)
        elif name == "temperature_up":
            d.request("temperature", +1)
        elif name == "temperature_down":
            d.request("temperature", -1)
        elif name == "density_up":
            d.request("density", +1)
        elif name == "density_down":
            d.request("density", -1)
        elif name == "lock":
            d.request("lock")
        elif name == "save":
            d.save(arg or 1)
        elif name == "recall":
            d.request("recall", arg or 1)
        elif name == "mute":
            d.toggle_mute((arg or 1) - 1)
        elif name == "help":
            if self.on_help:
                self.on_help()
        elif name == "quit":
            if self.on_quit:
                self.on_quit()
        elif name == "temperature" and value is not None:
            lo, hi = d.temperature_range
            d.request("set_temperature", round(lo + (hi - lo) * value / 127.0, 2))
        elif name == "density" and value is not None:
            from performer.director import DENSITY_LIMIT

            d.request("set_density", round((value - 64) / 63.0 * DENSITY_LIMIT, 2))
        elif name == "morph_cycles" and value is not None:
            d.set_morph_cycles(1 + value * 15 // 127)
        log.debug("control: %s", self.last_action)


def help_lines() -> list[str]:
    """The key help, one line each (the view shows it on h / ?)."""
    voices = " ".join(f"{i + 1}={lab}" for i, lab in enumerate(drums.VOICE_LABELS))
    return [
        "n new groove   v variation   m morph ([ ] length)   + - temperature   d D density",
        f"1-9 mute a voice ({voices})",
        "l lock the unmuted voices, regenerate the muted ones   s save   r recall   q quit",
        "grooves and temperature land at the next cycle, mutes at the next bar",
        "grid: X loud hit, x soft hit, - a beat, . a 16th, | a bar line, ^ the playhead; "
        "M muted, L locked",
    ]
