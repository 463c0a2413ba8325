"""Who may see which audit: the one ownership rule of every page, download and API endpoint.

A user sees the audits they own; staff see every audit. An audit the user may not see answers
404 (not 403), so other users' audits are not even confirmed to exist.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from webapp.audits.models import Audit


def visible_audits(request: HttpRequest) -> QuerySet[Audit]:
    """The audits the signed-in user may see."""
    if request.user.is_staff:
        return Audit.objects.all()
    return Audit.objects.filter(owner=request.user)


def owned_audit(request: HttpRequest, pk: int) -> Audit:
    """The audit ``pk`` if the user may see it; :class:`~django.http.Http404` otherwise."""
    try:
        return visible_audits(request).get(pk=pk)
    except Audit.DoesNotExist:
        raise Http404("No such audit among those you can see.") from None
