"""The read side of summary.json: labels, point lookup, blocks and the one number tolerance."""

import pandas as pd

from audit.summary import AuditSummary, factor_effect_rows, point_label, same_number

SUMMARY = {
    "audit": {"seed": 9},
    "design": {"groups": ["a", "b"]},
    "fr_models": {
        "m1": {"licence": "L", "operating_points": [
            {"target_fmr": 0.001, "threshold": 0.5, "by_group": {"a": {"fnmr": 0.1}},
             "bootstrap": {"by_group": {"a": {"fnmr_lower": 0.05}}}},
            {"label": "threshold 0.4", "target_fmr": None, "threshold": 0.4, "by_group": {}},
        ]},
        "m2": {"operating_points": []},
    },
}


def test_labels_follow_the_pages_rule():
    assert point_label({"target_fmr": 0.001, "threshold": 0.5}) == "FMR 0.001"
    assert point_label({"target_fmr": None, "threshold": 0.25}) == "threshold 0.25"
    assert point_label({"label": "mine", "target_fmr": 0.1}) == "mine"
    summary = AuditSummary.from_dict(SUMMARY)
    assert summary.model("m1").labels == ["FMR 0.001", "threshold 0.4"]


def test_points_are_found_by_label_or_target_and_keep_their_position():
    summary = AuditSummary.from_dict(SUMMARY)
    model = summary.model("m1")
    assert model.point("FMR 0.001").threshold == 0.5
    assert model.point("0.001").index == 0
    assert model.point("1e-3").index == 0
    assert model.point("threshold 0.4").index == 1
    assert model.point("FMR 0.5") is None and model.point("nonsense") is None
    assert model.targets == [0.001]
    point = summary.point("m1", 0)
    assert point.fr_model == "m1" and point.by_group["a"]["fnmr"] == 0.1
    assert point.interval("a") == {"fnmr_lower": 0.05} and point.interval("b") == {}
    assert point.raw is SUMMARY["fr_models"]["m1"]["operating_points"][0]  # not a copy


def test_models_without_points_and_missing_blocks():
    summary = AuditSummary.from_dict(SUMMARY)
    assert list(summary.models) == ["m1", "m2"]
    assert summary.models_with_points == ["m1"]
    assert [p.label for p in summary.points()] == ["FMR 0.001", "threshold 0.4"]
    assert summary.seed == 9 and summary.design == {"groups": ["a", "b"]}
    assert summary.acquisition == {} and summary.quality == {}
    assert AuditSummary.of(summary) is summary
    assert AuditSummary.from_dict(None).models == {}


def test_one_tolerance_for_stored_numbers():
    assert same_number(0.001, 0.001 * (1 + 1e-12))  # a float read back from CSV
    assert not same_number(0.001, 0.0011)
    assert not same_number(None, 0.001) and not same_number("x", 1.0)
    assert not same_number(float("nan"), float("nan"))


def test_factor_effect_rows_by_model_and_target_or_threshold():
    table = pd.DataFrame({"fr_model": ["m1", "m1", "m2", "m1"],
                          "target_fmr": [0.001, 0.01, 0.001, 0.001 + 1e-15],
                          "threshold": [0.5, 0.4, 0.5, 0.5]})
    assert list(factor_effect_rows(table, "m1", 0.001).index) == [0, 3]
    assert list(factor_effect_rows(table, "m1", None, threshold=0.4).index) == [1]
    assert list(factor_effect_rows(table, "m2").index) == [2]
    assert factor_effect_rows(table.iloc[0:0], "m1", 0.001).empty
