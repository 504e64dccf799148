"""s3store: a3s-code agent sessions in S3-compatible object storage.

Async first (:class:`AsyncS3SessionStore`, aioboto3) with a generated sync twin
(:class:`S3SessionStore`, boto3). Importing the package is cheap: the stores, models and
their dependencies (boto3, aioboto3, pydantic) load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "AsyncS3SessionStore": "s3store._async.store",
    "S3SessionStore": "s3store._sync.store",
    "AsyncLease": "s3store._async.lease",
    "Lease": "s3store._sync.lease",
    "PutResult": "s3store.types",
    "PutMode": "s3store.types",
    "IfMatch": "s3store.types",
    "Versioned": "s3store.types",
    "StoreStats": "s3store.types",
    "Capabilities": "s3store.types",
    "StoreSettings": "s3store.config",
    "GcReport": "s3store.reports",
    "FsckReport": "s3store.reports",
    "SessionData": "s3store.models",
    "SessionConfig": "s3store.models",
    "Message": "s3store.models",
    "ArtifactStore": "s3store.models",
    "ToolArtifact": "s3store.models",
    "TraceEvent": "s3store.models",
    "RunRecord": "s3store.models",
    "VerificationReport": "s3store.models",
    "SubagentTaskSnapshot": "s3store.models",
    "LoopCheckpoint": "s3store.models",
    "SessionSnapshotV1": "s3store.models",
    "StoreError": "s3store.errors",
    "ConflictError": "s3store.errors",
    "AlreadyExistsError": "s3store.errors",
    "PreconditionFailedError": "s3store.errors",
    "LeaseLostError": "s3store.errors",
    "LeaseHeldError": "s3store.errors",
    "KeyCollisionError": "s3store.errors",
    "IntegrityError": "s3store.errors",
    "InvalidIdError": "s3store.errors",
    "CorruptObjectError": "s3store.errors",
    "UnsupportedBackendError": "s3store.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from s3store._async.lease import AsyncLease
    from s3store._async.store import AsyncS3SessionStore
    from s3store._sync.lease import Lease
    from s3store._sync.store import S3SessionStore
    from s3store.config import StoreSettings
    from s3store.errors import (
        AlreadyExistsError,
        ConflictError,
        CorruptObjectError,
        IntegrityError,
        InvalidIdError,
        KeyCollisionError,
        LeaseHeldError,
        LeaseLostError,
        PreconditionFailedError,
        StoreError,
        UnsupportedBackendError,
    )
    from s3store.models import (
        ArtifactStore,
        LoopCheckpoint,
        Message,
        RunRecord,
        SessionConfig,
        SessionData,
        SessionSnapshotV1,
        SubagentTaskSnapshot,
        ToolArtifact,
        TraceEvent,
        VerificationReport,
    )
    from s3store.reports import FsckReport, GcReport
    from s3store.types import (
        Capabilities,
        IfMatch,
        PutMode,
        PutResult,
        StoreStats,
        Versioned,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's3store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
