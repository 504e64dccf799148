"""Backends for the conformance suite: in-memory, moto server, SeaweedFS (and LocalStack).

Every test that takes the ``backend`` fixture runs once per backend. Which backends run is
set by ``S3STORE_TEST_BACKENDS`` (comma-separated; default ``memory,moto,seaweedfs``;
``make test-localstack`` uses ``localstack`` with ``LOCALSTACK_ENDPOINT``). Servers are
started once per test session on 127.0.0.1 and stopped at its end, by PID.
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from s3store.devserver import MotoServer, WeedServer, ensure_bucket, free_port, s3_client
from s3store.testing import MemoryBackend, MemoryObjectClient

ACCESS_KEY = "test"
SECRET_KEY = "testsecret"
REGION = "us-east-1"
BUCKET = "s3store-tests"
FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    # Servers and clients agree on these credentials; nothing reaches a real AWS account.
    os.environ["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "S3STORE_URL"):
        os.environ.pop(var, None)


def selected_backends() -> list[str]:
    raw = os.environ.get("S3STORE_TEST_BACKENDS", "memory,moto,seaweedfs")
    return [name.strip() for name in raw.split(",") if name.strip()]


def raw_client(endpoint: str) -> Any:
    return s3_client(endpoint, ACCESS_KEY, SECRET_KEY)


@dataclass
class Backend:
    """One S3 backend under test, with out-of-band access that bypasses the store."""

    name: str
    endpoint: str | None = None
    memory: MemoryBackend | None = None
    atomic: bool = True
    """Whether conditional writes are atomic under races (moto's are not)."""
    _raw: Any = field(default=None, repr=False)

    def store_kwargs(self, prefix: str, **extra: Any) -> dict[str, Any]:
        """Constructor arguments for a store on this backend."""
        if self.memory is not None:
            return {
                "client": MemoryObjectClient(BUCKET, backend=self.memory),
                "prefix": prefix,
                **extra,
            }
        return {"bucket": BUCKET, "endpoint_url": self.endpoint, "prefix": prefix, **extra}

    @property
    def raw(self) -> Any:
        if self._raw is None:
            self._raw = raw_client(str(self.endpoint))
        return self._raw

    def raw_get(self, key: str) -> bytes | None:
        if self.memory is not None:
            got = self.memory.get(BUCKET, key)
            return None if got is None else got.body
        try:
            body: bytes = self.raw.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            return body
        except self.raw.exceptions.NoSuchKey:
            return None

    def raw_put(self, key: str, body: bytes) -> None:
        if self.memory is not None:
            self.memory.raw_put(BUCKET, key, body)
        else:
            self.raw.put_object(Bucket=BUCKET, Key=key, Body=body)

    def raw_keys(self, prefix: str) -> list[str]:
        if self.memory is not None:
            return [k for k in self.memory.keys(BUCKET) if k.startswith(prefix)]
        keys: list[str] = []
        for page in self.raw.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix
        ):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = MotoServer()
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Every port weed opens is picked free, so parallel sessions never collide.
    server = WeedServer(
        data_dir=tmp_path_factory.mktemp("weed"),
        port=free_port(),
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def _ensure_bucket(endpoint: str) -> None:
    ensure_bucket(raw_client(endpoint), BUCKET)


@pytest.fixture(params=selected_backends())
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    name: str = request.param
    if name == "memory":
        memory = MemoryBackend()
        memory.create_bucket(BUCKET)
        yield Backend(name, memory=memory)
        return
    if name == "moto":
        endpoint = request.getfixturevalue("moto_endpoint")
        # A fresh moto state per test.
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=10):
            pass
        _ensure_bucket(endpoint)
        yield Backend(name, endpoint=endpoint, atomic=False)
        return
    if name == "seaweedfs":
        endpoint = request.getfixturevalue("seaweedfs_endpoint")
    elif name == "localstack":
        endpoint = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
    else:
        raise pytest.UsageError(f"unknown backend {name!r} in S3STORE_TEST_BACKENDS")
    _ensure_bucket(endpoint)
    yield Backend(name, endpoint=endpoint)


@pytest.fixture
def prefix() -> str:
    """A fresh prefix per test, so tests on a shared server bucket never see each other."""
    return f"t/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fixture_bytes() -> dict[str, bytes]:
    """The a3s-code fixture documents, by file name."""
    return {p.name: p.read_bytes() for p in FIXTURES.iterdir() if p.is_file()}
