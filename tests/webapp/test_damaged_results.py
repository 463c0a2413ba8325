"""Pages of a finished audit whose stored tables were damaged (a column missing, a file that is
not CSV, a value of the wrong type): no 500. The dashboard and the report leave out the charts
that need the damaged table and say which table and column, and what to do."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.webapp.factories import make_done_audit
from tests.webapp.test_dashboard import all_tables, chart_data, store_dashboard_results
from webapp.audits import result_tables
from webapp.audits.models import AuditResult

# Every column of every dashboard table, as the tests' hand-made tables have them.
DAMAGES = [(name, column) for name, df in all_tables().items() for column in df.columns]


@pytest.fixture
def damaged_audit(alice, media_root):
    audit = make_done_audit(alice)
    store_dashboard_results(audit)
    return audit


def overwrite(result: AuditResult, name: str, data: bytes) -> None:
    stored = result.tables[name]
    default_storage.delete(stored)
    default_storage.save(stored, ContentFile(data))
    result.save()  # a new created_at: caches read the file afresh
    result_tables._read_table.cache_clear()


def get_pages(client, audit) -> dict[str, object]:
    pk = audit.pk
    return {
        "detail": client.get(reverse("audits:detail", args=[pk])),
        "other point": client.get(reverse("audits:detail", args=[pk]), {"fmr": "FMR 0.001"}),
        "pairs": client.get(reverse("audits:pairs", args=[pk]),
                            {"group": "female", "variant": "blur_2"}),
        "report": client.get(reverse("audits:report", args=[pk])),
        "tables": client.get(reverse("audits:tables_zip", args=[pk])),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("name, column", DAMAGES, ids=[f"{n}-{c}" for n, c in DAMAGES])
def test_a_missing_column_never_gives_a_500(client, alice, damaged_audit, name, column):
    client.force_login(alice)
    result = AuditResult.objects.get(audit=damaged_audit)
    df = all_tables()[name]
    if "fr_model" in df.columns:
        df = df[df["fr_model"] == "facenet-a"].assign(fr_model="mobilefacenet")
    overwrite(result, name, df.drop(columns=[column]).to_csv(index=False).encode())
    pages = get_pages(client, damaged_audit)
    for page, response in pages.items():
        assert response.status_code in (200, 404), (page, response.status_code)
    assert pages["detail"].status_code == 200 and pages["report"].status_code == 200
    detail = pages["detail"].content.decode()
    chart_data(detail)  # the remaining charts still load
    if name in result_tables.REQUIRED_COLUMNS and column in result_tables.REQUIRED_COLUMNS[name]:
        for page in ("detail", "report"):
            text = pages[page].content.decode()
            assert f"The stored table {name} lacks the column &#x27;{column}&#x27;" in text, page


@pytest.mark.django_db
@pytest.mark.parametrize("data", [b"\x00\x01\x02 not csv \xff\xfe", b"", b"group\n\"unterminated",
                                  b"fr_model,group,threshold,fmr,fnmr\nmobilefacenet,female,x,y,z\n"])
def test_unreadable_or_mistyped_tables_never_give_a_500(client, alice, damaged_audit, data):
    client.force_login(alice)
    result = AuditResult.objects.get(audit=damaged_audit)
    for name in result.tables:
        overwrite(result, name, data)
    for page, response in get_pages(client, damaged_audit).items():
        assert response.status_code in (200, 404), (page, response.status_code)


@pytest.mark.django_db
def test_a_table_file_gone_from_storage_is_named(client, alice, damaged_audit):
    client.force_login(alice)
    result = AuditResult.objects.get(audit=damaged_audit)
    default_storage.delete(result.tables["det_curves.csv"])
    result.save()
    result_tables._read_table.cache_clear()
    pages = get_pages(client, damaged_audit)
    assert all(r.status_code in (200, 404) for r in pages.values())
    detail = pages["detail"].content.decode()
    assert "det_curves.csv" in detail and "det" not in chart_data(detail)
    assert "histograms" in chart_data(detail)


@pytest.mark.django_db
def test_a_damaged_comparisons_file_is_named_on_compare_and_empties_the_pairs(
        client, alice, damaged_audit):
    other = make_done_audit(alice)
    store_dashboard_results(other)
    client.force_login(alice)
    result = AuditResult.objects.get(audit=damaged_audit)
    default_storage.delete(result.comparisons_file)
    default_storage.save(result.comparisons_file, ContentFile(b"PAR1 this is not parquet"))
    result.save()
    response = client.get(reverse("audits:compare"), {"a": damaged_audit.pk, "b": other.pk})
    assert response.status_code == 200
    page = response.content.decode()
    assert (f"the stored comparisons of audit #{damaged_audit.pk} cannot be read" in page
            and 'data-error-for="a"' in page)
    pairs = client.get(reverse("audits:pairs", args=[damaged_audit.pk]),
                       {"group": "female", "variant": "blur_2"})
    assert pairs.status_code == 200
    assert 'class="decision-' not in pairs.content.decode()  # no stored score, no decision
    assert client.get(reverse("audits:detail", args=[damaged_audit.pk])).status_code == 200
