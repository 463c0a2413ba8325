"""Test session set-up, run before Django's settings load.

- Database: PostgreSQL at 127.0.0.1:5432 (database ``test``) when it is reachable, so the model,
  worker and view tests run on the production database engine; SQLite otherwise (the embedded
  default, which the browser and run_audit tests exercise in their own processes anyway).
  ``FACEAUDIT_TEST_DATABASE=sqlite`` forces SQLite; an explicit DATABASE_URL wins.
- Models: ``FACEAUDIT_MODEL_DIR``, else ``../shared/models`` beside the checkout.
- All files the tests write go under ``var/test``.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_reachable() -> str | None:
    """None when PostgreSQL accepts a connection, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                             connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: not usable here
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


os.environ.setdefault("FACEAUDIT_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("FACEAUDIT_MEDIA_ROOT", str(ROOT / "var" / "test" / "media"))
if not os.environ.get("FACEAUDIT_MODEL_DIR") and (ROOT.parent / "shared" / "models").is_dir():
    os.environ["FACEAUDIT_MODEL_DIR"] = str(ROOT.parent / "shared" / "models")

POSTGRES_UNAVAILABLE: str | None = "DATABASE_URL was set explicitly"
if "DATABASE_URL" not in os.environ:
    if os.environ.get("FACEAUDIT_TEST_DATABASE", "postgres") == "postgres":
        POSTGRES_UNAVAILABLE = _postgres_reachable()
        if POSTGRES_UNAVAILABLE is None:
            os.environ["DATABASE_URL"] = PG_URL
    else:
        POSTGRES_UNAVAILABLE = "FACEAUDIT_TEST_DATABASE=sqlite"
elif os.environ["DATABASE_URL"].startswith("postgres"):
    POSTGRES_UNAVAILABLE = None


def pytest_report_header(config):
    db = os.environ.get("DATABASE_URL", "sqlite (embedded default)")
    note = "" if POSTGRES_UNAVAILABLE is None else f" (PostgreSQL not used: {POSTGRES_UNAVAILABLE})"
    return [f"faceaudit: database {db}{note}",
            f"faceaudit: models {os.environ.get('FACEAUDIT_MODEL_DIR', '(not set)')}"]

# Load Django's settings only now, after the environment above is in place (pytest-django would
# otherwise load them before this file runs; it finishes the set-up in its pytest_configure).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
from django.conf import settings as _settings  # noqa: E402

_settings.DATABASES  # noqa: B018


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, plus one step before it is dropped: end the PostgreSQL
    sessions that other threads or processes (live-server threads, worker subprocesses) left
    open on it, which would otherwise make the drop fail with "database is being accessed by
    other users"."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
