"""An audit's files in the default storage: everything it writes lives under ``audits/<pk>/``
(images, results), so its disk use is that folder's size and deleting the audit removes it.

Works through Django's storage API (``listdir``, ``size``, ``delete``), so it holds for any
storage backend that implements them, not only the local file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from django.core.files.storage import default_storage


def audit_prefix(audit_id: int) -> str:
    return f"audits/{int(audit_id)}"


def audit_files(audit_id: int) -> Iterator[str]:
    """Every stored file name of the audit (recursive)."""
    stack = [audit_prefix(audit_id)]
    while stack:
        folder = stack.pop()
        try:
            dirs, files = default_storage.listdir(folder)
        except FileNotFoundError:
            continue
        stack.extend(f"{folder}/{d}" for d in dirs)
        yield from (f"{folder}/{f}" for f in files)


def disk_usage(audit_id: int) -> int:
    """Bytes the audit's files take in the storage."""
    return sum(default_storage.size(name) for name in audit_files(audit_id))


def delete_audit_files(audit_id: int) -> int:
    """Delete every file of the audit, then its (now empty) folders where the storage has
    folders; returns the number of files deleted."""
    names = list(audit_files(audit_id))
    for name in names:
        default_storage.delete(name)
    try:  # local file system: remove the empty folder tree too
        root = default_storage.path(audit_prefix(audit_id))
    except NotImplementedError:
        return len(names)
    for folder, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return len(names)


def result_stamp(result) -> str:
    """16 hex digits that change whenever an ``AuditResult`` is stored again (from its
    ``created_at``): part of the names of files built from that result."""
    import hashlib

    return hashlib.sha256(result.created_at.isoformat().encode()).hexdigest()[:16]


def keep_built(folder: str, filename: str, build: Callable[[], bytes],
               stale: Callable[[str], bool]) -> str:
    """The storage name ``folder/filename``: the file when it exists, else ``build()`` saved
    there, after which the files of ``folder`` that ``stale(name)`` marks (built from an
    earlier result) are deleted. Used for pages built from a stored result on first request
    and then served to every web process from the file."""
    from django.core.files.base import ContentFile

    name = f"{folder}/{filename}"
    if default_storage.exists(name):
        return name
    saved = default_storage.save(name, ContentFile(build()))
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError):
        files = []
    for other in files:
        if f"{folder}/{other}" != saved and stale(other):
            default_storage.delete(f"{folder}/{other}")
    return saved
