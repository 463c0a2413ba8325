"""Each diffusion route conditions on the embedding it was trained on, and on no other
(generator.diffusion.backend): IP-Adapter FaceID on insightface buffalo_l's ArcFace, Arc2Face on
its authors' own arcface.onnx. A wrong choice is a configuration error, refused before anything
is loaded; a missing file is named with where it goes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.diffusion.backend import (
    ROUTE_IDENTITY_MODELS,
    DiffusionNotConfigured,
    identity_model_problem,
    load_arc2face_backend,
    load_faceid_backend,
    render_options,
    route_identity_model,
    route_problems,
)

ROOT = Path(__file__).resolve().parents[2]


def test_each_route_names_the_embedding_it_was_trained_on():
    assert {r: route_identity_model(r) for r in ("sd15-faceid", "sdxl-faceid", "arc2face")} == {
        "sd15-faceid": "buffalo_l", "sdxl-faceid": "buffalo_l", "arc2face": "arc2face_arcface"}
    assert set(ROUTE_IDENTITY_MODELS.values()) == {"buffalo_l", "arc2face_arcface"}
    with pytest.raises(ValueError, match="not a diffusion route"):
        route_identity_model("dcgan-digiface")
    # left out, a route's settings mean the route's own model
    assert render_options({}, "arc2face")[0] == "arc2face_arcface"
    assert render_options({"size": 256}, "sd15-faceid") == ("buffalo_l",
                                                            {"height": 256, "width": 256})


@pytest.mark.parametrize("named", ["buffalo_s", "antelopev2", "mobilefacenet",
                                   "arc2face_arcface"])
def test_faceid_refuses_every_identity_model_but_buffalo_l(named):
    for route in ("sd15-faceid", "sdxl-faceid"):
        problem = identity_model_problem(route, {"identity_model": named})
        assert problem.startswith(f"{route}: identity_model {named!r} is refused")
        assert "trained on insightface buffalo_l's ArcFace" in problem
        assert '"identity_model": "buffalo_l"' in problem and "FACEAUDIT_DIFFUSION" in problem
        assert identity_model_problem(route, {"identity_model": "buffalo_l"}) is None
        assert identity_model_problem(route, {}) is None


@pytest.mark.parametrize("named", ["antelopev2", "buffalo_l", "buffalo_s"])
def test_arc2face_refuses_every_identity_model_but_its_own(named):
    problem = identity_model_problem("arc2face", {"identity_model": named})
    assert "arcface.onnx" in problem and "glintr100.onnx" in problem
    assert '"identity_model": "arc2face_arcface"' in problem
    assert identity_model_problem("arc2face", {"identity_model": "arc2face_arcface"}) is None


def test_route_problems_name_each_missing_file_and_where_it_goes(tmp_path):
    lines = route_problems("arc2face", {}, tmp_path)
    assert len(lines) == 2 and all(line.startswith("arc2face conditions on identity model "
                                                    "arc2face_arcface") for line in lines)
    assert str(tmp_path / "arc2face" / "arcface.onnx") in lines[1]
    assert "huggingface.co/FoivosPar/Arc2Face" in lines[1]
    assert str(tmp_path / "antelopev2" / "scrfd_10g_bnkps.onnx") in lines[0]
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        (tmp_path / "buffalo_l").mkdir(exist_ok=True)
        (tmp_path / "buffalo_l" / name).write_bytes(b"x")
    assert route_problems("sd15-faceid", {}, tmp_path) == []
    # a wrong model is said first, alone: its files are beside the point
    assert route_problems("sd15-faceid", {"identity_model": "antelopev2"}, tmp_path) == [
        identity_model_problem("sd15-faceid", {"identity_model": "antelopev2"})]


def test_the_loaders_refuse_a_wrong_identity_model_before_loading_anything():
    with pytest.raises(DiffusionNotConfigured, match="buffalo_l's ArcFace"):
        load_faceid_backend(name="sdxl-faceid", base_model="/nowhere", adapter="/x",
                            identity_model="antelopev2")
    with pytest.raises(DiffusionNotConfigured, match="arc2face_arcface"):
        load_arc2face_backend(base_model="/nowhere", identity_model="antelopev2")
    code = ("import sys\n"
            "from generator.diffusion.backend import load_arc2face_backend\n"
            "try:\n"
            "    load_arc2face_backend(base_model='/nowhere', identity_model='buffalo_l')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["DiffusionNotConfigured", "False"], out.stderr
