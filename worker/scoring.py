"""The scoring stage: detect, align, embed (with each FR model under test) and sense every
generated image, store its embeddings and then its analysis, and when the audit's last image has
its analysis, move it to aggregation.

A batch is a list of image ids; an image that has its analysis (a batch sent again) is skipped.
The analysis is stored after the embeddings, so an image with an analysis has all of them.
"""

from __future__ import annotations

import numpy as np

from generator.config import AuditConfig
from webapp.audits.models import Audit, Embedding, FaceAnalysis, GeneratedImage
from worker.image_files import read_image
from worker.state import Dispatch, State, advance, audit_config, is_cancelled, stage_errors, touch

#: The analyser's readings stored with each image's analysis (FaceAnalysis.sensors).
STORED_SENSORS = ("male_probability", "age", "ita", "skin_tone_index", "skin_hue", "brightness",
                  "yaw", "pitch", "roll", "smile", "mouth_open", "sharpness",
                  "sharpness_normalised", "illumination_uniformity", "quality")


def score_images(audit_id: int, image_ids: list[int], dispatch: Dispatch) -> None:
    """Detect, align, embed (each FR model) and sense the given images; when every image of the
    audit has been analysed, move on to aggregation. Images already analysed (a batch sent
    again) are skipped: an image's analysis is stored after its embeddings."""
    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.SCORING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "scoring images"):
        images = list(GeneratedImage.objects.filter(audit=audit, pk__in=image_ids,
                                                    analysis__isnull=True).order_by("id"))
        if images:
            analyse_and_store(audit_config(audit), images)
        touch(audit_id)
        if is_cancelled(audit_id):
            return
        finish_scoring(audit_id, audit.n_images_planned, dispatch)


def analyse_and_store(config: AuditConfig, images: list) -> None:
    """Analyse the images with the audit's FR models and store each one's embeddings, then its
    analysis (replacing what an earlier run left)."""
    from worker.runtime import get_analyzer, quality_model, score_threads

    analyzer = get_analyzer(tuple(config.fr_models), quality=quality_model(),
                            threads=score_threads())
    batch = analyzer.analyze([read_image(img.file) for img in images])
    recognizers = analyzer.recognizers
    for i, img in enumerate(images):
        row = batch.row(i)
        found = bool(batch.face_found[i])
        for fr_model in config.fr_models:
            if found:
                vec = np.asarray(batch.embeddings[fr_model][i], dtype="<f4")
                Embedding.objects.update_or_create(
                    image=img, fr_model=fr_model,
                    defaults={"weights_sha256": recognizers[fr_model].weights_sha256,
                              "vector": vec.tobytes()})
            else:
                Embedding.objects.filter(image=img, fr_model=fr_model).delete()
        FaceAnalysis.objects.update_or_create(
            image=img,
            defaults={"face_found": found, "det_score": row.get("det_score"),
                      "bbox": row.get("bbox"), "keypoints": row.get("kps"),
                      "sensors": {k: row.get(k) for k in STORED_SENSORS},
                      "detector": analyzer.detector.name})


def finish_scoring(audit_id: int, n_images: int, dispatch: Dispatch) -> None:
    """When every image has its analysis, move to aggregation (once) and schedule it."""
    done = FaceAnalysis.objects.filter(image__audit_id=audit_id).count()
    if done >= n_images and advance(audit_id, State.SCORING, State.AGGREGATING):
        dispatch("aggregate", audit_id)
