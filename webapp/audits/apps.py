from django.apps import AppConfig


class AuditsConfig(AppConfig):
    name = "webapp.audits"
    label = "audits"
    verbose_name = "FaceAudit audits"

    def ready(self) -> None:
        from django.db import transaction
        from django.db.models.signals import post_delete

        from exports.files import delete_audit_files
        from webapp.audits.models import Audit

        def remove_files(sender, instance, **kwargs):
            # After the rows are gone for good (not if the deletion is rolled back).
            pk = instance.pk  # Django clears instance.pk once the deletion is done
            transaction.on_commit(lambda: delete_audit_files(pk))

        post_delete.connect(remove_files, sender=Audit, weak=False,
                            dispatch_uid="audit-files-removed-with-the-audit")
