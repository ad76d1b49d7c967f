"""Controls: keys and MIDI (CC or notes on the clock input) -> performance actions.

One registry of actions, :data:`ACTIONS`, and two ways in. Each
:class:`Action` names its key(s), its default MIDI note and CC, its help
text, when it lands, and what it asks of the director (``press`` for a key,
a note or a CC rising to 64; ``turn`` for a CC that follows its value).
Everything else is derived from that one table: the key table
(:data:`KEYS`), the default MIDI map, the ``--map`` checks, the view's help
(:func:`help_lines`), the CLI epilog (:func:`epilog`) and the table in
docs/live.md (:func:`docs_table`; a test keeps the file in step).

Adding a control is one :class:`Action` here plus, when it changes the
groove, one planning function in :mod:`performer.director`: in ``PLANNERS``
for a change at the next cycle boundary, in ``BAR_PLANNERS`` for one that
plays from a bar line of the playing cycle to its end (a fill in bar 4).

Keys use blessed (cbreak mode, no echo); MIDI controls arrive on the clock
input port and are mapped by the default table that a JSON file
(``--map FILE``) extends or replaces, e.g.::

    {"defaults": true,
     "channel": null,
     "cc":    {"20": "new", "26": "temperature", "30": "mute:1"},
     "notes": {"60": "new", "62": "morph", "72": "save:2", "74": "recall:2"}}

``defaults`` false starts from an empty table; ``channel`` (1..16) listens to
one channel only (null: any). CC actions that follow a value (those with a
``turn``: "temperature", "density", "morph_cycles", "follow", "mute:N") follow the
controller's position; other actions fire when the value rises to 64 or
more. Note actions fire on note-on.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from model import drums
from model.errors import DrumPerformerError
from performer.clock import CC, NOTE_ON
from performer.director import DENSITY_LIMIT, FOLLOW_STEP, MORPH_MAX, MORPH_MIN

log = logging.getLogger(__name__)


class MapError(DrumPerformerError):
    """A mapping file that cannot be used; the message names the file and the entry."""


NEXT_CYCLE, NEXT_BAR, NOW = "next cycle", "next bar", "now"
PRESS_THRESHOLD = 64  # a CC at or above this is "on" (a button sends 127 then 0)


@dataclass(frozen=True)
class Action:
    """One control: how it is reached and what it asks of the director.

    ``press(ctl, n)`` runs on a key, a note-on or a CC rising to
    :data:`PRESS_THRESHOLD`; ``turn(ctl, n, value)`` follows a CC's value
    (0..127) and returns what the view shows as the last action (None: the
    name). ``numbers`` > 0 makes the action take ``name:N`` with N in
    1..numbers; ``keys``, ``note`` and ``cc`` then give the defaults of
    N = 1, 2, ... in order (a run of consecutive notes / CCs).
    """

    name: str
    text: str  # what it does: the docs table and the --map error for an unknown name
    lands: str  # when it takes effect
    short: str = ""  # the label in the view's help and the CLI epilog ("" : not listed there)
    keys: tuple[str, ...] = ()
    note: int | None = None
    cc: int | None = None
    press: Callable[[Controller, int | None], None] | None = None
    turn: Callable[[Controller, int | None, int], str | None] | None = None
    numbers: int = 0
    defaults: int = 1  # how many numbers (1..defaults) get a default key / note / CC

    def default_arg(self, i: int) -> int | None:
        return i + 1 if self.numbers else None


def _request(kind: str, arg: object = None) -> Callable[[Controller, int | None], None]:
    """A press that queues one request for the director (see director.PLANNERS)."""
    return lambda c, n: c.director.request(kind, arg)


def _temperature_from_cc(c: Controller, n: int | None, value: int) -> None:
    lo, hi = c.director.temperature_range
    c.director.request("set_temperature", round(lo + (hi - lo) * value / 127.0, 2))


def _density_from_cc(c: Controller, n: int | None, value: int) -> None:
    c.director.request("set_density", round((value - 64) / 63.0 * DENSITY_LIMIT, 2))


def _morph_cycles_from_cc(c: Controller, n: int | None, value: int) -> None:
    c.director.set_morph_cycles(MORPH_MIN + value * (MORPH_MAX - MORPH_MIN) // 127)


def _style_from_cc(c: Controller, n: int | None, value: int) -> str:
    names = c.director.styles
    name = names[min(len(names) - 1, value * len(names) // 128)]
    c.director.request("set_style", name)
    return f"style {name}"


def _follow_from_cc(c: Controller, n: int | None, value: int) -> str:
    amount = round(value / 127.0, 2)
    c.director.request("set_follow", amount)
    return f"follow {amount:.0%}"


def _mute_from_cc(c: Controller, n: int | None, value: int) -> str:
    on = value >= PRESS_THRESHOLD
    c.director.set_mute(n - 1, on)
    return f"mute {n} {'on' if on else 'off'}"


def _call(attr: str) -> Callable[[Controller, int | None], None]:
    """A press handled by the app (help, quit): the Controller's ``on_help`` / ``on_quit``."""

    def press(c: Controller, n: int | None) -> None:
        fn = getattr(c, attr)
        if fn is not None:
            fn()

    return press


_VOICES = " ".join(drums.VOICE_LABELS)

# The registry. Order is the order of the docs table, the help and the epilog.
# Default CCs: 20..31 and 102..119 are undefined in MIDI 1.0, free for this;
# default notes from C3 (60) on a keyboard or pad bank, C4 (72) and up mute voices 1..9.
ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("new", "new groove", NEXT_CYCLE, "new groove", ("n",), 60, 20, press=_request("new")),
    Action("variation", "variation: same latent, new decode", NEXT_CYCLE, "variation", ("v",), 61, 21,
           press=_request("variation")),
    Action("morph", "morph to a new groove over N cycles (slerp)", "starts next cycle", "morph", ("m",), 62, 22,
           press=_request("morph")),
    Action("morph_shorter", f"morph length N - 1 ({MORPH_MIN}..{MORPH_MAX}, default 4)", "next morph",
           "morph shorter", ("[",), 63, press=lambda c, n: c.director.change_morph_cycles(-1)),
    Action("morph_longer", "morph length N + 1", "next morph", "morph longer", ("]",), 64,
           press=lambda c, n: c.director.change_morph_cycles(+1)),
    Action("temperature_down", "temperature - 0.1", NEXT_CYCLE, "temperature down", ("-",), 65,
           press=_request("temperature", -1)),
    Action("temperature_up", "temperature + 0.1", NEXT_CYCLE, "temperature up", ("+", "="), 66,
           press=_request("temperature", +1)),
    Action("density_down", "sparser (along the latent density attribute)", NEXT_CYCLE, "density down", ("d",), 67,
           press=_request("density", -1)),
    Action("density_up", "denser", NEXT_CYCLE, "density up", ("D",), 68, press=_request("density", +1)),
    Action("lock", "lock the unmuted voices, regenerate the muted ones (and unmute them); "
           "with nothing muted: unlock", NEXT_CYCLE, "lock unmuted, regenerate muted", ("l",), 69, 23,
           press=_request("lock")),
    Action("save", "save the playing groove to slot N", NOW, "save", ("s",), 70, 24,
           press=lambda c, n: c.director.save(n or 1), numbers=99),
    Action("recall", "recall slot N", NEXT_CYCLE, "recall", ("r",), 71, 25,
           press=lambda c, n: c.director.request("recall", n or 1), numbers=99),
    Action("mute", f"mute / unmute voice N ({_VOICES}); a CC follows its value (>= 64 muted)", NEXT_BAR,
           "mute a voice", tuple(str(i + 1) for i in range(drums.NUM_VOICES)), 72, 102,
           press=lambda c, n: c.director.toggle_mute((n or 1) - 1), turn=_mute_from_cc,
           numbers=drums.NUM_VOICES, defaults=drums.NUM_VOICES),
    Action("help", "show / hide help", NOW, "help", ("h", "?"), press=_call("on_help")),
    Action("quit", "quit (note-offs and panic first)", NOW, "quit", ("q",), press=_call("on_quit")),
    Action("fill", "a learned fill in bar 4 of this cycle (of the next when bar 4 has begun); then the groove returns",
           "bar 4", "fill", ("f",), 81, 29, press=_request("fill")),
    Action("style_prev", "previous style (a new groove in it)", NEXT_CYCLE, "style -", (",",), 82,
           press=_request("style", -1)),
    Action("style_next", "next style (a new groove in it)", NEXT_CYCLE, "style +", (".",), 83,
           press=_request("style", +1)),
    Action("follow_up", f"--follow: follow amount + {FOLLOW_STEP:.0%} (after 100%: 0, ignore the player)",
           NEXT_CYCLE, "follow amount", ("F",), 84, press=_request("follow_step", +1)),
    # continuous: a CC's value, no key, no note
    Action("temperature", "temperature from the value (0..127 over the model's range)", NEXT_CYCLE,
           cc=26, turn=_temperature_from_cc),
    Action("density", "density from the value (64 neutral)", NEXT_CYCLE, cc=27, turn=_density_from_cc),
    Action("morph_cycles", f"morph length N from the value ({MORPH_MIN}..{MORPH_MAX})", "next morph",
           cc=28, turn=_morph_cycles_from_cc),
    Action("style", "style from the value (0..127 over any + the model's styles)", NEXT_CYCLE, cc=30,
           turn=_style_from_cc),
    Action("follow", "--follow: follow amount from the value (0..127 over 0..100%)", NEXT_CYCLE, cc=31,
           turn=_follow_from_cc),
)}


def _defaults(attr: str) -> dict:
    """key / note / CC -> (action, number) for every action's default run."""
    out: dict = {}
    for a in ACTIONS.values():
        first = getattr(a, attr)
        if attr == "keys":
            for i, k in enumerate(first):
                out[k] = (a.name, a.default_arg(i))
        elif first is not None:
            for i in range(a.defaults):
                out[first + i] = (a.name, a.default_arg(i))
    return out


# a numbered action's keys are N = 1, 2, ... (mute: one per voice); others' extra keys repeat it (+ and =)
KEYS: dict[str, tuple[str, int | None]] = _defaults("keys")
DEFAULT_CC: dict[int, tuple[str, int | None]] = _defaults("cc")
DEFAULT_NOTES: dict[int, tuple[str, int | None]] = _defaults("note")


def parse_action(text: str, where: str = "") -> tuple[str, int | None]:
    name, _, num = str(text).strip().partition(":")
    a = ACTIONS.get(name)
    if a is None:
        raise MapError(f"{where}unknown action {text!r} (known: {', '.join(sorted(ACTIONS))})")
    if a.numbers:
        if not num:
            num = "1"
        try:
            n = int(num)
        except ValueError:
            raise MapError(f"{where}{text!r}: the number after ':' must be a whole number") from None
        if not 1 <= n <= a.numbers:
            raise MapError(f"{where}{text!r}: number must be 1..{a.numbers}")
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
        return cls(dict(DEFAULT_CC), dict(DEFAULT_NOTES))

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
                if section == "notes" and ACTIONS[act[0]].press is None:
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
        turn = ACTIONS[name].turn
        if turn is not None:
            shown = turn(self, arg, val)
            self.last_action = shown or name
            log.debug("control: %s", self.last_action)
        elif val >= PRESS_THRESHOLD > prev:  # rising edge: a button sends 127 then 0
            self.apply(name, arg)

    def apply(self, name: str, arg: int | None = None) -> None:
        """Press ``name`` (with its number ``arg`` for mute / save / recall)."""
        self.last_action = name if arg is None else f"{name} {arg}"
        press = ACTIONS[name].press
        if press is not None:
            press(self, arg)
        log.debug("control: %s", self.last_action)


# --- text derived from the registry -----------------------------------------------------------


def _key_label(a: Action) -> str:
    if len(a.keys) > 2 and a.numbers:
        return f"{a.keys[0]}-{a.keys[-1]}"
    return "/".join(a.keys)


def _runs(nums: list[int]) -> str:
    """[20, 21, 22, 102, 103] -> "20-22, 102-103"."""
    out, nums = [], sorted(nums)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(f"{nums[i]}-{nums[j]}" if j > i else f"{nums[i]}")
        i = j + 1
    return ", ".join(out)


def _listed() -> list[Action]:
    return [a for a in ACTIONS.values() if a.keys and a.short]


def help_lines(width: int = 96) -> list[str]:
    """The key help (the view shows it on h / ?): every keyed action, wrapped to ``width``."""
    words = [f"{_key_label(a)} {a.short}" for a in _listed()]
    return textwrap.wrap("   ".join(words), width, break_on_hyphens=False) + [
        f"voices: {' '.join(f'{i + 1}={lab}' for i, lab in enumerate(drums.VOICE_LABELS))}",
        "grooves and temperature land at the next cycle, mutes at the next bar",
        "grid: X loud hit, x soft hit, - a beat, . a 16th, | a bar line, ^ the playhead; "
        "M muted, L locked",
    ]


def epilog() -> str:
    """The key paragraph of ``drum-performer live --help``."""
    keys = ", ".join(f"{_key_label(a)} {a.short}" for a in _listed())
    return textwrap.fill(
        f"keys: {keys}. Grooves land at the next 4-bar cycle, mutes at the next bar. Every control "
        f"is also on MIDI CC {_runs(list(DEFAULT_CC))} / notes {_runs(list(DEFAULT_NOTES))} of the clock "
        "input (see docs/live.md; change with --map FILE).", 92, break_on_hyphens=False)


def _span(first: int | None, a: Action) -> str:
    if first is None:
        return ""
    return f"{first}..{first + a.defaults - 1}" if a.defaults > 1 else str(first)


def docs_table() -> str:
    """The controls table of docs/live.md (tests/test_controls.py checks the file holds it)."""
    rows = ["| key | --map action | what it does | MIDI note | MIDI CC | lands |", "|---|---|---|---|---|---|"]
    for a in ACTIONS.values():
        key = " ".join(f"`{k}`" for k in a.keys) if len(a.keys) <= 2 else f"`{a.keys[0]}`..`{a.keys[-1]}`"
        name = f"`{a.name}:N` (1..{a.numbers})" if a.numbers else f"`{a.name}`"
        rows.append(f"| {key} | {name} | {a.text} | {_span(a.note, a)} | {_span(a.cc, a)} | {a.lands} |")
    return "\n".join(rows) + "\n"
