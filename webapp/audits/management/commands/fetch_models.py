"""``python manage.py fetch_models``: download the face models an audit needs.

Fetches every required model that is missing from ``FACEAUDIT_MODEL_DIR`` (or the named ones)
from its public source (:mod:`audit.fetch`), with a progress bar, resuming an interrupted
download, and writing only complete, verified files. Offline, it names every missing file,
where to put it and where it comes from.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Download the face models an audit needs into FACEAUDIT_MODEL_DIR."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*",
                            help="models to fetch (default: every required one that is missing)")
        parser.add_argument("--check", action="store_true",
                            help="only report what is missing (exit status 1 if anything is)")

    def handle(self, *args, **opts):
        from audit.fetch import FetchError, describe_missing, fetch, fetch_required
        from audit.registry import ModelError, ModelRegistry

        registry = ModelRegistry(settings.FACEAUDIT_MODEL_DIR)
        if opts["check"]:
            missing = describe_missing(registry)
            for line in missing:
                self.stdout.write(f"missing: {line}")
            if missing:
                raise CommandError(f"{len(missing)} required model file(s) missing; run "
                                   "`python manage.py fetch_models` with internet access")
            self.stdout.write(f"Every required model is in {registry.model_dir}.")
            return
        bar = _ProgressBar(self.stderr)
        try:
            registry.model_dir.mkdir(parents=True, exist_ok=True)
            written = (fetch(registry, opts["names"], bar) if opts["names"]
                       else fetch_required(registry, bar))
        except (FetchError, OSError) as exc:
            bar.close()
            lines = describe_missing(registry)
            raise CommandError(f"{exc}\n" + "".join(f"  missing: {line}\n" for line in lines)
                               + "Copy the files there by hand, or run this command again "
                               "when the machine is online.") from None
        except ModelError as exc:
            raise CommandError(str(exc)) from None
        bar.close()
        for path in written:
            self.stdout.write(f"fetched and verified {path}")
        if not written:
            self.stdout.write(f"Nothing to fetch: the required models are in {registry.model_dir}.")


class _ProgressBar:
    """A tqdm bar per file (bytes), on the command's stderr."""

    def __init__(self, stream):
        self.stream, self.bar, self.label = stream, None, None

    def __call__(self, label: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if label != self.label:
            self.close()
            self.label = label
            self.bar = tqdm(total=total, initial=0, unit="B", unit_scale=True, desc=label,
                            file=getattr(self.stream, "_out", sys.stderr), leave=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.label = None
