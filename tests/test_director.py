"""The groove state machine: seeds, variations, morphs, locks, slots, late decodes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from model import drums
from performer.director import Director
from tests.live_fakes import FakeEngine


def settle(d: Director, timeout: float = 2.0) -> None:
    """Wait until the worker has prepared what is pending."""
    assert d.wait_decoded(timeout), "decode did not finish"


@pytest.fixture
def director():
    e = FakeEngine()
    d = Director(e, seed=100, temperature=0.8, morph_cycles=3)
    d.start()
    yield d
    d.close()


def test_first_groove_is_the_reference_sample_and_is_held_while_nothing_is_asked(director):
    ref = FakeEngine().sample(seed=100, temperature=0.8)
    assert director.pattern_for(0).equals(ref)
    assert director.pattern_for(1).equals(ref)  # held while nothing is asked


def test_new_grooves_take_the_next_seeds(director):
    director.pattern_for(0)
    for k in (1, 2):
        director.request("new")
        settle(director)
        p = director.pattern_for(k)
        assert p.equals(FakeEngine().sample(seed=100 + k, temperature=0.8))
        assert director.current.seed == 100 + k


def test_variation_keeps_the_latent_and_takes_the_next_seed(director):
    director.request("variation")
    settle(director)
    director.pattern_for(1)
    g = director.current
    assert g.seed == 101
    e = FakeEngine()
    assert np.allclose(g.z, e.prior(100))
    assert g.pattern.equals(e.sample(z=e.prior(100), temperature=0.8, seed=101))


def test_morph_walks_the_path_and_ends_on_the_target_exactly(director):
    director.request("morph")
    labels = []
    pats = []
    for c in range(1, 6):
        settle(director)
        pats.append(director.pattern_for(c))
        labels.append(director.current.label)
    assert labels[:3] == ["morph 1/3 to seed 101", "morph 2/3 to seed 101", "groove seed 101"]
    target = FakeEngine().sample(seed=101, temperature=0.8)
    assert pats[2].equals(target) and pats[3].equals(target) and pats[4].equals(target)
    assert director.status()["morph"] is None


def test_temperature_redecodes_the_same_groove_with_its_own_seed(director):
    director.request("temperature", +1)
    director.request("temperature", +1)
    settle(director)
    director.pattern_for(1)
    assert director.current.temperature == pytest.approx(1.0)
    assert director.current.seed == 100
    assert director.current.pattern.equals(FakeEngine().sample(seed=100, temperature=1.0))


def test_temperature_clamped_to_the_model_range(director):
    director.request("set_temperature", 9.0)
    settle(director)
    director.pattern_for(1)
    assert director.current.temperature == 2.0


def test_density_moves_along_the_attribute(director):
    director.request("density", +1)
    settle(director)
    director.pattern_for(1)
    g = director.current
    assert g.density == pytest.approx(0.25)
    e = FakeEngine()
    z = e.prior(100) + 0.25 * e.attribute("density")
    assert g.pattern.equals(e.sample(z=z, temperature=0.8, seed=100))


def test_lock_keeps_unmuted_voices_and_unmutes_the_regenerated(director):
    before = director.pattern_for(0)
    director.toggle_mute(2)
    director.toggle_mute(8)
    director.request("lock")
    settle(director)
    after = director.pattern_for(1)
    keep = np.ones(drums.NUM_VOICES, bool)
    keep[[2, 8]] = False
    assert np.array_equal(after.hits[:, keep], before.hits[:, keep])
    assert not any(director.mutes())
    st = director.status()
    assert st["locks"] is not None and not st["locks"][2] and st["locks"][0]
    # a variation keeps the locks
    director.request("variation")
    settle(director)
    again = director.pattern_for(2)
    assert np.array_equal(again.hits[:, keep], before.hits[:, keep])
    # l with nothing muted unlocks
    director.request("lock")
    settle(director)
    director.pattern_for(3)
    assert director.status()["locks"] is None


def test_recall_plays_the_saved_groove_bit_for_bit(director):
    first = director.pattern_for(0)
    director.save(1)
    director.request("new")
    settle(director)
    assert not director.pattern_for(1).equals(first)
    director.request("recall", 1)
    settle(director)
    assert director.pattern_for(2).equals(first)
    assert director.current.seed == 100


def test_recall_of_an_empty_slot_is_ignored(director):
    director.request("recall", 5)
    assert not director.status()["pending"]


def test_a_late_decode_lands_a_cycle_later():
    hold = threading.Event()
    hold.set()  # the first groove decodes at once
    e = FakeEngine(hold=hold)
    d = Director(e, seed=1)
    d.start()
    try:
        hold.clear()
        d.request("new")
        p1 = d.pattern_for(1)  # the boundary comes before the decode is done
        assert p1.equals(FakeEngine().sample(seed=1))
        assert d.late == 1
        hold.set()
        settle(d)
        assert d.pattern_for(2).equals(FakeEngine().sample(seed=2))
    finally:
        d.close()


def test_a_failed_decode_keeps_the_groove_and_uses_no_seed():
    e = FakeEngine()
    d = Director(e, seed=1)
    d.start()
    try:
        e.fail = True
        d.request("new")
        settle(d)  # given up
        assert d.pattern_for(1).equals(FakeEngine().sample(seed=1))
        assert "fake decode failure" in (d.last_error or "")
        e.fail = False
        d.request("new")
        settle(d)
        assert d.pattern_for(2).equals(FakeEngine().sample(seed=2))  # the failed one used no seed
    finally:
        d.close()


def test_morph_length_is_clamped_to_1_to_16(director):
    assert director.change_morph_cycles(+100) == 16
    assert director.change_morph_cycles(-100) == 1
    assert director.set_morph_cycles(4) == 4


def test_the_decoder_is_never_called_on_the_boundary():
    """pattern_for only swaps references: the engine is never called from it."""
    e = FakeEngine()
    d = Director(e, seed=1)
    d.start()
    try:
        d.request("new")
        settle(d)
        n = len(e.calls)
        d.pattern_for(1)
        assert len(e.calls) == n
    finally:
        d.close()


def test_a_request_of_an_unknown_kind_is_refused(director):
    with pytest.raises(ValueError, match="unknown request 'explode'"):
        director.request("explode")
    assert not director.status()["pending"]


# --- a change from a bar line on, once (how a fill in bar 4 plugs in) ---------------------------


@pytest.fixture
def accent(monkeypatch):
    """A bar request kind for the tests: bar 4 of the playing groove decoded hotter."""
    from dataclasses import replace

    from performer import director as director_mod

    def plan(d, playing, arg):
        return 3, replace(playing, temperature=playing.temperature + 0.5, pattern=None)

    monkeypatch.setitem(director_mod.BAR_PLANNERS, "accent", plan)
    return lambda g: FakeEngine().sample(seed=g.seed, temperature=g.temperature + 0.5)


def test_a_bar_request_lands_at_its_bar_line_of_the_current_cycle_once(director, accent):
    groove = director.pattern_for(0)
    director.request("accent")
    settle(director)
    assert director.pattern_at_bar(0, 1) is None and director.pattern_at_bar(0, 2) is None
    assert director.pattern_at_bar(0, 3).equals(accent(director.current))
    assert director.pattern_for(1).equals(groove)  # the next cycle plays the groove again
    assert director.pattern_at_bar(1, 3) is None


def test_a_bar_request_after_its_bar_line_lands_in_the_next_cycle(director, accent):
    director.pattern_for(0)
    assert director.pattern_at_bar(0, 3) is None  # bar 4 has begun
    director.request("accent")
    settle(director)
    assert director.pattern_for(1).equals(FakeEngine().sample(seed=100, temperature=0.8))
    assert director.pattern_at_bar(1, 3).equals(accent(director.current))


def test_a_bar_request_is_decoded_again_on_a_groove_that_lands_before_its_bar(director, accent):
    director.pattern_for(0)
    director.request("new")
    director.request("accent")
    settle(director)
    director.pattern_for(1)  # the new groove lands; the waiting accent was decoded on the old one
    assert director.current.seed == 101
    settle(director)
    assert director.pattern_at_bar(1, 3).equals(accent(director.current))


def test_the_unknown_request_error_names_the_bar_kinds_too(director, accent):
    with pytest.raises(ValueError, match="accent"):
        director.request("explode")  # the error lists the bar kinds too


def test_peek_gives_what_pattern_for_will_give_and_lands_nothing(director):
    """The scheduler peeks while stopped to compile the cued cycle ahead; the groove must
    still land once, when pattern_for is called, even along a morph (whose next point the
    worker decodes after each landing)."""
    first = director.peek(0)
    assert director.peek(5) is first and director.pattern_for(0) is first
    director.request("morph")  # 3 cycles: two slerp points, then the target
    for c in range(1, 5):
        settle(director)
        before = (director.changes, director.status()["label"], director.status()["morph"])
        peeked = director.peek(c)
        assert director.peek(c) is peeked and director.peek(c + 7) is peeked  # again: still nothing lands
        assert (director.changes, director.status()["label"], director.status()["morph"]) == before
        assert director.pattern_for(c) is peeked
    assert director.changes == 3
    assert director.current.pattern.equals(FakeEngine().sample(seed=101, temperature=0.8))


def test_peek_does_not_take_a_bar_change_meant_for_a_later_bar(director):
    groove = director.pattern_for(0)
    director.request("fill")  # lands at bar 4, never at a cycle's start
    settle(director)
    assert director.peek(1) is groove and director.pattern_for(1) is groove
    assert director.pattern_at_bar(1, 3) is not None  # still waiting for its bar: nothing took it
