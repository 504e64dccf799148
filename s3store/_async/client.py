"""The object-client seam under the store, and its implementations.

The store talks to S3 only through :class:`AsyncObjectClient`: ten small methods over one
bucket, in terms of bytes and ETags, raising only :mod:`s3store.errors` types. Anything that
implements it can sit under a store: the aioboto3 adapter, the in-memory client, a
fault-injecting wrapper in tests.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import botocore.exceptions

from s3store._backends import AsyncSemaphore
from s3store._memory import MemoryBackend, MemoryClientBase
from s3store.config import (
    StoreSettings,
    condition_args,
    listed_info,
    object_info,
    owner_args,
    put_result,
    write_args,
)
from s3store.errors import (
    BackendError,
    DocumentTooLargeError,
    NotModifiedError,
    ObjectNotFoundError,
    translate_error,
)
from s3store.types import GetResult, ListPage, ObjectInfo, PutResult, StoreStats

_BLOB_SEGMENT = "/blobs/"

# What a botocore/aiobotocore call can raise that is about the request, not our code.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    OSError,
    TimeoutError,  # asyncio.TimeoutError is this builtin since Python 3.11
)

DEFAULT_MAX_IN_FLIGHT = 16
"""Requests in flight through one :class:`AsyncCountingClient` when nothing says otherwise
(the default of :attr:`s3store.config.StoreSettings.max_concurrency`)."""

# (key, metadata): user metadata the counting client adds to a PutObject of exactly that key
# made in this context (thread or task). See :func:`put_metadata`.
_PUT_METADATA: contextvars.ContextVar[tuple[str, Mapping[str, str]] | None] = (
    contextvars.ContextVar("s3store_put_metadata", default=None)
)


@contextlib.contextmanager
def put_metadata(key: str, metadata: Mapping[str, str]) -> Iterator[None]:
    """Within this block (this thread or task), PUTs of ``key`` also carry ``metadata``.

    For tools that write through the store's own write path (conditions, 409 retries, write
    tokens) and need to mark what they wrote, e.g. ``s3store import`` marking the objects it
    wrote (:mod:`s3store.transfer`). Only single-request PUTs of exactly ``key`` are
    affected; the store's own metadata (write tokens) wins on a name clash.
    """
    token = _PUT_METADATA.set((key, dict(metadata)))
    try:
        yield
    finally:
        _PUT_METADATA.reset(token)


def _with_context_metadata(
    key: str, metadata: Mapping[str, str] | None
) -> Mapping[str, str] | None:
    extra = _PUT_METADATA.get()
    if extra is None or extra[0] != key:
        return metadata
    return {**extra[1], **(metadata or {})}


def crc32_b64(body: bytes) -> str:
    """The ``ChecksumCRC32`` value of ``body``: base64 of the big-endian CRC-32."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode("ascii")


def _client_checksums(client: Any, settings: StoreSettings) -> bool:
    """Whether multipart uploads through ``client`` carry CRC32 checksums.

    What the client does decides: botocore adds a CRC32 to every UploadPart on its own
    unless its (resolved) ``request_checksum_calculation`` is ``when_required``, so the
    upload must then declare and list it too. A client the store builds is configured from
    ``settings.checksums``; a client passed in keeps its own choice. Without a botocore
    configuration, the settings decide.
    """
    config = getattr(getattr(client, "meta", None), "config", None)
    mode = getattr(config, "request_checksum_calculation", None) or settings.checksums
    return mode != "when_required"


def _pool_size(client: Any) -> int | None:
    config = getattr(getattr(client, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    return size if isinstance(size, int) and size > 0 else None


@runtime_checkable
class AsyncObjectClient(Protocol):
    """The narrow object-storage interface the store is written against.

    Keys are full object keys in :attr:`bucket`. Missing objects are ``None`` from
    ``get``/``head``; every failure is an :class:`s3store.errors.StoreError`.
    """

    bucket: str

    def describe(self) -> dict[str, str]:
        """Where requests go (endpoint, region, bucket), for error messages."""
        ...

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        """The object's bytes, or None; DocumentTooLargeError past ``max_bytes``.

        ``range_end`` asks for only the first ``range_end`` bytes (a ranged GET).
        ``if_none_match`` makes it a conditional GET: if the object's ETag is still that
        one, S3 answers 304 Not Modified with no body, and so does this method:
        ``GetResult(body=b"", not_modified=True)``, whose ``info`` holds only the key and
        ETag. A missing object is still None.
        """
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or None."""
        ...

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        """Write an object in one request, optionally conditional, with user metadata."""
        ...

    async def create_multipart(self, key: str) -> str:
        """Start a multipart upload; returns its upload id."""
        ...

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        """Upload part ``number`` (from 1); returns the part's ETag."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Sequence[str], *, if_none_match: bool = False
    ) -> PutResult:
        """Complete an upload from its part ETags; the condition applies here."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abandon an upload and free its parts."""
        ...

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete one object (missing is fine unless ``if_match`` is given)."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete up to 1,000 objects in one request."""
        ...

    async def list_page(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """One ListObjectsV2 page."""
        ...

    async def head_bucket(self) -> None:
        """Raise unless the bucket exists and is reachable."""
        ...

    async def create_bucket(self) -> None:
        """Create the bucket (fine if it exists and is ours)."""
        ...

    async def close(self) -> None:
        """Release resources the client owns."""
        ...


class AsyncBotoObjectClient:
    """:class:`AsyncObjectClient` over an aioboto3 / aiobotocore S3 client.

    Every call goes through :meth:`_call`, the one place botocore errors become s3store
    errors (naming bucket, key and the ETag that was sent).
    """

    def __init__(self, client: Any, settings: StoreSettings) -> None:
        self.bucket = settings.bucket
        self._client = client
        self._owner = owner_args(settings)
        self._write = write_args(settings)
        # Multipart checksums, consistently or not at all: CreateMultipartUpload declares
        # CRC32, every UploadPart sends its CRC32, CompleteMultipartUpload lists them. (An
        # UploadPart checksum under a create that declared none is refused by AWS.)
        self._checksums = _client_checksums(client, settings)
        self._part_checksums: dict[str, dict[int, str]] = {}
        pool = _pool_size(client)
        self.max_in_flight = (
            settings.max_concurrency if pool is None else min(settings.max_concurrency, pool)
        )
        """Requests the store lets through this client at once (see AsyncCountingClient)."""

    def describe(self) -> dict[str, str]:
        # docstring inherited
        meta = getattr(self._client, "meta", None)
        return {
            "endpoint": str(getattr(meta, "endpoint_url", None) or "aws"),
            "region": str(getattr(meta, "region_name", None) or "unknown"),
            "bucket": self.bucket,
        }

    async def _call(
        self,
        operation: str,
        key: str | None,
        /,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        **kwargs: Any,
    ) -> Any:
        method = getattr(self._client, operation)
        try:
            return await method(Bucket=self.bucket, **kwargs)
        except _TRANSPORT_ERRORS as exc:
            raise translate_error(
                exc,
                operation=operation,
                bucket=self.bucket,
                key=key,
                if_none_match=if_none_match,
                if_match=if_match,
            ) from exc

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        # docstring inherited
        extra: dict[str, Any] = {"Range": f"bytes=0-{range_end - 1}"} if range_end else {}
        if if_none_match is not None:
            extra["IfNoneMatch"] = if_none_match
        try:
            response = await self._call("get_object", key, Key=key, **extra, **self._owner)
        except ObjectNotFoundError:
            return None
        except NotModifiedError as exc:
            # botocore raises the 304 as a ClientError; it is an answer, not a failure.
            etag = exc.etag or if_none_match or ""
            return GetResult(
                body=b"", info=ObjectInfo(key=key, size=0, etag=etag), not_modified=True
            )
        except BackendError as exc:
            if exc.code != "InvalidRange":
                raise
            # A ranged GET of an empty object: there are no bytes to return.
            return GetResult(body=b"", info=ObjectInfo(key=key, size=0, etag=""))
        info = object_info(key, response)
        stream = response["Body"]
        if max_bytes is not None and info.size > max_bytes:
            stream.close()
            raise DocumentTooLargeError(
                f"object is {info.size} bytes, over the {max_bytes}-byte document limit",
                bucket=self.bucket,
                key=key,
            )
        try:
            body: bytes = await stream.read()
        except _TRANSPORT_ERRORS as exc:
            raise translate_error(exc, operation="get_object", bucket=self.bucket, key=key) from exc
        finally:
            stream.close()
        return GetResult(body=body, info=info)

    async def head(self, key: str) -> ObjectInfo | None:
        # docstring inherited
        try:
            response = await self._call("head_object", key, Key=key, **self._owner)
        except ObjectNotFoundError:
            return None
        return object_info(key, response)

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        # docstring inherited
        extra: dict[str, Any] = {"Metadata": dict(metadata)} if metadata else {}
        response = await self._call(
            "put_object",
            key,
            if_none_match=if_none_match,
            if_match=if_match,
            Key=key,
            Body=body,
            **condition_args(if_none_match=if_none_match, if_match=if_match),
            **extra,
            **self._write,
        )
        return put_result(response)

    async def create_multipart(self, key: str) -> str:
        # docstring inherited
        extra: dict[str, Any] = {"ChecksumAlgorithm": "CRC32"} if self._checksums else {}
        created = await self._call("create_multipart_upload", key, Key=key, **extra, **self._write)
        upload_id = str(created["UploadId"])
        if self._checksums:
            self._part_checksums[upload_id] = {}
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        # docstring inherited
        extra: dict[str, Any] = {}
        checksum = None
        if self._checksums:
            # Computed here, not by botocore, so completion can list it whatever the server
            # echoes back.
            checksum = crc32_b64(body)
            extra = {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": checksum}
        uploaded = await self._call(
            "upload_part",
            key,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            **extra,
            **self._owner,
        )
        if checksum is not None:
            self._part_checksums.setdefault(upload_id, {})[number] = checksum
        return str(uploaded["ETag"])

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Sequence[str], *, if_none_match: bool = False
    ) -> PutResult:
        # docstring inherited
        parts: list[dict[str, Any]] = [
            {"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)
        ]
        checksums = self._part_checksums.get(upload_id)
        if checksums is not None:
            for part in parts:
                part["ChecksumCRC32"] = checksums[part["PartNumber"]]
        response = await self._call(
            "complete_multipart_upload",
            key,
            if_none_match=if_none_match,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **condition_args(if_none_match=if_none_match, if_match=None),
            **self._owner,
        )
        self._part_checksums.pop(upload_id, None)
        return put_result(response)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        # docstring inherited
        self._part_checksums.pop(upload_id, None)
        await self._call("abort_multipart_upload", key, Key=key, UploadId=upload_id, **self._owner)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        # docstring inherited
        await self._call(
            "delete_object",
            key,
            if_match=if_match,
            Key=key,
            **condition_args(if_none_match=False, if_match=if_match),
            **self._owner,
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        if not keys:
            return
        if len(keys) > 1000:
            raise ValueError("DeleteObjects takes at most 1,000 keys")
        response = await self._call(
            "delete_objects",
            keys[0],
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            **self._owner,
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise BackendError(
                f"delete_objects failed for {len(errors)} key(s): {first.get('Message', '')}",
                bucket=self.bucket,
                key=first.get("Key"),
                code=first.get("Code"),
            )

    async def list_page(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        # docstring inherited
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": max_keys, **self._owner}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if token:
            kwargs["ContinuationToken"] = token
        response = await self._call("list_objects_v2", prefix, **kwargs)
        return ListPage(
            objects=[listed_info(entry) for entry in response.get("Contents") or []],
            common_prefixes=[p["Prefix"] for p in response.get("CommonPrefixes") or []],
            next_token=response.get("NextContinuationToken")
            if response.get("IsTruncated")
            else None,
        )

    async def head_bucket(self) -> None:
        # docstring inherited
        await self._call("head_bucket", None, **self._owner)

    async def create_bucket(self) -> None:
        # docstring inherited
        kwargs: dict[str, Any] = {}
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._call("create_bucket", None, **kwargs)
        except BackendError as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def close(self) -> None:
        # docstring inherited
        # The store that built the client closes it through its exit stack; a client passed
        # in by the caller stays the caller's.
        return None


class AsyncMemoryObjectClient(MemoryClientBase):
    """An in-memory :class:`AsyncObjectClient` with ETags and real conditional semantics.

    Pass the same ``backend`` to several clients (async or sync) to share one bucket.
    ``create=True`` creates the bucket.
    """

    def __init__(
        self, bucket: str = "s3store", *, backend: MemoryBackend | None = None, create: bool = True
    ) -> None:
        self.bucket = bucket
        self.backend = backend if backend is not None else MemoryBackend()
        if create:
            self.backend.create_bucket(bucket)

    def describe(self) -> dict[str, str]:
        # docstring inherited
        return {"endpoint": "memory", "region": "none", "bucket": self.bucket}

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        # docstring inherited
        result = self.backend.get(self.bucket, key, if_none_match=if_none_match)
        if result is None or result.not_modified:
            return result
        if range_end is not None:
            return GetResult(body=result.body[:range_end], info=result.info)
        if max_bytes is not None and result.info.size > max_bytes:
            raise DocumentTooLargeError(
                f"object is {result.info.size} bytes, over the {max_bytes}-byte document limit",
                bucket=self.bucket,
                key=key,
            )
        return result

    async def head(self, key: str) -> ObjectInfo | None:
        # docstring inherited
        return self.backend.head(self.bucket, key)

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        # docstring inherited
        condition_args(if_none_match=if_none_match, if_match=if_match)
        return self.backend.put(
            self.bucket,
            key,
            body,
            if_none_match=if_none_match,
            if_match=if_match,
            metadata=metadata,
        )

    async def create_multipart(self, key: str) -> str:
        # docstring inherited
        return self.backend.create_multipart(self.bucket, key)

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        # docstring inherited
        return self.backend.upload_part(self.bucket, key, upload_id, number, body)

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Sequence[str], *, if_none_match: bool = False
    ) -> PutResult:
        # docstring inherited
        return self.backend.complete_multipart(
            self.bucket, key, upload_id, list(etags), if_none_match=if_none_match
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        # docstring inherited
        self.backend.abort_multipart(self.bucket, key, upload_id)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        # docstring inherited
        self.backend.delete(self.bucket, key, if_match=if_match)

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        if len(keys) > 1000:
            raise ValueError("DeleteObjects takes at most 1,000 keys")
        for key in keys:
            self.backend.delete(self.bucket, key)

    async def list_page(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        # docstring inherited
        return self.backend.list_page(
            self.bucket, prefix, delimiter=delimiter, token=token, max_keys=max_keys
        )

    async def head_bucket(self) -> None:
        # docstring inherited
        self.backend.list_page(self.bucket, "", max_keys=1)

    async def create_bucket(self) -> None:
        # docstring inherited
        self.backend.create_bucket(self.bucket)

    async def close(self) -> None:
        # docstring inherited
        return None


class AsyncCountingClient:
    """Wraps an :class:`AsyncObjectClient`: counts every request into a StoreStats, and bounds
    the requests in flight.

    The bound is per store (each store has one counting client) and covers bulk transfers:
    multipart requests and GET/HEAD/PUT/DELETE of blob keys. However the store's work nests
    (blobs in parallel, parts of each blob in parallel, gc, fsck), at most ``max_in_flight``
    of them run at once; the rest wait before they start. Document, manifest and lease
    requests are not bounded, so they never wait behind a large upload. It defaults to
    the inner client's ``max_in_flight`` (the aioboto3 adapter sets it from
    ``settings.max_concurrency``, capped by the client's connection pool, so requests never
    queue inside the pool holding their bodies), else :data:`DEFAULT_MAX_IN_FLIGHT`.
    """

    def __init__(
        self, inner: AsyncObjectClient, stats: StoreStats, *, max_in_flight: int | None = None
    ) -> None:
        self.inner = inner
        self.bucket = inner.bucket
        self.stats = stats
        limit = max_in_flight or getattr(inner, "max_in_flight", None) or DEFAULT_MAX_IN_FLIGHT
        self.max_in_flight: int = max(1, int(limit))
        self._slots = AsyncSemaphore(self.max_in_flight)

    def _gate(self, key: str | None) -> Any:
        """The bound for bulk transfers; documents, manifests and leases never wait behind
        blob uploads (a lease renewal stuck behind a 1 GiB upload would expire)."""
        if key is not None and _BLOB_SEGMENT in f"/{key}":
            return self._slots
        return contextlib.nullcontext()

    def describe(self) -> dict[str, str]:
        # docstring inherited
        return self.inner.describe()

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        # docstring inherited
        result = None
        try:
            async with self._gate(key):
                result = await self.inner.get(
                    key, max_bytes=max_bytes, range_end=range_end, if_none_match=if_none_match
                )
            return result
        finally:
            self.stats.record("GetObject", down=len(result.body) if result else 0)

    async def head(self, key: str) -> ObjectInfo | None:
        # docstring inherited
        try:
            async with self._gate(key):
                return await self.inner.head(key)
        finally:
            self.stats.record("HeadObject")

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        # docstring inherited
        metadata = _with_context_metadata(key, metadata)
        try:
            async with self._gate(key):
                return await self.inner.put(
                    key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
                )
        finally:
            self.stats.record("PutObject", up=len(body))

    async def create_multipart(self, key: str) -> str:
        # docstring inherited
        try:
            async with self._slots:
                return await self.inner.create_multipart(key)
        finally:
            self.stats.record("CreateMultipartUpload")

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        # docstring inherited
        try:
            async with self._slots:
                return await self.inner.upload_part(key, upload_id, number, body)
        finally:
            self.stats.record("UploadPart", up=len(body))

    async def upload_part_from(
        self, key: str, upload_id: str, number: int, body: Callable[[], bytes]
    ) -> str:
        """:meth:`upload_part` with the body built by ``body()`` only once the request may
        start: a part's bytes exist only while it is in flight, never while it waits."""
        size = 0
        try:
            async with self._slots:
                data = body()
                size = len(data)
                return await self.inner.upload_part(key, upload_id, number, data)
        finally:
            self.stats.record("UploadPart", up=size)

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Sequence[str], *, if_none_match: bool = False
    ) -> PutResult:
        # docstring inherited
        try:
            async with self._slots:
                return await self.inner.complete_multipart(
                    key, upload_id, etags, if_none_match=if_none_match
                )
        finally:
            self.stats.record("CompleteMultipartUpload")

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        # docstring inherited
        try:
            async with self._slots:
                await self.inner.abort_multipart(key, upload_id)
        finally:
            self.stats.record("AbortMultipartUpload")

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        # docstring inherited
        try:
            async with self._gate(key):
                await self.inner.delete(key, if_match=if_match)
        finally:
            self.stats.record("DeleteObject")

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        try:
            async with self._gate(None):
                await self.inner.delete_many(keys)
        finally:
            self.stats.record("DeleteObjects")

    async def list_page(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        # docstring inherited
        try:
            async with self._gate(None):
                return await self.inner.list_page(
                    prefix, delimiter=delimiter, token=token, max_keys=max_keys
                )
        finally:
            self.stats.record("ListObjectsV2")

    async def head_bucket(self) -> None:
        # docstring inherited
        try:
            async with self._gate(None):
                await self.inner.head_bucket()
        finally:
            self.stats.record("HeadBucket")

    async def create_bucket(self) -> None:
        # docstring inherited
        try:
            async with self._gate(None):
                await self.inner.create_bucket()
        finally:
            self.stats.record("CreateBucket")

    async def close(self) -> None:
        # docstring inherited
        await self.inner.close()
