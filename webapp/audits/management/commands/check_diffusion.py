"""``python manage.py check_diffusion``: verify the configured diffusion routes before an audit.

For every route of ``FACEAUDIT_DIFFUSION`` (or the named ones) it checks the settings, the files
of local weight folders, the adapter's layout against the base model, the identity model the
route needs against the configured one and its file in ``FACEAUDIT_MODEL_DIR``, and renders one
tiny image on the worker's device (``FACEAUDIT_TORCH_DEVICE``) through the loader a worker uses
(:func:`generator.diffusion.check.check_route`). Each finding is one line; the exit status is 1
when any route has a problem, with every problem named. Run it where the worker runs (it needs
torch and diffusers, and the weights).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _quiet_libraries() -> None:
    """Only errors from diffusers and transformers, no progress bars: the findings are the
    output."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    warnings.filterwarnings("ignore", message="peft is not installed")


class Command(BaseCommand):
    help = ("Check each configured diffusion route (FACEAUDIT_DIFFUSION): files, layout, "
            "identity model, one tiny generation on the worker's device.")

    def add_arguments(self, parser):
        parser.add_argument("routes", nargs="*",
                            help="routes to check (default: every route in FACEAUDIT_DIFFUSION)")
        parser.add_argument("--no-generate", action="store_true",
                            help="check files and layout only; do not load the weights")
        parser.add_argument("--device", default=None,
                            help="device for the tiny generation (default: "
                                 "FACEAUDIT_TORCH_DEVICE)")

    def handle(self, *args, **opts):
        from generator.diffusion.check import check_route

        _quiet_libraries()
        configured = settings.FACEAUDIT_DIFFUSION or {}
        if not isinstance(configured, dict):
            raise CommandError("FACEAUDIT_DIFFUSION must be a JSON object: generator name -> "
                               "settings")
        routes = opts["routes"] or list(configured)
        if not routes:
            raise CommandError(
                'FACEAUDIT_DIFFUSION configures no diffusion route; set it to e.g. '
                '{"sd15-faceid": {"base_model": ..., "adapter": ..., '
                '"weight_name": "ip-adapter-faceid_sd15.bin"}} (see README, diffusion '
                "generators)")
        device = opts["device"] or settings.FACEAUDIT_TORCH_DEVICE
        not_ready = []
        for name in routes:
            options = configured.get(name)
            if not isinstance(options, dict):
                self.stdout.write(f"{name}:")
                self.stdout.write(f"  problem  not configured: FACEAUDIT_DIFFUSION has no "
                                  f"settings object for {name!r}")
                not_ready.append((name, 1))
                continue
            report = check_route(name, options, device=device,
                                 generate=not opts["no_generate"],
                                 model_dir=settings.FACEAUDIT_MODEL_DIR)
            self.stdout.write(f"{name}:")
            for finding in report.findings:
                self.stdout.write(f"  {finding.level:<8} {finding.text}")
            self.stdout.write(f"  {'ready' if report.ready else 'NOT READY'}")
            if not report.ready:
                not_ready.append((name, len(report.problems)))
        if not_ready:
            raise CommandError(
                f"{len(not_ready)} of {len(routes)} diffusion route(s) not ready: "
                + ", ".join(f"{n} ({k} problem{'s' if k > 1 else ''})" for n, k in not_ready))
        self.stdout.write(f"{len(routes)} diffusion route(s) ready.")
