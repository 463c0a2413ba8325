"""Group labels and the boundaries guided sampling aims at."""

from generator.design import Group
from worker.labels import SKIN_SPLIT_MARGIN, _coarse_skin, group_bands


def test_faces_near_the_skin_tone_split_join_no_coarse_group():
    split = 73.5  # audit.sensors.SKIN_TONE_INDEX_LIGHTER_ABOVE
    assert _coarse_skin(split + SKIN_SPLIT_MARGIN + 0.01) == "lighter"
    assert _coarse_skin(split - SKIN_SPLIT_MARGIN - 0.01) == "darker"
    assert _coarse_skin(split + 1.0) == _coarse_skin(split - 1.0) == "ambiguous"


def test_each_group_is_aimed_beyond_its_own_boundaries():
    bands = {b.sensor: b for b in group_bands(Group((("perceived_gender", "female"),
                                                     ("skin_tone", "darker"),
                                                     ("age_band", "50_plus"))))}
    assert bands["male_probability"].high < 0 and bands["male_probability"].low is None
    assert bands["skin_tone_index"].high < 73.5 - SKIN_SPLIT_MARGIN
    assert bands["age"].low > 50
    assert group_bands(Group((("perceived_gender", "male"),)))[0].low > 0
