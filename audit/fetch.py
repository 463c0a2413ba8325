"""Fetch the face models an audit needs from the public places that serve them.

A user's machine has internet; the model directory (:mod:`audit.registry`) starts empty there.
:data:`SOURCES` says where each model file comes from:

- a file in a public GitHub repository at a pinned commit (``raw.githubusercontent.com``), whose
  sha256 the registry pins (the same bytes the project was tested with), or
- a member of an insightface model pack (``buffalo_s.zip`` from insightface's v0.7 GitHub
  release, the archive ``insightface.app.FaceAnalysis`` itself downloads), extracted into the
  pack's folder as insightface lays it out. Those members' hashes are not published anywhere, so
  the registry records each one the first time it is verified (a readable ONNX graph with the
  expected input) and checks every later use against that record (:meth:`ModelRegistry.verify`).

Every download is streamed into ``<name>.part`` beside its destination, resumed with an HTTP
``Range`` request after an interruption (or restarted when the server ignores the range), checked
(length, then sha256 where pinned), and only then renamed into place: a model file in the model
directory is always complete and verified. ``FACEAUDIT_MODEL_MIRROR`` replaces the scheme and host
of every URL (``https://host/path`` -> ``<mirror>/host/path``): a lab mirror, or the tests' local
HTTP server laid out like the real sources.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audit.registry import (
    ModelError,
    ModelHashMismatch,
    ModelNotFoundError,
    ModelRegistry,
    file_sha256,
    register_hash,
)

MIRROR_ENV = "FACEAUDIT_MODEL_MIRROR"
#: Bytes per read while streaming a download.
CHUNK = 1 << 16
#: Tries per download (each resumes where the last one stopped), and the pause before the
#: n-th retry (n x RETRY_PAUSE seconds).
ATTEMPTS = 4
RETRY_PAUSE = 1.0

# progress(file label, bytes done, bytes in all or None when the server does not say)
Progress = Callable[[str, int, int | None], None]

_INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"


@dataclass(frozen=True)
class Source:
    """Where one model file comes from: ``url`` serves the file itself, or a zip archive holding
    it as ``member``. ``page``: where a person reads about it (licence, origin)."""

    url: str
    page: str
    member: str | None = None


#: Model name (:data:`audit.registry.KNOWN_MODELS`) -> its public source. Models not listed are
#: not served anywhere in the form the registry pins (conversions made for the project): see
#: :data:`NOT_SERVED`.
SOURCES: dict[str, Source] = {
    "scrfd_500m": Source(
        "https://raw.githubusercontent.com/yukkki7/FaceAnalysisApp/"
        "d4126572f7642f97f903cfab7ab73f67e99622db/models/scrfd_500m_bnkps.onnx",
        page="https://github.com/deepinsight/insightface/tree/master/detection/scrfd"),
    "mobilefacenet": Source(
        "https://raw.githubusercontent.com/foamliu/MobileFaceNet/"
        "22d3e78287c70e23cf2f5b6a6a92594008831a7f/weights/MobileFaceNet.onnx",
        page="https://github.com/foamliu/MobileFaceNet"),
    "genderage_insightface": Source(
        f"{_INSIGHTFACE_RELEASE}/buffalo_s.zip", member="genderage.onnx",
        page="https://github.com/deepinsight/insightface/tree/master/model_zoo"),
}

#: Why a known model has no source, and what stands in for it.
NOT_SERVED: dict[str, str] = {
    "genderage": "a conversion of insightface's 2018 MXNet gender-age model made for this "
                 "project; insightface's own genderage.onnx (buffalo_s pack) is used instead",
    "lightqnet": "a conversion of KaenChan/lightqnet's TensorFlow graph made for this project; "
                 "without it images get no quality score (every other measure is unaffected)",
    "scrfd_2.5g": "an optional larger detector; scrfd_500m is the default",
}

#: The model files every audit's scoring needs (detector; perceived gender and age, from either
#: genderage file) ...
SCORING: tuple[tuple[str, ...], ...] = (("scrfd_500m",), ("genderage", "genderage_insightface"))
#: ... and with the FR model the form proposes, what a default audit needs.
REQUIRED: tuple[tuple[str, ...], ...] = (*SCORING, ("mobilefacenet",))


class FetchError(ModelError):
    """A model could not be downloaded or did not verify; nothing was put in place."""


def mirrored(url: str) -> str:
    """``url`` through ``$FACEAUDIT_MODEL_MIRROR`` when it is set (scheme and host replaced by
    the mirror, the host kept as the first path segment)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not mirror:
        return url
    return f"{mirror}/{url.split('://', 1)[-1]}"


def missing_required(registry: ModelRegistry,
                     entries: Sequence[tuple[str, ...]] = REQUIRED) -> list[tuple[str, ...]]:
    """The ``entries`` (default :data:`REQUIRED`) none of whose files is in the model directory
    and intact."""
    have = set(registry.available())
    return [names for names in entries if not have.intersection(names)]


def describe_missing(registry: ModelRegistry,
                     entries: Sequence[tuple[str, ...]] = REQUIRED) -> list[str]:
    """One line per missing model of ``entries``: the file, where it goes and where it comes
    from (a damaged copy is named as such)."""
    damaged = registry.damaged()
    lines = []
    for names in missing_required(registry, entries):
        name = next((n for n in names if n in SOURCES), names[0])
        spec = registry.spec(name)
        src = SOURCES.get(name)
        where = (f"{src.url} (member {src.member})" if src and src.member else
                 src.url if src else spec.source)
        state = next((f"{n}'s copy is damaged or another version (its SHA-256 differs); "
                      for n in names if n in damaged), "")
        lines.append(f"{spec.filename} ({spec.role}, {name}): {state}put it at "
                     f"{registry.model_dir / spec.filename}; it comes from {where}; "
                     f"licence: {spec.licence}")
    return lines


def fetch_required(registry: ModelRegistry, progress: Progress | None = None) -> list[Path]:
    """Fetch every required model that is missing (:data:`REQUIRED`); the paths written."""
    names = [next(n for n in entry if n in SOURCES) for entry in missing_required(registry)]
    return fetch(registry, names, progress)


def fetch(registry: ModelRegistry, names: Iterable[str],
          progress: Progress | None = None) -> list[Path]:
    """Download and verify the named models into the model directory (those already present
    and intact are left alone). Raises :class:`FetchError` naming the model, the URL and the
    fix; files already fetched stay."""
    written = []
    for name in names:
        spec = registry.spec(name)
        dest = registry.model_dir / spec.filename
        if dest.is_file():
            try:
                registry.verify(name)
                continue
            except ModelHashMismatch:
                dest.unlink()  # a damaged or different copy: fetch it again
        src = SOURCES.get(name)
        if src is None:
            raise FetchError(f"model {name!r} ({spec.filename}) is not served anywhere: "
                             f"{NOT_SERVED.get(name, spec.source)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.member is None:
            download(mirrored(src.url), dest, sha256=spec.sha256, label=spec.filename,
                     progress=progress)
        else:
            archive = registry.model_dir / ".downloads" / src.url.rsplit("/", 1)[-1]
            archive.parent.mkdir(parents=True, exist_ok=True)
            download(mirrored(src.url), archive, label=archive.name, progress=progress)
            extract_member(archive, src.member, dest)
            if not _still_needed(registry, src, exclude=name):
                archive.unlink(missing_ok=True)
            if spec.sha256 is None:
                check_onnx(dest)
                register_hash(registry.model_dir, spec.filename, file_sha256(dest), src.url)
        try:
            registry.verify(name)
        except ModelHashMismatch as exc:
            dest.unlink(missing_ok=True)
            raise FetchError(f"{spec.filename} from {src.url} is not the file this project "
                             f"pins (sha256 {exc.actual}, expected {exc.expected}): the source "
                             "changed it; nothing was kept") from None
        written.append(dest)
    return written


def _still_needed(registry: ModelRegistry, src: Source, exclude: str) -> bool:
    """Whether another missing model comes from the same archive (keep it for that one)."""
    return any(other.url == src.url and n != exclude
               and not (registry.model_dir / registry.spec(n).filename).is_file()
               for n, other in SOURCES.items())


def download(url: str, dest: Path, *, sha256: str | None = None, label: str | None = None,
             progress: Progress | None = None, timeout: float = 60.0,
             attempts: int = ATTEMPTS) -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part``, resuming after interruptions, and move
    it into place only when complete (and, with ``sha256``, equal to it). A ``.part`` left by
    an earlier run is resumed. Raises :class:`FetchError`."""
    part = dest.with_name(dest.name + ".part")
    label = label or dest.name
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(attempt * RETRY_PAUSE)
        try:
            if _fetch_once(url, part, label, progress, timeout):
                break
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # the .part is not a prefix of this file: start again
                part.unlink(missing_ok=True)
                last = exc
                continue
            raise FetchError(f"downloading {label} from {url} failed: HTTP {exc.code} "
                             f"{exc.reason}") from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
            last = exc
    else:
        raise FetchError(f"downloading {label} from {url} did not finish after {attempts} tries "
                         f"({last}); run the same command again: it resumes from "
                         f"{part.stat().st_size if part.exists() else 0:,} bytes")
    if sha256 is not None:
        actual = file_sha256(part)
        if actual != sha256:
            part.unlink()
            raise FetchError(f"{label} from {url} has sha256 {actual}, expected {sha256}: the "
                             "download is damaged or the source changed the file; nothing was "
                             "kept, run the command again")
    os.replace(part, dest)
    return dest


def _fetch_once(url: str, part: Path, label: str, progress: Progress | None,
                timeout: float) -> bool:
    """One request, appending to ``part`` from where it ends; True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "faceaudit-model-fetch"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=timeout) as resp:
        if have and resp.status != 206:  # the server ignored the range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        with part.open("ab" if have else "wb") as out:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(label, done, total)
    # urllib does not raise when a connection closes early: compare with the announced length
    return total is None or done >= total


def extract_member(archive: Path, member: str, dest: Path) -> Path:
    """Copy one member of a zip archive (found at any depth, as insightface's packs put files
    either at the top or in a folder) to ``dest`` through a temporary file and a rename.
    A damaged archive (bad CRC) is deleted so that the next run downloads it again."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise FetchError(f"{archive.name} holds no {member}; its files: "
                                 f"{', '.join(zf.namelist()[:12])}")
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
            with os.fdopen(fd, "wb") as out, zf.open(names[0]) as src:
                shutil.copyfileobj(src, out, CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        archive.unlink(missing_ok=True)
        raise FetchError(f"{archive.name} is not a readable zip archive ({exc}); it was "
                         "deleted, run the command again to download it afresh") from None
    os.replace(tmp, dest)
    return dest


def check_onnx(path: Path) -> None:
    """Refuse a file that is not a readable ONNX graph (before its hash is recorded)."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as exc:  # onnx raises several unrelated types for a damaged file
        path.unlink(missing_ok=True)
        raise FetchError(f"{path.name} is not a readable ONNX model ({exc}); nothing was "
                         "kept") from None


__all__ = ["FetchError", "ModelNotFoundError", "REQUIRED", "SCORING", "SOURCES", "Source", "NOT_SERVED",
           "describe_missing", "download", "extract_member", "fetch",
           "fetch_required", "missing_required", "mirrored"]
