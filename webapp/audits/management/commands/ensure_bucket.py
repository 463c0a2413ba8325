"""``python manage.py ensure_bucket``: make sure the object-storage bucket the installation keeps its
files in (``FACEAUDIT_S3_BUCKET``) exists and can be written, creating it when missing.

Run once when the installation starts (docker-compose.yml's ``create-bucket`` service), before
any worker: the store may still be starting, so a store that does not answer yet, or answers
with a server error, is asked again every ``--interval`` seconds until ``--timeout``. Refused
credentials or a bucket name taken by another account are not transient: they fail at once,
saying so. Without ``FACEAUDIT_S3_BUCKET`` files stay in MEDIA_ROOT and there is nothing to do.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError

#: S3 error codes that a retry cannot fix (the answer would be the same next time).
FATAL_CODES = {
    "403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "BucketAlreadyExists",
    "InvalidBucketName", "AllAccessDisabled", "AccountProblem", "InvalidToken",
    "ExpiredToken", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
}


class Command(BaseCommand):
    help = "Create the FACEAUDIT_S3_BUCKET bucket if it is missing (waits for the store)."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=120.0,
                            help="seconds to keep asking a store that does not answer yet "
                                 "(default 120)")
        parser.add_argument("--interval", type=float, default=2.0,
                            help="seconds between attempts (default 2)")

    def handle(self, *args, **opts):
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
        from storages.backends.s3 import S3Storage

        if not isinstance(storages["default"], S3Storage):
            self.stdout.write("FACEAUDIT_S3_BUCKET is not set: files are kept in MEDIA_ROOT "
                              f"({settings.MEDIA_ROOT}); no bucket to create.")
            return
        # A fresh instance with the same options, whose client gives up quickly on a store that
        # is not there yet (botocore's default waits 60 s per connection and retries on its own):
        # the loop below does the waiting, and says what it waits for.
        storage = S3Storage(**settings.STORAGES["default"].get("OPTIONS", {}))
        storage.client_config = storage.client_config.merge(
            Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 1}))
        where = f"bucket '{storage.bucket_name}' at {storage.endpoint_url or 'AWS S3'}"

        deadline = time.monotonic() + opts["timeout"]
        attempt = 0
        while True:
            attempt += 1
            try:
                created = self._ensure(storage)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in FATAL_CODES:
                    raise CommandError(
                        f"{where}: the store refused it ({code}: {exc}). Check "
                        "FACEAUDIT_S3_ACCESS_KEY_ID / FACEAUDIT_S3_SECRET_ACCESS_KEY, and that "
                        "the bucket name is yours (FACEAUDIT_S3_BUCKET).") from None
                reason = f"{code or 'error'}: {exc}"
            except BotoCoreError as exc:  # no connection, timeout, DNS: the store is not up yet
                reason = str(exc)
            else:
                state = "created" if created else "exists"
                self.stdout.write(self.style.SUCCESS(f"{where}: {state} and writable."))
                return
            if time.monotonic() + opts["interval"] > deadline:
                raise CommandError(
                    f"{where}: no answer after {attempt} attempts in {opts['timeout']:.0f} s "
                    f"(last: {reason}). Is the store running and FACEAUDIT_S3_ENDPOINT_URL "
                    "right?")
            self.stderr.write(f"{where}: not ready ({reason}); asking again in "
                              f"{opts['interval']:g} s")
            time.sleep(opts["interval"])

    @staticmethod
    def _ensure(storage) -> bool:
        """Create the bucket if missing, then write and delete a probe object under the key
        prefix (a store can list buckets before it can keep data: SeaweedFS before its volume
        server is up). Returns whether the bucket was created."""
        from botocore.exceptions import ClientError

        s3 = storage.connection.meta.client
        created = False
        try:
            s3.head_bucket(Bucket=storage.bucket_name)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket"}:
                raise
            kwargs = {}
            # AWS S3 wants the region named, except for its first region.
            if storage.region_name and storage.region_name != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": storage.region_name}
            try:
                s3.create_bucket(Bucket=storage.bucket_name, **kwargs)
                created = True
            except ClientError as race:  # another process made it meanwhile
                if race.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
        prefix = storage.location.strip("/")
        probe = f"{prefix}/" if prefix else ""
        probe += f".faceaudit-probe-{uuid.uuid4().hex[:8]}"
        s3.put_object(Bucket=storage.bucket_name, Key=probe, Body=b"ok")
        s3.delete_object(Bucket=storage.bucket_name, Key=probe)
        return created
