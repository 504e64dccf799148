"""Typed errors of s3store, and the one place where botocore error codes are mapped to them.

Hierarchy::

    StoreError                              root of everything s3store raises
    ├── ConfigurationError (ValueError)     bad prefix, URL, option; usage errors
    ├── InvalidIdError (ValueError)         an id that cannot become a safe key
    ├── DocumentError (ValueError)          a document that does not match the wire format
    │   ├── CorruptObjectError              ... read from the bucket (names bucket and key)
    │   └── DocumentTooLargeError           ... over the 256 MiB document cap
    ├── KeyCollisionError                   stored document belongs to another id
    ├── IntegrityError                      blob bytes do not hash to their key
    ├── ObjectNotFoundError (FileNotFoundError)
    ├── BucketNotFoundError
    ├── AccessDeniedError (PermissionError)
    ├── ConflictError                       a conditional request lost
    │   ├── AlreadyExistsError (FileExistsError)   create-only put on an existing key
    │   ├── PreconditionFailedError         If-Match with a stale (or missing) ETag
    │   ├── ConditionalRequestConflictError 409 from S3: retry after re-reading
    │   ├── LeaseHeldError                  the lease is someone else's and not expired
    │   └── LeaseLostError                  another holder took the lease over
    ├── UnsupportedBackendError             the server does not do what was asked
    ├── TransientError                      5xx / SlowDown / network, after retries
    └── BackendError                        any other S3 error (code and status kept)

Every message names the bucket and key (and ETags where they matter) in a trailing
``[bucket=…, key=…]`` block, so logs can be grepped by key. Credentials never appear:
messages are built only from the fields named here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def _context(**fields: object) -> str:
    parts = [f"{name}={value}" for name, value in fields.items() if value is not None]
    return f" [{', '.join(parts)}]" if parts else ""


class StoreError(Exception):
    """Root of every error s3store raises.

    Attributes:
        bucket: the bucket involved, when known.
        key: the object key involved, when known.
    """

    def __init__(self, message: str, *, bucket: str | None = None, key: str | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.summary = message
        super().__init__(message + _context(bucket=bucket, key=key, **self._extra_context()))

    def _extra_context(self) -> dict[str, object]:
        return {}

    def reworded(self, summary: str) -> StoreError:
        """A copy of this error (same type and fields) with a new summary."""
        clone = copy.copy(self)
        clone.summary = summary
        clone.args = (
            summary + _context(bucket=self.bucket, key=self.key, **self._extra_context()),
        )
        return clone


class ConfigurationError(StoreError, ValueError):
    """The store was configured with something unusable (prefix, URL, option)."""


class InvalidIdError(StoreError, ValueError):
    """A session or run id that cannot be mapped to a key inside the store's prefix."""

    def __init__(self, message: str, *, id: str | None = None, bucket: str | None = None) -> None:
        self.id = id
        super().__init__(message, bucket=bucket)

    def _extra_context(self) -> dict[str, object]:
        return {"id": repr(self.id) if self.id is not None else None}


class DocumentError(StoreError, ValueError):
    """A JSON document does not match the a3s-code wire format.

    Attributes:
        source: what the document is (a key, a file name, or a description).
        errors: a list of ``(field path, message)`` pairs, first problem first.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        errors: list[tuple[str, str]] | None = None,
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        self.source = source
        self.errors = errors or []
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"document": self.source if self.key is None else None}


class CorruptObjectError(DocumentError):
    """An object in the bucket is not a valid document (empty, truncated, wrong schema)."""


class DocumentTooLargeError(DocumentError):
    """A document is over the size cap (256 MiB, as in a3s-code)."""


class KeyCollisionError(StoreError):
    """The object at an id's key holds a document for a different id.

    In the legacy layout ``a/b`` and ``a_b`` share a key; the store refuses to hand one
    id's document to the other.
    """

    def __init__(
        self, message: str, *, requested: str, stored: str, bucket: str | None, key: str | None
    ) -> None:
        self.requested = requested
        self.stored = stored
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"requested": repr(self.requested), "stored": repr(self.stored)}


class IntegrityError(StoreError):
    """A content-addressed blob's bytes do not hash to the digest in its key."""

    def __init__(
        self, message: str, *, expected: str, actual: str, bucket: str | None, key: str | None
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"expected": self.expected, "actual": self.actual}


class ObjectNotFoundError(StoreError, FileNotFoundError):
    """The object does not exist (only raised where a missing object is an error)."""


class BucketNotFoundError(StoreError):
    """The bucket does not exist."""


class AccessDeniedError(StoreError, PermissionError):
    """The credentials in use may not perform the request."""


class ConflictError(StoreError):
    """A conditional request did not apply because the object changed (or exists)."""


class AlreadyExistsError(ConflictError, FileExistsError):
    """A create-only write (If-None-Match: *) found the key already taken."""


class PreconditionFailedError(ConflictError):
    """An If-Match write or delete named an ETag that is not the current one.

    Attributes:
        expected_etag: the ETag the caller sent.
        actual_etag: the current ETag, when known (``None`` if the object is missing or the
            server did not say).
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None,
        key: str | None,
        expected_etag: str | None,
        actual_etag: str | None = None,
        status: int | None = None,
    ) -> None:
        self.expected_etag = expected_etag
        self.actual_etag = actual_etag
        self.status = status
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"expected_etag": self.expected_etag, "actual_etag": self.actual_etag}


class ConditionalRequestConflictError(ConflictError):
    """S3 answered 409 ConditionalRequestConflict: a concurrent request raced this one.

    AWS's advice is to re-read the ETag and retry; the store does that itself where it can.
    """


class LeaseHeldError(ConflictError):
    """The lease is held by another holder and has not expired."""


class LeaseLostError(ConflictError):
    """A write was made under a lease that another holder has since taken over."""

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None,
        key: str | None,
        holder: str | None = None,
        epoch: int | None = None,
        current_holder: str | None = None,
        current_epoch: int | None = None,
    ) -> None:
        self.holder = holder
        self.epoch = epoch
        self.current_holder = current_holder
        self.current_epoch = current_epoch
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {
            "holder": self.holder,
            "epoch": self.epoch,
            "current_holder": self.current_holder,
            "current_epoch": self.current_epoch,
        }


class UnsupportedBackendError(StoreError):
    """The S3 server does not support (or silently ignores) what the operation needs."""


class _CodedError(StoreError):
    """An error that keeps the S3 error code and HTTP status it was mapped from."""

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.status = status
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"code": self.code, "status": self.status}


class TransientError(_CodedError):
    """A retryable failure (5xx, SlowDown, timeout, connection reset) that outlived retries."""


class BackendError(_CodedError):
    """Any other error answered by the S3 server; ``code`` and ``status`` are kept."""


# --- mapping from S3 / botocore ---------------------------------------------------------

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_BUCKET_MISSING_CODES = frozenset({"NoSuchBucket"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidToken",
    }
)
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
_CONFLICT_CODES = frozenset({"ConditionalRequestConflict", "409", "OperationAborted"})
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "500",
        "502",
        "503",
        "504",
        "Throttling",
        "ThrottlingException",
    }
)


def error_code(exc: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a botocore ``ClientError`` (``("", None)`` else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return "", None
    error: Mapping[str, Any] = response.get("Error") or {}
    meta: Mapping[str, Any] = response.get("ResponseMetadata") or {}
    status = meta.get("HTTPStatusCode")
    code = str(error.get("Code") or (status if status is not None else ""))
    return code, int(status) if isinstance(status, int) else None


def translate_error(
    exc: BaseException,
    *,
    operation: str,
    bucket: str | None,
    key: str | None,
    if_none_match: bool = False,
    if_match: str | None = None,
) -> StoreError:
    """Map a botocore/aiobotocore exception to the s3store error for it.

    ``if_none_match`` and ``if_match`` say which condition the request carried: a 412 on a
    create-only put means the key exists, a 412 (or a 404, as AWS, moto and LocalStack answer)
    on an If-Match request means the ETag was stale.
    """
    if isinstance(exc, StoreError):
        return exc
    code, status = error_code(exc)
    what = f"{operation} failed"
    if not code:
        # Not a ClientError: connection reset, read timeout, endpoint unreachable, ...
        name = type(exc).__name__
        return TransientError(f"{what}: {name}: {exc}", bucket=bucket, key=key, code=name)
    message = _server_message(exc)
    if code in _PRECONDITION_CODES or (if_match is not None and code in _NOT_FOUND_CODES):
        if if_none_match:
            return AlreadyExistsError(f"{what}: object already exists", bucket=bucket, key=key)
        return PreconditionFailedError(
            f"{what}: precondition failed ({message or code})",
            bucket=bucket,
            key=key,
            expected_etag=if_match,
            status=status,
        )
    if code in _CONFLICT_CODES and status in (409, None):
        return ConditionalRequestConflictError(
            f"{what}: conflicting concurrent request (409 {code})", bucket=bucket, key=key
        )
    if code in _BUCKET_MISSING_CODES:
        return BucketNotFoundError(f"{what}: bucket does not exist", bucket=bucket, key=key)
    if code in _NOT_FOUND_CODES:
        return ObjectNotFoundError(f"{what}: no such key", bucket=bucket, key=key)
    if code in _ACCESS_CODES:
        return AccessDeniedError(f"{what}: access denied ({code})", bucket=bucket, key=key)
    if code in _UNSUPPORTED_CODES:
        return UnsupportedBackendError(
            f"{what}: the server does not implement this request ({code})",
            bucket=bucket,
            key=key,
        )
    if code in _TRANSIENT_CODES or (status is not None and status >= 500):
        return TransientError(
            f"{what}: {message or code}", bucket=bucket, key=key, code=code, status=status
        )
    return BackendError(
        f"{what}: {message or code}", bucket=bucket, key=key, code=code, status=status
    )


def _server_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error") or {}
        return str(error.get("Message") or "")
    return ""


__all__ = [
    "AccessDeniedError",
    "AlreadyExistsError",
    "BackendError",
    "BucketNotFoundError",
    "ConditionalRequestConflictError",
    "ConfigurationError",
    "ConflictError",
    "CorruptObjectError",
    "DocumentError",
    "DocumentTooLargeError",
    "IntegrityError",
    "InvalidIdError",
    "KeyCollisionError",
    "LeaseHeldError",
    "LeaseLostError",
    "ObjectNotFoundError",
    "PreconditionFailedError",
    "StoreError",
    "TransientError",
    "UnsupportedBackendError",
    "error_code",
    "translate_error",
]
