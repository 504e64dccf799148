"""Journal mode (issue 20): deltas, compaction, crash safety, unknown outcomes, export, watch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from s3store import S3SessionStore, codec
from s3store._async.client import AsyncMemoryObjectClient
from s3store._async.store import AsyncS3SessionStore
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    OutcomeUnknownError,
    PreconditionFailedError,
    TransientError,
)
from s3store.models import SessionData
from s3store.testing import MemoryBackend
from s3store.transfer import export_dir
from s3store.types import IfMatch, ObjectInfo, PutResult
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
        for n in range(5):
            data = with_message(data, f"{id} {n}")
            journal.save(data)
            whole.save(data)
    assert backend.raw_keys(f"{prefix}/journal/")  # deltas pending
    # Exported by a store that does not even use journal mode: still folded.
    export_dir(S3SessionStore(**backend.store_kwargs(prefix)), tmp_path / "j")
    export_dir(whole, tmp_path / "w")
    files = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "j").iterdir()) == ["s1.json", "s2.json"]
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


def test_journal_refuses_leases_and_fenced_sessions(backend: Backend, prefix: str) -> None:
    journal = S3SessionStore(**backend.store_kwargs(prefix, journal=True))
    with pytest.raises(ConfigurationError, match="leases"), journal.lease("s", holder="a"):
        pass
    whole = S3SessionStore(**backend.store_kwargs(prefix))
    whole.save(session("s", messages=0))
    with whole.lease("s", holder="pod-a", renew=False):
        current = journal.load("s")
        assert current is not None
        # A journal writer never appends to a fenced session: the lease holder's fenced
        # document stays the only way in (a fenced-out holder cannot append through it).
        with pytest.raises(ConfigurationError, match="lease"):
            journal.save(with_message(current, "sneaky"))
    assert backend.raw_keys(f"{prefix}/journal/") == []


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

    async def put(self, key: str, body: bytes, **kwargs: Any) -> PutResult:
        if self.crash_before == "put-session" and key == "p/s.json":
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
