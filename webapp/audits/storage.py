"""An audit's files in the default storage: everything it writes lives under ``audits/<pk>/``
(images, results), so its disk use is that folder's size and deleting the audit removes it.

Works through Django's storage API (``listdir``, ``size``, ``delete``), so it holds for any
storage backend that implements them, not only the local file system.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
