"""Keys and MIDI controls -> actions; the mapping file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import drums
from performer import controls, director
from performer.clock import CC, NOTE_ON
from performer.controls import (
    ACTIONS,
    KEYS,
    Action,
    Controller,
    MapError,
    MidiMap,
    help_lines,
    parse_action,
)

ROOT = Path(__file__).resolve().parent.parent


class Recording:
    """A Director stand-in that records what it was asked."""

    temperature_range = (0.0, 2.0)

    def __init__(self):
        self.log = []
        self.mutes = np.zeros(9, bool)
        self.morph = 4

    def request(self, action, arg=None):
        self.log.append(("request", action, arg))

    def save(self, slot=1):
        self.log.append(("save", slot))

    def toggle_mute(self, v):
        self.mutes[v] ^= True
        self.log.append(("toggle_mute", v))

    def set_mute(self, v, on):
        self.mutes[v] = on
        self.log.append(("set_mute", v, on))

    def change_morph_cycles(self, d):
        self.morph += d
        self.log.append(("morph_cycles", self.morph))
        return self.morph

    def set_morph_cycles(self, n):
        self.morph = n
        self.log.append(("morph_cycles", n))
        return n


@pytest.fixture
def ctl():
    quits, helps = [], []
    c = Controller(Recording(), on_quit=lambda: quits.append(1), on_help=lambda: helps.append(1))
    c.quits, c.helps = quits, helps
    return c


def test_every_documented_key_asks_the_director_what_its_action_says(ctl):
    for k in "nvm[]+-dDlsr?hq123456789":
        assert ctl.key(k), k
    log = ctl.director.log
    assert ("request", "new", None) in log and ("request", "variation", None) in log
    assert ("request", "morph", None) in log
    assert ("request", "temperature", 1) in log and ("request", "temperature", -1) in log
    assert ("request", "density", -1) in log and ("request", "density", 1) in log
    assert ("request", "lock", None) in log and ("save", 1) in log and ("request", "recall", 1) in log
    assert [e for e in log if e[0] == "toggle_mute"] == [("toggle_mute", v) for v in range(9)]
    assert ctl.quits == [1] and ctl.helps == [1, 1]
    assert not ctl.key("x")


def test_keys_table_holds_every_documented_key():
    assert set("nvm[]+-dDlsr?hq123456789") <= set(KEYS)


def test_docs_live_md_holds_the_table_derived_from_the_registry():
    text = (ROOT / "docs" / "live.md").read_text()
    assert controls.docs_table() in text, (
        "docs/live.md is out of step with performer/controls.py ACTIONS: replace its controls table with "
        "the output of: python -c 'from performer.controls import docs_table; print(docs_table())'")


def test_every_action_is_reachable_and_every_request_has_a_planner():
    """Each action has a press or a turn; each director request a press can make is a planned kind."""
    asked = []

    class Asks:
        temperature_range = (0.0, 2.0)
        styles = ("any", "rock", "funk")

        def __getattr__(self, name):
            return lambda *a: asked.append((name, *a))

    c = Controller(Asks(), on_quit=lambda: None, on_help=lambda: None)
    for a in ACTIONS.values():
        assert a.press is not None or a.turn is not None, a.name
        if a.press is not None:
            c.apply(a.name, a.default_arg(0))
        if a.turn is not None:
            a.turn(c, a.default_arg(0), 100)
    kinds = {e[1] for e in asked if e[0] == "request"}
    assert kinds and kinds <= set(director.PLANNERS) | set(director.BAR_PLANNERS)


def test_a_new_action_is_one_registry_entry(monkeypatch):
    """Keys, default notes, --map names, help and the docs table all follow one new Action."""
    extra = Action("accent", "an accent", "bar 4", "accent", ("a",), 90, 31,
                   press=lambda c, n: c.director.request("new"))
    monkeypatch.setitem(ACTIONS, "accent", extra)
    monkeypatch.setattr(controls, "KEYS", controls._defaults("keys"))
    monkeypatch.setattr(controls, "DEFAULT_NOTES", controls._defaults("note"))
    monkeypatch.setattr(controls, "DEFAULT_CC", controls._defaults("cc"))
    c = Controller(Recording())
    assert c.key("a") and c.director.log == [("request", "new", None)]
    c.midi((CC, 0, 31, 127))
    c.midi((NOTE_ON, 0, 90, 100))
    assert len(c.director.log) == 3
    assert parse_action("accent") == ("accent", None)
    assert "a accent" in "\n".join(help_lines()) and "a accent" in controls.epilog()
    assert "| `a` | `accent` | an accent | 90 | 31 | bar 4 |" in controls.docs_table()


def test_the_fill_and_style_keys_ask_the_director():
    c = Controller(Recording())
    assert c.key("f") and c.key(".") and c.key(",")
    assert c.director.log == [("request", "fill", None), ("request", "style", 1), ("request", "style", -1)]
    c.midi((NOTE_ON, 0, 81, 100))  # the fill's default note
    assert c.director.log[-1] == ("request", "fill", None)


def test_cc_trigger_fires_on_the_rising_edge_only(ctl):
    for val in (127, 127, 0, 100, 0):
        ctl.midi((CC, 0, 20, val))
    assert [e for e in ctl.director.log if e[1:2] == ("new",)] == [("request", "new", None)] * 2


def test_cc_continuous_controls_map_the_value_onto_their_range(ctl):
    ctl.midi((CC, 3, 26, 127))
    ctl.midi((CC, 3, 27, 64))
    ctl.midi((CC, 3, 28, 0))
    log = ctl.director.log
    assert ("request", "set_temperature", 2.0) in log
    assert ("request", "set_density", 0.0) in log
    assert ("morph_cycles", 1) in log


def test_cc_mute_follows_the_switch(ctl):
    ctl.midi((CC, 0, 102, 127))
    assert ctl.director.mutes[0]
    ctl.midi((CC, 0, 102, 0))
    assert not ctl.director.mutes[0]


def test_notes_trigger_their_actions_and_unmapped_notes_do_nothing(ctl):
    ctl.midi((NOTE_ON, 9, 60, 100))
    ctl.midi((NOTE_ON, 9, 74, 100))  # mute voice 3
    ctl.midi((NOTE_ON, 9, 59, 100))  # unmapped
    assert ctl.director.log == [("request", "new", None), ("toggle_mute", 2)]


def test_map_file_overrides_defaults_and_filters_by_channel(tmp_path, ctl):
    f = tmp_path / "map.json"
    f.write_text(json.dumps({"channel": 2, "cc": {"20": None, "1": "morph"}, "notes": {"36": "recall:3"}}))
    m = MidiMap.load(f)
    assert 20 not in m.cc and m.cc[1] == ("morph", None) and m.notes[36] == ("recall", 3)
    assert m.cc[21] == ("variation", None)  # defaults kept
    c = Controller(Recording(), m)
    c.midi((CC, 0, 1, 127))  # wrong channel
    c.midi((CC, 1, 1, 127))
    c.midi((NOTE_ON, 1, 36, 1))
    assert c.director.log == [("request", "morph", None), ("request", "recall", 3)]


def test_map_file_without_defaults_holds_only_its_entries(tmp_path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"defaults": False, "notes": {"40": "new"}}))
    m = MidiMap.load(f)
    assert m.cc == {} and m.notes == {40: ("new", None)}


@pytest.mark.parametrize(
    "doc,needle",
    [
        ("not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"cc": {"20": "explode"}}', "unknown action"),
        ('{"cc": {"200": "new"}}', "0..127"),
        ('{"cc": {"x": "new"}}', "number"),
        ('{"notes": {"60": "temperature"}}', "needs a CC value"),
        ('{"cc": {"30": "mute:12"}}', "1..9"),
        ('{"channel": 0}', "channel"),
        ('{"colour": 1}', "unknown keys"),
    ],
)
def test_bad_map_files_are_one_clear_error(tmp_path, doc, needle):
    f = tmp_path / "bad.json"
    f.write_text(doc)
    with pytest.raises(MapError) as e:
        MidiMap.load(f)
    assert needle in str(e.value) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_map_file_is_a_map_error(tmp_path):
    with pytest.raises(MapError, match="does not exist"):
        MidiMap.load(tmp_path / "nope.json")


def test_parse_action_numbers_default_to_1_and_reject_a_number_where_none_is_taken():
    assert parse_action("mute:3") == ("mute", 3)
    assert parse_action("save") == ("save", 1)
    with pytest.raises(MapError):
        parse_action("new:2")


def test_help_lines_mention_every_key_group():
    text = "\n".join(help_lines())
    for word in ("new groove", "variation", "morph", "temperature", "density", "mute", "lock", "save", "recall", "quit"):
        assert word in text


def _fill_bar(p) -> bool:
    from tests.live_fakes import FakeEngine

    bar4 = p.hits[3 * drums.STEPS_PER_BAR :]
    return bool(bar4[:, FakeEngine.FILL_VOICE].all() and bar4.sum() == drums.STEPS_PER_BAR)


def test_a_fill_asked_before_bar_4_plays_in_bar_4_of_this_cycle_then_the_groove_returns():
    from tests.live_fakes import FakeEngine

    d = director.Director(FakeEngine(), seed=7, temperature=0.5)
    d.start()
    try:
        groove = d.pattern_for(0)
        assert d.pattern_at_bar(0, 1) is None  # bar 2 starts: nothing asked yet
        assert Controller(d).key("f")
        assert d.status()["fill"]  # the view says a fill is coming
        assert d.wait_decoded(5)
        assert d.pattern_at_bar(0, 2) is None  # not at bar 3
        fill = d.pattern_at_bar(0, 3)
        assert fill is not None and _fill_bar(fill) and not _fill_bar(groove)
        # bars 1-3 of the fill decode are the playing groove's: only bar 4 changes
        S = 3 * drums.STEPS_PER_BAR
        assert np.array_equal(fill.hits[:S], groove.hits[:S]) and np.allclose(fill.velocity[:S], groove.velocity[:S])
        again = d.pattern_for(1)
        assert again.equals(groove) and d.pattern_at_bar(1, 3) is None  # the groove returns, no second fill
    finally:
        d.close()


def test_a_fill_asked_in_bar_4_plays_in_bar_4_of_the_next_cycle():
    from tests.live_fakes import FakeEngine

    d = director.Director(FakeEngine(), seed=7, temperature=0.5)
    d.start()
    try:
        d.pattern_for(0)
        assert d.pattern_at_bar(0, 3) is None  # bar 4 has begun
        d.request("fill")
        assert d.wait_decoded(5)
        assert d.pattern_for(1) is not None and d.pattern_at_bar(1, 3) is not None
    finally:
        d.close()


def test_automatic_fills_every_two_cycles_and_none_from_a_model_without_fills():
    from tests.live_fakes import FakeEngine

    d = director.Director(FakeEngine(), seed=7, temperature=0.5, fills_every=2)
    d.start()
    try:
        got = []
        for cycle in range(4):
            d.pattern_for(cycle)
            assert d.wait_decoded(5)
            p = d.pattern_at_bar(cycle, 3)
            got.append(p is not None and _fill_bar(p))
        assert got == [False, True, False, True]  # cycles 2 and 4 (counted from 1) end with a fill
    finally:
        d.close()
    eng = FakeEngine()
    eng.has_fills = False
    d = director.Director(eng, seed=7, temperature=0.5, fills_every=2)
    d.start()
    try:
        d.pattern_for(0)
        d.request("fill")
        assert "no fills" in d.last_error and d.pattern_at_bar(0, 3) is None and d.fills_every == 0
    finally:
        d.close()


def test_style_keys_step_through_any_and_the_models_styles_with_a_new_groove_in_each():
    from tests.live_fakes import FakeEngine

    eng = FakeEngine()
    d = director.Director(eng, seed=7, temperature=0.5, style="rock")
    d.start()
    try:
        assert d.pattern_for(0) is not None and d.status()["style"] == "rock"
        ctl = Controller(d)
        ctl.key(".")  # rock -> any (wraps around: any, funk, rock)
        assert d.wait_decoded(5)
        d.pattern_for(1)
        assert d.status()["style"] == "any" and eng.calls[-1]["style"] is None
        ctl.key(".")
        assert d.wait_decoded(5)
        d.pattern_for(2)
        assert d.status()["style"] == "funk" and eng.calls[-1]["style"] == "funk"
        assert eng.calls[-1]["seed"] != eng.calls[-2]["seed"]  # a new groove, not the old one restyled
    finally:
        d.close()
