"""Single-writer leases with fencing, on S3 conditions alone.

S3 conditions cover one key, and an ETag depends only on the bytes. So a lease cannot make
writes to *other* keys conditional on it; instead the session document itself is fenced.

Objects:

- The lease object, ``<prefix>/leases/<safe id>.json`` (legacy layout) or
  ``<prefix>/v1/leases/id_<b64>.json`` (v1 layout): ``{"holder", "epoch", "token",
  "ttl_ms", "released", "nonce", ...}``. It is **never deleted**, so the epochs of a session
  only ever increase, also across release and re-acquire.
- The fence, a top-level member of the session document:
  ``"s3store_fence": {"holder": …, "epoch": …, "token": <uuid4 hex>}``. ``token`` is new for
  every acquisition, so no two acquisitions ever write the same fence (no ABA, even with a
  reused holder name). The Rust agent ignores the unknown member (``SessionData`` does not
  deny unknown fields).
- A *placeholder*: when the session does not exist at takeover, the holder creates
  ``{"s3store_placeholder": true, "s3store_fence": {...}}`` under the session key, so there
  is always a fenced version to compare against. Placeholders are "no session" to
  :meth:`load`, :meth:`exists`, :meth:`list`, :meth:`fsck` and export (see
  :func:`is_placeholder`); a create-only ``save`` replaces one.

Protocol:

1. **Acquire.** GET the lease object. Missing → create-only PUT, epoch 1. Released, or
   expired (its ``Last-Modified`` + ttl + 1 s ≤ the ``Date`` of the server's response: both
   the server's clock, so workers' clocks never need to agree), or held under this very
   holder name → If-Match PUT with epoch + 1. Held by another live holder → LeaseHeldError.
   A lost race (412) re-reads and decides again. Holder names identify processes: a second
   process using the same name takes the lease over at once, and the two fence each other.
2. **Fence**, always. GET the session: a document (or placeholder) → If-Match rewrite with
   this acquisition's fence; missing → create-only placeholder. A document already fenced at
   a higher epoch means a newer holder exists → LeaseLostError. A 412 re-reads and fences
   again. Then GET the lease object once more: still ours at our epoch, or LeaseLostError.
   If fencing fails for any reason the lease object is released (not leaked for the ttl).
3. **Write.** Every write under the lease is If-Match against a version carrying this
   acquisition's fence, never create-only: a stale holder's write fails whatever it last
   saw. ``store.save(session, lease=lease)`` is a blind If-Match write;
   :meth:`AsyncLease.update` (``store.update(id, fn, lease=lease)``) reads, applies ``fn``
   and writes If-Match. A 412 is explained with one or two GETs: a newer fence or a lease
   object that is no longer ours → LeaseLostError; otherwise the session was changed by a
   writer outside the lease (plain ``save``, ``delete``) → PreconditionFailedError.
4. **Renew** every ttl/3 in the background (If-Match rewrite of the lease object). A
   transient error is retried at the next tick; renewal stops only on LeaseLostError or
   once it has failed for a whole ttl (the lease may have expired: writes then raise
   LeaseLostError).
5. **Release**: waits for a renewal in flight, then If-Match rewrites the lease object with
   ``"released": true``, keeping its epoch (no DELETE, so no conditional-delete support is
   needed).

Journal mode (``journal=True``): the same lease object; the fence and every write are
journal appends (:mod:`s3store._async.journal`, "Leases"). Fence = a delta setting
``s3store_fence`` (missing session: a create-only placeholder document); a write appends at
the known seq + 1 only if the state before it carries this acquisition's fence, and a taken
seq re-reads: a newer fence → LeaseLostError, another change without our fence →
PreconditionFailedError, our fence still there → written again on the new state
(``save``) or ``fn`` re-run (``update``). The store's known state is used as is (a stale
one finds its seq taken), so a holder that is the only writer never reads before writing.

Unknown outcomes (:class:`~s3store.errors.OutcomeUnknownError`, any TransientError of a
write) are treated as "may have landed": the lease object and the session are re-read, and
a write counts as ours when the object carries this acquisition's token (and, for the lease
object, this write's nonce).

Cost, in requests: acquire 2 (GET + PUT of the lease object) + fence 3 (GET + PUT of the
session, GET of the lease object) = 5; each lost race or unknown outcome adds a GET and a
PUT. ``save`` under the lease is 1 PUT; ``update`` under the lease is 1 GET + 1 PUT (as the
plain ``update``). A 412 costs 1–2 GETs more. Renewal is 1 PUT per ttl/3; release is 1 PUT.
Journal mode: acquire 7 (lease GET + PUT; the session's LIST + GET, plus a GET per pending
delta; the fence delta's PUT + confirming HEAD; lease GET), 6 for a missing session (the
placeholder's PUT, no HEAD); ``save`` and ``update`` under the lease 2 each (delta PUT +
HEAD; the load of LIST + GET + deltas first when the store's known state is not current);
every K-th append also compacts, as any journal save.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from s3store._async.journal import session_tree
from s3store._backends import AsyncPeriodic
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    CorruptObjectError,
    InvalidIdError,
    KeyCollisionError,
    LeaseHeldError,
    LeaseLostError,
    PreconditionFailedError,
    StoreError,
    TransientError,
)
from s3store.models import SessionData
from s3store.types import IfMatch, PutMode, PutResult

if TYPE_CHECKING:
    from s3store._async.journal import AsyncJournal
    from s3store._async.store import AsyncS3SessionStore

log = logging.getLogger("s3store")

FENCE_KEY = "s3store_fence"
PLACEHOLDER_KEY = "s3store_placeholder"
LEASE_SCHEMA = "s3store.session-lease.v1"
MAX_HOLDER_BYTES = 128
PLACEHOLDER_MAX_BYTES = 300
"""Every placeholder is at most this many bytes; the smallest possible ``SessionData``
document (compact JSON, every optional member left out) is 334 bytes. So ``list`` can skip
placeholders by the size a listing reports, without reading them."""
MAX_EPOCH = 10**15
_CLOCK_RESOLUTION = timedelta(seconds=1)
_ACQUIRE_ATTEMPTS = 10
_FENCE_ATTEMPTS = 50
_WRITE_ATTEMPTS = 5
_TRANSIENT_ATTEMPTS = 3


def is_placeholder(body: bytes) -> bool:
    """Whether a session-key object is a lease placeholder, i.e. "no session".

    Placeholders are what a lease holder creates when it takes over a session that does not
    exist yet. Load, exists, list, fsck and export treat them as absent. Cheap: anything
    larger than :data:`PLACEHOLDER_MAX_BYTES` is rejected without parsing.
    """
    if len(body) > PLACEHOLDER_MAX_BYTES:
        return False
    document = _parse(body)
    return document.get(PLACEHOLDER_KEY) is True


def may_be_placeholder(size: int, overhead: int = 0) -> bool:
    """Whether an object of ``size`` bytes under a session key can be a placeholder (no
    real session document is this small), e.g. to filter a listing without reading.

    ``overhead``: the most bytes encryption at rest adds to a document (the store's key
    ring; 0 without one), since a sealed placeholder is that much larger.
    """
    return size <= PLACEHOLDER_MAX_BYTES + overhead


def validate_holder(holder: Any) -> None:
    """Holder names: 1–128 bytes of UTF-8, no control characters, no ``"`` or ``\\``
    (so every placeholder stays below :data:`PLACEHOLDER_MAX_BYTES`)."""
    if not isinstance(holder, str) or not holder.strip():
        raise ConfigurationError("lease holder must be a non-blank string")
    try:
        size = len(holder.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigurationError("lease holder is not valid UTF-8") from None
    if size > MAX_HOLDER_BYTES:
        raise ConfigurationError(
            f"lease holder is {size} bytes of UTF-8, over the {MAX_HOLDER_BYTES}-byte limit"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' for c in holder):
        raise ConfigurationError('lease holder must not contain control characters, " or \\')


@dataclass(frozen=True)
class _Seen:
    """A lease object as read: its parsed members and ETag."""

    document: dict[str, Any]
    etag: str

    @property
    def holder(self) -> Any:
        return self.document.get("holder")

    @property
    def epoch(self) -> int:
        return _epoch(self.document.get("epoch"))


class AsyncLease:
    """A held lease on one session. Obtain it with ``store.lease(id, holder=..., ttl=...)``.

    Attributes:
        id: the session id.
        holder: this holder's name (it names a process: two processes sharing a name
            take the lease from each other).
        epoch: the fencing epoch; it increases on every acquisition, never restarts.
        token: unique to this acquisition; part of the fence.
    """

    def __init__(self, store: AsyncS3SessionStore, id: str, *, holder: str, ttl: float) -> None:
        validate_holder(holder)
        if not ttl > 0:
            raise ConfigurationError("lease ttl must be positive")
        self.store = store
        self.id = id
        self.holder = holder
        self.ttl = ttl
        self.epoch = 0
        self.token = uuid.uuid4().hex
        self.key = store.layout.lease_key(id)
        self.session_key = store.layout.session_key(id)
        self.renewals = 0
        self._etag: str | None = None
        self._session_etag: str | None = None
        self._renewer: AsyncPeriodic | None = None
        self._lost: LeaseLostError | None = None

    def __repr__(self) -> str:
        return f"AsyncLease(id={self.id!r}, holder={self.holder!r}, epoch={self.epoch})"

    # -- documents -----------------------------------------------------------------------

    def _body(self, epoch: int, *, released: bool = False) -> tuple[bytes, str]:
        nonce = uuid.uuid4().hex
        document = {
            "schema": LEASE_SCHEMA,
            "holder": self.holder,
            "epoch": epoch,
            "token": self.token,
            "ttl_ms": int(self.ttl * 1000),
            "released": released,
            "nonce": nonce,
        }
        return json.dumps(document, indent=2).encode(), nonce

    def _fence_member(self) -> dict[str, Any]:
        return {"holder": self.holder, "epoch": self.epoch, "token": self.token}

    def _placeholder(self) -> bytes:
        document = {PLACEHOLDER_KEY: True, FENCE_KEY: self._fence_member()}
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    def _fenced(self, session: SessionData) -> SessionData:
        fenced = session.model_copy()
        extra = dict(fenced.__pydantic_extra__ or {})
        extra[FENCE_KEY] = self._fence_member()
        fenced.__pydantic_extra__ = extra
        return fenced

    def _ours(self, seen: _Seen | None) -> bool:
        """Whether the lease object is this acquisition's, live (not released)."""
        return (
            seen is not None
            and seen.document.get("token") == self.token
            and seen.holder == self.holder
            and seen.epoch == self.epoch
            and seen.document.get("released") is not True
        )

    def _lost_error(self, message: str, seen: _Seen | None) -> LeaseLostError:
        self._lost = LeaseLostError(
            message,
            bucket=self.store.bucket,
            key=self.key,
            holder=self.holder,
            epoch=self.epoch,
            current_holder=seen.holder if seen else None,
            current_epoch=seen.epoch if seen else None,
        )
        return self._lost

    async def _read_lease(self) -> tuple[_Seen | None, datetime | None, datetime]:
        """The lease object (None if missing), its Last-Modified and the server's time."""
        client = await self.store._object_client()
        got = await client.get(self.key)
        if got is None:
            return None, None, datetime.now(UTC)
        document = _parse(self.store._open_document(self.key, got.body))
        if not document or not _valid_epoch(document.get("epoch")):
            raise CorruptObjectError(
                "lease object is not a lease document", bucket=self.store.bucket, key=self.key
            )
        now = got.info.server_time or datetime.now(UTC)
        return _Seen(document, got.info.etag), got.info.last_modified, now

    # -- acquire -------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Take the lease and fence the session. LeaseHeldError if another holder has it.

        If fencing fails, the lease object is released before the error is raised.
        """
        await self._take_lease_object()
        try:
            await self._fence()
        except BaseException:
            await self._release_lease_object()
            raise

    async def _take_lease_object(self) -> None:
        transient = 0
        for _ in range(_ACQUIRE_ATTEMPTS):
            seen, modified, now = await self._read_lease()
            if seen is not None and self._ours(seen):
                # Our own write whose answer was lost did land.
                self._etag = seen.etag
                return
            mode: PutMode
            if seen is None:
                epoch, mode = 1, "create"
            else:
                if seen.document.get("token") != self.token and not self._free(seen, modified, now):
                    raise LeaseHeldError(
                        f"lease held by {seen.holder!r} (epoch {seen.epoch}) until "
                        f"{self._expiry(seen, modified)}",
                        bucket=self.store.bucket,
                        key=self.key,
                    )
                epoch, mode = seen.epoch + 1, IfMatch(seen.etag)
            if epoch > MAX_EPOCH:
                raise CorruptObjectError(
                    f"lease epoch {epoch} is out of range", bucket=self.store.bucket, key=self.key
                )
            body, _ = self._body(epoch)
            previous = self.epoch
            self.epoch = epoch
            try:
                result = await self.store._put(self.key, body, mode)
            except (AlreadyExistsError, PreconditionFailedError):
                self.epoch = previous
                continue  # someone else moved first: read again and decide again
            except TransientError:
                # May have landed: the next read tells (our token at this epoch).
                transient += 1
                if transient > _TRANSIENT_ATTEMPTS:
                    self.epoch = previous
                    raise
                continue
            if result.superseded:
                continue  # landed, then replaced before we heard: read again
            self._etag = result.etag
            return
        raise LeaseHeldError(
            f"could not take the lease in {_ACQUIRE_ATTEMPTS} attempts: other holders keep "
            "taking it",
            bucket=self.store.bucket,
            key=self.key,
        )

    def _expiry(self, seen: _Seen, modified: datetime | None) -> datetime | None:
        ttl_ms = seen.document.get("ttl_ms", 0)
        ttl_ms = ttl_ms if isinstance(ttl_ms, int | float) and not isinstance(ttl_ms, bool) else 0
        # HTTP dates have one-second resolution and both are truncated, so a lease could look
        # up to a second older than it is: add that second before calling it expired.
        if modified is None:
            return None
        return modified + timedelta(milliseconds=ttl_ms) + _CLOCK_RESOLUTION

    def _free(self, seen: _Seen, modified: datetime | None, now: datetime) -> bool:
        """Released, expired (by the server's clock), or held under our own name."""
        if seen.document.get("released") is True or seen.holder == self.holder:
            return True
        expires = self._expiry(seen, modified)
        return expires is None or expires <= now

    # -- fence ---------------------------------------------------------------------------

    def _fence_state(self, fence: Any) -> str:
        """Our fence ("ours"), another acquisition's at our epoch or later ("newer"), or an
        older one or none ("older")."""
        if not isinstance(fence, dict):
            return "older"
        epoch = _epoch(fence.get("epoch"))
        if (
            fence.get("token") == self.token
            and fence.get("holder") == self.holder
            and epoch == self.epoch
        ):
            return "ours"
        return "newer" if epoch >= self.epoch else "older"

    async def _read_session(self) -> tuple[SessionData | None, Any, str] | None:
        """The session key's object: (session or None for a placeholder, fence, ETag)."""
        store = self.store
        got = await store._get(self.session_key)
        if got is None:
            return None
        body, info = got
        if is_placeholder(body):
            return None, _parse(body).get(FENCE_KEY), info.etag
        session = store._decode_session(body, self.session_key)
        if session is None:  # a placeholder by the store's own test
            return None, _parse(body).get(FENCE_KEY), info.etag
        if session.id != self.id:
            raise KeyCollisionError(
                "session file key collision: the stored document belongs to another id",
                requested=self.id,
                stored=session.id,
                bucket=store.bucket,
                key=self.session_key,
            )
        return session, (session.__pydantic_extra__ or {}).get(FENCE_KEY), info.etag

    async def _fence(self) -> None:
        """Put this acquisition's fence on the session key, then confirm the lease."""
        if self.store._journal is not None:
            await self._fence_journal(self.store._journal)
        else:
            await self._fence_document()
        seen, _, _ = await self._read_lease()
        if not self._ours(seen):
            raise self._lost_error("lease taken over while fencing", seen)
        assert seen is not None
        self._etag = seen.etag

    async def _fence_document(self) -> None:
        """Whole-document mode: If-Match rewrite of the document with this fence."""
        store = self.store
        key = self.session_key
        transient = 0
        for _ in range(_FENCE_ATTEMPTS):
            current = await self._read_session()
            mode: PutMode
            extra: dict[str, str] | None = None
            if current is None:
                body, mode = self._placeholder(), "create"
            else:
                session, fence, etag = current
                state = self._fence_state(fence)
                if state == "ours":
                    self._session_etag = etag  # our own write whose answer was lost
                    break
                if state == "newer":
                    await self._overtake(_epoch(fence.get("epoch")))
                    continue
                if session is None:
                    body = self._placeholder()
                else:
                    # A snapshot keeps its other members: only ``session`` is replaced.
                    body, extra = await store._session_body(self._fenced(session), key, etag)
                mode = IfMatch(etag)
            try:
                result = await store._put(key, body, mode, metadata=extra)
            except (AlreadyExistsError, PreconditionFailedError):
                continue  # another writer got in between: read again, fence again
            except TransientError:
                transient += 1
                if transient > _TRANSIENT_ATTEMPTS:
                    raise
                continue  # may have landed: the next read tells (our token in the fence)
            if result.superseded:
                continue  # landed, then replaced before we heard: read again
            self._session_etag = result.etag
            break
        else:
            raise LeaseHeldError(
                f"could not fence the session in {_FENCE_ATTEMPTS} attempts: "
                "another writer keeps replacing it",
                bucket=store.bucket,
                key=key,
            )

    async def _fence_journal(self, journal: AsyncJournal) -> None:
        """Journal mode: the fence is a delta setting ``s3store_fence`` (or, for a missing
        session, a create-only placeholder document). A seq is taken once, so the fence
        is ordered against every append: a holder's delta either took its seq before the
        fence (it counts, the fence is appended after it) or finds the seq taken."""
        transient = 0
        for _ in range(_FENCE_ATTEMPTS):
            st = await journal.state(self.id)
            journal.session_of(st, self.id)  # KeyCollisionError: another id's document
            try:
                if st.tree is None:
                    tree = {PLACEHOLDER_KEY: True, FENCE_KEY: self._fence_member()}
                    await journal.create(self.id, self._placeholder(), tree)
                    return
                state = self._fence_state(st.fence)
                if state == "ours":
                    return  # our own append whose answer was lost did land
                if state == "newer":
                    await self._overtake(_epoch(st.fence.get("epoch")))
                    continue
                await journal.append(self.id, st, {**st.tree, FENCE_KEY: self._fence_member()})
                return
            except (AlreadyExistsError, PreconditionFailedError):
                continue  # another writer took the seq (or the key): read again, decide again
            except TransientError:
                transient += 1
                if transient > _TRANSIENT_ATTEMPTS:
                    raise
                continue  # may have landed: the next read tells (our token in the fence)
        raise LeaseHeldError(
            f"could not fence the session in {_FENCE_ATTEMPTS} attempts: "
            "other writers keep appending to it",
            bucket=self.store.bucket,
            key=self.session_key,
        )

    async def _overtake(self, fence_epoch: int) -> None:
        """The session carries a fence at our epoch or later. If the lease object is still
        ours, that fence predates it (a lease object deleted by hand or by an older s3store,
        whose epochs restarted): move our epoch past it. Otherwise a newer holder has it."""
        seen, _, _ = await self._read_lease()
        if not self._ours(seen):
            raise self._lost_error("a newer holder fenced the session", seen)
        assert seen is not None
        self._etag = seen.etag
        self.epoch = fence_epoch + 1  # set first: a landed write with an unknown outcome is ours
        body, _ = self._body(self.epoch)
        try:
            result = await self.store._put(self.key, body, IfMatch(seen.etag))
        except PreconditionFailedError as exc:
            raise self._lost_error("lease taken over while fencing", None) from exc
        self._etag = result.etag

    # -- writes under the lease ----------------------------------------------------------

    def _check_usable(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._etag is None:
            raise LeaseLostError(
                "lease is not held", bucket=self.store.bucket, key=self.key, holder=self.holder
            )
        renewer = self._renewer
        if renewer is not None and renewer.error is not None:
            if isinstance(renewer.error, LeaseLostError):
                self._lost = renewer.error
            else:
                self._lost = self._lost_error(
                    f"lease renewal failed for a whole ttl ({renewer.error}); it may have "
                    "expired and been taken over",
                    None,
                )
            raise self._lost

    async def _explain_conflict(self, cause: BaseException) -> str | None:
        """After a 412 on the session: our fence's current ETag if the session still carries
        this acquisition's fence, else raise LeaseLostError or PreconditionFailedError."""
        current = await self._read_session()
        if current is not None:
            state = self._fence_state(current[1])
            if state == "ours":
                return current[2]
            if state == "newer":
                seen, _, _ = await self._read_lease()
                raise self._lost_error(
                    "lease lost: a newer holder fenced the session", seen
                ) from cause
        seen, _, _ = await self._read_lease()
        if not self._ours(seen):
            raise self._lost_error("lease lost or taken over", seen) from cause
        raise PreconditionFailedError(
            "the session was changed or deleted outside the lease (a write without the "
            "lease, or delete); the lease holder cannot write over it: acquire again",
            bucket=self.store.bucket,
            key=self.session_key,
            expected_etag=self._session_etag,
            actual_etag=current[2] if current is not None else None,
        ) from cause

    async def _refuse_journal(self, fence: Any, cause: BaseException) -> None:
        """Journal mode: the state a write would append to does not carry this
        acquisition's fence. Raise LeaseLostError (a newer fence, or the lease object is no
        longer ours) or PreconditionFailedError (changed outside the lease)."""
        seen, _, _ = await self._read_lease()
        if self._fence_state(fence) == "newer" or not self._ours(seen):
            raise self._lost_error("lease lost: a newer holder fenced the session", seen) from cause
        raise PreconditionFailedError(
            "the session was changed or deleted outside the lease (a write without the "
            "lease, or delete); the lease holder cannot write over it: acquire again",
            bucket=self.store.bucket,
            key=self.session_key,
            expected_etag=None,
        ) from cause

    async def _write_journal(
        self,
        journal: AsyncJournal,
        fn: Callable[[SessionData | None], SessionData | Awaitable[SessionData]],
    ) -> PutResult:
        """Journal mode: append ``fn(session)`` as a delta, only onto a state that carries
        this acquisition's fence (so a fenced-out holder's append finds its seq taken, and
        the state it then reads shows the newer fence). The known state is used as is: if
        it is stale its next seq is taken and the write re-reads."""
        cause: BaseException = PreconditionFailedError(
            "session changed", bucket=self.store.bucket, key=self.session_key, expected_etag=None
        )
        st = journal.known(self.id)
        for _ in range(_WRITE_ATTEMPTS):
            if st is None:
                st = await journal.state(self.id)
            if self._fence_state(st.fence) != "ours":
                await self._refuse_journal(st.fence, cause)
            result = fn(journal.session_of(st, self.id))
            new = await result if isinstance(result, Awaitable) else result
            if new.id != self.id:
                raise InvalidIdError(f"update() returned a session with id {new.id!r}", id=self.id)
            try:
                return await journal.append(self.id, st, session_tree(self._fenced(new)))
            except (AlreadyExistsError, PreconditionFailedError) as exc:
                cause, st = exc, None  # the seq was taken or the delta is void: re-read
        raise PreconditionFailedError(
            "the session keeps changing under the lease",
            bucket=self.store.bucket,
            key=self.session_key,
            expected_etag=None,
        )

    async def save_session(self, session: SessionData) -> PutResult:
        """Write the session under this lease (what ``store.save(..., lease=...)`` calls):
        If-Match against the version this acquisition last wrote or fenced (journal mode:
        a delta on the known state, see the module docstring)."""
        self._check_usable()
        if session.id != self.id:
            raise InvalidIdError(
                f"lease is for session {self.id!r}, not {session.id!r}", id=session.id
            )
        if self.store._journal is not None:
            return await self._write_journal(self.store._journal, lambda _current: session)
        store = self.store
        key = self.session_key
        fenced = self._fenced(session)
        for _ in range(_WRITE_ATTEMPTS):
            etag = self._session_etag
            if etag is None:
                etag = await self._explain_conflict(
                    PreconditionFailedError(
                        "outcome of the last write unknown",
                        bucket=store.bucket,
                        key=key,
                        expected_etag=None,
                    )
                )
                assert etag is not None
            body, extra = await store._session_body(fenced, key, etag)
            try:
                result = await store._put(key, body, IfMatch(etag), metadata=extra)
            except PreconditionFailedError as exc:
                self._session_etag = await self._explain_conflict(exc)
                continue
            except TransientError:
                self._session_etag = None  # may have landed: the next write re-reads
                raise
            self._session_etag = None if result.superseded else result.etag
            return result
        raise PreconditionFailedError(
            "the session keeps changing under the lease",
            bucket=store.bucket,
            key=key,
            expected_etag=self._session_etag,
        )

    async def update(
        self,
        fn: Callable[[SessionData | None], SessionData | Awaitable[SessionData]],
        *,
        id: str | None = None,
    ) -> PutResult:
        """Read-modify-write under the lease (``store.update(id, fn, lease=lease)``).

        One GET and one If-Match PUT. ``fn`` gets the session (None while the session does
        not exist yet) and returns the new one. The write is refused (LeaseLostError) once
        another holder has taken over. ``fn`` runs again only after a 412 that the re-read
        shows was not caused by another holder (it may run more than once: no side
        effects); after an unknown outcome nothing is re-run (OutcomeUnknownError).
        """
        self._check_usable()
        if id is not None and id != self.id:
            raise InvalidIdError(f"lease is for session {self.id!r}, not {id!r}", id=id)
        if self.store._journal is not None:
            return await self._write_journal(self.store._journal, fn)
        store = self.store
        key = self.session_key
        cause: BaseException = PreconditionFailedError(
            "session changed", bucket=store.bucket, key=key, expected_etag=self._session_etag
        )
        for _ in range(_WRITE_ATTEMPTS):
            current = await self._read_session()
            if current is None or self._fence_state(current[1]) != "ours":
                await self._explain_conflict(cause)
                continue
            session, _, etag = current
            result = fn(session)
            new = await result if isinstance(result, Awaitable) else result
            if new.id != self.id:
                raise InvalidIdError(f"update() returned a session with id {new.id!r}", id=self.id)
            body, extra = await store._session_body(self._fenced(new), key, etag)
            try:
                written = await store._put(key, body, IfMatch(etag), metadata=extra)
            except PreconditionFailedError as exc:
                cause = exc
                continue
            except TransientError:
                self._session_etag = None
                raise
            self._session_etag = None if written.superseded else written.etag
            return written
        raise PreconditionFailedError(
            "the session keeps changing under the lease",
            bucket=store.bucket,
            key=key,
            expected_etag=self._session_etag,
        )

    # -- renewal and release -------------------------------------------------------------

    async def renew(self) -> None:
        """Extend the lease (one conditional PUT); LeaseLostError if it was taken over.

        A transient error (or an unknown outcome) is checked with one GET and re-raised, so
        the background renewer tries again at its next tick.
        """
        self._check_usable()
        for _ in range(2):
            etag = self._etag
            assert etag is not None
            body, nonce = self._body(self.epoch)
            try:
                result = await self.store._put(self.key, body, IfMatch(etag))
            except PreconditionFailedError as exc:
                seen, _, _ = await self._read_lease()
                if not self._ours(seen):
                    raise self._lost_error("lease lost or taken over", seen) from exc
                assert seen is not None
                self._etag = seen.etag  # an earlier renewal of ours landed late
                continue
            except TransientError:
                seen, _, _ = await self._read_lease()
                if not self._ours(seen):
                    raise self._lost_error("lease lost or taken over", seen) from None
                assert seen is not None
                self._etag = seen.etag
                if seen.document.get("nonce") == nonce:
                    self.renewals += 1
                    return
                raise
            if result.superseded:
                seen, _, _ = await self._read_lease()
                if not self._ours(seen):
                    raise self._lost_error("lease lost or taken over", seen)
                assert seen is not None
                result = dataclasses.replace(result, etag=seen.etag)
            self._etag = result.etag
            self.renewals += 1
            return

    def start_renewing(self) -> None:
        """Renew every ttl/3 in the background until released (see :meth:`renew`)."""
        self._renewer = AsyncPeriodic(
            self.renew, self.ttl / 3, fatal=(LeaseLostError,), give_up_after=self.ttl
        )
        self._renewer.start()

    async def release(self) -> None:
        """Stop renewing (waiting for a renewal in flight) and mark the lease object
        released, keeping its epoch. Never raises a StoreError: a lease that cannot be
        released simply expires."""
        if self._renewer is not None:
            await self._renewer.stop()
            self._renewer = None
        if self._lost is None:
            await self._release_lease_object()
        self._etag = None

    async def _release_lease_object(self) -> None:
        if self._etag is None:
            return
        try:
            for _ in range(3):
                body, _ = self._body(self.epoch, released=True)
                try:
                    await self.store._put(self.key, body, IfMatch(self._etag))
                    self._etag = None
                    return
                except (PreconditionFailedError, TransientError):
                    seen, _, _ = await self._read_lease()
                    if not self._ours(seen):
                        return  # released (our unknown write landed) or someone else's now
                    assert seen is not None
                    self._etag = seen.etag
        except StoreError as exc:
            log.debug(
                "bucket=<%s> key=<%s> | lease release failed: %s", self.store.bucket, self.key, exc
            )


def _parse(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _valid_epoch(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCH


def _epoch(value: Any) -> int:
    return value if _valid_epoch(value) else 0
