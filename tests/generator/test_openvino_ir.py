"""The torch interpreter of OpenVINO IR (generator.openvino_ir) and MobileStyleGAN on it
(generator.mobilestylegan_torch): the same numbers as OpenVINO itself, batch N where the IR was
exported at batch 1, the 512-px output equal to the 1024-px image box-downscaled, and a clear
error for an op it cannot run.

Tolerance against OpenVINO: 1e-3 in the [-1, 1] pixel range, an eighth of one 8-bit grey level
(2/255 = 7.8e-3), so no stored pixel can move by more than the rounding of one level. Both sides
run fp32; what differs is only the summation order inside the convolutions (OpenVINO's fused
kernels, oneDNN's blocking in torch), measured at about 1e-4 at most and 1e-6 on average."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.openvino_ir import UnsupportedOpError, load_ir

TOLERANCE = 1e-3  # see the module docstring
SEEDS = (11, 12, 13)


def _data_dir() -> Path | None:
    spec = importlib.util.find_spec("random_face")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "data"
    return d if (d / "SynthesisNetwork.xml").exists() else None


needs_network = pytest.mark.skipif(
    _data_dir() is None or importlib.util.find_spec("openvino") is None,
    reason="MobileStyleGAN's IR or OpenVINO not installed (pip install openvino==2026.4.0 and "
           "pip install --no-deps random-face==2021.7.21.1; ./faceaudit does)")


def _ov_models():
    import openvino as ov

    core, d = ov.Core(), _data_dir()
    config = {"INFERENCE_PRECISION_HINT": "f32"}  # else bf16 on CPUs that have it
    return tuple(core.compile_model(core.read_model(str(d / f"{n}.xml"), str(d / f"{n}.bin")),
                                    "CPU", config)
                 for n in ("MappingNetwork", "SynthesisNetwork"))


@pytest.fixture(scope="module")
def ov_models():
    return _ov_models()


@pytest.fixture(scope="module")
def gan():
    from generator.mobilestylegan_torch import load_torch_mobilestylegan

    return load_torch_mobilestylegan(_data_dir())


@pytest.fixture(scope="module")
def z():
    return np.stack([np.random.Generator(np.random.PCG64(s)).standard_normal(512)
                     for s in SEEDS]).astype(np.float32)


@pytest.fixture(scope="module")
def w(ov_models, z):
    """(3, 512) w of the seeds as OpenVINO maps them (real latents, not random vectors)."""
    mapping, _ = ov_models
    return np.concatenate([np.asarray(mapping(z[i:i + 1])[0]) for i in range(len(z))])


@pytest.fixture(scope="module")
def ov_images(ov_models, w):
    _, synthesis = ov_models
    return np.concatenate([np.asarray(synthesis(w[i:i + 1])[0]) for i in range(len(w))])


@pytest.fixture(scope="module")
def torch_images(gan, w):
    """(3, 3, 1024, 1024) from one batch of 3."""
    return gan.synthesise(w, size=1024)


@pytest.fixture(scope="module")
def torch_singles(gan, w):
    """The same three images from three batch-1 runs."""
    return np.concatenate([gan.synthesise(w[i:i + 1], size=1024) for i in range(len(w))])


def _report(record_property, name: str, diff: np.ndarray) -> tuple[float, float]:
    worst, mean = float(diff.max()), float(diff.mean())
    print(f"{name}: max abs difference {worst:.3g}, mean {mean:.3g}")
    record_property(f"{name}_max_abs", worst)
    record_property(f"{name}_mean_abs", mean)
    return worst, mean


@needs_network
def test_mapping_matches_openvino(gan, ov_models, z, w, record_property):
    got = gan.map(z)
    assert got.shape == (3, 512) and got.dtype == np.float32
    worst, _ = _report(record_property, "mapping", np.abs(got - w))
    assert worst < TOLERANCE


@needs_network
def test_synthesis_matches_openvino_at_1024(torch_images, ov_images, record_property):
    assert torch_images.shape == ov_images.shape == (3, 3, 1024, 1024)
    assert torch_images.dtype == np.float32
    worst, _ = _report(record_property, "synthesis_1024", np.abs(torch_images - ov_images))
    assert worst < TOLERANCE
    assert -1.6 < torch_images.min() and torch_images.max() < 2.2  # about [-1, 1], unclipped


@needs_network
def test_a_batch_of_three_equals_three_single_runs(torch_images, torch_singles,
                                                  record_property):
    # not bit-identical: oneDNN picks its convolution blocking by batch size
    worst, _ = _report(record_property, "batch3_vs_single",
                       np.abs(torch_images - torch_singles))
    assert worst < TOLERANCE


@needs_network
def test_512_is_the_1024_image_box_downscaled(gan, w, torch_singles, ov_images,
                                              record_property):
    small = gan.synthesise(w[:1], size=512)  # one latent: the test's time is in the passes
    assert small.shape == (1, 3, 512, 512) and small.dtype == np.float32
    # against the same latent's batch-1 1024 image: the mean of each 2x2 block
    box = torch_singles[:1].reshape(1, 3, 512, 2, 512, 2).mean(axis=(3, 5))
    worst, _ = _report(record_property, "512_vs_box_1024", np.abs(small - box))
    assert worst < 1e-5  # the same pixels up to float rounding
    ov_box = ov_images[:1].reshape(1, 3, 512, 2, 512, 2).mean(axis=(3, 5))
    worst, _ = _report(record_property, "synthesis_512_vs_openvino", np.abs(small - ov_box))
    assert worst < TOLERANCE


@needs_network
def test_bad_latents_are_refused(gan):
    with pytest.raises(ValueError, match=r"\(N, 512\)"):
        gan.synthesise(np.zeros((2, 511), np.float32))
    with pytest.raises(ValueError, match="size"):
        gan.synthesise(np.zeros((1, 512), np.float32), size=256)


# --- a tiny IR written here: no network files needed

_TINY = """<?xml version="1.0"?>
<net name="tiny" version="11">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1">
      <data shape="1,4" element_type="f32"/>
      <output><port id="0" precision="FP32"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="1" name="weight" type="Const" version="opset1">
      <data element_type="f32" shape="4,4" offset="0" size="64"/>
      <output><port id="0" precision="FP32"><dim>4</dim><dim>4</dim></port></output>
    </layer>
    <layer id="2" name="mm" type="MatMul" version="opset1">
      <data transpose_a="false" transpose_b="true"/>
      <input><port id="0"/><port id="1"/></input>
      <output><port id="2" precision="FP32"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="3" name="shape" type="Const" version="opset1">
      <data element_type="i64" shape="3" offset="64" size="24"/>
      <output><port id="0" precision="I64"><dim>3</dim></port></output>
    </layer>
    <layer id="4" name="reshape" type="Reshape" version="opset1">
      <data special_zero="false"/>
      <input><port id="0"/><port id="1"/></input>
      <output><port id="2" precision="FP32"><dim>1</dim><dim>2</dim><dim>2</dim></port></output>
    </layer>
    <layer id="5" name="act" type="{act}" version="opset1">
      <input><port id="0"/></input>
      <output><port id="1" precision="FP32"><dim>1</dim><dim>2</dim><dim>2</dim></port></output>
    </layer>
    <layer id="6" name="out" type="Result" version="opset1">
      <input><port id="0"/></input>
    </layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="2" to-port="0"/>
    <edge from-layer="1" from-port="0" to-layer="2" to-port="1"/>
    <edge from-layer="2" from-port="2" to-layer="4" to-port="0"/>
    <edge from-layer="3" from-port="0" to-layer="4" to-port="1"/>
    <edge from-layer="4" from-port="2" to-layer="5" to-port="0"/>
    <edge from-layer="5" from-port="1" to-layer="6" to-port="0"/>
  </edges>
</net>
"""
_WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 10 - 0.8


def _tiny(tmp_path: Path, act: str) -> Path:
    xml = tmp_path / "tiny.xml"
    xml.write_text(_TINY.replace("{act}", act))
    (tmp_path / "tiny.bin").write_bytes(_WEIGHT.tobytes()
                                        + np.array([1, 2, 2], np.int64).tobytes())
    return xml


def test_an_unsupported_op_is_named_when_the_file_is_loaded(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"FancyOp \(layers act\)"):
        load_ir(_tiny(tmp_path, "FancyOp"))


def test_a_tiny_ir_runs_at_batch_n_in_any_dtype_and_stops_at_a_named_layer(tmp_path):
    module = load_ir(_tiny(tmp_path, "Relu"))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    want = np.maximum(x @ _WEIGHT.T, 0).reshape(3, 2, 2)
    # the Reshape's constant target (1, 2, 2) was exported at batch 1: its 1 is read as N
    got = module(torch.from_numpy(x))
    assert got.shape == (3, 2, 2) and np.allclose(got.numpy(), want, atol=1e-6)
    hidden = module.run([x], outputs=["mm"])["mm"]
    assert np.allclose(hidden.numpy(), x @ _WEIGHT.T, atol=1e-6)
    module = module.to(torch.float64)
    got64 = module(torch.from_numpy(x))
    assert got64.dtype == torch.float64 and np.allclose(got64.numpy(), want, atol=1e-6)
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        module.run([x], outputs=["nope"])
