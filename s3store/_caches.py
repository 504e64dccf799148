"""In-process caches of content-addressed blobs, shared by the async and the sync store.

Thread-safe (the sync store runs blob transfers on a thread pool); no I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta


class KnownBlobs:
    """Digests this store wrote or saw, so unchanged artifacts are not uploaded again.

    Entries expire after ``ttl`` so a long-lived store re-confirms blobs that gc may have
    collected in the meantime (gc only collects blobs older than its grace period, which
    should exceed this ttl).
    """

    def __init__(self, ttl: timedelta) -> None:
        self.ttl = ttl
        self._seen: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def __contains__(self, digest: object) -> bool:
        with self._lock:
            when = self._seen.get(str(digest))
        return when is not None and datetime.now(UTC) - when < self.ttl

    def add(self, digest: str) -> None:
        """Remember that the blob exists now."""
        with self._lock:
            self._seen[digest] = datetime.now(UTC)


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
