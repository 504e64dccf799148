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
        gc_grace_floor: seconds; gc refuses a grace shorter than this. A writer that reuses
            a stored blob relies on gc leaving any blob version younger than this alone.
            Must exceed ``blob_reuse_window`` plus the longest a writer may stall between
            checking a blob and its manifest PUT landing (pauses, retries, and up to 15
            minutes for a signed request in flight). Default 1 hour.
        blob_head_threshold: bytes; a blob this large that the store does not know is
            HEADed before uploading (one small request instead of a body sent only to learn
            the blob was there). Smaller blobs go up create-only directly.
        blob_reuse_window: seconds; a writer skips uploading a blob it knows only while the
            version it knows is younger than this by the server's clock, and re-uploads
            (freshens) it otherwise. Default 10 minutes.
        journal: journal mode (README "Journal mode"): a save of a session this store knows
            writes only a delta (appended messages, changed members); loads fold the deltas.
            Bare session documents only (not with encryption or v1 snapshots).
        journal_compact_every / journal_compact_bytes: fold the deltas into the document
            once this many deltas, or this many bytes of them, are pending.
        journal_compact_on_close: closing the store (``close()``, leaving its ``with``)
            first folds every document this store knows to have pending deltas, so readers
            that know nothing of journals (the Rust store) see the latest state. Best
            effort: a compaction that fails is logged and the deltas stay (nothing is lost).
        transport: the HTTP client of a store that builds its own: ``"boto3"`` (aioboto3 /
            boto3, the default) or ``"obstore"`` (Rust ``object_store`` through obstore,
            async store only, ``pip install 's3store[obstore]'``; see
            :mod:`s3store._obstore` for what it does natively, emulates and refuses).
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
    gc_grace_floor: float = 3600.0
    blob_head_threshold: int = 256 * 1024
    blob_reuse_window: float = 600.0
    journal: bool = False
    journal_compact_every: int = 32
    journal_compact_bytes: int = 256 * 1024
    journal_compact_on_close: bool = False
    transport: Literal["boto3", "obstore"] = "boto3"

    def __post_init__(self) -> None:
        if not self.bucket or not isinstance(self.bucket, str):
            raise ConfigurationError("bucket must be a non-empty string")
        check_bucket_name(self.bucket)
        if not isinstance(self.prefix, str):
            raise ConfigurationError(f"prefix must be a string, got {type(self.prefix).__name__}")
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        _check_values(self)
        if not 1 <= self.list_page_size <= 1000:
            raise ConfigurationError("list_page_size must be between 1 and 1000")
        if self.part_size < 5 * MIB:
            raise ConfigurationError("part_size must be at least 5 MiB (S3's minimum)")
        if not 0 < self.blob_reuse_window < self.gc_grace_floor:
            raise ConfigurationError(
                "blob_reuse_window must be positive and below gc_grace_floor "
                f"({self.blob_reuse_window}s vs {self.gc_grace_floor}s): gc's safety needs it"
            )
        if self.max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        for flag in ("journal", "journal_compact_on_close"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(
                    f"{flag} must be True or False, got {getattr(self, flag)!r}"
                )
        if self.journal_compact_on_close and not self.journal:
            raise ConfigurationError("journal_compact_on_close needs journal=True")
        if self.on_unenforced_conditions not in ("raise", "warn"):
            raise ConfigurationError("on_unenforced_conditions must be 'raise' or 'warn'")
        if self.sse_kms_key_id is not None and self.sse is None:
            object.__setattr__(self, "sse", "aws:kms")
        if self.transport == "obstore":
            from s3store._obstore import require_obstore

            require_obstore()

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


# Field -> (allowed values) for the closed vocabularies; numbers are checked in _check_values.
_CHOICES: dict[str, tuple[object, ...]] = {
    "layout": ("legacy", "v1"),
    "checksums": ("when_supported", "when_required"),
    "retry_mode": ("standard", "adaptive", "legacy"),
    "on_unenforced_conditions": ("raise", "warn"),
    "sse": (None, "AES256", "aws:kms", "aws:kms:dsse"),
    "transport": ("boto3", "obstore"),
}
_POSITIVE_INTS = (
    "max_attempts",
    "max_concurrency",
    "max_pool_connections",
    "multipart_threshold",
    "part_size",
    "list_page_size",
    "max_document_bytes",
    "journal_compact_every",
    "journal_compact_bytes",
)
_NON_NEGATIVE_INTS = (
    "inline_threshold",
    "blob_cache_bytes",
    "conflict_retries",
    "blob_head_threshold",
)
_POSITIVE_FLOATS = ("connect_timeout", "read_timeout", "gc_grace_floor", "blob_reuse_window")
_OPTIONAL_STRINGS = (
    "endpoint_url",
    "region_name",
    "profile_name",
    "expected_bucket_owner",
    "sse_kms_key_id",
)
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def check_bucket_name(bucket: str) -> None:
    """Refuse what botocore would refuse later with a long regex (a URL, a path)."""
    if "://" in bucket or bucket.startswith("s3:"):
        raise ConfigurationError(
            f"bucket {bucket!r} is a URL: pass the bucket's name only, or use "
            "from_url('s3://bucket/prefix') / S3STORE_URL"
        )
    if bucket.startswith("arn:"):
        return  # access point / outpost ARNs: botocore checks them
    if "/" in bucket:
        raise ConfigurationError(
            f"bucket {bucket!r} contains '/': pass the bucket as bucket= and the rest as prefix="
        )
    if len(bucket) > 255 or not set(bucket) <= _BUCKET_CHARS:
        raise ConfigurationError(
            f"bucket {bucket!r} is not a valid bucket name (letters, digits, '.', '-', '_'; "
            "AWS: 3-63 lowercase characters)"
        )


def _check_values(settings: StoreSettings) -> None:
    """Refuse option values botocore or the store would only trip over on first use."""
    for name, allowed in _CHOICES.items():
        value = getattr(settings, name)
        if value not in allowed:
            shown = ", ".join(repr(a) for a in allowed if a is not None)
            raise ConfigurationError(f"{name} must be one of {shown}; got {value!r}")
    for name in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name} must be an integer, got {value!r}")
        if value < (1 if name in _POSITIVE_INTS else 0):
            floor = "at least 1" if name in _POSITIVE_INTS else "0 or more"
            raise ConfigurationError(f"{name} must be {floor}, got {value!r}")
    for name in _POSITIVE_FLOATS:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        if value == float("inf"):
            raise ConfigurationError(f"{name} must be finite, got {value!r}")
    for name in _OPTIONAL_STRINGS:
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    if settings.endpoint_url is not None:
        check_endpoint_url(settings.endpoint_url, "endpoint_url")


def check_endpoint_url(url: str, what: str) -> None:
    """An endpoint must be an http(s) URL with a host: ``http://127.0.0.1:8333``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(
            f"{what} {url!r} is not an http(s) URL: write it with a scheme, "
            f"e.g. http://{url.split('://')[-1] or '127.0.0.1:8333'}"
        )


def env_endpoint_url() -> str | None:
    """``AWS_ENDPOINT_URL_S3`` else ``AWS_ENDPOINT_URL`` (as botocore reads them), checked."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name)
        if value:
            check_endpoint_url(value, name)
            return value
    return None


def env_region() -> str | None:
    """``AWS_REGION``, which botocore ignores (it reads ``AWS_DEFAULT_REGION``); Lambda and
    the other AWS SDKs set and honour it, so the store does too (it wins over
    ``AWS_DEFAULT_REGION`` and the profile, as in those SDKs)."""
    return os.environ.get("AWS_REGION") or None


# Options that shape a botocore client the store builds; a botocore client passed in has its
# own (``checksums`` is not here: the store reads it for multipart uploads through any client).
CLIENT_OPTIONS = (
    "endpoint_url",
    "region_name",
    "profile_name",
    "retry_mode",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
    "max_pool_connections",
)


def refuse_client_options(client: object, given: Mapping[str, Any]) -> None:
    """With a botocore ``client=``, options that configure the client the store would build
    are an error: they would be silently ignored (configure the client you pass instead)."""
    if client is None or getattr(getattr(client, "meta", None), "config", None) is None:
        return
    ignored = sorted(k for k in CLIENT_OPTIONS if given.get(k) is not None)
    if ignored:
        raise ConfigurationError(
            f"{', '.join(ignored)} configure the client the store builds, but client= was "
            "passed: set them on that client instead (or do not pass client=)"
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
    """Settings from ``S3STORE_URL`` and the AWS variables, with explicit overrides on top.

    ``S3STORE_URL`` supplies bucket and prefix only as a pair: when a bucket is given
    explicitly (or by a client bound to one) and it is another bucket, the URL's prefix is
    not used either (the prefix then defaults to the bucket's root).
    """
    kwargs: dict[str, Any] = {}
    url = os.environ.get("S3STORE_URL")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    if url:
        try:
            url_bucket, url_prefix = parse_s3_url(url)
        except ConfigurationError as exc:
            raise ConfigurationError(f"S3STORE_URL: {exc.summary}") from None
        if explicit.get("bucket") in (None, url_bucket):
            kwargs["bucket"], kwargs["prefix"] = url_bucket, url_prefix
    kwargs.update(explicit)
    if "bucket" not in kwargs:
        raise ConfigurationError("no bucket: pass bucket= or set S3STORE_URL=s3://bucket/prefix")
    return build_settings(**kwargs)


def build_settings(**kwargs: Any) -> StoreSettings:
    """``StoreSettings(**kwargs)``, with an unknown option a ConfigurationError naming it."""
    known = set(StoreSettings.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            "(the options are the fields of s3store.config.StoreSettings)"
        )
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
    endpoint = settings.endpoint_url or env_endpoint_url()
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    region = settings.region_name or env_region()
    if region:
        kwargs["region_name"] = region
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
