"""``python manage.py learn_directions``: learn (or relearn) a latent generator's attribute
directions and cache them for the workers."""

from __future__ import annotations

import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generator.config import DEFAULT_GENERATOR


class Command(BaseCommand):
    help = "Learn the attribute directions of a latent generator (InterFaceGAN) and cache them."

    def add_arguments(self, parser):
        parser.add_argument("--generator", default=DEFAULT_GENERATOR)
        parser.add_argument("--samples", type=int, default=settings.FACEAUDIT_DIRECTION_SAMPLES)
        parser.add_argument("--force", action="store_true", help="relearn even when cached")

    def handle(self, *args, **opts):
        from audit.sensors import SENSOR_VERSION
        from generator.directions import cache_path
        from worker.runtime import get_directions, get_generator

        try:
            generator = get_generator(opts["generator"])
            if generator is None:
                raise ValueError("it is prompt-driven: its edits are prompt phrases, not "
                                 "latent directions")
        except Exception as exc:
            raise CommandError(f"cannot load generator {opts['generator']!r}: {exc}") from None
        settings.FACEAUDIT_DIRECTION_SAMPLES = opts["samples"]
        path = cache_path(settings.FACEAUDIT_CACHE_DIR, generator, SENSOR_VERSION)
        if opts["force"] and path.exists():
            path.unlink()
        t0 = time.monotonic()

        def progress(done: int, total: int) -> None:
            width = 40
            filled = int(width * done / total)
            rate = done / max(time.monotonic() - t0, 1e-9)
            sys.stdout.write(f"\rsampling [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
                             f"  {rate:.0f} faces/s")
            sys.stdout.flush()

        directions = get_directions(generator, progress=progress)
        self.stdout.write("")
        self.stdout.write(f"directions for {generator.model_id} (sensor version "
                          f"{directions.sensor_version}, {directions.n_samples} samples) in {path}")
        for name, d in directions.directions.items():
            self.stdout.write(f"  {name:<18} R^2 {d.r2:5.2f}  slope {d.slope:8.3f} per latent "
                              f"unit  (n={d.n})")
