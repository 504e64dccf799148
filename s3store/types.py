"""Small value types shared by the store, the object-client seam and the CLI. No I/O."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, NamedTuple, TypeAlias, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class PutResult:
    """What a write returns: enough for the next compare-and-swap.

    Attributes:
        etag: the new object's ETag, quoted as S3 returns it.
        version_id: the version id on a versioned bucket, else None.
        server_time: the server's ``Date`` header, when it sent one.
    """

    etag: str
    version_id: str | None = None
    server_time: datetime | None = field(default=None, compare=False)
    superseded: bool = field(default=False, compare=False)
    """The write landed but another version replaced it before its answer came back (found
    through the write history); ``etag`` is then the content MD5 of the replaced version."""


@dataclass(frozen=True)
class IfMatch:
    """Write mode: replace the object only if its current ETag is ``etag``."""

    etag: str


PutMode: TypeAlias = Literal["overwrite", "create"] | IfMatch
"""How a write treats an existing object.

- ``"overwrite"``: unconditional (the Rust store's behaviour).
- ``"create"``: create-only (``If-None-Match: *``); raises ``AlreadyExistsError`` if the key is taken.
- ``IfMatch(etag)``: compare-and-swap; raises ``PreconditionFailedError`` if the ETag is stale
  or the object is missing.
"""


def check_mode(mode: PutMode) -> PutMode:
    """Reject anything outside the closed :data:`PutMode` vocabulary."""
    if mode in ("overwrite", "create") or isinstance(mode, IfMatch):
        return mode
    raise TypeError(f"mode must be 'overwrite', 'create' or IfMatch(etag), not {mode!r}")


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of a stored object (from HEAD, GET or a listing)."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    version_id: str | None = None
    server_time: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict, compare=False)
    """User metadata (``x-amz-meta-*``), from HEAD and GET only."""


@dataclass(frozen=True)
class GetResult:
    """An object's bytes and metadata.

    ``not_modified``: a conditional GET (``if_none_match``) found the object still at that
    ETag (304 Not Modified): ``body`` is empty and ``info`` holds only the key and ETag.
    """

    body: bytes
    info: ObjectInfo
    not_modified: bool = False


@dataclass(frozen=True)
class ListPage:
    """One page of a listing (one request)."""

    objects: list[ObjectInfo]
    common_prefixes: list[str]
    next_token: str | None


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A document together with the ETag it was read at (see ``load_versioned``)."""

    value: T
    etag: str


class SessionChange(NamedTuple):
    """A session appearing in (``present``) or disappearing from a store, as
    :meth:`~s3store.S3SessionStore.watch_prefix` reports it."""

    id: str
    """The id as :meth:`~s3store.S3SessionStore.list` returns it (legacy layout: the
    sanitised file stem)."""
    present: bool
    """True: the session appeared; False: it disappeared (deleted)."""


def md5_etag(body: bytes) -> str:
    """The ETag S3 gives a single-part, non-KMS upload of ``body`` (quoted MD5 hex)."""
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


class StoreStats:
    """Counters of requests by S3 operation and bytes moved; thread-safe.

    The counts are exact: every request the store sends through its object client is
    counted once, so tests and benchmarks may assert them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes_up = 0
        self.bytes_down = 0

    def record(self, operation: str, *, up: int = 0, down: int = 0) -> None:
        """Count one request."""
        with self._lock:
            self.requests[operation] += 1
            self.bytes_up += up
            self.bytes_down += down

    @property
    def total_requests(self) -> int:
        """All requests counted so far."""
        return sum(self.requests.values())

    def snapshot(self) -> dict[str, object]:
        """A plain-dict copy (for printing or JSON)."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "total_requests": sum(self.requests.values()),
                "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down,
            }

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.requests.clear()
            self.bytes_up = 0
            self.bytes_down = 0

    def __repr__(self) -> str:
        return f"StoreStats({self.snapshot()})"


@dataclass(frozen=True)
class Capabilities:
    """What the capability probe found the server to enforce."""

    if_none_match: bool
    if_match: bool
    conditional_delete: bool
    if_match_missing_status: int | None
    """HTTP status for If-Match on a missing key (404 on AWS/moto/LocalStack, 412 on SeaweedFS)."""

    @property
    def conditions_enforced(self) -> bool:
        """Both conditional-put forms are honoured."""
        return self.if_none_match and self.if_match
