"""Single-writer leases with fencing, on S3 conditions alone.

S3 conditions cover one key, and an ETag depends only on the bytes. So a lease cannot make
writes to *other* keys conditional on it; instead the session document itself is fenced:

1. The lease object ``<prefix>/leases/<id>.json`` is created create-only (epoch 1), or an
   expired one is taken over with If-Match on its ETag (epoch + 1). Expiry compares the
   lease object's ``Last-Modified`` with the ``Date`` of the server's response: both are the
   server's clock, so workers' clocks never need to agree.
2. Right after acquiring, the holder *fences* the session: it rewrites the session document
   with a top-level ``"s3store_fence": {"holder": …, "epoch": …}`` member, by
   compare-and-swap. The bytes change, so the ETag changes, so every write a previous holder
   makes with the ETag it last saw fails, even if the new holder has written nothing else.
   The Rust agent ignores the unknown member (``SessionData`` does not deny unknown fields).
3. Writes under the lease (``store.save(session, lease=lease)``) are If-Match on the last
   ETag this holder wrote or read. A precondition failure is checked against the lease
   object: if another holder now owns it, the error is LeaseLostError.
4. A background task renews the lease (If-Match rewrite) every ttl/3; release deletes it
   (conditionally where the server supports conditional delete).

Cost: acquire is 1 PUT (+1 GET +1 PUT on takeover) plus the fence (1 GET + 1 PUT if the
session exists); each write under the lease is the one PUT it always was; renewals are one
PUT per ttl/3.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from s3store._backends import AsyncPeriodic
from s3store.errors import (
    AlreadyExistsError,
    ConflictError,
    LeaseHeldError,
    LeaseLostError,
    PreconditionFailedError,
    StoreError,
)
from s3store.models import SessionData
from s3store.types import IfMatch, PutMode, PutResult

if TYPE_CHECKING:
    from s3store._async.store import AsyncS3SessionStore

FENCE_KEY = "s3store_fence"
LEASE_SCHEMA = "s3store.session-lease.v1"
_CLOCK_RESOLUTION = timedelta(seconds=1)
_FENCE_ATTEMPTS = 50


class AsyncLease:
    """A held lease on one session. Obtain it with ``store.lease(id, holder=..., ttl=...)``.

    Attributes:
        id: the session id.
        holder: this holder's name.
        epoch: the fencing epoch; it increases on every takeover.
    """

    def __init__(self, store: AsyncS3SessionStore, id: str, *, holder: str, ttl: float) -> None:
        if not holder.strip():
            raise ValueError("lease holder must not be blank")
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.store = store
        self.id = id
        self.holder = holder
        self.ttl = ttl
        self.epoch = 0
        self.key = store.layout.lease_key(id)
        self._etag: str | None = None
        self._session_etag: str | None = None
        self._renewer: AsyncPeriodic | None = None
        self._lost: LeaseLostError | None = None
        self.renewals = 0

    def __repr__(self) -> str:
        return f"AsyncLease(id={self.id!r}, holder={self.holder!r}, epoch={self.epoch})"

    def _body(self, epoch: int) -> bytes:
        document = {
            "schema": LEASE_SCHEMA,
            "holder": self.holder,
            "epoch": epoch,
            "ttl_ms": int(self.ttl * 1000),
            "nonce": uuid.uuid4().hex,
        }
        return json.dumps(document, indent=2).encode()

    async def acquire(self) -> None:
        """Take the lease: create it, or take over an expired one. LeaseHeldError if held."""
        try:
            result = await self.store._put(self.key, self._body(1), "create")
            self.epoch = 1
        except AlreadyExistsError:
            result = await self._take_over()
        self._etag = result.etag
        await self._fence()

    async def _take_over(self) -> PutResult:
        client = await self.store._object_client()
        got = await client.get(self.key)
        if got is None:
            # Released between our create and this read: try a fresh create once more.
            result = await self.store._put(self.key, self._body(1), "create")
            self.epoch = 1
            return result
        current = _parse(got.body)
        modified = got.info.last_modified
        now = got.info.server_time or datetime.now(UTC)
        ttl_ms = int(current.get("ttl_ms", 0))
        # HTTP dates have one-second resolution and both are truncated, so a lease could look
        # up to a second older than it is: add that second before calling it expired.
        expires = (
            modified + timedelta(milliseconds=ttl_ms) + _CLOCK_RESOLUTION if modified else None
        )
        expired = expires is None or expires <= now
        if not expired and current.get("holder") != self.holder:
            raise LeaseHeldError(
                f"lease held by {current.get('holder')!r} (epoch {current.get('epoch')}) "
                f"until {expires}",
                bucket=self.store.bucket,
                key=self.key,
            )
        epoch = int(current.get("epoch", 0)) + 1
        try:
            result = await self.store._put(self.key, self._body(epoch), IfMatch(got.info.etag))
        except PreconditionFailedError as exc:
            raise LeaseHeldError(
                "another holder took the lease over first", bucket=self.store.bucket, key=self.key
            ) from exc
        self.epoch = epoch
        return result

    def _fenced(self, session: SessionData) -> SessionData:
        fenced = session.model_copy()
        extra = dict(fenced.__pydantic_extra__ or {})
        extra[FENCE_KEY] = {"holder": self.holder, "epoch": self.epoch}
        fenced.__pydantic_extra__ = extra
        return fenced

    async def _fence(self) -> None:
        """Rewrite the session document with this epoch, so stale holders' ETags go stale."""
        store = self.store
        key = store.layout.session_key(self.id)
        for _ in range(_FENCE_ATTEMPTS):
            current = await store.load_versioned(self.id)
            if current is None:
                self._session_etag = None
                return
            body = store._encode(self._fenced(current.value), key)
            try:
                result = await store._put(key, body, IfMatch(current.etag))
            except PreconditionFailedError:
                continue  # a stale holder wrote in between; read again and fence again
            self._session_etag = result.etag
            return
        raise LeaseHeldError(
            f"could not fence the session in {_FENCE_ATTEMPTS} attempts: "
            "another writer keeps replacing it",
            bucket=store.bucket,
            key=key,
        )

    async def save_session(self, session: SessionData) -> PutResult:
        """Write the session under this lease (what ``store.save(..., lease=...)`` calls)."""
        if self._lost is not None:
            raise self._lost
        if session.id != self.id:
            raise ValueError(f"lease is for session {self.id!r}, not {session.id!r}")
        store = self.store
        key = store.layout.session_key(self.id)
        mode: PutMode = IfMatch(self._session_etag) if self._session_etag else "create"
        try:
            result = await store._put(key, store._encode(self._fenced(session), key), mode)
        except ConflictError as exc:
            await self._check_still_held(exc)
            raise
        self._session_etag = result.etag
        return result

    async def _check_still_held(self, cause: BaseException | None = None) -> None:
        client = await self.store._object_client()
        got = await client.get(self.key)
        current = _parse(got.body) if got is not None else {}
        if (
            got is None
            or current.get("holder") != self.holder
            or current.get("epoch") != self.epoch
        ):
            self._lost = LeaseLostError(
                "lease lost or taken over",
                bucket=self.store.bucket,
                key=self.key,
                holder=self.holder,
                epoch=self.epoch,
                current_holder=current.get("holder"),
                current_epoch=current.get("epoch"),
            )
            raise self._lost from cause

    async def renew(self) -> None:
        """Extend the lease (one conditional PUT); LeaseLostError if it was taken over."""
        if self._etag is None:
            raise LeaseLostError("lease is not held", bucket=self.store.bucket, key=self.key)
        try:
            result = await self.store._put(self.key, self._body(self.epoch), IfMatch(self._etag))
        except PreconditionFailedError as exc:
            await self._check_still_held(exc)
            raise
        self._etag = result.etag
        self.renewals += 1

    def start_renewing(self) -> None:
        """Renew every ttl/3 in the background until released."""
        self._renewer = AsyncPeriodic(self.renew, self.ttl / 3)
        self._renewer.start()

    async def release(self) -> None:
        """Stop renewing and delete the lease object if this holder still owns it."""
        if self._renewer is not None:
            await self._renewer.stop()
            self._renewer = None
        if self._etag is None or self._lost is not None:
            return
        client = await self.store._object_client()
        caps = await self.store._conditions()
        try:
            if caps.conditional_delete:
                await client.delete(self.key, if_match=self._etag)
            else:
                # No conditional delete on this server: check, then delete (a small window in
                # which a takeover could be undone; the new holder's fence still holds).
                info = await client.head(self.key)
                if info is not None and info.etag == self._etag:
                    await client.delete(self.key)
        except (PreconditionFailedError, StoreError):
            pass
        self._etag = None


def _parse(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
