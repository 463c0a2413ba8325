import hashlib

from generator.config import parse_config
from generator.design import derive_seed, plan_design


def test_derive_seed_is_blake2b_of_the_coordinates():
    # independent recomputation of the documented formula
    text = "\x1f".join(["42", repr("candidate"), repr(3)])
    expected = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1
    assert derive_seed(42, "candidate", 3) == expected
    assert derive_seed(42, "candidate", 3) != derive_seed(42, "candidate", 4)
    assert derive_seed(42, "candidate", 3) != derive_seed(43, "candidate", 3)
    assert 0 <= derive_seed(0) < 2**63


def test_plan_crosses_axes_and_lists_variants_baseline_first():
    cfg = parse_config({"name": "x", "seed": 1,
                        "groups": {"perceived_gender": ["female", "male"],
                                   "skin_tone": ["lighter", "darker"]},
                        "identities_per_group": 3, "factors": {"blur": [2], "jpeg": [30, 10]}})
    d = plan_design(cfg)
    assert [g.name for g in d.groups] == ["female / lighter", "female / darker",
                                          "male / lighter", "male / darker"]
    assert [v.key for v in d.variants] == ["baseline", "control", "blur_2", "jpeg_30", "jpeg_10"]
    assert d.n_images == cfg.n_images == 4 * 3 * 5
