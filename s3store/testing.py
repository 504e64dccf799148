"""Test helpers for users of s3store: in-memory object clients with real S3 semantics.

    from s3store import S3SessionStore
    from s3store.testing import MemoryObjectClient

    store = S3SessionStore(client=MemoryObjectClient("my-bucket"), prefix="agents")

Both clients may share one :class:`MemoryBackend` (``backend=``) so that an async and a sync
store see the same bucket. See :mod:`s3store._memory` for the semantics (ETags, If-None-Match,
If-Match with 404 or 412 on a missing key, conditional delete, an "ignore conditions" mode
that mimics servers which silently drop conditional headers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s3store._memory import MemoryBackend
from s3store._sync.client import MemoryObjectClient

__all__ = ["AsyncMemoryObjectClient", "MemoryBackend", "MemoryObjectClient"]

if TYPE_CHECKING:
    from s3store._async.client import AsyncMemoryObjectClient
else:

    def __getattr__(name: str) -> Any:
        # The async client loads asyncio: a sync-only test suite should not pay for it.
        if name == "AsyncMemoryObjectClient":
            from s3store._async.client import AsyncMemoryObjectClient

            return AsyncMemoryObjectClient
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
