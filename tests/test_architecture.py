"""The dependency rules of the architecture, checked on the real import graph."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_web_process_never_imports_torch_or_onnxruntime():
    loaded = run(
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'webapp.settings');"
        "import django; django.setup();"
        "import webapp.urls, webapp.audits.views, webapp.audits.forms, worker.dispatch, worker.exports;"
        "from django.test import Client;"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'insightface') if m in sys.modules))")
    assert loaded == "[]"


def test_framework_free_packages_do_not_import_django():
    for package in ("generator", "audit"):
        for path in (ROOT / package).glob("*.py"):
            text = path.read_text()
            assert "import django" not in text and "from django" not in text, path
