"""Journal mode: a save writes only what changed (a delta), compaction folds deltas back.

Objects (``<base>`` is ``<prefix>/`` in the legacy layout, ``<prefix>/v1/`` in v1):

- The canonical session document at its usual key, a valid Rust document. A journal store
  writes it with ``x-amz-meta-s3store-journal: <incarnation> <folded seq>``: the deltas up
  to ``folded seq`` are in it. A document without that metadata (written by a store that
  knows nothing of journals, or before journal mode) is its own incarnation (derived from
  its ETag) with nothing folded.
- Deltas: ``<base>journal/<safe id>/<incarnation>.<seq, 12 digits>.json``, compact JSON
  ``{"s3store_journal": 1, "id", "seq", "keep", "append", "set", "unset"}``: keep the first
  ``keep`` messages, append ``append``, then set / remove top-level members. Each is created
  with If-None-Match, so a sequence number is taken once: two writers appending to the same
  version conflict exactly as If-Match does.

State of a session = the document + its incarnation's deltas with seq > folded, in order
(one GET, one LIST, the deltas' GETs concurrently). The version tag a journal store hands
out (``Versioned.etag``, ``PutResult.etag``) is ``j:<incarnation>.<seq>``.

Why nothing acknowledged is lost:

- Deltas are immutable; compaction rewrites the document (If-Match) with the same state
  and a higher folded seq, then deletes folded deltas. A crash before the document write
  changes nothing; after it, leftovers are ignored (seq ≤ folded) and the next compaction
  deletes them.
- A writer whose knowledge is stale may re-create a seq that compaction already folded and
  deleted. So every append is confirmed by one HEAD of the document: if it belongs to
  another incarnation (rewritten by a whole-document writer, deleted), the delta is void:
  it is deleted and the save fails with a conflict (``update`` retries). If it already
  folds that seq, the compaction's record (:data:`FOLDED_META`) tells whether it folded this
  very delta (success) or another version of the seq (void, as above); without a record
  that reaches back that far the save raises OutcomeUnknownError. A compaction that folds
  the seq after the HEAD must list it, so it folds this delta.
- A delta PUT whose outcome cannot be known raises OutcomeUnknownError (the store's write
  token check) and is never re-sent; the store forgets what it knew of the session.

Limits: a session is journaled or whole-document; all its writers must use the same mode
(a whole-document writer's save starts a new incarnation: deltas of the old one are
ignored). Leases need whole-document mode: a journal store refuses ``lease()``, and a
journal save refuses a session that carries a lease fence, so a fenced-out holder can never
append through the journal. Journal mode is for bare session documents: not with
encryption, not with v1 snapshots.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3store import codec
from s3store._backends import agather_limited, asleep
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    CorruptObjectError,
    DocumentError,
    KeyCollisionError,
    OutcomeUnknownError,
    PreconditionFailedError,
    StoreError,
    TransientError,
)
from s3store.models import SessionData
from s3store.types import IfMatch, ObjectInfo, PutMode, PutResult, Versioned, check_mode

if TYPE_CHECKING:
    from s3store._async.store import AsyncS3SessionStore

log = logging.getLogger("s3store")

JOURNAL_META = "s3store-journal"
FOLDED_META = "s3store-journal-folded"
"""``<first seq> <short ETag>,<short ETag>,…``: which delta versions the last compaction
folded (its last :data:`_FOLDED_RECORD` at most), so a writer can tell its own delta from
one it re-created after a compaction."""
_FOLDED_RECORD = 64
TAG_PREFIX = "j:"
_FENCE_KEY = "s3store_fence"
_PLACEHOLDER_KEY = "s3store_placeholder"
_SEQ_DIGITS = 12
_APPEND_ATTEMPTS = 10


@dataclass
class _State:
    """What a journal store knows of one session."""

    doc_etag: str | None  # None: no document
    incarnation: str
    folded: int
    seq: int
    tree: dict[str, Any] | None  # None: no session (missing, or a lease placeholder)
    pending_bytes: int = 0
    listed: builtins.list[str] = field(default_factory=builtins.list)  # delta keys seen
    etags: dict[int, str] = field(default_factory=dict)  # seq -> short ETag, chain only

    @property
    def tag(self) -> str:
        return f"{TAG_PREFIX}{self.incarnation}.{self.seq}"


_STATE_ATTEMPTS = 8


def _incarnation_of(info: ObjectInfo) -> tuple[str, int]:
    value = info.metadata.get(JOURNAL_META, "")
    inc, _, folded = value.partition(" ")
    if inc and folded.isdigit():
        return inc, int(folded)
    # Not written by a journal store: an incarnation of its own, nothing folded.
    return "e" + "".join(c for c in info.etag if c.isalnum())[:24], 0


def _short(etag: str) -> str:
    return "".join(c for c in etag if c.isalnum())[:10]


def _folded_record(info: ObjectInfo) -> tuple[int, builtins.list[str]] | None:
    first, _, hashes = info.metadata.get(FOLDED_META, "").partition(" ")
    return (int(first), hashes.split(",")) if first.isdigit() and hashes else None


def _parse_tag(tag: str) -> tuple[str, int] | None:
    if not tag.startswith(TAG_PREFIX):
        return None
    inc, _, seq = tag[len(TAG_PREFIX) :].rpartition(".")
    return (inc, int(seq)) if inc and seq.isdigit() else None


def _tree(session: SessionData) -> dict[str, Any]:
    value = json.loads(codec.dumps(session))
    assert isinstance(value, dict)
    return value


def _delta(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """keep / append / set / unset turning ``old`` into ``new``; ``replace`` when the
    member order would not come out the same (members set anew go last)."""
    if old is None:
        return {"replace": new}
    unset = [k for k in old if k not in new]
    order = [k for k in old if k in new] + [k for k in new if k not in old]
    if order != list(new):
        return {"replace": new}
    old_msgs, new_msgs = old.get("messages"), new.get("messages")
    members = {k: v for k, v in new.items() if k != "messages" and old.get(k, _MISSING) != v}
    delta: dict[str, Any] = {"keep": 0, "append": []}
    if isinstance(old_msgs, list) and isinstance(new_msgs, list):
        limit = min(len(old_msgs), len(new_msgs))
        if old_msgs[:limit] == new_msgs[:limit]:
            keep = limit  # the common case: messages were appended
        else:
            keep = next(i for i in range(limit) if old_msgs[i] != new_msgs[i])
        delta = {"keep": keep, "append": new_msgs[keep:]}
    elif old_msgs != new_msgs and "messages" in new:
        members["messages"] = new_msgs
    delta["set"] = members
    if unset:
        delta["unset"] = unset
    return delta


_MISSING = object()


def _apply(tree: dict[str, Any] | None, delta: dict[str, Any], key: str) -> dict[str, Any]:
    if "replace" in delta:
        value = delta["replace"]
        if not isinstance(value, dict):
            raise CorruptObjectError("journal delta: replace is not an object", key=key)
        return dict(value)
    if tree is None:
        raise CorruptObjectError("journal delta applies to a missing session", key=key)
    out = dict(tree)
    keep, append = delta.get("keep", 0), delta.get("append", [])
    if not isinstance(keep, int) or not isinstance(append, list):
        raise CorruptObjectError("journal delta: bad keep/append", key=key)
    msgs = out.get("messages")
    if isinstance(msgs, list):
        out["messages"] = [*msgs[:keep], *append]
    out.update(delta.get("set") or {})
    for name in delta.get("unset") or []:
        out.pop(name, None)
    return out


class AsyncJournal:
    """Journal mode of one store (see the module docstring)."""

    def __init__(self, store: AsyncS3SessionStore) -> None:
        self.store = store
        self._known: dict[str, _State] = {}

    # -- keys ------------------------------------------------------------------------------

    def journal_dir(self, id: str) -> str:
        layout = self.store.layout
        base = layout.root if layout.name == "legacy" else f"{layout.root}v1/"
        return f"{base}journal/{layout.id_segment(id)}/"

    def delta_key(self, id: str, incarnation: str, seq: int) -> str:
        return f"{self.journal_dir(id)}{incarnation}.{seq:0{_SEQ_DIGITS}d}.json"

    def check_usable(self) -> None:
        store = self.store
        if store.encryption is not None:
            raise ConfigurationError("journal mode does not support encryption at rest")

    # -- reading ---------------------------------------------------------------------------

    async def _list(self, id: str, incarnation: str) -> builtins.list[ObjectInfo]:
        prefix = f"{self.journal_dir(id)}{incarnation}."
        return [info async for info in self.store._iter_objects(prefix)]

    def _seq_of(self, key: str) -> int:
        stem = key.rsplit(".", 2)[-2] if key.count(".") >= 2 else ""
        return int(stem) if stem.isdigit() else -1

    async def state(self, id: str) -> _State:
        """The session's current state: one LIST of its deltas, then the document, then the
        deltas after its folded seq (concurrently).

        The LIST comes first: a compaction that lands between the two can then only make
        the document newer than the listing (its folded deltas are skipped), never leave an
        older document beside a listing from which the deltas it lacks were already deleted.
        A delta deleted between the LIST and its GET means the same race: start again.
        """
        store = self.store
        key = store.layout.session_key(id)
        for _ in range(_STATE_ATTEMPTS):
            listed = [info async for info in store._iter_objects(self.journal_dir(id))]
            got = await store._get(key)
            if got is None:
                st = _State(None, "", 0, 0, None)
                self._known[id] = st
                return st
            folded = await self._fold(id, *got, listed=listed)
            if folded is not None:
                self._known[id] = folded
                return folded
        raise TransientError(
            f"the session's journal kept being compacted under {_STATE_ATTEMPTS} reads",
            bucket=store.bucket,
            key=key,
        )

    async def _fold(
        self,
        id: str,
        body: bytes,
        info: ObjectInfo,
        *,
        listed: builtins.list[ObjectInfo] | None = None,
    ) -> _State | None:
        """The state of a stored document: its incarnation's deltas after its folded seq
        (from ``listed``, or one LIST now), fetched concurrently. None if one of them was
        deleted meanwhile (a compaction folded it: read again)."""
        store = self.store
        key = store.layout.session_key(id)
        inc, folded = _incarnation_of(info)
        tree = self._decode_tree(body, key)
        prefix = f"{self.journal_dir(id)}{inc}."
        if listed is None:
            listed = await self._list(id, inc)
        listed = [i for i in listed if i.key.startswith(prefix)]
        fresh = sorted((self._seq_of(i.key), i) for i in listed if self._seq_of(i.key) > folded)
        # Only a contiguous run counts (a gap is a delta still in flight elsewhere).
        run: builtins.list[ObjectInfo] = []
        for n, (seq, info_) in enumerate(fresh, start=folded + 1):
            if seq != n:
                break
            run.append(info_)
        client = await store._object_client()

        async def fetch(delta_info: ObjectInfo) -> Any:
            result = await client.get(delta_info.key, max_bytes=store.settings.max_document_bytes)
            return None if result is None else result.body

        bodies = await agather_limited(
            [_bind(fetch, i) for i in run], store.settings.max_concurrency
        )
        seq, pending = folded, 0
        etags: dict[int, str] = {}
        if any(raw is None for raw in bodies):
            return None
        for delta_info, raw in zip(run, bodies, strict=True):
            try:
                delta = json.loads(raw)
            except ValueError as exc:
                raise CorruptObjectError(
                    "journal delta is not JSON", bucket=store.bucket, key=delta_info.key
                ) from exc
            tree = _apply(tree, delta, delta_info.key)
            seq += 1
            pending += len(raw)
            etags[seq] = _short(delta_info.etag)
        keys = [i.key for i in listed]
        return _State(info.etag, inc, folded, seq, tree, pending, keys, etags)

    async def export_body(self, id: str, body: bytes, info: ObjectInfo) -> bytes | None:
        """For export: the bytes whole-document mode would hold for a stored document with
        pending deltas (None when it has none). The stored id is not checked here."""
        st = await self._fold(id, body, info)
        if st is None:  # compacted while we read it: the current state has it all
            st = await self.state(id)
        if st.seq == st.folded or st.tree is None:
            return None
        key = self.store.layout.session_key(id)
        try:
            session = codec.from_value(SessionData, st.tree, source=key)
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", bucket=self.store.bucket, key=key
            ) from exc
        return codec.dumps(session)

    def _decode_tree(self, body: bytes, key: str) -> dict[str, Any] | None:
        try:
            tree = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptObjectError(
                "session document is not JSON", bucket=self.store.bucket, key=key
            ) from exc
        if not isinstance(tree, dict) or tree.get(_PLACEHOLDER_KEY) is True:
            return None
        if "session" in tree or "schema_version" in tree:
            raise ConfigurationError("journal mode does not support v1 snapshots", key=key)
        return tree

    def _session(self, st: _State, id: str) -> SessionData | None:
        if st.tree is None:
            return None
        key = self.store.layout.session_key(id)
        try:
            session: SessionData = codec.from_value(SessionData, st.tree, source=key)
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", bucket=self.store.bucket, key=key
            ) from exc
        if session.id != id:
            raise KeyCollisionError(
                "session file key collision: the stored document belongs to another id",
                requested=id,
                stored=session.id,
                bucket=self.store.bucket,
                key=key,
            )
        return session

    async def load_versioned(self, id: str) -> Versioned[SessionData] | None:
        st = await self.state(id)
        session = self._session(st, id)
        return None if session is None else Versioned(value=session, etag=st.tag)

    async def folded_body(self, id: str) -> bytes | None:
        """The bytes whole-document mode would have stored for this state (export)."""
        st = await self.state(id)
        session = self._session(st, id)
        return None if session is None else codec.dumps(session)

    async def document_etag(self, id: str, tag: str) -> str:
        """For ``delete(if_match=<journal version>)``: the document's ETag if the session is
        still at that version, else PreconditionFailedError. The delete is conditional on
        the document: a delta confirmed between this check and the delete goes with it."""
        if not tag.startswith(TAG_PREFIX):
            return tag
        st = await self.state(id)
        if st.doc_etag is None or st.tag != tag:
            raise PreconditionFailedError(
                "session changed since the version given (journal)",
                bucket=self.store.bucket,
                key=self.store.layout.session_key(id),
                expected_etag=tag,
                actual_etag=st.tag if st.doc_etag else None,
            )
        return st.doc_etag

    # -- writing ---------------------------------------------------------------------------

    async def save(self, session: SessionData, mode: PutMode | None) -> PutResult:
        self.check_usable()
        id = session.id
        mode = check_mode("overwrite" if mode is None else mode)
        new = _tree(session)
        if _FENCE_KEY in new:
            raise ConfigurationError(
                "journal mode does not write sessions held under a lease (a fenced session)"
            )
        wanted = _parse_tag(mode.etag) if isinstance(mode, IfMatch) else None
        for _attempt in range(_APPEND_ATTEMPTS):
            st = self._known.get(id)
            stale = wanted is not None and (st is None or (st.incarnation, st.seq) != wanted)
            if st is None or stale or mode == "create":
                st = await self.state(id)
            if st.tree is not None and _FENCE_KEY in st.tree:
                raise ConfigurationError(
                    "the session is held under a lease: journal mode does not append to "
                    "fenced sessions (write it under the lease, in whole-document mode)"
                )
            if isinstance(mode, IfMatch) and (wanted is None or (st.incarnation, st.seq) != wanted):
                raise PreconditionFailedError(
                    "session changed since the version given (journal)",
                    bucket=self.store.bucket,
                    key=self.store.layout.session_key(id),
                    expected_etag=mode.etag,
                    actual_etag=st.tag if st.doc_etag else None,
                )
            if mode == "create" and st.tree is not None:
                raise AlreadyExistsError(
                    "session exists",
                    bucket=self.store.bucket,
                    key=self.store.layout.session_key(id),
                )
            try:
                if st.doc_etag is None:
                    return await self._create(id, session, new)
                if st.tree is None:
                    return await self._create(id, session, new, replace=st.doc_etag)
                return await self._append(id, st, new)
            except (AlreadyExistsError, PreconditionFailedError) as exc:
                self._known.pop(id, None)
                if isinstance(mode, IfMatch) and isinstance(exc, AlreadyExistsError):
                    raise PreconditionFailedError(
                        "session changed since the version given (journal: seq taken)",
                        bucket=self.store.bucket,
                        key=exc.key,
                        expected_etag=mode.etag,
                    ) from exc
                if mode != "overwrite":
                    raise
        raise PreconditionFailedError(
            "the session keeps changing (journal)",
            bucket=self.store.bucket,
            key=self.store.layout.session_key(id),
            expected_etag=None,
        )

    async def _create(
        self, id: str, session: SessionData, new: dict[str, Any], replace: str | None = None
    ) -> PutResult:
        store = self.store
        key = store.layout.session_key(id)
        inc = uuid.uuid4().hex[:16]
        body = store._encode(session, key)
        mode: PutMode = "create" if replace is None else IfMatch(replace)
        try:
            result = await store._put(key, body, mode, metadata={JOURNAL_META: f"{inc} 0"})
        except TransientError:
            self._known.pop(id, None)
            raise
        self._known[id] = _State(result.etag, inc, 0, 0, new)
        return PutResult(etag=f"{TAG_PREFIX}{inc}.0", server_time=result.server_time)

    async def _append(self, id: str, st: _State, new: dict[str, Any]) -> PutResult:
        store = self.store
        seq = st.seq + 1
        key = self.delta_key(id, st.incarnation, seq)
        # A nonce: every delta's bytes (so its ETag) are unique, see FOLDED_META.
        nonce = uuid.uuid4().hex[:12]
        delta = {"s3store_journal": 1, "id": id, "seq": seq, "w": nonce, **_delta(st.tree, new)}
        body = json.dumps(delta, ensure_ascii=False, separators=(",", ":")).encode()
        if len(body) > store.settings.max_document_bytes:
            raise ConfigurationError("journal delta is over max_document_bytes", key=key)
        try:
            result = await store._put(key, body, "create", raw=True)
        except TransientError:
            self._known.pop(id, None)  # OutcomeUnknownError: never re-appended
            raise
        # Confirm: the document must not fold this seq already (a stale writer re-created a
        # folded, deleted seq) and must still be this incarnation.
        client = await store._object_client()
        try:
            doc = await client.head(store.layout.session_key(id))
        except TransientError as exc:
            self._known.pop(id, None)
            raise OutcomeUnknownError(
                f"journal append landed but could not be confirmed ({exc.summary})",
                bucket=store.bucket,
                key=key,
            ) from exc
        inc, folded = _incarnation_of(doc) if doc is not None else ("", 0)
        if doc is None or inc != st.incarnation:
            with contextlib.suppress(StoreError):
                await client.delete(key)
            self._known.pop(id, None)
            raise PreconditionFailedError(
                "journal append is void: the session was rewritten or deleted meanwhile",
                bucket=store.bucket,
                key=key,
                expected_etag=None,
            )
        if folded >= seq:
            # Compacted past this seq already: either a compaction folded this very delta
            # (it landed) or this writer re-created a folded, deleted seq (void). The
            # compaction's record of the delta versions it folded tells which.
            self._known.pop(id, None)
            record = _folded_record(doc)
            if record is not None and 0 <= seq - record[0] < len(record[1]):
                if record[1][seq - record[0]] == _short(result.etag):
                    return PutResult(
                        etag=f"{TAG_PREFIX}{st.incarnation}.{seq}", server_time=result.server_time
                    )
                with contextlib.suppress(StoreError):
                    await client.delete(key)
                raise PreconditionFailedError(
                    "journal append is void: it re-created a sequence number already folded",
                    bucket=store.bucket,
                    key=key,
                    expected_etag=None,
                )
            raise OutcomeUnknownError(
                "journal append: outcome unknown, a compaction folded this sequence number "
                "meanwhile; load the session to see whether the change is there",
                bucket=store.bucket,
                key=key,
            )
        st = _State(
            doc.etag,
            st.incarnation,
            folded,
            seq,
            new,
            st.pending_bytes + len(body),
            [*st.listed, key],
            {**st.etags, seq: _short(result.etag)},
        )
        self._known[id] = st
        out = PutResult(etag=st.tag, server_time=result.server_time)
        settings = store.settings
        if (
            st.seq - st.folded >= settings.journal_compact_every
            or st.pending_bytes >= settings.journal_compact_bytes
        ):
            try:
                await self.compact(id, known=st)
            except StoreError as exc:  # the save landed; compaction is best effort
                log.debug("bucket=<%s> id=<%s> | compaction failed: %s", store.bucket, id, exc)
        return out

    # -- compaction ------------------------------------------------------------------------

    async def compact(self, id: str, *, known: _State | None = None) -> int:
        """Fold the session's deltas into its document (If-Match), then delete them.

        Returns how many deltas were folded. Costs the load (GET + LIST + delta GETs), one
        PUT and one DeleteObjects. Losing the If-Match to another compaction is fine.
        ``known``: the state this store just appended to (its chain is complete up to its
        seq, and its document ETag is the confirming HEAD's): no load, it folds up to there.
        """
        store = self.store
        st = known if known is not None else await self.state(id)
        if st.doc_etag is None:
            return 0
        key = store.layout.session_key(id)
        folded_now = st.seq - st.folded
        if folded_now > 0:
            session = self._session(st, id)
            if session is None:
                return 0
            body = store._encode(session, key)
            try:
                first = max(st.folded + 1, st.seq - _FOLDED_RECORD + 1)
                hashes = [st.etags.get(n, "") for n in range(first, st.seq + 1)]
                metadata = {JOURNAL_META: f"{st.incarnation} {st.seq}"}
                if all(hashes):
                    metadata[FOLDED_META] = f"{first} {','.join(hashes)}"
                result = await store._put(key, body, IfMatch(st.doc_etag), metadata=metadata)
            except PreconditionFailedError:
                self._known.pop(id, None)
                return 0  # another compaction (or writer) got there first
            except TransientError:
                self._known.pop(id, None)
                raise
            st.doc_etag = None if result.superseded else result.etag
            st.folded = st.seq
            st.pending_bytes = 0
            st.etags = {}
            if st.doc_etag is None:
                self._known.pop(id, None)
        stale = [k for k in st.listed if self._seq_of(k) <= st.seq]
        await self._delete_keys(stale)
        st.listed = [k for k in st.listed if k not in set(stale)]
        return folded_now

    async def _delete_keys(self, keys: builtins.list[str]) -> None:
        client = await self.store._object_client()
        for start in range(0, len(keys), 1000):
            await client.delete_many(keys[start : start + 1000])

    async def delete_all(self, id: str) -> builtins.list[str]:
        """Every delta key of the session, every incarnation (for ``delete``)."""
        self._known.pop(id, None)
        return [info.key async for info in self.store._iter_objects(self.journal_dir(id))]

    # -- watch -----------------------------------------------------------------------------

    async def watch(
        self, id: str, *, min_interval: float, max_interval: float, journal: bool
    ) -> AsyncIterator[Versioned[SessionData] | None]:
        """New versions of a session (see :meth:`AsyncS3SessionStore.watch`)."""
        store = self.store
        key = store.layout.session_key(id)
        client = await store._object_client()
        interval = min_interval
        first = True
        last_tag: str | None = None
        last_doc: str | None = None
        while True:
            if first:
                changed = True
            elif journal:
                # One LIST (a new delta) + one HEAD (a compaction or a new incarnation).
                st = self._known.get(id)
                info = await client.head(key)
                etag = info.etag if info is not None else None
                changed = st is None or etag != st.doc_etag
                if not changed and st is not None and etag is not None:
                    listed = await self._list(id, st.incarnation)
                    changed = any(self._seq_of(i.key) > st.seq for i in listed)
            else:
                info = await client.head(key)  # one HEAD: the document's ETag
                etag = info.etag if info is not None else None
                changed = etag != last_doc
                last_doc = etag
            if changed:
                current = await (self.load_versioned(id) if journal else store.load_versioned(id))
                tag = current.etag if current is not None else None
                if not journal:
                    last_doc = tag  # a whole document's version is its ETag
                if first or tag != last_tag:
                    first = False
                    last_tag = tag
                    interval = min_interval
                    yield current
                    continue
            await asleep(interval)
            interval = min(max_interval, interval * 2)


def _bind(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)
