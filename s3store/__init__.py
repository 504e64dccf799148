"""s3store: a3s-code agent sessions in S3-compatible object storage.

Async first (:class:`AsyncS3SessionStore`, aioboto3) with a generated sync twin
(:class:`S3SessionStore`, boto3). Importing the package is cheap: the stores, models and
their dependencies (boto3, aioboto3, pydantic) load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from s3store._gc import GcPaused

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
    "SessionChange": "s3store.types",
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
    "TransientError": "s3store.errors",
    "ConfigurationError": "s3store.errors",
    "InvalidArgumentError": "s3store.errors",
    "OutcomeUnknownError": "s3store.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from s3store._async.lease import AsyncLease as AsyncLease
    from s3store._async.store import AsyncS3SessionStore as AsyncS3SessionStore
    from s3store._sync.lease import Lease as Lease
    from s3store._sync.store import S3SessionStore as S3SessionStore
    from s3store.config import StoreSettings as StoreSettings
    from s3store.errors import (
        AlreadyExistsError as AlreadyExistsError,
    )
    from s3store.errors import (
        ConfigurationError as ConfigurationError,
    )
    from s3store.errors import (
        ConflictError as ConflictError,
    )
    from s3store.errors import (
        CorruptObjectError as CorruptObjectError,
    )
    from s3store.errors import (
        IntegrityError as IntegrityError,
    )
    from s3store.errors import (
        InvalidArgumentError as InvalidArgumentError,
    )
    from s3store.errors import (
        InvalidIdError as InvalidIdError,
    )
    from s3store.errors import (
        KeyCollisionError as KeyCollisionError,
    )
    from s3store.errors import (
        LeaseHeldError as LeaseHeldError,
    )
    from s3store.errors import (
        LeaseLostError as LeaseLostError,
    )
    from s3store.errors import (
        OutcomeUnknownError as OutcomeUnknownError,
    )
    from s3store.errors import (
        PreconditionFailedError as PreconditionFailedError,
    )
    from s3store.errors import (
        StoreError as StoreError,
    )
    from s3store.errors import (
        TransientError as TransientError,
    )
    from s3store.errors import (
        UnsupportedBackendError as UnsupportedBackendError,
    )
    from s3store.models import (
        ArtifactStore as ArtifactStore,
    )
    from s3store.models import (
        LoopCheckpoint as LoopCheckpoint,
    )
    from s3store.models import (
        Message as Message,
    )
    from s3store.models import (
        RunRecord as RunRecord,
    )
    from s3store.models import (
        SessionConfig as SessionConfig,
    )
    from s3store.models import (
        SessionData as SessionData,
    )
    from s3store.models import (
        SessionSnapshotV1 as SessionSnapshotV1,
    )
    from s3store.models import (
        SubagentTaskSnapshot as SubagentTaskSnapshot,
    )
    from s3store.models import (
        ToolArtifact as ToolArtifact,
    )
    from s3store.models import (
        TraceEvent as TraceEvent,
    )
    from s3store.models import (
        VerificationReport as VerificationReport,
    )
    from s3store.reports import FsckReport as FsckReport
    from s3store.reports import GcReport as GcReport
    from s3store.types import (
        Capabilities as Capabilities,
    )
    from s3store.types import (
        IfMatch as IfMatch,
    )
    from s3store.types import (
        PutMode as PutMode,
    )
    from s3store.types import (
        PutResult as PutResult,
    )
    from s3store.types import SessionChange as SessionChange
    from s3store.types import (
        StoreStats as StoreStats,
    )
    from s3store.types import (
        Versioned as Versioned,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's3store' has no attribute {name!r}")
    # The first name loads pydantic, the models and a store: about a hundred classes, and
    # collections that free nothing (bench/cold_start.py; see s3store/_gc.py).
    with GcPaused():
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
