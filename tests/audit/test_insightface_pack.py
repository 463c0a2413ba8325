"""The insightface-pack ArcFace adapter, loaded from a small random graph in the pack layout
(the real buffalo_l/antelopev2 files are downloaded at run time by insightface, not available
here); preprocessing is checked against a direct onnxruntime call."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from audit.analysis import load_recognizer
from audit.recognition import InsightFacePackRecognizer
from audit.registry import ModelError, ModelRegistry, available_packs


def tiny_arcface(path, dim=512):
    """A random (N,3,112,112) -> (N,dim) graph: conv, global pooling, linear."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((8, dim)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["input.1", "w"], ["c"], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["683"])]
    graph = helper.make_graph(
        nodes, "arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT,
                                                         ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", dim])], [w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


def test_a_pack_in_the_model_directory_loads_and_embeds_with_arcface_scaling(tmp_path):
    tiny_arcface(tmp_path / "buffalo_l" / "w600k_r50.onnx")
    assert available_packs(tmp_path) == ["buffalo_l"]
    rec = load_recognizer(ModelRegistry(tmp_path), "buffalo_l")
    assert isinstance(rec, InsightFacePackRecognizer) and rec.embedding_size == 512
    assert len(rec.weights_sha256) == 64 and "non-commercial" in rec.licence
    crops = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    got = rec.embed(crops)
    # independent: run the graph directly with (x - 127.5) / 127.5 on RGB NCHW
    sess = ort.InferenceSession(str(tmp_path / "buffalo_l" / "w600k_r50.onnx"))
    raw = sess.run(None, {"input.1": ((crops.astype(np.float32) - 127.5) / 127.5)
                          .transpose(0, 3, 1, 2)})[0]
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.allclose(got, expected, atol=1e-5)


def test_a_missing_pack_says_where_to_put_it(tmp_path):
    with pytest.raises(ModelError, match="put the insightface antelopev2 folder"):
        load_recognizer(ModelRegistry(tmp_path), "antelopev2")
