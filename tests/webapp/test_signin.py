"""The sign-in throttle, through the real sign-in view: after 5 failed sign-ins within 15 minutes
for one account or from one address, sign-in is refused (the right password too) with a message
saying when to try again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth.signals import user_login_failed
from django.test import Client

pytestmark = pytest.mark.django_db

URL = "/accounts/login/"
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def sign_in(client, username, password, at, address="127.0.0.1"):
    """POST the sign-in form at time ``at``: (signed in?, page text)."""
    with mock.patch("django.utils.timezone.now", return_value=at):
        response = client.post(URL, {"username": username, "password": password},
                               REMOTE_ADDR=address)
    # Signed in: redirected to the audit list (a refused sign-in shows the form again).
    signed_in = response.status_code == 302 and response["Location"] == "/"
    assert signed_in or response.status_code == 200
    return signed_in, response.content.decode()


def test_five_wrong_passwords_lock_the_account_until_the_first_is_15_minutes_old(alice):
    client = Client()
    for i in range(5):  # 10:00:00, 10:00:10, ... 10:00:40
        ok, page = sign_in(client, "alice", "wrong", T0 + timedelta(seconds=10 * i))
        assert not ok and "match. Please try again" in page
    # The right password, one minute later: refused. The first failure (10:00:00) leaves the
    # 15-minute window at 10:15:00, so 14 minutes remain.
    ok, page = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(minutes=1))
    assert not ok
    assert "Too many failed sign-ins" in page
    assert "refused for 14 more minutes: try again after 10:15 UTC" in page
    ok, page = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(minutes=14, seconds=59))
    assert not ok and "refused for 1 more minute: try again after 10:15 UTC" in page
    # Refused attempts do not extend the lock: at 10:15:01 the right password signs in.
    ok, _ = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(minutes=15, seconds=1))
    assert ok


def test_thirty_wrong_passwords_then_the_right_one_is_refused_and_only_five_were_checked(alice):
    checked = []

    def count(sender, credentials, **kwargs):
        checked.append(credentials["username"])

    user_login_failed.connect(count)
    try:
        client = Client()
        for i in range(30):  # 30 tries in 14.5 seconds
            ok, _ = sign_in(client, "alice", f"guess-{i}", T0 + timedelta(seconds=0.5 * i))
            assert not ok
        ok, page = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(seconds=15))
    finally:
        user_login_failed.disconnect(count)
    assert not ok and "Too many failed sign-ins" in page
    assert checked == ["alice"] * 5  # the other 25 guesses never reached a password check


def test_failures_from_one_address_lock_that_address_for_every_account(alice):
    client = Client()
    for i in range(5):  # five different (made-up) accounts from one address
        ok, _ = sign_in(client, f"user{i}", "wrong", T0 + timedelta(seconds=i), "192.0.2.7")
        assert not ok
    ok, page = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(seconds=30),
                       "192.0.2.7")
    assert not ok and "try again after 10:15 UTC" in page
    # alice's own account had no failure: from another address she signs in
    ok, _ = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(seconds=31), "192.0.2.8")
    assert ok


def test_an_account_locked_from_one_address_is_locked_from_every_address(alice):
    client = Client()
    for i in range(5):
        sign_in(client, "Alice", "wrong", T0 + timedelta(seconds=i), f"198.51.100.{i + 1}")
    ok, page = sign_in(client, "alice", "alice-pass-123", T0 + timedelta(minutes=5),
                       "198.51.100.99")
    assert not ok and "refused for 10 more minutes: try again after 10:15 UTC" in page


def test_a_success_clears_the_accounts_failures(alice):
    client = Client()
    for i in range(4):
        sign_in(client, "alice", "wrong", T0 + timedelta(seconds=i), f"203.0.113.{i + 1}")
    assert sign_in(client, "alice", "alice-pass-123", T0 + timedelta(seconds=10),
                   "203.0.113.50")[0]
    for i in range(4):  # four more: the account has 4 failures again, not 8
        sign_in(client, "alice", "wrong", T0 + timedelta(seconds=20 + i), f"203.0.113.{60 + i}")
    assert sign_in(client, "alice", "alice-pass-123", T0 + timedelta(seconds=30),
                   "203.0.113.70")[0]


def test_the_admin_sign_in_is_throttled_too(django_user_model):
    django_user_model.objects.create_user("carol", password="carol-pass-123", is_staff=True)
    client = Client()
    for i in range(5):
        sign_in(client, "carol", "wrong", T0 + timedelta(seconds=i))
    with mock.patch("django.utils.timezone.now", return_value=T0 + timedelta(minutes=2)):
        response = client.post("/admin/login/", {"username": "carol",
                                                 "password": "carol-pass-123"})
    assert response.status_code == 200  # the form again, not a redirect into the admin
    assert "Too many failed sign-ins" in response.content.decode()
