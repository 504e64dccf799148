"""Reliability under injected faults: a fault proxy between the store and a real S3 server.

The long workload runs agent turns through :class:`tests.faultproxy.FaultProxy` at a 10 %
fault rate (500s, 503 SlowDown, 409s, resets before and after the server applied the
request, read timeouts, slow answers) and then proves, over a direct connection:

- every document reads back equal to the last write the store acknowledged;
- the server applied exactly the acknowledged writes, in order (each possibly more than once
  with identical bytes, never a different body twice: no duplicated turn, no stale retry);
- fsck finds nothing wrong.

Scripted tests pin the individual behaviours (what is retried, what is surfaced). Sizes grow
with ``S3STORE_FULL=1``. Run ``pytest tests/test_faults.py -s`` to see the fault counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff

from s3store import AsyncS3SessionStore, S3SessionStore
from s3store._async.client import AsyncMemoryObjectClient
from s3store.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    TransientError,
)
from s3store.keys import Part
from s3store.models import ArtifactStore, LoopCheckpoint, SessionData, TraceEvent
from s3store.types import Capabilities, GetResult, ObjectInfo, PutResult
from tests import helpers
from tests.conftest import BUCKET, OBSTORE_SUFFIX, Backend, obstore_servers
from tests.faultproxy import (
    FAULT_KINDS,
    LANDED_KINDS,
    FaultProxy,
    Request,
    open_server,
    real_server_names,
)

FULL = os.environ.get("S3STORE_FULL") == "1"
OBSTORE = "obstore"
"""The ``api`` of the async store on the obstore transport (``transport="obstore"``)."""
SEED = 20240917
RATE = 0.10
# Every server here enforces conditional writes; passing the capabilities skips the probe,
# which is not fault tolerant yet (see test_probe_survives_a_409).
ENFORCED = Capabilities(if_none_match=True, if_match=True, conditional_delete=True,
                        if_match_missing_status=None)  # fmt: skip


@pytest.fixture(autouse=True)
def fast_sdk_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale botocore's retry backoff (rand · 2^n s) by 1/20 so the suite stays fast.

    What is retried, how often, and the retry quota are unchanged; only the waits shrink.
    ``S3STORE_FULL=1`` keeps the real backoff.
    """
    if FULL:
        return
    original = ExponentialBackoff.delay_amount

    def scaled(self: ExponentialBackoff, context: Any) -> float:
        return float(original(self, context)) / 20

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", scaled)


# The boto3 tests run on the plain server names; ``moto-obstore`` / ``seaweedfs-obstore``
# select the obstore tests at the end of this file (see tests/conftest.py).
BOTO_SERVERS = [name for name in real_server_names() if not name.endswith(OBSTORE_SUFFIX)]


@pytest.fixture(params=BOTO_SERVERS if FULL else BOTO_SERVERS[:1])
def one_server(request: pytest.FixtureRequest) -> Backend:
    """Scripted tests exercise the client side: one server by default, every one in full."""
    return open_server(request, request.param)


def _targets(apis: tuple[str, ...], *, every_server: bool = FULL) -> list[Any]:
    """``(api, server name)`` parameters: the boto3 APIs on the plain server names (one
    unless ``every_server``), the obstore transport on each ``<server>-obstore`` selected."""
    boto = BOTO_SERVERS if every_server else BOTO_SERVERS[:1]
    params = [pytest.param((api, name), id=f"{name}-{api}") for api in apis if api != OBSTORE
              for name in boto]  # fmt: skip
    if OBSTORE in apis:
        params += [pytest.param((OBSTORE, name), id=f"{name}-{OBSTORE}")
                   for name in obstore_servers()]  # fmt: skip
    return params


@pytest.fixture
def target(request: pytest.FixtureRequest) -> tuple[str, Backend]:
    """The ``(api, server)`` of a test parametrized (indirectly) with :func:`_targets`."""
    api, name = request.param
    if api != OBSTORE:
        return api, open_server(request, name)
    pytest.importorskip("obstore")
    opened = open_server(request, name)
    return api, replace(opened, name=f"{opened.name}{OBSTORE_SUFFIX}", transport=OBSTORE)


def targets(*apis: str, every_server: bool = FULL) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "target", _targets(apis, every_server=every_server), indirect=True
    )


EVERY_API = ("async", "sync", OBSTORE)


def _md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _collapse(values: list[str]) -> list[str]:
    """Drop consecutive repeats (a retried write of the same bytes)."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def _is_blob(prefix: str) -> Callable[[Request], bool]:
    return lambda request: (request.key or "").startswith(f"{prefix}/blobs/")


def _store_options(prefix: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": BUCKET,
        "endpoint_url": url,
        "prefix": prefix,
        "capabilities": ENFORCED,
        **extra,
    }


# -- the long workload ------------------------------------------------------------------


@dataclass
class Ledger:
    """What the store acknowledged: the ETag sequence per key and the last value per doc."""

    acked: dict[str, list[str]] = field(default_factory=dict)
    sessions: dict[str, SessionData] = field(default_factory=dict)
    traces: dict[str, list[TraceEvent]] = field(default_factory=dict)
    checkpoints: dict[str, LoopCheckpoint] = field(default_factory=dict)
    artifacts: dict[str, ArtifactStore] = field(default_factory=dict)

    def ack(self, key: str, result: PutResult) -> None:
        self.acked.setdefault(key, []).append(result.etag.strip('"'))


async def _call(
    store: AsyncS3SessionStore | S3SessionStore, name: str, *args: Any, **kw: Any
) -> Any:
    method = getattr(store, name)
    if isinstance(store, AsyncS3SessionStore):
        return await method(*args, **kw)
    return await asyncio.to_thread(method, *args, **kw)


SHARED_BLOB = "shared tool output, identical in every session\n" * 120
BASE_TRACES = helpers.trace_events()
BASE_CHECKPOINT = helpers.loop_checkpoint()


def _traces(turn: int) -> list[TraceEvent]:
    events = BASE_TRACES * (turn % 3 + 1)
    return [e.model_copy(update={"duration_ms": turn * 100 + i}) for i, e in enumerate(events)]


def _checkpoint(run_id: str, sid: str, turn: int) -> LoopCheckpoint:
    return BASE_CHECKPOINT.model_copy(update={"run_id": run_id, "session_id": sid, "turn": turn})


async def agent(
    store: AsyncS3SessionStore | S3SessionStore, sid: str, turns: int, ledger: Ledger
) -> None:
    """One agent session: create, then per turn a message (CAS or overwrite), a create-only
    subagent session, trace events and a loop checkpoint; artifacts every 10 turns."""
    layout = store.layout
    session = helpers.session(sid, messages=0)
    ledger.ack(layout.session_key(sid), await _call(store, "save", session, mode="create"))
    run_id = f"{sid}-run"
    checkpoint = _checkpoint(run_id, sid, 0)
    key = layout.loop_checkpoint_key(run_id)
    result = await _call(store, "save_loop_checkpoint", run_id, checkpoint, mode="create")
    ledger.ack(key, result)
    for turn in range(1, turns + 1):
        text = f"turn {turn}"
        if turn % 2:
            written: list[SessionData] = []

            def append(
                current: SessionData | None, text: str = text, written: list[SessionData] = written
            ) -> SessionData:
                assert current is not None
                written.append(helpers.with_message(current, text))
                return written[-1]

            result = await _call(store, "update", sid, append)
            session = written[-1]
        else:
            session = helpers.with_message(session, text)
            result = await _call(store, "save", session)
        ledger.ack(layout.session_key(sid), result)

        child = helpers.with_message(helpers.session(f"{sid}-sub-{turn}", messages=0), text)
        result = await _call(store, "save", child, mode="create")
        ledger.ack(layout.session_key(child.id), result)
        ledger.sessions[child.id] = child

        events = _traces(turn)
        ledger.ack(
            layout.sidecar_key(Part.TRACES, sid),
            await _call(store, "save_trace_events", sid, events),
        )
        ledger.traces[sid] = events

        checkpoint = _checkpoint(run_id, sid, turn)
        ledger.ack(key, await _call(store, "save_loop_checkpoint", run_id, checkpoint))
        ledger.checkpoints[run_id] = checkpoint

        if turn % 10 == 0:
            artifacts = helpers.artifacts(
                f"short output of {sid} turn {turn}",
                f"long output of {sid} turn {turn}\n" + "x" * 6000,
                SHARED_BLOB,
            )
            result = await _call(store, "save_artifacts", sid, artifacts)
            ledger.ack(layout.artifact_manifest_key(sid), result)
            ledger.artifacts[sid] = artifacts
    ledger.sessions[sid] = session


async def _verify(
    backend: Backend, prefix: str, proxy: FaultProxy, ledger: Ledger, turns: int
) -> dict[str, int]:
    """Read everything back over a direct connection and compare with the ledger."""
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as direct:
        for sid, expected in ledger.sessions.items():
            assert await direct.load(sid) == expected, sid
            if "-sub-" not in sid:
                # No duplicated or missing turn: exactly one message per turn, in order.
                built = helpers.session(sid, messages=0)
                for turn in range(1, turns + 1):
                    built = helpers.with_message(built, f"turn {turn}")
                assert expected == built
        for sid, events in ledger.traces.items():
            assert await direct.load_trace_events(sid) == events
        for run_id, checkpoint in ledger.checkpoints.items():
            assert await direct.load_loop_checkpoint(run_id) == checkpoint
        for sid, artifacts in ledger.artifacts.items():
            assert await direct.load_artifacts(sid) == artifacts
        report = await direct.fsck()
        assert report.ok, report.problems

    # The server applied exactly the acknowledged writes, in order.
    applied: dict[str, list[str]] = {}
    for exchange in proxy.applied_puts():
        assert exchange.request.key is not None
        applied.setdefault(exchange.request.key, []).append(exchange.request.body_md5)
    is_blob = _is_blob(prefix)
    blob_keys = {k for k in applied if k.startswith(f"{prefix}/blobs/")}
    for key in blob_keys:
        assert len(set(applied[key])) == 1, f"blob {key} written with different bodies"
    assert set(applied) - blob_keys == set(ledger.acked), "a write no one acknowledged"
    for key, etags in ledger.acked.items():
        assert _collapse(applied[key]) == _collapse(etags), key

    # Conditional writes whose first attempt landed unanswered and whose retry then lost to
    # itself (412): each one had to be recognised as the store's own write.
    landed = {(e.request.key, e.request.body_md5) for e in proxy.landed_unanswered()}
    self_conflicts = sum(
        1
        for e in proxy.exchanges
        if e.request.conditional_put
        and e.upstream_status == 412
        and (e.request.key, e.request.body_md5) in landed
        and not is_blob(e.request)
    )
    return {
        "requests": len(proxy.exchanges),
        "faults": sum(proxy.counts.values()),
        "landed_unanswered": len(proxy.landed_unanswered()),
        "self_conflicts_resolved": self_conflicts,
        **{kind: proxy.counts[kind] for kind in FAULT_KINDS},
    }


def _landed_not_on_conditional_puts(kind: str, request: Request) -> bool:
    return kind not in LANDED_KINDS or not request.conditional_put


async def _run_workload(
    server: Backend, prefix: str, api: str, faults: str, sessions: int, turns: int
) -> dict[str, int]:
    blob = _is_blob(prefix)

    def eligible(kind: str, request: Request) -> bool:
        # Not yet: a 409 on a blob upload surfaces (test_blob_upload_retries_a_409).
        if kind == "conflict409" and blob(request):
            return False
        return faults == "all" or _landed_not_on_conditional_puts(kind, request)

    proxy = FaultProxy(
        str(server.endpoint),
        rate=RATE,
        seed=SEED,
        weights={"conflict409": 3.0},
        kind_eligible=eligible,
        # Not yet: a 409 on the SDK retry of a write that had landed makes the store's own
        # retry lose to itself (test_update_that_landed_then_got_a_409).
        conflict_on_retries=False,
        identity_strip=prefix,
    )
    started = time.monotonic()
    ledger = Ledger()
    with proxy:
        options = _store_options(prefix, proxy.url, read_timeout=1.0, max_attempts=8)
        if api == OBSTORE:
            options["transport"] = "obstore"
        if api in ("async", OBSTORE):
            async with AsyncS3SessionStore(**options) as store:
                await asyncio.gather(
                    *(agent(store, f"s{i}", turns, ledger) for i in range(sessions))
                )
        else:
            with S3SessionStore(**options) as sync_store:
                await asyncio.gather(
                    *(agent(sync_store, f"s{i}", turns, ledger) for i in range(sessions))
                )
    figures = await _verify(server, prefix, proxy, ledger, turns)
    figures["seconds"] = round(time.monotonic() - started)
    print(f"\n[faults {server.name} {api}-{faults} {sessions}x{turns}] {figures}")
    for kind in FAULT_KINDS:
        assert proxy.counts[kind] >= 1, f"no {kind} fault was injected: {dict(proxy.counts)}"
    assert figures["landed_unanswered"] >= 1
    if faults == "all":
        assert figures["self_conflicts_resolved"] >= 1
    return figures


@pytest.mark.s3
@pytest.mark.slow
@targets("async", OBSTORE, every_server=True)
async def test_agent_workload_survives_faults(target: tuple[str, Backend], prefix: str) -> None:
    """3 agents × 30 turns at a 10 % fault rate (full: 6 × 80), async on every server, and
    on the obstore transport.

    Lost answers to conditional PUTs (a reset or timeout after the server applied the
    request) are exercised by test_agent_workload_full_fault_mix, async and sync.
    """
    api, server = target
    sessions, turns = (6, 80) if FULL else (3, 30)
    await _run_workload(server, prefix, api, "all", sessions, turns)


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.parametrize(
    "api",
    [
        "async",
        "sync",
    ],
)
async def test_agent_workload_full_fault_mix(one_server: Backend, prefix: str, api: str) -> None:
    """Every fault kind on every request kind: 2 agents × 20 turns (full: 3 × 40)."""
    sessions, turns = (3, 40) if FULL else (2, 20)
    await _run_workload(one_server, prefix, api, "all", sessions, turns)


# -- scripted faults: what is retried, what is surfaced -----------------------------------


@asynccontextmanager
async def faulty(
    backend: Backend, prefix: str, api: str, **options: Any
) -> AsyncIterator[tuple[FaultProxy, AsyncS3SessionStore | S3SessionStore]]:
    """A proxy without random faults and a store behind it, its connection pool warmed up."""
    with FaultProxy(str(backend.endpoint), identity_strip=prefix) as proxy:
        kwargs = _store_options(prefix, proxy.url, **{"read_timeout": 0.5, **options})
        if api == OBSTORE:
            kwargs["transport"] = "obstore"
        if api in ("async", OBSTORE):
            async with AsyncS3SessionStore(**kwargs) as store:
                await store.load("warm-up")
                yield proxy, store
        else:
            with S3SessionStore(**kwargs) as sync_store:
                sync_store.load("warm-up")
                yield proxy, sync_store


def _put_to(key: str) -> Callable[[Request], bool]:
    return lambda request: request.object_put and request.key == key


def _attempts(proxy: FaultProxy, key: str) -> list[str | None]:
    return [e.fault for e in proxy.exchanges if e.request.object_put and e.request.key == key]


# object_store retries 5xx and connection errors itself, but not a timed-out PUT (not a safe
# request): there the store's own outcome check (a HEAD for its write token) decides what
# landed. The same scripts and checks hold on both transports; where the wire differs, the
# test says so.


@pytest.mark.s3
@targets(*EVERY_API)
@pytest.mark.parametrize("kind", ["error500", "slowdown503", "reset_before", "slow"])
async def test_transient_faults_are_retried_by_the_sdk(
    target: tuple[str, Backend], prefix: str, kind: str
) -> None:
    api, server = target
    async with faulty(server, prefix, api) as (proxy, store):
        key = store.layout.session_key("s1")
        proxy.script(kind, _put_to(key))
        proxy.script(kind, _put_to(key))
        await _call(store, "save", helpers.session("s1"), mode="create")
        assert await _call(store, "load", "s1") == helpers.session("s1")
        assert _attempts(proxy, key) == [kind, kind, None] if kind != "slow" else [kind]
        if kind == "slow":
            assert proxy.pending_script == 1


@pytest.mark.s3
@targets(*EVERY_API)
@pytest.mark.parametrize("kind", ["timeout", "reset_after"])
async def test_create_that_landed_unanswered_is_not_a_conflict(
    target: tuple[str, Backend], prefix: str, kind: str
) -> None:
    """The server applied the create; its answer never came (read timeout or reset). The
    store recognises its own bytes instead of raising AlreadyExistsError."""
    api, server = target
    async with faulty(server, prefix, api) as (proxy, store):
        key = store.layout.session_key("s1")
        proxy.script(kind, _put_to(key))
        await _call(store, "save", helpers.session("s1"), mode="create")
        if api != OBSTORE and kind == "timeout":
            # botocore re-sends the same create, which meets the landed one as a 412.
            statuses = [e.upstream_status for e in proxy.exchanges if e.request.key == key]
            assert statuses[:2] == [200, 412]
        assert await _call(store, "load", "s1") == helpers.session("s1")
        with pytest.raises(AlreadyExistsError):  # a real conflict is still one
            await _call(store, "save", helpers.session("s1", messages=1), mode="create")


@pytest.mark.s3
@targets(*EVERY_API)
async def test_update_whose_write_landed_unanswered_appends_once(
    target: tuple[str, Backend], prefix: str
) -> None:
    """An If-Match write that landed but whose answer was lost must not run ``fn`` again."""
    api, server = target
    async with faulty(server, prefix, api) as (proxy, store):
        await _call(store, "save", helpers.session("s1", messages=0), mode="create")
        key = store.layout.session_key("s1")
        proxy.script("reset_after", lambda r: _put_to(key)(r) and "if-match" in r.headers)
        await _call(store, "update", "s1", lambda cur: helpers.with_message(cur, "once"))
        loaded = await _call(store, "load", "s1")
        assert loaded == helpers.with_message(helpers.session("s1", messages=0), "once")


@pytest.mark.s3
@targets("async", "sync")
async def test_update_that_landed_then_got_a_409(target: tuple[str, Backend], prefix: str) -> None:
    """Attempt 1 lands unanswered (timeout), the SDK's retry gets a 409, the store's own retry
    then gets 412: the write is the store's, ``fn`` must not run again. (object_store does not
    re-send a timed-out PUT, so there is no SDK retry to script on obstore.)"""
    api, server = target
    async with faulty(server, prefix, api) as (proxy, store):
        await _call(store, "save", helpers.session("s1", messages=0), mode="create")
        key = store.layout.session_key("s1")
        conditional = lambda r: _put_to(key)(r) and "if-match" in r.headers  # noqa: E731
        proxy.script("timeout", conditional)
        proxy.script("conflict409", conditional)
        await _call(store, "update", "s1", lambda cur: helpers.with_message(cur, "once"))
        loaded = await _call(store, "load", "s1")
        assert loaded == helpers.with_message(helpers.session("s1", messages=0), "once")


@pytest.mark.s3
@targets("async", "sync")
async def test_create_that_landed_then_got_a_409(target: tuple[str, Backend], prefix: str) -> None:
    api, server = target
    async with faulty(server, prefix, api) as (proxy, store):
        key = store.layout.session_key("s1")
        proxy.script("timeout", _put_to(key))
        proxy.script("conflict409", _put_to(key))
        await _call(store, "save", helpers.session("s1"), mode="create")


@pytest.mark.s3
@targets(*EVERY_API)
async def test_409_is_retried_by_the_store(target: tuple[str, Backend], prefix: str) -> None:
    api, server = target
    async with faulty(server, prefix, api) as (proxy, store):
        await _call(store, "save", helpers.session("s1", messages=0), mode="create")
        key = store.layout.session_key("s1")
        for _ in range(3):
            proxy.script("conflict409", _put_to(key))
        await _call(store, "update", "s1", lambda cur: helpers.with_message(cur, "once"))
        loaded = await _call(store, "load", "s1")
        assert loaded == helpers.with_message(helpers.session("s1", messages=0), "once")
        assert _attempts(proxy, key)[-4:] == ["conflict409"] * 3 + [None]


@pytest.mark.s3
@targets(*EVERY_API)
async def test_persistent_faults_are_surfaced_with_the_key(
    target: tuple[str, Backend], prefix: str
) -> None:
    """What outlives the retries is raised, typed, naming bucket and key; nothing written."""
    api, server = target
    async with faulty(server, prefix, api, max_attempts=2, conflict_retries=1) as (
        proxy,
        store,
    ):
        key = store.layout.session_key("s1")
        for _ in range(3):
            proxy.script("slowdown503", _put_to(key))
        with pytest.raises(TransientError) as transient:
            await _call(store, "save", helpers.session("s1"))
        assert (transient.value.key, transient.value.code) == (key, "SlowDown")
        assert key in str(transient.value)
        assert BUCKET in str(transient.value)
        assert server.raw_get(key) is None
        proxy.clear_script()  # what the SDK's attempts did not use up
        for _ in range(2):
            proxy.script("conflict409", _put_to(key))
        with pytest.raises(ConditionalRequestConflictError) as conflict:
            await _call(store, "save", helpers.session("s1"), mode="create")
        assert conflict.value.key == key
        assert server.raw_get(key) is None
        for _ in range(6):  # aiohttp re-sends once more on a reused connection
            proxy.script("reset_before", _put_to(key))
        with pytest.raises(TransientError) as reset:
            await _call(store, "save", helpers.session("s1"))
        assert reset.value.key == key


@pytest.mark.s3
async def test_max_attempts_counts_the_first_try(one_server: Backend, prefix: str) -> None:
    """StoreSettings.max_attempts is documented as attempts per request, first try included."""
    async with faulty(one_server, prefix, "async", max_attempts=2) as (proxy, store):
        key = store.layout.session_key("s1")
        for _ in range(2):
            proxy.script("error500", _put_to(key))
        with pytest.raises(TransientError):
            await _call(store, "save", helpers.session("s1"))


@pytest.mark.s3
async def test_blob_upload_retries_a_409(one_server: Backend, prefix: str) -> None:
    async with faulty(one_server, prefix, "async") as (proxy, store):
        proxy.script(
            "conflict409", lambda r: r.object_put and (r.key or "").startswith(f"{prefix}/blobs/")
        )
        artifacts = helpers.artifacts("y" * 5000)
        await _call(store, "save_artifacts", "s1", artifacts)
        assert await _call(store, "load_artifacts", "s1") == artifacts


@pytest.mark.s3
async def test_probe_survives_a_409(one_server: Backend, prefix: str) -> None:
    with FaultProxy(str(one_server.endpoint)) as proxy:
        proxy.script("conflict409", lambda r: r.conditional_put)
        async with AsyncS3SessionStore(
            bucket=BUCKET, endpoint_url=proxy.url, prefix=prefix
        ) as store:
            caps = await store.probe()
        assert caps.conditions_enforced


# -- the self-conflict check needs MD5 ETags (not so under SSE-KMS) ------------------------


class _KmsLikeLostAnswer:
    """An in-memory client whose ETags are not MD5s (as S3 gives SSE-KMS objects) and whose
    first create-only PUT per key lands but answers as a retried 412 (a lost answer)."""

    def __init__(self, inner: AsyncMemoryObjectClient) -> None:
        self.inner = inner
        self.bucket = inner.bucket
        self._to_inner: dict[str, str] = {}
        self._lost: set[str] = set()

    def _kms(self, etag: str) -> str:
        opaque = '"' + hashlib.sha256(etag.encode()).hexdigest()[:32] + '"'
        self._to_inner[opaque] = etag
        return opaque

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        inner_tag = None if if_none_match is None else self._to_inner.get(if_none_match, "-")
        got = await self.inner.get(
            key, max_bytes=max_bytes, range_end=range_end, if_none_match=inner_tag
        )
        if got is None:
            return None
        return replace(got, info=replace(got.info, etag=self._kms(got.info.etag)))

    async def head(self, key: str) -> ObjectInfo | None:
        info = await self.inner.head(key)
        return None if info is None else replace(info, etag=self._kms(info.etag))

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        inner_match = self._to_inner.get(if_match, if_match) if if_match else None
        result = await self.inner.put(
            key, body, if_none_match=if_none_match, if_match=inner_match, metadata=metadata
        )
        if if_none_match and key not in self._lost:
            self._lost.add(key)
            # The SDK's retry of a request whose answer was lost: it gets a 412.
            await self.inner.put(key, body, if_none_match=True, metadata=metadata)
        return replace(result, etag=self._kms(result.etag))

    def __getattr__(self, name: str) -> Any:
        # Everything else (multipart, delete, list, ...) goes straight to the inner client.
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    "kms",
    [False, True],
)
async def test_lost_create_answer_with_non_md5_etags(kms: bool) -> None:
    inner = AsyncMemoryObjectClient(BUCKET)
    client: Any = _KmsLikeLostAnswer(inner)
    if not kms:
        client._kms = lambda etag: etag
    async with AsyncS3SessionStore(
        client=client, bucket=BUCKET, prefix="p", capabilities=ENFORCED
    ) as store:
        await store.save(helpers.session("s1"), mode="create")
        assert await store.load("s1") == helpers.session("s1")


# -- the obstore transport ----------------------------------------------------------------
# Selected with S3STORE_TEST_BACKENDS=moto-obstore,seaweedfs-obstore; the tests above run on
# it through ``targets(..., OBSTORE)``.


@pytest.fixture(params=obstore_servers())
def obstore_server(request: pytest.FixtureRequest) -> Backend:
    pytest.importorskip("obstore")
    opened = open_server(request, request.param)
    return replace(opened, name=f"{opened.name}{OBSTORE_SUFFIX}", transport=OBSTORE)


@pytest.mark.s3
async def test_obstore_is_async_only_and_builds_its_own_client(
    obstore_server: Backend, prefix: str
) -> None:
    """The sync store refuses the transport; so does a store given its own client."""
    options = obstore_server.store_kwargs(prefix)
    with pytest.raises(ConfigurationError, match="async only"), S3SessionStore(**options):
        pass
    given = AsyncMemoryObjectClient(BUCKET)
    with pytest.raises(ConfigurationError, match="client= was passed"):
        async with AsyncS3SessionStore(**options, client=given):
            pass
    async with AsyncS3SessionStore(**options) as store:
        client = await store._object_client()
        assert client.describe()["endpoint"].endswith("(obstore)")
