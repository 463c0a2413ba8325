"""Every URL the project serves obeys the ownership rules: anonymous visitors are sent to sign in
(pages) or get 401 (API), other users get 404 for anything about an audit they do not own, and
the owner gets neither 404 nor a server error.

The routes are read from the URL resolver, so a new route is checked as soon as it exists; a
route whose URL takes a keyword this file cannot fill fails with a message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from tests.webapp.factories import make_done_audit

pytestmark = pytest.mark.django_db

#: Route prefixes left out, each with the reason.
EXCLUDED = {
    "admin/": "Django's admin has its own staff sign-in and permission checks",
    "accounts/login/": "the sign-in page must be open to everyone",
    "accounts/logout/": "signing out needs no audit and is harmless for anyone",
    settings.STATIC_URL.lstrip("/"): "static files (CSS, plotly.js) are public by design",
}
API_PREFIX = "api/"
#: A small CSV stored as a result table when the audit has none.
TABLE_NAME = "factor_effects.csv"
TABLE_CSV = b"fr_model,target_fmr,group,factor,level\nmobilefacenet,0.001,female,blur,2.0\n"


@dataclass(frozen=True)
class Route:
    """One URL pattern: its full route text, its reversible name and its URL keywords."""

    route: str
    name: str | None
    kwargs: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.route.startswith(API_PREFIX)

    @property
    def audit_scoped(self) -> bool:
        return bool(self.kwargs)


def excluded(route: str) -> bool:
    """True for routes under one of the EXCLUDED prefixes."""
    return any(route.startswith(prefix) for prefix in EXCLUDED if prefix)


def walk(patterns, prefix: str = "", namespace: str = "", kwargs: tuple[str, ...] = ()):
    """Yield every :class:`Route` under ``patterns``, descending into includes."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        names = kwargs + tuple(pattern.pattern.regex.groupindex)
        if excluded(route):
            continue
        if isinstance(pattern, URLResolver):
            ns = ":".join(p for p in (namespace, pattern.namespace or "") if p)
            yield from walk(pattern.url_patterns, route, ns, names)
        else:
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield Route(route, name, names)


ROUTES = list(walk(get_resolver().url_patterns))


def test_the_walk_finds_the_pages_and_the_api():
    found = {r.name for r in ROUTES}
    assert {"audits:list", "audits:detail", "audits:api-list", "audits:api-results"} <= found
    assert not any(r.route.startswith(tuple(EXCLUDED)) for r in ROUTES)


def result_table(audit) -> str:
    """The name (without ``.csv``) of a stored result table of ``audit``; one is stored if it
    has none."""
    result = audit.result
    if not result.tables:
        stored = default_storage.save(f"audits/{audit.pk}/results/{TABLE_NAME}",
                                      ContentFile(TABLE_CSV))
        result.tables = {TABLE_NAME: stored}
        result.save(update_fields=["tables"])
    return Path(sorted(result.tables)[0]).stem


def varied_image(audit):
    """An image of ``audit`` that varies a factor (not the baseline or the control)."""
    return audit.images.exclude(factor__in=["baseline", "control"]).order_by("pk").first()


#: How each URL keyword is filled from a finished audit with a stored result.
KWARG_SOURCES = {
    "pk": lambda audit: audit.pk,
    "image_id": lambda audit: audit.images.order_by("pk").first().pk,
    "name": result_table,
    "fmt": lambda audit: "csv",
}
#: Query parameters a route needs to show anything (by route name), from the same audit.
QUERY_SOURCES = {
    "audits:pairs": lambda audit: {"group": varied_image(audit).identity.group_name,
                                   "variant": varied_image(audit).variant},
}


def url_for(route: Route, audit) -> str:
    """The route's URL for ``audit``; fails clearly for a route this file cannot fill."""
    if route.name is None:
        pytest.fail(f"route {route.route!r} has no name; name it so that it can be reversed")
    unknown = [k for k in route.kwargs if k not in KWARG_SOURCES]
    if unknown:
        pytest.fail(f"route {route.route!r} ({route.name}) takes {unknown}: add to KWARG_SOURCES "
                    "in tests/webapp/test_access.py how to fill it from an audit")
    url = reverse(route.name, kwargs={k: KWARG_SOURCES[k](audit) for k in route.kwargs})
    query = QUERY_SOURCES.get(route.name)
    return f"{url}?{urlencode(query(audit))}" if query else url


def fetch(client: Client, route: Route, url: str):
    """GET the URL; a route that only takes POST (405 on GET) is POSTed with an empty body."""
    response = client.get(url)
    if response.status_code == 405:
        if route.is_api:
            response = client.post(url, "{}", content_type="application/json")
        else:
            response = client.post(url, {})
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)  # errors while streaming must show up here
    return response


def check_anonymous(route: Route, url: str) -> None:
    response = fetch(Client(), route, url)
    if route.is_api:
        assert response.status_code == 401, f"anonymous {url}: {response.status_code}"
        assert response.json()["error"]
    else:
        assert response.status_code == 302, f"anonymous {url}: {response.status_code}"
        assert response["Location"].startswith(reverse("login")), url


def check_other_user(route: Route, url: str, user) -> None:
    client = Client()
    client.force_login(user)
    status = fetch(client, route, url).status_code
    if route.audit_scoped:
        assert status == 404, f"another user got {status} for {url}, not 404"
    else:
        assert status < 500 and status not in (302, 401), f"signed-in user got {status}: {url}"


def check_owner(route: Route, url: str, user) -> None:
    client = Client()
    client.force_login(user)
    response = fetch(client, route, url)
    assert response.status_code != 404 and response.status_code < 500, (
        f"the owner got {response.status_code} for {url}: {response.content[:300]!r}")


@pytest.mark.parametrize("route", ROUTES, ids=[r.route or "/" for r in ROUTES])
def test_every_route_keeps_audits_to_their_owner(route, alice, bob, media_root):
    audit = make_done_audit(alice)
    url = url_for(route, audit)
    check_anonymous(route, url)
    check_other_user(route, url, bob)
    check_owner(route, url, alice)
