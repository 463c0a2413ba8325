"""JSON API routes (see webapp/audits/api.py and docs/api.md)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
