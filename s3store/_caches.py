"""In-process caches of content-addressed blobs, shared by the async and the sync store.

Thread-safe (the sync store runs blob transfers on a thread pool); no I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class KnownBlob:
    """A stored blob version this store saw: when the server last wrote it, and its ETag."""

    last_modified: datetime
    etag: str


class KnownBlobs:
    """Blob versions this store wrote or read, by digest, with their server Last-Modified.

    A writer may skip uploading a blob only while the version it knows is younger than the
    reuse window by the server's clock (see :class:`ServerClock`): gc never deletes a blob
    version younger than its grace floor, which is larger than the window. Older knowledge
    is not trusted: the writer re-uploads (freshens) the blob instead. Digests seen corrupt
    are remembered so that the next upload replaces the damaged version.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, KnownBlob] = OrderedDict()
        self._corrupt: set[str] = set()
        self._lock = threading.Lock()

    def get(self, digest: str) -> KnownBlob | None:
        """What this store knows about the blob, or None."""
        with self._lock:
            return self._seen.get(digest)

    def add(self, digest: str, last_modified: datetime | None, etag: str) -> None:
        """Remember a version of the blob (None ``last_modified``: nothing to remember)."""
        if last_modified is None:
            return
        with self._lock:
            known = self._seen.get(digest)
            if known is None or known.last_modified <= last_modified:
                self._seen[digest] = KnownBlob(last_modified, etag)
            self._seen.move_to_end(digest)
            self._corrupt.discard(digest)
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)

    def forget(self, digest: str, *, corrupt: bool = False) -> None:
        """Drop what is known; ``corrupt`` marks the stored version for replacement."""
        with self._lock:
            self._seen.pop(digest, None)
            if corrupt:
                self._corrupt.add(digest)

    def is_corrupt(self, digest: str) -> bool:
        """Whether this store read a damaged version of the blob and has not replaced it."""
        with self._lock:
            return digest in self._corrupt


class ServerClock:
    """The server's time, estimated from the ``Date`` of its last answer plus local elapsed
    time on a monotonic clock. Worker clocks never have to agree with each other or with
    the server; only the server's own timestamps are compared."""

    def __init__(self) -> None:
        self._anchor: tuple[datetime, float] | None = None
        self._lock = threading.Lock()

    def observe(self, server_time: datetime | None, local: float) -> None:
        """Record a server timestamp seen at local monotonic time ``local``."""
        if server_time is None:
            return
        with self._lock:
            self._anchor = (server_time, local)

    def now(self, local: float) -> datetime | None:
        """The estimated server time at local monotonic time ``local`` (None: never seen)."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return None
        return anchor[0] + timedelta(seconds=max(0.0, local - anchor[1]))


class BlobCache:
    """Verified blob bodies by digest, least recently used first out, bounded in bytes.

    Blobs are immutable (the key is the hash of the bytes), so a cached body can never be
    stale; only bodies that were hashed (read) or produced (written) by this process enter.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        """The body, or None."""
        with self._lock:
            body = self._bodies.get(digest)
            if body is not None:
                self._bodies.move_to_end(digest)
            return body

    def put(self, digest: str, body: bytes) -> None:
        """Keep a body, evicting the least recently used ones over budget."""
        if len(body) > self.budget:
            return
        with self._lock:
            if digest in self._bodies:
                self._bodies.move_to_end(digest)
                return
            self._bodies[digest] = body
            self.size += len(body)
            while self.size > self.budget:
                _, evicted = self._bodies.popitem(last=False)
                self.size -= len(evicted)


class VersionHistory:
    """For each document key, the ETag this process last saw and the write tokens behind it.

    A conditional write passes the tokens of the version it replaces on in its metadata, so
    a writer whose answer was lost can later find its own token in a newer version's history
    and know that its write landed. Bounded: the oldest keys are forgotten first.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._by_key: OrderedDict[str, tuple[str, list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: str, etag: str, chain: list[str]) -> None:
        """Record that ``key`` is at ``etag`` whose write tokens are ``chain`` (newest first)."""
        with self._lock:
            self._by_key[key] = (etag, chain)
            self._by_key.move_to_end(key)
            while len(self._by_key) > self.max_keys:
                self._by_key.popitem(last=False)

    def history(self, key: str, etag: str | None) -> list[str]:
        """The tokens of the version at ``etag`` (empty if this process has not seen it)."""
        with self._lock:
            seen = self._by_key.get(key)
        if seen is None or etag is None or _bare(seen[0]) != _bare(etag):
            return []
        return list(seen[1])


def _bare(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')
