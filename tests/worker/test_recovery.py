"""The work a dead worker took with it on the filesystem broker, found and sent again
(worker.recovery): what is done (the rows) and what waits in the queue folder (real kombu message
files) is not sent again."""

from __future__ import annotations

import pytest

from generator.config import parse_config
from generator.design import plan_design
from tests.worker.test_celery_worker import sender
from webapp.audits.models import Audit, GeneratedImage, SyntheticIdentity
from worker.recovery import recover_lost_work, waiting_stage_tasks

pytestmark = pytest.mark.django_db

CONFIG = {"name": "recovery", "seed": 5, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 4,
          "factors": {"blur": [2.0], "jpeg": [15]}, "fr_models": ["mobilefacenet"],
          "target_fmr": [0.05]}


def make_audit(owner, state: str) -> Audit:
    cfg = parse_config(CONFIG)
    return Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                n_images_planned=cfg.n_images, state=state)


def generating_audit(owner, with_images: int) -> tuple[Audit, list[int]]:
    """An audit in generation with its 8 identities, the first ``with_images`` of them with
    every image."""
    audit = make_audit(owner, Audit.State.GENERATING)
    variants = plan_design(parse_config(CONFIG)).variants
    ids = []
    for k in range(8):
        group = ("female", "male")[k % 2]
        identity = SyntheticIdentity.objects.create(
            audit=audit, group_name=group, group_labels={"perceived_gender": group},
            index_in_group=k // 2, candidate=k, latent_seed=100 + k)
        ids.append(identity.pk)
        for variant in variants if k < with_images else ():
            GeneratedImage.objects.create(audit=audit, identity=identity, variant=variant.key,
                                          factor=variant.factor, level=variant.level,
                                          file=f"x/{k}/{variant.key}.png", sha256="0" * 64,
                                          recipe={})
    return audit, ids


@pytest.fixture
def queue(tmp_path):
    """A filesystem broker's folders, and a client that sends to its queues."""
    var_dir = tmp_path / "var"
    app = sender("filesystem://", var_dir)
    yield app, var_dir / "broker" / "queue"
    app.pool.force_close_all()


def record(sent: list):
    return lambda name, *args: sent.append((name, *args))


def test_only_the_work_neither_done_nor_waiting_is_sent_again(alice, queue):
    app, folder = queue
    audit, ids = generating_audit(alice, with_images=2)
    app.send_task("worker.tasks.generate_images", args=[audit.pk, ids[2:4]], queue="gpu")
    app.send_task("worker.tasks.generate_images", args=[audit.pk, ids[4:6]], queue="gpu")
    # ids[6:8]: their batch was taken by the worker that died
    sent: list = []
    report = recover_lost_work(record(sent), folder)
    assert sent == [("generate_images", audit.pk, ids[6:8])]
    assert report == [f"audit {audit.pk}: generation sent again for 2 identities "
                      "(4 more waiting in the queue)"]


def test_nothing_is_sent_while_all_the_work_waits_in_the_queue(alice, queue):
    app, folder = queue
    audit, ids = generating_audit(alice, with_images=4)
    app.send_task("worker.tasks.generate_images", args=[audit.pk, ids[4:8]], queue="gpu")
    queued = make_audit(alice, Audit.State.QUEUED)
    app.send_task("worker.tasks.start_audit", args=[queued.pk], queue="cpu")
    sent: list = []
    assert recover_lost_work(record(sent), folder) == [
        f"audit {audit.pk}: generation of 4 identities is waiting in the queue",
        f"audit {queued.pk}: start is waiting in the queue"]
    assert sent == []


def test_lost_starts_and_statistics_are_sent_again_and_final_audits_are_left_alone(alice,
                                                                                   queue):
    _app, folder = queue
    queued = make_audit(alice, Audit.State.QUEUED)
    aggregating = make_audit(alice, Audit.State.AGGREGATING)
    for state in (Audit.State.FAILED, Audit.State.DONE, Audit.State.CANCELLED):
        make_audit(alice, state)  # a failed audit waits for its Retry
    sent: list = []
    recover_lost_work(record(sent), folder)
    assert sent == [("start_audit", queued.pk), ("aggregate", aggregating.pk)]
    assert Audit.objects.filter(state=Audit.State.FAILED).count() == 1


def test_the_queue_folder_is_read_as_stage_tasks_by_audit(alice, queue):
    app, folder = queue
    app.send_task("worker.tasks.score_images", args=[7, [1, 2, 3]], queue="cpu")
    app.send_task("worker.tasks.aggregate", args=[8], queue="cpu")
    app.send_task("celery.ping", args=[], queue="cpu")  # not a stage task
    (folder / "123_half-written.cpu.msg").write_text('{"body": ')
    assert waiting_stage_tasks(folder) == {7: [("score_images", [7, [1, 2, 3]])],
                                           8: [("aggregate", [8])]}
