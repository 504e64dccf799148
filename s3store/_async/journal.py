"""Journal mode: a save writes only what changed (a delta), compaction folds deltas back.

One protocol (append, confirm, compact, fold) serves every journaled *document kind*
(:class:`DocKind`): the session document (a JSON object: top-level members plus the
``messages`` array) and the growing array sidecars, trace events (``traces/<id>.json``) and
run records (``runs/<id>.json``), whose tree is the array itself. What follows says
"session" for the session kind; an array sidecar works the same way with its own document,
folder and state, differences noted under "Array sidecars".

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

Leases (see :mod:`s3store._async.lease`): the fence is a journal append. Acquiring
appends a delta setting ``s3store_fence`` (a missing session gets a create-only placeholder
document instead; placeholders are trees here, so later fences are deltas on them too).
Every write under the lease appends only onto a state that carries this acquisition's
fence, and carries the fence through. Seqs are taken once, so the fence delta is ordered
against every append: a fenced-out holder's delta either took its seq before the fence (it
counts: the fence is appended after it) or finds its seq taken, re-reads and sees the newer
fence (LeaseLostError); one that re-creates a seq a compaction folded and deleted is voided
by the confirming HEAD, as above. Document rewrites never serve a lease: an If-Match on the
document does not see deltas appended meanwhile, so a plain save over a placeholder is a
delta too, and only compaction (same incarnation, later deltas still count) rewrites it. A
plain save (or update) of a fenced session raises ConfigurationError, also one that carries
the fence through: unlike an If-Match, a taken seq does not tell the holder who wrote it.
Costs: acquire 7 requests (6 for a missing session) plus one GET per pending delta; a save
or update under the lease 2 (the delta PUT and the HEAD), plus a load first when the store
does not know the session's latest state. Every lease holder of a session must use journal
mode too: a whole-document holder's If-Match write does not see a journal holder's fence
delta (the document is unchanged), so it would start a new incarnation over it.

Array sidecars (trace events, run records):

- Document: the sidecar's usual key (``<base>traces/<seg>.json``, ``<base>runs/<seg>.json``),
  the same bytes as whole-document mode, with the same ``s3store-journal`` metadata.
- Deltas: ``<base>journal/<seg>/<part>/<incarnation>.<seq, 12 digits>.json``, ``<part>``
  being ``traces`` or ``runs``: a folder inside the session's journal folder. ``<seg>`` (the
  layout's id segment: the safe id, or ``id_<b64>``) and incarnations never hold a ``/``,
  so no id's folder is another id's, the session's deltas (files directly in its folder,
  listed with the delimiter ``/``) never mix with its sidecars', and one LIST of the
  session's folder finds every delta ``delete`` must remove. Zero-padded seqs sort.
- Delta body: ``{"s3store_journal": 1, "id", "kind", "seq", "w", "keep", "append"}`` (keep
  the first ``keep`` elements, append ``append``) or ``{..., "replace": [...]}``.
- Saves (:meth:`AsyncJournal.save_array`): a list that extends the version this store knows
  is a delta of the new tail (its PUT + the confirming HEAD); an unknown version, or a list
  that does not extend it, is one unconditional whole-document PUT that starts a new
  incarnation (``mode="overwrite"``; the replaced incarnation's deltas this store knew of
  are deleted after it, and a concurrent append onto it is voided by its HEAD). ``create``
  is one create-only whole PUT. ``IfMatch`` takes a journal version and is always a delta
  (``replace`` for a list that does not extend): an If-Match on the document would not see
  deltas appended since. Compaction: the same knobs (``journal_compact_every`` /
  ``journal_compact_bytes``), and ``compact(id, document="traces")``. Verification reports
  and subagent task snapshots are not journaled (rewritten, not appended to).
- A compaction also deletes the deltas of other incarnations its state's listing showed:
  they belong to a document the current one replaced (a delta is only appended onto an
  existing document, and the listing precedes the document's GET), so nothing folds them.

Limits: a session is journaled or whole-document; all its writers must use the same mode
(a whole-document writer's save starts a new incarnation: deltas of the old one are
ignored). Journal mode is for bare session documents: not with encryption, not with v1
snapshots.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3store import codec, models
from s3store._backends import agather_limited
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
from s3store.keys import Part
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
_PLACEHOLDER_MAX_BYTES = 300  # lease.PLACEHOLDER_MAX_BYTES (lease imports this module)
_SEQ_DIGITS = 12
_APPEND_ATTEMPTS = 10


@dataclass(frozen=True)
class DocKind:
    """A kind of journaled document: the session (a JSON object: top-level members and the
    ``messages`` array) or an array sidecar (the array itself). One protocol serves all;
    a kind says where its document and deltas live and how its tree is checked and encoded.
    """

    name: str
    part: Part
    # An array sidecar's element model, by its name in s3store.models (run records are
    # defined on first use, not when this module loads); None: the session.
    item: str | None = None

    @property
    def array(self) -> bool:
        return self.item is not None

    @functools.cached_property
    def array_type(self) -> Any:
        """The array sidecar's document type (``list[TraceEvent]``)."""
        list_of: Any = builtins.list
        return list_of[getattr(models, self.item or "")]


SESSION = DocKind("session", Part.SESSION)
TRACES = DocKind("traces", Part.TRACES, "TraceEvent")
RUNS = DocKind("runs", Part.RUNS, "RunRecord")
ARRAY_KINDS: dict[Part, DocKind] = {Part.TRACES: TRACES, Part.RUNS: RUNS}
"""The sidecars a journal store journals (the growing ones). Verification reports and
subagent task snapshots are rewritten rather than appended to: whole documents."""
KINDS: dict[str, DocKind] = {k.name: k for k in (SESSION, TRACES, RUNS)}


@dataclass
class _State:
    """What a journal store knows of one session."""

    doc_etag: str | None  # None: no document
    incarnation: str
    folded: int
    seq: int
    # The document's JSON tree: a dict (session or lease placeholder), a list (an array
    # sidecar), None: no document. Any: lease.py spreads session trees.
    tree: Any
    pending_bytes: int = 0
    listed: builtins.list[str] = field(default_factory=builtins.list)  # delta keys seen
    etags: dict[int, str] = field(default_factory=dict)  # seq -> short ETag, chain only
    # Deltas of other incarnations seen beside the document: dead (see _fold), compaction
    # deletes them.
    others: builtins.list[str] = field(default_factory=builtins.list)

    @property
    def tag(self) -> str:
        return f"{TAG_PREFIX}{self.incarnation}.{self.seq}"

    @property
    def exists(self) -> bool:
        """Whether there is a document (not missing, not a lease placeholder)."""
        return self.tree is not None and not _is_placeholder(self.tree)

    @property
    def fence(self) -> Any:
        """The lease fence this state carries (a session's or a placeholder's), or None."""
        return self.tree.get(_FENCE_KEY) if isinstance(self.tree, dict) else None


_STATE_ATTEMPTS = 8


def _incarnation_of(info: ObjectInfo) -> tuple[str, int]:
    value = info.metadata.get(JOURNAL_META, "")
    inc, _, folded = value.partition(" ")
    if inc and folded.isdigit():
        return inc, int(folded)
    # Not written by a journal store: an incarnation of its own, nothing folded.
    return "e" + "".join(c for c in info.etag if c.isalnum())[:24], 0


def _is_placeholder(tree: Any) -> bool:
    return isinstance(tree, dict) and tree.get(_PLACEHOLDER_KEY) is True


def placeholder_body(tree: dict[str, Any]) -> bytes:
    """A placeholder's bytes, as the lease writes them (small: see lease.is_placeholder)."""
    return json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode()


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


def session_tree(session: SessionData) -> dict[str, Any]:
    """The JSON tree of a session, as its document holds it."""
    value = json.loads(codec.dumps(session))
    assert isinstance(value, dict)
    return value


def extends(old: Any, new: builtins.list[Any]) -> bool:
    """Whether the array ``new`` is ``old`` with elements appended."""
    return isinstance(old, list) and len(new) >= len(old) and new[: len(old)] == old


def _delta(old: Any, new: Any) -> dict[str, Any]:
    """keep / append / set / unset turning ``old`` into ``new``; ``replace`` when the
    member order would not come out the same (members set anew go last). Arrays: keep
    ``old`` and append the tail when ``new`` extends it, else ``replace``."""
    if isinstance(new, list):
        if extends(old, new):
            return {"keep": len(old), "append": new[len(old) :]}
        return {"replace": new}
    if old is None or not isinstance(old, dict):
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


def _apply(tree: Any, delta: dict[str, Any], key: str) -> Any:
    """``tree`` (a session's object or an array sidecar's list) with ``delta`` applied."""
    array = isinstance(tree, list)
    if "replace" in delta:
        value = delta["replace"]
        if not isinstance(value, list if array else dict):
            raise CorruptObjectError("journal delta: replace is of the wrong type", key=key)
        return list(value) if array else dict(value)
    if tree is None:
        raise CorruptObjectError("journal delta applies to a missing document", key=key)
    keep, append = delta.get("keep", 0), delta.get("append", [])
    if not isinstance(keep, int) or not isinstance(append, list):
        raise CorruptObjectError("journal delta: bad keep/append", key=key)
    if array:
        return [*tree[:keep], *append]
    out = dict(tree)
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
        self._known: dict[tuple[str, str], _State] = {}  # (kind name, id) -> state

    # -- keys ------------------------------------------------------------------------------

    def journal_dir(self, id: str, kind: DocKind = SESSION) -> str:
        """Where the deltas of one document live. The session's: ``<base>journal/<seg>/``;
        an array sidecar's: a folder inside it, ``<base>journal/<seg>/<part>/``. ``<seg>``
        never holds a ``/`` and incarnations never do, so a session's deltas (directly in
        its folder) and its sidecars' never share a prefix, whatever the id (the session
        ``traces`` has ``journal/traces/``, its trace events ``journal/traces/traces/``),
        and deleting a session's folder takes its sidecars' deltas too."""
        layout = self.store.layout
        base = layout.root if layout.name == "legacy" else f"{layout.root}v1/"
        own = "" if kind is SESSION else f"{kind.part.value}/"
        return f"{base}journal/{layout.id_segment(id)}/{own}"

    def delta_key(self, id: str, incarnation: str, seq: int, kind: DocKind = SESSION) -> str:
        return f"{self.journal_dir(id, kind)}{incarnation}.{seq:0{_SEQ_DIGITS}d}.json"

    def doc_key(self, id: str, kind: DocKind = SESSION) -> str:
        """The canonical document's key (the one whole-document mode writes)."""
        layout = self.store.layout
        return layout.session_key(id) if kind is SESSION else layout.sidecar_key(kind.part, id)

    def check_usable(self) -> None:
        store = self.store
        if store.encryption is not None:
            raise ConfigurationError("journal mode does not support encryption at rest")

    # -- reading ---------------------------------------------------------------------------

    async def _list(
        self, id: str, incarnation: str, kind: DocKind = SESSION
    ) -> builtins.list[ObjectInfo]:
        prefix = f"{self.journal_dir(id, kind)}{incarnation}."
        return [info async for info in self.store._iter_objects(prefix)]

    def _seq_of(self, key: str) -> int:
        stem = key.rsplit(".", 2)[-2] if key.count(".") >= 2 else ""
        return int(stem) if stem.isdigit() else -1

    async def state(self, id: str, kind: DocKind = SESSION) -> _State:
        """The session's current state: one LIST of its deltas, then the document, then the
        deltas after its folded seq (concurrently).

        The LIST comes first: a compaction that lands between the two can then only make
        the document newer than the listing (its folded deltas are skipped), never leave an
        older document beside a listing from which the deltas it lacks were already deleted.
        A delta deleted between the LIST and its GET means the same race: start again.
        """
        store = self.store
        key = self.doc_key(id, kind)
        for _ in range(_STATE_ATTEMPTS):
            # The delimiter keeps a session's listing to its own deltas (its sidecars'
            # are in sub-folders).
            listed = [
                info
                async for info in store._iter_objects(self.journal_dir(id, kind), delimiter="/")
            ]
            got = await store._get(key)
            if got is None:
                st = _State(None, "", 0, 0, None)
                self._known[kind.name, id] = st
                return st
            folded = await self._fold(id, *got, listed=listed, kind=kind)
            if folded is not None:
                self._known[kind.name, id] = folded
                return folded
        raise TransientError(
            f"the {kind.name} journal kept being compacted under {_STATE_ATTEMPTS} reads",
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
        kind: DocKind = SESSION,
    ) -> _State | None:
        """The state of a stored document: its incarnation's deltas after its folded seq
        (from ``listed``, or one LIST now), fetched concurrently. None if one of them was
        deleted meanwhile (a compaction folded it: read again)."""
        store = self.store
        key = self.doc_key(id, kind)
        inc, folded = _incarnation_of(info)
        tree = self._decode_tree(body, key, kind)
        prefix = f"{self.journal_dir(id, kind)}{inc}."
        if listed is None:
            listed = await self._list(id, inc, kind)
        # Deltas of another incarnation, listed before the document was read, belong to a
        # document this one replaced (a delta is only appended onto an existing document,
        # and the listing came first): nothing will fold them.
        others = [i.key for i in listed if not i.key.startswith(prefix)]
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
        return _State(info.etag, inc, folded, seq, tree, pending, keys, etags, others)

    async def export_body(
        self, id: str, body: bytes, info: ObjectInfo, kind: DocKind = SESSION
    ) -> bytes | None:
        """For export: the bytes whole-document mode would hold for a stored document with
        pending deltas (None when it has none). The stored id is not checked here."""
        st = await self._fold(id, body, info, kind=kind)
        if st is None:  # compacted while we read it: the current state has it all
            st = await self.state(id, kind)
        if st.seq == st.folded or st.tree is None or not st.exists:
            return None
        key = self.doc_key(id, kind)
        try:
            value = codec.from_value(
                kind.array_type if kind.array else SessionData, st.tree, source=key
            )
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", bucket=self.store.bucket, key=key
            ) from exc
        return codec.dumps(value)

    def _decode_tree(self, body: bytes, key: str, kind: DocKind = SESSION) -> Any:
        try:
            tree = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptObjectError(
                f"{kind.name} document is not JSON", bucket=self.store.bucket, key=key
            ) from exc
        if kind.array:
            if not isinstance(tree, list):
                raise CorruptObjectError(
                    f"{kind.name} document is not a JSON array", bucket=self.store.bucket, key=key
                )
            return tree
        if not isinstance(tree, dict):
            raise CorruptObjectError(
                "session document is not a JSON object", bucket=self.store.bucket, key=key
            )
        if _is_placeholder(tree):
            return tree  # "no session", but a fence that lease appends can replace
        if "session" in tree or "schema_version" in tree:
            raise ConfigurationError("journal mode does not support v1 snapshots", key=key)
        return tree

    def _session(self, st: _State, id: str) -> SessionData | None:
        if st.tree is None or not st.exists:
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
        new = session_tree(session)
        if _FENCE_KEY in new:
            raise ConfigurationError(
                "the session carries a lease fence: in journal mode a fenced session is "
                "written under its lease (save(..., lease=lease)), never by a plain save"
            )
        wanted = _parse_tag(mode.etag) if isinstance(mode, IfMatch) else None
        for _attempt in range(_APPEND_ATTEMPTS):
            st = self._known.get((SESSION.name, id))
            stale = wanted is not None and (st is None or (st.incarnation, st.seq) != wanted)
            if st is None or stale or mode == "create":
                st = await self.state(id)
            if st.exists and st.fence is not None:
                # A plain append would carry the fence through unseen by the holder (a
                # delta's slot conflict, unlike an If-Match, does not say who wrote).
                raise ConfigurationError(
                    "the session is held under a lease: in journal mode a fenced session is "
                    "written under its lease (save(..., lease=lease)), never by a plain save"
                )
            if isinstance(mode, IfMatch) and (wanted is None or (st.incarnation, st.seq) != wanted):
                raise PreconditionFailedError(
                    "session changed since the version given (journal)",
                    bucket=self.store.bucket,
                    key=self.store.layout.session_key(id),
                    expected_etag=mode.etag,
                    actual_etag=st.tag if st.doc_etag else None,
                )
            if mode == "create" and st.exists:
                raise AlreadyExistsError(
                    "session exists",
                    bucket=self.store.bucket,
                    key=self.store.layout.session_key(id),
                )
            try:
                if st.doc_etag is None:
                    return await self._create(id, session, new)
                # Over a lease placeholder too: a delta, never a rewrite of the document
                # (an If-Match on it would not see a lease holder's delta appended meanwhile).
                return await self._append(id, st, new)
            except (AlreadyExistsError, PreconditionFailedError) as exc:
                self.forget(id)
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

    async def _create(self, id: str, session: SessionData, new: dict[str, Any]) -> PutResult:
        key = self.store.layout.session_key(id)
        return await self.create(id, self.store._encode(session, key), new)

    async def create(
        self,
        id: str,
        body: bytes,
        tree: Any,
        kind: DocKind = SESSION,
        mode: PutMode = "create",
    ) -> PutResult:
        """PUT of the document (``body``, whose tree is ``tree``: a session, a lease
        placeholder or an array) as a new incarnation with nothing folded: create-only, or
        (``mode="overwrite"``, array sidecars) unconditional. The deltas of the incarnation
        it replaces are ignored from then on; their writers' confirming HEADs void them."""
        store = self.store
        key = self.doc_key(id, kind)
        inc = uuid.uuid4().hex[:16]
        try:
            result = await store._put(key, body, mode, metadata={JOURNAL_META: f"{inc} 0"})
        except (TransientError, AlreadyExistsError, PreconditionFailedError):
            self.forget(id, kind)
            raise
        if result.superseded:  # a newer write landed over it: the state is not known
            self.forget(id, kind)
        else:
            self._known[kind.name, id] = _State(result.etag, inc, 0, 0, tree)
        return PutResult(etag=f"{TAG_PREFIX}{inc}.0", server_time=result.server_time)

    def known(self, id: str, kind: DocKind = SESSION) -> _State | None:
        """What this store last knew of the document (None: read it). Deltas are immutable
        and a seq is taken once, so a known state is a true past state; an append on it
        conflicts if it is no longer the latest."""
        return self._known.get((kind.name, id))

    def pending(self) -> builtins.list[tuple[str, DocKind]]:
        """The documents this store knows to have deltas it has not folded (ids, kinds)."""
        return [
            (id, KINDS[name])
            for (name, id), st in self._known.items()
            if st.doc_etag is not None and st.seq > st.folded
        ]

    def forget(self, id: str, kind: DocKind = SESSION) -> None:
        self._known.pop((kind.name, id), None)

    def session_of(self, st: _State, id: str) -> SessionData | None:
        """The session a state holds (None: missing or a lease placeholder)."""
        return self._session(st, id)

    async def append(self, id: str, st: _State, new: Any, kind: DocKind = SESSION) -> PutResult:
        """Append the delta turning ``st`` into ``new`` at seq ``st.seq + 1`` (create-only,
        then the confirming HEAD). AlreadyExistsError: the seq is taken;
        PreconditionFailedError: the delta is void; OutcomeUnknownError: it may count."""
        return await self._append(id, st, new, kind)

    async def _append(self, id: str, st: _State, new: Any, kind: DocKind = SESSION) -> PutResult:
        store = self.store
        seq = st.seq + 1
        key = self.delta_key(id, st.incarnation, seq, kind)
        # A nonce: every delta's bytes (so its ETag) are unique, see FOLDED_META.
        nonce = uuid.uuid4().hex[:12]
        # A session replacing a placeholder (or the reverse) replaces the whole tree.
        old = st.tree if st.tree is not None and st.exists == (not _is_placeholder(new)) else None
        head = {"s3store_journal": 1, "id": id, "seq": seq, "w": nonce}
        if kind is not SESSION:
            head["kind"] = kind.name  # self-describing: the key says it too
        delta = {**head, **_delta(old, new)}
        body = json.dumps(delta, ensure_ascii=False, separators=(",", ":")).encode()
        if len(body) > store.settings.max_document_bytes:
            raise ConfigurationError("journal delta is over max_document_bytes", key=key)
        try:
            result = await store._put(key, body, "create", raw=True)
        except TransientError:
            self.forget(id, kind)  # OutcomeUnknownError: never re-appended
            raise
        # Confirm: the document must not fold this seq already (a stale writer re-created a
        # folded, deleted seq) and must still be this incarnation.
        client = await store._object_client()
        try:
            doc = await client.head(self.doc_key(id, kind))
        except TransientError as exc:
            self.forget(id, kind)
            raise OutcomeUnknownError(
                f"journal append landed but could not be confirmed ({exc.summary})",
                bucket=store.bucket,
                key=key,
            ) from exc
        inc, folded = _incarnation_of(doc) if doc is not None else ("", 0)
        if doc is None or inc != st.incarnation:
            with contextlib.suppress(StoreError):
                await client.delete(key)
            self.forget(id, kind)
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
            self.forget(id, kind)
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
            st.others,
        )
        self._known[kind.name, id] = st
        out = PutResult(etag=st.tag, server_time=result.server_time)
        settings = store.settings
        # A session over a placeholder document is folded at once (again at the next
        # append if that fails), so what list, exists, export and whole-document readers
        # see stops being a placeholder. The HEAD's size tells: no session is that small.
        if (
            (kind is SESSION and doc.size <= _PLACEHOLDER_MAX_BYTES and not _is_placeholder(new))
            or st.seq - st.folded >= settings.journal_compact_every
            or st.pending_bytes >= settings.journal_compact_bytes
        ):
            try:
                await self.compact(id, known=st, kind=kind)
            except StoreError as exc:  # the save landed; compaction is best effort
                log.debug("bucket=<%s> id=<%s> | compaction failed: %s", store.bucket, id, exc)
        return out

    # -- compaction ------------------------------------------------------------------------

    async def compact(
        self, id: str, *, known: _State | None = None, kind: DocKind = SESSION
    ) -> int:
        """Fold the document's deltas into it (If-Match), then delete them.

        Returns how many deltas were folded. Costs the load (GET + LIST + delta GETs), one
        PUT and one DeleteObjects. Losing the If-Match to another compaction is fine.
        ``known``: the state this store just appended to (its chain is complete up to its
        seq, and its document ETag is the confirming HEAD's): no load, it folds up to there.
        """
        store = self.store
        st = known if known is not None else await self.state(id, kind)
        if st.doc_etag is None:
            return 0
        key = self.doc_key(id, kind)
        folded_now = st.seq - st.folded
        if folded_now > 0:
            session = None if kind.array else self._session(st, id)
            if kind.array:
                body = store._encode(self._records(st, id, kind), key)
            elif session is not None:
                body = store._encode(session, key)
            elif st.tree is not None:  # a lease placeholder, fenced anew by its deltas
                body = placeholder_body(st.tree)
            else:
                return 0
            try:
                first = max(st.folded + 1, st.seq - _FOLDED_RECORD + 1)
                hashes = [st.etags.get(n, "") for n in range(first, st.seq + 1)]
                metadata = {JOURNAL_META: f"{st.incarnation} {st.seq}"}
                if all(hashes):
                    metadata[FOLDED_META] = f"{first} {','.join(hashes)}"
                result = await store._put(key, body, IfMatch(st.doc_etag), metadata=metadata)
            except PreconditionFailedError:
                self.forget(id, kind)
                return 0  # another compaction (or writer) got there first
            except TransientError:
                self.forget(id, kind)
                raise
            st.doc_etag = None if result.superseded else result.etag
            st.folded = st.seq
            st.pending_bytes = 0
            st.etags = {}
            if st.doc_etag is None:
                self.forget(id, kind)
        stale = [k for k in st.listed if self._seq_of(k) <= st.seq]
        await self._delete_keys([*stale, *st.others])
        st.listed = [k for k in st.listed if k not in set(stale)]
        st.others = []
        return folded_now

    async def _delete_keys(self, keys: builtins.list[str]) -> None:
        client = await self.store._object_client()
        for start in range(0, len(keys), 1000):
            await client.delete_many(keys[start : start + 1000])

    async def delete_all(self, id: str) -> builtins.list[str]:
        """Every delta key of the session and of its journaled sidecars, every incarnation
        (for ``delete``): one LIST, the sidecars' folders are inside the session's."""
        for kind in KINDS.values():
            self.forget(id, kind)
        return [info.key async for info in self.store._iter_objects(self.journal_dir(id))]

    # -- array sidecars --------------------------------------------------------------------

    def _records(self, st: _State, id: str, kind: DocKind) -> Any:
        """The models of an array state (None: no document)."""
        if st.tree is None:
            return None
        key = self.doc_key(id, kind)
        try:
            return codec.from_value(kind.array_type, st.tree, source=key)
        except DocumentError as exc:
            raise CorruptObjectError(
                f"corrupt object: {exc.summary}", bucket=self.store.bucket, key=key
            ) from exc

    async def load_array(self, kind: DocKind, id: str) -> Any:
        """An array sidecar folded (its document + pending deltas), or None."""
        return self._records(await self.state(id, kind), id, kind)

    async def save_array(
        self, kind: DocKind, id: str, records: builtins.list[Any], mode: PutMode
    ) -> PutResult:
        """Save an array sidecar: a delta with only the new tail when this store knows the
        stored version and ``records`` extends it, else a whole document (a new
        incarnation). ``mode`` keeps its whole-document meaning:

        - ``"overwrite"``: unconditional. An unknown version or a list that does not extend
          the known one is one unconditional PUT of the whole array (a new incarnation: a
          concurrent append on the old one is voided by its confirming HEAD). A delta that
          finds its seq taken re-reads the state and tries again (an append onto the newer
          state, or a whole write if the list no longer extends it), as ``update`` does.
        - ``"create"``: one create-only PUT of the whole array; AlreadyExistsError if there
          is one.
        - ``IfMatch(tag)``: only on the journal version ``tag`` (``j:<incarnation>.<seq>``,
          as a save returned it), else PreconditionFailedError; the write is always a delta
          (``replace`` when the list does not extend the stored one), because a rewrite of
          the document, If-Match on its ETag, would not see deltas appended since.
        """
        self.check_usable()
        mode = check_mode(mode)
        key = self.doc_key(id, kind)
        body = self.store._encode(records, key)
        new = json.loads(body)  # the tree exactly as the document would hold it
        if mode == "create":
            return await self.create(id, body, new, kind)
        if isinstance(mode, IfMatch):
            wanted = _parse_tag(mode.etag)
            st = self.known(id, kind)
            if wanted is not None and (st is None or (st.incarnation, st.seq) != wanted):
                st = await self.state(id, kind)
            if wanted is None or st is None or st.doc_etag is None:
                raise self._changed(kind, id, mode.etag, st)
            if (st.incarnation, st.seq) != wanted:
                raise self._changed(kind, id, mode.etag, st)
            try:
                return await self._append(id, st, new, kind)
            except AlreadyExistsError as exc:  # the seq is taken: someone else appended
                self.forget(id, kind)
                raise self._changed(kind, id, mode.etag, None) from exc
        for attempt in range(_APPEND_ATTEMPTS):
            st = self.known(id, kind)
            if st is None and attempt > 0:
                st = await self.state(id, kind)  # after a conflict: append onto the news
            if st is None or st.doc_etag is None or not extends(st.tree, new):
                return await self._rewrite(id, body, new, kind, st)
            try:
                return await self._append(id, st, new, kind)
            except (AlreadyExistsError, PreconditionFailedError):
                self.forget(id, kind)
        # Appends keep losing their seq: a whole write settles it (overwrite means it).
        return await self._rewrite(id, body, new, kind, None)

    async def _rewrite(
        self, id: str, body: bytes, new: Any, kind: DocKind, old: _State | None
    ) -> PutResult:
        """An unconditional whole write (a new incarnation); then the deltas this store
        knew of the replaced one are deleted (nothing folds them any more; best effort:
        compaction deletes leftovers it lists, ``delete`` deletes them all)."""
        result = await self.create(id, body, new, kind, "overwrite")
        dead = [] if old is None else [*old.listed, *old.others]
        if dead:
            try:
                await self._delete_keys(dead)
            except StoreError as exc:
                log.debug(
                    "bucket=<%s> id=<%s> | delta cleanup failed: %s", self.store.bucket, id, exc
                )
        return result

    def _changed(
        self, kind: DocKind, id: str, expected: str, st: _State | None
    ) -> PreconditionFailedError:
        return PreconditionFailedError(
            f"{kind.name} changed since the version given (journal)",
            bucket=self.store.bucket,
            key=self.doc_key(id, kind),
            expected_etag=expected,
            actual_etag=st.tag if st is not None and st.doc_etag else None,
        )


def _bind(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)
