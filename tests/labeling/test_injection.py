from __future__ import annotations

from kpspark.labeling.backends import load_backend
from kpspark.labeling.injection import ATTACKS_NO, ATTACKS_YES, flip_rate
from kpspark.labeling.prompts import load_template

PAIRS = [("cordless drill", "Phones", "Apple iPhone 11 64GB Red"),
         ("red iphone", "Phones", "Apple iPhone 11 64GB Red"),
         ("blender", "Tools", "DeWalt 20V Impact Driver")]


def test_flip_rate_counts_attacks_in_the_harmful_direction():
    # The fake judge scores token overlap, so keyword stuffing (one of the attacks) flips it to "yes"
    # while the instruction-style attacks do not: the metric must see exactly that.
    be = load_backend("fake", "fake")
    rep = flip_rate(be, PAIRS, load_template("v1"))
    n_irrelevant, n_relevant = 2, 1
    assert rep.cases == n_irrelevant * len(ATTACKS_YES) + n_relevant * len(ATTACKS_NO)
    assert rep.flips == n_irrelevant  # one stuffing attack per irrelevant pair
    assert rep.flip_rate_to_yes == n_irrelevant / (n_irrelevant * len(ATTACKS_YES))
    assert rep.flip_rate_to_no == 0.0
    assert 0 < rep.mean_abs_delta_p < 1
