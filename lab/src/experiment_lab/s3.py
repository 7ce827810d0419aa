"""A real S3 server (versitygw over a POSIX directory) for MLflow's artifacts.

Keys are made per run and registered with the leak check; they reach versitygw through its
environment, not its command line, so `ps` does not show them.
"""

from __future__ import annotations

import logging
import os
import secrets
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from experiment_lab import credentials
from experiment_lab.hostprocess import Component, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
REGION = "us-east-1"


@dataclass
class S3Server:
    """versitygw on `address:port` (port 0: a free one), data and IAM state under `workdir`."""

    binary: Path
    workdir: Path
    address: str
    port: int = 0
    access_key: str = field(default_factory=lambda: "LAB" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    _process: Component | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        credentials.register(self.access_key, "the lab S3 access key")
        credentials.register(self.secret_key, "the lab S3 secret key")

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self, progress: Callable[[str], None] = log.info) -> None:
        """Start versitygw and wait until its health endpoint answers."""
        self.workdir = self.workdir.resolve()
        for sub in ("data", "iam", "versions"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.address)
        env = {
            **os.environ,
            "ROOT_ACCESS_KEY_ID": self.access_key,
            "ROOT_SECRET_ACCESS_KEY": self.secret_key,
        }
        argv = [
            str(self.binary),
            "--port",
            f"{self.address}:{self.port}",
            "--iam-dir",
            str(self.workdir / "iam"),
            "--health",
            HEALTH_PATH,
            "posix",
            "--versioning-dir",
            str(self.workdir / "versions"),
            str(self.workdir / "data"),
        ]
        self._process = Component("versitygw", argv, self.workdir / "versitygw.log", env=env)
        self._process.start()
        try:
            self._process.wait_healthy(self._healthy)
        except BaseException:
            self.stop()
            raise
        progress(f"S3 (versitygw) serving {self.endpoint_url}")

    def stop(self) -> None:
        """Stop versitygw; its data stays in `workdir` (the caller owns that)."""
        if self._process is not None:
            self._process.stop()
            self._process = None

    def client(self) -> S3Client:
        """A boto3 client with path-style addressing (no per-bucket DNS names in the lab)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def object_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix`, across pages."""
        keys: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", []) if "Key" in obj]
        return keys

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}{HEALTH_PATH}", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False
