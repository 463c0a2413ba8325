"""The sign-in throttle: after ``FACEAUDIT_SIGNIN_MAX_FAILURES`` failed sign-ins within
``FACEAUDIT_SIGNIN_WINDOW`` seconds for one account, or from one client address, every sign-in
for that account or from that address is refused, the right password included, until the
oldest of those failures is older than the window; the message says when to try again.

Failures are rows in the database (:class:`webapp.audits.models.SignInFailure`), so every web
process counts the same ones. Each attempt stores its rows before the password is checked and
counts them with the others, so that requests sent at once cannot slip past the limit
together; a successful or refused attempt removes its rows again (a success also clears its
account's failures; those from its address stay, or a guesser could reset them by signing in
to an account of their own).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from webapp.audits.models import SignInFailure


def max_failures() -> int:
    return max(1, int(settings.FACEAUDIT_SIGNIN_MAX_FAILURES))


def window() -> timedelta:
    return timedelta(seconds=max(1, int(settings.FACEAUDIT_SIGNIN_WINDOW)))


def client_address(request: HttpRequest | None) -> str:
    """The client's address: ``REMOTE_ADDR``, or behind a reverse proxy that the settings trust
    (``FACEAUDIT_BEHIND_TLS_PROXY=1`` in production) the address that proxy appended last to
    ``X-Forwarded-For`` (entries before it come from the client and could be anything)."""
    if request is None:
        return ""
    if settings.FACEAUDIT_SIGNIN_TRUST_FORWARDED_FOR:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if forwarded:
            return forwarded[-1][:100]
    return str(request.META.get("REMOTE_ADDR", ""))[:100]


def throttle_keys(username: str, address: str) -> list[str]:
    keys = [f"account:{username.casefold()[:150]}"]
    if address:
        keys.append(f"address:{address}")
    return keys


class Throttled(Exception):
    def __init__(self, until: datetime):
        super().__init__(until)
        self.until = until

    def message(self, now: datetime | None = None) -> str:
        now = now or timezone.now()
        minutes = max(1, math.ceil((self.until - now).total_seconds() / 60))
        local = timezone.localtime(self.until)
        return (f"Too many failed sign-ins for this account or from this address. Sign-in is "
                f"refused for {minutes} more minute{'s' if minutes != 1 else ''}: try again "
                f"after {local:%H:%M} {local.tzname()}.")


def begin_attempt(keys: list[str], now: datetime | None = None) -> list[int]:
    """Store this attempt's rows (one per key) and count them with the failures of the window:
    the row ids, or :class:`Throttled` (with the time sign-in is allowed again) when a key has
    had the maximum number of failures already; a refused attempt leaves no rows."""
    now = now or timezone.now()
    since = now - window()
    limit = max_failures()
    SignInFailure.objects.filter(at__lte=since).delete()  # out of every window now
    with transaction.atomic():
        rows = [SignInFailure.objects.create(key=key, at=now) for key in keys]
    ids = [row.pk for row in rows]
    until = None
    for key in keys:
        others = list(SignInFailure.objects.filter(key=key, at__gt=since).exclude(pk__in=ids)
                      .order_by("-at").values_list("at", flat=True)[:limit])
        if len(others) >= limit:  # allowed again once the limit-th most recent one expires
            key_until = others[limit - 1] + window()
            until = key_until if until is None else max(until, key_until)
    if until is not None:
        SignInFailure.objects.filter(pk__in=ids).delete()
        raise Throttled(until)
    return ids


def attempt_succeeded(ids: list[int], keys: list[str]) -> None:
    SignInFailure.objects.filter(pk__in=ids).delete()
    SignInFailure.objects.filter(key__in=[k for k in keys if k.startswith("account:")]).delete()


def attempt_not_counted(ids: list[int]) -> None:
    SignInFailure.objects.filter(pk__in=ids).delete()


class ThrottledSignInMixin:
    """For a Django authentication form: refuses sign-in while throttled (a form error saying
    when to try again) and counts wrong passwords."""

    error_messages = {**AuthenticationForm.error_messages, "throttled": "%(message)s"}
    throttled_message = ""  # set when refused: shown by the sign-in page

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if not username or not password:
            return super().clean()
        keys = throttle_keys(username, client_address(self.request))
        try:
            ids = begin_attempt(keys)
        except Throttled as exc:
            self.throttled_message = exc.message()
            raise ValidationError(self.error_messages["throttled"], code="throttled",
                                  params={"message": self.throttled_message}) from None
        try:
            cleaned = super().clean()
        except ValidationError:
            if self.user_cache is not None:  # the right password, of an account not allowed
                attempt_not_counted(ids)     # in here (inactive, or not staff for the admin)
            raise  # a wrong password: its rows stay, counted as a failure
        except BaseException:
            attempt_not_counted(ids)
            raise
        attempt_succeeded(ids, keys)
        return cleaned


class ThrottledAuthenticationForm(ThrottledSignInMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledSignInMixin, AdminAuthenticationForm):
    error_messages = {**AdminAuthenticationForm.error_messages, "throttled": "%(message)s"}
