"""JSON API routes (see webapp/audits/api.py and docs/api.md), mounted under ``api/`` in the
``audits`` namespace."""

from django.urls import path

from webapp.audits import api

urlpatterns = [
    path("audits/", api.audits, name="api-list"),
    path("audits/<int:pk>/", api.audit_detail, name="api-detail"),
    path("audits/<int:pk>/progress/", api.audit_progress, name="api-progress"),
    path("audits/<int:pk>/results/", api.audit_results, name="api-results"),
    path("audits/<int:pk>/cancel/", api.audit_cancel, name="api-cancel"),
]
