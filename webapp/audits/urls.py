from django.urls import path

from webapp.audits import views

app_name = "audits"
urlpatterns = [
    path("", views.audit_list, name="list"),
    path("audits/new/", views.audit_create, name="create"),
    path("audits/<int:pk>/", views.audit_detail, name="detail"),
    path("audits/<int:pk>/progress.json", views.audit_progress, name="progress"),
    path("audits/<int:pk>/cancel/", views.audit_cancel, name="cancel"),
    path("audits/<int:pk>/download.zip", views.audit_download, name="download"),
]
