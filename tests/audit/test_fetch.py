"""Fetching models on a fresh machine, through the real download code, from a local HTTP server
laid out like the real sources (GitHub raw files at pinned commits, insightface's release zip):
a complete download, an interrupted one that resumes, a server that ignores ranges, a damaged
file, a file that is not the pinned one, and an unreachable source."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from audit import fetch as fetch_mod
from audit.fetch import SOURCES, FetchError, describe_missing, fetch, fetch_required
from audit.registry import ModelRegistry, registered_hashes
from tests.audit.test_genderage_insightface import tiny_genderage


class Faults:
    """What the server does wrong: ``drop_after[path] = n`` closes the connection after n bytes
    (once); ``corrupt`` paths get one byte flipped; ``ignore_range`` answers 200 to a range."""

    def __init__(self):
        self.drop_after: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []


def make_handler(root: Path, faults: Faults):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urlsplit(self.path).path
            rng = self.headers.get("Range")
            faults.requests.append((path, rng))
            file = root / path.lstrip("/")
            if not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
            if path in faults.corrupt:
                data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
            start = 0
            if rng and not faults.ignore_range:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = faults.drop_after.pop(path, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def source_path(url: str) -> str:
    """The path a real source URL has on the mirror (host as first segment)."""
    return "/" + url.split("://", 1)[1]


@pytest.fixture()
def served(tmp_path, registry, monkeypatch):
    """The three sources, served locally in their real layout; yields (faults, www root)."""
    www = tmp_path / "www"
    for name in ("scrfd_500m", "mobilefacenet"):
        target = www / source_path(SOURCES[name].url).lstrip("/")
        target.parent.mkdir(parents=True)
        target.write_bytes(registry.verify(name).read_bytes())
    pack = SOURCES["genderage_insightface"]
    archive = www / source_path(pack.url).lstrip("/")
    archive.parent.mkdir(parents=True)
    tiny_genderage(tmp_path / "genderage.onnx")
    with zipfile.ZipFile(archive, "w") as zf:  # insightface's packs hold files at the top
        zf.write(tmp_path / "genderage.onnx", "genderage.onnx")
        zf.writestr("det_500m.onnx", b"not used here")
    faults = Faults()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(www, faults))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(fetch_mod.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(fetch_mod, "RETRY_PAUSE", 0.0)
    yield faults, www
    server.shutdown()
    server.server_close()


def test_a_fresh_model_dir_gets_every_required_model(tmp_path, served):
    faults, _ = served
    models = tmp_path / "models"
    registry = ModelRegistry(models)
    assert len(describe_missing(registry)) == 3
    seen = []
    written = fetch_required(registry, lambda label, done, total: seen.append((label, done)))
    assert sorted(p.name for p in written) == ["genderage.onnx",
                                               "mobilefacenet.onnx", "scrfd_500m_bnkps.onnx"]
    assert set(registry.available()) == {"scrfd_500m", "mobilefacenet", "genderage_insightface"}
    assert describe_missing(registry) == []
    # the pack member's hash is recorded from what was downloaded
    member = (models / "buffalo_s" / "genderage.onnx").read_bytes()
    assert registered_hashes(models)["buffalo_s/genderage.onnx"]["sha256"] == \
        hashlib.sha256(member).hexdigest()
    assert not list(models.rglob("*.part")) and not (models / ".downloads" / "buffalo_s.zip").exists()
    assert {label for label, _ in seen} == {"scrfd_500m_bnkps.onnx", "mobilefacenet.onnx",
                                            "buffalo_s.zip"}
    # a second run has nothing to do and sends no request
    before = len(faults.requests)
    assert fetch_required(registry) == []
    assert len(faults.requests) == before


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path, served):
    faults, www = served
    path = source_path(SOURCES["scrfd_500m"].url)
    faults.drop_after[path] = 100_000
    registry = ModelRegistry(tmp_path / "models")
    fetch(registry, ["scrfd_500m"])
    registry.verify("scrfd_500m")
    ranges = [rng for p, rng in faults.requests if p == path]
    assert ranges == [None, "bytes=100000-"]


def test_a_part_left_by_a_killed_run_is_resumed_by_the_next(tmp_path, served, registry):
    faults, _ = served
    models = tmp_path / "models"
    models.mkdir()
    good = registry.verify("mobilefacenet").read_bytes()
    (models / "mobilefacenet.onnx.part").write_bytes(good[:1_234_567])
    fetch(ModelRegistry(models), ["mobilefacenet"])
    assert (models / "mobilefacenet.onnx").read_bytes() == good
    assert [r for p, r in faults.requests] == ["bytes=1234567-"]


def test_a_server_that_ignores_the_range_restarts_the_file_cleanly(tmp_path, served, registry):
    faults, _ = served
    faults.ignore_range = True
    models = tmp_path / "models"
    models.mkdir()
    (models / "mobilefacenet.onnx.part").write_bytes(b"stale bytes from another file")
    fetch(ModelRegistry(models), ["mobilefacenet"])
    assert (models / "mobilefacenet.onnx").read_bytes() == \
        registry.verify("mobilefacenet").read_bytes()


def test_a_damaged_download_is_refused_and_nothing_is_kept(tmp_path, served):
    faults, _ = served
    faults.corrupt.add(source_path(SOURCES["mobilefacenet"].url))
    models = tmp_path / "models"
    registry = ModelRegistry(models)
    with pytest.raises(FetchError, match="sha256") as info:
        fetch(registry, ["mobilefacenet"])
    assert "run the command again" in str(info.value)
    assert not (models / "mobilefacenet.onnx").exists()
    assert not list(models.rglob("*.part"))
    faults.corrupt.clear()  # the next run succeeds
    fetch(registry, ["mobilefacenet"])
    assert registry.available() == ["mobilefacenet"]


def test_a_copy_with_the_wrong_hash_in_the_model_dir_is_fetched_again(tmp_path, served, registry):
    models = tmp_path / "models"
    models.mkdir()
    (models / "scrfd_500m_bnkps.onnx").write_bytes(b"re-saved with other metadata")
    local = ModelRegistry(models)
    assert local.available() == [] and "scrfd_500m" in local.damaged()
    fetch(local, ["scrfd_500m"])
    assert local.available() == ["scrfd_500m"]


def test_an_archive_member_that_is_not_a_model_is_refused(tmp_path, served):
    _, www = served
    archive = www / source_path(SOURCES["genderage_insightface"].url).lstrip("/")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("genderage.onnx", b"<html>rate limited</html>")
    models = tmp_path / "models"
    with pytest.raises(FetchError, match="not a readable ONNX model"):
        fetch(ModelRegistry(models), ["genderage_insightface"])
    assert not (models / "buffalo_s" / "genderage.onnx").exists()
    assert registered_hashes(models) == {}


def test_offline_the_error_names_the_url_and_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch_mod.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(fetch_mod, "RETRY_PAUSE", 0.0)
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(FetchError) as info:
        fetch_required(registry)
    assert "127.0.0.1:9" in str(info.value) and "run the same command again" in str(info.value)
    lines = describe_missing(registry)
    assert len(lines) == 3
    for filename, source in [("scrfd_500m_bnkps.onnx", "yukkki7/FaceAnalysisApp"),
                             ("mobilefacenet.onnx", "foamliu/MobileFaceNet"),
                             ("buffalo_s/genderage.onnx", "buffalo_s.zip")]:
        line = next(x for x in lines if x.startswith(filename))
        assert str(tmp_path / "models" / filename) in line and source in line
        assert "licence" in line


def test_the_command_fetches_with_a_progress_bar_and_check_reports(tmp_path, served, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.FACEAUDIT_MODEL_DIR = str(tmp_path / "models")
    with pytest.raises(CommandError, match="3 required model file"):
        call_command("fetch_models", "--check", stdout=StringIO())
    out, err = StringIO(), StringIO()
    call_command("fetch_models", stdout=out, stderr=err)
    assert out.getvalue().count("fetched and verified") == 3
    assert "100%" in err.getvalue()  # tqdm's bar
    call_command("fetch_models", "--check", stdout=StringIO())
