"""A direction too far from linear to edit along is refused with a message naming the fix,
before any image is generated."""

import numpy as np
import pytest

from generator.directions import Direction, DirectionSet, UnreliableDirection, cache_path


def direction_set(r2: dict[str, float]) -> DirectionSet:
    rng = np.random.default_rng(0)
    dirs = {}
    for k, v in r2.items():
        vec = rng.standard_normal(100)
        dirs[k] = Direction(k, vec / np.linalg.norm(vec), 1.0, 0.0, v, 1200)
    return DirectionSet("dcgan-digiface", "0" * 64, "x", 1500, 0, dirs)


def test_low_r2_and_missing_directions_are_named():
    ds = direction_set({"yaw": 0.8, "age": 0.12, "brightness": float("nan")})
    ds.check_editable(["yaw"])  # 0.8 is fine
    with pytest.raises(UnreliableDirection) as exc:
        ds.check_editable(["yaw", "age", "brightness", "pitch"])
    msg = str(exc.value)
    assert "age (held-out R^2 0.12 from 1,200 faces)" in msg
    assert "brightness" in msg and "pitch (no direction" in msg and "yaw" not in msg
    assert "learn_directions --samples" in msg
    ds.check_editable(["age"], min_r2=0.1)


@pytest.mark.django_db
@pytest.mark.slow
def test_an_audit_with_an_unreliable_direction_fails_before_generating(
        alice, media_root, models_available, settings, tmp_path):
    from audit.sensors import SENSOR_VERSION
    from generator.config import parse_config
    from webapp.audits.models import Audit, GeneratedImage
    from worker.pipeline import InlineRunner
    from worker.runtime import get_generator

    settings.FACEAUDIT_CACHE_DIR = tmp_path / "cache"
    generator = get_generator("dcgan-digiface")
    ds = direction_set({s: 0.9 for s in ("male_probability", "ita", "brightness", "yaw",
                                         "pitch")} | {"age": 0.05})
    DirectionSet(generator.model_id, generator.weights_sha256, SENSOR_VERSION, 1500, 0,
                 ds.directions).save(cache_path(settings.FACEAUDIT_CACHE_DIR, generator,
                                                SENSOR_VERSION))
    cfg = parse_config({"name": "age", "seed": 2, "groups": {"perceived_gender": ["female", "male"]},
                        "identities_per_group": 2, "factors": {"age": [10]},
                        "generator": "dcgan-digiface"},
                       fr_models_available=["mobilefacenet"])
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(),
                                 seed=cfg.seed, n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.FAILED
    assert "age (held-out R^2 0.05" in audit.error and "Traceback" not in audit.error
    assert not GeneratedImage.objects.filter(audit=audit).exists()
