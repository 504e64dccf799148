"""Leases and fencing (issue 14, items 1, 2, 6 and the lease part of 8).

Most tests run on the in-memory client with an injected server clock, so "worker A is paused
past its ttl" is one line: advance the clock and do not call A. The takeover tests at the end
run a real lease holder in a child process (tests/lease_worker.py), SIGSTOP it past its ttl,
take the lease over and SIGCONT it: on SeaweedFS in ``make test`` and on LocalStack in
``make test-localstack``, for an existing and a not-yet-existing session.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from s3store import AsyncS3SessionStore, S3SessionStore, codec
from s3store._async.client import AsyncMemoryObjectClient
from s3store._async.lease import (
    FENCE_KEY,
    MAX_EPOCH,
    PLACEHOLDER_MAX_BYTES,
    AsyncLease,
    is_placeholder,
    may_be_placeholder,
    validate_holder,
)
from s3store._backends import AsyncPeriodic, Periodic
from s3store.errors import (
    ConfigurationError,
    CorruptObjectError,
    LeaseHeldError,
    LeaseLostError,
    OutcomeUnknownError,
    PreconditionFailedError,
    StoreError,
    TransientError,
)
from s3store.keys import Layout
from s3store.models import SessionData
from s3store.testing import MemoryBackend, MemoryObjectClient
from s3store.types import IfMatch, PutResult
from tests import helpers
from tests.conftest import BUCKET, Backend
from tests.faultproxy import open_server, real_server_names

ROOT = Path(__file__).resolve().parent.parent
TTL = 10.0


class Clock:
    """The server's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FlakyClient(AsyncMemoryObjectClient):
    """The in-memory client with scripted faults on PUTs: ``(key part, when, error)``;
    ``when`` is "before" (nothing applied) or "after" (applied, answer lost)."""

    def __init__(self, bucket: str, backend: MemoryBackend) -> None:
        super().__init__(bucket, backend=backend, create=False)
        self.faults: list[tuple[str, str, StoreError]] = []
        self.gate: asyncio.Event | None = None
        self.gate_key = ""
        self.events: list[str] = []

    async def put(self, key: str, body: bytes, **kwargs: Any) -> PutResult:
        for fault in self.faults:
            part, when, error = fault
            if part in key:
                self.faults.remove(fault)
                if when == "after":
                    await super().put(key, body, **kwargs)
                raise error
        if self.gate is not None and self.gate_key in key:
            # Applied at once, answered only when the gate opens (a request in flight).
            result = await super().put(key, body, **kwargs)
            self.events.append(f"applied {key}")
            await self.gate.wait()
            self.events.append(f"answered {key}")
            return result
        self.events.append(f"put {key}")
        return await super().put(key, body, **kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryBackend:
    backend = MemoryBackend(clock=clock)
    backend.create_bucket(BUCKET)
    return backend


def _store(memory: MemoryBackend, layout: str = "legacy", **kw: Any) -> AsyncS3SessionStore:
    client = kw.pop("client", None) or AsyncMemoryObjectClient(BUCKET, backend=memory, create=False)
    return AsyncS3SessionStore(client=client, prefix="p", layout=layout, **kw)  # type: ignore[arg-type]


async def _acquire(
    store: AsyncS3SessionStore, id: str, holder: str, ttl: float = TTL
) -> AsyncLease:
    lease = AsyncLease(store, id, holder=holder, ttl=ttl)
    await lease.acquire()
    return lease


def _raw(memory: MemoryBackend, key: str) -> dict[str, Any]:
    got = memory.get(BUCKET, key)
    assert got is not None, key
    value: dict[str, Any] = json.loads(got.body)
    return value


def _append(text: str, id: str = "s1") -> Any:
    def fn(current: SessionData | None) -> SessionData:
        return helpers.with_message(current or helpers.session(id, messages=0), text)

    return fn


# -- 14.1: no fence when the session did not exist at takeover ---------------------------------


async def test_stale_holder_cannot_create_after_takeover_of_missing_session(
    memory: MemoryBackend, clock: Clock
) -> None:
    a_store, b_store = _store(memory), _store(memory)
    a = await _acquire(a_store, "s1", "worker-a")
    assert a.epoch == 1
    assert is_placeholder(memory.get(BUCKET, "p/s1.json").body)  # type: ignore[union-attr]
    clock.advance(TTL + 2)  # A is paused past its ttl
    b = await _acquire(b_store, "s1", "worker-b")
    assert b.epoch == 2
    # A resumes: every way it could write is refused, and B is not disturbed.
    with pytest.raises(ConfigurationError):
        await a_store.save(helpers.session("s1", messages=1), mode="create", lease=a)
    with pytest.raises(LeaseLostError) as caught:
        await a_store.save(helpers.session("s1", messages=1), lease=a)
    assert caught.value.current_holder == "worker-b"
    with pytest.raises(LeaseLostError):
        await a_store.update("s1", _append("from A"), lease=a)
    assert await b_store.load("s1") is None
    await b_store.save(helpers.session("s1", messages=2), lease=b)
    await b_store.update("s1", _append("from B"), lease=b)
    loaded = await a_store.load("s1")
    assert loaded is not None
    assert len(loaded.messages) == 3
    assert _raw(memory, "p/s1.json")[FENCE_KEY]["epoch"] == 2


async def test_stale_create_loses_even_before_the_new_holder_writes(
    memory: MemoryBackend, clock: Clock
) -> None:
    """The defect's exact shape: A's first write comes after B's takeover, before B's."""
    a_store, b_store = _store(memory), _store(memory)
    a = await _acquire(a_store, "s1", "worker-a")
    clock.advance(TTL + 2)
    b = await _acquire(b_store, "s1", "worker-b")
    for _ in range(2):
        with pytest.raises(LeaseLostError):
            await a_store.save(helpers.session("s1", messages=5), lease=a)
    result = await b_store.save(helpers.session("s1", messages=1), lease=b)
    assert result.etag == memory.get(BUCKET, "p/s1.json").info.etag  # type: ignore[union-attr]


# -- 14.2: epochs restart, fences repeat (ABA) -------------------------------------------------


async def test_reused_holder_name_cannot_replay_a_fence(
    memory: MemoryBackend, clock: Clock
) -> None:
    old_store, mid_store, new_store = _store(memory), _store(memory), _store(memory)
    await old_store.save(helpers.session("s1", messages=1))
    old = await _acquire(old_store, "s1", "pod-0")
    await old_store.save(helpers.session("s1", messages=2), lease=old)
    seen_by_old = memory.get(BUCKET, "p/s1.json")
    assert seen_by_old is not None
    # The old holder pauses; the same name takes over, writes, releases; the same name
    # acquires again and writes exactly what the old holder last wrote.
    clock.advance(TTL + 2)
    mid = await _acquire(mid_store, "s1", "pod-0")
    await mid_store.save(helpers.session("s1", messages=3), lease=mid)
    await mid.release()
    new = await _acquire(new_store, "s1", "pod-0")
    assert [old.epoch, mid.epoch, new.epoch] == [1, 2, 3]
    assert len({old.token, mid.token, new.token}) == 3
    await new_store.save(helpers.session("s1", messages=2), lease=new)
    now = memory.get(BUCKET, "p/s1.json")
    assert now is not None
    assert now.body != seen_by_old.body
    assert now.info.etag != seen_by_old.info.etag
    with pytest.raises(LeaseLostError):
        await old_store.save(helpers.session("s1", messages=9), lease=old)
    await new_store.save(helpers.session("s1", messages=4), lease=new)
    loaded = await new_store.load("s1")
    assert loaded is not None
    assert len(loaded.messages) == 4


async def test_release_keeps_the_epoch_and_epochs_only_increase(memory: MemoryBackend) -> None:
    store = _store(memory)
    epochs = []
    for holder in ("a", "b", "a", "a"):
        async with store.lease("s1", holder=holder, ttl=TTL, renew=False) as lease:
            epochs.append(lease.epoch)
        lease_doc = _raw(memory, "p/leases/s1.json")
        assert lease_doc["released"] is True
        assert lease_doc["epoch"] == lease.epoch
    assert epochs == [1, 2, 3, 4]
    assert "p/leases/s1.json" in memory.keys(BUCKET)  # never deleted


async def test_same_holder_name_takes_over_its_own_live_lease(memory: MemoryBackend) -> None:
    """Documented: holder names identify processes; two processes sharing one fence each other."""
    first_store, second_store = _store(memory), _store(memory)
    first = await _acquire(first_store, "s1", "pod-a")
    second = await _acquire(second_store, "s1", "pod-a")  # no expiry needed
    assert second.epoch == first.epoch + 1
    with pytest.raises(LeaseLostError):
        await first_store.save(helpers.session("s1"), lease=first)
    await second_store.save(helpers.session("s1"), lease=second)
    with pytest.raises(LeaseHeldError):
        await _acquire(first_store, "s1", "pod-b")


async def test_fence_from_before_the_lease_object_is_overtaken(memory: MemoryBackend) -> None:
    """A session fenced at epoch 7 whose lease object is gone (an older s3store deleted it
    on release): the next acquisition moves past epoch 7 instead of restarting at 1."""
    store = _store(memory)
    document = json.loads(codec.dumps(helpers.session("s1")))
    document[FENCE_KEY] = {"holder": "old", "epoch": 7}
    memory.raw_put(BUCKET, "p/s1.json", json.dumps(document).encode())
    lease = await _acquire(store, "s1", "new")
    assert lease.epoch == 8
    assert _raw(memory, "p/leases/s1.json")["epoch"] == 8
    assert _raw(memory, "p/s1.json")[FENCE_KEY]["epoch"] == 8


# -- 14.6: lease robustness ---------------------------------------------------------------------


async def test_renewal_survives_a_transient_error(memory: MemoryBackend) -> None:
    client = FlakyClient(BUCKET, memory)
    store = _store(memory, client=client)
    lease = await _acquire(store, "s1", "a")
    client.faults.append(("leases/", "before", TransientError("reset", code="RequestTimeout")))
    with pytest.raises(TransientError):
        await lease.renew()
    await lease.renew()  # the next tick works
    assert lease.renewals == 1
    await store.save(helpers.session("s1"), lease=lease)


async def test_renewal_with_unknown_outcome_reads_the_lease_back(memory: MemoryBackend) -> None:
    client = FlakyClient(BUCKET, memory)
    store = _store(memory, client=client)
    lease = await _acquire(store, "s1", "a")
    client.faults.append(("leases/", "after", OutcomeUnknownError("lost", code="RequestTimeout")))
    await lease.renew()  # it landed: the read-back says so
    assert lease.renewals == 1
    await lease.renew()  # and the next If-Match uses the landed version's ETag
    assert lease.renewals == 2


async def test_background_renewal_keeps_going_after_a_transient_error(
    memory: MemoryBackend,
) -> None:
    client = FlakyClient(BUCKET, memory)
    store = _store(memory, client=client)
    async with store.lease("s1", holder="a", ttl=0.3) as lease:
        client.faults.append(("leases/", "before", TransientError("reset", code="InternalError")))
        await helpers.eventually(lambda: lease.renewals >= 3)
        assert lease._renewer is not None
        assert lease._renewer.failures == 1
        assert lease._renewer.error is None
        await store.save(helpers.session("s1"), lease=lease)


async def test_periodic_stops_only_on_fatal_errors_or_after_give_up() -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) in (1, 3):
            raise TransientError("x", code="InternalError")
        if len(calls) == 5:
            raise LeaseLostError("gone", bucket=None, key=None)

    periodic = AsyncPeriodic(flaky, 0.01, fatal=(LeaseLostError,))
    periodic.start()
    await helpers.eventually(lambda: periodic.stopped)
    assert len(calls) == 5
    assert periodic.failures == 2
    assert isinstance(periodic.error, LeaseLostError)

    async def always() -> None:
        raise TransientError("x", code="InternalError")

    giving_up = AsyncPeriodic(always, 0.01, give_up_after=0.05)
    giving_up.start()
    await helpers.eventually(lambda: giving_up.stopped)
    assert isinstance(giving_up.error, TransientError)
    assert giving_up.failures >= 3


def test_sync_periodic_survives_a_transient_error() -> None:
    sync_calls: list[int] = []

    def sync_flaky() -> None:
        sync_calls.append(1)
        if len(sync_calls) == 1:
            raise TransientError("x", code="InternalError")

    thread = Periodic(sync_flaky, 0.01)
    thread.start()
    deadline = time.monotonic() + 5
    while len(sync_calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.stop()
    assert len(sync_calls) >= 3
    assert thread.error is None
    assert thread.failures == 1


async def test_lease_expired_by_failing_renewals_is_lost(memory: MemoryBackend) -> None:
    client = FlakyClient(BUCKET, memory)
    store = _store(memory, client=client)
    lease = await _acquire(store, "s1", "a", ttl=0.15)
    client.faults.extend(
        ("leases/", "before", TransientError("down", code="InternalError")) for _ in range(100)
    )
    lease.start_renewing()
    renewer = lease._renewer
    assert renewer is not None
    await helpers.eventually(lambda: renewer.stopped)
    with pytest.raises(LeaseLostError, match="renewal failed"):
        await store.save(helpers.session("s1"), lease=lease)
    client.faults.clear()
    await lease.release()


async def test_failed_fence_releases_the_lease_object(memory: MemoryBackend) -> None:
    store = _store(memory)
    memory.raw_put(BUCKET, "p/s1.json", b'{"id": "s1", "not": "a session"' + b" " * 400 + b"}")
    with pytest.raises(CorruptObjectError):
        async with store.lease("s1", holder="a", ttl=TTL, renew=False):
            pass
    assert _raw(memory, "p/leases/s1.json")["released"] is True
    memory.raw_put(BUCKET, "p/s1.json", codec.dumps(helpers.session("s1")))
    # Not leaked for the ttl: another holder gets it at once.
    async with store.lease("s1", holder="b", ttl=TTL, renew=False) as lease:
        assert lease.epoch == 2


async def test_release_waits_for_a_renewal_in_flight(memory: MemoryBackend) -> None:
    client = FlakyClient(BUCKET, memory)
    store = _store(memory, client=client)
    lease = await _acquire(store, "s1", "a", ttl=0.3)
    client.gate = asyncio.Event()
    client.gate_key = "leases/"
    lease.start_renewing()
    # The renewal is on the wire.
    await helpers.eventually(lambda: "applied p/leases/s1.json" in client.events)
    client.gate_key = "never"
    release = asyncio.ensure_future(lease.release())
    # Nothing here waits on a timer: letting every ready task run is enough for release()
    # to finish, unless it is (rightly) waiting for the gated renewal.
    for _ in range(20):
        await asyncio.sleep(0)
    assert not release.done()  # waiting for the renewal, not cancelling it
    client.gate.set()
    await release
    assert lease.renewals == 1
    assert client.events[-2:] == ["answered p/leases/s1.json", "put p/leases/s1.json"]
    assert _raw(memory, "p/leases/s1.json")["released"] is True


def test_lease_keys_of_the_two_layouts_are_distinct(memory: MemoryBackend) -> None:
    legacy, v1 = Layout("p", "legacy"), Layout("p", "v1")
    assert v1.session_key("a") == "p/v1/sessions/id_YQ.json"
    assert legacy.lease_key("id_YQ") == "p/leases/id_YQ.json"
    assert v1.lease_key("a") == "p/v1/leases/id_YQ.json"


async def test_leases_of_colliding_ids_across_layouts_are_independent(
    memory: MemoryBackend,
) -> None:
    async with (
        _store(memory, "legacy").lease("id_YQ", holder="x", ttl=TTL, renew=False) as one,
        _store(memory, "v1").lease("a", holder="y", ttl=TTL, renew=False) as two,
    ):
        assert one.epoch == two.epoch == 1


# -- 14.8: save(..., lease=..., mode=...) -------------------------------------------------------


@pytest.mark.parametrize("mode", ["create", "overwrite", IfMatch('"x"')])
async def test_save_under_a_lease_refuses_a_mode(memory: MemoryBackend, mode: Any) -> None:
    store = _store(memory)
    async with store.lease("s1", holder="a", ttl=TTL, renew=False) as lease:
        with pytest.raises(ConfigurationError, match="does not take a mode") as caught:
            await store.save(helpers.session("s1"), mode=mode, lease=lease)
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, StoreError)
        await store.save(helpers.session("s1"), lease=lease)
    sync = S3SessionStore(client=MemoryObjectClient(BUCKET, backend=memory), prefix="p")
    with sync.lease("s1", holder="a", ttl=TTL, renew=False) as sync_lease:
        with pytest.raises(ConfigurationError):
            sync.save(helpers.session("s1"), mode=mode, lease=sync_lease)
        sync.save(helpers.session("s1", messages=2), lease=sync_lease)


# -- placeholders -------------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "id"), [("legacy", "s1"), ("legacy", "a_b"), ("v1", "s1")])
async def test_placeholders_are_no_session(memory: MemoryBackend, layout: str, id: str) -> None:
    store = _store(memory, layout)
    await store.save(helpers.session("other"))
    async with store.lease(id, holder="a", ttl=TTL, renew=False):
        key = store.layout.session_key(id)
        got = memory.get(BUCKET, key)
        assert got is not None
        assert is_placeholder(got.body)
        assert len(got.body) <= PLACEHOLDER_MAX_BYTES
        assert await store.load(id) is None
        assert await store.load_versioned(id) is None
        assert await store.exists(id) is False
        assert await store.list() == ["other"]
        assert (await store.fsck()).ok
    assert await store.exists(id) is False  # released: the placeholder stays, still no session
    # A plain create-only save (and update, which creates) takes a placeholder's place.
    if id == "s1":
        await store.save(helpers.session(id, messages=1), mode="create")
    else:
        await store.update(id, _append("first", id))
    assert await store.exists(id)
    assert sorted(await store.list()) == sorted(["other", "a_b" if id == "a_b" else id])
    async with store.lease(id, holder="a", ttl=TTL, renew=False) as lease:
        await store.update(id, _append("leased", id), lease=lease)
    loaded = await store.load(id)
    assert loaded is not None
    assert loaded.messages[-1] == helpers.message("leased")


async def test_delete_of_a_leased_session_is_not_undone_by_the_holder(
    memory: MemoryBackend,
) -> None:
    store = _store(memory)
    await store.save(helpers.session("s1"))
    async with store.lease("s1", holder="a", ttl=TTL, renew=False) as lease:
        await store.delete("s1")
        assert memory.get(BUCKET, "p/s1.json") is None
        with pytest.raises(PreconditionFailedError, match="outside the lease"):
            await store.save(helpers.session("s1"), lease=lease)
        with pytest.raises(PreconditionFailedError, match="outside the lease"):
            await store.update("s1", _append("x"), lease=lease)
        assert memory.get(BUCKET, "p/s1.json") is None  # never recreated
    assert _raw(memory, "p/leases/s1.json")["released"] is True


async def test_update_under_a_lease_is_fenced(memory: MemoryBackend) -> None:
    store = _store(memory)
    async with store.lease("s1", holder="a", ttl=TTL, renew=False) as lease:
        seen: list[SessionData | None] = []

        def fn(current: SessionData | None) -> SessionData:
            seen.append(current)
            return helpers.session("s1", messages=1)

        await store.update("s1", fn, lease=lease)
        await store.update("s1", _append("two"), lease=lease)
        with pytest.raises(StoreError):
            await store.update("other", _append("x"), lease=lease)
    assert seen == [None]
    fence = _raw(memory, "p/s1.json")[FENCE_KEY]
    assert fence == {"holder": "a", "epoch": 1, "token": lease.token}


def test_placeholder_size_bound_holds() -> None:
    """Every placeholder is smaller than the smallest possible session document."""
    smallest = {
        "id": "",
        "config": {"name": "", "workspace": "", "max_context_length": 0, "auto_compact": False},
        "state": "Error",
        "messages": [],
        "context_usage": {"used_tokens": 0, "max_tokens": 0, "percent": 0, "turns": 0},
        "total_usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "tool_names": [],
        "thinking_enabled": False,
        "created_at": 0,
        "updated_at": 0,
    }
    compact = json.dumps(smallest, separators=(",", ":")).encode()
    codec.loads(SessionData, compact)  # it is a session
    for key in smallest:
        if key != "id":  # id "" is the shortest id; every other member is required
            reduced = {k: v for k, v in smallest.items() if k != key}
            with pytest.raises(StoreError):
                codec.loads(SessionData, json.dumps(reduced).encode())
    assert not may_be_placeholder(len(compact))
    store = S3SessionStore(client=MemoryObjectClient(BUCKET), prefix="p")
    biggest = AsyncLease(store, "s", holder="\U0001f600" * 32, ttl=1)  # type: ignore[arg-type]
    biggest.epoch = MAX_EPOCH
    assert len(biggest._placeholder()) <= PLACEHOLDER_MAX_BYTES < len(compact)
    assert is_placeholder(biggest._placeholder())
    validate_holder("x" * 128)
    for bad in ("", "  ", "x" * 129, "é" * 65, 'a"b', "a\\b", "a\nb"):
        with pytest.raises(ConfigurationError):
            validate_holder(bad)


# -- a real paused process: SIGSTOP past the ttl, takeover, SIGCONT -----------------------------


@pytest.fixture(params=real_server_names()[-1:])
def server(request: pytest.FixtureRequest) -> Backend:
    """SeaweedFS in ``make test``, LocalStack in ``make test-localstack``."""
    return open_server(request, request.param)


class LeaseWorker:
    """tests/lease_worker.py in a child process, talked to line by line."""

    def __init__(self, endpoint: str, prefix: str, sid: str, holder: str, ttl: float) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.lease_worker",
            f"--endpoint={endpoint}",
            f"--bucket={BUCKET}",
            f"--prefix={prefix}",
            f"--session={sid}",
            f"--holder={holder}",
            f"--ttl={ttl}",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put(None)

    def next_line(self, timeout: float = 60.0) -> str:
        line = self.lines.get(timeout=timeout)
        if line is None:
            assert self.process.stderr is not None
            raise AssertionError(f"worker exited: {self.process.stderr.read().decode()[-3000:]}")
        return line

    def send(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self.next_line()

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def workers() -> Iterator[list[LeaseWorker]]:
    started: list[LeaseWorker] = []
    yield started
    for worker in started:
        worker.close()


async def _take_over(store: AsyncS3SessionStore, sid: str, holder: str) -> AsyncLease:
    """Acquire as soon as the server's clock says the paused holder's lease expired."""
    deadline = time.monotonic() + 60
    while True:
        lease = AsyncLease(store, sid, holder=holder, ttl=30.0)
        try:
            await lease.acquire()
            return lease
        except LeaseHeldError:
            assert time.monotonic() < deadline, "the paused holder's lease never expired"
            await asyncio.sleep(0.2)


@pytest.mark.s3
@pytest.mark.parametrize("existing", [True, False], ids=["existing", "missing"])
async def test_takeover_from_a_sigstopped_holder(
    server: Backend, prefix: str, workers: list[LeaseWorker], existing: bool
) -> None:
    sid = "leased"
    ttl = 2.0
    async with AsyncS3SessionStore(**server.store_kwargs(prefix)) as store:
        if existing:
            await store.save(helpers.session(sid, messages=1))
        a = LeaseWorker(str(server.endpoint), prefix, sid, "worker-a", ttl)
        workers.append(a)
        assert a.next_line() == "acquired 1"
        if existing:
            assert a.send("save 2").startswith("acked ")
        os.kill(a.process.pid, signal.SIGSTOP)  # paused past its ttl, renewals and all
        b = await _take_over(store, sid, "worker-b")
        assert b.epoch == 2
        os.kill(a.process.pid, signal.SIGCONT)
        # A resumes and writes, as a stale holder would: both write paths are refused, twice.
        for command in ("save 7", "update from-a", "save 8"):
            assert a.send(command) == "refused LeaseLostError", command
        assert (await store.load(sid) is None) is (not existing)
        await store.update(sid, _append("from-b", sid), lease=b)
        await store.save(helpers.with_message(helpers.session(sid, messages=3), "b-final"), lease=b)
        assert a.send("update from-a-again") == "refused LeaseLostError"
        await b.release()
        loaded = await store.load(sid)
        assert loaded is not None
        assert len(loaded.messages) == 4
        assert loaded.messages[-1] == helpers.message("b-final")
        assert not any(helpers.message(t) in loaded.messages for t in ("from-a", "from-a-again"))
        lease_doc = json.loads(server.raw_get(store.layout.lease_key(sid)) or b"{}")
        assert lease_doc["epoch"] == 2
        assert lease_doc["released"] is True
        assert a.send("exit") == "released"
