"""Change feeds: follow one session (:func:`watch_session`) or the whole store
(:func:`watch_prefix`) by polling, with adaptive intervals.

S3 has no push notifications a library can rely on (bucket events need infrastructure), so
both poll, and each poll is made as cheap as S3 allows:

- Whole-document mode: an idle poll is one conditional GET (``If-None-Match: <ETag>``),
  answered ``304 Not Modified`` with no body. A change is the same single request answered
  200 with the new document, so it costs nothing more.
- Journal mode: a change is either a new delta (only a LIST of the incarnation's deltas sees
  it) or a new document (a compaction, a new incarnation, a delete: only the document shows
  it). An idle poll is one LIST plus one conditional GET of the document (304). A new delta
  costs one GET per new delta on top (applied to the known state, nothing refetched); a
  compaction costs nothing more (the 200 carries the document, the poll's LIST its pending
  deltas) and yields nothing (the state is the same).
- :func:`watch_prefix`: one ListObjectsV2 per page of the session listing per poll (S3 has
  no conditional LIST).

Intervals: ``min_interval`` after a change, doubled on every idle poll up to
``max_interval``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from s3store._async.journal import AsyncJournal, _apply, _incarnation_of, _short, _State
from s3store._async.lease import is_placeholder, may_be_placeholder
from s3store._async.store import _MIN_SESSION_BYTES, _chain
from s3store._backends import agather_limited, asleep
from s3store.errors import ConfigurationError, CorruptObjectError, KeyCollisionError
from s3store.models import SessionData
from s3store.types import GetResult, ObjectInfo, SessionChange, Versioned

if TYPE_CHECKING:
    from s3store._async.store import AsyncS3SessionStore


def check_intervals(min_interval: float, max_interval: float) -> None:
    """ConfigurationError unless ``0 < min_interval <= max_interval``."""
    if not 0 < min_interval <= max_interval:
        raise ConfigurationError("watch needs 0 < min_interval <= max_interval")


# -- one session ------------------------------------------------------------------------------


async def watch_session(
    store: AsyncS3SessionStore, id: str, *, min_interval: float, max_interval: float
) -> AsyncIterator[Versioned[SessionData] | None]:
    """New versions of a session (see :meth:`AsyncS3SessionStore.watch`)."""
    check_intervals(min_interval, max_interval)
    poll = _JournalPoll(store, id) if store._journal is not None else _DocumentPoll(store, id)
    interval = min_interval
    first = True
    last_tag: str | None = None
    while True:
        changed, current = await poll.next()
        tag = current.etag if current is not None else None
        news = first or (changed and tag != last_tag)
        if news:
            first = False
            last_tag = tag
            interval = min_interval
            yield current
        # Even after a change, wait: a poll at once would cost a request and likely be idle.
        await asleep(interval)
        if not news:
            interval = min(max_interval, interval * 2)


class _DocumentPoll:
    """Whole-document mode: one (conditional) GET per poll."""

    def __init__(self, store: AsyncS3SessionStore, id: str) -> None:
        self.store = store
        self.id = id
        self.key = store.layout.session_key(id)
        self.etag: str | None = None  # of the stored object (a placeholder too); None: none

    async def next(self) -> tuple[bool, Versioned[SessionData] | None]:
        """(whether the object changed, the current version)."""
        store = self.store
        client = await store._object_client()
        limit = store.settings.max_document_bytes + store._seal_overhead()
        # No ETag to name while nothing is stored: then a plain GET (a 404 when idle).
        result = await client.get(self.key, max_bytes=limit, if_none_match=self.etag)
        if result is not None and result.not_modified:
            return False, None
        if result is None:
            changed, self.etag = self.etag is not None, None
            return changed, None
        self.etag = result.info.etag
        return True, self._version(result)

    def _version(self, result: GetResult) -> Versioned[SessionData] | None:
        # What load_versioned does with the same answer.
        store, key = self.store, self.key
        store._versions.remember(key, result.info.etag, _chain(result.info))
        body = store._open_document(key, result.body)
        store._snapshots.remember(key, result.info.etag, body)
        session = store._decode_session(body, key)
        if session is None:
            return None  # a lease placeholder: no session yet
        if session.id != self.id:
            raise KeyCollisionError(
                "session file key collision: the stored document belongs to another id",
                requested=self.id,
                stored=session.id,
                bucket=store.bucket,
                key=key,
            )
        return Versioned(value=session, etag=result.info.etag)


class _JournalPoll:
    """Journal mode: one LIST of the incarnation's deltas, then one conditional GET of the
    document, in that order (as :meth:`AsyncJournal.state` reads: a compaction between the
    two can only make the document newer than the listing)."""

    def __init__(self, store: AsyncS3SessionStore, id: str) -> None:
        assert store._journal is not None
        self.store = store
        self.journal: AsyncJournal = store._journal
        self.id = id
        self.key = store.layout.session_key(id)
        self.state: _State | None = None  # None: no document known
        self.body = b""  # the known document's bytes (to refold after a new incarnation)

    async def next(self) -> tuple[bool, Versioned[SessionData] | None]:
        """(whether the document or its deltas changed, the current version)."""
        store, journal, st = self.store, self.journal, self.state
        client = await store._object_client()
        listed: builtins.list[ObjectInfo] | None = None
        if st is not None:
            # Only this incarnation's deltas: leftovers of older ones stay out of the pages.
            listed = await journal._list(self.id, st.incarnation)
        got = await client.get(
            self.key,
            max_bytes=store.settings.max_document_bytes,
            if_none_match=None if st is None else st.doc_etag,
        )
        if got is None:
            self.state = None
            return st is not None, None
        if got.not_modified:
            assert st is not None
            assert listed is not None
            fresh = await self._extend(st, listed)
            if fresh is None:
                return await self._reload()
            if fresh.seq == st.seq:
                return False, None
            self.state = fresh
            return True, self._version(fresh)
        # A new document: a compaction (same incarnation: the poll's listing holds its
        # pending deltas) or a new incarnation / first read (list that one now).
        inc, _ = _incarnation_of(got.info)
        same = st is not None and inc == st.incarnation
        folded = await journal._fold(self.id, got.body, got.info, listed=listed if same else None)
        if folded is None:  # a delta was compacted away under us: read it all again
            return await self._reload()
        self.state, self.body = folded, got.body
        return True, self._version(folded)

    async def _extend(self, st: _State, listed: builtins.list[ObjectInfo]) -> _State | None:
        """``st`` with the listed deltas after its seq applied (only those are fetched);
        None if one of them vanished (compacted) before it was read."""
        journal, store = self.journal, self.store
        by_seq = {journal._seq_of(i.key): i for i in listed}
        run: builtins.list[ObjectInfo] = []
        while st.seq + len(run) + 1 in by_seq:  # contiguous only: a gap is still in flight
            run.append(by_seq[st.seq + len(run) + 1])
        if not run:
            return st
        client = await store._object_client()

        async def fetch(info: ObjectInfo) -> bytes | None:
            got = await client.get(info.key, max_bytes=store.settings.max_document_bytes)
            return None if got is None else got.body

        bodies = await agather_limited(
            [_bind(fetch, i) for i in run], store.settings.max_concurrency
        )
        tree, seq, pending, etags = st.tree, st.seq, st.pending_bytes, dict(st.etags)
        for info, raw in zip(run, bodies, strict=True):
            if raw is None:
                return None
            try:
                delta = json.loads(raw)
            except ValueError as exc:
                raise CorruptObjectError(
                    "journal delta is not JSON", bucket=store.bucket, key=info.key
                ) from exc
            tree = _apply(tree, delta, info.key)
            seq += 1
            pending += len(raw)
            etags[seq] = _short(info.etag)
        keys = [i.key for i in listed]
        return _State(st.doc_etag, st.incarnation, st.folded, seq, tree, pending, keys, etags)

    async def _reload(self) -> tuple[bool, Versioned[SessionData] | None]:
        st = await self.journal.state(self.id)
        changed = self.state is None or st.tag != self.state.tag or st.doc_etag is None
        self.state = st if st.doc_etag is not None else None
        return changed, self._version(st)

    def _version(self, st: _State) -> Versioned[SessionData] | None:
        session = self.journal._session(st, self.id)
        return None if session is None else Versioned(value=session, etag=st.tag)


def _bind(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


# -- the whole store --------------------------------------------------------------------------


async def watch_prefix(
    store: AsyncS3SessionStore,
    *,
    min_interval: float,
    max_interval: float,
    existing: bool,
    removals: bool,
) -> AsyncIterator[SessionChange]:
    """Sessions appearing (and disappearing) in the store (see
    :meth:`AsyncS3SessionStore.watch_prefix`)."""
    check_intervals(min_interval, max_interval)
    # Listed object key -> (ETag, whether it is a session), so a sealed object of a size a
    # placeholder can have is read once per version, not once per poll.
    verdicts: dict[str, tuple[str, bool]] = {}
    known: set[str] | None = None
    interval = min_interval
    while True:
        ids = await _listed_ids(store, verdicts)
        changes: builtins.list[SessionChange] = []
        if known is None:
            if existing:
                changes = [SessionChange(id, True) for id in sorted(ids)]
        else:
            changes = [SessionChange(id, True) for id in sorted(ids - known)]
            if removals:
                changes += [SessionChange(id, False) for id in sorted(known - ids)]
        known = ids
        for change in changes:
            yield change
        if changes:
            interval = min_interval
        await asleep(interval)
        if not changes:
            interval = min(max_interval, interval * 2)


async def _listed_ids(
    store: AsyncS3SessionStore, verdicts: dict[str, tuple[str, bool]]
) -> set[str]:
    """The ids :meth:`AsyncS3SessionStore.list` would return, from one listing (pages)."""
    layout = store.layout
    overhead = store._seal_overhead()
    ids: set[str] = set()
    seen: set[str] = set()
    async for info in store._iter_objects(layout.session_list_prefix, delimiter="/"):
        listed = layout.session_id_from_key(info.key)
        if listed is None:
            continue
        if may_be_placeholder(info.size, overhead):
            # A placeholder ("no session", see the lease module) is told by its listed size
            # without reading it; only sealed objects of an ambiguous size are read, once.
            if info.size < _MIN_SESSION_BYTES:
                continue
            seen.add(info.key)
            verdict = verdicts.get(info.key)
            if verdict is None or verdict[0] != info.etag:
                got = await store._get(info.key)
                verdict = (info.etag, got is not None and not is_placeholder(got[0]))
                verdicts[info.key] = verdict
            if not verdict[1]:
                continue
        ids.add(listed)
    for key in set(verdicts) - seen:
        del verdicts[key]
    return ids
