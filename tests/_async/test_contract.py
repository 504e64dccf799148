"""The store contract, written once, run against every backend, async and (generated) sync.

``tests/_sync/test_contract.py`` is generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from s3store import AsyncS3SessionStore, cas, codec
from s3store._async.lease import AsyncLease
from s3store._backends import agather_limited, asleep
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    IntegrityError,
    InvalidIdError,
    KeyCollisionError,
    LeaseHeldError,
    LeaseLostError,
    PreconditionFailedError,
    UnsupportedBackendError,
)
from s3store.keys import encode_v1_id
from s3store.models import SessionData, SessionSnapshotV1, WorkflowCheckpoint
from s3store.testing import MemoryBackend, MemoryObjectClient
from s3store.types import IfMatch
from tests import helpers
from tests.conftest import Backend


@pytest.fixture(params=["whole", "journal"])
def mode(request: pytest.FixtureRequest) -> str:
    """The store's write mode: whole-document saves, or journal mode (deltas)."""
    value: str = request.param
    return value


def kwargs(backend: Backend, prefix: str, mode: str, **extra: Any) -> dict[str, Any]:
    """Store arguments for ``mode`` on ``backend``."""
    return backend.store_kwargs(prefix, journal=mode == "journal", **extra)


@pytest.fixture
async def store(backend: Backend, prefix: str, mode: str) -> AsyncIterator[AsyncS3SessionStore]:
    async with AsyncS3SessionStore(**kwargs(backend, prefix, mode)) as opened:
        yield opened


@pytest.fixture
async def whole_store(backend: Backend, prefix: str) -> AsyncIterator[AsyncS3SessionStore]:
    """Whole-document mode only: for what the write mode does not touch (blob gc), where a
    journal-mode run would only repeat the same requests at the cost of its clock waits."""
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as opened:
        yield opened


@pytest.fixture
async def v1_store(backend: Backend, prefix: str, mode: str) -> AsyncIterator[AsyncS3SessionStore]:
    async with AsyncS3SessionStore(**kwargs(backend, prefix, mode, layout="v1")) as opened:
        yield opened


def requests(store: AsyncS3SessionStore) -> int:
    return store.stats.total_requests


# -- sessions ---------------------------------------------------------------------------


async def test_save_load_round_trip_is_byte_identical(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    data = helpers.session("sess-0001")
    result = await store.save(data)
    assert result.etag
    assert await store.load("sess-0001") == data
    # The stored bytes are exactly what the Rust store writes for this document.
    assert backend.raw_get(f"{store.prefix}/sess-0001.json") == helpers.fixture("session.json")


async def test_missing_ids_load_as_none(store: AsyncS3SessionStore) -> None:
    assert await store.load("nope") is None
    assert await store.load_artifacts("nope") is None
    assert await store.load_trace_events("nope") is None
    assert await store.load_run_records("nope") is None
    assert await store.load_verification_reports("nope") is None
    assert await store.load_subagent_tasks("nope") is None
    assert await store.load_loop_checkpoint("nope") is None
    assert not await store.exists("nope")


async def test_save_overwrites(store: AsyncS3SessionStore) -> None:
    await store.save(helpers.session("s1", messages=1))
    newer = helpers.session("s1", messages=3).model_copy(update={"updated_at": 1800000000})
    await store.save(newer)
    loaded = await store.load("s1")
    assert loaded is not None
    assert len(loaded.messages) == 3
    assert loaded.updated_at == 1800000000


async def test_second_save_layout(store: AsyncS3SessionStore, backend: Backend, mode: str) -> None:
    first = helpers.session("s1", messages=1)
    second = helpers.with_message(first, "more")
    await store.save(first)
    await store.save(second)
    p = store.prefix
    if mode == "whole":
        # The document is rewritten whole, as the Rust store writes it.
        assert backend.raw_get(f"{p}/s1.json") == codec.dumps(second)
        assert backend.raw_keys(f"{p}/journal/") == []
    else:
        # Journal mode: the document stays the first version; the change is one delta
        # holding only the new message; compaction folds it into the document, byte for
        # byte what whole-document mode writes, and deletes the delta.
        assert backend.raw_get(f"{p}/s1.json") == codec.dumps(first)
        (delta_key,) = backend.raw_keys(f"{p}/journal/s1/")
        assert delta_key.endswith(".000000000001.json")
        raw = backend.raw_get(delta_key)
        assert raw is not None
        delta = json.loads(raw)
        assert (delta["id"], delta["seq"], delta["keep"]) == ("s1", 1, 1)
        assert delta["append"] == json.loads(codec.dumps(second))["messages"][1:]
        assert await store.compact("s1") == 1
        assert backend.raw_get(f"{p}/s1.json") == codec.dumps(second)
        assert backend.raw_keys(f"{p}/journal/") == []
    assert await store.load("s1") == second


async def test_exists_lifecycle(store: AsyncS3SessionStore) -> None:
    assert not await store.exists("s1")
    await store.save(helpers.session("s1"))
    assert await store.exists("s1")
    await store.delete("s1")
    assert not await store.exists("s1")


async def test_sidecars_round_trip_byte_identical(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    sid = "sess-0001"
    await store.save_trace_events(sid, helpers.trace_events())
    await store.save_run_records(sid, helpers.run_records())
    await store.save_verification_reports(sid, helpers.verification_reports())
    await store.save_subagent_tasks(sid, helpers.subagent_tasks())
    assert await store.load_trace_events(sid) == helpers.trace_events()
    assert await store.load_run_records(sid) == helpers.run_records()
    assert await store.load_verification_reports(sid) == helpers.verification_reports()
    assert await store.load_subagent_tasks(sid) == helpers.subagent_tasks()
    for directory, name in [
        ("traces", "trace_events.json"),
        ("runs", "run_records.json"),
        ("verification", "verification_reports.json"),
        ("subagent_tasks", "subagent_tasks.json"),
    ]:
        assert backend.raw_get(f"{store.prefix}/{directory}/{sid}.json") == helpers.fixture(name)


async def test_key_layout_mirrors_the_rust_tree(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    sid = "session/a"
    await store.save(helpers.session(sid))
    await store.save_artifacts(sid, helpers.artifacts("small"))
    await store.save_trace_events(sid, helpers.trace_events())
    await store.save_run_records(sid, helpers.run_records())
    await store.save_verification_reports(sid, helpers.verification_reports())
    await store.save_subagent_tasks(sid, helpers.subagent_tasks())
    await store.save_loop_checkpoint("run/1", helpers.loop_checkpoint("run/1"))
    p = store.prefix
    assert backend.raw_keys(p + "/") == sorted(
        [
            f"{p}/session_a.json",
            f"{p}/artifacts/session_a/artifacts.json",
            f"{p}/traces/session_a.json",
            f"{p}/runs/session_a.json",
            f"{p}/verification/session_a.json",
            f"{p}/subagent_tasks/session_a.json",
            f"{p}/loop_checkpoints/run_1.json",
        ]
    )


async def test_v1_snapshot_keeps_members_on_fragment_saves(
    v1_store: AsyncS3SessionStore, backend: Backend, mode: str
) -> None:
    snapshot = codec.loads(SessionSnapshotV1, helpers.fixture("session_snapshot_v1.json"))
    await v1_store.save_snapshot(snapshot)
    key = f"{v1_store.prefix}/v1/sessions/{encode_v1_id('sess-0001')}.json"
    assert backend.raw_get(key) == helpers.fixture("session_snapshot_v1.json")
    await v1_store.save_run_records("sess-0001", [])
    if mode == "journal":
        # Journal mode is for bare session documents: a session save over a snapshot is
        # refused, naming the key, and the snapshot stays as it was.
        stored = backend.raw_get(key)
        with pytest.raises(ConfigurationError, match="v1 snapshots") as caught:
            await v1_store.save(helpers.with_message(snapshot.session, "more"))
        assert caught.value.key == key
        assert backend.raw_get(key) == stored
        assert backend.raw_keys(f"{v1_store.prefix}/v1/journal/") == []
        return
    await v1_store.save(helpers.with_message(snapshot.session, "more"))
    await v1_store.save_artifacts("sess-0001", helpers.artifacts("x" * 5000))
    loaded = await v1_store.load_snapshot("sess-0001")
    assert loaded is not None
    assert loaded.run_records == []
    assert loaded.trace_events == snapshot.trace_events
    assert loaded.subagent_tasks == snapshot.subagent_tasks
    assert loaded.session.messages[-1] == helpers.message("more")
    assert loaded.artifacts == helpers.artifacts("x" * 5000).artifacts
    assert (await v1_store.fsck()).problems == []


async def test_workflow_checkpoints_in_both_layouts(
    store: AsyncS3SessionStore, v1_store: AsyncS3SessionStore
) -> None:
    checkpoint = WorkflowCheckpoint.model_validate(
        {"schema_version": 1, "workflow_id": "wf/1", "steps": [], "checkpoint_ms": 1}
    )
    for each in (store, v1_store):
        await each.save_workflow_checkpoint("wf/1", checkpoint)
        assert await each.load_workflow_checkpoint("wf/1") == checkpoint
        with pytest.raises(InvalidIdError):
            await each.save_workflow_checkpoint("wf/2", checkpoint)
        await each.delete_workflow_checkpoint("wf/1")
        assert await each.load_workflow_checkpoint("wf/1") is None


async def test_v1_layout_keys_and_listing(v1_store: AsyncS3SessionStore, backend: Backend) -> None:
    for sid in ("tenant/session", "tenant_session", "sess-0001"):
        await v1_store.save(helpers.session(sid))
    await v1_store.save_trace_events("tenant/session", helpers.trace_events())
    await v1_store.save_loop_checkpoint("run-0001", helpers.loop_checkpoint())
    p = v1_store.prefix
    keys = backend.raw_keys(p + "/")
    assert f"{p}/v1/sessions/id_dGVuYW50L3Nlc3Npb24.json" in keys
    assert f"{p}/v1/sessions/id_dGVuYW50X3Nlc3Npb24.json" in keys
    assert f"{p}/v1/sessions/id_c2Vzcy0wMDAx.json" in keys
    assert f"{p}/v1/traces/{encode_v1_id('tenant/session')}.json" in keys
    assert f"{p}/v1/loop_checkpoints/id_cnVuLTAwMDE.json" in keys
    assert await v1_store.list() == ["sess-0001", "tenant/session", "tenant_session"]
    # Ids that collide in the legacy layout are independent in v1.
    await v1_store.delete("tenant/session")
    assert await v1_store.load("tenant/session") is None
    loaded = await v1_store.load("tenant_session")
    assert loaded is not None
    assert loaded.id == "tenant_session"


async def test_delete_removes_session_and_sidecars_not_checkpoints(
    store: AsyncS3SessionStore, backend: Backend, mode: str
) -> None:
    sid = "s1"
    await store.save(helpers.session(sid))
    await store.save(helpers.session(sid, messages=2))  # journal mode: a delta
    await store.save_artifacts(sid, helpers.artifacts("x" * 10_000, "small"))
    await store.save_trace_events(sid, helpers.trace_events())
    await store.save_run_records(sid, helpers.run_records())
    await store.save_verification_reports(sid, helpers.verification_reports())
    await store.save_subagent_tasks(sid, helpers.subagent_tasks())
    await store.save_loop_checkpoint("run-0001", helpers.loop_checkpoint())
    await store.save(helpers.session("s10"))  # prefix-boundary neighbour
    p = store.prefix
    deltas = backend.raw_keys(f"{p}/journal/")
    assert len(deltas) == (1 if mode == "journal" else 0)
    before = requests(store)
    await store.delete(sid)
    # One listing (the artifacts; journal mode: the deltas too), one DeleteObjects.
    assert requests(store) - before == (3 if mode == "journal" else 2)
    remaining = [k for k in backend.raw_keys(p + "/") if "/blobs/" not in k]
    assert remaining == [f"{p}/loop_checkpoints/run-0001.json", f"{p}/s10.json"]
    assert await store.load_artifacts(sid) is None
    await store.delete(sid)  # twice is fine
    assert await store.load("s10") is not None


async def test_list(store: AsyncS3SessionStore) -> None:
    assert await store.list() == []
    for sid in ("session-1", "session-2", "session-3"):
        await store.save(helpers.session(sid))
    await store.save_trace_events("session-1", helpers.trace_events())
    await store.save_loop_checkpoint("run-0001", helpers.loop_checkpoint())
    await store.health_check()
    assert await store.list() == ["session-1", "session-2", "session-3"]


async def test_list_paginates_one_request_per_page(
    backend: Backend, prefix: str, mode: str
) -> None:
    async with AsyncS3SessionStore(**kwargs(backend, prefix, mode, list_page_size=2)) as store:
        for i in range(5):
            await store.save(helpers.session(f"s{i}"))
        before = requests(store)
        assert await store.list() == [f"s{i}" for i in range(5)]
        assert requests(store) - before == 3  # ceil(5 / 2)


async def test_prefix_isolation(backend: Backend, prefix: str, mode: str) -> None:
    async with (
        AsyncS3SessionStore(**kwargs(backend, prefix + "/a", mode)) as a,
        AsyncS3SessionStore(**kwargs(backend, prefix + "/ab", mode)) as ab,
    ):
        await a.save(helpers.session("one"))
        await ab.save(helpers.session("two"))
        assert await a.list() == ["one"]
        assert await ab.list() == ["two"]
        assert await a.load("two") is None
        await a.delete("two")
        assert await ab.load("two") is not None


async def test_traversal_id_stays_inside_prefix(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    sid = "../../../etc/passwd"
    await store.save(helpers.session(sid))
    assert backend.raw_keys(store.prefix + "/") == [f"{store.prefix}/______etc_passwd.json"]
    loaded = await store.load(sid)
    assert loaded is not None
    assert loaded.id == sid


@pytest.mark.parametrize(
    ("sid", "stem"), [("foo\\bar\\baz", "foo_bar_baz"), ("foo/bar\\baz..qux", "foo_bar_baz_qux")]
)
async def test_backslash_ids(
    store: AsyncS3SessionStore, backend: Backend, sid: str, stem: str
) -> None:
    await store.save(helpers.session(sid))
    assert backend.raw_keys(store.prefix + "/") == [f"{store.prefix}/{stem}.json"]
    assert await store.list() == [stem]


@pytest.mark.parametrize("sid", ["", "a\x00b", "tab\tid", "\udc80"])
async def test_invalid_ids_are_refused_and_nothing_is_written(
    store: AsyncS3SessionStore, backend: Backend, sid: str
) -> None:
    with pytest.raises(InvalidIdError):
        await store.load(sid)
    with pytest.raises(InvalidIdError):
        await store.save_trace_events(sid, helpers.trace_events())
    assert backend.raw_keys(store.prefix + "/") == []


async def test_overlong_id_is_refused(store: AsyncS3SessionStore) -> None:
    with pytest.raises(InvalidIdError, match="1024"):
        await store.save(helpers.session("x" * 1100))


async def test_key_collision_is_detected(store: AsyncS3SessionStore) -> None:
    await store.save(helpers.session("tenant/session"))
    with pytest.raises(KeyCollisionError) as caught:
        await store.load("tenant_session")
    assert caught.value.key == f"{store.prefix}/tenant_session.json"
    assert not await store.exists("tenant_session")
    assert await store.exists("tenant/session")
    with pytest.raises(KeyCollisionError):
        await store.delete("tenant_session")
    assert await store.load("tenant/session") is not None


@pytest.mark.parametrize("body", [b"", b"{", b'{"id": "s1", "config": ', b"not json", b"[]"])
async def test_corrupt_objects_raise_typed_errors_naming_the_key(
    store: AsyncS3SessionStore, backend: Backend, body: bytes
) -> None:
    await store.save(helpers.session("healthy"))
    backend.raw_put(f"{store.prefix}/s1.json", body)
    with pytest.raises(CorruptObjectError) as caught:
        await store.load("s1")
    assert caught.value.key == f"{store.prefix}/s1.json"
    assert caught.value.bucket == store.bucket
    assert f"key={store.prefix}/s1.json" in str(caught.value)
    assert await store.load("healthy") is not None


async def test_request_counts_per_operation(store: AsyncS3SessionStore, mode: str) -> None:
    data = helpers.session("s1")
    counts: dict[str, int] = {}

    async def count(name: str, operation: Callable[[], Awaitable[Any]]) -> None:
        before = requests(store)
        await operation()
        counts[name] = requests(store) - before

    await count("save", lambda: store.save(data))
    await count("load", lambda: store.load("s1"))
    await count("save (a change)", lambda: store.save(helpers.with_message(data, "more")))
    await count("load (changed)", lambda: store.load("s1"))
    await count("exists", lambda: store.exists("s1"))
    await count("exists-ambiguous", lambda: store.exists("s_1"))
    await count("save_trace_events", lambda: store.save_trace_events("s1", helpers.trace_events()))
    await count("load_trace_events", lambda: store.load_trace_events("s1"))
    await count("save_run_records", lambda: store.save_run_records("s1", helpers.run_records()))
    await count("load_run_records", lambda: store.load_run_records("s1"))
    await count(
        "save_verification_reports",
        lambda: store.save_verification_reports("s1", helpers.verification_reports()),
    )
    await count("load_verification_reports", lambda: store.load_verification_reports("s1"))
    await count(
        "save_subagent_tasks", lambda: store.save_subagent_tasks("s1", helpers.subagent_tasks())
    )
    await count("load_subagent_tasks", lambda: store.load_subagent_tasks("s1"))
    await count(
        "save_artifacts (inline)", lambda: store.save_artifacts("s1", helpers.artifacts("short"))
    )
    await count("load_artifacts (inline)", lambda: store.load_artifacts("s1"))
    await count(
        "save_loop_checkpoint",
        lambda: store.save_loop_checkpoint("r", helpers.loop_checkpoint("r")),
    )
    await count("load_loop_checkpoint", lambda: store.load_loop_checkpoint("r"))
    await count("delete_loop_checkpoint", lambda: store.delete_loop_checkpoint("r"))
    await count("list", lambda: store.list())
    await count("delete", lambda: store.delete("s1"))
    expected = {
        "save": 1,
        "load": 1,
        "save (a change)": 1,
        "load (changed)": 1,
        "exists": 1,
        "exists-ambiguous": 1,
        "save_trace_events": 1,
        "load_trace_events": 1,
        "save_run_records": 1,
        "load_run_records": 1,
        "save_verification_reports": 1,
        "load_verification_reports": 1,
        "save_subagent_tasks": 1,
        "load_subagent_tasks": 1,
        "save_artifacts (inline)": 1,
        "load_artifacts (inline)": 1,
        "save_loop_checkpoint": 1,
        "load_loop_checkpoint": 1,
        "delete_loop_checkpoint": 1,
        "list": 1,
        "delete": 2,
    }
    if mode == "journal":
        expected |= {
            # The store's first write of a session reads its state first (LIST + GET: the
            # incarnation and seq to append to), then creates the document.
            "save": 3,
            # The document, and one LIST of its incarnation's deltas (none yet).
            "load": 2,
            # A delta (create-only PUT) and the HEAD that confirms it.
            "save (a change)": 2,
            # GET + LIST + one GET per pending delta.
            "load (changed)": 3,
            # Trace events and run records are journaled too: their document and one LIST
            # of their deltas (a first save creates the document: one PUT, as whole).
            "load_trace_events": 2,
            "load_run_records": 2,
            # One more listing: the journal's deltas go in the same DeleteObjects.
            "delete": 3,
        }
    assert counts == expected


async def test_concurrent_saves_of_one_session(store: AsyncS3SessionStore) -> None:
    data = [helpers.session("s1", messages=n) for n in range(1, 6)]
    await agather_limited([partial(store.save, d) for d in data], 5)
    loaded = await store.load("s1")
    assert loaded is not None
    assert loaded in data


# -- loop checkpoints, health ------------------------------------------------------------


async def test_loop_checkpoint_lifecycle(store: AsyncS3SessionStore, backend: Backend) -> None:
    await store.save_loop_checkpoint("run-z", helpers.loop_checkpoint("run-z"))
    loaded = await store.load_loop_checkpoint("run-z")
    assert loaded == helpers.loop_checkpoint("run-z")
    assert backend.raw_keys(f"{store.prefix}/loop_checkpoints/") == [
        f"{store.prefix}/loop_checkpoints/run-z.json"
    ]
    await store.delete_loop_checkpoint("run-z")
    assert await store.load_loop_checkpoint("run-z") is None
    await store.delete_loop_checkpoint("run-z")


async def test_loop_checkpoint_run_id_must_match(store: AsyncS3SessionStore) -> None:
    with pytest.raises(InvalidIdError):
        await store.save_loop_checkpoint("run-a", helpers.loop_checkpoint("run-b"))
    assert await store.load_loop_checkpoint("run-a") is None


async def test_loop_checkpoint_future_schema_refused(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    body = helpers.fixture("loop_checkpoint.json").replace(
        b'"schema_version": 1', b'"schema_version": 2'
    )
    backend.raw_put(f"{store.prefix}/loop_checkpoints/run-0001.json", body)
    with pytest.raises(CorruptObjectError, match="schema version 2"):
        await store.load_loop_checkpoint("run-0001")


async def test_health_check(store: AsyncS3SessionStore, backend: Backend) -> None:
    assert store.backend_name == "s3"
    assert await store.health_check() is None
    assert backend.raw_keys(store.prefix + "/") == []


# -- artifacts: content addressing ------------------------------------------------------


async def test_artifacts_round_trip_with_blobs(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    big = "line of output\n" * 2000
    stored = helpers.artifacts(big, "tiny", big)
    await store.save_artifacts("s1", stored)
    assert await store.load_artifacts("s1") == stored
    blobs = backend.raw_keys(f"{store.prefix}/blobs/blake3/")
    assert len(blobs) == 1  # two artifacts, one distinct large content
    manifest = backend.raw_get(f"{store.prefix}/artifacts/s1/artifacts.json")
    assert manifest is not None
    assert b'"algo": "blake3"' in manifest
    assert b'"content": "tiny"' in manifest


async def test_artifacts_deduplicate_across_sessions(backend: Backend, prefix: str) -> None:
    content = "x" * (1024 * 1024)
    shared = helpers.artifacts(content)
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix, max_concurrency=8)) as store:
        await agather_limited(
            [partial(store.save_artifacts, f"s{i}", shared) for i in range(50)], 8
        )
        manifest_bytes = store.stats.bytes_up - len(content)
        assert store.stats.requests["PutObject"] == 51
        assert 0 < manifest_bytes < 50 * 1024
        before = requests(store)
        await store.save_artifacts("s7", shared)
        assert requests(store) - before == 1  # unchanged: the manifest only
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as fresh:
        loaded = await fresh.load_artifacts("s42")
        assert loaded == shared
    assert len(backend.raw_keys(f"{prefix}/blobs/")) == 1


async def test_large_artifacts_upload_multipart_once(backend: Backend, prefix: str) -> None:
    mib = 1024 * 1024
    big = helpers.artifacts("z" * (11 * mib))
    options = {"multipart_threshold": 5 * mib, "part_size": 5 * mib}
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix, **options)) as store:
        await store.save_artifacts("s1", big)
        assert store.stats.requests["UploadPart"] == 3
        assert store.stats.requests["CompleteMultipartUpload"] == 1
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix, **options)) as fresh:
        # A fresh store does not know the blob: a HEAD finds a young version there, so
        # nothing is uploaded again (a large upload is worth one HEAD first).
        await fresh.save_artifacts("s2", big)
        assert fresh.stats.requests["HeadObject"] == 1
        assert fresh.stats.requests["CreateMultipartUpload"] == 0
        assert fresh.stats.requests["PutObject"] == 1  # the manifest
        assert await fresh.load_artifacts("s2") == big
    if backend.memory is not None:
        assert backend.memory.open_uploads() == 0
    assert len(backend.raw_keys(f"{prefix}/blobs/")) == 1


async def test_corrupt_blob_is_detected_on_load_and_by_fsck(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    await store.save_artifacts("s1", helpers.artifacts("y" * 50_000))
    (blob_key,) = backend.raw_keys(f"{store.prefix}/blobs/")
    backend.raw_put(blob_key, b"tampered")
    async with AsyncS3SessionStore(**backend.store_kwargs(store.prefix)) as fresh:
        with pytest.raises(IntegrityError) as caught:
            await fresh.load_artifacts("s1")
        assert caught.value.key == blob_key
        assert caught.value.expected.endswith(blob_key.rsplit("/", 1)[1])
        report = await fresh.fsck()
    assert [p.kind for p in report.problems] == ["integrity"]
    assert not report.ok


async def test_fsck_clean_store(store: AsyncS3SessionStore) -> None:
    await store.save(helpers.session("s1"))
    await store.save_artifacts("s1", helpers.artifacts("z" * 10_000))
    await store.save_trace_events("s1", helpers.trace_events())
    report = await store.fsck()
    assert report.ok, report.problems
    assert report.documents == 3
    assert report.blobs == 1


async def test_gc_removes_only_unreferenced_old_blobs(
    whole_store: AsyncS3SessionStore, backend: Backend
) -> None:
    store = whole_store
    await store.save_artifacts("keep", helpers.artifacts("k" * 10_000))
    await store.save_artifacts("drop", helpers.artifacts("d" * 10_000))
    await store.delete("drop")  # manifest gone, blob stays
    young = await store.gc(grace=timedelta(hours=1), dry_run=True)
    assert (young.deleted, young.kept_young) == (0, 1)
    # A floor of one second (tests only: no writer runs a longer reuse window here).
    quick = backend.store_kwargs(store.prefix, gc_grace_floor=1.0, blob_reuse_window=0.5)
    async with AsyncS3SessionStore(**quick) as gc_store:
        # Server clocks have one-second resolution: wait until the blob is measurably older.
        for _ in range(40):
            dry = await gc_store.gc(grace=timedelta(seconds=1), dry_run=True)
            if dry.deleted:
                break
            await asleep(0.1)
        assert dry.deleted == 1
        assert len(backend.raw_keys(f"{store.prefix}/blobs/")) == 2
        # LocalStack answers conditional DeleteObject with 501: gc then needs exclusive=True.
        conditional_delete = (await gc_store.probe()).conditional_delete
        if not conditional_delete:
            with pytest.raises(UnsupportedBackendError):
                await gc_store.gc(grace=timedelta(seconds=1))
        done = await gc_store.gc(grace=timedelta(seconds=1), exclusive=not conditional_delete)
    assert (done.deleted, done.deleted_bytes) == (1, 10_000 + cas.BLOB_TRAILER_BYTES)
    assert await store.load_artifacts("keep") == helpers.artifacts("k" * 10_000)
    assert len(backend.raw_keys(f"{store.prefix}/blobs/")) == 1


# -- conditional writes --------------------------------------------------------------------


async def test_create_mode(store: AsyncS3SessionStore) -> None:
    await store.save(helpers.session("s1"), mode="create")
    with pytest.raises(AlreadyExistsError) as caught:
        await store.save(helpers.session("s1", messages=2), mode="create")
    assert isinstance(caught.value, ConflictError)
    loaded = await store.load("s1")
    assert loaded == helpers.session("s1")


async def test_if_match_mode(store: AsyncS3SessionStore) -> None:
    first = await store.save(helpers.session("s1", messages=1))
    second = await store.save(helpers.session("s1", messages=2), mode=IfMatch(first.etag))
    with pytest.raises(PreconditionFailedError) as caught:
        await store.save(helpers.session("s1", messages=3), mode=IfMatch(first.etag))
    assert caught.value.expected_etag == first.etag
    assert caught.value.actual_etag is not None
    assert caught.value.actual_etag.strip('"') == second.etag.strip('"')
    assert first.etag in str(caught.value)
    with pytest.raises(PreconditionFailedError):
        await store.save(helpers.session("missing"), mode=IfMatch(first.etag))
    versioned = await store.load_versioned("s1")
    assert versioned is not None
    assert len(versioned.value.messages) == 2


async def test_sidecar_and_checkpoint_modes(store: AsyncS3SessionStore) -> None:
    await store.save_trace_events("s1", helpers.trace_events(), mode="create")
    with pytest.raises(AlreadyExistsError):
        await store.save_trace_events("s1", helpers.trace_events(), mode="create")
    result = await store.save_loop_checkpoint("r1", helpers.loop_checkpoint("r1"), mode="create")
    await store.save_loop_checkpoint("r1", helpers.loop_checkpoint("r1"), mode=IfMatch(result.etag))


async def test_conditional_delete(store: AsyncS3SessionStore) -> None:
    caps = await store.probe()
    first = await store.save(helpers.session("s1"))
    await store.save(helpers.session("s1", messages=2))
    if not caps.conditional_delete:
        pytest.skip(f"{store!r}: the server does not support conditional delete")
    with pytest.raises(PreconditionFailedError):
        await store.delete("s1", if_match=first.etag)
    assert await store.exists("s1")
    current = await store.load_versioned("s1")
    assert current is not None
    await store.delete("s1", if_match=current.etag)
    assert not await store.exists("s1")


async def test_update_keeps_every_change(store: AsyncS3SessionStore, backend: Backend) -> None:
    await store.save(helpers.session("s1", messages=0))
    workers, per_worker = 4, 5

    async def work(worker: int) -> None:
        for n in range(per_worker):

            def change(current: SessionData | None, text: str = f"{worker}-{n}") -> SessionData:
                assert current is not None
                return helpers.with_message(current, text)

            await store.update("s1", change)

    await agather_limited([partial(work, w) for w in range(workers)], workers)
    loaded = await store.load("s1")
    assert loaded is not None
    texts = sorted(m.content[0].text for m in loaded.messages)  # type: ignore[union-attr]
    if backend.atomic:
        assert texts == sorted(f"{w}-{n}" for w in range(workers) for n in range(per_worker))
    else:
        assert len(texts) >= per_worker  # moto's conditional writes are not atomic


async def test_create_race_has_one_winner(store: AsyncS3SessionStore, backend: Backend) -> None:
    if not backend.atomic:
        pytest.skip("moto's conditional writes are not atomic under races")
    outcomes: list[str] = []

    async def attempt(worker: int) -> None:
        try:
            await store.save(helpers.session("race", messages=worker + 1), mode="create")
            outcomes.append("won")
        except AlreadyExistsError:
            outcomes.append("lost")

    for _ in range(5):
        outcomes.clear()
        await store.delete("race")
        await agather_limited([partial(attempt, w) for w in range(4)], 4)
        assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


async def test_probe_finds_enforced_conditions(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    caps = await store.probe()
    assert caps.if_none_match
    assert caps.if_match
    assert caps.if_match_missing_status in (404, 412)
    assert backend.raw_keys(store.prefix + "/") == []


async def test_server_ignoring_conditions_is_caught() -> None:
    memory = MemoryBackend(ignore_conditions=True)
    client = MemoryObjectClient("ignoring", backend=memory)
    async with AsyncS3SessionStore(client=client, prefix="p") as store:
        caps = await store.probe()
        assert not caps.if_none_match
        assert not caps.if_match
        assert not caps.conditional_delete
        with pytest.raises(UnsupportedBackendError, match="ignores conditional"):
            await store.save(helpers.session("s1"), mode="create")
        await store.save(helpers.session("s1"))  # unconditional writes still work
    async with AsyncS3SessionStore(
        client=client, prefix="p", on_unenforced_conditions="warn"
    ) as lenient:
        with pytest.warns(RuntimeWarning, match="ignores conditional"):
            await lenient.save(helpers.session("s2"), mode="create")


# -- leases ----------------------------------------------------------------------------------


async def test_lease_takeover_fences_the_old_holder(
    backend: Backend, prefix: str, mode: str
) -> None:
    async with (
        AsyncS3SessionStore(**kwargs(backend, prefix, mode)) as first,
        AsyncS3SessionStore(**kwargs(backend, prefix, mode)) as second,
    ):
        await first.save(helpers.session("s1", messages=1))
        async with first.lease("s1", holder="worker-a", ttl=1.0, renew=False) as old:
            assert old.epoch == 1
            await first.save(helpers.session("s1", messages=2), lease=old)
            with pytest.raises(LeaseHeldError):
                async with second.lease("s1", holder="worker-b", ttl=1.0, renew=False):
                    pass
            new = await _acquire_when_expired(second, "s1", holder="worker-b")
            try:
                assert new.epoch == 2
                # The new holder has written nothing yet; the old holder's write still fails.
                with pytest.raises(LeaseLostError) as caught:
                    await first.save(helpers.session("s1", messages=3), lease=old)
                assert caught.value.current_holder == "worker-b"
                await second.save(helpers.session("s1", messages=4), lease=new)
            finally:
                await new.release()
        loaded = await first.load("s1")
        assert loaded is not None
        assert len(loaded.messages) == 4
        assert loaded.model_extra is not None
        fence = loaded.model_extra["s3store_fence"]
        assert {"holder": fence["holder"], "epoch": fence["epoch"]} == {
            "holder": "worker-b",
            "epoch": 2,
        }
        assert fence["token"] == new.token


async def test_lease_renewal_keeps_it_held(backend: Backend, prefix: str) -> None:
    # Whole-document mode only: renewals write the lease object alone, the same in both
    # modes (a journal-mode write under a lease is covered by the takeover test above).
    async with (
        AsyncS3SessionStore(**backend.store_kwargs(prefix)) as first,
        AsyncS3SessionStore(**backend.store_kwargs(prefix)) as second,
    ):
        async with first.lease("s1", holder="worker-a", ttl=0.6) as held:
            # Outlive the ttl several times over, renewing in the background.
            for _ in range(200):
                if held.renewals >= 8:
                    break
                await asleep(0.05)
            assert held.renewals >= 8
            with pytest.raises(LeaseHeldError):
                async with second.lease("s1", holder="worker-b", ttl=0.6, renew=False):
                    pass
            await first.save(helpers.session("s1"), lease=held)
        # Released on exit: the next holder gets it at once; epochs never restart.
        async with second.lease("s1", holder="worker-b", ttl=5, renew=False) as next_lease:
            assert next_lease.epoch == 2


async def _acquire_when_expired(store: AsyncS3SessionStore, id: str, *, holder: str) -> AsyncLease:
    """Retry acquisition until the server's clock says the old lease expired."""
    for _ in range(100):
        lease = AsyncLease(store, id, holder=holder, ttl=30.0)
        try:
            await lease.acquire()
            return lease
        except LeaseHeldError:
            await asleep(0.1)
    raise AssertionError("lease never expired")


# -- sync/async parity -------------------------------------------------------------------------


async def test_store_shares_data_with_the_other_api(
    backend: Backend, prefix: str, mode: str
) -> None:
    from s3store import S3SessionStore
    from s3store._sync.store import S3SessionStore as Generated

    assert S3SessionStore is Generated
    async with AsyncS3SessionStore(**kwargs(backend, prefix, mode)) as store:
        await store.save(helpers.session("parity"))
    with S3SessionStore(**kwargs(backend, prefix, mode)) as sync_store:
        assert sync_store.load("parity") == helpers.session("parity")
        sync_store.save_trace_events("parity", helpers.trace_events())
    async with AsyncS3SessionStore(**kwargs(backend, prefix, mode)) as store:
        assert await store.load_trace_events("parity") == helpers.trace_events()


def test_documents_match_the_codec() -> None:
    data = helpers.session("sess-0001")
    assert codec.dumps(data) == helpers.fixture("session.json")
