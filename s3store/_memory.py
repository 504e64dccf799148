"""An in-memory S3 bucket with ETags and real conditional-write semantics.

It is the state behind :class:`s3store.testing.MemoryObjectClient` (sync) and
:class:`s3store.testing.AsyncMemoryObjectClient` (async); both may share one backend, so a
test can write through one API and read through the other.

Behaviour follows AWS S3:

- ETag = quoted MD5 of the body (``"<md5>-<parts>"`` for multipart uploads).
- ``If-None-Match: *`` on an existing key → 412; ``If-Match`` with a stale ETag → 412; ``If-Match``
  on a missing key → 404 (``if_match_missing_status=412`` mimics SeaweedFS / MinIO / R2).
- Conditional delete with ``If-Match`` (``conditional_delete=False`` mimics LocalStack's 501;
  ``ignore_conditional_delete=True`` mimics servers that delete whatever the ETag says).
- ``ignore_conditions=True`` mimics servers that silently ignore conditional headers
  (s3rver, old Ceph), so the capability probe can be tested against it.
- Listing is lexicographic with ``Prefix``, ``Delimiter``, ``MaxKeys`` (≤ 1000) and a
  continuation token, like ListObjectsV2.

Every check-and-write runs under one lock, so conditional writes are atomic across threads.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from s3store.errors import (
    AlreadyExistsError,
    BucketNotFoundError,
    ObjectNotFoundError,
    PreconditionFailedError,
    UnsupportedBackendError,
)
from s3store.types import GetResult, ListPage, ObjectInfo, PutResult, md5_etag


@dataclass
class _Stored:
    body: bytes
    etag: str
    last_modified: datetime
    metadata: dict[str, str]


class MemoryBackend:
    """The shared state of one or more in-memory buckets."""

    def __init__(
        self,
        *,
        ignore_conditions: bool = False,
        if_match_missing_status: int = 404,
        conditional_delete: bool = True,
        ignore_conditional_delete: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.ignore_conditions = ignore_conditions
        self.ignore_conditional_delete = ignore_conditional_delete
        self.if_match_missing_status = if_match_missing_status
        self.conditional_delete = conditional_delete
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, _Stored]] = {}
        self._sorted: dict[str, list[str]] = {}
        self._uploads: dict[str, tuple[str, str, dict[int, bytes]]] = {}

    # -- buckets -------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket (no-op if it exists)."""
        with self._lock:
            self._buckets.setdefault(bucket, {})
            self._sorted.setdefault(bucket, [])

    def bucket_exists(self, bucket: str) -> bool:
        """Whether the bucket exists."""
        with self._lock:
            return bucket in self._buckets

    def _objects(self, bucket: str) -> dict[str, _Stored]:
        try:
            return self._buckets[bucket]
        except KeyError:
            raise BucketNotFoundError("bucket does not exist", bucket=bucket) from None

    # -- objects -------------------------------------------------------------------------

    def _info(self, key: str, stored: _Stored) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=len(stored.body),
            etag=stored.etag,
            last_modified=stored.last_modified,
            server_time=self.clock(),
            metadata=dict(stored.metadata),
        )

    def get(self, bucket: str, key: str, *, if_none_match: str | None = None) -> GetResult | None:
        """The object, or None if missing.

        ``if_none_match``: an ETag list (or ``*``); when the object's current ETag is one of
        them, the answer is S3's 304: ``GetResult(not_modified=True)`` with no body.
        """
        with self._lock:
            stored = self._objects(bucket).get(key)
            if stored is None:
                return None
            info = self._info(key, stored)
            if if_none_match is not None and _none_match_hits(if_none_match, stored.etag):
                return GetResult(
                    body=b"",
                    info=ObjectInfo(
                        key=key,
                        size=0,
                        etag=stored.etag,
                        last_modified=stored.last_modified,
                        server_time=info.server_time,
                    ),
                    not_modified=True,
                )
            return GetResult(body=stored.body, info=info)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's metadata, or None if missing."""
        with self._lock:
            stored = self._objects(bucket).get(key)
            return None if stored is None else self._info(key, stored)

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        etag: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        """Store ``body`` under ``key`` if the conditions hold (atomically)."""
        with self._lock:
            objects = self._objects(bucket)
            current = objects.get(key)
            if not self.ignore_conditions:
                self._check(bucket, key, current, if_none_match=if_none_match, if_match=if_match)
            now = self.clock()
            stored = _Stored(bytes(body), etag or md5_etag(body), now, dict(metadata or {}))
            if current is None:
                bisect.insort(self._sorted[bucket], key)
            objects[key] = stored
            return PutResult(etag=stored.etag, server_time=now)

    def _check(
        self,
        bucket: str,
        key: str,
        current: _Stored | None,
        *,
        if_none_match: bool,
        if_match: str | None,
    ) -> None:
        if if_none_match and current is not None:
            raise AlreadyExistsError("object already exists", bucket=bucket, key=key)
        if if_match is not None:
            if current is None:
                # Same outcome for 404 and 412 servers: the adapter maps both to this error.
                raise PreconditionFailedError(
                    f"precondition failed (object missing, HTTP {self.if_match_missing_status})",
                    bucket=bucket,
                    key=key,
                    expected_etag=if_match,
                    status=self.if_match_missing_status,
                )
            if _strip(current.etag) != _strip(if_match):
                raise PreconditionFailedError(
                    "precondition failed (ETag changed)",
                    bucket=bucket,
                    key=key,
                    expected_etag=if_match,
                    actual_etag=current.etag,
                    status=412,
                )

    def create_multipart(self, bucket: str, key: str) -> str:
        """Start a multipart upload."""
        with self._lock:
            self._objects(bucket)
            upload_id = uuid.uuid4().hex
            self._uploads[upload_id] = (bucket, key, {})
            return upload_id

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> str:
        """Store one part; returns its ETag."""
        with self._lock:
            parts = self._upload(bucket, key, upload_id)
            parts[number] = bytes(body)
            return md5_etag(body)

    def complete_multipart(
        self, bucket: str, key: str, upload_id: str, etags: list[str], *, if_none_match: bool
    ) -> PutResult:
        """Assemble the parts (condition checked here); the ETag is S3's ``<md5>-<n>``."""
        with self._lock:
            parts = self._upload(bucket, key, upload_id)
            ordered = [parts[n] for n in range(1, len(etags) + 1)]
        digest = hashlib.md5(usedforsecurity=False)
        for part in ordered:
            digest.update(hashlib.md5(part, usedforsecurity=False).digest())
        etag = f'"{digest.hexdigest()}-{len(ordered)}"'
        result = self.put(bucket, key, b"".join(ordered), if_none_match=if_none_match, etag=etag)
        with self._lock:
            self._uploads.pop(upload_id, None)
        return result

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop an upload's parts."""
        with self._lock:
            self._uploads.pop(upload_id, None)

    def _upload(self, bucket: str, key: str, upload_id: str) -> dict[int, bytes]:
        found = self._uploads.get(upload_id)
        if found is None or found[:2] != (bucket, key):
            raise ObjectNotFoundError("no such multipart upload", bucket=bucket, key=key)
        return found[2]

    def open_uploads(self) -> int:
        """Multipart uploads started and neither completed nor aborted (for tests)."""
        with self._lock:
            return len(self._uploads)

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        """Delete ``key`` (missing is fine unless ``if_match`` is given)."""
        with self._lock:
            objects = self._objects(bucket)
            current = objects.get(key)
            ignored = self.ignore_conditions or self.ignore_conditional_delete
            if if_match is not None and not ignored:
                if not self.conditional_delete:
                    raise UnsupportedBackendError(
                        "DeleteObject with If-Match is not implemented (501)",
                        bucket=bucket,
                        key=key,
                    )
                self._check(bucket, key, current, if_none_match=False, if_match=if_match)
            if current is not None:
                del objects[key]
                keys = self._sorted[bucket]
                keys.pop(bisect.bisect_left(keys, key))

    def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """One ListObjectsV2 page; the token is the last key or common prefix returned."""
        max_keys = max(1, min(max_keys, 1000))
        with self._lock:
            objects = self._objects(bucket)
            keys = self._sorted[bucket]
            start = bisect.bisect_right(keys, token) if token else bisect.bisect_left(keys, prefix)
            found: list[ObjectInfo] = []
            prefixes: list[str] = []
            last: str | None = None
            i = start
            while i < len(keys):
                key = keys[i]
                if not key.startswith(prefix):
                    break
                if len(found) + len(prefixes) >= max_keys:
                    return ListPage(found, prefixes, last)
                rest = key[len(prefix) :]
                if delimiter and delimiter in rest:
                    common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                    prefixes.append(common)
                    last = common
                    # Skip every key under this common prefix: the next page starts after it.
                    i = bisect.bisect_left(keys, common + "\U0010ffff")
                    continue
                found.append(self._info(key, objects[key]))
                last = key
                i += 1
            return ListPage(found, prefixes, None)

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket, sorted (for tests)."""
        with self._lock:
            return list(self._sorted.get(bucket, []))

    def raw_put(self, bucket: str, key: str, body: bytes) -> None:
        """Write bytes behind any store's back (tests: corruption, foreign objects)."""
        self.create_bucket(bucket)
        self.put(bucket, key, body)


def _strip(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


def _none_match_hits(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (RFC 9110: a list, weak comparison,
    ``*`` for any current representation)."""
    tags = [t for t in header.split(",") if t.strip()]
    return any(t.strip() == "*" or _strip(t) == _strip(etag) for t in tags)


class MemoryClientBase:
    """What the async and the sync in-memory clients share: one :class:`MemoryBackend`."""

    backend: MemoryBackend
    bucket: str
