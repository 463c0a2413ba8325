"""insightface's buffalo_s gender-age model (the stand-in a fresh machine fetches), tested with
tiny random weights in the real file layout (input ``data`` 1x3x96x96, one output of 3) against
insightface's own ``Attribute.get`` on a real photo's detected faces."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")


def tiny_genderage(path, seed=0):
    """A 96x96 -> 3 linear graph: Flatten, then a fixed random MatMul (no Sub/Mul nodes first,
    so insightface reads mean 127.5 / std 128 from it, as for the real buffalo model)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((3 * 96 * 96, 3)) / 300.0).astype(np.float32)
    b = np.array([0.0, 0.0, 0.35], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["data"], ["flat"], name="flatten0"),
         helper.make_node("MatMul", ["flat", "w"], ["mm"], name="fc1_mm"),
         helper.make_node("Add", ["mm", "b"], ["fc1"], name="fc1_add")],
        "genderage",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_it_reads_the_faces_as_insightface_does(tmp_path, registry):
    import cv2
    from insightface.app.common import Face
    from insightface.data import get_image
    from insightface.model_zoo.attribute import Attribute

    from audit.detection import FaceDetector
    from audit.registry import ModelRegistry
    from audit.sensors import InsightfaceGenderAgeSensor, gender_age_model

    pack = tmp_path / "buffalo_s"
    pack.mkdir()
    tiny_genderage(pack / "genderage.onnx")
    local = ModelRegistry(tmp_path)
    assert gender_age_model(local) == "genderage_insightface"
    sensor = InsightfaceGenderAgeSensor(local)

    photo = cv2.cvtColor(get_image("t1"), cv2.COLOR_BGR2RGB)  # six people
    half = photo.shape[1] // 2
    images = [np.ascontiguousarray(x) for x in
              (photo, photo[:, ::-1], photo[:, :half], photo[:, half:])]
    found = [(im, d) for im, d in zip(images, FaceDetector(registry).detect_batch(images), strict=True)
             if d.found]
    assert len(found) >= 3
    boxes = np.stack([d.bbox for _, d in found])
    male, age = sensor.predict_faces([im for im, _ in found], boxes)

    reference = Attribute(model_file=str(pack / "genderage.onnx"))
    for i, (image, d) in enumerate(found):
        gender, years = reference.get(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), Face(bbox=d.bbox))
        assert (male[i] >= 0.5) == (gender == 1)
        assert age[i] == years
    assert len(set(age.tolist())) > 1  # the faces' crops differ, so their readings do
    assert sensor.weights_sha256 == local.sha256("genderage_insightface")


def test_the_2018_model_is_preferred_when_both_are_present(tmp_path, registry):
    from audit.registry import ModelRegistry
    from audit.sensors import gender_age_model

    (tmp_path / "buffalo_s").mkdir()
    tiny_genderage(tmp_path / "buffalo_s" / "genderage.onnx")
    (tmp_path / "genderage_2018.onnx").write_bytes(registry.verify("genderage").read_bytes())
    assert gender_age_model(ModelRegistry(tmp_path)) == "genderage"
