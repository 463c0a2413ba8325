"""``manage.py check_diffusion`` on tiny random weights saved in the real layouts (a diffusers
pipeline folder, ``ip-adapter-faceid_sd15.bin`` with its LoRA, the kohya LoRA copy, Arc2Face's
``arc2face/`` and ``encoder/`` folders), with a ready configuration and with files missing,
misnamed or of the wrong kind."""

from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from django.core.management import CommandError, call_command  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from tests.generator.test_diffusion import (  # noqa: E402
    faceid_state_dict,
    save_adapter,
    tiny_sd_pipeline,
    tiny_tokenizer,
    tiny_unet,
)
from tests.generator.test_diffusion_weights import kohya_lora  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::FutureWarning", "ignore::DeprecationWarning", "ignore:peft is not installed")

ARCFACE = 512  # the identity width of the real routes; the tiny adapters take it too


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check-diffusion")
    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(root / "sd15")
    adapter = root / "IP-Adapter-FaceID"
    save_adapter(faceid_state_dict(pipe.unet, ARCFACE, lora_rank=4), adapter,
                 "ip-adapter-faceid_sd15.bin")
    from safetensors.torch import save_file

    save_file(kohya_lora(pipe.unet), str(adapter / "ip-adapter-faceid_sd15_lora.safetensors"))
    # An adapter with the same widths made for a UNet with one layer per block.
    shallow = type(pipe.unet)(**{**dict(pipe.unet.config), "layers_per_block": 1})
    save_adapter(faceid_state_dict(shallow, ARCFACE), adapter, "shallow.bin")
    # Arc2Face: a UNet attending to a 512-wide text encoder, in its own subfolders.
    tokenizer = tiny_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(11)
    CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos,
        pad_token_id=eos, hidden_size=ARCFACE, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, vocab_size=len(tokenizer.get_vocab()))
    ).save_pretrained(root / "Arc2Face" / "encoder")
    type(pipe.unet)(**{**dict(tiny_unet(10).config), "cross_attention_dim": ARCFACE}
                    ).save_pretrained(root / "Arc2Face" / "arc2face")
    # The face models folder: the detector and recogniser of each route's identity model
    # (FaceID: buffalo_l's; Arc2Face: antelopev2's detector and its own arcface.onnx).
    for file in ("buffalo_l/det_10g.onnx", "buffalo_l/w600k_r50.onnx",
                 "antelopev2/scrfd_10g_bnkps.onnx", "arc2face/arcface.onnx"):
        (root / "models" / file).parent.mkdir(parents=True, exist_ok=True)
        (root / "models" / file).write_bytes(b"onnx")
    return {"root": root, "sd15": root / "sd15", "adapter": adapter,
            "arc2face": root / "Arc2Face", "models": root / "models"}


def enforced() -> bool:
    """Whether the identity-model rule of the audits (route_problems) is there to apply."""
    from generator.diffusion import backend

    return hasattr(backend, "route_problems")


def faceid(weights, **extra) -> dict:
    return {"base_model": str(weights["sd15"]), "adapter": str(weights["adapter"]),
            "weight_name": "ip-adapter-faceid_sd15.bin", "identity_model": "buffalo_l", **extra}


def arc2face(weights, **extra) -> dict:
    return {"base_model": str(weights["sd15"]), "arc2face_model": str(weights["arc2face"]),
            "identity_model": "arc2face_arcface", **extra}


def run(settings, weights, routes: dict, *args: str) -> tuple[str, str | None]:
    settings.FACEAUDIT_DIFFUSION = routes
    settings.FACEAUDIT_MODEL_DIR = str(weights["models"])
    settings.FACEAUDIT_TORCH_DEVICE = "cpu"
    out = StringIO()
    try:
        call_command("check_diffusion", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_ready_routes_load_and_render_one_tiny_image(settings, weights):
    pytest.importorskip("peft")
    out, error = run(settings, weights, {"sd15-faceid": faceid(weights),
                                         "arc2face": arc2face(weights)})
    assert error is None, out
    assert out.count("  ready") == 2 and "2 diffusion route(s) ready." in out
    assert (f"ok       base_model {weights['sd15']}: sd15 pipeline, every component present"
            in out)
    assert ("IP-Adapter FaceID: 512-d identity -> 4 tokens of 32, 6 cross-attention layers, "
            "FaceID LoRA rank 4 on 12 attention layers") in out
    assert ("identity model: sd15-faceid needs buffalo_l (IP-Adapter FaceID was trained on the "
            "ArcFace embedding of insightface's buffalo_l pack (w600k_r50.onnx, 512-d)); "
            "configured buffalo_l") in out
    assert ("identity model: arc2face needs arc2face_arcface (Arc2Face was trained on the "
            "embedding of its authors' ArcFace R100 (WebFace42M), arcface.onnx in "
            "FoivosPar/Arc2Face, not on an insightface pack); configured arc2face_arcface") in out
    assert "UNet (arc2face/) and text encoder (encoder/, width 512) present" in out
    # The tiny VAE halves the size and the UNet halves it 3 times: 2 x 8 = 16 px.
    assert out.count("loaded on cpu in") == 2 and out.count("rendered one 16x16 image") == 2
    assert "FaceID LoRA applied: True" in out


def test_a_misnamed_adapter_and_a_missing_weight_file_are_named(settings, weights, tmp_path):
    sd = tmp_path / "sd15"
    shutil.copytree(weights["sd15"], sd)
    (sd / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    (sd / "unet" / "config.json").unlink()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    shutil.copy(weights["adapter"] / "ip-adapter-faceid_sd15.bin",
                adapter / "ip-adapter-faceid-sd15.bin")  # "-" where the name has "_"
    routes = {"sd15-faceid": faceid(weights, base_model=str(sd), adapter=str(adapter))}
    out, error = run(settings, weights, routes)
    assert error == "1 of 1 diffusion route(s) not ready: sd15-faceid (3 problems)"
    assert f"problem  base_model: {sd}/vae/ has no weight file (.safetensors or .bin)" in out
    assert f"problem  base_model: {sd}/unet/config.json is missing" in out
    assert (f"problem  adapter: cannot load IP-Adapter FaceID 'ip-adapter-faceid_sd15.bin' from "
            f"{adapter}: no file 'ip-adapter-faceid_sd15.bin' in {adapter}; that folder holds "
            "ip-adapter-faceid-sd15.bin") in out
    assert "tiny generation skipped: fix the problems above first" in out
    assert "loaded on" not in out


def test_the_kohya_lora_copy_and_an_adapter_for_another_unet_are_refused(settings, weights):
    routes = {"sd15-faceid": faceid(weights,
                                    weight_name="ip-adapter-faceid_sd15_lora.safetensors")}
    out, error = run(settings, weights, routes, "--no-generate")
    assert error is not None
    assert ('Use the .bin, it already contains the LoRA: weight_name "ip-adapter-faceid_sd15.bin"'
            in out)
    out, error = run(settings, weights, {"sd15-faceid": faceid(weights, weight_name="shallow.bin")},
                     "--no-generate")
    assert "problem  adapter shallow.bin does not fit base_model's UNet" in out
    # 6 cross-attention processors (1, 3, ..., 11) in the base; 4 (1, 3, 5, 7) in the adapter's.
    assert "missing for processors [9, 11]" in out


def test_settings_identity_model_and_route_kind_are_checked(settings, weights):
    routes = {
        "sd15-faceid": faceid(weights, identity_model="antelopev2", revision="main",
                              adapater="typo"),
        "sdxl-faceid": faceid(weights),
        "sd15_faceid": faceid(weights),
    }
    out, error = run(settings, weights, routes, "--no-generate")
    assert error.startswith("3 of 3 diffusion route(s) not ready")
    assert "unknown setting 'adapater'; this route reads adapter, adapter_revision," in out
    assert ("'revision' ('main') would pin the base model and the adapter to the same commit, "
            "branch or tag, but they are separate repositories: set 'base_revision' for "
            "base_model and 'adapter_revision' for the adapter instead") in out
    assert "identity model: sd15-faceid needs buffalo_l (" in out
    assert "configured antelopev2" in out
    problems = [line for line in out.splitlines() if line.startswith("  problem")]
    assert any("antelopev2" in line for line in problems)
    assert f"base_model {weights['sd15']} is an sd15 pipeline; sdxl-faceid needs an sdxl one" in out
    assert "'sd15_faceid' is not a diffusion generator; FACEAUDIT_DIFFUSION takes" in out


def test_arc2face_needs_its_own_recogniser_and_both_folders(settings, weights, tmp_path):
    out, error = run(settings, weights,
                     {"arc2face": arc2face(weights, identity_model="buffalo_l")}, "--no-generate")
    assert "identity model: arc2face needs arc2face_arcface (" in out and error
    assert any("buffalo_l" in line for line in out.splitlines() if line.startswith("  problem"))
    partial = tmp_path / "Arc2Face"
    shutil.copytree(weights["arc2face"] / "arc2face", partial / "arc2face")
    out, error = run(settings, weights, {"arc2face": arc2face(weights,
                                                              arc2face_model=str(partial))},
                     "--no-generate")
    assert f"problem  arc2face_model: {partial}/encoder/ is missing" in out and error


def test_a_missing_identity_file_and_no_routes_are_reported(settings, weights, tmp_path):
    if enforced():  # the audits' rule names each file of the identity model that is missing
        settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": faceid(weights)}
        settings.FACEAUDIT_MODEL_DIR = str(tmp_path)  # no buffalo_l here
        out = StringIO()
        with pytest.raises(CommandError, match="sd15-faceid \\(2 problems\\)"):
            call_command("check_diffusion", "--no-generate", stdout=out)
        assert "det_10g.onnx" in out.getvalue() and "w600k_r50.onnx" in out.getvalue()
    settings.FACEAUDIT_DIFFUSION = {}
    with pytest.raises(CommandError, match="FACEAUDIT_DIFFUSION configures no diffusion route"):
        call_command("check_diffusion", stdout=StringIO())


def test_without_the_audits_rule_the_identity_model_is_still_named(weights, monkeypatch):
    """Where route_problems is not there to apply, the check itself refuses another model."""
    from generator.diffusion import backend
    from generator.diffusion.check import check_route

    monkeypatch.delattr(backend, "route_problems", raising=False)
    report = check_route("sd15-faceid", faceid(weights, identity_model="antelopev2"),
                         generate=False, model_dir=weights["models"])
    assert report.problems == [
        "identity model: sd15-faceid needs buffalo_l (IP-Adapter FaceID was trained on the "
        "ArcFace embedding of insightface's buffalo_l pack (w600k_r50.onnx, 512-d)); configured "
        "antelopev2"]
    report = check_route("arc2face", {"base_model": str(weights["sd15"]),
                                      "arc2face_model": str(weights["arc2face"])},
                         generate=False, model_dir=weights["models"])
    assert report.ready and "not set, so the route uses it" in report.findings[-1].text
