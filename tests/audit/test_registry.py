import hashlib
import re

import pytest

from audit.registry import (
    KNOWN_MODELS,
    ModelError,
    ModelHashMismatch,
    ModelNotFoundError,
    ModelRegistry,
    ModelSpec,
    UnknownModelError,
)

NAMES = {"scrfd_500m", "scrfd_2.5g", "mobilefacenet", "genderage", "lightqnet"}
#: insightface pack members: no published hash, recorded at first verification
PACK_MEMBERS = {"genderage_insightface"}


def test_it_knows_the_five_shared_models_and_the_pack_member():
    assert {spec.name for spec in KNOWN_MODELS} == NAMES | PACK_MEMBERS
    assert len({spec.filename for spec in KNOWN_MODELS}) == 6
    for spec in KNOWN_MODELS:
        if spec.name in PACK_MEMBERS:
            assert spec.sha256 is None
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256), spec.name
        assert spec.licence and spec.source
    roles = {spec.name: spec.role for spec in KNOWN_MODELS}
    assert roles == {
        "scrfd_500m": "detector",
        "scrfd_2.5g": "detector",
        "mobilefacenet": "recognition",
        "genderage": "attribute",
        "genderage_insightface": "attribute",
        "lightqnet": "quality",
    }
    sizes = {spec.name: spec.embedding_size for spec in KNOWN_MODELS}
    assert sizes["mobilefacenet"] == 128
    assert all(size is None for name, size in sizes.items() if name != "mobilefacenet")


def test_it_rejects_a_spec_with_an_unknown_role():
    with pytest.raises(ValueError, match="role"):
        ModelSpec("x", "x.onnx", "0" * 64, "painter", "MIT", "here")  # type: ignore[arg-type]


def test_every_shared_model_is_available_and_passes_its_hash(registry):
    assert set(registry.available()) == NAMES
    for name in NAMES:
        path = registry.verify(name)
        assert path == registry.model_dir / registry.spec(name).filename


def test_a_missing_model_dir_names_the_model_and_the_dir(tmp_path):
    missing = tmp_path / "nowhere"
    registry = ModelRegistry(missing)
    with pytest.raises(ModelNotFoundError) as info:
        registry.path("mobilefacenet")
    message = str(info.value)
    assert str(missing) in message
    assert "mobilefacenet" in message
    assert "FACEAUDIT_MODEL_DIR" in message and "download" in message
    assert isinstance(info.value, ModelError)
    assert registry.available() == []


def test_a_file_with_the_wrong_hash_is_rejected(tmp_path):
    content = b"this is not an onnx model"
    (tmp_path / "mobilefacenet.onnx").write_bytes(content)
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelHashMismatch) as info:
        registry.verify("mobilefacenet")
    assert info.value.expected == registry.spec("mobilefacenet").sha256
    assert info.value.actual == hashlib.sha256(content).hexdigest()
    assert info.value.expected in str(info.value) and info.value.actual in str(info.value)
    assert isinstance(info.value, ModelError)


def test_a_replaced_file_is_hashed_again(tmp_path):
    path = tmp_path / "genderage_2018.onnx"
    path.write_bytes(b"first")
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelHashMismatch) as first:
        registry.verify("genderage")
    path.write_bytes(b"second, longer")
    with pytest.raises(ModelHashMismatch) as second:
        registry.verify("genderage")
    assert first.value.actual == hashlib.sha256(b"first").hexdigest()
    assert second.value.actual == hashlib.sha256(b"second, longer").hexdigest()


def test_available_lists_only_files_that_exist_and_verify(tmp_path, registry):
    good = registry.verify("genderage").read_bytes()
    (tmp_path / "genderage_2018.onnx").write_bytes(good)
    assert ModelRegistry(tmp_path).available() == ["genderage"]
    # a copy re-saved with other metadata (different bytes) is not offered, and is named
    (tmp_path / "mobilefacenet.onnx").write_bytes(registry.verify("mobilefacenet").read_bytes()
                                                  + b"\x00")
    assert ModelRegistry(tmp_path).available() == ["genderage"]
    assert list(ModelRegistry(tmp_path).damaged()) == ["mobilefacenet"]


def test_a_pack_member_is_recorded_at_first_verification_and_checked_after(tmp_path):
    from audit.registry import registered_hashes

    path = tmp_path / "buffalo_s" / "genderage.onnx"
    path.parent.mkdir()
    path.write_bytes(b"first copy")
    registry = ModelRegistry(tmp_path)
    assert registry.available() == ["genderage_insightface"]
    record = registered_hashes(tmp_path)["buffalo_s/genderage.onnx"]
    assert record["sha256"] == hashlib.sha256(b"first copy").hexdigest()
    path.write_bytes(b"swapped later")
    with pytest.raises(ModelHashMismatch):
        registry.verify("genderage_insightface")
    assert registry.available() == []


def test_an_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(UnknownModelError) as info:
        ModelRegistry(tmp_path).spec("arcface_r100")
    message = str(info.value)
    assert "arcface_r100" in message
    for name in NAMES:
        assert name in message
    assert isinstance(info.value, ModelError)


def test_from_env_reads_the_model_dir_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEAUDIT_MODEL_DIR", str(tmp_path))
    assert ModelRegistry.from_env().model_dir == tmp_path
