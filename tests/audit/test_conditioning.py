"""The identity models of the diffusion routes (audit.conditioning, audit.registry) and
insightface's rule for an ArcFace graph's input scaling (audit.recognition).

buffalo_l, antelopev2 and Arc2Face's arcface.onnx are not available offline, so the packs are
rebuilt in their real file layout: the real SCRFD-2.5GF detector (``shared/models``) stands in for
the packs' SCRFD-10GF under their file names, and tiny random ArcFace graphs for the recognisers.
The expected embeddings come from insightface's own ``FaceAnalysis`` on those folders, run the
way the adapters' authors ran it, and the expected scalings from insightface's ``ArcFaceONNX``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import insightface
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from insightface.app import FaceAnalysis
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from onnx import TensorProto, helper, numpy_helper

from audit.conditioning import IdentityEncoder, identity_encoder
from audit.recognition import InsightFacePackRecognizer, arcface_input_scaling
from audit.registry import (
    IDENTITY_MODELS,
    ModelError,
    ModelNotFoundError,
    ModelRegistry,
    identity_model_paths,
    missing_identity_files,
)

T1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"  # six people


def arcface_graph(path: Path, *, lead: tuple[tuple[str, str], ...] = (), pad: int = 0,
                  dim: int = 512, seed: int = 0) -> Path:
    """A random (N,3,112,112) -> (N,dim) ArcFace-shaped graph: ``pad`` Identity nodes, then the
    ``lead`` nodes ``(op_type, node name)`` (Sub subtracts 127.5, Mul multiplies by 1/127.5:
    normalisation inside the graph), then conv, global pooling and a linear layer."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((8, dim)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
             numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale")]
    nodes, x = [], "input.1"
    for i in range(pad):
        nodes.append(helper.make_node("Identity", [x], [f"id{i}"], name=f"Identity_{i}"))
        x = f"id{i}"
    for i, (op, name) in enumerate(lead):
        nodes.append(helper.make_node(op, [x, "mean" if op == "Sub" else "scale"], [f"n{i}"],
                                      name=name))
        x = f"n{i}"
    nodes += [helper.make_node("Conv", [x, "w"], ["c"], strides=[2, 2], name="Conv_9"),
              helper.make_node("GlobalAveragePool", ["c"], ["p"], name="GlobalAveragePool_10"),
              helper.make_node("Flatten", ["p"], ["f"], name="Flatten_11"),
              helper.make_node("MatMul", ["f", "fc"], ["683"], name="MatMul_12")]
    graph = helper.make_graph(
        nodes, "arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT,
                                                         ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


IN_GRAPH = (("Sub", "Sub_0"), ("Mul", "Mul_1"))  # a torch export that normalises inside
MXNET = (("Sub", "_minus0"), ("Mul", "_mul0"))  # MXNet's names for the same


@pytest.mark.parametrize(("lead", "pad", "expected"), [
    ((), 0, (127.5, 127.5)),  # raw pixels in: insightface scales them
    (IN_GRAPH, 0, (0.0, 1.0)),  # the graph scales them itself
    (MXNET, 0, (0.0, 1.0)),
    (IN_GRAPH[:1], 0, (127.5, 127.5)),  # a Sub alone is not enough
    ((("Sub", "normalise/sub"), ("Mul", "normalise/mul")), 0, (127.5, 127.5)),  # names, not ops
    (IN_GRAPH, 7, (127.5, 127.5)),  # Mul is the 9th node: past the 8 insightface reads
    (IN_GRAPH, 6, (0.0, 1.0)),  # both within the first 8
])
def test_the_input_scaling_is_read_from_the_graph_as_insightface_reads_it(tmp_path, lead, pad,
                                                                         expected):
    path = arcface_graph(tmp_path / "rec.onnx", lead=lead, pad=pad)
    insight = ArcFaceONNX(model_file=str(path))
    assert arcface_input_scaling(path) == expected
    assert (insight.input_mean, insight.input_std) == expected
    assert arcface_input_scaling(onnx.load(str(path))) == expected


@pytest.mark.parametrize("lead", [(), IN_GRAPH])
def test_a_pack_recogniser_feeds_its_graph_as_insightface_does(tmp_path, lead):
    path = arcface_graph(tmp_path / "buffalo_l" / "w600k_r50.onnx", lead=lead)
    rec = InsightFacePackRecognizer(ModelRegistry(tmp_path), "buffalo_l")
    crops = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    got = rec.embed(crops)
    # insightface's own feeding: BGR crops through ArcFaceONNX.get_feat (it swaps to RGB)
    raw = ArcFaceONNX(model_file=str(path)).get_feat([c[:, :, ::-1] for c in crops])
    np.testing.assert_allclose(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    # and the fixed (x - 127.5) / 127.5 of before is right only for graphs without the lead
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fixed = sess.run(None, {"input.1": ((crops.astype(np.float32) - 127.5) / 127.5)
                            .transpose(0, 3, 1, 2)})[0]
    fixed /= np.linalg.norm(fixed, axis=1, keepdims=True)
    assert np.allclose(got, fixed, atol=1e-5) is (lead == ())
    assert (rec.MEAN, rec.STD) == ((127.5, 127.5) if lead == () else (0.0, 1.0))


# --- the identity encoders against FaceAnalysis ---------------------------------------------------

@pytest.fixture(scope="module")
def scrfd(model_dir):
    """The real SCRFD-2.5GF (``model_dir``: the shared models, tests/audit/conftest.py)."""
    return model_dir / "scrfd_2.5g_bnkps.onnx"


@pytest.fixture(scope="module")
def packs(tmp_path_factory, scrfd):
    """buffalo_l, antelopev2's detector and Arc2Face's arcface.onnx in the real layout."""
    root = tmp_path_factory.mktemp("identity-models")
    arcface_graph(root / "buffalo_l" / "w600k_r50.onnx", seed=3)
    (root / "buffalo_l" / "det_10g.onnx").symlink_to(scrfd)
    (root / "antelopev2").mkdir()
    (root / "antelopev2" / "scrfd_10g_bnkps.onnx").symlink_to(scrfd)
    arcface_graph(root / "arc2face" / "arcface.onnx", lead=MXNET, seed=4)
    return root


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(T1))  # BGR, 886 x 1280, six faces


def face_analysis(folder: Path) -> FaceAnalysis:
    app = FaceAnalysis(name=str(folder), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    return app


def test_faceid_identity_is_faceanalysis_first_face_normed_embedding(packs, photo):
    """IP-Adapter FaceID's recipe: FaceAnalysis(name="buffalo_l"), det_size (640, 640),
    faces[0].normed_embedding."""
    faces = face_analysis(packs / "buffalo_l").get(photo)
    area = [(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]) for f in faces]
    assert len(faces) == 6 and int(np.argmax(area)) != 0  # first and largest are different
    encoder = IdentityEncoder(packs, "buffalo_l")
    blank = np.full((256, 256, 3), 128, np.uint8)
    got = encoder([photo[:, :, ::-1], blank])
    np.testing.assert_allclose(got[0], faces[0].normed_embedding, atol=1e-6)
    assert np.isnan(got[1]).all()  # no face: a row of NaN
    assert encoder.embedding_size == 512 and (encoder.input_mean, encoder.input_std) == (127.5,
                                                                                         127.5)
    assert encoder.models["buffalo_l/det_10g.onnx"] == (
        "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9")  # the file's hash
    assert encoder.describe()["model"] == "buffalo_l"


def test_arc2face_identity_is_the_largest_face_with_its_own_arcface(packs, photo, scrfd,
                                                                   tmp_path):
    """Arc2Face's recipe: FaceAnalysis(name="antelopev2") with arcface.onnx in the folder and
    glintr100.onnx deleted, det_size (640, 640), the largest face, embedding / its norm."""
    authors = tmp_path / "antelopev2"  # the folder as Arc2Face's README has it
    authors.mkdir()
    (authors / "scrfd_10g_bnkps.onnx").symlink_to(scrfd)
    shutil.copy(packs / "arc2face" / "arcface.onnx", authors / "arcface.onnx")
    faces = face_analysis(authors).get(photo)
    largest = sorted(faces, key=lambda x: (x["bbox"][2] - x["bbox"][0])
                     * (x["bbox"][3] - x["bbox"][1]))[-1]
    expected = largest["embedding"] / np.linalg.norm(largest["embedding"])
    encoder = IdentityEncoder(packs, "arc2face_arcface")
    np.testing.assert_allclose(encoder(photo[None, :, :, ::-1])[0], expected, atol=1e-6)
    # its graph normalises inside (MXNet names): raw pixels in, as insightface feeds it
    assert (encoder.input_mean, encoder.input_std) == (0.0, 1.0)
    first = faces[0]["embedding"] / np.linalg.norm(faces[0]["embedding"])
    assert not np.allclose(first, expected, atol=1e-3)


def test_encoders_are_loaded_once_per_files(packs):
    a = identity_encoder(packs, "buffalo_l")
    assert identity_encoder(packs, "buffalo_l") is a
    assert identity_encoder(packs, "arc2face_arcface") is not a


def test_missing_files_are_named_with_where_they_go_and_where_they_come_from(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        identity_model_paths(tmp_path, "arc2face_arcface")
    text = str(info.value)
    assert str(tmp_path / "arc2face" / "arcface.onnx") in text
    assert "huggingface.co/FoivosPar/Arc2Face" in text
    assert str(tmp_path / "antelopev2" / "scrfd_10g_bnkps.onnx") in text
    assert "WebFace42M" in text  # what the model is for
    arcface_graph(tmp_path / "buffalo_l" / "w600k_r50.onnx")
    lines = missing_identity_files(tmp_path, "buffalo_l")
    assert len(lines) == 1 and str(tmp_path / "buffalo_l" / "det_10g.onnx") in lines[0]
    assert "releases/download/v0.7/buffalo_l.zip" in lines[0]
    with pytest.raises(ModelNotFoundError, match="det_10g.onnx"):
        IdentityEncoder(tmp_path, "buffalo_l")
    with pytest.raises(ModelError, match="unknown identity model 'antelopev2'"):
        missing_identity_files(tmp_path, "antelopev2")
    assert set(IDENTITY_MODELS) == {"buffalo_l", "arc2face_arcface"}


def test_a_file_of_the_wrong_kind_is_refused(tmp_path):
    arcface_graph(tmp_path / "buffalo_l" / "w600k_r50.onnx")
    arcface_graph(tmp_path / "buffalo_l" / "det_10g.onnx")  # a recogniser where the detector goes
    with pytest.raises(ModelError, match="det_10g.onnx is not an SCRFD face detector"):
        IdentityEncoder(tmp_path, "buffalo_l")


# --- how much the crop matters: the project's analysis crop against FaceAnalysis' ---------------

@pytest.mark.slow
def test_the_analysis_crop_and_faceanalysis_crop_give_different_embeddings(model_dir):
    """The numbers the README states. 32 MobileStyleGAN faces shrunk to 60 % of a 512-px
    canvas (edges replicated; at full frame SCRFD at 640 misses most of them), embedded by the
    real MobileFaceNet from two crops of the same image: the project's analysis crop (SCRFD-500MF
    on the padded canvas at 192, what the worker used before) and FaceAnalysis' (SCRFD at 640 on
    the image; SCRFD-2.5GF stands in for buffalo_l's 10GF). Same faces, cosine well below 1;
    different faces far lower."""
    from insightface.model_zoo import get_model
    from insightface.utils.face_align import norm_crop

    from audit.analysis import FaceAnalyzer
    from audit.recognition import MobileFaceNetRecognizer
    from generator.mobilestylegan import available, load_mobilestylegan

    if not available():
        pytest.skip("MobileStyleGAN is not installed")
    gen = load_mobilestylegan()
    faces = np.concatenate([gen.generate(gen.sample_latents(list(range(s, s + 8))))
                            for s in range(0, 32, 8)])
    m = int(512 * 0.6)
    pad = (512 - m) // 2
    images = np.stack([cv2.copyMakeBorder(cv2.resize(f, (m, m), interpolation=cv2.INTER_AREA),
                                          pad, 512 - m - pad, pad, 512 - m - pad,
                                          cv2.BORDER_REPLICATE) for f in faces])
    registry = ModelRegistry(model_dir)
    batch = FaceAnalyzer(registry, recognizers=("mobilefacenet",), expression=False
                         ).analyze(list(images))
    project = batch.embeddings["mobilefacenet"]
    rec = MobileFaceNetRecognizer(registry)
    det = get_model(str(model_dir / "scrfd_2.5g_bnkps.onnx"), providers=["CPUExecutionProvider"])
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    theirs = np.full_like(project, np.nan)
    for i, img in enumerate(images):
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        boxes, kps = det.detect(bgr, max_num=0)
        if len(boxes):
            theirs[i] = rec.embed(np.ascontiguousarray(norm_crop(bgr, kps[0], 112)[:, :, ::-1])
                                  [None])[0]
    ok = batch.face_found & np.isfinite(theirs).all(axis=1)
    assert ok.sum() >= 30
    same = np.sum(project[ok] * theirs[ok], axis=1)
    assert 0.94 < same.mean() < 0.99 and same.min() > 0.88, (same.mean(), same.min())
    others = theirs[ok] @ theirs[ok].T
    assert np.percentile(others[np.triu_indices(int(ok.sum()), 1)], 99) < 0.6
