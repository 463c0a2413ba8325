"""``python manage.py run_audit CONFIG_FILE --out DIR``: a whole audit without the web UI.

First prints what the design can show (:mod:`audit.planner`: comparisons per group, FNMR
interval width, detectable ratio, factor cells, whether groups can be ranked; ``--plan-only``
stops there). Then runs every stage in this process (the same code the Celery workers run) and
writes the export layout of :mod:`exports.dataset` into DIR: images, manifest (CSV and Parquet),
pair lists, comparisons (CSV and Parquet), result tables (CSV and JSON), summary.json,
README.txt and DATASET_CARD.md, the same files as the web download.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from audit.planner import (
    DEFAULT_FNMR,
    DEFAULT_ICC,
    PlanningError,
    parse_assumptions,
    plan_for_config,
)
from audit.summary import AuditSummary
from generator.config import ConfigError, load_config_file, parse_config


class Command(BaseCommand):
    help = "Run an audit from a YAML or JSON config file and write its results into a folder."

    def add_arguments(self, parser):
        parser.add_argument("config", help="audit config file (.yaml, .yml or .json)")
        parser.add_argument("--out", help="folder to write the results into (required unless "
                                          "--plan-only)")
        parser.add_argument("--plan-only", action="store_true",
                            help="print what the design can show, then stop")
        parser.add_argument("--planning-fnmr", default=None,
                            help=f"FNMR the plan assumes (default {DEFAULT_FNMR})")
        parser.add_argument("--planning-icc", default=None,
                            help=f"intra-identity correlation the plan assumes (default "
                                 f"{DEFAULT_ICC})")
        parser.add_argument("--user", default="run_audit",
                            help="owner of the audit row (created without a password if missing)")

    def handle(self, *args, **opts):
        from exports.dataset import export_to_dir
        from webapp.audits.availability import available_fr_models, available_generators
        from webapp.audits.launch import create_audit
        from webapp.audits.models import Audit
        from webapp.audits.progress import progress
        from worker.pipeline import InlineRunner

        if not opts["plan_only"] and not opts["out"]:
            raise CommandError("--out is required (the folder to write the results into), "
                               "unless --plan-only")
        out = Path(opts["out"] or ".")
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out} exists and is not a folder")
        try:
            assumptions = parse_assumptions(opts["planning_fnmr"], opts["planning_icc"])
        except PlanningError as exc:
            lines = "\n".join(f"  --{k.replace('_', '-')}: {v}" for k, v in exc.errors.items())
            raise CommandError(f"invalid planning value:\n{lines}") from None
        try:
            config = parse_config(load_config_file(opts["config"]),
                                  fr_models_available=available_fr_models(),
                                  generators_available=available_generators())
        except ConfigError as exc:
            lines = "\n".join(f"  {k}: {v}" for k, v in exc.errors.items())
            raise CommandError(f"invalid config {opts['config']}:\n{lines}") from None
        plan = plan_for_config(config, assumptions,
                               seconds_per_image=settings.FACEAUDIT_SECONDS_PER_IMAGE)
        self.stdout.write("\n".join(plan.lines()))
        if opts["plan_only"]:
            return
        call_command("migrate", interactive=False, verbosity=0)  # a fresh machine just works

        user, _ = get_user_model().objects.get_or_create(username=opts["user"])
        audit = create_audit(user, config)
        self.stdout.write(f"audit #{audit.pk} '{config.name}': {config.n_groups} groups x "
                          f"{config.identities_per_group} identities x {config.n_variants} "
                          f"images = {config.n_images} images")
        t0 = time.monotonic()

        def on_stage(name: str, args: tuple) -> None:
            p = progress(Audit.objects.get(pk=audit.pk))
            bars = "  ".join(f"{s['key']} {s['done']}/{s['total']}" for s in p["stages"])
            self.stdout.write(f"[{time.monotonic() - t0:6.1f}s] {name:<18} {bars}")

        audit = InlineRunner(on_stage=on_stage).run(audit.pk)
        if audit.state != Audit.State.DONE:
            raise CommandError(f"audit #{audit.pk} ended {audit.state}: {audit.error}")
        export_to_dir(audit, out)
        elapsed = time.monotonic() - t0
        summary = AuditSummary.of(audit.result.summary)
        for point in summary.points():
            self.stdout.write(f"{point.fr_model} @ {point.label}: threshold "
                              f"{point.threshold:.4f}, FMR {point.achieved_fmr:.5f}")
            for group, r in point.by_group.items():
                fnmr = "n/a" if r["fnmr"] is None else f"{r['fnmr']:.4f}"
                fmr = "n/a" if r["fmr"] is None else f"{r['fmr']:.5f}"
                self.stdout.write(f"  {group:<24} FNMR {fnmr} ({r['false_non_matches']}/"
                                  f"{r['n_mated']})  FMR {fmr} ({r['false_matches']}/"
                                  f"{r['n_nonmated']})")
        checks = summary.generator_checks
        if checks:
            self.stdout.write("generator checks (share of images; latent edits: on target, "
                              "others held, identity kept):")
            for group, c in checks["by_group"].items():
                fmt = lambda v: "  n/a" if v is None else f"{v:5.2f}"  # noqa: E731
                self.stdout.write(f"  {group:<24} face {fmt(c['face_found'])}  on target "
                                  f"{fmt(c['on_target'])}  held {fmt(c['others_held'])}  "
                                  f"identity {fmt(c['identity_kept'])}  passed "
                                  f"{fmt(c['passed'])}  ({c['images']} images, "
                                  f"{c['latent_edits']} edits)")
        self.stdout.write(self.style.SUCCESS(f"done in {elapsed:.1f} s; results in {out}"))
