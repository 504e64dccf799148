"""The session store on S3, async: the one hand-written implementation of the store logic.

``s3store/_sync/store.py`` is generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import random
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from s3store import cas, codec
from s3store._async.client import (
    AsyncBotoObjectClient,
    AsyncCountingClient,
    AsyncMemoryObjectClient,
    AsyncObjectClient,
)
from s3store._async.lease import AsyncLease
from s3store._backends import AsyncLock, agather_limited, aopen_boto_client, asleep
from s3store._caches import BlobCache, KnownBlobs
from s3store._memory import MemoryClientBase
from s3store.config import StoreSettings, settings_from_env
from s3store.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    DocumentError,
    DocumentTooLargeError,
    IntegrityError,
    InvalidIdError,
    KeyCollisionError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StoreError,
    UnsupportedBackendError,
)
from s3store.keys import SIDECAR_PARTS, Layout, LayoutName, Part, safe_session_id
from s3store.models import (
    ArtifactStore,
    LoopCheckpoint,
    RunRecord,
    SessionData,
    SessionSnapshotV1,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
)
from s3store.reports import FsckProblem, FsckReport, GcReport
from s3store.types import (
    Capabilities,
    GetResult,
    IfMatch,
    ObjectInfo,
    PutMode,
    PutResult,
    StoreStats,
    Versioned,
    check_mode,
)

log = logging.getLogger("s3store")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
WRITE_TOKEN = "s3store-write"

# Process-wide: what the probe found per (endpoint, bucket), so each process probes once.
_CAPABILITIES: dict[tuple[str, str], Capabilities] = {}
_ID_PREFIX = re.compile(rb'^\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")')
_ID_PEEK_BYTES = 4096
_FENCE_KEY = "s3store_fence"


class AsyncS3SessionStore:
    """a3s-code's ``SessionStore`` contract on S3, async (aioboto3).

    Keys mirror the Rust ``FileSessionStore`` tree under ``prefix`` (see
    :mod:`s3store.keys`); documents are written byte-for-byte as the Rust store writes them
    (see :mod:`s3store.codec`). Every document write is a single PUT, so readers see the old
    or the new object, never a torn one.

    Args:
        bucket: the bucket (or set ``S3STORE_URL=s3://bucket/prefix``).
        prefix: key prefix; normalised, may be empty.
        endpoint_url / region_name: where to connect (default: the AWS chain, including
            ``AWS_ENDPOINT_URL``).
        client: an aioboto3 S3 client you own, an :class:`AsyncObjectClient`, or an in-memory
            client from :mod:`s3store.testing`. Without one the store builds (and closes) its own.
        layout: ``"legacy"`` (the seed's tree) or ``"v1"`` (upstream's base64 tree).
        settings: a full :class:`~s3store.config.StoreSettings`; ``**options`` override fields.

    Use it as ``async with AsyncS3SessionStore(...) as store:`` or call :meth:`aclose`.
    """

    backend_name = "s3"

    def __init__(
        self,
        bucket: str | None = None,
        prefix: str | None = None,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        layout: LayoutName | None = None,
        settings: StoreSettings | None = None,
        capabilities: Capabilities | None = None,
        **options: Any,
    ) -> None:
        given = {
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "layout": layout,
            **options,
        }
        if settings is None:
            if bucket is None and isinstance(client, MemoryClientBase):
                given["bucket"] = client.bucket
            settings = settings_from_env(**given)
        else:
            settings = settings.with_(**{k: v for k, v in given.items() if v is not None})
        self.settings = settings
        self.layout = Layout(settings.prefix, settings.layout)
        self.stats = StoreStats()
        self._given_client = client
        self._client: AsyncObjectClient | None = None
        self._stack = AsyncExitStack()
        self._open_lock = AsyncLock()
        self._capabilities = capabilities
        self._known_blobs = KnownBlobs(ttl=timedelta(hours=1))
        self._blob_cache = BlobCache(self.settings.blob_cache_bytes)
        self._blob_locks: dict[str, AsyncLock] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncS3SessionStore:
        """A store for ``s3://bucket/prefix``; keyword arguments as for the constructor."""
        from s3store.config import parse_s3_url

        bucket, prefix = parse_s3_url(url)
        return cls(bucket=bucket, prefix=prefix, **kwargs)

    @property
    def bucket(self) -> str:
        """The bucket."""
        return self.settings.bucket

    @property
    def prefix(self) -> str:
        """The normalised key prefix."""
        return self.settings.prefix

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"layout={self.layout.name!r})"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> AsyncS3SessionStore:
        await self._object_client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client the store built (a client passed in stays open)."""
        self._client = None
        await self._stack.aclose()

    async def _object_client(self) -> AsyncObjectClient:
        if self._client is not None:
            return self._client
        async with self._open_lock:
            if self._client is None:
                self._client = AsyncCountingClient(await self._build_client(), self.stats)
        return self._client

    async def _build_client(self) -> AsyncObjectClient:
        given = self._given_client
        if given is None:
            raw = await aopen_boto_client(self._stack, self.settings)
            return AsyncBotoObjectClient(raw, self.settings)
        if isinstance(given, AsyncMemoryObjectClient):
            return given
        if isinstance(given, MemoryClientBase):
            # The other flavour's in-memory client: share its bucket state.
            if given.bucket != self.bucket:
                raise ConfigurationError(
                    f"in-memory client is for bucket {given.bucket!r}, store for {self.bucket!r}"
                )
            return AsyncMemoryObjectClient(given.bucket, backend=given.backend, create=False)
        if isinstance(given, AsyncObjectClient):
            return given
        if hasattr(given, "put_object"):
            return AsyncBotoObjectClient(given, self.settings)
        raise ConfigurationError(f"unsupported client type: {type(given).__name__}")

    # -- documents: the shared read/write path -------------------------------------------

    def _encode(self, value: BaseModel | Sequence[BaseModel], key: str) -> bytes:
        body = codec.dumps(value)
        if len(body) > self.settings.max_document_bytes:
            raise DocumentTooLargeError(
                f"document is {len(body)} bytes, over the "
                f"{self.settings.max_document_bytes}-byte limit",
                bucket=self.bucket,
                key=key,
            )
        return body

    async def _get(self, key: str) -> tuple[bytes, ObjectInfo] | None:
        client = await self._object_client()
        result = await client.get(key, max_bytes=self.settings.max_document_bytes)
        return None if result is None else (result.body, result.info)

    def _decode(self, tp: Any, body: bytes, key: str) -> Any:
        try:
            return codec.loads(tp, body, source=key, max_bytes=self.settings.max_document_bytes)
        except DocumentTooLargeError as exc:
            raise DocumentTooLargeError(exc.summary, bucket=self.bucket, key=key) from exc
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", errors=exc.errors, bucket=self.bucket, key=key
            ) from exc

    async def _put(self, key: str, body: bytes, mode: PutMode = "overwrite") -> PutResult:
        """One conditional-aware PUT, with 409 retries and self-conflict detection.

        A conditional write carries a unique write token in its metadata
        (``x-amz-meta-s3store-write``). If the write loses its condition, one HEAD tells
        whether the object now holds *this* write: an attempt that landed but whose answer
        was lost (retried by botocore, silently re-sent by aiohttp on a dropped connection,
        or answered 409 after landing) then counts as the success it was, never as a
        conflict. ETags are not compared: they are not MD5s under SSE-KMS or multipart.
        """
        mode = check_mode(mode)
        client = await self._object_client()
        if mode == "overwrite":
            return await self._retry_409(lambda: client.put(key, body))
        await self._require_conditions("conditional put", key)
        if_none_match = mode == "create"
        if_match = mode.etag if isinstance(mode, IfMatch) else None
        token = {WRITE_TOKEN: uuid.uuid4().hex}
        try:
            return await self._retry_409(
                lambda: client.put(
                    key, body, if_none_match=if_none_match, if_match=if_match, metadata=token
                )
            )
        except (AlreadyExistsError, PreconditionFailedError) as exc:
            current = await client.head(key)
            if current is not None and current.metadata.get(WRITE_TOKEN) == token[WRITE_TOKEN]:
                return PutResult(etag=current.etag, version_id=current.version_id)
            if isinstance(exc, PreconditionFailedError):
                raise PreconditionFailedError(
                    exc.summary,
                    bucket=self.bucket,
                    key=key,
                    expected_etag=if_match,
                    actual_etag=current.etag if current else None,
                    status=exc.status,
                ) from exc
            raise

    async def _retry_409(self, request: Callable[[], Awaitable[T]]) -> T:
        """Run ``request``, retrying S3's 409 ConditionalRequestConflict with backoff."""
        attempt = 0
        while True:
            try:
                return await request()
            except ConditionalRequestConflictError:
                attempt += 1
                if attempt > self.settings.conflict_retries:
                    raise
                await asleep(_backoff(attempt))

    async def _require_conditions(self, what: str, key: str) -> None:
        caps = await self._conditions()
        if caps.conditions_enforced:
            return
        message = (
            f"{what} refused: the server ignores conditional headers "
            f"(If-None-Match enforced: {caps.if_none_match}, If-Match enforced: {caps.if_match})"
        )
        if self.settings.on_unenforced_conditions == "warn":
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            return
        raise UnsupportedBackendError(message, bucket=self.bucket, key=key)

    async def _conditions(self) -> Capabilities:
        if self._capabilities is not None:
            return self._capabilities
        client = await self._object_client()
        inner = client.inner if isinstance(client, AsyncCountingClient) else client
        if isinstance(inner, AsyncMemoryObjectClient) and not inner.backend.ignore_conditions:
            # The in-memory client enforces conditions by construction; no probe requests.
            self._capabilities = Capabilities(True, True, inner.backend.conditional_delete, None)
            return self._capabilities
        where = client.describe()
        cache_key = (where.get("endpoint", ""), self.bucket)
        if cache_key not in _CAPABILITIES:
            _CAPABILITIES[cache_key] = await self.probe()
        self._capabilities = _CAPABILITIES[cache_key]
        return self._capabilities

    async def _load_model(self, key: str, tp: type[M]) -> tuple[M, ObjectInfo] | None:
        got = await self._get(key)
        if got is None:
            return None
        body, info = got
        return self._decode(tp, body, key), info

    # -- sessions ------------------------------------------------------------------------

    async def save(
        self, session: SessionData, *, mode: PutMode = "overwrite", lease: AsyncLease | None = None
    ) -> PutResult:
        """Write the session document (one PUT). See :data:`~s3store.types.PutMode`.

        Under a ``lease`` the write is a compare-and-swap against the last ETag the lease
        holder saw, and fails with LeaseLostError once another holder has taken over.
        """
        key = self.layout.session_key(session.id)
        if lease is not None:
            return await lease.save_session(session)
        return await self._put(key, self._encode(session, key), mode)

    async def load(self, id: str) -> SessionData | None:
        """The session, or None if there is none. One GET.

        Raises KeyCollisionError if the object holds another id's session (legacy ids
        ``a/b`` and ``a_b`` share a key) and CorruptObjectError for unreadable documents.
        """
        versioned = await self.load_versioned(id)
        return None if versioned is None else versioned.value

    async def load_versioned(self, id: str) -> Versioned[SessionData] | None:
        """The session with the ETag it was read at (for ``IfMatch`` writes), or None."""
        key = self.layout.session_key(id)
        got = await self._get(key)
        if got is None:
            return None
        body, info = got
        session = self._decode_session(body, key)
        if session.id != id:
            raise KeyCollisionError(
                "session file key collision: the stored document belongs to another id",
                requested=id,
                stored=session.id,
                bucket=self.bucket,
                key=key,
            )
        return Versioned(value=session, etag=info.etag)

    def _decode_session(self, body: bytes, key: str) -> SessionData:
        if self.layout.name == "v1" and _looks_like_snapshot(body):
            snapshot: SessionSnapshotV1 = self._decode(SessionSnapshotV1, body, key)
            if snapshot.schema_version != 1:
                raise CorruptObjectError(
                    f"session snapshot schema version {snapshot.schema_version} is not loadable",
                    bucket=self.bucket,
                    key=key,
                )
            return snapshot.session
        session: SessionData = self._decode(SessionData, body, key)
        return session

    async def update(
        self,
        id: str,
        fn: Callable[[SessionData | None], SessionData | Awaitable[SessionData]],
        *,
        retries: int = 20,
    ) -> PutResult:
        """Read-modify-write with compare-and-swap: load → ``fn`` → conditional save.

        On a conflict (someone else wrote in between) the whole cycle runs again after a
        jittered backoff, up to ``retries`` times, so concurrent updaters lose nothing.
        ``fn`` gets the current session (None if missing) and returns the new one; it may be
        called several times and should not have side effects.
        """
        attempt = 0
        while True:
            current = await self.load_versioned(id)
            result = fn(current.value if current else None)
            new = await result if isinstance(result, Awaitable) else result
            if new.id != id:
                raise InvalidIdError(f"update() returned a session with id {new.id!r}", id=id)
            mode: PutMode = IfMatch(current.etag) if current else "create"
            try:
                return await self.save(new, mode=mode)
            except ConflictError:
                attempt += 1
                if attempt > retries:
                    raise
                await asleep(_backoff(attempt))

    async def exists(self, id: str) -> bool:
        """Whether a session is stored under ``id``. One request.

        In the legacy layout an id that shares its key with other ids (it contains ``_``,
        ``/``, ``\\`` or ``..``) is checked against the id at the head of the stored
        document with a ranged GET, as upstream checks ownership.
        """
        key = self.layout.session_key(id)
        if self._unambiguous(id):
            client = await self._object_client()
            return await client.head(key) is not None
        return await self._stored_id(key) == id

    def _unambiguous(self, id: str) -> bool:
        """Whether no other id can share this id's session key."""
        return self.layout.name == "v1" or "_" not in safe_session_id(id)

    async def _stored_id(self, key: str) -> str | None:
        """The id of the session stored at ``key`` (None if there is none), read from the
        document's first bytes with a ranged GET (Rust writes ``id`` first)."""
        client = await self._object_client()
        got = await client.get(key, max_bytes=None, range_end=_ID_PEEK_BYTES)
        if got is None:
            return None
        stored = _peek_id(got.body)
        if stored is None:  # not in the first bytes (a huge id): read the whole document
            session = await self.load_versioned_unchecked(key)
            return session.id if session else None
        return stored

    async def load_versioned_unchecked(self, key: str) -> SessionData | None:
        """The session document stored at ``key``, whatever id it holds (for tools: ls, fsck).

        Unlike :meth:`load` it takes a key, not an id, and does not check the embedded id.
        """
        got = await self._get(key)
        return None if got is None else self._decode_session(got[0], key)

    async def list(self) -> builtins.list[str]:
        """Ids of the stored sessions, sorted. ceil(n / 1000) listing requests.

        Legacy layout: the file stems (sanitised ids), as the Rust ``list`` returns them;
        v1 layout: the decoded ids.
        """
        ids: set[str] = set()
        async for info in self._iter_objects(self.layout.session_list_prefix, delimiter="/"):
            listed = self.layout.session_id_from_key(info.key)
            if listed is not None:
                ids.add(listed)
        return sorted(ids)

    async def _iter_objects(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        client = await self._object_client()
        token: str | None = None
        while True:
            page = await client.list_page(
                prefix, delimiter=delimiter, token=token, max_keys=self.settings.list_page_size
            )
            for info in page.objects:
                yield info
            token = page.next_token
            if token is None:
                return

    async def delete(self, id: str, *, if_match: str | None = None) -> None:
        """Delete the session and all its sidecars (not loop checkpoints, not blobs).

        Two requests: one listing of the artifact directory, one DeleteObjects batch.
        Deleting a missing session is fine. With ``if_match`` the session document is first
        deleted conditionally (PreconditionFailedError if it changed; one request more).
        In the legacy layout an id that shares its key with other ids is first checked for
        ownership (one ranged GET), so deleting ``a_b`` never removes ``a/b``'s data.
        """
        key = self.layout.session_key(id)
        client = await self._object_client()
        if not self._unambiguous(id):
            stored = await self._stored_id(key)
            if stored is not None and stored != id:
                raise KeyCollisionError(
                    "refusing to delete: the stored session belongs to another id",
                    requested=id,
                    stored=stored,
                    bucket=self.bucket,
                    key=key,
                )
        keys = [self.layout.sidecar_key(part, id) for part in SIDECAR_PARTS]
        if if_match is not None:
            await self._require_conditions("conditional delete", key)
            await client.delete(key, if_match=if_match)
        else:
            keys.insert(0, key)
        keys.extend([info.key async for info in self._iter_objects(self.layout.artifact_dir(id))])
        for start in range(0, len(keys), 1000):
            await client.delete_many(keys[start : start + 1000])

    # -- raw objects (for tools: import/export, CLI) -------------------------------------

    def _own_key(self, key: str) -> str:
        if not key.startswith(self.layout.root) or ".." in key.split("/"):
            raise ConfigurationError(f"key {key!r} is not inside the prefix {self.prefix!r}")
        return key

    async def iter_objects(
        self, prefix: str | None = None, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix`` (default: the store's whole prefix), page by page."""
        async for info in self._iter_objects(
            self.layout.root if prefix is None else self._own_key(prefix), delimiter=delimiter
        ):
            yield info

    async def get_object(self, key: str) -> GetResult | None:
        """An object's bytes and metadata by full key (inside the prefix), or None."""
        client = await self._object_client()
        return await client.get(self._own_key(key), max_bytes=self.settings.max_document_bytes)

    async def put_object(self, key: str, body: bytes, *, mode: PutMode = "overwrite") -> PutResult:
        """Write bytes as they are under a full key (inside the prefix); one PUT."""
        return await self._put(self._own_key(key), body, mode)

    async def delete_objects(self, keys: Sequence[str]) -> None:
        """Delete objects by full key (inside the prefix), 1,000 per request."""
        client = await self._object_client()
        owned = [self._own_key(key) for key in keys]
        for start in range(0, len(owned), 1000):
            await client.delete_many(owned[start : start + 1000])

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (dev servers, demos)."""
        client = await self._object_client()
        try:
            await client.head_bucket()
        except StoreError:
            await client.create_bucket()

    def mark_blobs_present(self, digests: Iterable[str]) -> None:
        """Tell the store these blobs exist (e.g. a listing showed them): no re-upload."""
        for digest in digests:
            self._known_blobs.add(digest)

    # -- sidecars ------------------------------------------------------------------------

    async def _save_sidecar(
        self, part: Part, id: str, records: Sequence[BaseModel], mode: PutMode
    ) -> PutResult:
        key = self.layout.sidecar_key(part, id)
        return await self._put(key, self._encode(list(records), key), mode)

    async def _load_sidecar(self, part: Part, id: str, tp: Any) -> Any:
        key = self.layout.sidecar_key(part, id)
        got = await self._get(key)
        return None if got is None else self._decode(tp, got[0], key)

    async def save_trace_events(
        self, id: str, events: Sequence[TraceEvent], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's trace events (one PUT)."""
        return await self._save_sidecar(Part.TRACES, id, events, mode)

    async def load_trace_events(self, id: str) -> builtins.list[TraceEvent] | None:
        """The session's trace events, or None if never saved (one GET)."""
        events: builtins.list[TraceEvent] | None = await self._load_sidecar(
            Part.TRACES, id, list[TraceEvent]
        )
        return events

    async def save_run_records(
        self, id: str, records: Sequence[RunRecord], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's run records (one PUT)."""
        return await self._save_sidecar(Part.RUNS, id, records, mode)

    async def load_run_records(self, id: str) -> builtins.list[RunRecord] | None:
        """The session's run records, or None (one GET)."""
        records: builtins.list[RunRecord] | None = await self._load_sidecar(
            Part.RUNS, id, list[RunRecord]
        )
        return records

    async def save_verification_reports(
        self, id: str, reports: Sequence[VerificationReport], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's verification reports (one PUT)."""
        return await self._save_sidecar(Part.VERIFICATION, id, reports, mode)

    async def load_verification_reports(self, id: str) -> builtins.list[VerificationReport] | None:
        """The session's verification reports, or None (one GET)."""
        reports: builtins.list[VerificationReport] | None = await self._load_sidecar(
            Part.VERIFICATION, id, list[VerificationReport]
        )
        return reports

    async def save_subagent_tasks(
        self, id: str, tasks: Sequence[SubagentTaskSnapshot], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's subagent task snapshots (one PUT)."""
        return await self._save_sidecar(Part.SUBAGENT_TASKS, id, tasks, mode)

    async def load_subagent_tasks(self, id: str) -> builtins.list[SubagentTaskSnapshot] | None:
        """The session's subagent task snapshots, or None (one GET)."""
        tasks: builtins.list[SubagentTaskSnapshot] | None = await self._load_sidecar(
            Part.SUBAGENT_TASKS, id, list[SubagentTaskSnapshot]
        )
        return tasks

    # -- loop checkpoints ----------------------------------------------------------------

    async def save_loop_checkpoint(
        self, run_id: str, checkpoint: LoopCheckpoint, *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write a loop checkpoint under its run id (one PUT); its ``run_id`` must match."""
        if checkpoint.run_id != run_id:
            raise InvalidIdError(
                f"checkpoint run_id {checkpoint.run_id!r} does not match the key's run id",
                id=run_id,
                bucket=self.bucket,
            )
        key = self.layout.loop_checkpoint_key(run_id)
        return await self._put(key, self._encode(checkpoint, key), mode)

    async def load_loop_checkpoint(self, run_id: str) -> LoopCheckpoint | None:
        """The loop checkpoint of ``run_id``, or None (one GET).

        Refuses checkpoints of a future schema (> 1) and ones stored for another run id.
        """
        key = self.layout.loop_checkpoint_key(run_id)
        loaded = await self._load_model(key, LoopCheckpoint)
        if loaded is None:
            return None
        checkpoint, _ = loaded
        if checkpoint.schema_version > 1:
            raise CorruptObjectError(
                f"loop checkpoint schema version {checkpoint.schema_version} is not loadable",
                bucket=self.bucket,
                key=key,
            )
        if checkpoint.run_id != run_id:
            raise KeyCollisionError(
                "loop checkpoint key collision",
                requested=run_id,
                stored=checkpoint.run_id,
                bucket=self.bucket,
                key=key,
            )
        return checkpoint

    async def delete_loop_checkpoint(self, run_id: str) -> None:
        """Delete a loop checkpoint; missing is fine (one request)."""
        client = await self._object_client()
        await client.delete(self.layout.loop_checkpoint_key(run_id))

    # -- artifacts (content-addressed) ---------------------------------------------------

    async def save_artifacts(
        self, id: str, artifacts: ArtifactStore, *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's artifacts: missing blobs first, the manifest last.

        Contents of ``inline_threshold`` bytes or more become BLAKE3-addressed blobs,
        uploaded create-only (a 412 means the blob is there already: success, no HEAD).
        Blobs this store wrote or saw are not uploaded again, so re-saving an unchanged
        artifact store costs one request. The manifest never points at a missing blob.
        """
        key = self.layout.artifact_manifest_key(id)
        split = cas.split_artifacts(artifacts, inline_threshold=self.settings.inline_threshold)
        if len(split.manifest) > self.settings.max_document_bytes:
            raise DocumentTooLargeError(
                f"artifact manifest is {len(split.manifest)} bytes, over the limit",
                bucket=self.bucket,
                key=key,
            )
        missing = [d for d in split.blobs if d not in self._known_blobs]
        await agather_limited(
            [_bind(self._upload_blob, d, split.blobs[d]) for d in missing],
            self.settings.max_concurrency,
        )
        return await self._put(key, split.manifest, mode)

    async def _upload_blob(self, digest: str, data: bytes) -> None:
        # Single flight: concurrent saves of the same content wait for one upload.
        lock = self._blob_locks.setdefault(digest, AsyncLock())
        async with lock:
            if digest not in self._known_blobs:
                await self._put_blob(digest, data)
                self._blob_cache.put(digest, data)
        self._blob_locks.pop(digest, None)

    async def _put_blob(self, digest: str, data: bytes) -> None:
        client = await self._object_client()
        key = self.layout.blob_key(digest)
        try:
            if len(data) >= self.settings.multipart_threshold:
                await self._retry_409(lambda: self._put_multipart(key, data))
            else:
                await self._retry_409(lambda: client.put(key, data, if_none_match=True))
        except AlreadyExistsError:
            # Same key, same bytes: the digest is in the key. Nothing to do.
            pass
        self._known_blobs.add(digest)

    async def _put_multipart(self, key: str, data: bytes) -> PutResult:
        """Create-only multipart upload; parts go up concurrently, aborted on any failure."""
        client = await self._object_client()
        size = self.settings.part_size
        view = memoryview(data)
        upload_id = await client.create_multipart(key)
        try:
            etags = await agather_limited(
                [
                    _bind(client.upload_part, key, upload_id, n, bytes(view[start : start + size]))
                    for n, start in enumerate(range(0, len(data), size), start=1)
                ],
                self.settings.max_concurrency,
            )
            return await client.complete_multipart(key, upload_id, etags, if_none_match=True)
        except BaseException:
            # Leave no invisible, billed parts behind; the original error is what matters.
            with contextlib.suppress(StoreError):
                await client.abort_multipart(key, upload_id)
            raise

    async def load_artifacts(self, id: str) -> ArtifactStore | None:
        """The session's artifacts with contents inline, or None if never saved.

        One GET for the manifest plus one per distinct referenced blob that is not in the
        store's blob cache (fetched concurrently). Every blob read is re-hashed: a mismatch
        raises IntegrityError. Blobs are immutable and verified, so the cache
        (``blob_cache_bytes``, LRU) can never serve stale content.
        """
        key = self.layout.artifact_manifest_key(id)
        got = await self._get(key)
        if got is None:
            return None
        try:
            parsed = cas.parse_manifest(got[0], source=key)
        except DocumentError as exc:
            raise CorruptObjectError(exc.summary, bucket=self.bucket, key=key) from exc
        digests = sorted(parsed.digests)
        bodies = await agather_limited(
            [_bind(self._fetch_blob, d, key) for d in digests], self.settings.max_concurrency
        )
        try:
            return cas.join_artifacts(parsed, dict(zip(digests, bodies, strict=True)), source=key)
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", errors=exc.errors, bucket=self.bucket, key=key
            ) from exc

    async def _fetch_blob(self, digest: str, manifest_key: str, *, cached: bool = True) -> bytes:
        if cached:
            hit = self._blob_cache.get(digest)
            if hit is not None:
                return hit
        client = await self._object_client()
        key = self.layout.blob_key(digest)
        result = await client.get(key)
        if result is None:
            raise IntegrityError(
                f"blob referenced by {manifest_key} is missing",
                expected=f"blake3:{digest}",
                actual="missing",
                bucket=self.bucket,
                key=key,
            )
        actual = cas.blake3_hex(result.body)
        if actual != digest:
            raise IntegrityError(
                "blob content does not match its digest",
                expected=f"blake3:{digest}",
                actual=f"blake3:{actual}",
                bucket=self.bucket,
                key=key,
            )
        self._known_blobs.add(digest)
        self._blob_cache.put(digest, result.body)
        return result.body

    # -- health, probe -------------------------------------------------------------------

    async def health_check(self, *, deep: bool = False) -> Capabilities | None:
        """Write and delete ``<prefix>/.health_check`` (as the Rust store does).

        Raises a StoreError naming endpoint, region and bucket on failure. With
        ``deep=True`` also runs :meth:`probe` and returns what it found.
        """
        client = await self._object_client()
        key = self.layout.health_key()
        where = client.describe()
        try:
            await client.put(key, b"ok")
        except StoreError as exc:
            detail = ", ".join(f"{k}={v}" for k, v in where.items())
            raise exc.reworded(f"health check failed ({detail}): {exc.summary}") from exc
        try:
            await client.delete(key)
        except StoreError as exc:
            log.debug(
                "bucket=<%s> key=<%s> | health probe cleanup failed: %s", self.bucket, key, exc
            )
        if deep:
            return await self.probe()
        return None

    async def probe(self) -> Capabilities:
        """Check on a scratch key what the server enforces (about 7 requests).

        If-None-Match and If-Match must reject stale writes; conditional delete is tried
        with a wrong ETag; If-Match on a missing key tells 404-style from 412-style servers.
        The result is cached for the process, per endpoint and bucket.
        """
        client = await self._object_client()
        key = self.layout.probe_key(uuid.uuid4().hex)
        missing = self.layout.probe_key(uuid.uuid4().hex)
        wrong = '"00000000000000000000000000000000"'
        # A unique scratch key: a plain PUT cannot lose to its own retry.
        await self._retry_409(lambda: client.put(key, b"probe-1"))
        try:
            if_none_match = await self._rejected(
                lambda: client.put(key, b"probe-2", if_none_match=True)
            )
            if_match = await self._rejected(lambda: client.put(key, b"probe-3", if_match=wrong))
            missing_status: int | None = None
            try:
                await self._retry_409(lambda: client.put(missing, b"probe-4", if_match=wrong))
                await client.delete(missing)
            except PreconditionFailedError as exc:
                missing_status = exc.status
            try:
                await client.delete(key, if_match=wrong)
                # Accepted with a wrong ETag: the server ignored the condition and deleted.
                conditional_delete = False
            except PreconditionFailedError:
                conditional_delete = True
            except StoreError:
                # 501 NotImplemented (LocalStack) or another refusal: not usable.
                conditional_delete = False
        finally:
            await client.delete(key)
        caps = Capabilities(
            if_none_match=if_none_match,
            if_match=if_match,
            conditional_delete=conditional_delete,
            if_match_missing_status=missing_status,
        )
        self._capabilities = caps
        return caps

    async def _rejected(self, request: Callable[[], Awaitable[PutResult]]) -> bool:
        """Whether a conditional request that must fail did fail (409s retried)."""
        try:
            await self._retry_409(request)
        except (AlreadyExistsError, PreconditionFailedError, ObjectNotFoundError):
            return True
        return False

    # -- leases --------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(
        self, id: str, *, holder: str, ttl: float = 30.0, renew: bool = True
    ) -> AsyncIterator[AsyncLease]:
        """Hold the single-writer lease of a session; see :class:`AsyncLease`.

        Acquires (create-only, or takeover of an expired lease with If-Match), fences the
        session document, renews in the background every ``ttl / 3`` seconds, and releases
        on exit.
        """
        await self._require_conditions("lease", self.layout.lease_key(id))
        lease = AsyncLease(self, id, holder=holder, ttl=ttl)
        await lease.acquire()
        try:
            if renew:
                lease.start_renewing()
            yield lease
        finally:
            await lease.release()

    # -- maintenance: gc, fsck -----------------------------------------------------------

    async def _manifest_keys(self) -> builtins.list[ObjectInfo]:
        root = (
            f"{self.layout.root}artifacts/"
            if self.layout.name == "legacy"
            else (f"{self.layout.root}v1/artifacts/")
        )
        return [
            info async for info in self._iter_objects(root) if info.key.endswith("/artifacts.json")
        ]

    async def _referenced(self, manifests: Sequence[ObjectInfo]) -> set[str]:
        async def refs(info: ObjectInfo) -> set[str]:
            got = await self._get(info.key)
            if got is None:
                return set()
            return cas.parse_manifest(got[0], source=info.key).digests

        found = await agather_limited(
            [_bind(refs, m) for m in manifests], self.settings.max_concurrency
        )
        return set().union(*found)

    async def _server_now(self) -> datetime:
        client = await self._object_client()
        key = self.layout.health_key()
        result = await client.put(key, b"ok")
        await client.delete(key)
        return result.server_time or datetime.now(UTC)

    async def gc(
        self, *, grace: timedelta = timedelta(hours=24), dry_run: bool = False
    ) -> GcReport:
        """Delete blobs no manifest refers to and that are older than ``grace``.

        Mark: read every manifest. Sweep: list every blob and pick unreferenced ones last
        modified before (mark start − grace), by the server's clock. Before deleting, the
        manifests written since the mark started are read again, so a blob a new manifest
        refers to is never collected. A blob uploaded by a writer that has not yet written
        its manifest is younger than the grace period and is kept.
        """
        started = await self._server_now()
        manifests = await self._manifest_keys()
        referenced = await self._referenced(manifests)
        cutoff = started - grace
        blobs = [info async for info in self._iter_objects(self.layout.blob_root)]
        candidates: builtins.list[ObjectInfo] = []
        kept_young = 0
        for info in blobs:
            try:
                digest = self.layout.blob_digest(info.key)
            except ValueError:
                continue
            if digest in referenced:
                continue
            if info.last_modified is not None and info.last_modified >= cutoff:
                kept_young += 1
                continue
            candidates.append(info)
        if candidates:
            # Re-mark: manifests written while we were marking may refer to old blobs.
            margin = timedelta(seconds=5)
            late = [
                m
                for m in await self._manifest_keys()
                if m.last_modified is None or m.last_modified >= started - margin
            ]
            referenced |= await self._referenced(late)
            candidates = [c for c in candidates if self.layout.blob_digest(c.key) not in referenced]
        if not dry_run and candidates:
            client = await self._object_client()
            keys = [c.key for c in candidates]
            for start in range(0, len(keys), 1000):
                await client.delete_many(keys[start : start + 1000])
        return GcReport(
            manifests=len(manifests),
            blobs=len(blobs),
            referenced=len(referenced),
            kept_young=kept_young,
            deleted=len(candidates),
            deleted_bytes=sum(c.size for c in candidates),
            dry_run=dry_run,
        )

    async def fsck(self) -> FsckReport:
        """Check everything under the prefix without changing anything.

        Parses every document, checks that every manifest reference resolves, and re-hashes
        every blob. Unreferenced blobs are reported (gc removes them), not counted as errors.
        """
        report = FsckReport()
        all_objects = [info async for info in self._iter_objects(self.layout.root)]
        blob_digests: set[str] = set()
        referenced: set[str] = set()
        checks: builtins.list[Callable[[], Awaitable[None]]] = []

        async def check_blob(info: ObjectInfo, digest: str) -> None:
            try:
                await self._fetch_blob(digest, "fsck", cached=False)
            except IntegrityError as exc:
                report.problems.append(FsckProblem("integrity", info.key, exc.summary))

        async def check_document(info: ObjectInfo, tp: Any) -> None:
            got = await self._get(info.key)
            if got is None:
                return
            try:
                if tp == "manifest":
                    referenced.update(cas.parse_manifest(got[0], source=info.key).digests)
                elif tp == "session":
                    self._decode_session(got[0], info.key)
                else:
                    self._decode(tp, got[0], info.key)
            except (DocumentError, StoreError) as exc:
                report.problems.append(FsckProblem("document", info.key, str(exc)))

        for info in all_objects:
            kind = self._classify(info.key)
            if kind == "blob":
                digest = self.layout.blob_digest(info.key)
                blob_digests.add(digest)
                checks.append(_bind(check_blob, info, digest))
                report.blobs += 1
            elif kind is not None:
                checks.append(_bind(check_document, info, kind))
                report.documents += 1
        await agather_limited(checks, self.settings.max_concurrency)
        for digest in sorted(referenced - blob_digests):
            report.problems.append(
                FsckProblem("missing-blob", self.layout.blob_key(digest), "referenced, not stored")
            )
        report.unreferenced_blobs = sorted(blob_digests - referenced)
        return report

    def _classify(self, key: str) -> Any:
        """What kind of object a key under the prefix is (None: not ours to check)."""
        try:
            self.layout.blob_digest(key)
            return "blob"
        except ValueError:
            pass
        base = self.layout.root if self.layout.name == "legacy" else f"{self.layout.root}v1/"
        rest = key.removeprefix(base)
        if rest == key or not rest.endswith(".json"):
            return None
        top, _, name = rest.partition("/")
        if not name:
            return "session" if self.layout.name == "legacy" else None
        kinds: dict[str, Any] = {
            "sessions": "session",
            "traces": builtins.list[TraceEvent],
            "verification": builtins.list[VerificationReport],
            "runs": builtins.list[RunRecord],
            "subagent_tasks": builtins.list[SubagentTaskSnapshot],
            "loop_checkpoints": LoopCheckpoint,
        }
        if top == "artifacts" and name.endswith("/artifacts.json"):
            return "manifest"
        return kinds.get(top) if "/" not in name else None


# -- helpers ----------------------------------------------------------------------------


def _bind(fn: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: fn(*args)


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff: up to 20 ms · 2^attempt, capped at 1 s."""
    return random.uniform(0, min(1.0, 0.02 * 2**attempt))


def _peek_id(head: bytes) -> str | None:
    """The ``id`` at the start of a SessionData document (Rust writes it first), if there."""
    match = _ID_PREFIX.match(head)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _looks_like_snapshot(body: bytes) -> bool:
    head = body[:256].lstrip()
    return head.startswith(b"{") and (b'"schema_version"' in head[:64] or b'"session"' in head[:64])
