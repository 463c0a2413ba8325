"""An unfinished audit that no worker has advanced for FACEAUDIT_STALLED_AFTER seconds is shown
as stalled, with a Retry button; every pipeline task stamps the audit's activity time."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from generator.config import parse_config
from tests.webapp.factories import make_done_audit
from webapp.audits.models import Audit
from worker.pipeline import InlineRunner

pytestmark = pytest.mark.django_db

CONFIG = {"name": "stall", "seed": 5, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 2, "factors": {"blur": [2.0]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def new_audit(owner, state=Audit.State.QUEUED) -> Audit:
    cfg = parse_config(CONFIG)
    return Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                n_images_planned=cfg.n_images, state=state)


def idle_for(audit: Audit, seconds: float) -> None:
    Audit.objects.filter(pk=audit.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.parametrize("state, words", [(Audit.State.QUEUED, "No worker has taken this audit"),
                                          (Audit.State.SCORING, "No worker has stored progress")])
def test_an_idle_unfinished_audit_is_stalled_with_a_retry_button(client, alice, settings, state,
                                                                 words):
    settings.FACEAUDIT_STALLED_AFTER = 600
    audit = new_audit(alice, state)
    idle_for(audit, 1260)  # 21 minutes
    client.force_login(alice)
    progress = client.get(reverse("audits:progress", args=[audit.pk])).json()
    assert progress["stalled"] is True
    assert 1259 <= progress["idle_seconds"] <= 1300
    assert words in progress["stalled_message"] and "21 minutes" in progress["stalled_message"]
    assert "Retry" in progress["stalled_message"]
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert '<div id="stalled" class="error-box" role="status">' in page  # not hidden
    assert words in page
    assert f'action="{reverse("audits:resume", args=[audit.pk])}" id="stalled-retry-form"' in page
    api = client.get(reverse("audits:api-progress", args=[audit.pk])).json()
    assert api["stalled"] is True


def test_a_recently_active_audit_is_not_stalled(client, alice, settings):
    settings.FACEAUDIT_STALLED_AFTER = 600
    audit = new_audit(alice, Audit.State.GENERATING)
    idle_for(audit, 540)
    client.force_login(alice)
    progress = client.get(reverse("audits:progress", args=[audit.pk])).json()
    assert progress["stalled"] is False and progress["stalled_message"] == ""
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert '<div id="stalled" class="error-box" hidden role="status">' in page


def test_a_finished_audit_is_never_stalled(client, alice, settings, media_root):
    settings.FACEAUDIT_STALLED_AFTER = 600
    audit = make_done_audit(alice)
    idle_for(audit, 10 * 24 * 3600)
    client.force_login(alice)
    assert client.get(reverse("audits:progress", args=[audit.pk])).json()["stalled"] is False


@pytest.mark.slow
def test_every_pipeline_task_stamps_the_audit(alice, media_root, models_available, settings):
    """Before each task the stamp is set far back; the next task (or the end) finds it renewed
    by the one before, so no task can run for long without the page seeing activity. Small
    batches, so that most generation and scoring batches are not the one that ends a stage."""
    settings.FACEAUDIT_GENERATE_BATCH = 1
    settings.FACEAUDIT_SCORE_BATCH = 3
    audit = new_audit(alice)
    ran: list[str] = []

    def check_and_reset(name, args):
        if ran:
            stamp = Audit.objects.values_list("updated_at", flat=True).get(pk=audit.pk)
            assert stamp > LONG_AGO, f"{ran[-1]} did not stamp the audit"
        Audit.objects.filter(pk=audit.pk).update(updated_at=LONG_AGO)
        ran.append(name)

    done = InlineRunner(on_stage=check_and_reset).run(audit.pk)
    assert done.state == Audit.State.DONE
    assert done.updated_at > LONG_AGO, f"{ran[-1]} did not stamp the audit"
    assert {"start_audit", "sample_identities", "generate_images", "score_images",
            "aggregate"} <= set(ran)
    assert ran.count("generate_images") == 4 and ran.count("score_images") == 4  # 12 images
