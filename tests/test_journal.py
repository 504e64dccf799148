"""Journal mode (issue 20): deltas, compaction, crash safety, unknown outcomes, export, watch."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from s3store import S3SessionStore, codec
from s3store._async.client import AsyncMemoryObjectClient
from s3store._async.lease import is_placeholder
from s3store._async.store import AsyncS3SessionStore
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    LeaseLostError,
    OutcomeUnknownError,
    PreconditionFailedError,
    TransientError,
)
from s3store.models import RunRecord, SessionData, TraceEvent
from s3store.testing import MemoryBackend
from s3store.transfer import export_dir
from s3store.types import IfMatch, ObjectInfo, PutResult
from tests import helpers
from tests.conftest import Backend
from tests.helpers import session, with_message


def texts(data: SessionData | None) -> list[str]:
    assert data is not None
    return [m.content[0].text for m in data.messages]  # type: ignore[union-attr]


def grow(data: SessionData, *names: str) -> SessionData:
    for name in names:
        data = with_message(data, name)
    return data


# -- on every backend (memory, moto, SeaweedFS) ---------------------------------------------


def test_journal_round_trip_matches_whole_document_bytes(backend: Backend, prefix: str) -> None:
    journal = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=4))
    whole = S3SessionStore(**backend.store_kwargs(prefix + "-whole"))
    data = session("s1", messages=0)
    for n in range(10):
        data = with_message(data, f"turn {n}")
        journal.save(data)
        whole.save(data)
    fresh = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    loaded = fresh.load("s1")
    assert loaded is not None
    assert codec.dumps(loaded) == backend.raw_get(f"{prefix}-whole/s1.json")
    # Compaction every 4 deltas: seq 8 folded, delta 9 and 10 pending.
    deltas = backend.raw_keys(f"{prefix}/journal/")
    assert len(deltas) == 1  # seq 9 (saves 2..10 are deltas 1..9; 8 folded)
    # A reader that knows nothing of journals sees the document as of the last compaction.
    plain = S3SessionStore(**backend.store_kwargs(prefix))
    stale = plain.load("s1")
    assert stale is not None
    assert len(stale.messages) == 9
    assert fresh.compact("s1") == 1
    assert backend.raw_get(f"{prefix}/s1.json") == backend.raw_get(f"{prefix}-whole/s1.json")
    assert backend.raw_keys(f"{prefix}/journal/") == []
    assert fresh.list() == ["s1"]
    assert fresh.fsck().problems == []


def test_turn_costs_are_constant(backend: Backend, prefix: str) -> None:
    store = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=1000))
    data = session("s1", messages=0)
    store.save(data)
    costs = []
    for n in range(30):
        data = with_message(data, f"turn {n}")
        before = store.stats.total_requests
        store.save(data)
        costs.append(store.stats.total_requests - before)
    assert set(costs) == {2}  # the delta PUT and the confirming HEAD
    fresh = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    loaded = fresh.load("s1")
    assert texts(loaded) == [f"turn {n}" for n in range(30)]
    # The load: GET + LIST + one GET per delta.
    assert fresh.stats.total_requests == 1 + 1 + 30


def test_if_match_and_update_conflict_like_whole_documents(backend: Backend, prefix: str) -> None:
    a = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    b = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    a.save(session("s", messages=0))
    va, vb = a.load_versioned("s"), b.load_versioned("s")
    assert va is not None
    assert vb is not None
    assert va.etag == vb.etag
    a.save(with_message(va.value, "A"), mode=IfMatch(va.etag))
    with pytest.raises(PreconditionFailedError):
        b.save(with_message(vb.value, "B"), mode=IfMatch(vb.etag))
    b.update("s", lambda cur: with_message(cur, "B"))  # type: ignore[arg-type]
    assert texts(a.load("s")) == ["A", "B"]


def test_export_of_journaled_bucket_equals_whole_document_export(
    backend: Backend, prefix: str, tmp_path: Path
) -> None:
    journal = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=3))
    whole = S3SessionStore(**backend.store_kwargs(prefix + "-whole"))
    for id in ("s1", "s2"):
        data = session(id, messages=0)
        events: list[TraceEvent] = []
        records: list[RunRecord] = []
        for n in range(5):
            data = with_message(data, f"{id} {n}")
            events, records = [*events, event(n)], [*records, record(n)]
            for store in (journal, whole):
                store.save(data)
                store.save_trace_events(id, events)
                store.save_run_records(id, records)
    for folder in ("s1/", "s1/traces/", "s1/runs/"):  # deltas pending, sidecars' too
        assert backend.raw_keys(f"{prefix}/journal/{folder}")
    # Exported by a store that does not even use journal mode: still folded.
    export_dir(S3SessionStore(**backend.store_kwargs(prefix)), tmp_path / "j")
    export_dir(whole, tmp_path / "w")
    files = sorted(str(p.relative_to(tmp_path / "w")) for p in (tmp_path / "w").rglob("*.json"))
    assert files == sorted(
        str(p.relative_to(tmp_path / "j")) for p in (tmp_path / "j").rglob("*.json")
    )
    assert files == [
        "runs/s1.json",
        "runs/s2.json",
        "s1.json",
        "s2.json",
        "traces/s1.json",
        "traces/s2.json",
    ]
    for name in files:
        assert (tmp_path / "j" / name).read_bytes() == (tmp_path / "w" / name).read_bytes()


@pytest.mark.parametrize("journal", [True, False])
def test_watch_follows_another_writer(backend: Backend, prefix: str, journal: bool) -> None:
    kwargs = backend.store_kwargs(prefix, journal=journal, journal_compact_every=2)
    writer = S3SessionStore(**kwargs)
    watcher = S3SessionStore(**backend.store_kwargs(prefix, journal=journal))
    data = session("s", messages=0)
    writer.save(data)
    feed = watcher.watch("s", min_interval=0.01, max_interval=0.05)
    first = next(feed)
    assert first is not None
    assert texts(first.value) == []
    seen: list[list[str]] = []
    for n in range(3):  # the second save compacts (journal): watch sees through it
        data = with_message(data, f"m{n}")
        writer.save(data)
        got = next(feed)
        assert got is not None
        seen.append(texts(got.value))
    assert seen == [["m0"], ["m0", "m1"], ["m0", "m1", "m2"]]


def _fence_of(raw: bytes | None) -> dict[str, Any]:
    assert raw is not None
    fence = json.loads(raw)["s3store_fence"]
    assert isinstance(fence, dict)
    return fence


@pytest.mark.parametrize("compacted", [False, True])
def test_journal_lease_takeover_fences_the_old_holder(
    backend: Backend, prefix: str, compacted: bool
) -> None:
    old = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=1000))
    new = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=1000))
    old.save(session("s", messages=0))
    with old.lease("s", holder="pod", renew=False) as stale:
        old.update("s", lambda cur: with_message(cur, "A1"), lease=stale)  # type: ignore[arg-type]
        # The same holder name in another process takes over at once (epoch 2).
        with new.lease("s", holder="pod", renew=False) as fresh:
            assert fresh.epoch == stale.epoch + 1
            if compacted:
                # The fence delta is folded and deleted: the stale holder's next seq is free
                # again, and the confirming HEAD (the fold record) voids its re-creation.
                assert new.compact("s") >= 1
            current = old.load("s")
            assert current is not None
            with pytest.raises(LeaseLostError):
                old.save(with_message(current, "stale-save"), lease=stale)
            with pytest.raises(LeaseLostError):
                old.update("s", lambda cur: with_message(cur, "stale-update"), lease=stale)  # type: ignore[arg-type]
            new.update("s", lambda cur: with_message(cur, "B1"), lease=fresh)  # type: ignore[arg-type]
    fresh_reader = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    loaded = fresh_reader.load("s")
    assert texts(loaded) == ["A1", "B1"]  # the write linearised before the fence counts
    assert loaded is not None
    assert (loaded.__pydantic_extra__ or {})["s3store_fence"]["epoch"] == 2
    for key in backend.raw_keys(f"{prefix}/journal/"):
        assert b"stale-" not in (backend.raw_get(key) or b"")


def test_journal_lease_on_a_missing_session_creates_a_placeholder(
    backend: Backend, prefix: str
) -> None:
    store = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    whole = S3SessionStore(**backend.store_kwargs(prefix))
    with store.lease("new", holder="pod-a", renew=False) as lease:
        raw = backend.raw_get(f"{prefix}/new.json")
        assert raw is not None
        assert is_placeholder(raw)
        assert _fence_of(raw)["token"] == lease.token
        assert store.load("new") is None
        assert not store.exists("new")
        assert store.list() == []
        store.update(
            "new",
            lambda cur: with_message(cur or session("new", messages=0), "first"),
            lease=lease,
        )
        # The first version over a placeholder is folded at once: list, exists and a
        # whole-document reader see the session, not a placeholder.
        assert backend.raw_keys(f"{prefix}/journal/") == []
        assert store.list() == ["new"]
        assert store.exists("new")
        assert texts(whole.load("new")) == ["first"]
    assert texts(S3SessionStore(**backend.store_kwargs(prefix, journal=True)).load("new")) == [
        "first"
    ]


def test_journal_lease_over_pending_deltas_keeps_them(backend: Backend, prefix: str) -> None:
    writer = S3SessionStore(
        **backend.store_kwargs(prefix, journal=True, journal_compact_every=1000)
    )
    holder = S3SessionStore(
        **backend.store_kwargs(prefix, journal=True, journal_compact_every=1000)
    )
    data = session("s", messages=0)
    writer.save(data)
    for n in range(3):
        data = with_message(data, f"m{n}")
        writer.save(data)
    assert len(backend.raw_keys(f"{prefix}/journal/")) == 3
    with holder.lease("s", holder="pod-a", renew=False) as lease:
        # The fence is one more delta: the acknowledged ones before it all count.
        assert len(backend.raw_keys(f"{prefix}/journal/")) == 4
        holder.update("s", lambda cur: with_message(cur, "L"), lease=lease)  # type: ignore[arg-type]
        # A plain journal save never appends to a fenced session (the holder could not
        # tell its delta from its own), even one that carries the fence through.
        current = writer.load("s")
        assert current is not None
        with pytest.raises(ConfigurationError, match="lease"):
            writer.save(with_message(current, "sneaky"))
    loaded = S3SessionStore(**backend.store_kwargs(prefix, journal=True)).load("s")
    assert texts(loaded) == ["m0", "m1", "m2", "L"]


def test_journal_compaction_keeps_the_fence(backend: Backend, prefix: str) -> None:
    store = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=1000))
    whole = S3SessionStore(**backend.store_kwargs(prefix))
    store.save(session("s", messages=0))
    with store.lease("s", holder="pod-a", renew=False) as lease:
        store.update("s", lambda cur: with_message(cur, "x"), lease=lease)  # type: ignore[arg-type]
        assert store.compact("s") == 2  # the fence delta and the write
        fence = _fence_of(backend.raw_get(f"{prefix}/s.json"))
        assert (fence["holder"], fence["epoch"], fence["token"]) == ("pod-a", 1, lease.token)
        # A whole-document reader sees the fenced document, as in whole-document mode.
        stored = whole.load("s")
        assert stored is not None
        assert (stored.__pydantic_extra__ or {})["s3store_fence"] == fence
        store.save(with_message(stored, "y"), lease=lease)
    # A placeholder fenced by two acquisitions folds to a placeholder with the newer fence.
    for holder in ("pod-a", "pod-b"):
        with store.lease("p", holder=holder, renew=False):
            pass
    assert store.compact("p") == 1
    raw = backend.raw_get(f"{prefix}/p.json")
    assert raw is not None
    assert is_placeholder(raw)
    assert _fence_of(raw)["epoch"] == 2
    assert store.load("p") is None
    assert store.list() == ["s"]
    assert texts(store.load("s")) == ["x", "y"]


def test_journal_lease_request_costs(backend: Backend, prefix: str) -> None:
    store = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=1000))
    with store.lease("warm-up", holder="pod-a", renew=False):
        pass  # the server's conditional-write probe, once per endpoint
    store.save(session("s", messages=0))

    def cost(action: Callable[[], Any]) -> int:
        before = store.stats.total_requests
        action()
        return store.stats.total_requests - before

    held = store.lease("s", holder="pod-a", renew=False)
    leases: list[Any] = []
    # GET + PUT of the lease object; LIST + GET of the journal state; the fence delta's PUT
    # + HEAD; GET of the lease object.
    assert cost(lambda: leases.append(held.__enter__())) == 7
    lease = leases[0]
    current = store.load("s")
    assert current is not None
    # Under the lease: the delta's PUT and the confirming HEAD, as a plain journal save.
    assert cost(lambda: store.save(with_message(current, "a"), lease=lease)) == 2
    assert cost(lambda: store.update("s", lambda c: with_message(c, "b"), lease=lease)) == 2  # type: ignore[arg-type]
    assert cost(lambda: held.__exit__(None, None, None)) == 1  # the released lease object
    # A missing session: the placeholder's create-only PUT instead of the fence delta.
    missing = store.lease("missing", holder="pod-a", renew=False)
    assert cost(missing.__enter__) == 6
    missing.__exit__(None, None, None)
    assert texts(store.load("s")) == ["a", "b"]


# -- deterministic interleavings (memory) -----------------------------------------------------


@pytest.fixture
def memory() -> MemoryBackend:
    backend = MemoryBackend()
    backend.create_bucket("b")
    return backend


def jstore(client: Any, **options: Any) -> AsyncS3SessionStore:
    return AsyncS3SessionStore("b", "p", client=client, journal=True, **options)


def mem(backend: MemoryBackend) -> AsyncMemoryObjectClient:
    return AsyncMemoryObjectClient("b", backend=backend, create=False)


class CrashClient(AsyncMemoryObjectClient):
    """Raises (a "crash") right before a chosen request, after letting a hook run."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__("b", backend=backend, create=False)
        self.crash_before: str | None = None  # "put-session" or "delete-many"
        self.document = "p/s.json"  # the document whose compaction PUT "put-session" kills

    async def put(self, key: str, body: bytes, **kwargs: Any) -> PutResult:
        if self.crash_before == "put-session" and key == self.document:
            raise KeyboardInterrupt("crash")
        return await super().put(key, body, **kwargs)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if self.crash_before == "delete-many":
            raise KeyboardInterrupt("crash")
        await super().delete_many(keys)


@pytest.mark.parametrize("where", ["put-session", "delete-many"])
async def test_crash_mid_compaction_loses_nothing(memory: MemoryBackend, where: str) -> None:
    client = CrashClient(memory)
    store = jstore(client, journal_compact_every=1000)
    data = session("s", messages=0)
    await store.save(data)
    for n in range(5):
        data = with_message(data, f"m{n}")
        await store.save(data)
    client.crash_before = where
    with pytest.raises(KeyboardInterrupt):
        await store.compact("s")
    fresh = jstore(mem(memory))
    assert texts(await fresh.load("s")) == [f"m{n}" for n in range(5)]
    # The next writer and the next compaction understand the state left behind.
    await fresh.update("s", lambda cur: with_message(cur, "after"))  # type: ignore[arg-type]
    await fresh.compact("s")
    assert [k for k in memory.keys("b") if "/journal/" in k] == []
    assert texts(await jstore(mem(memory)).load("s")) == [*(f"m{n}" for n in range(5)), "after"]
    assert memory.get("b", "p/s.json").body == codec.dumps(await fresh.load("s"))  # type: ignore[union-attr]


class UnknownClient(AsyncMemoryObjectClient):
    """The next delta PUT and every HEAD of it fail in transit: its outcome is unknowable."""

    def __init__(self, backend: MemoryBackend, *, apply: bool) -> None:
        super().__init__("b", backend=backend, create=False)
        self.armed = False
        self.apply = apply
        self.delta_puts = 0

    async def put(self, key: str, body: bytes, **kwargs: Any) -> PutResult:
        if "/journal/" in key:
            self.delta_puts += 1
        if self.armed and "/journal/" in key:
            self.armed = False
            if self.apply:
                await super().put(key, body, **kwargs)
            exc = TransientError("PutObject failed: timeout", bucket="b", key=key)
            exc.retried = True
            raise exc
        return await super().put(key, body, **kwargs)

    async def head(self, key: str) -> ObjectInfo | None:
        if "/journal/" in key:
            raise TransientError("HeadObject failed: timeout", bucket="b", key=key)
        return await super().head(key)


@pytest.mark.parametrize("apply", [True, False])
async def test_unknown_delta_outcome_is_raised_never_reappended(
    memory: MemoryBackend, apply: bool
) -> None:
    client = UnknownClient(memory, apply=apply)
    store = jstore(client)
    await store.save(session("s", messages=0))
    calls: list[str] = []

    def fn(cur: SessionData | None) -> SessionData:
        calls.append("A")
        assert cur is not None
        return with_message(cur, "A")

    client.armed = True
    with pytest.raises(OutcomeUnknownError):
        await store.update("s", fn)
    assert calls == ["A"]
    assert client.delta_puts == 1
    loaded = await jstore(mem(memory)).load("s")
    assert texts(loaded) == (["A"] if apply else [])
    # The store forgot what it knew: its next save reads first and appends after the truth.
    await store.update("s", lambda cur: with_message(cur, "B"))  # type: ignore[arg-type]
    assert texts(await jstore(mem(memory)).load("s")) == (["A", "B"] if apply else ["B"])


async def test_stale_writer_cannot_resurrect_a_folded_sequence(memory: MemoryBackend) -> None:
    stale = jstore(mem(memory), journal_compact_every=1000)
    live = jstore(mem(memory), journal_compact_every=1000)
    await stale.save(session("s", messages=0))
    known = await stale.load("s")
    assert known is not None
    # Another writer appends seq 1..3 and compacts them away (deleting the deltas).
    await live.update("s", lambda cur: grow(cur, "x", "y"))  # type: ignore[arg-type]
    await live.update("s", lambda cur: grow(cur, "z"))  # type: ignore[arg-type]
    await live.compact("s")
    # The stale writer (knows seq 0) re-creates seq 1: the create-only PUT succeeds, the
    # confirming HEAD shows the document folds seq 1, and the compaction's record of the
    # delta versions it folded is not this one: void, deleted, a definite conflict.
    versioned = await jstore(mem(memory)).load_versioned("s")
    assert versioned is not None
    with pytest.raises(PreconditionFailedError, match="already folded"):
        await stale.save(with_message(known, "stale"), mode=IfMatch(f"{versioned.etag[:-1]}0"))
    assert texts(await jstore(mem(memory)).load("s")) == ["x", "y", "z"]
    assert [k for k in memory.keys("b") if "/journal/" in k] == []
    # update() re-reads and retries: applied once.
    await stale.update("s", lambda cur: with_message(cur, "again"))  # type: ignore[arg-type]
    assert texts(await jstore(mem(memory)).load("s")) == ["x", "y", "z", "again"]


async def test_concurrent_updaters_lose_nothing(memory: MemoryBackend) -> None:
    await jstore(mem(memory)).save(session("s", messages=0))
    stores = [jstore(mem(memory), journal_compact_every=3) for _ in range(4)]

    async def work(n: int) -> None:
        for k in range(5):
            await stores[n].update(
                "s",
                lambda cur, n=n, k=k: with_message(cur, f"w{n}-{k}"),  # type: ignore[misc]
                retries=100,
            )
            await asyncio.sleep(0)

    await asyncio.gather(*(work(n) for n in range(4)))
    final = texts(await jstore(mem(memory)).load("s"))
    assert sorted(final) == sorted(f"w{n}-{k}" for n in range(4) for k in range(5))


def test_journal_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        S3SessionStore("b", journal=True, journal_compact_every=0)
    with pytest.raises(ConfigurationError):
        S3SessionStore("b", journal="yes")


def test_delete_if_match_takes_a_journal_version(memory: MemoryBackend) -> None:
    from s3store.testing import MemoryObjectClient

    store = S3SessionStore(client=MemoryObjectClient("b", backend=memory), prefix="p", journal=True)
    data = session("s", messages=0)
    store.save(data)
    store.save(with_message(data, "a"))
    old = store.load_versioned("s")
    assert old is not None
    store.save(with_message(old.value, "b"))
    with pytest.raises(PreconditionFailedError):
        store.delete("s", if_match=old.etag)
    current = store.load_versioned("s")
    assert current is not None
    store.delete("s", if_match=current.etag)
    assert store.load("s") is None
    assert [k for k in memory.keys("b") if k.startswith("p/")] == []


def test_sync_watch_in_a_thread(memory: MemoryBackend) -> None:
    from s3store.testing import MemoryObjectClient

    writer = S3SessionStore(
        client=MemoryObjectClient("b", backend=memory), prefix="p", journal=True
    )
    watcher = S3SessionStore(
        client=MemoryObjectClient("b", backend=memory), prefix="p", journal=True
    )
    got: list[int] = []

    def follow() -> None:
        for version in watcher.watch("s", min_interval=0.01, max_interval=0.02):
            got.append(0 if version is None else len(version.value.messages))
            if got[-1] == 2:
                return

    thread = threading.Thread(target=follow)
    thread.start()
    data = session("s", messages=0)
    writer.save(data)
    for n in range(2):
        data = with_message(data, f"m{n}")
        writer.save(data)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert got[-1] == 2


class HeadHookClient(AsyncMemoryObjectClient):
    """Runs a hook once, right before the next HEAD of the session document."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__("b", backend=backend, create=False)
        self.hook: Callable[[], Awaitable[Any]] | None = None

    async def head(self, key: str) -> ObjectInfo | None:
        hook, self.hook = (self.hook, None) if key == "p/s.json" else (None, self.hook)
        if hook is not None:
            await hook()
        return await super().head(key)


async def test_delta_folded_before_its_confirmation_counts_as_landed(
    memory: MemoryBackend,
) -> None:
    client = HeadHookClient(memory)
    writer = jstore(client, journal_compact_every=1000)
    await writer.save(session("s", messages=0))
    other = jstore(mem(memory))

    async def compact_meanwhile() -> None:
        assert await other.compact("s") == 1

    client.hook = compact_meanwhile
    result = await writer.update("s", lambda cur: with_message(cur, "A"))  # type: ignore[arg-type]
    assert result.etag.endswith(".1")
    assert texts(await jstore(mem(memory)).load("s")) == ["A"]
    with pytest.raises(AlreadyExistsError):
        await writer.save(session("s", messages=0), mode="create")


_WATCHER = """
import sys
from s3store import S3SessionStore
endpoint, bucket, prefix, journal, until = sys.argv[1:6]
store = S3SessionStore(bucket=bucket, endpoint_url=endpoint, prefix=prefix,
                       journal=journal == "1")
for version in store.watch("s", min_interval=0.05, max_interval=0.2):
    count = -1 if version is None else len(version.value.messages)
    print(count, flush=True)
    if count >= int(until):
        break
"""


@pytest.mark.parametrize("journal", [True, False])
def test_watch_across_processes(backend: Backend, prefix: str, journal: bool) -> None:
    """A watcher in another process follows a writer here, through compactions."""
    if backend.endpoint is None:
        pytest.skip("needs a server both processes reach")
    import subprocess
    import sys

    from tests.conftest import BUCKET

    writer = S3SessionStore(
        **backend.store_kwargs(prefix, journal=journal, journal_compact_every=2)
    )
    data = session("s", messages=0)
    writer.save(data)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WATCHER,
            str(backend.endpoint),
            BUCKET,
            prefix,
            "1" if journal else "0",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "0"  # the current version first
        counts = []
        for n in range(5):
            data = with_message(data, f"m{n}")
            writer.save(data)
            # Wait until the watcher reports this version before writing the next one.
            counts.append(int(child.stdout.readline()))
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert counts == [1, 2, 3, 4, 5], err


async def test_plain_save_over_a_lease_placeholder_is_a_delta(memory: MemoryBackend) -> None:
    holder, plain = jstore(mem(memory)), jstore(mem(memory))
    async with holder.lease("s", holder="pod-a", renew=False) as lease:
        assert await plain.load("s") is None  # plain now knows the placeholder's state
        await holder.update("s", lambda cur: session("s", messages=1), lease=lease)
        # plain's knowledge is stale: its delta finds the seq taken, it re-reads, and the
        # session now carries a fence. A rewrite of the placeholder document (If-Match on
        # it, which deltas do not change) would have voided the holder's write instead.
        with pytest.raises(ConfigurationError, match="lease"):
            await plain.save(session("s", messages=0))
        assert texts(await jstore(mem(memory)).load("s")) == ["m0"]
    # A placeholder nobody has written over yet is "no session": a plain create takes it
    # (as in whole-document mode), and the holder then finds it changed outside the lease.
    async with holder.lease("t", holder="pod-a", renew=False) as lease:
        await plain.save(session("t", messages=0), mode="create")
        assert await plain.list() == ["s", "t"]  # folded at once: no longer a placeholder
        with pytest.raises(PreconditionFailedError, match="outside the lease"):
            await holder.update("t", lambda cur: session("t", messages=1), lease=lease)
    assert texts(await jstore(mem(memory)).load("t")) == []


# -- array sidecars: trace events and run records ------------------------------------------


def event(n: int) -> TraceEvent:
    """A trace event of about 200 bytes, told apart by its name."""
    return TraceEvent.model_validate(
        {
            "schema": "a3s.trace_event.v1",
            "kind": "tool_execution",
            "name": f"tool-{n}",
            "success": True,
            "exit_code": 0,
            "duration_ms": n,
            "output_bytes": 10,
        }
    )


def record(n: int) -> RunRecord:
    base = helpers.run_records()[0]
    return base.model_copy(
        update={"snapshot": base.snapshot.model_copy(update={"id": f"run-{n:04d}"})}
    )


def names(events: list[TraceEvent] | None) -> list[str]:
    assert events is not None
    return [e.name for e in events]


def test_trace_event_saves_cost_the_new_events_only(backend: Backend, prefix: str) -> None:
    store = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=1000))
    events = [event(0)]
    store.save_trace_events("s1", events)  # unknown version: the whole array, one PUT
    costs, ups = [], []
    for n in range(1, 31):
        events = [*events, event(n)]
        requests, up = store.stats.total_requests, store.stats.bytes_up
        result = store.save_trace_events("s1", events)
        costs.append(store.stats.total_requests - requests)
        ups.append(store.stats.bytes_up - up)
        assert result.etag.endswith(f".{n}")
    assert set(costs) == {2}  # the delta PUT and the confirming HEAD
    # Bytes up per save do not grow with the array (a one- or two-digit name and duration).
    assert max(ups) - min(ups) <= 4
    assert max(ups) < len(codec.dumps([event(0)])) + 200
    deltas = backend.raw_keys(f"{prefix}/journal/s1/traces/")
    assert len(deltas) == 30
    assert backend.raw_keys(f"{prefix}/journal/") == deltas  # nothing else journaled
    fresh = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    assert names(fresh.load_trace_events("s1")) == [f"tool-{n}" for n in range(31)]
    # The load: LIST + GET + one GET per delta.
    assert fresh.stats.total_requests == 1 + 1 + 30
    # It knows the version now: its next append is a delta too.
    before = fresh.stats.total_requests
    fresh.save_trace_events("s1", [*events, event(31)])
    assert fresh.stats.total_requests - before == 2


def test_sidecar_round_trip_matches_whole_document_bytes(backend: Backend, prefix: str) -> None:
    journal = S3SessionStore(**backend.store_kwargs(prefix, journal=True, journal_compact_every=4))
    whole = S3SessionStore(**backend.store_kwargs(prefix + "-whole"))
    events: list[TraceEvent] = []
    records: list[RunRecord] = []
    for n in range(10):
        events, records = [*events, event(n)], [*records, record(n)]
        for store in (journal, whole):
            store.save_trace_events("s1", events)
            store.save_run_records("s1", records)
    fresh = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    assert fresh.load_trace_events("s1") == events
    assert fresh.load_run_records("s1") == records
    # Saves 2..10 are deltas 1..9, compacted every 4: seq 8 folded, delta 9 pending.
    assert len(backend.raw_keys(f"{prefix}/journal/s1/traces/")) == 1
    assert len(backend.raw_keys(f"{prefix}/journal/s1/runs/")) == 1
    # A reader that knows nothing of journals sees the array as of the last compaction.
    plain = S3SessionStore(**backend.store_kwargs(prefix))
    assert plain.load_trace_events("s1") == events[:9]
    assert fresh.compact("s1", document="traces") == 1
    assert fresh.compact("s1", document="runs") == 1
    for part in ("traces", "runs"):
        got = backend.raw_get(f"{prefix}/{part}/s1.json")
        assert got == backend.raw_get(f"{prefix}-whole/{part}/s1.json")
    assert backend.raw_keys(f"{prefix}/journal/") == []
    # A rewrite that does not extend the array (here a truncation) is a whole document.
    journal.save_trace_events("s1", events[:3])
    assert backend.raw_get(f"{prefix}/traces/s1.json") == codec.dumps(events[:3])
    assert fresh.load_trace_events("s1") == events[:3]


@pytest.mark.parametrize("layout", ["legacy", "v1"])
def test_sidecar_deltas_are_not_sessions_nor_problems(
    backend: Backend, prefix: str, layout: str
) -> None:
    store = S3SessionStore(
        **backend.store_kwargs(prefix, journal=True, journal_compact_every=1000, layout=layout)
    )
    # Ids named like the journal's folders: their deltas must not mix.
    for id in ("traces", "runs", "x"):
        data = session(id, messages=0)
        store.save(data)
        store.save(with_message(data, "m"))
        store.save_trace_events(id, [event(0)])
        store.save_trace_events(id, [event(0), event(1)])
        store.save_run_records(id, [record(0)])
        store.save_run_records(id, [record(0), record(1)])
    keys = backend.raw_keys(f"{prefix}/")
    assert len([k for k in keys if "/journal/" in k]) == 9  # pending beside the documents
    assert store.list() == ["runs", "traces", "x"]
    assert store.fsck().problems == []
    # A dry run: LocalStack has no conditional DELETE, so a real gc needs exclusive=True there.
    swept = store.gc(allow_no_manifests=True, dry_run=True)
    assert (swept.deleted, swept.deleted_keys) == (0, [])
    assert backend.raw_keys(f"{prefix}/") == keys
    fresh = S3SessionStore(**backend.store_kwargs(prefix, journal=True, layout=layout))
    for id in ("traces", "runs", "x"):
        assert texts(fresh.load(id)) == ["m"]
        assert names(fresh.load_trace_events(id)) == ["tool-0", "tool-1"]
        assert fresh.load_run_records(id) == [record(0), record(1)]
    fresh.delete("traces")
    assert fresh.load("traces") is None
    assert fresh.load_trace_events("traces") is None
    assert names(fresh.load_trace_events("x")) == ["tool-0", "tool-1"]
    assert fresh.load_run_records("runs") == [record(0), record(1)]
    fresh.delete("runs")
    fresh.delete("x")
    assert backend.raw_keys(f"{prefix}/") == []


def test_sidecar_modes_keep_their_whole_document_meaning(memory: MemoryBackend) -> None:
    from s3store.testing import MemoryObjectClient

    def store() -> S3SessionStore:
        client = MemoryObjectClient("b", backend=memory)
        return S3SessionStore(client=client, prefix="p", journal=True)

    a, b = store(), store()
    created = a.save_trace_events("s", [event(0)], mode="create")
    with pytest.raises(AlreadyExistsError):
        b.save_trace_events("s", [event(9)], mode="create")
    # If-Match takes the journal version a save returned; both writers append onto it.
    first = a.save_trace_events("s", [event(0), event(1)], mode=IfMatch(created.etag))
    with pytest.raises(PreconditionFailedError):
        b.save_trace_events("s", [event(0), event(2)], mode=IfMatch(created.etag))
    with pytest.raises(PreconditionFailedError):  # not a journal version
        b.save_trace_events("s", [event(0)], mode=IfMatch('"abc"'))
    # A conditional rewrite (not an extension) is a replace delta: still ordered by seq.
    replaced = b.save_trace_events("s", [event(5)], mode=IfMatch(first.etag))
    assert replaced.etag.endswith(".2")
    with pytest.raises(PreconditionFailedError):
        a.save_trace_events("s", [event(0), event(1), event(3)], mode=IfMatch(first.etag))
    assert names(store().load_trace_events("s")) == ["tool-5"]
    with pytest.raises(PreconditionFailedError):
        a.save_trace_events("missing", [event(0)], mode=IfMatch(first.etag))


def test_two_writers_appending_to_one_sidecar(memory: MemoryBackend) -> None:
    from s3store.testing import MemoryObjectClient

    def store() -> S3SessionStore:
        client = MemoryObjectClient("b", backend=memory)
        return S3SessionStore(client=client, prefix="p", journal=True, journal_compact_every=1000)

    a, b = store(), store()
    a.save_trace_events("s", [event(0)])
    assert names(b.load_trace_events("s")) == ["tool-0"]
    a.save_trace_events("s", [event(0), event(1)])  # seq 1
    # b appends onto what it read (seq 0): the seq is taken (the refused PUT and the
    # store's HEAD checking it was not its own), so it re-reads (LIST, GET, the delta) and
    # appends again onto seq 1 (PUT, HEAD), as update() retries.
    before = b.stats.total_requests
    result = b.save_trace_events("s", [event(0), event(1), event(2)])
    assert result.etag.endswith(".2")
    assert b.stats.total_requests - before == 2 + 3 + 2
    assert names(store().load_trace_events("s")) == ["tool-0", "tool-1", "tool-2"]
    # An overwrite whose list no longer extends the stored one replaces it (last writer
    # wins, as in whole-document mode): a new incarnation, whole.
    a.save_trace_events("s", [event(0), event(1), event(7)])
    assert names(store().load_trace_events("s")) == ["tool-0", "tool-1", "tool-7"]
    # The replaced incarnation's deltas that writer knew of are deleted with it.
    assert [k for k in memory.keys("b") if "/journal/" in k] == []
    # b's knowledge is stale (the old incarnation): its delta is voided by the HEAD.
    b.save_trace_events("s", [event(0), event(1), event(2), event(3)])
    assert names(store().load_trace_events("s")) == ["tool-0", "tool-1", "tool-2", "tool-3"]


async def test_stale_sidecar_writer_cannot_resurrect_a_folded_sequence(
    memory: MemoryBackend,
) -> None:
    stale = jstore(mem(memory), journal_compact_every=1000)
    live = jstore(mem(memory), journal_compact_every=1000)
    created = await stale.save_trace_events("s", [event(0)])
    assert names(await live.load_trace_events("s")) == ["tool-0"]
    await live.save_trace_events("s", [event(0), event(1)])
    await live.save_trace_events("s", [event(0), event(1), event(2)])
    assert await live.compact("s", document="traces") == 2
    # The stale writer re-creates seq 1 (folded and deleted): voided by the fold record.
    with pytest.raises(PreconditionFailedError):
        await stale.save_trace_events("s", [event(0), event(9)], mode=IfMatch(created.etag))
    assert names(await jstore(mem(memory)).load_trace_events("s")) == [
        f"tool-{n}" for n in range(3)
    ]
    assert [k for k in memory.keys("b") if "/journal/" in k] == []


@pytest.mark.parametrize("where", ["put-document", "delete-many"])
async def test_crash_mid_sidecar_compaction_loses_nothing(
    memory: MemoryBackend, where: str
) -> None:
    client = CrashClient(memory)
    client.document = "p/traces/s.json"
    store = jstore(client, journal_compact_every=1000)
    events = [event(0)]
    await store.save_trace_events("s", events)
    for n in range(1, 6):
        events = [*events, event(n)]
        await store.save_trace_events("s", events)
    client.crash_before = "put-session" if where == "put-document" else where
    with pytest.raises(KeyboardInterrupt):
        await store.compact("s", document="traces")
    fresh = jstore(mem(memory))
    assert await fresh.load_trace_events("s") == events
    # The next writer and the next compaction understand the state left behind.
    await fresh.save_trace_events("s", [*events, event(6)])
    await fresh.compact("s", document="traces")
    assert [k for k in memory.keys("b") if "/journal/" in k] == []
    assert await jstore(mem(memory)).load_trace_events("s") == [*events, event(6)]
    stored = memory.get("b", "p/traces/s.json")
    assert stored is not None
    assert stored.body == codec.dumps([*events, event(6)])


@pytest.mark.parametrize("apply", [True, False])
async def test_unknown_sidecar_delta_outcome_is_raised_never_resent(
    memory: MemoryBackend, apply: bool
) -> None:
    client = UnknownClient(memory, apply=apply)
    store = jstore(client)
    await store.save_trace_events("s", [event(0)])
    client.armed = True
    with pytest.raises(OutcomeUnknownError):
        await store.save_trace_events("s", [event(0), event(1)])
    assert client.delta_puts == 1
    expected = ["tool-0", "tool-1"] if apply else ["tool-0"]
    assert names(await jstore(mem(memory)).load_trace_events("s")) == expected


# -- compaction on close --------------------------------------------------------------------


def test_compact_on_close_folds_what_the_store_knows(backend: Backend, prefix: str) -> None:
    kwargs = backend.store_kwargs(
        prefix, journal=True, journal_compact_every=1000, journal_compact_on_close=True
    )
    whole = S3SessionStore(**backend.store_kwargs(prefix + "-whole"))
    data = session("s1", messages=0)
    events: list[TraceEvent] = []
    with S3SessionStore(**kwargs) as store:
        for n in range(4):
            data = with_message(data, f"turn {n}")
            events.append(event(n))
            store.save(data)
            store.save_trace_events("s1", events)
            whole.save(data)
            whole.save_trace_events("s1", events)
        assert len(backend.raw_keys(f"{prefix}/journal/")) == 6  # 3 deltas of each document
        before = store.stats.total_requests
    # Closing folded both documents: a PUT and a DeleteObjects each, no load.
    assert store.stats.total_requests - before == 4
    assert backend.raw_keys(f"{prefix}/journal/") == []
    for key in ("s1.json", "traces/s1.json"):
        assert backend.raw_get(f"{prefix}/{key}") == backend.raw_get(f"{prefix}-whole/{key}")


def test_compact_pending_leaves_newer_deltas_of_others(backend: Backend, prefix: str) -> None:
    kwargs = backend.store_kwargs(prefix, journal=True, journal_compact_every=1000)
    mine, other = S3SessionStore(**kwargs), S3SessionStore(**kwargs)
    data = grow(session("s1", messages=0), "a", "b")
    mine.save(data)
    mine.save(with_message(data, "c"))
    assert other.load("s1") is not None
    other.save(grow(data, "c", "d"))  # a delta the first store does not know
    assert mine.compact_pending() == 1  # folds up to what it knew; the other delta stays
    fresh = S3SessionStore(**kwargs)
    assert [m.content for m in fresh.load("s1").messages] == [  # type: ignore[union-attr]
        m.content for m in grow(data, "c", "d").messages
    ]
    assert len(backend.raw_keys(f"{prefix}/journal/")) == 1
    assert fresh.compact_pending() == 1  # it loaded the state: it knows the pending delta


def test_compact_on_close_needs_journal_mode() -> None:
    with pytest.raises(ConfigurationError, match="journal_compact_on_close needs journal"):
        S3SessionStore(bucket="b", journal_compact_on_close=True)
    with pytest.raises(ConfigurationError, match="compact_pending"):
        S3SessionStore(bucket="b").compact_pending()
