"""Typed errors of s3store, and the one place where botocore error codes are mapped to them.

Hierarchy::

    StoreError                              root of everything s3store raises
    ├── ConfigurationError (ValueError)     bad prefix, URL, option; usage errors
    ├── InvalidIdError (ValueError)         an id that cannot become a safe key
    ├── InvalidArgumentError (TypeError)    a value of the wrong type given to a store method
    ├── DocumentError (ValueError)          a document that does not match the wire format
    │   ├── CorruptObjectError              ... read from the bucket (names bucket and key)
    │   └── DocumentTooLargeError           ... over the 256 MiB document cap
    ├── KeyCollisionError (ValueError)      stored document belongs to another id
    ├── IntegrityError (ValueError)         blob bytes do not hash to their key
    ├── ObjectNotFoundError (FileNotFoundError)
    ├── BucketNotFoundError (LookupError)
    ├── AccessDeniedError (PermissionError)
    ├── ConflictError (RuntimeError)        a conditional request lost
    │   ├── AlreadyExistsError (FileExistsError)   create-only put on an existing key
    │   ├── PreconditionFailedError         If-Match with a stale (or missing) ETag
    │   ├── ConditionalRequestConflictError 409 from S3: retry after re-reading
    │   ├── LeaseHeldError                  the lease is someone else's and not expired
    │   └── LeaseLostError                  another holder took the lease over
    ├── UnsupportedBackendError (NotImplementedError)   the server does not do what was asked
    ├── TransientError (RuntimeError)       5xx / SlowDown / network, after retries
    │   └── OutcomeUnknownError             a write that may or may not have landed
    └── BackendError (RuntimeError)         any other S3 error (code and status kept)

Every class below the root also inherits the builtin in parentheses (a subclass inherits
its parent's), so ``except ValueError`` / ``except FileNotFoundError`` style handlers work.
None of them is an ``OSError`` except where the builtin says so (``FileNotFoundError``,
``FileExistsError``, ``PermissionError``): file-handling code that catches ``OSError`` does
not swallow a network failure by accident.

Every error that concerns a bucket names it (and the key, id and ETags where they matter) in
a trailing ``[bucket=…, key=…]`` block, so logs can be grepped by key. Errors raised before
any bucket is known (a missing or malformed configuration value) have no such block; they
say in one line what to change. Credentials never appear: messages are built only from the
fields named here.

botocore's client-side exceptions that mean the configuration is wrong (no credentials, a
malformed bucket name or parameter, an invalid region or endpoint) are mapped to
:class:`ConfigurationError`, not :class:`TransientError`: retrying cannot help.
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
        retried: the SDK sent the request more than once before this answer (an earlier
            attempt may have been applied although its answer never arrived).
    """

    retried: bool = False

    def __init__(self, message: str, *, bucket: str | None = None, key: str | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.summary = message
        super().__init__(message + _context(bucket=bucket, key=key, **self._extra_context()))

    def _extra_context(self) -> dict[str, object]:
        return {}

    def for_key(self, key: str | None, summary: str | None = None) -> StoreError:
        """A copy of this error (same type and fields) about another key."""
        clone = copy.copy(self)
        clone.key = key
        return clone.reworded(summary or self.summary)

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


class InvalidArgumentError(StoreError, TypeError):
    """A store method got a value of the wrong type (a dict that is not a valid document is
    a :class:`DocumentError`; a model of another type, a string where a list belongs, or
    an ``update()`` function that returned nothing is this)."""


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


class KeyCollisionError(StoreError, ValueError):
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


class IntegrityError(StoreError, ValueError):
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


class NotModifiedError(StoreError, LookupError):
    """A conditional GET (If-None-Match) found the object unchanged: 304 Not Modified.

    Not an error for callers: the object client turns it into a ``GetResult`` with
    ``not_modified=True``. Kept out of ``__all__`` (no store method raises it).
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        etag: str | None = None,
    ) -> None:
        super().__init__(message, bucket=bucket, key=key)
        self.etag = etag
        """The ETag the server answered with (its current ETag), if it sent one."""


class BucketNotFoundError(StoreError, LookupError):
    """The bucket does not exist."""


class AccessDeniedError(StoreError, PermissionError):
    """The credentials in use may not perform the request."""


class ConflictError(StoreError, RuntimeError):
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


class UnsupportedBackendError(StoreError, NotImplementedError):
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


class TransientError(_CodedError, RuntimeError):
    """A retryable failure (5xx, SlowDown, timeout, connection reset) that outlived retries.

    On a read it means the read did not happen. On a write the store never lets a bare
    TransientError through: it checks what landed and raises :class:`OutcomeUnknownError`
    when it cannot tell.
    """


class OutcomeUnknownError(TransientError):
    """A write may or may not have been applied, and the store could not find out which.

    FoundationDB's ``commit_unknown_result``: the request (or one of the SDK's retries of
    it) may have landed before the answer was lost. The store has not retried the operation
    on its own (``update()`` never re-runs ``fn`` after this). Read the object again to see
    which happened, then decide; blind re-application can apply a change twice.
    """


class BackendError(_CodedError, RuntimeError):
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
# A 304 has no body: botocore names it by its status ("304"), some servers "NotModified".
_NOT_MODIFIED_CODES = frozenset({"NotModified", "304"})
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
    error = _translate(exc, code, status, operation, bucket, key, if_none_match, if_match)
    error.retried = _retry_attempts(exc) > 0
    return error


def _header(exc: BaseException, name: str) -> str | None:
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata") if isinstance(response, Mapping) else None
    headers = meta.get("HTTPHeaders") if isinstance(meta, Mapping) else None
    value = headers.get(name) if isinstance(headers, Mapping) else None
    return value if isinstance(value, str) else None


def _retry_attempts(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata") if isinstance(response, Mapping) else None
    attempts = meta.get("RetryAttempts") if isinstance(meta, Mapping) else None
    return attempts if isinstance(attempts, int) else 0


def _translate(
    exc: BaseException,
    code: str,
    status: int | None,
    operation: str,
    bucket: str | None,
    key: str | None,
    if_none_match: bool,
    if_match: str | None,
) -> StoreError:
    what = f"{operation} failed"
    misconfigured = _configuration_problem(exc, bucket)
    if misconfigured is not None:
        return ConfigurationError(f"{what}: {misconfigured}", bucket=bucket, key=key)
    if not code:
        # Not a ClientError: connection reset, read timeout, endpoint unreachable, ...
        name = type(exc).__name__
        return TransientError(f"{what}: {name}: {exc}", bucket=bucket, key=key, code=name)
    message = _server_message(exc)
    if code in _NOT_MODIFIED_CODES:
        return NotModifiedError(
            f"{what}: not modified", bucket=bucket, key=key, etag=_header(exc, "etag")
        )
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


# botocore exceptions raised before a request is sent because the configuration is wrong:
# class name -> how to fix it (one line). Matched by name, so this module imports no botocore.
_CONFIGURATION_HINTS = {
    "NoCredentialsError": "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an IAM role is attached",
    "PartialCredentialsError": "incomplete AWS credentials: set both AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
    "ProfileNotFound": "the AWS profile does not exist: check AWS_PROFILE / --profile",
    "NoRegionError": "no AWS region: set AWS_REGION (or pass region_name= / --region)",
    "InvalidRegionError": "invalid AWS region name: use one like us-east-1",
    "InvalidEndpointConfigurationError": "invalid endpoint configuration",
    "UnknownEndpointError": "cannot resolve an endpoint: check the region and endpoint_url",
}


def _configuration_problem(exc: BaseException, bucket: str | None) -> str | None:
    """One line saying what to fix, if ``exc`` is a client-side configuration mistake."""
    names = [cls.__name__ for cls in type(exc).__mro__]
    if not any(cls.__module__.startswith("botocore") for cls in type(exc).__mro__):
        return None
    for name in names:
        if name in _CONFIGURATION_HINTS:
            return _CONFIGURATION_HINTS[name]
    if "ParamValidationError" in names:
        text = str(exc)
        if "Bucket" in text and bucket is not None:
            return (
                f"{bucket!r} is not a valid bucket name: pass the bucket's name only "
                "(for s3://bucket/prefix use from_url() or S3STORE_URL)"
            )
        first = text.strip().splitlines()[0] if text.strip() else "invalid parameter"
        return f"invalid request parameter: {first[:200]}"
    return None


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
    "InvalidArgumentError",
    "InvalidIdError",
    "KeyCollisionError",
    "LeaseHeldError",
    "LeaseLostError",
    "ObjectNotFoundError",
    "OutcomeUnknownError",
    "PreconditionFailedError",
    "StoreError",
    "TransientError",
    "UnsupportedBackendError",
    "error_code",
    "translate_error",
]
