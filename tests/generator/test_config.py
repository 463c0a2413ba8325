import json

import pytest

from generator.config import (
    MAX_ECHO,
    MAX_FR_MODELS,
    MAX_LEVELS_PER_FACTOR,
    MAX_TARGET_FMRS,
    MAX_THRESHOLDS,
    ConfigError,
    load_config_file,
    parse_config,
    parse_config_text,
)

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
    ("groups", {"skin_tone": ["lighter"]}, "groups", "at least 2"),
    ("groups", {"skin_tone": []}, "groups.skin_tone", "one or more levels"),
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


# --- Hostile configs: aliases, long lists, long values ----------------------------------------

#: A "billion laughs" YAML: nine nested aliases of nine items each would be 9**9 (387 million)
#: strings once expanded, in 300 bytes.
ALIAS_BOMB = "\n".join(
    [f"a0: &a0 [{', '.join(['x'] * 9)}]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["name: bomb", "groups: {perceived_gender: [female, male]}", "identities_per_group: 2",
       "factors: {blur: *a8}"])


def test_yaml_aliases_are_refused_with_the_fix(tmp_path):
    assert len(ALIAS_BOMB.encode()) < 1024
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = info.value.errors["config"]
    assert "aliases" in message and "write the list out" in message
    assert "line 1" in message  # the first anchor
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("text", [
    # an otherwise valid config that reuses a list through an anchor and an alias
    "name: t\ngroups: {perceived_gender: &g [female, male]}\nidentities_per_group: 2\n"
    "factors: {blur: [1]}\nfr_models: [mobilefacenet]\nthresholds: *g\n",
    # an anchor alone, and a merge key (which needs an alias)
    "name: &n t\n",
    "base: &b {name: t}\nconfig:\n  <<: *b\n",
])
def test_any_anchor_or_alias_is_refused(text):
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    assert "anchors and aliases" in info.value.errors["config"]


def test_config_text_over_the_size_limit_is_refused():
    text = "name: t\ndescription: " + "x" * (64 * 1024) + "\n"
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    assert "the limit is 65,536" in info.value.errors["config"]


def test_plain_yaml_still_parses():
    assert parse_config_text("name: t\nthresholds: [0.3, 0.4]\n") == {
        "name": "t", "thresholds": [0.3, 0.4]}


@pytest.mark.parametrize("field,value,key", [
    ("factors", {"blur": ["y" * 5000]}, "factors.blur"),
    ("factors", {"blur": ["1e999x"] * 10}, "factors.blur"),
    ("factors", {"w" * 5000: [1]}, "factors." + "w" * MAX_ECHO + "..."),
    ("groups", {"g" * 5000: ["female"]}, "groups." + "g" * MAX_ECHO + "..."),
    ("groups", {"perceived_gender": ["z" * 5000, "male"]}, "groups.perceived_gender"),
    ("fr_models", ["m" * 5000], "fr_models"),
    ("generator", "s" * 5000, "generator"),
    ("description", "d" * 6000, "description"),
])
def test_errors_repeat_at_most_a_short_part_of_the_input(field, value, key):
    errors = errors_of({**GOOD, field: value})
    assert key in errors, errors
    # the message's own words are under 200 characters; of the input at most MAX_ECHO + "..."
    assert len(errors[key]) < 200 + MAX_ECHO + 3
    if len(str(value)) > 1000:
        assert "..." in errors[key] or field == "description"


def test_many_unknown_fields_are_counted_not_listed():
    errors = errors_of({**GOOD, **{f"extra{i}": 1 for i in range(1000)}})
    assert len(errors) == 6  # five named, one count
    assert "1,000 unknown fields" in errors["config"]


def test_bad_levels_are_shown_as_typed_not_as_python_lists():
    message = errors_of({**GOOD, "factors": {"blur": "15, abc"}})["factors.blur"]
    assert message.endswith("got 15, abc")
    message = errors_of({**GOOD, "factors": {"blur": [15, ["abc", 2]]}})["factors.blur"]
    assert message.endswith("got 15, [abc, 2]")
    message = errors_of({**GOOD, "groups": {"perceived_gender": ["female", ["male"]]}})[
        "groups.perceived_gender"]
    assert "unknown level(s) [male];" in message
    message = errors_of({**GOOD, "fr_models": ["arcface", "facenet"]})["fr_models"]
    assert "model(s) arcface, facenet;" in message
    for message in errors_of({**GOOD, "factors": {"blur": ["a", "b"], "jpeg": ["q"]},
                              "fr_models": ["x", "y"]}).values():
        assert "['" not in message and "']" not in message


@pytest.mark.parametrize("field,limit,make", [
    ("thresholds", 10, lambda n: [round(-0.9 + 0.01 * i, 2) for i in range(n)]),
    ("target_fmr", 10, lambda n: [round(0.001 * (i + 1), 3) for i in range(n)]),
    ("fr_models", 5, lambda n: [f"model{i}" for i in range(n)]),
])
def test_list_fields_are_limited_to_what_a_report_can_show(field, limit, make):
    assert (MAX_THRESHOLDS, MAX_TARGET_FMRS, MAX_FR_MODELS) == (10, 10, 5)
    models = [f"model{i}" for i in range(limit + 1)]
    ok = parse_config({**GOOD, field: make(limit)}, fr_models_available=models) \
        if field == "fr_models" else parse_config({**GOOD, field: make(limit)})
    assert len(getattr(ok, field)) == limit
    with pytest.raises(ConfigError) as info:
        parse_config({**GOOD, field: make(limit + 1)}, fr_models_available=models)
    message = info.value.errors[field]
    assert f"{limit + 1} " in message and f"at most {limit}" in message


def test_thousands_of_thresholds_are_refused_quickly():
    text = ", ".join(f"{-1 + i / 1000:.3f}" for i in range(2000))
    assert len(text) > 12_000
    message = errors_of({**GOOD, "thresholds": text})["thresholds"]
    assert message.startswith("2,000 thresholds; at most 10")


def test_factor_and_axis_levels_are_limited():
    assert MAX_LEVELS_PER_FACTOR == 10
    errors = errors_of({**GOOD, "factors": {"blur": [0.5 + 0.5 * i for i in range(11)]}})
    assert errors["factors.blur"].startswith("11 levels; at most 10")
    errors = errors_of({**GOOD, "groups": {"perceived_gender": ["female", "male"] * 3}})
    assert errors["groups.perceived_gender"].startswith("6 levels; at most 2 on this axis")
    errors = errors_of({**GOOD, "groups": {"skin_tone": ["light"] * 7}})
    assert errors["groups.skin_tone"].startswith("7 levels; at most 6 on this axis")


def test_an_axis_may_hold_one_level_which_every_group_then_shares():
    cfg = parse_config({**GOOD, "groups": {"perceived_gender": ["female"],
                                           "skin_tone": ["lighter", "darker"]}})
    assert cfg.groups == {"perceived_gender": ["female"], "skin_tone": ["lighter", "darker"]}
    # 1 x 2 groups, 5 identities each, baseline + control + 2 blur + 3 downscale = 7 images each
    assert (cfg.n_groups, cfg.n_images) == (2, 2 * 5 * 7)
    from generator.design import plan_design

    assert [g.name for g in plan_design(cfg).groups] == ["female / lighter", "female / darker"]


def test_at_least_two_groups_in_all():
    errors = errors_of({**GOOD, "groups": {"perceived_gender": ["female"],
                                           "skin_tone": ["darker"]}})
    assert set(errors) == {"groups"}
    assert "make 1 group" in errors["groups"] and "at least 2" in errors["groups"]


def test_a_huge_number_as_a_group_level_is_a_config_error_not_a_crash():
    raw = {"name": "x", "groups": {"perceived_gender": [10**5000]}, "identities_per_group": 2,
           "factors": {"blur": [1]}, "fr_models": ["mobilefacenet"], "target_fmr": [0.01]}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert "a number too long to show" in caught.value.errors["groups.perceived_gender"]
