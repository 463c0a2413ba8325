"""Counts in the exported summary.json and tables/*.json are whole numbers ("10", not "10.0"),
also where a count column has empty cells or the stored summary holds a count as a float."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from audit.counts import as_count, count_columns, count_text, integral_counts
from exports.tables import summary_json, table_json_chunks
from tests.webapp.factories import make_done_audit


@pytest.mark.django_db
def test_table_json_keeps_count_columns_whole_when_cells_are_empty(media_root):
    csv = ("group,factor,level,n_pairs,mean_change,mcnemar_lost,n_obs_cell\n"
           "female,blur,2.0,10,-0.25,3,\n"
           "male,blur,2.0,,,,40\n")
    stored = default_storage.save("tables/factor_effects.csv", ContentFile(csv.encode()))
    text = b"".join(table_json_chunks(stored)).decode()
    assert "10.0" not in text and "40.0" not in text and "3.0" not in text
    records = json.loads(text)
    assert records[0]["n_pairs"] == 10 and records[1]["n_pairs"] is None
    assert records[0]["mcnemar_lost"] == 3 and records[1]["n_obs_cell"] == 40
    assert records[0]["level"] == 2.0 and records[0]["mean_change"] == -0.25


@pytest.mark.django_db
def test_summary_json_writes_counts_as_integers(alice, media_root):
    audit = make_done_audit(alice)
    result = audit.result
    result.summary = {**result.summary,
                      "quality": {"by_group": {"female": {"n": 12.0, "n_missing": 4.0,
                                                          "below": 7.0, "mean": 0.5,
                                                          "share_below": 1.0}}},
                      "comparisons": {"mated": 4.0, "nonmated": 20}}
    result.save()
    text = summary_json(audit).decode()
    for count in ('"n": 12,', '"n_missing": 4,', '"below": 7,', '"mated": 4,'):
        assert count in text, count
    assert '"share_below": 1.0' in text  # a rate stays a float
    assert json.loads(text)["fr_models"] == result.summary["fr_models"]


def test_count_helpers():
    assert [as_count(v) for v in (10, 10.0, "10", "10.0", 10.5, float("nan"), None, True)] == [
        10, 10, 10, 10, None, None, None, None]
    assert count_text(10.0) == "10" and count_text(None) == "n/a"
    assert count_text(12345.0, thousands=True) == "12,345"
    nested = integral_counts({"cross_group": {"n_nonmated": [[100.0, 2.0]], "fmr": [[0.0]]}})
    assert nested == {"cross_group": {"n_nonmated": [[100, 2]], "fmr": [[0.0]]}}
    assert isinstance(nested["cross_group"]["n_nonmated"][0][0], int)
    df = count_columns(pd.DataFrame({"n_pairs": [1.0, None], "count": [1.5, 2.0],
                                     "group": ["a", "b"]}))
    assert str(df["n_pairs"].dtype) == "Int64" and df["count"].dtype == float


def test_the_quality_summary_stores_its_counts_as_integers():
    """quality.by_group's n, n_missing and below reach summary.json and the JSON API as whole
    numbers ("12", never "12.0")."""
    import json as _json

    import numpy as np
    import pandas as pd

    from worker.results import quality_summary

    table = pd.DataFrame({"image_id": range(1, 13), "group": ["a"] * 6 + ["b"] * 6,
                          "factor": ["baseline", "blur"] * 6,
                          "quality": [0.1, 0.2, 0.3, np.nan, 0.5, 0.6] * 2})
    summary, _ = quality_summary(table, pd.DataFrame(columns=["fr_model", "mated"]), {})
    row = summary["by_group"]["a"]
    assert row["n"] == 5 and isinstance(row["n"], int)  # 6 images of group a, one unscored
    assert row["n_missing"] == 1 and isinstance(row["n_missing"], int)
    assert isinstance(row["below"], int)
    text = _json.dumps(summary["by_group"])
    assert '"n": 5,' in text and '"n_missing": 1,' in text
