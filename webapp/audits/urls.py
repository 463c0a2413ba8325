from django.urls import include, path

from webapp.audits import views

app_name = "audits"
urlpatterns = [
    # Audits: list, create, the audit page (dashboard), progress, cancel
    path("", views.audit_list, name="list"),
    path("audits/new/", views.audit_create, name="create"),
    path("audits/<int:pk>/", views.audit_detail, name="detail"),
    path("audits/<int:pk>/progress.json", views.audit_progress, name="progress"),
    path("audits/<int:pk>/cancel/", views.audit_cancel, name="cancel"),
    # Dashboard: images and image pairs behind the charts

    # Report and downloads
    path("audits/<int:pk>/download.zip", views.audit_download, name="download"),

    # JSON API (webapp/audits/api_urls.py)
    path("api/", include("webapp.audits.api_urls")),
]
