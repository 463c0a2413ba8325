"""Build a finished audit's rows and files by hand (fast; the real pipeline has its own tests)."""

from __future__ import annotations

import gzip
import hashlib
import io

import cv2
import numpy as np
import pandas as pd
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generator.config import parse_config
from webapp.audits.models import Audit, AuditResult, FaceAnalysis, GeneratedImage, SyntheticIdentity

CONFIG = {"name": "Hand-made audit", "seed": 5,
          "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 2, "factors": {"blur": [2.0]}}


def png(value: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), value, dtype=np.uint8))
    assert ok
    return buf.tobytes()


def make_done_audit(owner, name="Hand-made audit") -> Audit:
    cfg = parse_config({**CONFIG, "name": name})
    audit = Audit.objects.create(owner=owner, name=name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=8, state=Audit.State.DONE)  # made below
    k = 0
    for group in ("female", "male"):
        for idx in range(2):
            ident = SyntheticIdentity.objects.create(
                audit=audit, group_name=group, group_labels={"perceived_gender": group},
                index_in_group=idx, candidate=k, latent_seed=1000 + k)
            for variant, factor, level in (("baseline", "baseline", None), ("blur_2", "blur", 2.0)):
                data = png(10 * k + (5 if level else 0))
                name_ = default_storage.save(
                    f"audits/{audit.pk}/images/{group}/id{idx:03d}/{variant}.png", ContentFile(data))
                img = GeneratedImage.objects.create(
                    audit=audit, identity=ident, variant=variant, factor=factor, level=level,
                    file=name_, sha256=hashlib.sha256(data).hexdigest(),
                    recipe={"factor": factor, "level": level, "factor_seed": None})
                FaceAnalysis.objects.create(image=img, face_found=True, det_score=0.9,
                                            detector="scrfd_500m")
            k += 1
    comparisons = pd.DataFrame({"fr_model": ["mobilefacenet"] * 2, "image_a": [1, 2],
                                "image_b": [3, 4], "identity_a": [1, 1], "identity_b": [2, 2],
                                "group_a": ["female"] * 2, "group_b": ["female", "male"],
                                "mated": [True, False], "score": [0.8, 0.1]})
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write(comparisons.to_csv(index=False).encode())
    cname = default_storage.save(f"audits/{audit.pk}/results/comparisons.csv.gz",
                                 ContentFile(buf.getvalue()))
    group_row = {"n_mated": 2, "false_non_matches": 0, "fnmr": 0.0, "fnmr_upper95": 1.5,
                 "n_identities": 2, "n_nonmated": 4, "false_matches": 1, "fmr": 0.25,
                 "fmr_upper95": None}
    point = {"target_fmr": 0.001, "threshold": 0.42, "achieved_fmr": 0.0, "nonmated_used": 20,
             "overall": {"n_mated": 4, "false_non_matches": 0, "fnmr": 0.0, "n_nonmated": 20,
                         "false_matches": 0, "fmr": 0.0},
             "by_group": {"female": group_row, "male": group_row},
             "bootstrap": {"by_group": {"female": {"fmr_lower": 0.125, "fmr_upper": 0.375},
                                        "male": {"fmr_lower": 0.0625, "fmr_upper": 0.5}}},
             "rankable": {"female": {"rankable": False, "reason": "2 identities < 20"},
                          "male": {"rankable": True, "reason": ""}},
             "disparity": {"measures": {"fdr": {"estimate": 0.9, "lower": 0.8, "upper": 0.95},
                                        "garbe": {"estimate": 0.1, "lower": None,
                                                  "upper": None}},
                           "notes": ["FMR max/min ratio: no error observed in male"]}}
    summary = {"fr_models": {"mobilefacenet": {"weights_sha256": "ab" * 32, "embedding_size": 128,
                                               "operating_points": [point]}},
               "acquisition": {"overall": {"images": 8, "faces_found": 7},
                               "by_group": {"female": {"images": 4, "faces_found": 3},
                                            "male": {"images": 4, "faces_found": 4}}}}
    AuditResult.objects.create(audit=audit, summary=summary, comparisons_file=cname)
    return audit
