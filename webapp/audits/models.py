"""Database rows. The :class:`Audit` row is the job's state machine and source of truth.

Generated images, scores and results are keyed by their design cell (identity x variant, image x
FR model), so a task that runs twice overwrites instead of duplicating.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import models


class Audit(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        GENERATING = "generating", "Generating images"
        SCORING = "scoring", "Scoring images"
        AGGREGATING = "aggregating", "Computing statistics"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL_STATES = frozenset({State.DONE, State.FAILED, State.CANCELLED})
    STAGES = ("sampling", "generating", "scoring", "aggregating")

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="audits")
    name = models.CharField(max_length=200)
    config = models.JSONField(help_text="validated config (generator.config schema)")
    seed = models.BigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED,
                             db_index=True)
    # Progress of the single-task stages (sampling, aggregating); per-batch stages are counted
    # from their output rows, which is exact under concurrency.
    stage_progress = models.JSONField(default=dict, blank=True)
    n_images_planned = models.PositiveIntegerField(default=0)
    # The identity judge, fixed once before any edit is judged (worker.pipeline): model, weights
    # hash, why it was chosen, and its cut-off from the whole audit's baselines.
    identity_judge = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk}, {self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    @property
    def n_identities_planned(self) -> int:
        from generator.config import AuditConfig

        return AuditConfig(**self.config).n_groups * int(self.config["identities_per_group"])


class AuditTask(models.Model):
    """A Celery task enqueued for an audit (kept for revoking on cancel and for the admin)."""

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="tasks")
    task_id = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)


class SyntheticIdentity(models.Model):
    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="identities")
    group_name = models.CharField(max_length=200, help_text="e.g. 'female / darker'")
    group_labels = models.JSONField(help_text="axis -> level, as confirmed by the sensors")
    index_in_group = models.PositiveIntegerField()
    candidate = models.PositiveIntegerField(help_text="index of the sampled candidate latent")
    latent_seed = models.BigIntegerField()
    sensors = models.JSONField(default=dict, help_text="sensor readings on the baseline face")
    conditioning = models.JSONField(
        default=dict, blank=True,
        help_text="prompt generators: anchor prompt and seed, identity embedding (list of floats)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["audit", "group_name", "index_in_group"],
                                               name="identity_cell_unique")]
        ordering = ["audit", "group_name", "index_in_group"]
        verbose_name_plural = "synthetic identities"

    def __str__(self) -> str:
        return f"{self.group_name} #{self.index_in_group}"


class GeneratedImage(models.Model):
    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="images")
    identity = models.ForeignKey(SyntheticIdentity, on_delete=models.CASCADE,
                                 related_name="images")
    variant = models.CharField(max_length=64, help_text="'baseline' or factor_level, e.g. blur_1.5")
    factor = models.CharField(max_length=32)
    level = models.FloatField(null=True, blank=True)
    file = models.CharField(max_length=500, help_text="name in the default storage")
    sha256 = models.CharField(max_length=64)
    recipe = models.JSONField()
    checks = models.JSONField(default=dict, blank=True,
                              help_text="generator accountability: face found, on target, others "
                                        "held, identity similarity, passed (generator.editing)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["identity", "variant"],
                                               name="image_cell_unique")]
        ordering = ["identity_id", "id"]

    @property
    def is_baseline(self) -> bool:
        return self.factor == "baseline"


class FaceAnalysis(models.Model):
    """Detection and attribute sensors for one image (independent of the FR model)."""

    image = models.OneToOneField(GeneratedImage, on_delete=models.CASCADE,
                                 related_name="analysis")
    face_found = models.BooleanField()
    det_score = models.FloatField(null=True)
    bbox = models.JSONField(null=True, help_text="[x1, y1, x2, y2] in image pixels")
    keypoints = models.JSONField(null=True, help_text="5 x [x, y] in image pixels")
    sensors = models.JSONField(default=dict, help_text="male_probability, age, ita, brightness")
    detector = models.CharField(max_length=64)


class Embedding(models.Model):
    """One FR model's embedding of one image: float32 little-endian bytes, L2-normalised."""

    image = models.ForeignKey(GeneratedImage, on_delete=models.CASCADE, related_name="embeddings")
    fr_model = models.CharField(max_length=64)
    weights_sha256 = models.CharField(max_length=64)
    vector = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "fr_model"],
                                               name="embedding_cell_unique")]

    def as_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.vector), dtype="<f4")


class AuditResult(models.Model):
    """The audit's computed statistics (served as stored; never recomputed per request)."""

    audit = models.OneToOneField(Audit, on_delete=models.CASCADE, related_name="result")
    summary = models.JSONField()
    comparisons_file = models.CharField(
        max_length=500, help_text="Parquet in the storage (gzip CSV for older audits)")
    tables = models.JSONField(default=dict, blank=True,
                              help_text="export file name -> CSV in the storage "
                                        "(factor_effects.csv, interaction.csv, ...)")
    created_at = models.DateTimeField(auto_now=True)


class SignInFailure(models.Model):
    """One failed sign-in (or one under way), counted against the account it named and the
    client address it came from (``key``: ``account:<username>`` or ``address:<ip>``), for the
    sign-in throttle (:mod:`webapp.audits.signin`). Kept in the database so that every web
    process counts the same failures; rows older than the throttle's window are deleted."""

    key = models.CharField(max_length=200)
    at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["key", "at"], name="signin_failure_key_at")]
