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
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel

from s3store import _validate, cas, codec, crypto, models
from s3store import snapshot as snap
from s3store._async.client import (
    AsyncBotoObjectClient,
    AsyncCountingClient,
    AsyncMemoryObjectClient,
    AsyncObjectClient,
)
from s3store._async.journal import ARRAY_KINDS, KINDS, AsyncJournal
from s3store._async.lease import (
    PLACEHOLDER_MAX_BYTES,
    AsyncLease,
    is_placeholder,
    may_be_placeholder,
)
from s3store._async.obstore_client import open_obstore_client
from s3store._async.snapshots import AsyncSnapshots
from s3store._backends import AsyncLock, aclock, agather_limited, aopen_boto_client, asleep
from s3store._caches import BlobCache, KnownBlob, KnownBlobs, ServerClock, VersionHistory
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
    OutcomeUnknownError,
    PreconditionFailedError,
    StoreError,
    TransientError,
    UnsupportedBackendError,
)
from s3store.keys import SIDECAR_PARTS, Layout, LayoutName, Part, safe_session_id
from s3store.models import (
    ArtifactStore,
    LoopCheckpoint,
    SessionData,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
    WorkflowCheckpoint,
)
from s3store.reports import FsckProblem, FsckReport, GcReport
from s3store.types import (
    Capabilities,
    GetResult,
    IfMatch,
    ObjectInfo,
    PutMode,
    PutResult,
    SessionChange,
    StoreStats,
    Versioned,
    check_mode,
    md5_etag,
)

if TYPE_CHECKING:
    from s3store.models import RunRecord, SessionSnapshotV1

log = logging.getLogger("s3store")
M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", LoopCheckpoint, WorkflowCheckpoint)
T = TypeVar("T")
WRITE_TOKEN = "s3store-write"
HISTORY_TOKEN = "s3store-history"
HISTORY_DEPTH = 8
_UNKNOWN = object()
_DATE_MARGIN = timedelta(seconds=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Process-wide: what the probe found per (endpoint, bucket), so each process probes once.
_CAPABILITIES: dict[tuple[str, str], Capabilities] = {}
_ID_PREFIX = re.compile(rb'^\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")')
_ID_PEEK_BYTES = 4096
_FENCE_KEY = "s3store_fence"
_SIDECAR_TYPES: dict[Part, Any] = {
    Part.TRACES: builtins.list[TraceEvent],
    Part.VERIFICATION: builtins.list[VerificationReport],
    Part.SUBAGENT_TASKS: builtins.list[SubagentTaskSnapshot],
}

# The smallest SessionData document is 334 bytes (lease.PLACEHOLDER_MAX_BYTES); sealed, more.
_MIN_SESSION_BYTES = 334
_SNAPSHOT_MEMBERS = {
    Part.TRACES: "trace_events",
    Part.RUNS: "run_records",
    Part.VERIFICATION: "verification_reports",
    Part.SUBAGENT_TASKS: "subagent_tasks",
}


def _sidecar_type(part: Part) -> Any:
    """A sidecar's document type; run records define their models on first use."""
    if part is Part.RUNS:
        return builtins.list[models.RunRecord]
    return _SIDECAR_TYPES[part]


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
        encryption: a :class:`~s3store.crypto.KeyRing`: every document and blob is sealed
            at rest (upstream's ``A3SE`` envelope, see README "Encryption at rest"); None
            (default) writes plaintext and refuses sealed objects.

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
        encryption: crypto.KeyRing | None = None,
        **options: Any,
    ) -> None:
        _validate.client(
            client, AsyncBotoObjectClient, type(self), endpoint_url, region_name, options
        )
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
        self._known_blobs = KnownBlobs()
        self._server_clock = ServerClock()
        self._blob_cache = BlobCache(self.settings.blob_cache_bytes)
        self._blob_locks: dict[str, AsyncLock] = {}
        self._versions = VersionHistory()
        if encryption is not None and not isinstance(encryption, crypto.KeyRing):
            raise ConfigurationError(
                f"encryption must be a s3store.crypto.KeyRing, not {type(encryption).__name__}"
            )
        self.encryption = encryption
        self._snapshots = AsyncSnapshots(self)
        self._journal: AsyncJournal | None = None
        if settings.journal:
            self._journal = AsyncJournal(self)
            self._journal.check_usable()

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
        """Close the client the store built (a client passed in stays open).

        With ``journal_compact_on_close=True`` it first runs :meth:`compact_pending`; a
        compaction that fails is logged, not raised: its deltas stay and lose nothing, and
        closing must not fail because an optimisation did.
        """
        if self._journal is not None and self.settings.journal_compact_on_close:
            try:
                await self.compact_pending()
            except StoreError as exc:
                log.warning("bucket=<%s> | compaction on close failed: %s", self.bucket, exc)
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
        if self.settings.transport == "obstore":
            if given is not None:
                raise ConfigurationError(
                    "transport='obstore' configures the client the store builds, but client= "
                    "was passed: drop one of them"
                )
            built: AsyncObjectClient = await open_obstore_client(self.settings)
            return built
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
        limit = self.settings.max_document_bytes + self._seal_overhead()
        result = await client.get(key, max_bytes=limit)
        if result is None:
            return None
        self._versions.remember(key, result.info.etag, _chain(result.info))
        body = self._open_document(key, result.body)
        self._snapshots.remember(key, result.info.etag, body)
        return body, result.info

    # -- encryption at rest: documents ---------------------------------------------------

    def _seal_overhead(self) -> int:
        """The most bytes sealing may add to a document (0 without a key ring)."""
        ring = self.encryption
        if ring is None:
            return 0
        return crypto.V1_OVERHEAD + 1 + max(len(k) for k in ring.key_ids)

    def _seal_document(self, key: str, body: bytes) -> bytes:
        ring = self.encryption
        return (
            body if ring is None else ring.seal_document(body, bucket=self.bucket, object_key=key)
        )

    def _open_document(self, key: str, body: bytes) -> bytes:
        """Plaintext of a stored document; sealed bytes without a key ring are refused."""
        ring = self.encryption
        if ring is None:
            return crypto.open_or_plaintext(body, None, bucket=self.bucket, object_key=key)
        return ring.open_document(body, bucket=self.bucket, object_key=key)

    def _blob_address(self, data: bytes) -> str:
        """A blob's address: plain BLAKE3, or keyed BLAKE3 with a key ring."""
        ring = self.encryption
        return cas.blake3_hex(data) if ring is None else ring.blob_address(data)

    def _open_stored_blob(self, body: bytes, digest: str, key: str) -> bytes | None:
        """The verified content of a stored blob body (trailer stripped, opened), or None."""
        ring = self.encryption
        if ring is None:
            return cas.open_blob(body, digest)
        try:
            return ring.read_blob(
                cas.blob_payload(body), address=digest, bucket=self.bucket, object_key=key
            )
        except (crypto.EncryptionError, IntegrityError):
            return None

    def _decode(self, tp: Any, body: bytes, key: str) -> Any:
        # codec.loads pauses the cyclic GC for documents of 128 KiB or more (see there).
        try:
            return codec.loads(tp, body, source=key, max_bytes=self.settings.max_document_bytes)
        except DocumentTooLargeError as exc:
            raise DocumentTooLargeError(exc.summary, bucket=self.bucket, key=key) from exc
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", errors=exc.errors, bucket=self.bucket, key=key
            ) from exc

    async def _put(
        self,
        key: str,
        body: bytes,
        mode: PutMode = "overwrite",
        *,
        metadata: dict[str, str] | None = None,
        raw: bool = False,
    ) -> PutResult:
        """Write a document: sealed when the store has a key ring (unless ``raw``: bytes as
        they are), then :meth:`_put_sealed`."""
        stored = body if raw else self._seal_document(key, body)
        result = await self._put_sealed(key, stored, mode, metadata)
        if not raw and not result.superseded:
            self._snapshots.remember(key, result.etag, body)
        return result

    async def _put_sealed(
        self, key: str, body: bytes, mode: PutMode, extra: dict[str, str] | None
    ) -> PutResult:
        """One PUT that reports only what it knows: success, a lost condition, or unknown.

        A conditional write carries a unique write token in its metadata
        (``x-amz-meta-s3store-write``) and the tokens of the versions it replaced
        (``x-amz-meta-s3store-history``, newest first, up to :data:`HISTORY_DEPTH`). When the
        write loses its condition or its answer is lost, one HEAD tells what happened: the
        object holds this token, or a later version lists it in its history, so this write
        landed (its answer was lost and a retry of the same request, or another writer, came
        after it) and it counts as the success it was. Otherwise, if any attempt may have
        been applied (the SDK re-sent the request, or the request failed in transit), the
        store raises :class:`OutcomeUnknownError` instead of guessing. ETags are not
        compared: they are not MD5s under SSE-KMS or multipart.
        """
        mode = check_mode(mode)
        client = await self._object_client()
        if mode == "overwrite":
            try:
                return await self._retry_409(lambda: client.put(key, body, metadata=extra))
            except OutcomeUnknownError:
                raise
            except TransientError as exc:
                # An unconditional PUT is idempotent, but the caller must still learn that
                # it may not have landed: not a definite failure.
                raise _unknown(exc, "overwrite", key, self.bucket) from exc
        await self._require_conditions("conditional put", key)
        if_none_match = mode == "create"
        if_match = mode.etag if isinstance(mode, IfMatch) else None
        token = uuid.uuid4().hex
        metadata = {**(extra or {}), WRITE_TOKEN: token}
        history = self._versions.history(key, if_match) if if_match else []
        if history:
            metadata[HISTORY_TOKEN] = " ".join(history[:HISTORY_DEPTH])
        attempts: list[bool] = []

        async def attempt() -> PutResult:
            try:
                return await client.put(
                    key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
                )
            except StoreError as exc:
                attempts.append(exc.retried)
                raise

        try:
            result = await self._retry_409(attempt)
        except (AlreadyExistsError, PreconditionFailedError) as exc:
            current = await self._head_quietly(key)
            if _lists_token(current, token):
                return self._landed(key, body, token, current)
            if any(attempts) or current is _UNKNOWN:
                raise _unknown(exc, "conditional put", key, self.bucket) from exc
            if isinstance(exc, PreconditionFailedError):
                raise PreconditionFailedError(
                    exc.summary,
                    bucket=self.bucket,
                    key=key,
                    expected_etag=if_match,
                    actual_etag=current.etag if isinstance(current, ObjectInfo) else None,
                    status=exc.status,
                ) from exc
            raise
        except ConditionalRequestConflictError as exc:
            if any(attempts):
                raise _unknown(exc, "conditional put", key, self.bucket) from exc
            raise
        except TransientError as exc:
            if isinstance(exc, OutcomeUnknownError):
                raise
            current = await self._head_quietly(key)
            if _lists_token(current, token):
                return self._landed(key, body, token, current)
            raise _unknown(exc, "conditional put", key, self.bucket) from exc
        self._versions.remember(key, result.etag, [token, *history])
        return result

    async def _head_quietly(self, key: str) -> object:
        """HEAD for outcome checks: the object, None if missing, or _UNKNOWN if HEAD failed."""
        client = await self._object_client()
        try:
            return await client.head(key)
        except TransientError:
            return _UNKNOWN

    def _landed(self, key: str, body: bytes, token: str, current: Any) -> PutResult:
        """The PutResult of a write found in the object's history after its answer was lost."""
        info: ObjectInfo = current
        if info.metadata.get(WRITE_TOKEN) == token:
            self._versions.remember(key, info.etag, _chain(info))
            return PutResult(etag=info.etag, version_id=info.version_id)
        # Superseded by a later version before we heard back: our version is gone, so a
        # compare-and-swap based on it must fail, which its (content) ETag guarantees.
        return PutResult(etag=md5_etag(body), superseded=True)

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
        try:
            caps = await self._conditions()
        except StoreError as exc:
            # The probe runs on a scratch key; the caller asked about its own key.
            raise exc.for_key(key, f"{what} on this key could not run: {exc.summary}") from exc
        if caps.conditions_enforced:
            return
        found = (
            f"the server ignores conditional headers "
            f"(If-None-Match enforced: {caps.if_none_match}, If-Match enforced: {caps.if_match})"
        )
        if self.settings.on_unenforced_conditions == "warn":
            warnings.warn(
                f"{what} sent without a guarantee: {found} [bucket={self.bucket}, key={key}]",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        raise UnsupportedBackendError(f"{what} refused: {found}", bucket=self.bucket, key=key)

    async def _require_conditional_delete(self, key: str) -> None:
        """Refuse a conditional delete the server would carry out unconditionally."""
        caps = await self._conditions()
        if caps.conditions_enforced and caps.conditional_delete:
            return
        raise UnsupportedBackendError(
            "conditional delete refused: the server does not enforce If-Match on DeleteObject "
            f"(probe: conditional delete enforced: {caps.conditional_delete}); "
            "delete without if_match, or use a server that supports it",
            bucket=self.bucket,
            key=key,
        )

    async def _conditions(self) -> Capabilities:
        if self._capabilities is not None:
            return self._capabilities
        client = await self._object_client()
        inner = client.inner if isinstance(client, AsyncCountingClient) else client
        backend = inner.backend if isinstance(inner, AsyncMemoryObjectClient) else None
        if backend is not None and not backend.ignore_conditions:
            # The in-memory client enforces conditions by construction; no probe requests.
            deletes = backend.conditional_delete and not backend.ignore_conditional_delete
            self._capabilities = Capabilities(True, True, deletes, None)
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
        self,
        session: SessionData,
        *,
        mode: PutMode | None = None,
        lease: AsyncLease | None = None,
    ) -> PutResult:
        """Write the session document (one PUT). See :data:`~s3store.types.PutMode`.

        ``mode`` defaults to ``"overwrite"``. A ``"create"`` that finds only a lease
        placeholder (no session) replaces it, If-Match (one GET and one PUT more).

        Under a ``lease`` the write is a compare-and-swap against the version this lease
        holder last wrote or fenced (journal mode: a delta appended only onto a state that
        carries this holder's fence), and fails with LeaseLostError once another holder has
        taken over. ``mode`` cannot be combined with ``lease`` (ConfigurationError): the
        lease decides the condition. Journal mode refuses a plain save of a fenced session
        (ConfigurationError): write it under its lease.
        """
        session = _validate.session(session)
        key = self.layout.session_key(session.id)
        if lease is not None:
            if mode is not None:
                raise ConfigurationError(
                    f"save(..., lease=...) does not take a mode (got {mode!r}): under a lease "
                    "every write is If-Match against the holder's fenced version"
                )
            return await lease.save_session(session)
        if self._journal is not None:
            return await self._journal.save(session, mode)
        mode = check_mode("overwrite" if mode is None else mode)
        if self.layout.name == "v1" and mode != "create":
            # A snapshot keeps its other members: compare-and-swap on the session key.
            return await self._snapshots.save_session(session, mode)
        body = self._encode(session, key)
        try:
            return await self._put(key, body, mode)
        except AlreadyExistsError:
            if mode != "create":
                raise
            replaced = await self._replace_placeholder(key, body)
            if replaced is None:
                raise
            return replaced

    async def _replace_placeholder(self, key: str, body: bytes) -> PutResult | None:
        """After a create-only save found an object: if it is a lease placeholder ("no
        session"), replace it If-Match; None if it is a session (or changed meanwhile)."""
        got = await self._get(key)
        if got is None or not is_placeholder(got[0]):
            return None
        try:
            return await self._put(key, body, IfMatch(got[1].etag))
        except PreconditionFailedError:
            return None

    async def load(self, id: str) -> SessionData | None:
        """The session, or None if there is none. One GET.

        Raises KeyCollisionError if the object holds another id's session (legacy ids
        ``a/b`` and ``a_b`` share a key) and CorruptObjectError for unreadable documents.
        """
        versioned = await self.load_versioned(id)
        return None if versioned is None else versioned.value

    async def load_versioned(self, id: str) -> Versioned[SessionData] | None:
        """The session with the ETag it was read at (for ``IfMatch`` writes), or None."""
        if self._journal is not None:
            return await self._journal.load_versioned(id)
        key = self.layout.session_key(id)
        got = await self._get(key)
        if got is None:
            return None
        body, info = got
        session = self._decode_session(body, key)
        if session is None:
            return None  # a lease placeholder: no session yet
        if session.id != id:
            raise KeyCollisionError(
                "session file key collision: the stored document belongs to another id",
                requested=id,
                stored=session.id,
                bucket=self.bucket,
                key=key,
            )
        return Versioned(value=session, etag=info.etag)

    def _decode_session(self, body: bytes, key: str) -> SessionData | None:
        """The session a session-key object holds; None for a lease placeholder."""
        # Envelope or bare session by the parsed top-level keys, as upstream decides.
        return self._snapshots.decode(body, key).session

    async def _session_body(
        self, session: SessionData, key: str, etag: str | None
    ) -> tuple[bytes, dict[str, str] | None]:
        """Bytes (and metadata) replacing the version at ``etag`` with ``session``: the
        patched snapshot if that version is one (leases write through this)."""
        return await self._snapshots.session_body(session, key, etag)

    # -- snapshots (v1 layout) -----------------------------------------------------------

    async def save_snapshot(
        self,
        snapshot: SessionSnapshotV1,
        *,
        mode: PutMode | None = None,
        expected_digest: str | None = None,
    ) -> PutResult:
        """Commit a whole generation (session and every fragment) in one PUT (v1 layout).

        From then on the session is a snapshot: ``save`` and every fragment save replace
        their member and re-commit it (If-Match, retried). ``mode`` as for :meth:`save`
        (default ``"overwrite"``); ``expected_digest`` instead makes it upstream's digest CAS
        (``save_snapshot_cas``): PreconditionFailedError unless the stored snapshot's
        recorded digest is that one (one HEAD more). Large artifact contents go to the blob
        pool (the snapshot refers to them); the snapshot's ``sha256:`` digest is recorded
        in the object's metadata (``x-amz-meta-s3store-snapshot-digest``).
        """
        snapshot = _validate.model(snapshot, models.SessionSnapshotV1, "snapshot")
        return await self._snapshots.save_snapshot(snapshot, mode, expected_digest)

    async def load_snapshot(self, id: str) -> SessionSnapshotV1 | None:
        """The session as a ``SessionSnapshotV1``, or None. A snapshot: one GET plus one per
        referenced blob not cached; a bare session is assembled from its fragments, as
        upstream's ``load_snapshot`` does."""
        return await self._snapshots.load_snapshot(id)

    async def _load_fragment(self, member: str, id: str) -> Any:
        """A sidecar fragment document by snapshot member name (no snapshot check)."""
        part = next(p for p, m in _SNAPSHOT_MEMBERS.items() if m == member)
        return await self._load_sidecar_document(part, id, _sidecar_type(part))

    async def update(
        self,
        id: str,
        fn: Callable[[SessionData | None], SessionData | Awaitable[SessionData]],
        *,
        retries: int = 20,
        lease: AsyncLease | None = None,
    ) -> PutResult:
        """Read-modify-write with compare-and-swap: load → ``fn`` → conditional save.

        On a conflict (someone else wrote in between) the whole cycle runs again after a
        jittered backoff, up to ``retries`` times, so concurrent updaters lose nothing.
        ``fn`` gets the current session (None if missing) and returns the new one; it may be
        called several times and should not have side effects.

        A change is applied at most once: a conflict is retried only when the store knows
        its write did not land. If it cannot know (the answer was lost and the history of
        the object does not tell), :class:`OutcomeUnknownError` is raised and ``fn`` is not
        run again; load the session to see whether the change is there.

        Under a ``lease`` this is :meth:`AsyncLease.update` (fenced, no create).
        """
        if lease is not None:
            return await lease.update(fn, id=id)
        attempt = 0
        while True:
            current = await self.load_versioned(id)
            result = fn(current.value if current else None)
            new = await result if isinstance(result, Awaitable) else result
            new = _validate.update_result(new, id)
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

    async def compact(
        self, id: str, *, document: Literal["session", "traces", "runs"] = "session"
    ) -> int:
        """Journal mode: fold the session's pending deltas into its document now
        (``document="traces"`` / ``"runs"``: its trace events' or run records').

        Returns how many deltas were folded (0 when none were pending or another
        compaction won the If-Match). Costs a load (GET, LIST, delta GETs), one PUT and
        one DeleteObjects. ConfigurationError without journal mode.
        """
        if self._journal is None:
            raise ConfigurationError("compact() needs journal mode (journal=True)")
        if document not in KINDS:
            raise ConfigurationError(f"compact(document=...) takes {sorted(KINDS)}")
        return await self._journal.compact(id, kind=KINDS[document])

    async def compact_pending(self) -> int:
        """Journal mode: fold every document this store knows to have pending deltas (the
        sessions, trace events and run records it saved or loaded), e.g. before handing a
        bucket to readers that know nothing of journals. Returns how many deltas were
        folded. Each document costs one PUT and one DeleteObjects (no load: the store's
        known state is complete up to its last sequence number; deltas written since by
        others stay pending, as the If-Match keeps them). ConfigurationError without
        journal mode."""
        if self._journal is None:
            raise ConfigurationError("compact_pending() needs journal mode (journal=True)")
        journal = self._journal
        folded = 0
        for id, kind in journal.pending():
            known = journal.known(id, kind)
            if known is not None:
                folded += await journal.compact(id, known=known, kind=kind)
        return folded

    async def watch(
        self, id: str, *, min_interval: float = 0.5, max_interval: float = 10.0
    ) -> AsyncIterator[Versioned[SessionData] | None]:
        """Follow a session as other processes write it: yields the current version (None
        while there is none) at once, then every new version, forever.

        Polls with adaptive intervals: ``min_interval`` after a change, doubling on every
        idle poll up to ``max_interval``. Whole-document mode: a poll is one conditional
        GET (``If-None-Match`` the last ETag), answered 304 with no body while nothing
        changed; a change is that same request answered with the document, so an idle
        poll and a change cost one request each. Journal mode: a poll is one LIST of the
        session's deltas plus one conditional GET of its document (two requests); a change
        adds one GET per new delta, a compaction nothing (and yields nothing: the state is
        the same). With the defaults an idle minute costs 6 polls once backed off
        (whole-document 6 requests, journal 12), at most 10 in the minute after a change.
        """
        from s3store._async.watch import watch_session  # watch imports this module

        async for version in watch_session(
            self, id, min_interval=min_interval, max_interval=max_interval
        ):
            yield version

    async def watch_prefix(
        self,
        *,
        min_interval: float = 0.5,
        max_interval: float = 10.0,
        existing: bool = False,
        removals: bool = False,
    ) -> AsyncIterator[SessionChange]:
        """Follow the store's set of sessions: yields a :class:`~s3store.types.SessionChange`
        ``(id, present=True)`` for every session that appears after the call, forever.

        ``existing``: first yield the sessions already there. ``removals``: also yield
        ``(id, present=False)`` for every session that disappears. Ids are those of
        :meth:`list` (legacy layout: the sanitised stems); lease placeholders are not
        sessions (one that becomes a session appears then). Both layouts, both modes.

        Polls one listing of the session keys (ListObjectsV2 with delimiter ``/``; S3 has no
        conditional LIST), with the intervals of :meth:`watch`. A poll costs one request
        per page of ``list_page_size`` (1000) entries, idle or not: with the defaults an
        idle minute costs 6 polls once backed off, i.e. 6 × pages requests. A change
        waits at most ``max_interval`` to be seen.
        """
        from s3store._async.watch import watch_prefix  # watch imports this module

        async for change in watch_prefix(
            self,
            min_interval=min_interval,
            max_interval=max_interval,
            existing=existing,
            removals=removals,
        ):
            yield change

    async def exists(self, id: str) -> bool:
        """Whether a session is stored under ``id``. One request.

        The request is a ranged GET of the document's first bytes, not a HEAD: a HEAD's
        404 has no body, so it cannot tell a missing session from a missing bucket, and a
        missing bucket must raise :class:`~s3store.errors.BucketNotFoundError`, not answer
        False. In the legacy layout an id that shares its key with other ids (it contains
        ``_``, ``/``, ``\\`` or ``..``) is checked against the id at the head of the
        stored document, as upstream checks ownership. A lease placeholder is no session
        (with encryption at rest, an object small enough to be one is read whole to tell).
        """
        key = self.layout.session_key(id)
        if self._unambiguous(id):
            overhead = self._seal_overhead()
            client = await self._object_client()
            # One byte past the largest placeholder: a shorter answer is the whole object.
            peek = PLACEHOLDER_MAX_BYTES + overhead + 1
            got = await client.get(key, range_end=peek)
            if got is None:
                return False
            if len(got.body) >= peek:
                return True
            if overhead:
                whole = await self._get(key)
                return whole is not None and not is_placeholder(whole[0])
            return not is_placeholder(got.body)
        return await self._stored_id(key) == id

    def _unambiguous(self, id: str) -> bool:
        """Whether no other id can share this id's session key."""
        return self.layout.name == "v1" or "_" not in safe_session_id(id)

    async def _stored_id(self, key: str) -> str | None:
        """The id of the session stored at ``key`` (None if there is none), read from the
        document's first bytes with a ranged GET (Rust writes ``id`` first)."""
        if self.encryption is not None:
            # A sealed document cannot be read in part: read it whole.
            whole = await self.load_versioned_unchecked(key)
            return whole.id if whole else None
        client = await self._object_client()
        got = await client.get(key, max_bytes=None, range_end=_ID_PEEK_BYTES)
        if got is None or is_placeholder(got.body):
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
        """Ids of the stored sessions, sorted. One listing request per page.

        A page holds ``list_page_size`` (1000) entries; in the legacy layout the store's own
        folders (``artifacts/``, ``traces/``, ``blobs/``, ``leases/``, …, at most a dozen)
        are entries too, and an empty store still costs one request.

        Legacy layout: the file stems (sanitised ids), as the Rust ``list`` returns them;
        v1 layout: the decoded ids. Lease placeholders are skipped by their listed size (no
        session document is that small), without reading them.
        """
        ids: set[str] = set()
        overhead = self._seal_overhead()
        async for info in self._iter_objects(self.layout.session_list_prefix, delimiter="/"):
            listed = self.layout.session_id_from_key(info.key)
            if listed is None:
                continue
            if may_be_placeholder(info.size, overhead):
                # Sealed placeholders with a long (v2) key id can be as large as the smallest
                # sealed session: only those sizes are read to tell.
                if info.size < _MIN_SESSION_BYTES:
                    continue
                got = await self._get(info.key)
                if got is None or is_placeholder(got[0]):
                    continue
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

        Leases: the lease object is left alone (it is never deleted, so epochs keep
        increasing) and a lease placeholder is deleted like a session. A holder whose
        session was deleted under it gets PreconditionFailedError on its next write (the
        session changed outside the lease); it never recreates the session.
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
            await self._require_conditional_delete(key)
            if self._journal is not None:
                if_match = await self._journal.document_etag(id, if_match)
            await client.delete(key, if_match=if_match)
        else:
            keys.insert(0, key)
        keys.extend([info.key async for info in self._iter_objects(self.layout.artifact_dir(id))])
        if self._journal is not None:
            keys.extend(await self._journal.delete_all(id))
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
        """Write bytes as they are under a full key (inside the prefix); one PUT.

        The bytes are stored unchanged even when the store has a key ring (``import`` seals
        what needs sealing itself, and keeps upstream envelopes byte for byte).
        """
        return await self._put(self._own_key(key), body, mode, raw=True)

    async def delete_objects(self, keys: Sequence[str]) -> None:
        """Delete objects by full key (inside the prefix), 1,000 per request."""
        client = await self._object_client()
        owned = [self._own_key(key) for key in keys]
        for start in range(0, len(owned), 1000):
            await client.delete_many(owned[start : start + 1000])

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist (dev servers, demos); True if this call
        created it."""
        client = await self._object_client()
        try:
            await client.head_bucket()
        except StoreError:
            await client.create_bucket()
            return True
        return False

    def mark_blobs_present(self, blobs: Iterable[ObjectInfo]) -> None:
        """Tell the store about blob versions a listing showed (no re-upload while young).

        Only entries with a Last-Modified count: a writer reuses a blob only while the version
        it knows is younger than ``blob_reuse_window`` by the server's clock.
        """
        for info in blobs:
            try:
                digest = self.layout.blob_digest(info.key)
            except ValueError:
                continue
            self._remember_blob(digest, info)

    # -- sidecars ------------------------------------------------------------------------

    async def _save_sidecar(
        self, part: Part, id: str, records: Sequence[BaseModel], mode: PutMode
    ) -> PutResult:
        key = self.layout.sidecar_key(part, id)
        if self._journal is not None and part in ARRAY_KINDS:
            # Journal mode refuses snapshots (their fragments are members of the session
            # document), so the snapshot check is skipped: it would cost a GET per save.
            return await self._journal.save_array(ARRAY_KINDS[part], id, list(records), mode)
        body = self._encode(list(records), key)
        committed = await self._snapshots.save_member(id, _SNAPSHOT_MEMBERS[part], records, mode)
        if committed is not None:
            return committed
        return await self._put(key, body, mode)

    async def _load_sidecar(self, part: Part, id: str, tp: Any) -> Any:
        if self._journal is not None and part in ARRAY_KINDS:
            return await self._load_sidecar_document(part, id, tp)
        found, value = await self._snapshots.load_member(id, _SNAPSHOT_MEMBERS[part])
        if found:
            return value
        return await self._load_sidecar_document(part, id, tp)

    async def _load_sidecar_document(self, part: Part, id: str, tp: Any) -> Any:
        if self._journal is not None and part in ARRAY_KINDS:
            # The document as of the last compaction + its pending deltas (LIST, GET, the
            # deltas' GETs concurrently).
            return await self._journal.load_array(ARRAY_KINDS[part], id)
        key = self.layout.sidecar_key(part, id)
        got = await self._get(key)
        return None if got is None else self._decode(tp, got[0], key)

    async def save_trace_events(
        self, id: str, events: Sequence[TraceEvent], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's trace events (one PUT).

        Journal mode: when this store knows the stored version (it loaded or saved it) and
        ``events`` extends it, only the new events are written, as a delta (its PUT and the
        confirming HEAD; every ``journal_compact_every`` deltas a compaction too). See
        :meth:`~s3store._async.journal.AsyncJournal.save_array` for ``mode``.
        """
        events = _validate.models(events, TraceEvent, "events")
        return await self._save_sidecar(Part.TRACES, id, events, mode)

    async def load_trace_events(self, id: str) -> builtins.list[TraceEvent] | None:
        """The session's trace events, or None if never saved (one GET; journal mode: one
        LIST, one GET and one GET per pending delta)."""
        events: builtins.list[TraceEvent] | None = await self._load_sidecar(
            Part.TRACES, id, list[TraceEvent]
        )
        return events

    async def save_run_records(
        self, id: str, records: Sequence[RunRecord], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's run records (one PUT; journal mode: a delta of the new
        records, as :meth:`save_trace_events`)."""
        records = _validate.models(records, models.RunRecord, "records")
        return await self._save_sidecar(Part.RUNS, id, records, mode)

    async def load_run_records(self, id: str) -> builtins.list[RunRecord] | None:
        """The session's run records, or None (one GET; journal mode: as
        :meth:`load_trace_events`)."""
        records: builtins.list[RunRecord] | None = await self._load_sidecar(
            Part.RUNS, id, list[models.RunRecord]
        )
        return records

    async def save_verification_reports(
        self, id: str, reports: Sequence[VerificationReport], *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's verification reports (one PUT)."""
        reports = _validate.models(reports, VerificationReport, "reports")
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
        tasks = _validate.models(tasks, SubagentTaskSnapshot, "tasks")
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
        checkpoint = _validate.model(checkpoint, LoopCheckpoint, "checkpoint")
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
        checkpoint: LoopCheckpoint | None = await self._load_checkpoint(
            key, LoopCheckpoint, "run_id", run_id, "loop checkpoint", "key collision"
        )
        return checkpoint

    async def delete_loop_checkpoint(self, run_id: str) -> None:
        """Delete a loop checkpoint; missing is fine (one request)."""
        client = await self._object_client()
        await client.delete(self.layout.loop_checkpoint_key(run_id))

    # -- workflow checkpoints ------------------------------------------------------------

    async def save_workflow_checkpoint(
        self, workflow_id: str, checkpoint: WorkflowCheckpoint, *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write a workflow checkpoint under its workflow id (one PUT); its ``workflow_id``
        must match (``workflow_checkpoints/<safe id>.json`` or
        ``v1/workflow_checkpoints/id_<b64>.json``)."""
        checkpoint = _validate.model(checkpoint, WorkflowCheckpoint, "checkpoint")
        if checkpoint.workflow_id != workflow_id:
            raise InvalidIdError(
                "workflow checkpoint key mismatch: requested workflow "
                f"{workflow_id!r}, payload belongs to {checkpoint.workflow_id!r}",
                id=workflow_id,
                bucket=self.bucket,
            )
        key = self.layout.workflow_checkpoint_key(workflow_id)
        return await self._put(key, self._encode(checkpoint, key), mode)

    async def load_workflow_checkpoint(self, workflow_id: str) -> WorkflowCheckpoint | None:
        """The workflow checkpoint of ``workflow_id``, or None (one GET).

        Refuses checkpoints of a future schema version (> 1) and ones stored for another
        workflow id, as upstream does.
        """
        key = self.layout.workflow_checkpoint_key(workflow_id)
        checkpoint: WorkflowCheckpoint | None = await self._load_checkpoint(
            key,
            WorkflowCheckpoint,
            "workflow_id",
            workflow_id,
            "workflow checkpoint",
            "key mismatch",
        )
        return checkpoint

    async def _load_checkpoint(
        self, key: str, tp: type[C], id_field: str, id: str, what: str, collision: str
    ) -> C | None:
        """A checkpoint of either kind, refused if its schema is from the future (> 1) or
        it belongs to another id, as upstream refuses both."""
        loaded = await self._load_model(key, tp)
        if loaded is None:
            return None
        checkpoint, _ = loaded
        version = checkpoint.schema_version
        if version > 1:
            raise CorruptObjectError(
                f"{what} schema version {version} is not loadable", bucket=self.bucket, key=key
            )
        stored = getattr(checkpoint, id_field)
        if stored != id:
            raise KeyCollisionError(
                f"{what} {collision}", requested=id, stored=stored, bucket=self.bucket, key=key
            )
        return checkpoint

    async def delete_workflow_checkpoint(self, workflow_id: str) -> None:
        """Delete a workflow checkpoint; missing is fine (one request)."""
        client = await self._object_client()
        await client.delete(self.layout.workflow_checkpoint_key(workflow_id))

    # -- artifacts (content-addressed) ---------------------------------------------------

    async def save_artifacts(
        self, id: str, artifacts: ArtifactStore, *, mode: PutMode = "overwrite"
    ) -> PutResult:
        """Write the session's artifacts: missing blobs first, the manifest last.

        Contents of ``inline_threshold`` bytes or more become BLAKE3-addressed blobs (each
        upload with a fresh trailer, FORMAT.md). A blob this store wrote or read within
        ``blob_reuse_window`` (server clock) is not sent again, so re-saving an unchanged
        artifact store costs one request; an older one is re-uploaded, and an unknown one is
        uploaded create-only (a 412 costs one HEAD, and a re-upload if that version is old).
        The manifest never points at a blob a concurrent gc may delete (FORMAT.md, "gc").
        """
        artifacts = _validate.model(artifacts, ArtifactStore, "artifacts")
        key = self.layout.artifact_manifest_key(id)
        committed = await self._snapshots.save_member(id, "artifacts", artifacts, mode)
        if committed is not None:
            return committed  # the session is a snapshot: its artifacts member was replaced
        split = cas.split_artifacts(
            artifacts, inline_threshold=self.settings.inline_threshold, address=self._blob_address
        )
        if len(split.manifest) > self.settings.max_document_bytes:
            raise DocumentTooLargeError(
                f"artifact manifest is {len(split.manifest)} bytes, over the limit",
                bucket=self.bucket,
                key=key,
            )
        relied = await agather_limited(
            [_bind(self._ensure_blob, d, split.blobs[d]) for d in split.blobs],
            self.settings.max_concurrency,
        )
        versions = dict(zip(split.blobs, relied, strict=True))
        try:
            result = await self._put(key, split.manifest, mode)
        except OutcomeUnknownError:
            # The manifest may have landed: make sure what it relies on outlives gc anyway.
            await self._repair_if_stale(versions, split.blobs, None)
            raise
        await self._repair_if_stale(versions, split.blobs, result.server_time)
        return result

    def _server_now(self) -> datetime | None:
        return self._server_clock.now(aclock())

    def _observe(self, server_time: datetime | None) -> None:
        self._server_clock.observe(server_time, aclock())

    def _age(self, last_modified: datetime, at: datetime | None = None) -> timedelta | None:
        now = at or self._server_now()
        return None if now is None else now - last_modified

    async def _ensure_blob(self, digest: str, data: bytes) -> KnownBlob:
        """Make sure a version of the blob exists that gc will not delete (see FORMAT.md).

        Costs nothing when this store knows a version younger than ``blob_reuse_window``;
        one PUT for a new blob (or one re-upload when the known version is older); a
        create-only PUT that finds the blob there costs one HEAD more, and one re-upload
        more if that version is older than the window. Large blobs are HEADed first.
        """
        # Single flight: concurrent saves of the same content wait for one upload.
        lock = self._blob_locks.setdefault(digest, AsyncLock())
        async with lock:
            known = await self._ensure_blob_locked(digest, data)
        self._blob_locks.pop(digest, None)
        self._blob_cache.put(digest, data)
        return known

    def _reusable(self, known: KnownBlob | None) -> bool:
        if known is None:
            return False
        age = self._age(known.last_modified)
        return age is not None and age < timedelta(seconds=self.settings.blob_reuse_window)

    async def _ensure_blob_locked(self, digest: str, data: bytes) -> KnownBlob:
        known = self._known_blobs.get(digest)
        if self._known_blobs.is_corrupt(digest):
            return await self._upload_blob(digest, data, create_only=False)
        if known is not None:
            if self._reusable(known):
                return known
            return await self._upload_blob(digest, data, create_only=False)
        client = await self._object_client()
        key = self.layout.blob_key(digest)
        for _ in range(3):
            if len(data) >= self.settings.blob_head_threshold:
                # A large body is worth a HEAD first: the blob is often there already, and a
                # create-only PUT would send the whole body to learn it.
                info = await client.head(key)
                if info is None:
                    return await self._upload_blob(digest, data, create_only=False)
            else:
                try:
                    return await self._upload_blob(digest, data, create_only=True)
                except AlreadyExistsError:
                    info = await client.head(key)
                if info is None:
                    continue  # deleted (by gc) between our PUT and the HEAD: upload again
            self._observe(info.server_time)
            seen = self._remember_blob(digest, info)
            if seen is not None and self._reusable(seen):
                return seen
            return await self._upload_blob(digest, data, create_only=False)
        return await self._upload_blob(digest, data, create_only=False)

    def _remember_blob(self, digest: str, info: ObjectInfo) -> KnownBlob | None:
        if info.last_modified is None:
            return None
        self._known_blobs.add(digest, info.last_modified, info.etag)
        return KnownBlob(info.last_modified, info.etag)

    async def _upload_blob(self, digest: str, data: bytes, *, create_only: bool) -> KnownBlob:
        """Upload one version of the blob (content + fresh trailer); create-only or replacing."""
        client = await self._object_client()
        key = self.layout.blob_key(digest)
        trailer = cas.blob_trailer()
        if self.encryption is not None:
            # Sealed content, then the trailer: the trailer keeps every upload's ETag unique
            # for gc's If-Match delete whatever the envelope does (FORMAT.md).
            data = self.encryption.seal_blob(data, bucket=self.bucket, object_key=key)
        if len(data) >= self.settings.multipart_threshold:
            result = await self._retry_409(
                lambda: self._put_multipart(key, data, trailer=trailer, create_only=create_only)
            )
        else:
            body = data + trailer
            result = await self._retry_409(lambda: client.put(key, body, if_none_match=create_only))
        self._observe(result.server_time)
        # The Date header comes with the answer, a moment after Last-Modified was set, and
        # both have one-second resolution: date the version earlier, never later.
        written = (result.server_time or self._server_now() or _EPOCH) - _DATE_MARGIN
        known = KnownBlob(written, result.etag)
        self._known_blobs.add(digest, known.last_modified, known.etag)
        return known

    async def _repair_if_stale(
        self,
        versions: dict[str, KnownBlob],
        contents: dict[str, bytes],
        landed_at: datetime | None,
    ) -> None:
        """After a manifest PUT: re-upload any blob whose relied-on version was already older
        than the gc grace floor when the manifest landed (the writer stalled in between), so
        a gc that started meanwhile cannot have taken the only copy for good."""
        floor = timedelta(seconds=self.settings.gc_grace_floor)
        when = landed_at or self._server_now()
        self._observe(landed_at)
        for digest, known in versions.items():
            age = self._age(known.last_modified, when)
            if age is None or age >= floor:
                # A version dated _EPOCH was uploaded while the server's clock was unknown
                # (no Date on any answer yet): it cannot be proven young, so it goes up again.
                undated = known.last_modified <= _EPOCH
                log.warning(
                    "bucket=<%s> key=<%s> | %s; re-uploading it",
                    self.bucket,
                    self.layout.blob_key(digest),
                    "the blob version the manifest relies on has no known server time"
                    if undated
                    else f"manifest landed {age} after the blob version it relies on",
                )
                self._known_blobs.forget(digest)
                await self._upload_blob(digest, contents[digest], create_only=False)

    async def _put_multipart(
        self, key: str, data: bytes, *, trailer: bytes = b"", create_only: bool = True
    ) -> PutResult:
        """Multipart upload of ``data + trailer``; parts go up concurrently, aborted on any
        failure; ``create_only`` makes the completion If-None-Match.

        ``data + trailer`` is never built: each part is sliced from ``data`` (and the
        trailer) only when its request may start, so a part's bytes exist only while it is
        in flight, and the store-wide bound on requests in flight (the counting client's)
        bounds the copies however many blobs upload at once.
        """
        client = await self._object_client()
        size = self.settings.part_size
        view = memoryview(data)
        total = len(data) + len(trailer)

        def part_body(start: int) -> bytes:
            end = min(start + size, total)
            if end <= len(data):
                return bytes(view[start:end])
            head = view[start : len(data)] if start < len(data) else b""
            return b"".join((head, trailer[max(0, start - len(data)) : end - len(data)]))

        def send(n: int, start: int) -> Callable[[], Awaitable[str]]:
            if isinstance(client, AsyncCountingClient):
                return lambda: client.upload_part_from(key, upload_id, n, lambda: part_body(start))
            return lambda: client.upload_part(key, upload_id, n, part_body(start))

        upload_id = await client.create_multipart(key)
        try:
            etags = await agather_limited(
                [send(n, start) for n, start in enumerate(range(0, total, size), start=1)],
                self.settings.max_concurrency,
            )
            return await client.complete_multipart(key, upload_id, etags, if_none_match=create_only)
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
        found, value = await self._snapshots.load_member(id, "artifacts")
        if found:
            loaded: ArtifactStore = value
            return loaded
        return await self._load_manifest(id)

    async def _load_manifest(self, id: str) -> ArtifactStore | None:
        """The artifact manifest document's artifacts (no snapshot check)."""
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
        content = self._open_stored_blob(result.body, digest, key)
        if content is None:
            # Remember the damage: the next save of this content replaces the blob.
            self._known_blobs.forget(digest, corrupt=True)
            actual = cas.blake3_hex(cas.blob_payload(result.body))
            if self.encryption is not None:
                actual = "undecryptable or not matching its keyed address"
            raise IntegrityError(
                "blob content does not match its digest",
                expected=f"blake3:{digest}",
                actual=f"blake3:{actual}",
                bucket=self.bucket,
                key=key,
            )
        self._observe(result.info.server_time)
        self._remember_blob(digest, result.info)
        self._blob_cache.put(digest, content)
        return content

    async def repair_blobs(self, contents: Iterable[bytes]) -> builtins.list[str]:
        """Re-upload the blobs of these contents that are missing or damaged in the bucket.

        For ``fsck`` findings: give the original contents (e.g. from an exported directory)
        and every blob that does not verify is replaced. Returns the digests replaced; two
        requests per content checked (GET, and a PUT when it needs replacing).
        """
        replaced: builtins.list[str] = []
        client = await self._object_client()
        for data in contents:
            digest = self._blob_address(bytes(data))
            key = self.layout.blob_key(digest)
            got = await client.get(key)
            if got is not None and self._open_stored_blob(got.body, digest, key) is not None:
                continue
            await self._upload_blob(digest, bytes(data), create_only=False)
            replaced.append(digest)
        return replaced

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
        """Hold the single-writer lease of a session; see :mod:`s3store._async.lease`.

        Acquires (create-only, or If-Match takeover of a released or expired lease, epoch
        + 1), fences the session (a placeholder if it does not exist yet), renews in the
        background every ``ttl / 3`` seconds (``renew=True``), and on exit waits for a
        renewal in flight and marks the lease object released (it is never deleted).
        ``holder`` names this process: a lease held under the same name is taken over.
        In journal mode the fence and every write under the lease are journal appends.
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
        """Every artifact manifest under the prefix, of both layouts: they share ``blobs/``."""
        roots = (f"{self.layout.root}artifacts/", f"{self.layout.root}v1/artifacts/")
        return [
            info
            for root in roots
            async for info in self._iter_objects(root)
            if info.key.endswith("/artifacts.json")
        ]

    async def _snapshot_keys(self) -> builtins.list[ObjectInfo]:
        """Every v1 session document: a snapshot among them may refer to blobs."""
        root = f"{self.layout.root}v1/sessions/"
        return [
            info
            async for info in self._iter_objects(root, delimiter="/")
            if info.key.endswith(".json")
        ]

    async def _referenced(self, manifests: Sequence[ObjectInfo]) -> set[str]:
        snapshots_root = f"{self.layout.root}v1/sessions/"

        async def refs(info: ObjectInfo) -> set[str]:
            got = await self._get(info.key)
            if got is None:
                return set()
            try:
                if info.key.startswith(snapshots_root):
                    if is_placeholder(got[0]):
                        return set()
                    tree = snap.parse_tree(got[0], source=info.key)
                    if not snap.is_snapshot_tree(tree):
                        return set()
                    return snap.referenced_digests(tree, source=info.key)
                return cas.parse_manifest(got[0], source=info.key).digests
            except DocumentError as exc:
                # A manifest gc cannot read may still refer to blobs: collect nothing.
                raise CorruptObjectError(
                    f"gc stopped: unreadable manifest ({exc.summary})",
                    bucket=self.bucket,
                    key=info.key,
                ) from exc

        found = await agather_limited(
            [_bind(refs, m) for m in manifests], self.settings.max_concurrency
        )
        return set().union(*found)

    async def _server_time(self) -> datetime:
        """The server's clock now: the Date of a PUT (and DELETE) of the health key."""
        client = await self._object_client()
        key = self.layout.health_key()
        result = await client.put(key, b"ok")
        await client.delete(key)
        if result.server_time is None:
            raise UnsupportedBackendError(
                "gc needs the server's clock, but the server sent no Date header",
                bucket=self.bucket,
                key=key,
            )
        self._observe(result.server_time)
        return result.server_time

    async def gc(
        self,
        *,
        grace: timedelta = timedelta(hours=24),
        dry_run: bool = False,
        allow_no_manifests: bool = False,
        exclusive: bool = False,
    ) -> GcReport:
        """Delete blobs no manifest refers to, safely beside live writers (FORMAT.md, "gc").

        1. T0 = the server's clock (one PUT + DELETE of the health key).
        2. Mark: list and read every manifest of both layouts, and every v1 session
           document (snapshots refer to blobs too).
        3. Sweep: list the blobs; an unreferenced blob last modified before T0 − ``grace`` is
           a candidate. Each is deleted with If-Match on the ETag the listing showed, so a
           blob a writer re-uploaded meanwhile (new trailer, new ETag) is kept ("refreshed").

        ``grace`` may not be shorter than ``gc_grace_floor`` (default 1 h): writers rely on
        gc leaving every blob version younger than that alone. gc refuses to run when it
        finds blobs but no manifest at all (a wrong prefix would collect everything) unless
        ``allow_no_manifests``, and on servers that ignore If-Match on DeleteObject unless
        ``exclusive`` (you promise that no writer runs meanwhile).
        """
        grace = _validate.duration(grace, "gc grace")
        floor = timedelta(seconds=self.settings.gc_grace_floor)
        if grace < floor:
            raise ConfigurationError(
                f"gc grace {grace} is below the floor of {floor} (gc_grace_floor): writers "
                "rely on gc leaving younger blobs alone",
                bucket=self.bucket,
            )
        if not dry_run and not exclusive:
            await self._require_conditional_delete(self.layout.blob_root)
        started = await self._server_time()
        manifests = await self._manifest_keys()
        # Snapshots (v1 session documents) refer to blobs as manifests do: marked alike.
        snapshots = await self._snapshot_keys()
        referenced = await self._referenced([*manifests, *snapshots])
        blobs = [info async for info in self._iter_objects(self.layout.blob_root)]
        if blobs and not manifests and not snapshots and not allow_no_manifests:
            raise ConfigurationError(
                f"gc refused: {len(blobs)} blobs but no artifact manifest under "
                f"{self.layout.root!r} (wrong prefix?); pass allow_no_manifests=True "
                "(CLI: --allow-no-manifests) to collect them all",
                bucket=self.bucket,
                key=self.layout.blob_root,
            )
        cutoff = started - grace
        candidates: builtins.list[ObjectInfo] = []
        kept_young = kept_referenced = 0
        for info in blobs:
            try:
                digest = self.layout.blob_digest(info.key)
            except ValueError:
                continue
            if digest in referenced:
                kept_referenced += 1
            elif info.last_modified is None or info.last_modified >= cutoff:
                kept_young += 1
            else:
                candidates.append(info)
        deleted: builtins.list[ObjectInfo] = []
        refreshed: builtins.list[ObjectInfo] = []
        if dry_run:
            deleted = candidates
        else:
            client = await self._object_client()

            async def collect(info: ObjectInfo) -> None:
                try:
                    if exclusive:
                        await client.delete(info.key)
                    else:
                        await self._retry_409(lambda: client.delete(info.key, if_match=info.etag))
                except PreconditionFailedError:
                    refreshed.append(info)
                    return
                deleted.append(info)

            await agather_limited(
                [_bind(collect, c) for c in candidates], self.settings.max_concurrency
            )
        return GcReport(
            manifests=len(manifests),
            blobs=len(blobs),
            referenced=kept_referenced,
            kept_young=kept_young,
            deleted=len(deleted),
            deleted_bytes=sum(c.size for c in deleted),
            dry_run=dry_run,
            kept_refreshed=len(refreshed),
            grace_seconds=grace.total_seconds(),
            deleted_keys=sorted(c.key for c in deleted),
        )

    async def fsck(self) -> FsckReport:
        """Check everything under the prefix without changing anything.

        Parses every document, checks that every manifest and snapshot reference resolves,
        that every snapshot's recorded digest (``x-amz-meta-s3store-snapshot-digest``) is its
        digest, and re-hashes every blob. Unreferenced blobs are reported (gc removes them),
        not counted as errors.
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

        async def check_snapshot(body: bytes, info: ObjectInfo, key: str) -> None:
            try:
                problem = await self._snapshots.check_digest(body, info.metadata, key)
            except IntegrityError:
                return  # a missing or damaged blob: reported as such below
            if problem is not None:
                report.problems.append(FsckProblem("snapshot-digest", key, problem))

        async def check_document(info: ObjectInfo, tp: Any) -> None:
            got = await self._get(info.key)
            if got is None:
                return
            try:
                if tp == "manifest":
                    referenced.update(cas.parse_manifest(got[0], source=info.key).digests)
                elif tp == "session":
                    state = self._snapshots.decode(got[0], info.key)
                    if state.stored is not None:
                        referenced.update(state.stored.digests)
                        await check_snapshot(got[0], got[1], info.key)
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
            "runs": builtins.list[models.RunRecord],
            "subagent_tasks": builtins.list[SubagentTaskSnapshot],
            "loop_checkpoints": LoopCheckpoint,
            "workflow_checkpoints": WorkflowCheckpoint,
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


def _chain(info: ObjectInfo) -> builtins.list[str]:
    """Write tokens of this version and the versions it replaced, newest first."""
    own = info.metadata.get(WRITE_TOKEN)
    earlier = info.metadata.get(HISTORY_TOKEN, "").split()
    return ([own] if own else []) + earlier


def _lists_token(current: object, token: str) -> bool:
    return isinstance(current, ObjectInfo) and token in _chain(current)


def _unknown(cause: StoreError, what: str, key: str, bucket: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"{what}: outcome unknown, the write may or may not have been applied "
        f"({cause.summary}); read the object to find out before writing again",
        bucket=bucket,
        key=key,
        code=getattr(cause, "code", None),
        status=getattr(cause, "status", None),
    )
