"""The create-audit form says which identity model each diffusion route takes, when one is
offered."""

import pytest

from webapp.audits.forms import AuditForm

pytestmark = pytest.mark.django_db


def test_the_generator_help_names_each_routes_identity_model(settings):
    settings.FACEAUDIT_DIFFUSION = {}
    assert "buffalo_l" not in AuditForm().fields["generator"].help_text
    settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": {"base_model": "/m", "adapter": "/a"}}
    form = AuditForm()
    text = form.fields["generator"].help_text
    assert "IP-Adapter FaceID (SD 1.5, SDXL) only from insightface buffalo_l's ArcFace" in text
    assert "Arc2Face only from its own arcface.onnx" in text
    assert "baseline" in text and "never judges identity drift" in text
    assert "sd15-faceid" in [value for value, _ in form.fields["generator"].choices]
