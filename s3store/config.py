"""Store settings and the I/O-free parts of talking to S3: request arguments, response parsing,
the botocore client configuration. Shared by the async and the sync transport."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlparse

from s3store.errors import ConfigurationError
from s3store.keys import LayoutName, normalize_prefix
from s3store.types import ObjectInfo, PutResult

MIB = 1024 * 1024
DEFAULT_MAX_DOCUMENT_BYTES = 256 * MIB


@dataclass(frozen=True)
class StoreSettings:
    """Everything that shapes a store's behaviour; built by the store constructors.

    Attributes:
        bucket: the S3 bucket.
        prefix: key prefix, normalised (no leading/trailing ``/``; may be empty).
        layout: ``"legacy"`` (the seed's tree) or ``"v1"`` (upstream's base64 tree).
        endpoint_url: S3 endpoint (``None``: AWS, or ``AWS_ENDPOINT_URL``).
        region_name: region (``None``: the AWS chain decides).
        profile_name: AWS profile for building a client.
        checksums: ``"when_supported"`` (botocore's default since 1.36) or ``"when_required"``,
            for S3-compatible servers that choke on default CRC checksums over HTTPS.
        retry_mode: botocore retry mode, ``"standard"`` or ``"adaptive"``.
        max_attempts: botocore attempts per request (first try included).
        connect_timeout / read_timeout: seconds.
        max_concurrency: in-flight requests for blob uploads/downloads.
        max_pool_connections: HTTP connection pool size of clients the store builds.
        inline_threshold: artifact contents shorter than this many UTF-8 bytes stay inline
            in the manifest instead of becoming a blob (0: every content is a blob).
        multipart_threshold / part_size: blobs this large go up as multipart uploads.
        blob_cache_bytes: budget of the in-process LRU cache of verified blob bodies
            (0 disables it); loads of sessions that share artifacts skip those GETs.
        list_page_size: MaxKeys per listing request (≤ 1000).
        max_document_bytes: documents larger than this are refused (read and write).
        expected_bucket_owner: sent as ``ExpectedBucketOwner`` on every request.
        sse / sse_kms_key_id: server-side encryption for every PUT (``"AES256"``/``"aws:kms"``).
        on_unenforced_conditions: what a conditional operation does on a server the probe
            found ignoring conditions: ``"raise"`` (UnsupportedBackendError) or ``"warn"``.
        conflict_retries: how often a 409 ConditionalRequestConflict is retried.
    """

    bucket: str
    prefix: str = ""
    layout: LayoutName = "legacy"
    endpoint_url: str | None = None
    region_name: str | None = None
    profile_name: str | None = None
    checksums: Literal["when_supported", "when_required"] = "when_supported"
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_concurrency: int = 16
    max_pool_connections: int = 64
    inline_threshold: int = 4096
    multipart_threshold: int = 8 * MIB
    part_size: int = 8 * MIB
    blob_cache_bytes: int = 32 * MIB
    list_page_size: int = 1000
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    expected_bucket_owner: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    on_unenforced_conditions: Literal["raise", "warn"] = "raise"
    conflict_retries: int = 5

    def __post_init__(self) -> None:
        if not self.bucket or not isinstance(self.bucket, str):
            raise ConfigurationError("bucket must be a non-empty string")
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        if not 1 <= self.list_page_size <= 1000:
            raise ConfigurationError("list_page_size must be between 1 and 1000")
        if self.part_size < 5 * MIB:
            raise ConfigurationError("part_size must be at least 5 MiB (S3's minimum)")
        if self.max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        if self.on_unenforced_conditions not in ("raise", "warn"):
            raise ConfigurationError("on_unenforced_conditions must be 'raise' or 'warn'")
        if self.sse_kms_key_id is not None and self.sse is None:
            object.__setattr__(self, "sse", "aws:kms")

    def with_(self, **changes: Any) -> StoreSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        # Never print anything credential-like; settings hold none, but keep the repr short.
        return (
            f"StoreSettings(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"layout={self.layout!r}, endpoint_url={self.endpoint_url!r}, "
            f"region_name={self.region_name!r})"
        )


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into ``(bucket, prefix)``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigurationError(f"expected a URL like s3://bucket/prefix, got {url!r}")
    if parsed.query or parsed.fragment:
        raise ConfigurationError(f"an s3:// URL takes no query or fragment: {url!r}")
    return parsed.netloc, normalize_prefix(parsed.path)


def settings_from_env(**overrides: Any) -> StoreSettings:
    """Settings from ``S3STORE_URL`` and the AWS variables, with explicit overrides on top."""
    kwargs: dict[str, Any] = {}
    url = os.environ.get("S3STORE_URL")
    if url:
        kwargs["bucket"], kwargs["prefix"] = parse_s3_url(url)
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    if "bucket" not in kwargs:
        raise ConfigurationError("no bucket: pass bucket= or set S3STORE_URL=s3://bucket/prefix")
    return StoreSettings(**kwargs)


def botocore_config(settings: StoreSettings) -> Any:
    """The botocore ``Config`` for clients the store builds itself."""
    from botocore.config import Config

    return Config(
        # total_max_attempts counts the first try; botocore's max_attempts would not.
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.max_pool_connections,
        request_checksum_calculation=settings.checksums,
        response_checksum_validation=settings.checksums,
    )


def client_kwargs(settings: StoreSettings) -> dict[str, Any]:
    """Arguments for ``session.client("s3", ...)``."""
    kwargs: dict[str, Any] = {"config": botocore_config(settings)}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    if settings.region_name:
        kwargs["region_name"] = settings.region_name
    return kwargs


def owner_args(settings: StoreSettings) -> dict[str, Any]:
    """``ExpectedBucketOwner``, for every request that takes it."""
    if settings.expected_bucket_owner:
        return {"ExpectedBucketOwner": settings.expected_bucket_owner}
    return {}


def write_args(settings: StoreSettings) -> dict[str, Any]:
    """Arguments every object-creating request carries (owner check, SSE)."""
    args = owner_args(settings)
    if settings.sse:
        args["ServerSideEncryption"] = settings.sse
    if settings.sse_kms_key_id:
        args["SSEKMSKeyId"] = settings.sse_kms_key_id
    return args


def condition_args(*, if_none_match: bool, if_match: str | None) -> dict[str, Any]:
    """``IfNoneMatch`` / ``IfMatch`` request arguments."""
    if if_none_match and if_match is not None:
        raise ValueError("a request takes If-None-Match or If-Match, not both")
    if if_none_match:
        return {"IfNoneMatch": "*"}
    if if_match is not None:
        return {"IfMatch": if_match}
    return {}


def server_time(response: Mapping[str, Any]) -> datetime | None:
    """The server's ``Date`` header from a botocore response, as an aware datetime."""
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    value = headers.get("date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def put_result(response: Mapping[str, Any]) -> PutResult:
    """A PutResult from a PutObject / CompleteMultipartUpload response."""
    return PutResult(
        etag=str(response.get("ETag", "")),
        version_id=response.get("VersionId"),
        server_time=server_time(response),
    )


def object_info(key: str, response: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a HeadObject / GetObject response."""
    return ObjectInfo(
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=str(response.get("ETag", "")),
        last_modified=response.get("LastModified"),
        version_id=response.get("VersionId"),
        server_time=server_time(response),
        metadata=dict(response.get("Metadata") or {}),
    )


def listed_info(entry: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from one ``Contents`` entry of ListObjectsV2."""
    return ObjectInfo(
        key=str(entry["Key"]),
        size=int(entry.get("Size", 0)),
        etag=str(entry.get("ETag", "")),
        last_modified=entry.get("LastModified"),
    )
