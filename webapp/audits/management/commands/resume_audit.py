"""``python manage.py resume_audit ID [ID ...]``: send again the work that unfinished or failed
audits still need (after a broker lost its queue, or to retry a failed audit once its cause is
fixed). Safe while workers are busy: every stage is idempotent."""

from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Resume unfinished or failed audits: re-send the work they still need."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="+", type=int, help="audit ids")

    def handle(self, *args, **opts):
        from webapp.audits.models import Audit
        from worker.dispatch import resume_audit

        for pk in sorted(set(opts["ids"])):
            if not Audit.objects.filter(pk=pk).exists():
                self.stderr.write(f"audit {pk}: no such audit")
                continue
            self.stdout.write(f"audit {pk}: {resume_audit(pk)}")
