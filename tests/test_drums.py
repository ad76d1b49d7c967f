import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from model import drums


def test_sizes_follow_the_vocabulary():
    assert drums.NUM_VOICES == 9 and drums.NUM_CLASSES == 512
    assert drums.STEPS == 64 and drums.STEPS_PER_BAR == 16
    assert len(drums.OUTPUT_PITCHES) == len(drums.VOICES) == len(drums.VOICE_LABELS)


def test_every_class_round_trips():
    idx = np.arange(drums.NUM_CLASSES)
    hits = drums.index_to_hits(idx)
    assert hits.shape == (512, 9)
    assert np.array_equal(drums.hits_to_index(hits), idx)
    assert not hits[0].any() and hits[511].all()
    assert hits[1, 0] and hits[1].sum() == 1  # bit 0 is the kick


def test_index_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        drums.index_to_hits(np.array([512]))


@pytest.mark.parametrize(
    "pitch,voice",
    [(36, "kick"), (35, "kick"), (38, "snare"), (40, "snare"), (37, "snare"), (42, "closed_hihat"),
     (22, "closed_hihat"), (44, "closed_hihat"), (46, "open_hihat"), (26, "open_hihat"), (43, "low_tom"),
     (58, "low_tom"), (45, "mid_tom"), (47, "mid_tom"), (48, "high_tom"), (50, "high_tom"), (49, "crash"),
     (55, "crash"), (57, "crash"), (52, "crash"), (51, "ride"), (59, "ride"), (53, "ride"),
     (39, "snare"), (41, "low_tom")],
)
def test_design_table_and_gm_families(pitch, voice):
    assert drums.VOICES[drums.pitch_to_voice(pitch)] == voice


def test_unknown_pitch_is_none():
    assert drums.pitch_to_voice(100) is None


def test_output_pitches_map_back_to_their_voice():
    for v, p in enumerate(drums.OUTPUT_PITCHES):
        assert drums.pitch_to_voice(p) == v


patterns = st.builds(
    lambda h, v, o: drums.Pattern(h, v, o),
    arrays(bool, (drums.STEPS, 9)),
    arrays(np.float32, (drums.STEPS, 9), elements=st.floats(0, 1, width=32, allow_subnormal=False)),
    arrays(np.float32, (drums.STEPS, 9), elements=st.floats(-0.5, 0.4375, width=32, allow_subnormal=False)),
)


@settings(max_examples=50, deadline=None)
@given(patterns)
def test_pattern_array_and_class_round_trip(p):
    assert drums.Pattern.from_array(p.to_array()).equals(p)
    q = drums.Pattern.from_classes(p.classes(), p.velocity, p.offset)
    assert q.equals(p)


@settings(max_examples=50, deadline=None)
@given(patterns)
def test_onsets_round_trip(p):
    on = drums.pattern_to_onsets(p)
    pos = np.array([o[0] for o in on])
    voice = np.array([o[1] for o in on], dtype=int)
    vel = np.array([o[2] for o in on])
    q = drums.onsets_to_pattern(pos, voice, vel, drums.STEPS)
    assert np.array_equal(q.hits, p.hits)
    assert np.allclose(q.velocity, p.velocity, atol=1e-6)
    assert np.allclose(q.offset, p.offset, atol=1e-5)


def test_quantisation_nearest_step_and_loudest_wins():
    # two kicks near step 4: the louder one (early) decides velocity and offset
    p = drums.onsets_to_pattern(np.array([3.8, 4.2, 9.5]), np.array([0, 0, 1]), np.array([0.9, 0.5, 0.7]), 16)
    assert p.hits[4, 0] and p.hits.sum() == 2
    assert p.velocity[4, 0] == pytest.approx(0.9)
    assert p.offset[4, 0] == pytest.approx(-0.2, abs=1e-6)
    assert p.hits[10, 1] and p.offset[10, 1] == pytest.approx(-0.5)  # 9.5 -> step 10, offset -0.5


def test_cells_without_hits_carry_nothing():
    h = np.zeros((64, 9), bool)
    p = drums.Pattern(h, np.ones((64, 9)), np.full((64, 9), 0.3))
    assert not p.velocity.any() and not p.offset.any()


def test_lock_mask_allows_only_agreeing_classes():
    rng = np.random.default_rng(0)
    hits = rng.random((64, 9)) < 0.3
    keep = np.zeros(9, bool)
    keep[[0, 1]] = True
    mask = drums.class_mask_for_lock(hits, keep)
    all_hits = drums.index_to_hits(np.arange(512))
    for t in (0, 17, 63):
        allowed = np.flatnonzero(mask[t])
        assert len(allowed) == 2**7
        assert (all_hits[allowed][:, :2] == hits[t, :2]).all()


def test_muted_and_with_voices():
    p = drums.Pattern.from_classes(np.full(64, 511))
    m = p.muted(np.eye(9, dtype=bool)[2])
    assert not m.hits[:, 2].any() and m.hits[:, [0, 1, 3]].all()
    e = drums.Pattern.empty()
    mixed = e.with_voices(p, np.eye(9, dtype=bool)[0])
    assert mixed.hits[:, 0].all() and not mixed.hits[:, 1:].any()


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        drums.Pattern(np.zeros((64, 8), bool), np.zeros((64, 8)), np.zeros((64, 8)))
