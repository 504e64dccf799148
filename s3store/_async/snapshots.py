"""Session snapshots (``SessionSnapshotV1``) in the v1 layout, async.

``s3store/_sync/snapshots.py`` is generated from this file by ``scripts/unasync.py``.

Upstream's semantics (WIRE_FORMAT.md 2.4): a v1 session is a bare ``SessionData`` document
until a snapshot is saved for it; from then on the session key holds the whole generation,
and ``save`` and every fragment save replace their member and commit the whole snapshot again.
Here every such commit is one PUT with ``If-Match`` on the version it was built from, so two
writers patching different members of one snapshot never lose each other's change: the loser
of the race re-reads and re-applies its member (``overwrite``), or gets
``PreconditionFailedError`` (an explicit ``IfMatch``). A write whose outcome cannot be known
raises ``OutcomeUnknownError`` and is never re-applied (see ``AsyncS3SessionStore._put``).

Artifacts inside a snapshot go to the blob pool as a manifest's do (:mod:`s3store.snapshot`
has the stored form); the snapshot object refers to the blobs, gc marks them, and a commit
that newly relies on blobs follows the writer rules of ``save_artifacts`` (``_ensure_blob``
before, ``_repair_if_stale`` after). Every snapshot write records upstream's snapshot digest
in ``x-amz-meta-s3store-snapshot-digest``.

A process remembers the last version of each v1 session key it read or wrote (bounded), so a
writer that keeps saving one session pays one request per save; the ``If-Match`` makes a stale
memory harmless (a 412, then one GET).
"""

from __future__ import annotations

import builtins
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from s3store import codec, models
from s3store import snapshot as snap
from s3store._async.lease import is_placeholder
from s3store._backends import agather_limited, asleep
from s3store._caches import KnownBlob
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    CorruptObjectError,
    DocumentError,
    DocumentTooLargeError,
    KeyCollisionError,
    ObjectNotFoundError,
    OutcomeUnknownError,
    PreconditionFailedError,
)
from s3store.models import ArtifactStore, SessionData
from s3store.types import IfMatch, PutMode, PutResult, check_mode

if TYPE_CHECKING:
    from s3store._async.store import AsyncS3SessionStore
    from s3store.models import SessionSnapshotV1

_RECENT_KEYS = 256
_RECENT_BYTES = 64 * 1024 * 1024
_ATTEMPTS = 20


@dataclass
class SessionState:
    """What a session key holds: ``missing``, ``placeholder``, ``bare`` or ``snapshot``."""

    kind: str
    etag: str | None = None
    session: SessionData | None = None
    stored: snap.StoredSnapshot | None = None


class AsyncSnapshots:
    """The snapshot logic of one store (``store._snapshots``); the store delegates to it."""

    def __init__(self, store: AsyncS3SessionStore) -> None:
        self.store = store
        self._recent: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._recent_bytes = 0
        self._lock = threading.Lock()

    # -- the last version seen per session key -------------------------------------------

    def _tracked(self, key: str) -> bool:
        layout = self.store.layout
        return layout.name == "v1" and key.startswith(layout.session_list_prefix)

    def remember(self, key: str, etag: str, body: bytes) -> None:
        """Record the plaintext of the version of a v1 session key just read or written."""
        if not self._tracked(key) or len(body) > _RECENT_BYTES // 4:
            return
        with self._lock:
            old = self._recent.pop(key, None)
            if old is not None:
                self._recent_bytes -= len(old[1])
            self._recent[key] = (etag, body)
            self._recent_bytes += len(body)
            while len(self._recent) > _RECENT_KEYS or self._recent_bytes > _RECENT_BYTES:
                _, (_, dropped) = self._recent.popitem(last=False)
                self._recent_bytes -= len(dropped)

    def forget(self, key: str) -> None:
        with self._lock:
            old = self._recent.pop(key, None)
            if old is not None:
                self._recent_bytes -= len(old[1])

    def _cached(self, key: str, etag: str | None = None) -> SessionState | None:
        with self._lock:
            hit = self._recent.get(key)
        if hit is None or (etag is not None and hit[0] != etag):
            return None
        state = self.decode(hit[1], key)
        state.etag = hit[0]
        return state

    # -- decoding ------------------------------------------------------------------------

    def decode(self, body: bytes, key: str) -> SessionState:
        """Tell a session-key document apart by its parsed top-level keys (upstream's rule).

        Raises CorruptObjectError for unreadable documents and unloadable snapshots.
        """
        store = self.store
        if is_placeholder(body):
            return SessionState("placeholder")
        if store.layout.name != "v1":
            session: SessionData = store._decode(SessionData, body, key)
            return SessionState("bare", session=session)
        if len(body) > store.settings.max_document_bytes:
            raise DocumentTooLargeError(
                f"document of {len(body)} bytes exceeds the limit", bucket=store.bucket, key=key
            )
        try:
            tree = snap.parse_tree(body, source=key)
            if snap.is_snapshot_tree(tree):
                stored = snap.parse_stored(tree, source=key)
                return SessionState("snapshot", session=stored.snapshot.session, stored=stored)
            session = codec.from_value(SessionData, tree, source=key)
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", errors=exc.errors, bucket=store.bucket, key=key
            ) from exc
        return SessionState("bare", session=session)

    async def state(
        self, key: str, *, etag: str | None = None, cached: bool = False
    ) -> SessionState:
        """The session key's state: remembered (``cached``, or at ``etag``) or one GET."""
        if cached or etag is not None:
            hit = self._cached(key, etag)
            if hit is not None:
                return hit
        got = await self.store._get(key)
        if got is None:
            return SessionState("missing")
        state = self.decode(got[0], key)
        state.etag = got[1].etag
        return state

    # -- commits -------------------------------------------------------------------------

    async def _contents(
        self, stored: snap.StoredSnapshot, known: dict[str, bytes], key: str
    ) -> dict[str, bytes]:
        missing = sorted(stored.digests - known.keys())
        store = self.store
        bodies = await agather_limited(
            [_fetch(store, d, key) for d in missing], store.settings.max_concurrency
        )
        return {**known, **dict(zip(missing, bodies, strict=True))}

    async def _commit(
        self,
        key: str,
        stored: snap.StoredSnapshot,
        blobs: dict[str, bytes],
        mode: PutMode,
        full: SessionSnapshotV1 | None = None,
    ) -> PutResult:
        """One PUT of a snapshot: new blobs made safe first, the digest in the metadata."""
        store = self.store
        if full is None:
            contents = await self._contents(stored, blobs, key)
            try:
                full = stored.join(contents, source=key)
            except DocumentError as exc:
                raise CorruptObjectError(exc.summary, bucket=store.bucket, key=key) from exc
        digest = snap.snapshot_digest(full)
        body = stored.render()
        if len(body) > store.settings.max_document_bytes:
            raise DocumentTooLargeError(
                f"session snapshot is {len(body)} bytes, over the "
                f"{store.settings.max_document_bytes}-byte limit",
                bucket=store.bucket,
                key=key,
            )
        relied = await agather_limited(
            [_ensure(store, d, blobs[d]) for d in blobs], store.settings.max_concurrency
        )
        versions: dict[str, KnownBlob] = dict(zip(blobs, relied, strict=True))
        try:
            result = await store._put(key, body, mode, metadata={snap.DIGEST_METADATA: digest})
        except OutcomeUnknownError:
            await store._repair_if_stale(versions, blobs, None)
            raise
        await store._repair_if_stale(versions, blobs, result.server_time)
        return result

    async def save_snapshot(
        self,
        snapshot: SessionSnapshotV1,
        mode: PutMode | None,
        expected_digest: str | None,
    ) -> PutResult:
        store = self.store
        if store.layout.name != "v1":
            raise ConfigurationError(
                "save_snapshot needs layout='v1': the legacy tree has no snapshot envelopes"
            )
        key = store.layout.session_key(snapshot.session.id)
        try:
            snap.ensure_loadable(snapshot, source=key)
        except DocumentError as exc:
            raise ConfigurationError(exc.summary, bucket=store.bucket, key=key) from exc
        stored, blobs = snap.split_snapshot(
            snapshot, inline_threshold=store.settings.inline_threshold, address=store._blob_address
        )
        if expected_digest is not None:
            if mode is not None:
                raise ConfigurationError("save_snapshot takes a mode or an expected_digest")
            client = await store._object_client()
            info = await client.head(key)
            actual = None if info is None else info.metadata.get(snap.DIGEST_METADATA)
            if info is None or actual != expected_digest:
                raise PreconditionFailedError(
                    f"snapshot digest is {actual!r}, not the expected {expected_digest!r}",
                    bucket=store.bucket,
                    key=key,
                    expected_etag=None,
                    actual_etag=None if info is None else info.etag,
                )
            mode = IfMatch(info.etag)
        mode = check_mode("overwrite" if mode is None else mode)
        try:
            return await self._commit(key, stored, blobs, mode, full=snapshot)
        except AlreadyExistsError:
            if mode != "create":
                raise
            current = await self.state(key)
            if current.kind != "placeholder" or current.etag is None:
                raise
            try:
                return await self._commit(key, stored, blobs, IfMatch(current.etag), full=snapshot)
            except PreconditionFailedError:
                raise AlreadyExistsError(
                    "session appeared while replacing its lease placeholder",
                    bucket=store.bucket,
                    key=key,
                ) from None

    async def load_snapshot(self, id: str) -> SessionSnapshotV1 | None:
        store = self.store
        key = store.layout.session_key(id)
        state = await self.state(key)
        if state.kind in ("missing", "placeholder"):
            return None
        assert state.session is not None
        if state.session.id != id:
            raise KeyCollisionError(
                "session file key collision: the stored document belongs to another id",
                requested=id,
                stored=state.session.id,
                bucket=store.bucket,
                key=key,
            )
        if state.stored is not None:
            contents = await self._contents(state.stored, {}, key)
            try:
                return state.stored.join(contents, source=key)
            except DocumentError as exc:
                raise CorruptObjectError(exc.summary, bucket=store.bucket, key=key) from exc
        # A bare session: assembled from its fragments, as upstream's load_snapshot does.
        return snapshot_from_parts(
            state.session,
            await store._load_manifest(id),
            trace_events=await store._load_fragment("trace_events", id),
            run_records=await store._load_fragment("run_records", id),
            verification_reports=await store._load_fragment("verification_reports", id),
            subagent_tasks=await store._load_fragment("subagent_tasks", id),
        )

    # -- members -------------------------------------------------------------------------

    async def save_session(self, session: SessionData, mode: PutMode) -> PutResult:
        """``save`` in the v1 layout (not create-only, not under a lease): replace the
        ``session`` member of a snapshot, or write the bare document, by compare-and-swap so
        a snapshot committed meanwhile is never replaced by a bare session."""
        store = self.store
        key = store.layout.session_key(session.id)
        enforced = (await store._conditions()).conditions_enforced
        last: Exception | None = None
        for attempt in range(_ATTEMPTS):
            if isinstance(mode, IfMatch):
                state = await self.state(key, etag=mode.etag)
                if state.etag != mode.etag:
                    raise PreconditionFailedError(
                        "session changed since it was read",
                        bucket=store.bucket,
                        key=key,
                        expected_etag=mode.etag,
                        actual_etag=state.etag,
                    )
            else:
                state = await self.state(key, cached=attempt == 0)
            if state.stored is not None:
                assert state.etag is not None
                cond: PutMode = IfMatch(state.etag)
                try:
                    return await self._commit(
                        key, state.stored.replace("session", session), {}, cond
                    )
                except (PreconditionFailedError, ObjectNotFoundError) as exc:
                    if isinstance(mode, IfMatch):
                        raise
                    last = exc
            else:
                body = store._encode(session, key)
                if isinstance(mode, IfMatch):
                    return await store._put(key, body, mode)
                if not enforced:
                    return await store._put(key, body, "overwrite")
                cond = IfMatch(state.etag) if state.etag is not None else "create"
                try:
                    return await store._put(key, body, cond)
                except (PreconditionFailedError, AlreadyExistsError, ObjectNotFoundError) as exc:
                    last = exc
            self.forget(key)
            await asleep(_backoff(attempt))
        assert last is not None
        raise last

    async def save_member(
        self, id: str, member: str, value: Any, mode: PutMode
    ) -> PutResult | None:
        """Replace one fragment member of the session's snapshot and commit it; None when
        the session is not a snapshot (the caller writes the fragment document).

        On a snapshot ``mode`` applies to the snapshot object: ``IfMatch`` compares with its
        ETag, ``"create"`` fails (every member of a snapshot exists).
        """
        store = self.store
        if store.layout.name != "v1":
            return None
        key = store.layout.session_key(id)
        last: Exception | None = None
        for attempt in range(_ATTEMPTS):
            state: SessionState | None = None
            if isinstance(mode, IfMatch):
                state = self._cached(key, mode.etag)
            elif attempt == 0:
                state = self._cached(key)
            if state is None or state.kind != "snapshot":
                # Only a fresh read may say "not a snapshot": the fragment write that follows
                # is then ordered before any snapshot committed after this read.
                state = await self.state(key)
            if state.stored is None:
                return None
            assert state.etag is not None
            if mode == "create":
                raise AlreadyExistsError(
                    f"the session's snapshot already holds {member}", bucket=store.bucket, key=key
                )
            if isinstance(mode, IfMatch) and mode.etag != state.etag:
                raise PreconditionFailedError(
                    "session snapshot changed",
                    bucket=store.bucket,
                    key=key,
                    expected_etag=mode.etag,
                    actual_etag=state.etag,
                )
            blobs: dict[str, bytes] = {}
            if member == "artifacts":
                stored, blobs = snap.with_artifacts(
                    state.stored,
                    value,
                    inline_threshold=store.settings.inline_threshold,
                    address=store._blob_address,
                )
            else:
                stored = state.stored.replace(member, value)
            try:
                return await self._commit(key, stored, blobs, IfMatch(state.etag))
            except (PreconditionFailedError, ObjectNotFoundError) as exc:
                if isinstance(mode, IfMatch):
                    raise
                last = exc
            self.forget(key)
            await asleep(_backoff(attempt))
        assert last is not None
        raise last

    async def load_member(self, id: str, member: str) -> tuple[bool, Any]:
        """``(True, value)`` if the session is a snapshot (value never None), else
        ``(False, None)``: the caller reads the fragment document."""
        store = self.store
        if store.layout.name != "v1":
            return False, None
        key = store.layout.session_key(id)
        state = await self.state(key)
        if state.stored is None:
            return False, None
        if member != "artifacts":
            return True, builtins.list(getattr(state.stored.snapshot, member))
        contents = await self._contents(state.stored, {}, key)
        try:
            full = state.stored.join(contents, source=key)
        except DocumentError as exc:
            raise CorruptObjectError(exc.summary, bucket=store.bucket, key=key) from exc
        return True, snap.artifact_store(full)

    async def session_body(
        self, session: SessionData, key: str, etag: str | None
    ) -> tuple[bytes, dict[str, str] | None]:
        """The bytes that replace the version at ``etag`` with ``session`` (for leases): the
        patched snapshot if that version is one, else the bare document."""
        store = self.store
        if self._tracked(key) and etag is not None:
            state = self._cached(key, etag)
            if state is None:
                state = await self.state(key)
            if state.stored is not None and state.etag == etag:
                stored = state.stored.replace("session", session)
                contents = await self._contents(stored, {}, key)
                digest = snap.snapshot_digest(stored.join(contents, source=key))
                return stored.render(), {snap.DIGEST_METADATA: digest}
        return store._encode(session, key), None

    async def check_digest(self, body: bytes, metadata: dict[str, str], key: str) -> str | None:
        """fsck: a problem with a stored snapshot's digest metadata, or None."""
        state = self.decode(body, key)
        if state.stored is None:
            return None
        recorded = metadata.get(snap.DIGEST_METADATA)
        if recorded is None:
            return "snapshot without a recorded digest (x-amz-meta-s3store-snapshot-digest)"
        contents = await self._contents(state.stored, {}, key)
        actual = snap.snapshot_digest(state.stored.join(contents, source=key))
        if actual != recorded:
            return f"snapshot digest is {actual}, metadata records {recorded}"
        return None


def _fetch(store: AsyncS3SessionStore, digest: str, key: str) -> Any:
    return lambda: store._fetch_blob(digest, key)


def _ensure(store: AsyncS3SessionStore, digest: str, data: bytes) -> Any:
    return lambda: store._ensure_blob(digest, data)


def _backoff(attempt: int) -> float:
    import random

    return random.uniform(0, min(1.0, 0.02 * 2 ** (attempt + 1)))


def snapshot_from_parts(
    session: SessionData, artifacts: ArtifactStore | None, **members: Any
) -> SessionSnapshotV1:
    """A ``SessionSnapshotV1`` from a session and its fragments (missing ones empty)."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "session": session,
        "artifacts": artifacts.artifacts if artifacts else [],
        "retained_artifact_uris": sorted(artifacts.retained_uris) if artifacts else [],
    }
    data.update({k: v or [] for k, v in members.items()})
    result: SessionSnapshotV1 = models.SessionSnapshotV1.model_validate(data)
    return result
