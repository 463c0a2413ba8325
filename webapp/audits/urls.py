from django.urls import include, path

from webapp.audits import compare_views, downloads, views

app_name = "audits"
urlpatterns = [
    # Audits: list, create, the audit page (dashboard), progress, cancel
    path("", views.audit_list, name="list"),
    path("audits/new/", views.audit_create, name="create"),
    path("audits/<int:pk>/", views.audit_detail, name="detail"),
    path("audits/<int:pk>/progress.json", views.audit_progress, name="progress"),
    path("audits/<int:pk>/cancel/", views.audit_cancel, name="cancel"),
    path("audits/<int:pk>/resume/", views.audit_resume, name="resume"),
    path("audits/<int:pk>/delete/", views.audit_delete, name="delete"),
    path("audits/compare/", compare_views.compare, name="compare"),
    # Dashboard: images and image pairs behind the charts
    path("audits/<int:pk>/pairs/", views.audit_pairs, name="pairs"),
    path("audits/<int:pk>/images/<int:image_id>.png", views.audit_image, name="image"),

    # Report and downloads
    path("audits/<int:pk>/download.zip", downloads.audit_download, name="download"),
    path("audits/<int:pk>/report.html", downloads.audit_report, name="report"),
    path("audits/<int:pk>/tables.zip", downloads.audit_tables_zip, name="tables_zip"),
    path("audits/<int:pk>/tables/<slug:name>.<str:fmt>", downloads.audit_table, name="table"),

    # JSON API (webapp/audits/api_urls.py)
    path("api/", include("webapp.audits.api_urls")),
]
