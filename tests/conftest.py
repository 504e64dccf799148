"""Backends for the conformance suite: in-memory, moto server, SeaweedFS (and LocalStack).

Every test that takes the ``backend`` fixture runs once per backend. Which backends run is
set by ``S3STORE_TEST_BACKENDS`` (comma-separated; default ``memory,moto,seaweedfs``;
``make test-localstack`` uses ``localstack`` with ``LOCALSTACK_ENDPOINT``). Servers are
started once per test session on 127.0.0.1 and stopped at its end, by PID.

``moto-obstore`` and ``seaweedfs-obstore`` are the same servers with stores on the obstore
transport (``transport="obstore"``, async only): tests in ``tests/_sync`` skip them, and
``tests/test_faults.py`` runs its obstore tests on them. For example::

    S3STORE_TEST_BACKENDS=moto-obstore,seaweedfs-obstore pytest tests/_async tests/_sync \
        tests/test_faults.py
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
    transport: str | None = None
    """``"obstore"`` for the ``*-obstore`` backends: stores are built with that transport."""
    _raw: Any = field(default=None, repr=False)

    def store_kwargs(self, prefix: str, **extra: Any) -> dict[str, Any]:
        """Constructor arguments for a store on this backend."""
        if self.memory is not None:
            return {
                "client": MemoryObjectClient(BUCKET, backend=self.memory),
                "prefix": prefix,
                **extra,
            }
        kwargs = {"bucket": BUCKET, "endpoint_url": self.endpoint, "prefix": prefix, **extra}
        if self.transport is not None:
            kwargs.setdefault("transport", self.transport)
        return kwargs

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


OBSTORE_SUFFIX = "-obstore"

# Tests whose premise the obstore transport does not meet, by test name: (strict xfail or
# skip, why). Everything else in the suite must pass on it unchanged.
OBSTORE_DIVERGENCES: dict[str, tuple[str, str]] = {
    "test_list_paginates_one_request_per_page": (
        "xfail",
        "object_store lists a '/'-delimited directory in one call (S3 pages of 1,000 "
        "inside it) and cannot resume one: list_page_size does not apply",
    ),
    "test_store_shares_data_with_the_other_api": (
        "skip",
        "the sync store keeps boto3 and refuses transport='obstore'",
    ),
}


def _obstore_divergence(request: pytest.FixtureRequest) -> None:
    name = request.node.originalname if isinstance(request.node, pytest.Function) else ""
    kind, reason = OBSTORE_DIVERGENCES.get(name, ("", ""))
    if kind == "skip":
        pytest.skip(reason)
    if kind == "xfail":
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def obstore_servers() -> list[str]:
    """The servers selected with the obstore transport (``moto-obstore`` -> ``moto``)."""
    return [
        name.removesuffix(OBSTORE_SUFFIX)
        for name in selected_backends()
        if name.endswith(OBSTORE_SUFFIX)
    ]


@pytest.fixture(params=selected_backends())
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    name: str = request.param
    if name.removesuffix(OBSTORE_SUFFIX) not in ("memory", "moto", "seaweedfs", "localstack"):
        raise pytest.UsageError(f"unknown backend {name!r} in S3STORE_TEST_BACKENDS")
    if name.endswith(OBSTORE_SUFFIX):
        if name == "memory" + OBSTORE_SUFFIX:
            raise pytest.UsageError("the obstore transport needs a server, not 'memory'")
        if request.module.__name__.startswith("tests._sync"):
            pytest.skip("the obstore transport is async only (the sync store keeps boto3)")
        pytest.importorskip("obstore", reason="obstore not installed: pip install '.[obstore]'")
        _obstore_divergence(request)
        base = request.getfixturevalue("backend_" + name.removesuffix(OBSTORE_SUFFIX))
        yield Backend(name, endpoint=base.endpoint, atomic=base.atomic, transport="obstore")
        return
    yield request.getfixturevalue(f"backend_{name}")


# One fixture per backend, so the obstore variants reuse the same server set-up.
@pytest.fixture
def backend_memory() -> Backend:
    memory = MemoryBackend()
    memory.create_bucket(BUCKET)
    return Backend("memory", memory=memory)


@pytest.fixture
def backend_moto(moto_endpoint: str) -> Backend:
    # A fresh moto state per test.
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    _ensure_bucket(moto_endpoint)
    return Backend("moto", endpoint=moto_endpoint, atomic=False)


@pytest.fixture
def backend_seaweedfs(seaweedfs_endpoint: str) -> Backend:
    _ensure_bucket(seaweedfs_endpoint)
    return Backend("seaweedfs", endpoint=seaweedfs_endpoint)


@pytest.fixture
def backend_localstack() -> Backend:
    endpoint = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
    _ensure_bucket(endpoint)
    return Backend("localstack", endpoint=endpoint)


@pytest.fixture
def prefix() -> str:
    """A fresh prefix per test, so tests on a shared server bucket never see each other."""
    return f"t/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fixture_bytes() -> dict[str, bytes]:
    """The a3s-code fixture documents, by file name."""
    return {p.name: p.read_bytes() for p in FIXTURES.iterdir() if p.is_file()}
