"""Pre-built members of an audit's dataset zip, made once when the audit finishes.

The large text files of the export (``manifest.csv``, the pair lists, ``comparisons.csv``) and
``manifest.parquet`` cost seconds of CPU per download to produce and deflate (about 700 MB of
CSV for an audit of 20,000 images and 2 FR models). They never change once the audit is done, so
the aggregation stage builds them once: each text file is deflated (raw DEFLATE, RFC 1951, as a
zip member stores it) into ``audits/<pk>/results/export/<name>.deflate``, with its CRC-32 and
sizes in ``index.json`` (which names the result it was built from). A download then copies
those bytes into the zip as they are (:func:`exports.zip_stream.stream_files_zip`), so it
streams at storage speed.

Audits without a cache (older ones, or if building it failed) are exported exactly as before,
producing every file on the fly; the bytes inside the zip are the same either way (a test checks
it).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.core.files import File
from django.core.files.storage import default_storage

from exports.files import AuditFiles, open_stream, replace_file, result_stamp

log = logging.getLogger(__name__)

#: Deflate level of the cached members (built once, so a smaller file is worth the time).
CACHE_LEVEL = 6
INDEX = "index.json"


@dataclass(frozen=True)
class Precompressed:
    """One cached zip member: raw DEFLATE bytes in the storage and what the zip header needs."""

    name: str  # storage name of the raw deflate stream
    crc32: int
    size: int  # uncompressed bytes
    compressed_size: int


def cache_folder(audit_id: int) -> str:
    return AuditFiles(audit_id).export_cache


def _deflate_to_storage(name: str, chunks: Iterable[bytes]) -> Precompressed:
    """Deflate ``chunks`` into storage file ``name`` (through a temporary file: bounded
    memory)."""
    crc, size, compressed = 0, 0, 0
    packer = zlib.compressobj(CACHE_LEVEL, zlib.DEFLATED, -15)  # -15: raw stream, no header
    with tempfile.TemporaryFile() as tmp:
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            out = packer.compress(chunk)
            compressed += len(out)
            tmp.write(out)
        out = packer.flush()
        compressed += len(out)
        tmp.write(out)
        tmp.seek(0)
        saved = replace_file(name, File(tmp))
    return Precompressed(saved, crc, size, compressed)


def build_export_cache(audit, members: dict[str, Callable[[], Iterable[bytes]]]) -> None:
    """Deflate each ``members`` entry (zip path -> chunk producer) into the cache and write the
    index last, so a half-built cache is never used. The index names the result it was built
    from (:func:`~exports.files.result_stamp`)."""
    folder = cache_folder(audit.pk)
    index = {}
    for path, chunks in members.items():
        stored = _deflate_to_storage(f"{folder}/{path.replace('/', '__')}.deflate", chunks())
        index[path] = stored.__dict__
    stamp = result_stamp(audit.result)
    replace_file(f"{folder}/{INDEX}", File(io.BytesIO(
        json.dumps({"result": stamp, "members": index}, indent=1).encode())))


def load_export_cache(audit) -> dict[str, Precompressed]:
    """The audit's cached members (zip path -> :class:`Precompressed`), or {} when there is
    none; a cache built from another result than the audit's current one is ignored.

    The index names its result by stamp. Indexes written before it did (a plain mapping of
    members) are judged by their modification time instead, which is good enough on a local
    file system but not on an object store, whose modification times are whole seconds of
    another machine's clock."""
    name = f"{cache_folder(audit.pk)}/{INDEX}"
    result = getattr(audit, "result", None)
    if result is None:
        return {}
    try:
        with open_stream(name) as f:
            index = json.loads(f.read())
        if isinstance(index.get("members"), dict):
            if index.get("result") != result_stamp(result):
                return {}  # the statistics were stored again after the cache was built
            index = index["members"]
        elif default_storage.get_modified_time(name) < result.created_at:
            return {}
        return {path: Precompressed(**entry) for path, entry in index.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError, NotImplementedError):
        log.warning("export cache of audit %s unreadable; building files on the fly", audit.pk,
                    exc_info=True)
        return {}
