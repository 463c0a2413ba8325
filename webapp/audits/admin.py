from django.contrib import admin

from webapp.audits import models


@admin.register(models.Audit)
class AuditAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "state", "n_images_planned", "created_at")
    list_filter = ("state",)
    search_fields = ("name", "owner__username")
    readonly_fields = ("created_at", "started_at", "finished_at", "updated_at")


@admin.register(models.AuditTask)
class AuditTaskAdmin(admin.ModelAdmin):
    list_display = ("audit", "name", "task_id", "created_at")


@admin.register(models.SyntheticIdentity)
class SyntheticIdentityAdmin(admin.ModelAdmin):
    list_display = ("id", "audit", "group_name", "index_in_group", "latent_seed")
    list_filter = ("group_name",)


@admin.register(models.GeneratedImage)
class GeneratedImageAdmin(admin.ModelAdmin):
    list_display = ("id", "audit", "identity", "variant", "sha256")
    list_filter = ("factor",)


@admin.register(models.FaceAnalysis)
class FaceAnalysisAdmin(admin.ModelAdmin):
    list_display = ("image", "face_found", "det_score", "detector")


@admin.register(models.Embedding)
class EmbeddingAdmin(admin.ModelAdmin):
    list_display = ("image", "fr_model", "weights_sha256")
    exclude = ("vector",)


@admin.register(models.AuditResult)
class AuditResultAdmin(admin.ModelAdmin):
    list_display = ("audit", "created_at")
