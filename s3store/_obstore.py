"""The object-client seam over obstore (Rust ``object_store``): ``transport="obstore"``.

Async only: :class:`AsyncObstoreObjectClient` implements
:class:`s3store._async.client.AsyncObjectClient` with obstore's async API; the sync store
keeps boto3 and refuses this transport. It lives outside ``s3store/_async`` because that tree
is rewritten into a sync twin by ``scripts/unasync.py``, and obstore's sync and async calls
have different names; ``s3store/_async/obstore_client.py`` is the seam the store imports.

What ``object_store`` does natively, what this module emulates, and what it refuses
(each emulation names its cost in requests):

=================================  ===========================================================
seam method / feature              obstore transport
=================================  ===========================================================
``put`` create-only / If-Match     native: ``mode="create"`` (If-None-Match: \\*),
                                   ``mode={"e_tag": ...}`` (If-Match); one PutObject
user metadata (``x-amz-meta-*``)   native: written as attributes, read back from GET / HEAD
``head``                           native HEAD through ``get(..., head=True)``, which (unlike
                                   ``obstore.head``) returns the user metadata; one request
``get`` / ``range_end`` /          native GET, ranged GET; ``max_bytes`` is checked on the
``max_bytes``                      response's size before the body is read
``delete`` with ``if_match``       **refused** (UnsupportedBackendError): object_store sends
                                   no If-Match on DeleteObject. The store's probe records
                                   "conditional delete: not enforced" and gc refuses to run
``delete_many``                    native DeleteObjects (object_store batches by 1,000)
``list_page`` without delimiter    emulated paging: ``token`` is the last key of the page
                                   and the next page starts after it (StartAfter); one
                                   ListObjectsV2 per page as with boto, plus at most one
                                   empty page at the end
``list_page`` with ``/``           object_store lists the whole "directory" in one call (all
                                   its ListObjectsV2 pages) and cannot resume: one page,
                                   ``next_token`` None, ``max_keys`` not applied
prefix not ending at a ``/``       object_store matches prefixes by whole path segments:
                                   the parent directory is listed and filtered here (more
                                   pages for large parents)
multipart upload                   **emulated in memory**: object_store exposes no multipart
                                   primitives with conditions. Parts are held until
                                   ``complete_multipart``, which sends one PutObject
                                   (create-only: If-None-Match, at most 5 GiB) or, when
                                   unconditional, object_store's own multipart upload. The
                                   request counts in StoreStats are the seam's, not the wire's
``head_bucket``                    one ListObjectsV2 (object_store has no HeadBucket)
``create_bucket``                  **refused** (ConfigurationError): create it with another
                                   tool (``s3store serve`` does)
server ``Date`` (server_time)      object_store returns no response headers. The clock is
                                   read from the Date of a presigned HEAD (one request, at
                                   most every ``_CLOCK_REFRESH`` seconds) and advanced on the
                                   local monotonic clock, as :class:`s3store._caches.
                                   ServerClock` does
checksums                          ``when_supported``: SHA-256 checksum on uploads
                                   (object_store's only algorithm); ``when_required``: none.
                                   Responses are not checksum-validated
``expected_bucket_owner``          sent as a default header on every request
``sse`` / ``sse_kms_key_id``       object_store's ``server_side_encryption`` settings
retries                            object_store's: ``max_attempts - 1`` retries of 5xx,
                                   connection errors and timeouts of safe requests; the
                                   store sees ``retried`` from the error text
keys                               object_store paths: no empty, ``.`` or ``..`` segments
                                   (UnsupportedBackendError naming the key)
=================================  ===========================================================
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from s3store.config import StoreSettings, env_endpoint_url, env_region
from s3store.errors import (
    BackendError,
    ConfigurationError,
    DocumentTooLargeError,
    NotModifiedError,
    ObjectNotFoundError,
    StoreError,
    TransientError,
    UnsupportedBackendError,
    translate_error,
)
from s3store.types import GetResult, ListPage, ObjectInfo, PutResult

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta, PutMode
    from obstore.store import S3Store

INSTALL_HINT = "pip install 's3store[obstore]'"

# A single PutObject is capped at 5 GiB by S3: the largest create-only "multipart" upload.
_MAX_SINGLE_PUT = 5 * 1024**3
# Seconds between two reads of the server's clock (AsyncObstoreObjectClient._server_time).
_CLOCK_REFRESH = 300.0
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_RETRIES = re.compile(r"after (\d+) retries")
_TIMED_OUT = re.compile(r"timed out|TimedOut")
# TransientError codes of a request that got no HTTP answer (see EndpointConnectionError).
_NO_ANSWER = frozenset({"EndpointConnectionError", "ReadTimeoutError"})


def require_obstore() -> None:
    """Raise ConfigurationError unless obstore can be imported."""
    try:
        import obstore  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"transport='obstore' needs the obstore package, which is not installed: {INSTALL_HINT}"
        ) from exc


class _ObstoreFailure(Exception):
    """An obstore exception re-expressed as botocore's ``response`` shape, so the one
    mapping in :func:`s3store.errors.translate_error` applies to both transports."""

    def __init__(self, summary: str, code: str, status: int | None, retries: int) -> None:
        super().__init__(summary)
        meta: dict[str, Any] = {"RetryAttempts": retries}
        if status is not None:
            meta["HTTPStatusCode"] = status
        self.response = {"Error": {"Code": code, "Message": summary}, "ResponseMetadata": meta}


def _summary(text: str) -> str:
    # obstore's messages end in a multi-line Rust debug dump; the first line says it all.
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def translate(
    exc: BaseException,
    *,
    operation: str,
    bucket: str,
    key: str | None,
    if_none_match: bool = False,
    if_match: str | None = None,
) -> StoreError:
    """Map an obstore exception to the s3store error for it (the one place this happens)."""
    if isinstance(exc, StoreError):
        return exc
    text = str(exc)
    kind = type(exc).__name__
    if kind == "InvalidPathError" or (isinstance(exc, ValueError) and "parse path" in text):
        return UnsupportedBackendError(
            f"{operation} failed: object_store cannot address this key (no empty, '.' or '..' "
            f"path segments): {_summary(text)}",
            bucket=bucket,
            key=key,
        )
    if kind == "NotSupportedError":
        return UnsupportedBackendError(
            f"{operation} failed: not supported by object_store: {_summary(text)}",
            bucket=bucket,
            key=key,
        )
    status_match = _STATUS.search(text)
    status = int(status_match.group(1)) if status_match else None
    code_match = _CODE.search(text)
    code = code_match.group(1) if code_match else (str(status) if status is not None else "")
    retries_match = _RETRIES.search(text)
    retries = int(retries_match.group(1)) if retries_match else 0
    message_match = _MESSAGE.search(text)
    if not code:
        if kind in ("AlreadyExistsError", "PreconditionError"):
            code = "PreconditionFailed"
        elif isinstance(exc, FileNotFoundError):
            code = "NoSuchKey"
        elif kind in ("PermissionDeniedError", "UnauthenticatedError"):
            code = "AccessDenied"
    if not code and kind == "NotModifiedError":
        code = "NotModified"
    if not code and status is None and "credential" in text.lower():
        # Raised before any request: retrying cannot help (botocore's NoCredentialsError).
        return ConfigurationError(
            f"{operation} failed: no usable AWS credentials (set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, or profile_name=, or run where a role is attached): "
            f"{_summary(text)}",
            bucket=bucket,
            key=key,
        )
    if not code:
        # No answer from the server: connection refused or reset, timeout. translate_error
        # makes a code-less failure transient and names it by the exception's type, so the
        # type says which (botocore's names for the same failures).
        timed_out = _TIMED_OUT.search(text) is not None
        failure: BaseException = (ReadTimeoutError if timed_out else EndpointConnectionError)(
            _summary(text)
        )
    else:
        summary = message_match.group(1) if message_match else _summary(text)
        failure = _ObstoreFailure(summary, code, status, retries)
    error = translate_error(
        failure,
        operation=operation,
        bucket=bucket,
        key=key,
        if_none_match=if_none_match,
        if_match=if_match,
    )
    error.retried = retries > 0
    return error


class EndpointConnectionError(Exception):
    """No HTTP answer: connection refused or reset (obstore's text, first line)."""


class ReadTimeoutError(Exception):
    """No HTTP answer in time (obstore's text, first line)."""


def _s3_config(settings: StoreSettings) -> dict[str, Any]:
    config: dict[str, Any] = {}
    endpoint = settings.endpoint_url or env_endpoint_url()
    if endpoint:
        config["endpoint"] = endpoint
    region = settings.region_name or env_region()
    if region:
        config["region"] = region
    if settings.checksums == "when_supported":
        config["checksum_algorithm"] = "sha256"
    if settings.sse:
        config["server_side_encryption"] = settings.sse
    if settings.sse_kms_key_id:
        config["sse_kms_key_id"] = settings.sse_kms_key_id
    # Tagging is never used by s3store; some S3-compatible servers reject the header.
    config["disable_tagging"] = True
    return config


def _client_options(settings: StoreSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=settings.connect_timeout),
        "read_timeout": timedelta(seconds=settings.read_timeout),
        "pool_max_idle_per_host": str(settings.max_pool_connections),
    }
    endpoint = settings.endpoint_url or env_endpoint_url()
    if endpoint and urlparse(endpoint).scheme == "http":
        # boto sends plain HTTP to an http:// endpoint; object_store refuses unless told.
        options["allow_http"] = True
    if settings.expected_bucket_owner:
        options["default_headers"] = {"x-amz-expected-bucket-owner": settings.expected_bucket_owner}
    return options


def _credential_provider(settings: StoreSettings) -> Any:
    """None (object_store's own chain) or botocore's chain where only botocore can resolve.

    object_store reads credentials from the environment, web identity, ECS and IMDS, but
    not from ``~/.aws`` files (profiles, SSO, assume-role, credential_process). With a
    profile named, or no keys in the environment, botocore resolves them, as for boto3.
    """
    profile = settings.profile_name or os.environ.get("AWS_PROFILE")
    if profile is None and os.environ.get("AWS_ACCESS_KEY_ID"):
        return None
    import boto3
    from obstore.auth.boto3 import Boto3CredentialProvider

    session = boto3.Session(profile_name=settings.profile_name)
    if session.get_credentials() is None:
        return None  # let object_store try IMDS / ECS / web identity and say what failed
    return Boto3CredentialProvider(session)


def build_s3store(settings: StoreSettings) -> S3Store:
    """An obstore ``S3Store`` configured from the same settings the boto client uses."""
    require_obstore()
    from obstore.store import S3Store

    kwargs: dict[str, Any] = {
        "config": _s3_config(settings),
        "client_options": _client_options(settings),
        "retry_config": {
            "max_retries": settings.max_attempts - 1,
            "retry_timeout": timedelta(
                seconds=settings.max_attempts * (settings.connect_timeout + settings.read_timeout)
            ),
        },
    }
    provider = _credential_provider(settings)
    if provider is not None:
        kwargs["credential_provider"] = provider
    return S3Store(settings.bucket, **kwargs)


def _etag(value: str | None) -> str:
    return value or ""


def _info(
    key: str,
    meta: ObjectMeta,
    metadata: Mapping[str, str] | None = None,
    server_time: datetime | None = None,
) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(meta["size"]),
        etag=_etag(meta["e_tag"]),
        last_modified=meta["last_modified"],
        version_id=meta["version"],
        server_time=server_time,
        metadata=dict(metadata or {}),
    )


# HTTP response headers object_store reports as attributes; everything else is user metadata.
_STANDARD_ATTRIBUTES = frozenset(
    {
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Type",
        "Cache-Control",
        "Storage-Class",
    }
)


def _user_metadata(attributes: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items() if k not in _STANDARD_ATTRIBUTES}


class AsyncObstoreObjectClient:
    """:class:`~s3store._async.client.AsyncObjectClient` over obstore's ``S3Store`` (async).

    Every obstore call goes through :meth:`_call`, the one place obstore errors become
    s3store errors (naming bucket, key and the ETag sent). See the module docstring for
    what is native, emulated (and at what request cost) and refused.
    """

    def __init__(self, settings: StoreSettings, *, store: S3Store | None = None) -> None:
        require_obstore()
        import obstore

        self.bucket = settings.bucket
        self._ob = obstore
        self._settings = settings
        self._store = store if store is not None else build_s3store(settings)
        self._endpoint = settings.endpoint_url or env_endpoint_url() or "aws"
        self._region = settings.region_name or env_region() or "unknown"
        self._uploads: dict[str, dict[int, bytes]] = {}
        self._clock: tuple[datetime, float] | None = None
        self._clock_lock = asyncio.Lock()
        # How the Date of the presigned HEAD is fetched: an attribute, so the fleet simulator
        # (tests/sim) can send it over its simulated wire instead of a real socket.
        self._read_date: Callable[[str, float], Awaitable[datetime | None]] = _read_date
        self.max_in_flight = settings.max_concurrency
        """Requests the store lets through this client at once (see AsyncCountingClient)."""

    def describe(self) -> dict[str, str]:
        # docstring inherited
        # The store caches its probe per endpoint: the transport is part of the endpoint's
        # name, so the two transports never share a probe (they enforce different things).
        return {
            "endpoint": f"{self._endpoint} (obstore)",
            "region": self._region,
            "bucket": self.bucket,
        }

    async def _call(
        self,
        operation: str,
        key: str | None,
        request: Any,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> Any:
        try:
            return await request
        except Exception as exc:
            raise translate(
                exc,
                operation=operation,
                bucket=self.bucket,
                key=key,
                if_none_match=if_none_match,
                if_match=if_match,
            ) from exc

    # -- the server's clock --------------------------------------------------------------

    async def _server_time(self) -> datetime | None:
        """The server's clock now: its Date header, read at most every _CLOCK_REFRESH s.

        object_store hands back no response headers, so the Date comes from one presigned
        HEAD (of a key that need not exist) sent outside obstore, then advances on the
        local monotonic clock. None if the server cannot be asked (the store copes).
        """
        now = time.monotonic()
        clock = self._clock
        if clock is not None and now - clock[1] < _CLOCK_REFRESH:
            return clock[0] + timedelta(seconds=now - clock[1])
        async with self._clock_lock:
            if self._clock is None or time.monotonic() - self._clock[1] >= _CLOCK_REFRESH:
                await self._read_clock()
        clock = self._clock
        if clock is None:
            return None
        return clock[0] + timedelta(seconds=max(0.0, time.monotonic() - clock[1]))

    async def _read_clock(self) -> None:
        try:
            url = await self._ob.sign_async(
                self._store, "HEAD", ".s3store-clock", timedelta(minutes=5)
            )
        except Exception:
            return
        started = time.monotonic()
        date = await self._read_date(url, self._settings.read_timeout)
        if date is not None:
            self._clock = (date, started)

    # -- reads ---------------------------------------------------------------------------

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        # docstring inherited
        options: GetOptions = {"range": (0, range_end)} if range_end else {}
        if if_none_match is not None:
            options["if_none_match"] = if_none_match
        try:
            result = await self._call(
                "get_object", key, self._ob.get_async(self._store, key, options=options)
            )
        except ObjectNotFoundError:
            return None
        except NotModifiedError:
            # 304: still the ETag the caller has (obstore reports no headers of it).
            return GetResult(
                body=b"",
                info=ObjectInfo(key=key, size=0, etag=if_none_match or ""),
                not_modified=True,
            )
        except BackendError as exc:
            if exc.code == "InvalidRange":
                # A ranged GET of an empty object: there are no bytes to return.
                return GetResult(body=b"", info=ObjectInfo(key=key, size=0, etag=""))
            raise
        info = _info(key, result.meta, _user_metadata(result.attributes), await self._server_time())
        if max_bytes is not None and info.size > max_bytes:
            raise DocumentTooLargeError(
                f"object is {info.size} bytes, over the {max_bytes}-byte document limit",
                bucket=self.bucket,
                key=key,
            )
        body = bytes(await self._call("get_object", key, result.bytes_async()))
        return GetResult(body=body, info=info)

    async def head(self, key: str) -> ObjectInfo | None:
        # docstring inherited
        # obstore.head returns no user metadata; a GET with head=True is a real HEAD that
        # does (the store reads write tokens, history and journal records from it).
        try:
            result = await self._call(
                "head_object", key, self._ob.get_async(self._store, key, options={"head": True})
            )
        except ObjectNotFoundError:
            return None
        return _info(key, result.meta, _user_metadata(result.attributes), await self._server_time())

    # -- writes --------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        # docstring inherited
        if if_none_match and if_match is not None:
            raise ValueError("a request takes If-None-Match or If-Match, not both")
        mode: PutMode = "overwrite"
        if if_none_match:
            mode = "create"
        elif if_match is not None:
            mode = {"e_tag": if_match}
        attributes = dict(metadata) if metadata else None
        result = await self._write(
            "put_object",
            key,
            lambda: self._ob.put_async(
                self._store, key, body, mode=mode, attributes=attributes, use_multipart=False
            ),
            if_none_match=if_none_match,
            if_match=if_match,
        )
        return PutResult(
            etag=_etag(result["e_tag"]),
            version_id=result["version"],
            server_time=await self._server_time(),
        )

    async def _write(
        self,
        operation: str,
        key: str,
        request: Callable[[], Awaitable[Any]],
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> Any:
        """Send a write, re-sending it when no answer came and object_store did not retry.

        object_store retries 5xx answers, but re-sends a PUT that got no answer (reset,
        timeout) only when it is unconditional. botocore re-sends any of them, and the store
        is built for that: an error after a re-send is marked ``retried``, so a 412 that
        answers the store's own landed write is recognised by its write token, not reported
        as a conflict. This loop gives conditional PUTs the same: up to ``max_attempts``.
        """
        attempt = 1
        while True:
            try:
                return await self._call(
                    operation, key, request(), if_none_match=if_none_match, if_match=if_match
                )
            except TransientError as exc:
                again = (
                    exc.code in _NO_ANSWER
                    and not exc.retried
                    and attempt < self._settings.max_attempts
                )
                if not again:
                    exc.retried = exc.retried or attempt > 1
                    raise
            except StoreError as exc:
                exc.retried = exc.retried or attempt > 1
                raise
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * random.random())
            attempt += 1

    async def create_multipart(self, key: str) -> str:
        # docstring inherited
        upload_id = f"obstore-{id(self):x}-{len(self._uploads)}-{time.monotonic_ns():x}"
        self._uploads[upload_id] = {}
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        # docstring inherited
        parts = self._parts(key, upload_id)
        parts[number] = bytes(body)
        return f'"part-{number}-{len(body)}"'

    def _parts(self, key: str, upload_id: str) -> dict[int, bytes]:
        parts = self._uploads.get(upload_id)
        if parts is None:
            raise translate(
                _ObstoreFailure("no such upload", "NoSuchUpload", 404, 0),
                operation="upload_part",
                bucket=self.bucket,
                key=key,
            )
        return parts

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Sequence[str], *, if_none_match: bool = False
    ) -> PutResult:
        # docstring inherited
        parts = self._parts(key, upload_id)
        chunks = [parts[n] for n in range(1, len(etags) + 1)]
        total = sum(len(c) for c in chunks)
        if if_none_match and total > _MAX_SINGLE_PUT:
            raise UnsupportedBackendError(
                f"complete_multipart_upload failed: a create-only upload through obstore is "
                f"one PutObject, at most 5 GiB; this one is {total} bytes",
                bucket=self.bucket,
                key=key,
            )

        def request() -> Any:
            if if_none_match:
                return self._ob.put_async(self._store, key, b"".join(chunks), mode="create")
            return self._ob.put_async(
                self._store,
                key,
                chunks,
                use_multipart=len(chunks) > 1,
                chunk_size=self._settings.part_size,
                max_concurrency=self._settings.max_concurrency,
            )

        result = await self._write(
            "complete_multipart_upload", key, request, if_none_match=if_none_match
        )
        self._uploads.pop(upload_id, None)
        return PutResult(
            etag=_etag(result["e_tag"]),
            version_id=result["version"],
            server_time=await self._server_time(),
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        # docstring inherited
        # Nothing reached the server before completion: dropping the parts is the abort.
        self._uploads.pop(upload_id, None)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        # docstring inherited
        if if_match is not None:
            # Never drop the condition: an unconditional delete of a changed object is the
            # very thing If-Match is there to prevent.
            raise UnsupportedBackendError(
                "delete_object failed: the obstore transport cannot send If-Match on "
                "DeleteObject (object_store has no conditional delete); use transport='boto3'",
                bucket=self.bucket,
                key=key,
            )
        await self._call("delete_object", key, self._ob.delete_async(self._store, key))

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        if not keys:
            return
        if len(keys) > 1000:
            raise ValueError("DeleteObjects takes at most 1,000 keys")
        await self._call("delete_objects", keys[0], self._ob.delete_async(self._store, keys))

    # -- listing -------------------------------------------------------------------------

    async def list_page(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        # docstring inherited
        if delimiter not in (None, "", "/"):
            raise UnsupportedBackendError(
                f"list_objects_v2 failed: object_store lists only with the '/' delimiter, "
                f"not {delimiter!r}",
                bucket=self.bucket,
                key=prefix,
            )
        # object_store matches whole path segments: list the directory the prefix is in and
        # keep what starts with the prefix.
        directory = prefix if prefix.endswith("/") or not prefix else prefix.rpartition("/")[0]
        listed = directory or None
        if delimiter:
            found = await self._call(
                "list_objects_v2",
                prefix,
                self._ob.list_with_delimiter_async(self._store, listed),
            )
            objects = [
                _info(m["path"], m) for m in found["objects"] if m["path"].startswith(prefix)
            ]
            prefixes = [f"{p}/" for p in found["common_prefixes"] if f"{p}/".startswith(prefix)]
            return ListPage(objects=objects, common_prefixes=prefixes, next_token=None)
        return await self._list_flat(prefix, listed, token, max_keys)

    async def _list_flat(
        self, prefix: str, listed: str | None, token: str | None, max_keys: int
    ) -> ListPage:
        # The token is the last key of the previous page; object_store resumes after it
        # (S3's StartAfter), which is what a continuation token does.
        stream = self._ob.list(self._store, listed, offset=token, chunk_size=max_keys)
        objects: list[ObjectInfo] = []
        try:
            async for chunk in stream:
                for meta in chunk:
                    path = meta["path"]
                    if not path.startswith(prefix):
                        if path > prefix:
                            return ListPage(objects=objects, common_prefixes=[], next_token=None)
                        continue
                    objects.append(_info(path, meta))
                    if len(objects) == max_keys:
                        return ListPage(objects=objects, common_prefixes=[], next_token=path)
        except Exception as exc:
            raise translate(
                exc, operation="list_objects_v2", bucket=self.bucket, key=prefix
            ) from exc
        return ListPage(objects=objects, common_prefixes=[], next_token=None)

    # -- bucket --------------------------------------------------------------------------

    async def head_bucket(self) -> None:
        # docstring inherited
        # object_store has no HeadBucket: one ListObjectsV2 answers the same question.
        stream = self._ob.list(self._store, None, chunk_size=1)
        try:
            async for _ in stream:
                break
        except Exception as exc:
            raise translate(exc, operation="head_bucket", bucket=self.bucket, key=None) from exc

    async def create_bucket(self) -> None:
        # docstring inherited
        raise ConfigurationError(
            "the obstore transport cannot create buckets (object_store has no CreateBucket): "
            "create it with the AWS CLI, boto3 or `s3store serve`, or use transport='boto3'",
            bucket=self.bucket,
        )

    async def close(self) -> None:
        # docstring inherited
        self._uploads.clear()


async def _read_date(url: str, read_timeout: float) -> datetime | None:
    # urllib blocks: off the event loop.
    return await asyncio.to_thread(_date_header, url, read_timeout)


def _date_header(url: str, timeout: float) -> datetime | None:
    """The Date header of a HEAD of ``url`` (any status), or None."""
    request = urllib.request.Request(url, method="HEAD")
    # No proxy from the environment: object_store does not use one either (same route).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            value = response.headers.get("Date")
    except urllib.error.HTTPError as exc:
        value = exc.headers.get("Date")
    except (OSError, ValueError):
        return None
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
