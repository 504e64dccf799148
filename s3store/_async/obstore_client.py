"""The obstore transport (Rust ``object_store``) under the async store: ``transport="obstore"``.

Async only. The client itself, :class:`s3store._obstore.AsyncObstoreObjectClient`, lives
outside this tree because ``scripts/unasync.py`` rewrites every module here into a sync
twin; this module is only the seam the store builds its client through. In the generated
sync twin :func:`open_obstore_client` is a plain function and refuses: the sync store keeps
boto3 (``S3SessionStore(transport="obstore")`` raises ConfigurationError when it opens).
"""

from __future__ import annotations

import inspect
from typing import Any

from s3store.config import StoreSettings
from s3store.errors import ConfigurationError


async def open_obstore_client(settings: StoreSettings) -> Any:
    """An :class:`~s3store._async.client.AsyncObjectClient` over obstore, from ``settings``.

    ConfigurationError when obstore is not installed, and in the sync store.
    """
    if not inspect.iscoroutinefunction(open_obstore_client):
        # This is the sync twin generated from the async module.
        raise ConfigurationError(
            "transport='obstore' is async only: use it with the async store, or "
            "transport='boto3' (the default) with this sync store",
            bucket=settings.bucket,
        )
    from s3store._obstore import AsyncObstoreObjectClient

    return AsyncObstoreObjectClient(settings)
