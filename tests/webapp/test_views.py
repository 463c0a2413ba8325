import csv
import io
import json
import zipfile

import pytest
from django.urls import reverse

from tests.webapp.factories import make_done_audit
from webapp.audits.models import Audit

pytestmark = pytest.mark.django_db


def audit_urls(pk):
    return {
        "detail": ("get", reverse("audits:detail", args=[pk])),
        "progress": ("get", reverse("audits:progress", args=[pk])),
        "download": ("get", reverse("audits:download", args=[pk])),
        "cancel": ("post", reverse("audits:cancel", args=[pk])),
    }


def test_anonymous_visitors_are_sent_to_sign_in(client, alice, media_root):
    audit = make_done_audit(alice)
    urls = [("get", reverse("audits:list")), ("get", reverse("audits:create")),
            *audit_urls(audit.pk).values()]
    for method, url in urls:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_other_users_cannot_see_or_touch_an_audit(client, alice, bob, media_root):
    audit = make_done_audit(alice)
    client.force_login(bob)
    for name, (method, url) in audit_urls(audit.pk).items():
        assert getattr(client, method)(url).status_code == 404, name
    assert "Hand-made audit" not in client.get(reverse("audits:list")).content.decode()
    audit.refresh_from_db()
    assert audit.state == Audit.State.DONE


def test_owner_sees_results_table_and_chart(client, alice, media_root):
    audit = make_done_audit(alice)
    client.force_login(alice)
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert 'id="group-table"' in page and "0.4200" in page
    assert "plotly/plotly.min.js" in page and 'id="chart-data"' in page
    assert "0 (&le; 1.5000)" in page  # zero errors shown with the rule-of-three bound
    assert "3 / 4" in page and "7 / 8" in page  # faces found per group and overall
    assert "[0.12500, 0.37500]" in page  # bootstrap interval of the female FMR
    assert page.count("(too small to rank)") == 1 and "2 identities &lt; 20" in page
    assert "Fairness Discrepancy Rate" in page and "[0.800, 0.950]" in page
    assert "no error observed in male" in page


def test_progress_endpoint_reports_every_stage(client, alice, media_root):
    audit = make_done_audit(alice)
    client.force_login(alice)
    data = client.get(reverse("audits:progress", args=[audit.pk])).json()
    assert data["state"] == "done" and data["final"] is True
    stages = {s["key"]: s for s in data["stages"]}
    assert list(stages) == ["sampling", "generating", "scoring", "aggregating"]
    assert stages["generating"]["done"] == stages["generating"]["total"] == 8
    assert stages["scoring"]["done"] == 8


def test_download_streams_a_zip_whose_manifest_matches_the_audit(client, alice, media_root):
    audit = make_done_audit(alice)
    client.force_login(alice)
    response = client.get(reverse("audits:download", args=[audit.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert zf.testzip() is None
    rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert len(rows) == 8
    assert {r["image_path"] for r in rows} <= set(zf.namelist())
    assert {r["group"] for r in rows} == {"female", "male"}
    assert sum(r["factor"] == "baseline" for r in rows) == 4
    comparisons = list(csv.DictReader(io.StringIO(zf.read("comparisons.csv").decode())))
    assert len(comparisons) == 2 and comparisons[0]["score"] == "0.8"
    assert json.loads(zf.read("summary.json"))["fr_models"]["mobilefacenet"]["embedding_size"] == 128


def test_cancel_stops_an_unfinished_audit_and_keeps_its_images(client, alice, media_root):
    audit = make_done_audit(alice)
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.SCORING)
    client.force_login(alice)
    response = client.post(reverse("audits:cancel", args=[audit.pk]), follow=True)
    assert "Audit cancelled" in response.content.decode()
    audit.refresh_from_db()
    assert audit.state == Audit.State.CANCELLED and audit.images.count() == 8


FORM = {"name": "Browser audit", "axis_perceived_gender": ["female", "male"],
        "identities_per_group": "3", "factor_blur": "2", "factor_downscale": "16",
        "generator": "dcgan-digiface", "fr_models": ["mobilefacenet"], "target_fmr": "0.01",
        "seed": "1", "action": "launch"}


def test_create_stores_the_validated_config_and_enqueues_after_commit(
        client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("audits:create"), FORM)
    audit = Audit.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/audits/{audit.pk}/")
    assert len(callbacks) == 1  # start_audit is sent only once the row is committed
    assert audit.state == Audit.State.QUEUED and audit.owner == alice
    assert audit.n_images_planned == 2 * 3 * 4  # baseline, control, blur, downscale
    assert audit.config["factors"] == {"blur": [2.0], "downscale": [16.0]}


def test_check_shows_the_image_count_without_creating(client, alice):
    client.force_login(alice)
    page = client.post(reverse("audits:create"), {**FORM, "action": "check"}).content.decode()
    assert 'id="image-count">24<' in page
    assert not Audit.objects.exists()


@pytest.mark.parametrize("field,value,error_field,fragment", [
    ("identities_per_group", "1", "identities_per_group", "2 to 500"),
    ("identities_per_group", "many", "identities_per_group", "whole number"),
    ("factor_blur", "2, abc", "factor_blur", "numbers"),
    ("factor_downscale", "100", "factor_downscale", "between 4 and 63"),
    ("target_fmr", "2", "target_fmr", "between 0 and 0.5"),
    ("name", "", "name", "give the audit a name"),
    ("factor_blur", "15, abc", "factor_blur", "got 15, abc"),
    ("target_fmr", ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(11)), "target_fmr",
     "11 target FMRs; at most 10"),
])
def test_bad_input_gets_a_message_at_the_field_and_no_audit(client, alice, field, value,
                                                          error_field, fragment):
    client.force_login(alice)
    response = client.post(reverse("audits:create"), {**FORM, field: value})
    assert response.status_code == 200  # the form again, with its messages
    page = response.content.decode()
    assert f'data-error-for="{error_field}">' in page
    assert fragment in page
    assert not Audit.objects.exists()


def test_no_groups_and_no_factors_are_explained(client, alice):
    client.force_login(alice)
    data = {k: v for k, v in FORM.items() if not k.startswith(("axis_", "factor_"))}
    page = client.post(reverse("audits:create"), data).content.decode()
    assert "Demographic groups: give at least one demographic axis" in page
    assert "Factors: vary at least one factor" in page


def test_the_form_offers_latent_edits_in_sensor_units(client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    page = client.get(reverse("audits:create")).content.decode()
    for name in ("factor_yaw", "factor_pitch", "factor_age", "factor_lighting"):
        assert f'name="{name}"' in page
    assert "change of head yaw in degrees" in page
    with django_capture_on_commit_callbacks(execute=False):
        client.post(reverse("audits:create"), {**FORM, "factor_yaw": "15, -15",
                                               "factor_lighting": "30"})
    assert Audit.objects.get().config["factors"]["yaw"] == [15.0, -15.0]
    bad = client.post(reverse("audits:create"), {**FORM, "factor_age": "0"}).content.decode()
    assert "a change of 0 is the baseline itself" in bad


def test_diffusion_generators_and_prompt_factors_appear_only_when_configured(
        client, alice, settings, django_capture_on_commit_callbacks):
    client.force_login(alice)
    page = client.get(reverse("audits:create")).content.decode()
    assert 'value="sd15-faceid"' not in page and 'name="prompt_expression"' not in page
    rejected = client.post(reverse("audits:create"), {**FORM, "generator": "sd15-faceid"})
    assert "Select a valid choice" in rejected.content.decode()

    settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": {"base_model": "/models/sd15",
                                                    "adapter": "/models/faceid"}}
    page = client.get(reverse("audits:create")).content.decode()
    assert 'value="sd15-faceid"' in page and 'name="prompt_expression"' in page
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("audits:create"), {
            **FORM, "generator": "sd15-faceid", "prompt_expression": ["smiling"],
            "prompt_accessories": ["glasses", "sunglasses"], "factor_downscale": ""})
    assert response.status_code == 302
    assert Audit.objects.get().config["factors"] == {
        "blur": [2.0], "expression": ["smiling"], "accessories": ["glasses", "sunglasses"]}
    latent = client.post(reverse("audits:create"), {**FORM, "generator": "sd15-faceid",
                                                    "factor_yaw": "15"}).content.decode()
    assert "latent edit of GAN generators" in latent


def test_launch_is_refused_when_no_fr_model_is_left_to_judge_identity(client, alice,
                                                                     models_available):
    """Latent edits need an identity judge that is not under test; with both available FR
    models under test there is none, so the form says so at the FR models and makes nothing."""
    client.force_login(alice)
    data = {**FORM, "factor_yaw": "15", "fr_models": ["mobilefacenet", "dlib_resnet"]}
    page = client.post(reverse("audits:create"), data).content.decode()
    assert 'data-error-for="fr_models">' in page
    assert "no FR model is left to judge" in page and "Take one model out" in page
    assert not Audit.objects.exists()
    # image factors only: nothing to judge, so the same models are fine
    ok = client.post(reverse("audits:create"), {**FORM, "action": "check",
                                                "fr_models": ["mobilefacenet", "dlib_resnet"]})
    assert "no FR model is left to judge" not in ok.content.decode()


def test_one_level_on_an_axis_is_accepted_when_another_axis_varies(
        client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("audits:create"), {
            **FORM, "axis_perceived_gender": ["female"], "axis_skin_tone": ["lighter", "darker"]})
    assert response.status_code == 302, response.content.decode()[:2000]
    audit = Audit.objects.get()
    assert audit.config["groups"] == {"perceived_gender": ["female"],
                                      "skin_tone": ["lighter", "darker"]}
    assert audit.n_images_planned == 2 * 3 * 4  # 2 groups, 3 identities, 4 images each


def test_a_single_group_in_all_is_explained(client, alice):
    client.force_login(alice)
    page = client.post(reverse("audits:create"),
                       {**FORM, "axis_perceived_gender": ["female"]}).content.decode()
    assert "Demographic groups: these levels make 1 group" in page
    assert not Audit.objects.exists()


def test_queued_images_beyond_the_per_user_cap_are_refused_in_the_form(
        client, alice, settings, django_capture_on_commit_callbacks):
    settings.FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER = 40  # FORM makes 2 x 3 x 4 = 24 images
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post(reverse("audits:create"), FORM).status_code == 302
        response = client.post(reverse("audits:create"), FORM)
    assert response.status_code == 200
    page = response.content.decode()
    assert "already hold 24 images queued or running" in page and "limit of 40" in page
    assert Audit.objects.count() == 1


@pytest.mark.parametrize("state", [Audit.State.QUEUED, Audit.State.GENERATING,
                                   Audit.State.SCORING, Audit.State.AGGREGATING,
                                   Audit.State.FAILED, Audit.State.CANCELLED])
def test_the_dataset_is_offered_and_served_only_once_the_audit_is_done(client, alice, media_root,
                                                                       state):
    """An unfinished, failed or cancelled audit has no download link, and its download URL
    answers 409 with a page saying why, not a partial zip under the usual name."""
    audit = make_done_audit(alice)  # every image stored, but in another state
    Audit.objects.filter(pk=audit.pk).update(state=state)
    client.force_login(alice)
    url = reverse("audits:download", args=[audit.pk])
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert 'id="download"' not in page and url not in page
    assert "The dataset can be downloaded once the audit has finished" in page
    response = client.get(url)
    assert response.status_code == 409 and not response.streaming
    assert response["Content-Type"].startswith("text/html")
    assert "Content-Disposition" not in response
    assert "The dataset is not ready" in response.content.decode()
    assert reverse("audits:detail", args=[audit.pk]) in response.content.decode()
    # Once done, the page offers it and the URL serves the zip.
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.DONE)
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert f'id="download" href="{url}"' in page
    done = client.get(url)
    assert done.status_code == 200 and done["Content-Type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(b"".join(done.streaming_content))).testzip() is None


def _bytes_under(folder):
    import os

    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
               for f in files)


def test_the_disk_use_of_a_running_audit_is_what_it_has_stored_so_far(client, alice, media_root):
    """While an audit runs, the page and its progress poll show the bytes of the files stored
    so far (not 0 until the end, not a figure from when the page was first opened)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.template.defaultfilters import filesizeformat
    from django.utils import timezone

    audit = make_done_audit(alice)
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.GENERATING)
    folder = media_root / "audits" / str(audit.pk)
    client.force_login(alice)
    before = _bytes_under(folder)
    assert before > 0
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert f'<span id="disk-use">{filesizeformat(before)} on disk</span>' in page
    # A batch stores 3,000 more bytes of images and stamps the audit, as the worker does.
    default_storage.save(f"audits/{audit.pk}/images/female/id009/baseline.png",
                         ContentFile(b"\x89PNG" + b"x" * 2996))
    Audit.objects.filter(pk=audit.pk).update(updated_at=timezone.now())
    after = _bytes_under(folder)
    assert after == before + 3000
    data = client.get(reverse("audits:progress", args=[audit.pk])).json()
    assert data["disk_use"] == after
    assert data["disk_use_text"] == f"{filesizeformat(after)} on disk"
    page = client.get(reverse("audits:detail", args=[audit.pk])).content.decode()
    assert f'<span id="disk-use">{filesizeformat(after)} on disk</span>' in page
