"""Regression tests for the blob pool's promises (issue 13) and unknown write outcomes (issue 14).

Each test replays, deterministically on the in-memory backend with an injected server clock,
one interleaving the fleet simulator (tests/sim) found breaking a promise before the fix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from s3store import cas
from s3store._async.client import AsyncMemoryObjectClient
from s3store._async.store import AsyncS3SessionStore
from s3store.errors import (
    ConfigurationError,
    IntegrityError,
    OutcomeUnknownError,
    PreconditionFailedError,
    StoreError,
    TransientError,
    UnsupportedBackendError,
)
from s3store.keys import blob_key_suffix
from s3store.models import SessionData
from s3store.testing import MemoryBackend
from s3store.types import PutResult
from tests.helpers import artifacts, session, with_message

CONTENT = "a tool output long enough to become a blob " * 200
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The server's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(clock: Clock) -> MemoryBackend:
    backend = MemoryBackend(clock=clock)
    backend.create_bucket("b")
    return backend


def store_on(client: Any, layout: str = "legacy") -> AsyncS3SessionStore:
    return AsyncS3SessionStore("b", "p", client=client, layout=layout)  # type: ignore[arg-type]


def memory(backend: MemoryBackend) -> AsyncMemoryObjectClient:
    return AsyncMemoryObjectClient("b", backend=backend, create=False)


def blob_key(digest: str) -> str:
    return f"p/{blob_key_suffix(digest)}"


DIGEST = cas.blake3_hex(CONTENT.encode())


class HookClient(AsyncMemoryObjectClient):
    """A memory client that runs a hook right before a chosen request."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__("b", backend=backend, create=False)
        self.before_delete: Callable[[], Awaitable[None]] | None = None
        self.put_hook: Callable[[str, bytes, Mapping[str, str] | None], Awaitable[Any]] | None = (
            None
        )

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        hook = self.before_delete if "/blobs/" in key else None
        if hook is not None:
            self.before_delete = None
            await hook()
        await super().delete(key, if_match=if_match)


# -- 13.1: the known-blob set outlives gc's grace -------------------------------------------


async def test_known_blob_older_than_reuse_window_is_re_uploaded(
    backend: MemoryBackend, clock: Clock
) -> None:
    writer = store_on(memory(backend))
    await writer.save_artifacts("s1", artifacts(CONTENT))
    clock.advance(days=2)
    # A long-lived process reads s1: it now "knows" a blob that is two days old.
    reader = store_on(memory(backend))
    assert await reader.load_artifacts("s1") is not None
    await writer.delete("s1")
    report = await store_on(memory(backend)).gc(allow_no_manifests=True)
    assert report.deleted == 1
    await reader.save_artifacts("s2", artifacts(CONTENT))
    # The old knowledge was not trusted: the blob was uploaded again.
    fresh = store_on(memory(backend))
    loaded = await fresh.load_artifacts("s2")
    assert loaded is not None
    assert loaded.artifacts[0].content == CONTENT


async def test_warm_blob_costs_no_request(backend: MemoryBackend, clock: Clock) -> None:
    store = store_on(memory(backend))
    await store.save_artifacts("s1", artifacts(CONTENT))
    before = store.stats.total_requests
    clock.advance(seconds=30)
    await store.save_artifacts("s2", artifacts(CONTENT))
    assert store.stats.total_requests - before == 1  # the manifest only


# -- 13.2: a 412 "already there" inside gc's window --------------------------------------------


async def test_reused_old_blob_survives_a_concurrent_gc(
    backend: MemoryBackend, clock: Clock
) -> None:
    await store_on(memory(backend)).save_artifacts("old", artifacts(CONTENT))
    await store_on(memory(backend)).delete("old")
    clock.advance(days=2)
    gc_client = HookClient(backend)
    writer = store_on(memory(backend))

    async def writer_saves_between_listing_and_delete() -> None:
        await writer.save_artifacts("new", artifacts(CONTENT))

    gc_client.before_delete = writer_saves_between_listing_and_delete
    # Someone's manifest must exist, or gc refuses (13.3).
    await store_on(memory(backend)).save_artifacts("other", artifacts("short"))
    report = await store_on(gc_client).gc()
    # gc listed the old version; the writer's 412 led to a re-upload with a new ETag, so the
    # If-Match delete failed and the blob was kept.
    assert report.deleted == 0
    assert report.kept_refreshed == 1
    loaded = await store_on(memory(backend)).load_artifacts("new")
    assert loaded is not None
    assert loaded.artifacts[0].content == CONTENT


async def test_manifest_landing_late_re_uploads_its_blobs(
    backend: MemoryBackend, clock: Clock
) -> None:
    writer = store_on(memory(backend))
    await writer.save_artifacts("s1", artifacts(CONTENT))
    uploads_before = writer.stats.requests["PutObject"]
    # The writer stalls (paused) between its blob check and the manifest PUT for longer
    # than the gc floor: the PUT lands late, and the writer re-uploads before answering.
    original_put = backend.put

    def late_put(*args: Any, **kwargs: Any) -> PutResult:
        if args[1].endswith("artifacts.json"):
            clock.advance(hours=2)
        return original_put(*args, **kwargs)

    backend.put = late_put  # type: ignore[method-assign]
    await writer.save_artifacts("s2", artifacts(CONTENT))
    backend.put = original_put  # type: ignore[method-assign]
    assert writer.stats.requests["PutObject"] - uploads_before == 2  # manifest + repair
    head = backend.head("b", blob_key(DIGEST))
    assert head is not None
    assert head.last_modified == clock.now


# -- 13.3: gc marks every layout, refuses an empty mark -----------------------------------


async def test_gc_of_one_layout_keeps_the_other_layouts_blobs(
    backend: MemoryBackend, clock: Clock
) -> None:
    await store_on(memory(backend), "v1").save_artifacts("s", artifacts(CONTENT))
    await store_on(memory(backend), "legacy").save_artifacts("t", artifacts("x" * 5000))
    clock.advance(days=3)
    for layout in ("legacy", "v1"):
        report = await store_on(memory(backend), layout).gc()
        assert report.deleted == 0
        assert report.manifests == 2
    assert await store_on(memory(backend), "v1").load_artifacts("s") is not None


async def test_gc_refuses_blobs_without_any_manifest(backend: MemoryBackend, clock: Clock) -> None:
    store = store_on(memory(backend))
    await store.save_artifacts("s", artifacts(CONTENT))
    backend.delete("b", "p/artifacts/s/artifacts.json")
    clock.advance(days=3)
    with pytest.raises(ConfigurationError, match="no artifact manifest"):
        await store.gc()
    assert backend.head("b", blob_key(DIGEST)) is not None
    report = await store.gc(allow_no_manifests=True)
    assert report.deleted == 1


async def test_gc_grace_has_a_floor(backend: MemoryBackend) -> None:
    with pytest.raises(ConfigurationError, match="below the floor"):
        await store_on(memory(backend)).gc(grace=timedelta(minutes=5))


async def test_gc_needs_conditional_delete_unless_exclusive(clock: Clock) -> None:
    backend = MemoryBackend(clock=clock, conditional_delete=False)
    backend.create_bucket("b")
    store = store_on(memory(backend))
    await store.save_artifacts("s", artifacts(CONTENT))
    with pytest.raises(UnsupportedBackendError, match="conditional delete"):
        await store.gc()
    report = await store.gc(exclusive=True)
    assert report.deleted == 0


# -- 13.4: a corrupt blob can be repaired ---------------------------------------------------


async def test_a_store_that_saw_corruption_replaces_the_blob(
    backend: MemoryBackend, clock: Clock
) -> None:
    await store_on(memory(backend)).save_artifacts("s1", artifacts(CONTENT))
    backend.raw_put("b", blob_key(DIGEST), b"bit rot")
    reader = store_on(memory(backend))
    with pytest.raises(IntegrityError):
        await reader.load_artifacts("s1")
    await reader.save_artifacts("s2", artifacts(CONTENT))
    loaded = await store_on(memory(backend)).load_artifacts("s1")
    assert loaded is not None
    assert loaded.artifacts[0].content == CONTENT


async def test_repair_blobs_replaces_only_damaged_ones(backend: MemoryBackend) -> None:
    store = store_on(memory(backend))
    good = "another long output " * 300
    await store.save_artifacts("s1", artifacts(CONTENT, good))
    backend.raw_put("b", blob_key(DIGEST), b"bit rot")
    replaced = await store_on(memory(backend)).repair_blobs([CONTENT.encode(), good.encode()])
    assert replaced == [DIGEST]
    assert (await store_on(memory(backend)).fsck()).ok


async def test_legacy_blobs_without_trailer_still_read(backend: MemoryBackend) -> None:
    store = store_on(memory(backend))
    await store.save_artifacts("s1", artifacts(CONTENT))
    backend.raw_put("b", blob_key(DIGEST), CONTENT.encode())
    loaded = await store_on(memory(backend)).load_artifacts("s1")
    assert loaded is not None
    assert loaded.artifacts[0].content == CONTENT


def test_each_upload_has_its_own_bytes() -> None:
    first, second = cas.blob_trailer(), cas.blob_trailer()
    assert first != second
    body = b"content" + first
    assert cas.blob_payload(body) == b"content"
    assert cas.open_blob(body, cas.blake3_hex(b"content")) == b"content"
    assert cas.open_blob(body, cas.blake3_hex(b"other")) is None


# -- 14.3: conditional delete on a server that ignores it -----------------------------------


async def test_conditional_delete_refused_where_the_server_ignores_it(clock: Clock) -> None:
    backend = MemoryBackend(clock=clock, ignore_conditional_delete=True)
    backend.create_bucket("b")
    store = store_on(memory(backend))
    await store.save(session("s"))
    with pytest.raises(UnsupportedBackendError, match="conditional delete refused"):
        await store.delete("s", if_match='"0000"')
    assert await store.load("s") is not None


# -- 14.4: update() applies fn at most once ---------------------------------------------------


class LostAnswerClient(AsyncMemoryObjectClient):
    """Applies the first conditional PUT, loses its answer, lets ``meanwhile`` run, then
    re-sends the same request as botocore's retry does and reports the retry's answer."""

    def __init__(self, backend: MemoryBackend, meanwhile: Callable[[], Awaitable[Any]]) -> None:
        super().__init__("b", backend=backend, create=False)
        self.meanwhile: Callable[[], Awaitable[Any]] | None = meanwhile

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        hook, self.meanwhile = self.meanwhile, None
        if hook is None or not (if_match or if_none_match):
            return await super().put(
                key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
            )
        await super().put(
            key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
        )
        await hook()
        try:
            return await super().put(
                key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
            )
        except StoreError as exc:
            exc.retried = True
            raise


def appender(text: str, calls: list[str]) -> Callable[[SessionData | None], SessionData]:
    def fn(current: SessionData | None) -> SessionData:
        calls.append(text)
        assert current is not None
        return with_message(current, text)

    return fn


def texts(data: SessionData | None) -> list[str]:
    assert data is not None
    return [m.content[0].text for m in data.messages]  # type: ignore[union-attr]


async def test_lost_answer_then_other_writer_is_not_applied_twice(backend: MemoryBackend) -> None:
    setup = store_on(memory(backend))
    await setup.save(session("s", messages=0))
    other = store_on(memory(backend))
    calls: list[str] = []

    async def other_updates() -> None:
        await other.update("s", appender("B", []))

    store = store_on(LostAnswerClient(backend, other_updates))
    result = await store.update("s", appender("A", calls))
    assert calls == ["A"]
    assert result.superseded
    assert texts(await setup.load("s")) == ["A", "B"]


async def test_unknowable_outcome_is_reported_not_retried(backend: MemoryBackend) -> None:
    setup = store_on(memory(backend))
    await setup.save(session("s", messages=0))
    calls: list[str] = []

    async def someone_overwrites() -> None:
        # A writer that keeps no history (plain overwrite): the trail is broken.
        current = await setup.load("s")
        backend.put("b", "p/s.json", _dump(with_message(current, "B")))  # type: ignore[arg-type]

    store = store_on(LostAnswerClient(backend, someone_overwrites))
    with pytest.raises(OutcomeUnknownError, match="outcome unknown"):
        await store.update("s", appender("A", calls))
    assert calls == ["A"]  # fn never ran again
    assert isinstance(OutcomeUnknownError("x"), TransientError)


async def test_single_attempt_412_is_a_definite_conflict(backend: MemoryBackend) -> None:
    store = store_on(memory(backend))
    await store.save(session("s"))
    with pytest.raises(PreconditionFailedError):
        await store.save(session("s"), mode=_if_match('"stale"'))


# -- 14.5: async errors are typed --------------------------------------------------------------


class FailingBlobClient(AsyncMemoryObjectClient):
    async def put(self, key: str, body: bytes, **kwargs: Any) -> PutResult:
        if "/blobs/" in key:
            raise TransientError("PutObject failed: SlowDown", bucket="b", key=key, code="SlowDown")
        return await super().put(key, body, **kwargs)


async def test_concurrent_failures_raise_one_typed_error(backend: MemoryBackend) -> None:
    store = store_on(FailingBlobClient("b", backend=backend, create=False))
    with pytest.raises(StoreError) as caught:
        await store.save_artifacts("s", artifacts(CONTENT, "another long text " * 300))
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert isinstance(caught.value.__cause__, BaseExceptionGroup)


def _dump(data: SessionData) -> bytes:
    from s3store import codec

    return codec.dumps(data)


def _if_match(etag: str) -> Any:
    from s3store.types import IfMatch

    return IfMatch(etag)


# -- 18: an error from the capability probe names the caller's key, not the scratch key -----


async def test_probe_failure_names_the_callers_key() -> None:
    backend = MemoryBackend(ignore_conditions=True)  # forces a real probe
    store = store_on(AsyncMemoryObjectClient("b", backend=backend, create=False))
    with pytest.raises(StoreError) as caught:
        await store.save(session("s1"), mode="create")
    assert caught.value.key == "p/s1.json"
    assert "conditional put on this key could not run" in str(caught.value)
