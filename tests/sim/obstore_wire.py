"""obstore's Rust layer, faked over the simulated wire: the fleet on ``transport="obstore"``.

``run_seed(..., transport="obstore")`` gives every store the real
:class:`s3store._obstore.AsyncObstoreObjectClient` (its error translation, paged flat
listing, in-memory multipart, server clock, re-send of an unanswered conditional PUT,
refusal of conditional DELETE) with ``client._ob`` pointed at :data:`OBSTORE` and
``client._store`` a :class:`SimS3Store`. The module-level functions below are the part of
obstore's surface the client calls; each S3 request they stand for is one
:meth:`World.transmit` (same faults, pauses, kills, request age and checker as the boto
transport), re-sent by :class:`ObjectStoreSdk` the way object_store re-sends, not botocore.

What object_store 0.12 (obstore 0.12.1) does, checked against moto server behind
``tests/faultproxy.py`` and a stub HTTP server answering fixed statuses:

- 5xx: re-sent up to ``max_retries`` for every request, conditional PUTs and the POST of
  DeleteObjects included.
- connection reset / timeout (no answer): re-sent only for idempotent requests: GET, HEAD,
  ListObjectsV2 and unconditional PUT; never for a conditional PUT or DeleteObjects (POST).
- 409 ConditionalRequestConflict: re-sent for an If-Match PUT, not for a create-only one;
  either way raised as AlreadyExistsError.
- a single-key ``delete`` is a DeleteObjects POST as well (no DeleteObject).
- an error after re-sends says ``after N retries`` in its text; ``translate`` derives
  ``retried`` from it.

The exceptions are the real classes with texts shaped as the real ones (:data:`RECORDED`
holds recorded ones; test_sim.py checks each translates alike); see :func:`_exception`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import quote

from obstore import exceptions as obx

from s3store import _obstore
from s3store.config import StoreSettings
from s3store.errors import AlreadyExistsError, PreconditionFailedError, StoreError
from s3store.types import ListPage, ObjectInfo, PutResult
from tests.sim.world import Attempt, Process, World

# What S3 (moto) answers, as object_store prints it: "<status> <reason>".
_REASON = {
    304: "Not Modified",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_MESSAGE = {
    "NoSuchKey": "The specified key does not exist.",
    "PreconditionFailed": "At least one of the pre-conditions you specified did not hold",
    "ConditionalRequestConflict": (
        "A conflicting conditional operation is currently in progress against this resource."
    ),
    "RequestTimeTooSkewed": (
        "The difference between the request time and the current time is too large."
    ),
    "InternalError": "We encountered an internal error. Please try again.",
    "SlowDown": "Please reduce your request rate.",
    "InvalidRange": "The requested range is not satisfiable",
}
# Real obstore 0.12.1 exceptions (class, text), recorded against moto server behind
# tests/faultproxy.py (403: a stub server answering RequestTimeTooSkewed). Only the ports,
# request ids and the debug dump are cut; what is kept is what ``_obstore.translate`` reads
# (class, first line, XML code and message, "after N retries", TimedOut). test_sim.py checks
# that the fake's exception for each case translates to the same s3store error.
_MOTO = "http://127.0.0.1:37601/s3store-tests"
RECORDED: dict[str, tuple[type[BaseException], str]] = {
    "GET missing": (
        FileNotFoundError,
        f"Object at location nope/x.json not found: Error performing GET {_MOTO}/nope/x.json "
        "in 22.703091ms - Server returned non-2xx status code: 404 Not Found: "
        '<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>NoSuchKey</Code><Message>The '
        "specified key does not exist.</Message><Key>nope/x.json</Key><RequestId>r</RequestId>"
        "</Error>\n\nDebug source:\nNotFound {",
    ),
    "HEAD missing": (
        FileNotFoundError,
        f"Object at location nope/x.json not found: Error performing HEAD {_MOTO}/nope/x.json "
        "in 4.209505ms - Server returned non-2xx status code: 404 Not Found: \n\nDebug "
        "source:\nNotFound {",
    ),
    "create on an existing key": (
        obx.AlreadyExistsError,
        "Object at location a/b.json already exists: Request precondition failure for path "
        f"a/b.json: Error performing PUT {_MOTO}/a/b.json in 5.101355ms - Server returned "
        'non-2xx status code: 412 Precondition Failed: <?xml version="1.0" encoding="utf-8"?>'
        "\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions "
        "you specified did not hold</Message><Condition>If-None-Match</Condition><RequestId>r"
        "</RequestId></Error>\n\nDebug source:\nAlreadyExists {",
    ),
    "If-Match, ETag changed": (
        obx.PreconditionError,
        f"Request precondition failure for path a/b.json: Error performing PUT {_MOTO}/a/b.json"
        " in 4.351194ms - Server returned non-2xx status code: 412 Precondition Failed: "
        '<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>PreconditionFailed</Code>'
        "<Message>At least one of the pre-conditions you specified did not hold</Message>"
        "<Condition>If-Match</Condition><RequestId>r</RequestId></Error>\n\nDebug source:\n"
        "Precondition {",
    ),
    "If-Match, key missing": (
        obx.PreconditionError,
        f"Request precondition failure for path a/zz.json: Error performing PUT {_MOTO}/a/zz."
        "json in 3.341816ms - Server returned non-2xx status code: 404 Not Found: <?xml "
        'version="1.0" encoding="utf-8"?>\n<Error><Code>NoSuchKey</Code><Message>The '
        "specified key does not exist.</Message><RequestId>r</RequestId></Error>\n\nDebug "
        "source:\nPrecondition {",
    ),
    "GET If-None-Match, unchanged": (
        obx.NotModifiedError,
        f"Object at location a/b.json not modified: Error performing GET {_MOTO}/a/b.json in "
        "2.603734ms - Server returned non-2xx status code: 304 Not Modified: \n\nDebug "
        "source:\nNotModified {",
    ),
    "create answered 409": (
        obx.AlreadyExistsError,
        f"Object at location c/1.json already exists: Error performing PUT {_MOTO}/c/1.json in "
        '1.087164ms - Server returned non-2xx status code: 409 Conflict: <?xml version="1.0" '
        'encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict</Code><Message>A '
        "conflicting conditional operation is currently in progress against this resource."
        "</Message><Resource>c/1.json</Resource><RequestId>faultproxy</RequestId></Error>\n\n"
        "Debug source:\nAlreadyExists {",
    ),
    "If-Match answered 409, 3 times": (
        obx.AlreadyExistsError,
        f"Object at location m/b.json already exists: Error performing PUT {_MOTO}/m/b.json in "
        "34.324192ms, after 2 retries, max_retries: 2, retry_timeout: 10s  - Server returned "
        'non-2xx status code: 409 Conflict: <?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        "<Code>ConditionalRequestConflict</Code><Message>A conflicting conditional operation "
        "is currently in progress against this resource.</Message><Resource>m/b.json"
        "</Resource><RequestId>faultproxy</RequestId></Error>\n\nDebug source:\n"
        "AlreadyExists {",
    ),
    "PUT answered 500, 3 times": (
        obx.GenericError,
        f"Generic S3 error: Error performing PUT {_MOTO}/c/2.json in 75.129321ms, after 2 "
        "retries, max_retries: 2, retry_timeout: 10s  - Server returned non-2xx status code: "
        '500 Internal Server Error: <?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
        "InternalError</Code><Message>We encountered an internal error. Please try again."
        "</Message><Resource>c/2.json</Resource><RequestId>faultproxy</RequestId></Error>\n\n"
        "Debug source:\nGeneric {",
    ),
    "create timed out (not re-sent)": (
        obx.GenericError,
        f"Generic S3 error: Error performing PUT {_MOTO}/c/4timeout.json in 1.001526754s - "
        'HTTP error: error sending request\n\nDebug source:\nGeneric {\n    store: "S3",\n'
        "    source: RetryError(\n        RetryErrorImpl {\n            method: PUT,\n"
        "            retries: 0,\n            inner: Http(\n                HttpError {\n"
        "                    kind: Timeout,\n                    source: reqwest::Error {\n"
        "                        kind: Request,\n                        source: TimedOut,",
    ),
    "GET timed out, 3 times": (
        obx.GenericError,
        f"Generic S3 error: Error performing GET {_MOTO}/a/b.json in 3.029805232s, after 2 "
        "retries, max_retries: 2, retry_timeout: 10s  - HTTP error: error sending request\n\n"
        "Debug source:\nGeneric {\n    source: RetryError(\n        RetryErrorImpl {\n"
        "            retries: 2,\n            inner: Http(\n                HttpError {\n"
        "                    kind: Timeout,\n                    source: reqwest::Error {\n"
        "                        kind: Request,\n                        source: TimedOut,",
    ),
    "DeleteObjects reset (not re-sent)": (
        obx.GenericError,
        f"Generic S3 error: Error performing POST {_MOTO}?delete in 523.219µs - HTTP error: "
        "error sending request\n\nDebug source:\nGeneric {\n    source: RetryError(\n"
        "        RetryErrorImpl {\n            method: POST,\n            retries: 0,\n"
        "            inner: Http(\n                HttpError {\n                    kind: "
        "Interrupted,\n                    source: reqwest::Error {\n                        "
        "kind: Request,\n                        source: hyper_util::client::legacy::Error(\n"
        "                            SendRequest,\n                            hyper::Error(\n"
        "                                Io,\n                                Os {\n"
        "                                    code: 104,\n                                    "
        'kind: ConnectionReset,\n                                    message: "Connection '
        'reset by peer",',
    ),
    "list answered 500, 3 times": (
        obx.GenericError,
        "Generic S3 error: Error performing list request: Error performing GET "
        f"{_MOTO}?list-type=2&prefix=a%2F in 71.155144ms, after 2 retries, max_retries: 2, "
        "retry_timeout: 10s  - Server returned non-2xx status code: 500 Internal Server Error: "
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We '
        "encountered an internal error. Please try again.</Message><Resource>s3store-tests"
        "</Resource><RequestId>faultproxy</RequestId></Error>\n\nDebug source:\nGeneric {",
    ),
    "GET signed too long ago": (
        obx.PermissionDeniedError,
        "The operation lacked the necessary privileges to complete for path a/b: Error "
        "performing GET http://127.0.0.1:41823/b/a/b in 1.541362ms - Server returned non-2xx "
        'status code: 403 Forbidden: <?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
        "RequestTimeTooSkewed</Code><Message>msg of RequestTimeTooSkewed</Message><RequestId>r"
        "</RequestId></Error>\n\nDebug source:\nPermissionDenied {",
    ),
}

_PREFIX: dict[type[BaseException], str] = {
    FileNotFoundError: "Object at location {path} not found: ",
    obx.NotModifiedError: "Object at location {path} not modified: ",
    obx.AlreadyExistsError: "Object at location {path} already exists: ",
    obx.PreconditionError: "Request precondition failure for path {path}: ",
    obx.PermissionDeniedError: (
        "The operation lacked the necessary privileges to complete for path {path}: "
    ),
    obx.GenericError: "Generic S3 error: ",
}


class _Refused(StoreError):
    """A non-2xx answer of the server, carried back over the wire as the request's error."""

    def __init__(self, status: int, code: str, *, bucket: str, key: str) -> None:
        super().__init__(f"{status} {code}", bucket=bucket, key=key)
        self.status = status
        self.s3_code = code
        self.wire_label = f"{status} {code}"


@dataclass(frozen=True)
class _Request:
    """One S3 request as object_store sends it."""

    op: str
    method: str
    path: str
    url: str
    detail: str = ""
    mode: str | None = None
    """A conditional PUT's: "create" (If-None-Match: *) or "update" (If-Match)."""
    idempotent: bool = True
    mutating: bool = False
    listing: bool = False


class SimS3Store:
    """Stands in for obstore's ``S3Store``: where one process's requests go, and with what
    retry configuration (``_obstore.build_s3store``'s, from the same settings).

    ``process`` None is the quiet network of set-up and final checks: applied at once, no
    faults, not recorded."""

    def __init__(self, world: World, process: Process | None, settings: StoreSettings) -> None:
        self.world = world
        self.process = process
        self.bucket = settings.bucket
        self.endpoint = settings.endpoint_url or "http://sim"
        self.max_retries = settings.max_attempts - 1
        self.retry_timeout = settings.max_attempts * (
            settings.connect_timeout + settings.read_timeout
        )

    def url(self, path: str = "", query: str = "") -> str:
        where = f"{self.endpoint}/{self.bucket}" + (f"/{path}" if path else "")
        return f"{where}?{query}" if query else where

    async def send(self, request: _Request, apply: Callable[[], Any]) -> Any:
        if self.process is None:
            try:
                return apply()
            except _Refused as refused:
                raise _exception(
                    self, request, Attempt(request.op, request.path, "error", refused, 1, 0.0)
                ) from None
        return await self.world.transmit(
            self.process,
            request.op,
            request.path,
            request.detail,
            apply,
            conditional=request.mode is not None,
            mutating=request.mutating,
            sdk=ObjectStoreSdk(self, request),
        )


class ObjectStoreSdk:
    """object_store's retry rules for one request (see the module docstring)."""

    def __init__(self, store: SimS3Store, request: _Request) -> None:
        self.store = store
        self.request = request
        self.failed_as = "500"

    def again(self, attempt: Attempt) -> bool:
        if attempt.kind == "fail":
            # The wire's "refused before applying" is a 5xx or a reset to the client; object
            # store treats the two differently, so draw which one it was.
            self.failed_as = self.store.world.rng.choice(("reset", "500", "503"))
        store, request = self.store, self.request
        if attempt.attempts - 1 >= store.max_retries or attempt.elapsed >= store.retry_timeout:
            return False
        if attempt.kind == "fail":
            return self.failed_as != "reset" or request.idempotent
        if attempt.kind == "timeout":
            return request.idempotent
        if attempt.kind == "409":
            return request.mode == "update"
        return False

    def failure(self, attempt: Attempt) -> BaseException:
        return _exception(self.store, self.request, attempt, self.failed_as)


def _duration(seconds: float) -> str:
    """Rust's Debug of a Duration, as object_store prints elapsed time."""
    if seconds >= 1:
        return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    if seconds >= 0.001:
        return f"{seconds * 1e3:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds * 1e6:.3f}".rstrip("0").rstrip(".") + "µs"


def _xml(code: str, key: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_MESSAGE.get(code, code)}</Message>"
        f"<Key>{key}</Key><RequestId>sim</RequestId></Error>"
    )


def _exception(
    store: SimS3Store, request: _Request, attempt: Attempt, failed_as: str = "500"
) -> BaseException:
    """The obstore exception object_store raises for how ``request`` ended."""
    kind, value = attempt.kind, attempt.value
    retries = attempt.attempts - 1
    status: int | None = None
    code = ""
    if kind == "error" and isinstance(value, _Refused):
        status, code = value.status, value.s3_code
    elif kind == "too-old":
        status, code = 403, "RequestTimeTooSkewed"
    elif kind == "409":
        status, code = 409, "ConditionalRequestConflict"
    elif kind == "fail" and failed_as != "reset":
        status, code = int(failed_as), "InternalError" if failed_as == "500" else "SlowDown"
    elif kind == "error":
        raise AssertionError(f"the obstore wire carried a {type(value).__name__}: {value}")

    if status is not None:
        body = "" if request.method == "HEAD" or status == 304 else _xml(code, request.path)
        inner = f"Server returned non-2xx status code: {status} {_REASON[status]}: {body}"
        debug = f"inner: Status {{\n    status: {status},\n}}"
    else:
        timed_out = kind == "timeout"
        inner = "HTTP error: error sending request"
        source = (
            "kind: Timeout, source: reqwest::Error { kind: Request, source: TimedOut }"
            if timed_out
            else "kind: Interrupted, source: Os { code: 104, kind: ConnectionReset, message: "
            '"Connection reset by peer" }'
        )
        debug = f"inner: Http(\n    HttpError {{ {source} }},\n)"
    after = (
        f", after {retries} retries, max_retries: {store.max_retries}, "
        f"retry_timeout: {_duration(store.retry_timeout)} "
        if retries
        else ""
    )
    performing = (
        f"Error performing {request.method} {request.url} in {_duration(attempt.elapsed)}"
        f"{after} - {inner}"
    )

    cls: type[BaseException] = obx.GenericError
    lead = ""
    if request.listing:
        lead = "Error performing list request: "
    elif status == 404 and request.mode != "update":
        cls = FileNotFoundError
    elif status == 304:
        cls = obx.NotModifiedError
    elif status in (404, 412) and request.mode == "create":
        cls = obx.AlreadyExistsError
        lead = _PREFIX[obx.PreconditionError].format(path=request.path)
    elif status in (404, 412):
        cls = obx.PreconditionError
    elif status == 409:
        cls = obx.AlreadyExistsError
    elif status == 403:
        cls = obx.PermissionDeniedError
    text = (
        _PREFIX[cls].format(path=request.path)
        + lead
        + performing
        + "\n\nDebug source:\nRetryError(\n    RetryErrorImpl {\n"
        + f"        method: {request.method},\n        retries: {retries},\n"
        + f"        max_retries: {store.max_retries},\n        {debug}\n    }},\n)"
    )
    return cls(text)


# -- the obstore module surface AsyncObstoreObjectClient calls ---------------------------


class _GetResult:
    """obstore's GetResult: the object's meta and attributes now, its bytes when awaited."""

    def __init__(self, meta: dict[str, Any], attributes: dict[str, str], body: bytes) -> None:
        self.meta = meta
        self.attributes = attributes
        self._body = body

    async def bytes_async(self) -> bytes:
        # The body arrived with the answer in this model (no fault mid-body).
        return self._body


def _meta(info: ObjectInfo) -> dict[str, Any]:
    return {
        "path": info.key,
        "last_modified": info.last_modified,
        "size": info.size,
        "e_tag": info.etag,
        "version": None,
    }


def _attributes(info: ObjectInfo) -> dict[str, str]:
    # S3 lower-cases user metadata names; object_store adds the standard headers it read.
    found = {k.lower(): v for k, v in info.metadata.items()}
    found["Content-Type"] = "binary/octet-stream"
    return found


async def get_async(
    store: SimS3Store, path: str, *, options: Mapping[str, Any] | None = None
) -> _GetResult:
    options = options or {}
    world, bucket = store.world, store.bucket
    head = bool(options.get("head"))
    if_none_match = options.get("if_none_match")
    span = options.get("range")
    detail = f"If-None-Match {if_none_match}" if if_none_match else ""
    if span is not None:
        detail = f"bytes={span[0]}-{span[1] - 1}"
    request = _Request(
        "HeadObject" if head else "GetObject",
        "HEAD" if head else "GET",
        path,
        store.url(path),
        detail,
    )

    def apply() -> tuple[ObjectInfo, bytes]:
        if head:
            info = world.backend.head(bucket, path)
            if info is None:
                raise _Refused(404, "NoSuchKey", bucket=bucket, key=path)
            return info, b""
        got = world.backend.get(bucket, path, if_none_match=if_none_match)
        if got is None:
            raise _Refused(404, "NoSuchKey", bucket=bucket, key=path)
        if got.not_modified:
            raise _Refused(304, "NotModified", bucket=bucket, key=path)
        if span is not None:
            if span[0] >= got.info.size:
                raise _Refused(416, "InvalidRange", bucket=bucket, key=path)
            return got.info, got.body[span[0] : span[1]]
        return got.info, got.body

    info, body = await store.send(request, apply)
    return _GetResult(_meta(info), _attributes(info), body)


async def put_async(
    store: SimS3Store,
    path: str,
    file: bytes | Sequence[bytes],
    *,
    mode: Any = "overwrite",
    attributes: Mapping[str, str] | None = None,
    use_multipart: bool | None = None,
    chunk_size: int = 5 * 1024 * 1024,
    max_concurrency: int = 12,
) -> dict[str, Any]:
    world, bucket = store.world, store.bucket
    body = bytes(file) if isinstance(file, bytes | bytearray | memoryview) else b"".join(file)
    if_none_match = mode == "create"
    if_match = mode["e_tag"] if isinstance(mode, dict) else None
    detail = "If-None-Match" if if_none_match else f"If-Match {if_match}" if if_match else ""
    etag: str | None = None
    if use_multipart and len(body) > chunk_size:
        # object_store's own multipart upload (unconditional only): modelled as one step,
        # with the ETag S3 gives the parts it cut.
        chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in chunks:
            digest.update(hashlib.md5(chunk, usedforsecurity=False).digest())
        etag = f'"{digest.hexdigest()}-{len(chunks)}"'
    request = _Request(
        "PutObject",
        "PUT",
        path,
        store.url(path),
        detail,
        mode="create" if if_none_match else "update" if if_match else None,
        idempotent=not (if_none_match or if_match),
        mutating=True,
    )

    def apply() -> PutResult:
        try:
            if etag is None:
                return world.apply_put(
                    path,
                    body,
                    if_none_match=if_none_match,
                    if_match=if_match,
                    metadata=attributes,
                )
            result = world.backend.put(bucket, path, body, etag=etag, metadata=attributes)
            world.checker.after_put(path, body, result)
            return result
        except AlreadyExistsError:
            raise _Refused(412, "PreconditionFailed", bucket=bucket, key=path) from None
        except PreconditionFailedError as exc:
            if exc.status == 404:
                raise _Refused(404, "NoSuchKey", bucket=bucket, key=path) from None
            raise _Refused(412, "PreconditionFailed", bucket=bucket, key=path) from None

    result: PutResult = await store.send(request, apply)
    return {"e_tag": result.etag, "version": None}


async def delete_async(store: SimS3Store, paths: str | Sequence[str]) -> None:
    keys = [paths] if isinstance(paths, str) else [*paths]
    request = _Request(
        "DeleteObjects",
        "POST",
        keys[0] if keys else "",
        store.url(query="delete"),
        f"{len(keys)} keys",
        idempotent=False,
        mutating=True,
    )
    await store.send(request, lambda: store.world.apply_delete_many(keys))


def _list_request(
    store: SimS3Store, s3_prefix: str, delimiter: bool, after: str | None
) -> _Request:
    query = "&".join(
        [
            *(["delimiter=%2F"] if delimiter else []),
            "list-type=2",
            f"prefix={quote(s3_prefix, safe='')}",
            *([f"start-after={quote(after, safe='')}"] if after else []),
        ]
    )
    return _Request("ListObjectsV2", "GET", s3_prefix, store.url(query=query), listing=True)


def _s3_prefix(prefix: str | None) -> str:
    # object_store lists a path: whole segments, so "a" means "a/" (and nothing, everything).
    stripped = (prefix or "").strip("/")
    return f"{stripped}/" if stripped else ""


def list_stream(
    store: SimS3Store,
    prefix: str | None = None,
    *,
    offset: str | None = None,
    chunk_size: int = 50,
) -> AsyncIterator[Sequence[dict[str, Any]]]:
    s3_prefix = _s3_prefix(prefix)
    bucket = store.bucket

    async def pages() -> AsyncIterator[Sequence[dict[str, Any]]]:
        # One ListObjectsV2 (S3's 1,000 keys) per page, sent only when the consumer asks
        # for more: the client stops iterating once it has a page of its own.
        token = offset if offset and offset > s3_prefix else None
        pending: list[dict[str, Any]] = []
        while True:
            page: ListPage = await store.send(
                _list_request(store, s3_prefix, False, token),
                partial(store.world.backend.list_page, bucket, s3_prefix, token=token),
            )
            pending.extend(_meta(info) for info in page.objects)
            while len(pending) >= chunk_size:
                yield pending[:chunk_size]
                del pending[:chunk_size]
            if page.next_token is None:
                break
            token = page.next_token
        if pending:
            yield pending

    return pages()


async def list_with_delimiter_async(store: SimS3Store, prefix: str | None = None) -> dict[str, Any]:
    s3_prefix = _s3_prefix(prefix)
    bucket = store.bucket
    objects: list[dict[str, Any]] = []
    prefixes: list[str] = []
    token: str | None = None
    while True:
        page: ListPage = await store.send(
            _list_request(store, s3_prefix, True, token),
            partial(store.world.backend.list_page, bucket, s3_prefix, delimiter="/", token=token),
        )
        objects.extend(_meta(info) for info in page.objects)
        prefixes.extend(p.rstrip("/") for p in page.common_prefixes)
        if page.next_token is None:
            return {"common_prefixes": prefixes, "objects": objects}
        token = page.next_token


async def sign_async(store: SimS3Store, method: str, path: str, expires_in: timedelta) -> str:
    # Signing is local in object_store: no request.
    seconds = int(expires_in.total_seconds())
    return store.url(path, f"X-Amz-Expires={seconds}&X-Amz-SignedHeaders=host&sim-method={method}")


class _DateSdk:
    """urllib's HEAD for the Date header: one attempt, no re-send."""

    def again(self, attempt: Attempt) -> bool:
        return False

    def failure(self, attempt: Attempt) -> BaseException:
        return OSError(f"HEAD failed: {attempt.kind}")


def date_reader(store: SimS3Store) -> Callable[[str, float], Awaitable[datetime | None]]:
    """``AsyncObstoreObjectClient._read_date`` over the wire: the server's clock, or None."""

    async def read(url: str, read_timeout: float) -> datetime | None:
        path = url.split("?", 1)[0].removeprefix(store.url() + "/")
        if store.process is None:
            return store.world.server_now()
        try:
            # Any answer carries a Date (a 404 for the clock key too); no answer, no Date.
            date: datetime = await store.world.transmit(
                store.process,
                "HeadObject",
                path,
                "Date (presigned)",
                store.world.server_now,
                conditional=False,
                mutating=False,
                sdk=_DateSdk(),
            )
        except OSError:
            return None
        return date

    return read


# What ``client._ob`` is: the obstore functions AsyncObstoreObjectClient calls, by their names.
OBSTORE = SimpleNamespace(
    get_async=get_async,
    put_async=put_async,
    delete_async=delete_async,
    list=list_stream,
    list_with_delimiter_async=list_with_delimiter_async,
    sign_async=sign_async,
)


def client(
    world: World, process: Process | None, settings: StoreSettings
) -> _obstore.AsyncObstoreObjectClient:
    """The real obstore client of ``process``, its Rust layer replaced by this module."""
    store = SimS3Store(world, process, settings)
    obstore_client = _obstore.AsyncObstoreObjectClient(settings, store=cast(Any, store))
    obstore_client._ob = cast(Any, OBSTORE)
    obstore_client._read_date = date_reader(store)
    return obstore_client


class _VirtualMonotonic:
    """The ``time`` the obstore client sees: monotonic clocks on the loop's virtual time."""

    @staticmethod
    def monotonic() -> float:
        return asyncio.get_running_loop().time()

    @staticmethod
    def monotonic_ns() -> int:
        return int(asyncio.get_running_loop().time() * 1e9)


@contextlib.contextmanager
def virtual_time() -> Iterator[None]:
    """The client advances its server clock on ``time.monotonic``: virtual in a history, so
    the clock moves with the simulation and the history replays."""
    namespace = vars(_obstore)
    original = namespace["time"]
    namespace["time"] = _VirtualMonotonic
    try:
        yield
    finally:
        namespace["time"] = original
