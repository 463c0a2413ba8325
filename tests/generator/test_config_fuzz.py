"""Config files fuzzed with hypothesis: whatever a file holds, reading and checking it either
gives a valid config or raises ConfigError whose keys name the fields at fault, never another
exception."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.config import FIELDS, ConfigError, load_config_file, parse_config

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["female", "male", "blur", "2", "-1",
                                                           "1e400", "\u00b2", "mobilefacenet"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
keys = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=12))
configs = st.dictionaries(keys, values, max_size=8)


def check(path) -> None:
    try:
        data = load_config_file(path)
        parse_config(data, fr_models_available=["mobilefacenet"])
    except ConfigError as exc:
        assert exc.errors and all(isinstance(k, str) and v for k, v in exc.errors.items())


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_in_a_yaml_or_json_file_is_handled(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("cfg")
    for suffix in (".yaml", ".json"):
        path = folder / f"audit{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        check(path)


@FUZZ
@given(data=configs)
def test_any_structure_with_the_config_fields_is_handled(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cfg")
    (folder / "audit.json").write_text(json.dumps(data, allow_nan=True))
    check(folder / "audit.json")
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    (folder / "audit.yaml").write_text(text)
    check(folder / "audit.yaml")


def test_an_oversized_file_is_refused_by_size(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "#" * 70_000)
    try:
        load_config_file(path)
    except ConfigError as exc:
        assert "limit" in exc.errors["config"]
    else:
        raise AssertionError("a 70 KB config file was accepted")
