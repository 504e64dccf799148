"""Change feeds (issue 20): ``watch`` (conditional GET, journal LIST) and ``watch_prefix``.

Polls are driven by a scripted sleep: each test replaces the watch module's ``asleep`` with
one that records the interval and makes the next change, so request counts per poll are
exact and nothing waits on the clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from s3store._async import watch as watch_module
from s3store._async.client import AsyncMemoryObjectClient
from s3store._async.store import AsyncS3SessionStore
from s3store.errors import ConfigurationError, NotModifiedError, translate_error
from s3store.keys import encode_v1_id
from s3store.models import SessionData
from s3store.testing import MemoryBackend
from s3store.types import SessionChange
from tests.conftest import BUCKET, Backend
from tests.helpers import session, with_message

Step = Callable[[], Awaitable[Any]]


def texts(data: SessionData | None) -> list[str]:
    assert data is not None
    return [m.content[0].text for m in data.messages]  # type: ignore[union-attr]


class Script:
    """Stands in for ``asleep`` in the watch module: records every interval and runs the
    next scripted step (None: an idle poll follows) before the watcher polls again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[Step | None] = []
        self.intervals: list[float] = []
        monkeypatch.setattr(watch_module, "asleep", self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.intervals.append(seconds)
        step = self.steps.pop(0) if self.steps else None
        if step is not None:
            await step()


def counts(store: AsyncS3SessionStore) -> dict[str, int]:
    """Requests by operation since the last call (then cleared)."""
    out = {op: n for op, n in store.stats.requests.items() if n}
    store.stats.requests.clear()
    return out


@pytest.fixture
def memory() -> MemoryBackend:
    backend = MemoryBackend()
    backend.create_bucket(BUCKET)
    return backend


def mem_store(memory: MemoryBackend, **kwargs: Any) -> AsyncS3SessionStore:
    return AsyncS3SessionStore(
        client=AsyncMemoryObjectClient(BUCKET, backend=memory), prefix="p", **kwargs
    )


# -- the seam: a conditional GET, on every backend ------------------------------------------


async def test_conditional_get_answers_not_modified(backend: Backend, prefix: str) -> None:
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as store:
        result = await store.save(session("s"))
        client = await store._object_client()
        key = f"{prefix}/s.json"
        counts(store)
        down = store.stats.bytes_down
        same = await client.get(key, if_none_match=result.etag)
        assert same is not None
        assert same.not_modified
        assert same.body == b""
        assert same.info.etag.strip('"') == result.etag.strip('"')
        # An unquoted ETag names the same version; a list naming it too.
        unquoted = await client.get(key, if_none_match=result.etag.strip('"'))
        assert unquoted is not None
        assert unquoted.not_modified
        other = await client.get(key, if_none_match='"0123456789abcdef0123456789abcdef"')
        assert other is not None
        assert not other.not_modified
        assert other.body == backend.raw_get(key)
        assert other.info.etag == result.etag
        assert await client.get(f"{prefix}/missing.json", if_none_match=result.etag) is None
        # Each is one GetObject; a 304 moves no body.
        assert counts(store) == {"GetObject": 4}
        assert store.stats.bytes_down - down == len(other.body)


async def test_memory_client_none_match_semantics(memory: MemoryBackend) -> None:
    client = AsyncMemoryObjectClient(BUCKET, backend=memory)
    put = await client.put("k", b"body")
    for header in (put.etag, f"W/{put.etag}", f'"nope", {put.etag}', "*"):
        got = await client.get("k", if_none_match=header)
        assert got is not None
        assert got.not_modified, header
        assert got.info.etag == put.etag
    got = await client.get("k", if_none_match='"nope"', range_end=2)
    assert got is not None
    assert (got.not_modified, got.body) == (False, b"bo")
    await client.put("k", b"changed")
    got = await client.get("k", if_none_match=put.etag)
    assert got is not None
    assert (got.not_modified, got.body) == (False, b"changed")


def test_botocore_304_maps_to_not_modified() -> None:
    import botocore.exceptions

    # What moto and SeaweedFS answer to a matching If-None-Match GetObject (checked).
    response: Any = {
        "Error": {"Code": "304", "Message": "Not Modified"},
        "ResponseMetadata": {"HTTPStatusCode": 304, "HTTPHeaders": {"etag": '"abc"'}},
    }
    exc = botocore.exceptions.ClientError(response, "GetObject")
    error = translate_error(exc, operation="get_object", bucket="b", key="k")
    assert isinstance(error, NotModifiedError)
    assert error.etag == '"abc"'


# -- watch, whole-document mode: one request per poll -----------------------------------------


async def test_whole_document_watch_costs_one_get_per_poll(
    memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, watcher = mem_store(memory), mem_store(memory)
    data = session("s", messages=0)
    await writer.save(data)
    script = Script(monkeypatch)
    feed = watcher.watch("s", min_interval=0.5, max_interval=2)
    first = await anext(feed)
    assert first is not None
    assert texts(first.value) == []
    assert counts(watcher) == {"GetObject": 1}
    down = watcher.stats.bytes_down

    data = with_message(data, "m0")

    async def write() -> None:
        await writer.save(data)

    script.steps = [None, None, None, write]
    got = await anext(feed)
    assert got is not None
    assert texts(got.value) == ["m0"]
    # Four polls: three idle 304s and the change itself (one GET each); only the change
    # moved a body.
    assert counts(watcher) == {"GetObject": 4}
    assert watcher.stats.bytes_down - down == len(memory.get(BUCKET, "p/s.json").body)  # type: ignore[union-attr]
    # Back-off: min_interval after a change, doubling per idle poll up to max_interval.
    assert script.intervals == [0.5, 0.5, 1, 2]

    async def delete() -> None:
        await writer.delete("s")

    script.steps = [delete]
    assert await anext(feed) is None
    assert counts(watcher) == {"GetObject": 1}  # a 404

    async def recreate() -> None:
        await writer.save(session("s", messages=1))

    # Nothing stored: nothing to name in If-None-Match, the idle poll is a plain GET (404).
    script.steps = [None, recreate]
    again = await anext(feed)
    assert again is not None
    assert len(again.value.messages) == 1
    assert counts(watcher) == {"GetObject": 2}


async def test_watch_skips_a_placeholder_and_a_rewrite_to_the_same_version(
    memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, watcher = mem_store(memory), mem_store(memory)
    script = Script(monkeypatch)
    feed = watcher.watch("s", min_interval=0.1, max_interval=0.1)
    assert await anext(feed) is None
    assert counts(watcher) == {"GetObject": 1}

    async def placeholder() -> None:
        memory.raw_put(BUCKET, "p/s.json", json.dumps({"s3store_placeholder": True}).encode())

    async def save() -> None:
        await writer.save(session("s"))

    script.steps = [placeholder, None, save]
    got = await anext(feed)
    assert got is not None
    # The placeholder was a change of the object but not of the session: not yielded.
    assert counts(watcher) == {"GetObject": 3}


async def test_watch_rejects_bad_intervals(memory: MemoryBackend) -> None:
    with pytest.raises(ConfigurationError):
        await anext(mem_store(memory).watch("s", min_interval=2, max_interval=1))


# -- watch, journal mode: one LIST + one conditional GET per poll -----------------------------


async def test_journal_watch_request_counts(
    memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = mem_store(memory, journal=True, journal_compact_every=100)
    watcher = mem_store(memory, journal=True)
    data = session("s", messages=0)
    await writer.save(data)
    script = Script(monkeypatch)
    feed = watcher.watch("s", min_interval=0.5, max_interval=8)
    assert texts((await anext(feed)).value) == []  # type: ignore[union-attr]
    # First read: the document, then its incarnation's deltas (none).
    assert counts(watcher) == {"GetObject": 1, "ListObjectsV2": 1}

    async def append(name: str) -> None:
        nonlocal data
        data = with_message(data, name)
        await writer.save(data)

    script.steps = [None, lambda: append("m0")]
    got = await anext(feed)
    assert texts(got.value if got else None) == ["m0"]
    # An idle poll (LIST + 304), then the change: LIST + 304 + the new delta's GET.
    assert counts(watcher) == {"ListObjectsV2": 2, "GetObject": 3}

    script.steps = [lambda: append("m1")]
    got = await anext(feed)
    assert texts(got.value if got else None) == ["m0", "m1"]
    # Only the new delta is read, not the ones the watcher already applied.
    assert counts(watcher) == {"ListObjectsV2": 1, "GetObject": 2}

    async def compact() -> None:
        assert await writer.compact("s") == 2

    # A compaction rewrites the document (a 200 instead of a 304) but not the session: not
    # yielded; the next delta is read on top of the compacted document.
    script.steps = [compact, lambda: append("m2")]
    got = await anext(feed)
    assert texts(got.value if got else None) == ["m0", "m1", "m2"]
    assert got is not None
    assert got.etag == (await writer.load_versioned("s")).etag  # type: ignore[union-attr]
    assert counts(watcher) == {"ListObjectsV2": 2, "GetObject": 2 + 1}

    async def delete() -> None:
        await writer.delete("s")

    script.steps = [delete]
    assert await anext(feed) is None
    assert counts(watcher) == {"ListObjectsV2": 1, "GetObject": 1}

    async def recreate() -> None:
        await writer.save(session("s", messages=0))

    # No document: an idle poll is one GET (nothing to list deltas of); a new incarnation
    # costs its GET and the LIST of its deltas.
    script.steps = [None, recreate]
    got = await anext(feed)
    assert texts(got.value if got else None) == []
    assert counts(watcher) == {"GetObject": 2, "ListObjectsV2": 1}


async def test_journal_watch_sees_a_whole_document_rewrite(
    memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document-only change (a new incarnation, no delta) is seen by the conditional GET."""
    journaled = mem_store(memory, journal=True)
    whole = mem_store(memory)
    watcher = mem_store(memory, journal=True)
    data = with_message(session("s", messages=0), "j")
    await journaled.save(session("s", messages=0))
    await journaled.save(data)
    script = Script(monkeypatch)
    feed = watcher.watch("s", min_interval=0.1, max_interval=0.1)
    assert texts((await anext(feed)).value) == ["j"]  # type: ignore[union-attr]

    async def rewrite() -> None:
        await whole.save(with_message(session("s", messages=0), "w"))

    script.steps = [rewrite]
    got = await anext(feed)
    assert texts(got.value if got else None) == ["w"]


# -- watch_prefix ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["legacy", "v1"])
async def test_watch_prefix_reports_sessions_appearing_and_disappearing(
    backend: Backend, prefix: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = backend.store_kwargs(prefix, layout=layout)
    async with (
        AsyncS3SessionStore(**kwargs) as writer,
        AsyncS3SessionStore(**backend.store_kwargs(prefix, layout=layout)) as watcher,
    ):
        await writer.save(session("old"))
        await writer.save_trace_events("old", [])  # a sidecar is no session
        script = Script(monkeypatch)
        feed = watcher.watch_prefix(min_interval=0.5, max_interval=2, existing=True, removals=True)
        assert await anext(feed) == SessionChange("old", True)
        assert counts(watcher) == {"ListObjectsV2": 1}

        placeholder = json.dumps({"s3store_placeholder": True}).encode()
        name = "a_b" if layout == "legacy" else f"v1/sessions/id_{encode_v1_id('a/b')}"
        key = f"{prefix}/{name}.json"

        async def add_placeholder() -> None:
            backend.raw_put(key, placeholder)

        async def save_over_it() -> None:
            await writer.save(session("a/b"))

        # A lease placeholder is no session: it appears when a session replaces it.
        script.steps = [None, add_placeholder, None, save_over_it]
        got = await anext(feed)
        assert got == SessionChange("a_b" if layout == "legacy" else "a/b", True)
        # One listing (one page) per poll, the placeholder told by its size, never read.
        assert counts(watcher) == {"ListObjectsV2": 4}
        assert script.intervals == [0.5, 0.5, 1, 2]

        async def swap() -> None:
            await writer.delete("old")
            await writer.save(session("new"))

        script.steps = [swap]
        assert [await anext(feed), await anext(feed)] == [
            SessionChange("new", True),
            SessionChange("old", False),
        ]
        assert counts(watcher) == {"ListObjectsV2": 1}


async def test_watch_prefix_pages_and_defaults(
    memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = mem_store(memory)
    watcher = mem_store(memory, list_page_size=2)
    for n in range(4):
        await writer.save(session(f"s{n}"))
    script = Script(monkeypatch)

    async def add() -> None:
        await writer.save(session("s4"))

    async def remove() -> None:
        await writer.delete("s0")

    # Defaults: existing sessions are the baseline, removals are not reported.
    script.steps = [None, remove, add]
    feed = watcher.watch_prefix(min_interval=0.25, max_interval=1)
    assert await anext(feed) == SessionChange("s4", True)
    # Four polls of two pages each (four sessions, then three, then four again).
    assert counts(watcher) == {"ListObjectsV2": 8}


async def test_watch_prefix_in_journal_mode(
    memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = mem_store(memory, journal=True, journal_compact_every=100)
    watcher = mem_store(memory, journal=True)
    data = session("s", messages=0)
    await writer.save(data)
    script = Script(monkeypatch)

    async def append_and_add() -> None:
        await writer.save(with_message(data, "m"))  # a delta: the journal/ folder
        await writer.save(session("t", messages=0))

    script.steps = [append_and_add]
    feed = watcher.watch_prefix(min_interval=0.5, max_interval=1)
    assert await anext(feed) == SessionChange("t", True)
    assert counts(watcher) == {"ListObjectsV2": 2}


async def test_watch_prefix_rejects_bad_intervals(memory: MemoryBackend) -> None:
    feed: AsyncIterator[SessionChange] = mem_store(memory).watch_prefix(min_interval=0)
    with pytest.raises(ConfigurationError):
        await anext(feed)
