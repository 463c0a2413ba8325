"""An audit's files in the default storage, named in one place.

Everything an audit writes lives under ``audits/<pk>/``: images under ``images/<group slug>/
id<NNN>/<variant>.png``, result tables under ``results/``, and files built from a stored result
(dashboard figures, the report, deflated export members) in ``results/dashboard``, ``results/``
and ``results/export``. So the audit's disk use is that folder's size and deleting the audit
removes it. :class:`AuditFiles` builds every one of these names; :func:`safe_slug` and
:func:`group_slugs` are the only file-name slugs (stored images and export members use the same
folder names).

Works through Django's storage API (``listdir``, ``size``, ``delete``), so it holds for any
storage backend that implements them, not only the local file system. With an S3-compatible
object store as the default storage (django-storages' ``S3Storage``, ``FACEAUDIT_S3_BUCKET``) a
few things are done the object store's way, here and nowhere else: an audit's objects are listed
with one paginated ``list_objects_v2`` over its prefix (sizes included) and deleted in batches
of ``delete_objects``; a file is read as the object's streaming body (:func:`open_stream`), in
chunks, because django-storages' file object downloads the whole object before its first read;
and a reader that must seek (Parquet) gets a local temporary copy (:func:`open_seekable`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.utils.text import slugify


def safe_slug(text: str, fallback: str = "group") -> str:
    """A file-name-safe slug of ``text``: ASCII letters, digits and underscores only (so never
    ``.``, ``..``, a separator or an absolute path), ``fallback`` when nothing is left."""
    slug = slugify(str(text).replace("/", "_")).replace("-", "_").strip("_")
    slug = re.sub(r"[^A-Za-z0-9_]", "", slug)[:80]
    return slug or fallback


def group_slugs(group_names: Iterable[str]) -> dict[str, str]:
    """One folder name per group, unique within the audit: groups whose slugs would collide
    (e.g. ``a/b`` and ``a_b``) get ``_2``, ``_3``... in name order."""
    slugs: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(group_names)):
        base = safe_slug(name)
        slug, k = base, 1
        while slug.lower() in taken:  # case-insensitive file systems
            k += 1
            slug = f"{base}_{k}"
        taken.add(slug.lower())
        slugs[name] = slug
    return slugs


def image_relpath(group_slug: str, index_in_group: int, variant: str) -> str:
    """Path of an image below an audit's folder and inside an export:
    ``images/<group slug>/id<NNN>/<variant>.png``."""
    return f"images/{group_slug}/id{int(index_in_group):03d}/{variant}.png"


@dataclass(frozen=True)
class AuditFiles:
    """The storage names of one audit's files (names only: nothing is read or written here,
    except by :meth:`names`, :meth:`disk_usage` and :meth:`delete`)."""

    audit_id: int

    @property
    def prefix(self) -> str:
        return f"audits/{int(self.audit_id)}"

    def name(self, relpath: str) -> str:
        """``audits/<pk>/<relpath>``."""
        return f"{self.prefix}/{relpath}"

    def image(self, group_slug: str, index_in_group: int, variant: str) -> str:
        return self.name(image_relpath(group_slug, index_in_group, variant))

    @property
    def results(self) -> str:
        """Folder of the stored result: comparisons, tables and files built from them."""
        return self.name("results")

    def result(self, filename: str) -> str:
        return f"{self.results}/{filename}"

    @property
    def dashboard(self) -> str:
        """Folder of the dashboard figures built from the stored result."""
        return f"{self.results}/dashboard"

    @property
    def export_cache(self) -> str:
        """Folder of the export members deflated once per stored result."""
        return f"{self.results}/export"

    def names(self) -> Iterator[str]:
        """Every stored file name of the audit (recursive)."""
        return audit_files(self.audit_id)

    def disk_usage(self) -> int:
        return disk_usage(self.audit_id)

    def delete(self) -> int:
        return delete_audit_files(self.audit_id)


def audit_prefix(audit_id: int) -> str:
    return AuditFiles(audit_id).prefix


def save_file(name: str, data: bytes) -> str:
    """Write ``data`` under exactly ``name`` in the default storage, replacing any older file
    (a rerun overwrites; storages rename on collision otherwise)."""
    return replace_file(name, ContentFile(data))


def replace_file(name: str, content: File) -> str:
    """Write ``content`` under exactly ``name``, replacing any older file, and return ``name``.
    Idempotent: a retried write leaves one file under the same name. An object store that
    overwrites (S3 with ``file_overwrite``) takes a single PUT, which replaces the object
    atomically; other storages pick a new name when the name is taken, so the old file is
    deleted first."""
    if not _overwrites_in_place():
        if default_storage.exists(name):
            default_storage.delete(name)
    saved = default_storage.save(name, content)
    if saved != name:  # another writer raced us to the same cell; keep one file
        default_storage.delete(saved)
    return name


def audit_files(audit_id: int) -> Iterator[str]:
    """Every stored file name of the audit (recursive)."""
    store = s3_storage()
    if store is not None:  # one flat listing, not one request per folder
        yield from (name for name, _ in _s3_objects(store, audit_prefix(audit_id)))
        return
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
    """Bytes the audit's files take in the storage (on an object store: the sizes its listing
    gives, so one request per 1,000 objects rather than one per file)."""
    store = s3_storage()
    if store is not None:
        return sum(size for _, size in _s3_objects(store, audit_prefix(audit_id)))
    return sum(default_storage.size(name) for name in audit_files(audit_id))


def delete_audit_files(audit_id: int) -> int:
    """Delete every file of the audit, then its (now empty) folders where the storage has
    folders; returns the number of files deleted."""
    store = s3_storage()
    if store is not None:
        return _s3_delete_prefix(store, audit_prefix(audit_id))
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


# --- reading stored files ------------------------------------------------------------------------

#: Bytes per read when a stored file is streamed or copied.
CHUNK_SIZE = 1 << 20


@contextlib.contextmanager
def open_stream(name: str) -> Iterator[IO[bytes]]:
    """The stored file ``name`` opened for reading from the start, in chunks of whatever size
    the caller's ``read(n)`` asks for; FileNotFoundError when it does not exist.

    On an object store this is the GET response's streaming body: django-storages' ``S3File``
    downloads the whole object into a temporary file (in memory, with the default
    ``max_memory_size`` of 0) at its first read, which would hold a large export member whole
    before the first byte reached the client. The stream cannot seek: readers that must, use
    :func:`open_seekable`."""
    store = s3_storage()
    if store is None:
        with default_storage.open(name, "rb") as f:
            yield f
        return
    answer = _s3_get(store, name)
    body = answer["Body"]
    try:
        if getattr(store, "gzip", False) and answer.get("ContentEncoding") == "gzip":
            # stored gzipped by the storage (AWS_IS_GZIPPED); S3File inflates it too
            import gzip

            with gzip.GzipFile(fileobj=body, mode="rb") as inflated:
                yield inflated
        else:
            yield body
    finally:
        body.close()


@contextlib.contextmanager
def open_seekable(name: str) -> Iterator[IO[bytes]]:
    """The stored file ``name`` as a seekable binary file, for readers that jump around in it
    (pyarrow reads a Parquet file's footer first, then its row groups): the file itself on the
    local file system; on an object store a local temporary copy, streamed to disk in chunks
    (memory stays bounded however large the object), removed when the block ends."""
    store = s3_storage()
    if store is None:
        with default_storage.open(name, "rb") as f:
            yield f
        return
    with tempfile.TemporaryFile() as tmp:
        with open_stream(name) as body:
            for chunk in iter(lambda: body.read(CHUNK_SIZE), b""):
                tmp.write(chunk)
        tmp.seek(0)
        yield tmp


# --- the object store (S3 API) --------------------------------------------------------------------

def s3_storage():
    """The default storage when it is an S3 bucket (django-storages' ``S3Storage`` or a
    subclass), else None. Only a process that built such a storage has imported its module, so
    the check never imports boto3 into a process that stores files locally."""
    cls = default_storage.__class__  # the wrapped storage's class (set up on first use)
    module = sys.modules.get("storages.backends.s3")
    if module is not None and issubclass(cls, module.S3Storage):
        return default_storage
    return None


def _overwrites_in_place() -> bool:
    store = s3_storage()
    return store is not None and bool(getattr(store, "file_overwrite", False))


def _s3_key(store, name: str) -> str:
    """The object key of storage name ``name``: below the storage's ``location`` prefix, with
    the storage's own name checks (the same key its ``open`` and ``save`` use)."""
    from storages.utils import clean_name

    return store._normalize_name(clean_name(name))


def _s3_name(store, key: str) -> str:
    """The storage name of object ``key`` (its ``location`` prefix removed), as ``S3File``
    does it."""
    return key[len(store.location):].lstrip("/")


def _s3_objects(store, prefix: str) -> Iterator[tuple[str, int]]:
    """(storage name, size in bytes) of every object below folder ``prefix``: one paginated
    ``list_objects_v2`` (1,000 objects a page)."""
    root = _s3_key(store, prefix).rstrip("/") + "/"
    paginator = store.connection.meta.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket_name, Prefix=root):
        for obj in page.get("Contents", ()):
            yield _s3_name(store, obj["Key"]), int(obj["Size"])


#: Keys per ``delete_objects`` request (the S3 API's limit).
DELETE_BATCH = 1000


def _s3_delete_prefix(store, prefix: str) -> int:
    """Delete every object below folder ``prefix`` with ``delete_objects``
    (:data:`DELETE_BATCH` keys a request); returns how many. An object store has no folders to
    remove."""
    client = store.connection.meta.client
    keys = [_s3_key(store, name) for name, _ in _s3_objects(store, prefix)]
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start:start + DELETE_BATCH]
        answer = client.delete_objects(Bucket=store.bucket_name, Delete={
            "Objects": [{"Key": k} for k in batch], "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise OSError(f"the object store did not delete {len(errors)} of {len(batch)} "
                          f"objects (first: {first.get('Key')}: {first.get('Code')} "
                          f"{first.get('Message')})")
    return len(keys)


def _s3_get(store, name: str) -> dict:
    """The GET answer of object ``name``, whose ``Body`` is botocore's ``StreamingBody``
    (``read(n)`` takes at most ``n`` bytes off the connection); FileNotFoundError when there is
    no such object."""
    from botocore.exceptions import ClientError
    from s3transfer.constants import ALLOWED_DOWNLOAD_ARGS

    key = _s3_key(store, name)
    # what the storage adds to its own downloads (e.g. SSE-C keys), as S3File passes them
    params = {k: v for k, v in store.get_object_parameters(name).items()
              if k in ALLOWED_DOWNLOAD_ARGS}
    try:
        return store.connection.meta.client.get_object(Bucket=store.bucket_name, Key=key,
                                                       **params)
    except ClientError as err:
        if (err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
                or err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")):
            raise FileNotFoundError(f"File does not exist: {key}") from err
        raise


def result_stamp(result) -> str:
    """16 hex digits that change whenever an ``AuditResult`` is stored again (from its
    ``created_at``): part of the names of files built from that result."""
    import hashlib

    return hashlib.sha256(result.created_at.isoformat().encode()).hexdigest()[:16]


#: Prefix of the temporary files :func:`write_atomically` writes before renaming them into place;
#: such a file belongs to a build still under way and is never taken for a stale one.
TEMP_PREFIX = ".tmp-"

_BUILD_GUARD = threading.Lock()
_BUILD_LOCKS: weakref.WeakValueDictionary[str, _NameLock] = weakref.WeakValueDictionary()


class _NameLock:
    """A lock for one storage name (weakly referenced: dropped once no thread holds it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def _lock_for(name: str) -> _NameLock:
    with _BUILD_GUARD:
        entry = _BUILD_LOCKS.get(name)
        if entry is None:
            entry = _BUILD_LOCKS[name] = _NameLock()
        return entry


def write_atomically(name: str, data: bytes) -> None:
    """Store ``data`` under exactly ``name``, replacing any file there, such that a reader sees
    either the old file or the whole new one, never a partial or missing file: on a local file
    system through a temporary file in the same folder renamed over ``name``; on other storages
    by saving: on an object store one PUT, which replaces the object atomically (a GET sees the
    old object or the whole new one); storages that rename on collision get their renamed copy
    removed again, as the file already there was built from the same result."""
    try:
        path = default_storage.path(name)
    except NotImplementedError:
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:
            default_storage.delete(saved)
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        mode = getattr(default_storage, "file_permissions_mode", None)
        if mode is None:  # what a plain open() would have given: 0o666 less the umask
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def keep_built(folder: str, filename: str, build: Callable[[], bytes],
               stale: Callable[[str], bool]) -> str:
    """The storage name ``folder/filename``: the file when it exists, else ``build()`` written
    there (atomically), after which the other files of ``folder`` that ``stale(name)`` marks
    (built from an earlier result) are deleted. Used for pages built from a stored result on
    first request and then served to every web process from the file.

    Requests in one process build a file once (a lock per name; the others wait for it and
    read it). Requests in several processes (or machines) may each build it, but every build
    writes the same name whole (:func:`write_atomically`: a finished temporary file renamed
    over it, or one PUT on an object store), and ``folder/filename`` itself is never deleted:
    any request can always open it."""
    name = f"{folder}/{filename}"
    if default_storage.exists(name):
        return name
    entry = _lock_for(name)  # held here: the weak mapping keeps it while a thread has it
    with entry.lock:
        if default_storage.exists(name):  # built by another thread while this one waited
            return name
        write_atomically(name, build())
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError):
        files = []
    for other in files:
        if other != filename and not other.startswith(TEMP_PREFIX) and stale(other):
            with contextlib.suppress(FileNotFoundError):
                default_storage.delete(f"{folder}/{other}")
    return name
