"""Downloads of a finished audit (state Done): the dataset zip, the HTML fairness report and the result
tables.

Every view requires sign-in and answers 404 for audits the user does not own (staff see all),
the same rule as the pages (:func:`webapp.audits.access.owned_audit`). Table names in URLs are checked
against the names the audit stored; nothing from the URL reaches a storage path.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from webapp.audits.access import owned_audit
from webapp.audits.models import Audit


def _finished(request: HttpRequest, pk: int) -> Audit:
    """The user's audit with a stored result; 404 otherwise."""
    audit = owned_audit(request, pk)
    if audit.state != Audit.State.DONE or getattr(audit, "result", None) is None:
        raise Http404("This audit has no results yet.")
    return audit


def _attachment(response: HttpResponse, filename: str, inline: bool = False) -> HttpResponse:
    kind = "inline" if inline else "attachment"
    response["Content-Disposition"] = f'{kind}; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
def audit_download(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The balanced dataset export as a zip, streamed (see :mod:`exports.dataset`). Only for a
    finished audit: a queued, running, failed or cancelled one gets a 409 page saying so
    instead of an incomplete zip under the usual name."""
    from exports.dataset import stream_zip

    audit = owned_audit(request, pk)
    if audit.state != Audit.State.DONE:
        return render(request, "audits/download_unavailable.html", {"audit": audit}, status=409)
    if not audit.images.exists():
        raise Http404("This audit has no images yet.")
    filename = f"faceaudit-{audit.pk}-{slugify(audit.name)[:60] or 'audit'}.zip"
    response = StreamingHttpResponse(stream_zip(audit), content_type="application/zip")
    return _attachment(response, filename)


@login_required
@require_GET
def audit_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The self-contained HTML fairness report: a download ``faceaudit-<pk>-report.html``, or
    shown in the browser with ``?inline=1``."""
    from django.core.files.storage import default_storage

    from webapp.audits.report import stored_report

    audit = _finished(request, pk)
    with default_storage.open(stored_report(audit), "rb") as f:
        response = HttpResponse(f.read(), content_type="text/html; charset=utf-8")
    # The report runs its own inline scripts (plotly.js); it needs no network at all.
    response["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")
    return _attachment(response, f"faceaudit-{audit.pk}-report.html",
                       inline=request.GET.get("inline") == "1")


def _stored_table(audit: Audit, name: str) -> str:
    """The storage name of the audit's table ``name`` (without extension); 404 when the audit
    stored no table of that name."""
    from exports.tables import result_tables

    stored = dict(result_tables(audit)).get(name)
    if stored is None:
        raise Http404("No such table.")
    return stored


@login_required
@require_GET
def audit_table(request: HttpRequest, pk: int, name: str, fmt: str) -> StreamingHttpResponse:
    """One result table as CSV (as stored) or as a JSON list of records."""
    from exports.tables import table_csv_chunks, table_json_chunks

    audit = _finished(request, pk)
    stored = _stored_table(audit, name)
    if fmt == "csv":
        response = StreamingHttpResponse(table_csv_chunks(stored),
                                         content_type="text/csv; charset=utf-8")
    elif fmt == "json":
        response = StreamingHttpResponse(table_json_chunks(stored),
                                         content_type="application/json")
    else:
        raise Http404("Unknown format.")
    return _attachment(response, f"faceaudit-{audit.pk}-{name}.{fmt}")


@login_required
@require_GET
def audit_tables_zip(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every result table (CSV and JSON) and summary.json in one small zip."""
    from exports.tables import result_tables, summary_json, table_csv_chunks, table_json_chunks
    from exports.zip_stream import ExportFile, stream_files_zip

    audit = _finished(request, pk)
    files = [ExportFile("summary.json", lambda: [summary_json(audit)])]
    for stem, stored in result_tables(audit):
        files.append(ExportFile(f"tables/{stem}.csv", lambda s=stored: table_csv_chunks(s)))
        files.append(ExportFile(f"tables/{stem}.json", lambda s=stored: table_json_chunks(s)))
    response = StreamingHttpResponse(stream_files_zip(files), content_type="application/zip")
    return _attachment(response, f"faceaudit-{audit.pk}-tables.zip")
