"""Multipart uploads: consistent checksum declarations, lazy parts, bounded requests in flight.

The checksum tests look at the requests themselves (botocore's ``before-send`` and
``provide-client-params`` events on a boto3 / aioboto3 client against moto server): moto,
SeaweedFS and LocalStack accept a CRC32 UploadPart under a create that declared no algorithm,
AWS does not, so no round trip could catch a regression.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import tracemalloc
import urllib.request
from typing import Any, Literal

import pytest

from s3store import AsyncS3SessionStore, S3SessionStore
from s3store._async.client import AsyncCountingClient, AsyncMemoryObjectClient, crc32_b64
from s3store._sync.client import MemoryObjectClient
from s3store.testing import MemoryBackend
from s3store.types import StoreStats
from tests import helpers
from tests.conftest import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, _ensure_bucket

MIB = 1024 * 1024
Mode = Literal["when_supported", "when_required"]
OPTIONS: dict[str, Any] = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB}
CONTENT = "".join(f"{i:07d} multipart line\n" for i in range(11 * MIB // 24))  # ~11 MiB: 3 parts


def _reset(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    _ensure_bucket(endpoint)


class Recorder:
    """Every multipart request's parameters (as given) and wire headers/body (as sent)."""

    OPERATIONS = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")

    def __init__(self) -> None:
        self.params: dict[str, list[dict[str, Any]]] = {op: [] for op in self.OPERATIONS}
        self.sent: dict[str, list[tuple[dict[str, str], bytes, str]]] = {
            op: [] for op in self.OPERATIONS
        }
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        for op in self.OPERATIONS:
            events.register(f"provide-client-params.s3.{op}", self._on_params(op))
            events.register(f"before-send.s3.{op}", self._on_send(op))

    def _on_params(self, op: str) -> Any:
        def hook(params: dict[str, Any], **kwargs: Any) -> None:
            with self._lock:
                self.params[op].append(dict(params))

        return hook

    def _on_send(self, op: str) -> Any:
        def hook(request: Any, **kwargs: Any) -> None:
            headers = {k.lower(): _text(v) for k, v in request.headers.items()}
            body = request.body if isinstance(request.body, bytes | bytearray) else b""
            with self._lock:
                self.sent[op].append((headers, bytes(body), request.url))

        return hook


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _checksum_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if "checksum" in k}


def _boto_client(endpoint: str, checksums: Mode) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(request_checksum_calculation=checksums),
    )


def _part_number(url: str) -> int:
    found = re.search(r"[?&]partNumber=(\d+)", url)
    assert found, url
    return int(found.group(1))


def _assert_consistent(recorder: Recorder, checksums: Mode) -> None:
    ((create_headers, _, _),) = recorder.sent["CreateMultipartUpload"]
    (create_params,) = recorder.params["CreateMultipartUpload"]
    # Parts go up on several threads / tasks: match the two views by part number.
    sent = {_part_number(url): headers for headers, _, url in recorder.sent["UploadPart"]}
    given = {params["PartNumber"]: params for params in recorder.params["UploadPart"]}
    ((complete_headers, complete_body, _),) = recorder.sent["CompleteMultipartUpload"]
    (complete_params,) = recorder.params["CompleteMultipartUpload"]
    assert sorted(sent) == sorted(given) == [1, 2, 3]
    listed = complete_params["MultipartUpload"]["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2, 3]
    if checksums == "when_supported":
        # Declared at create, sent with every part, listed per part at complete.
        assert create_params["ChecksumAlgorithm"] == "CRC32"
        assert create_headers["x-amz-checksum-algorithm"] == "CRC32"
        for number, params in given.items():
            expected = crc32_b64(params["Body"])
            assert params["ChecksumAlgorithm"] == "CRC32"
            assert params["ChecksumCRC32"] == expected
            assert sent[number]["x-amz-sdk-checksum-algorithm"] == "CRC32"
            assert sent[number]["x-amz-checksum-crc32"] == expected
        assert {p["PartNumber"]: p["ChecksumCRC32"] for p in listed} == {
            n: sent[n]["x-amz-checksum-crc32"] for n in sent
        }
        wire = re.findall(rb"<ChecksumCRC32>([^<]+)</ChecksumCRC32>", complete_body)
        assert [w.decode() for w in wire] == [p["ChecksumCRC32"] for p in listed]
    else:
        # No checksum anywhere: nothing declared, nothing sent, nothing listed.
        assert "ChecksumAlgorithm" not in create_params
        assert _checksum_headers(create_headers) == {}
        for number, params in given.items():
            assert not any(k.startswith("Checksum") for k in params)
            assert _checksum_headers(sent[number]) == {}
        assert all(set(p) == {"ETag", "PartNumber"} for p in listed)
        assert b"<Part>" in complete_body
        assert b"Checksum" not in complete_body
        assert _checksum_headers(complete_headers) == {}


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_sync_multipart_checksums_are_consistent(
    moto_endpoint: str, prefix: str, checksums: Mode
) -> None:
    _reset(moto_endpoint)
    client = _boto_client(moto_endpoint, checksums)
    recorder = Recorder()
    recorder.register(client.meta.events)
    with S3SessionStore(
        client=client, bucket=BUCKET, prefix=prefix, checksums=checksums, **OPTIONS
    ) as store:
        store.save_artifacts("s1", helpers.artifacts(CONTENT))
        _assert_consistent(recorder, checksums)
        loaded = S3SessionStore(client=client, bucket=BUCKET, prefix=prefix).load_artifacts("s1")
        assert loaded is not None
        assert loaded.artifacts[0].content == CONTENT


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_async_multipart_checksums_are_consistent(
    moto_endpoint: str, prefix: str, checksums: Mode
) -> None:
    import aioboto3
    from botocore.config import Config

    _reset(moto_endpoint)
    recorder = Recorder()

    async def main() -> None:
        session = aioboto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
        config = Config(request_checksum_calculation=checksums)
        async with session.client("s3", endpoint_url=moto_endpoint, config=config) as client:
            recorder.register(client.meta.events)
            async with AsyncS3SessionStore(
                client=client, bucket=BUCKET, prefix=prefix, checksums=checksums, **OPTIONS
            ) as store:
                await store.save_artifacts("s1", helpers.artifacts(CONTENT))
                fresh = AsyncS3SessionStore(client=client, bucket=BUCKET, prefix=prefix)
                loaded = await fresh.load_artifacts("s1")
                assert loaded is not None
                assert loaded.artifacts[0].content == CONTENT

    asyncio.run(main())
    _assert_consistent(recorder, checksums)


@pytest.mark.parametrize(
    ("client_mode", "settings_mode"),
    [("when_required", "when_supported"), ("when_supported", "when_required")],
)
def test_a_client_passed_in_keeps_its_checksum_choice(
    moto_endpoint: str, prefix: str, client_mode: Mode, settings_mode: Mode
) -> None:
    """botocore adds a CRC32 to UploadPart on its own unless the client says when_required,
    so the client's configuration, not the settings, decides what the upload declares."""
    _reset(moto_endpoint)
    client = _boto_client(moto_endpoint, client_mode)
    recorder = Recorder()
    recorder.register(client.meta.events)
    with S3SessionStore(
        client=client, bucket=BUCKET, prefix=prefix, checksums=settings_mode, **OPTIONS
    ) as store:
        store.save_artifacts("s1", helpers.artifacts(CONTENT))
    _assert_consistent(recorder, client_mode)


# -- lazy parts and the in-flight bound ---------------------------------------------------


class TrackingClient(AsyncMemoryObjectClient):
    """In-memory client that yields inside every part upload and records the peak number of
    requests in flight; ``keep_parts=False`` drops part bodies (a server elsewhere)."""

    def __init__(self, *, max_in_flight: int, keep_parts: bool = True) -> None:
        super().__init__(BUCKET)
        self.max_in_flight = max_in_flight
        self.keep_parts = keep_parts
        self.in_flight = 0
        self.peak = 0
        self.sizes: dict[str, int] = {}

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if not self.keep_parts:
                self.sizes[key] = self.sizes.get(key, 0) + len(body)
                body = b""
            return await super().upload_part(key, upload_id, number, body)
        finally:
            self.in_flight -= 1


def test_requests_in_flight_are_bounded_per_store(prefix: str) -> None:
    client = TrackingClient(max_in_flight=3)
    contents = [CONTENT[:-i] for i in range(1, 5)]  # 4 distinct blobs of 3 parts each

    async def main() -> None:
        store = AsyncS3SessionStore(client=client, prefix=prefix, max_concurrency=16, **OPTIONS)
        await store.save_artifacts("s1", helpers.artifacts(*contents))
        loaded = await AsyncS3SessionStore(client=client, prefix=prefix).load_artifacts("s1")
        assert loaded is not None
        assert [a.content for a in loaded.artifacts] == contents

    asyncio.run(main())
    # 4 blobs x 3 parts could run 12 at once; the store lets 3 through.
    assert client.peak == 3


def test_sync_requests_in_flight_are_bounded_per_store(prefix: str) -> None:
    peak = 0
    in_flight = 0
    lock = threading.Lock()

    class Slow(MemoryObjectClient):
        max_in_flight = 2

        def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
            nonlocal peak, in_flight
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                time.sleep(0.02)
                return super().upload_part(key, upload_id, number, body)
            finally:
                with lock:
                    in_flight -= 1

    contents = [CONTENT[:-i] for i in range(1, 4)]
    store = S3SessionStore(client=Slow(BUCKET), prefix=prefix, **OPTIONS)
    store.save_artifacts("s1", helpers.artifacts(*contents))
    assert peak == 2
    loaded = store.load_artifacts("s1")
    assert loaded is not None
    assert [a.content for a in loaded.artifacts] == contents


def test_counting_client_limit_defaults() -> None:
    inner = AsyncMemoryObjectClient(BUCKET)
    assert AsyncCountingClient(inner, StoreStats()).max_in_flight == 16
    assert AsyncCountingClient(inner, StoreStats(), max_in_flight=5).max_in_flight == 5


@pytest.mark.parametrize(
    ("size", "trailer"),
    [
        (5 * MIB, b"T" * 20),  # the trailer is a part of its own
        (5 * MIB + 3, b"T" * 20),  # a part of 3 content bytes + the trailer
        (10 * MIB - 5, b"0123456789ABCDEFGHIJ"),  # the trailer spans two parts
        (10 * MIB, b""),  # no trailer
    ],
)
def test_put_multipart_uploads_data_then_trailer(size: int, trailer: bytes) -> None:
    backend = MemoryBackend()

    async def main() -> bytes:
        client = AsyncMemoryObjectClient(BUCKET, backend=backend)
        store = AsyncS3SessionStore(client=client, prefix="p", **OPTIONS)
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        await store._put_multipart("p/obj", data, trailer=trailer)
        got = await client.get("p/obj")
        assert got is not None
        assert got.body == data + trailer
        parts = -(-(size + len(trailer)) // (5 * MIB))
        assert got.info.etag.endswith(f'-{parts}"')
        return got.body

    asyncio.run(main())
    assert backend.open_uploads() == 0


def test_save_artifacts_copies_parts_lazily(prefix: str) -> None:
    """Peak extra memory of a large save: the content's bytes + the parts in flight, never
    a copy of every part up front (nor of ``content + trailer``)."""
    size = 40 * MIB
    content = "y" * size
    client = TrackingClient(max_in_flight=2, keep_parts=False)
    store = AsyncS3SessionStore(client=client, prefix=prefix, **OPTIONS)

    async def save() -> None:
        await store.save_artifacts("s1", helpers.artifacts(content))

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        asyncio.run(save())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(client.sizes.values()) > size
    extra = peak - base
    # The UTF-8 bytes of the content (1x) + 2 parts in flight + small change. Copying every
    # part up front, as before, would add another 1x (and content + trailer one more).
    assert extra < size + 3 * 5 * MIB, extra / MIB
