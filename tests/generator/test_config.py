import json

import pytest

from generator.config import ConfigError, load_config_file, parse_config

GOOD = {
    "name": "t", "seed": 7,
    "groups": {"perceived_gender": ["female", "male"], "skin_tone": ["lighter", "darker"]},
    "identities_per_group": 5,
    "factors": {"blur": [1.5, 3], "downscale": "24, 16, 8"},
    "fr_models": ["mobilefacenet"], "target_fmr": [0.001, 0.01],
}


def errors_of(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def test_it_counts_images_as_groups_times_identities_times_variants():
    cfg = parse_config(GOOD)
    # 2 x 2 groups, 5 identities each, baseline + control + 2 blur + 3 downscale = 7 images each
    assert cfg.n_groups == 4
    assert cfg.n_variants == 7
    assert cfg.n_images == 4 * 5 * 7
    assert cfg.factors["downscale"] == [24.0, 16.0, 8.0]
    assert cfg.target_fmr == [0.01, 0.001]


def test_round_trip_through_dict_and_json():
    cfg = parse_config(GOOD)
    assert parse_config(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("field,value,key,fragment", [
    ("name", "", "name", "name"),
    ("seed", -3, "seed", "whole number"),
    ("seed", "abc", "seed", "whole number"),
    ("identities_per_group", 1, "identities_per_group", "2 to 500"),
    ("identities_per_group", 2.5, "identities_per_group", "whole number"),
    ("groups", {"hair": ["a", "b"]}, "groups.hair", "unknown axis"),
    ("groups", {"skin_tone": ["lighter"]}, "groups.skin_tone", "at least two"),
    ("groups", {"skin_tone": ["lighter", "purple"]}, "groups.skin_tone", "purple"),
    ("groups", {}, "groups", "at least one"),
    ("factors", {"blur": [50]}, "factors.blur", "between"),
    ("factors", {"blur": ["x"]}, "factors.blur", "numbers"),
    ("factors", {"jpeg": [50.5]}, "factors.jpeg", "whole numbers"),
    ("factors", {"warp": [1]}, "factors.warp", "unknown factor"),
    ("factors", {}, "factors", "at least one"),
    ("fr_models", ["arcface-huge"], "fr_models", "arcface-huge"),
    ("target_fmr", [0], "target_fmr", "between 0 and 0.5"),
    ("generator", "stylegan9", "generator", "unknown generator"),
])
def test_it_names_the_field_and_the_fix(field, value, key, fragment):
    errors = errors_of({**GOOD, field: value})
    assert key in errors, errors
    assert fragment in errors[key]


def test_user_thresholds_are_optional_numbers_on_the_cosine_scale():
    assert parse_config(GOOD).thresholds == []
    assert parse_config({**GOOD, "thresholds": "0.5, 0.3"}).thresholds == [0.3, 0.5]
    assert "from -1 to 1" in errors_of({**GOOD, "thresholds": [1.5]})["thresholds"]


def test_it_rejects_unknown_fields_and_reports_all_errors_at_once():
    errors = errors_of({**GOOD, "colour": 1, "seed": -1, "name": ""})
    assert {"colour", "seed", "name"} <= set(errors)


def test_it_limits_the_total_image_count():
    # 2 x 2 x 3 = 12 groups x 500 identities x 21 images = 126,000 > 100,000
    errors = errors_of({**GOOD, "identities_per_group": 500,
                        "groups": {**GOOD["groups"], "age_band": ["under_30", "30_to_49", "50_plus"]},
                        "factors": {"blur": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                                    "noise": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}})
    assert "more than the limit" in errors["identities_per_group"]


def test_config_files_in_yaml_and_json(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("name: y\nseed: 1\ngroups: {perceived_gender: [female, male]}\n"
                 "identities_per_group: 3\nfactors: {blur: [2]}\n")
    assert parse_config(load_config_file(y)).n_images == 2 * 3 * 3
    j = tmp_path / "a.json"
    j.write_text(json.dumps(GOOD))
    assert parse_config(load_config_file(j)) == parse_config(GOOD)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as info:
        load_config_file(bad)
    assert "not valid JSON" in info.value.errors["config"]
    with pytest.raises(ConfigError):
        load_config_file(tmp_path / "missing.yaml")


def test_the_example_config_is_valid():
    from pathlib import Path

    cfg = parse_config(load_config_file(Path(__file__).parents[2] / "examples" / "audit.yaml"))
    assert cfg.n_images == 4 * 20 * 7 and cfg.generator == "mobilestylegan-ffhq"


def test_prompt_factors_take_named_levels_for_prompt_generators_only():
    cfg = parse_config({**GOOD, "generator": "sd15-faceid",
                        "factors": {"expression": ["smiling"], "blur": [2]}},
                       generators_available=["dcgan-digiface", "sd15-faceid"])
    assert cfg.factors == {"expression": ["smiling"], "blur": [2.0]}
    errors = errors_of({**GOOD, "generator": "sd15-faceid"})  # not configured here
    assert "not set up on this installation" in errors["generator"]
    with pytest.raises(ConfigError) as info:
        parse_config({**GOOD, "generator": "sd15-faceid",
                      "factors": {"expression": ["yawning"], "yaw": [10]}},
                     generators_available=["sd15-faceid"])
    assert "yawning" in info.value.errors["factors.expression"]
    assert "latent edit" in info.value.errors["factors.yaw"]
    assert "unknown factor" in errors_of({**GOOD, "factors": {"expression": ["smiling"]}})[
        "factors.expression"]


@pytest.mark.parametrize("field,value", [
    ("seed", "\u00b2"),                 # str.isdigit() is true for a superscript two
    ("seed", "１２"),                    # full-width digits
    ("seed", 10**400),
    ("identities_per_group", 10**400),  # beyond float range
    ("generator", ["dcgan-digiface"]),  # unhashable
    ("generator", {"name": "dcgan-digiface"}),
])
def test_hostile_values_are_named_errors_not_crashes(field, value):
    data = {"name": "x", "groups": {"perceived_gender": ["female", "male"]},
            "identities_per_group": 3, "factors": {"blur": [1.0]},
            "fr_models": ["mobilefacenet"], "target_fmr": [0.01], field: value}
    with pytest.raises(ConfigError) as info:
        parse_config(data, fr_models_available=["mobilefacenet"])
    assert set(info.value.errors) == {field}
