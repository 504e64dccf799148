"""Session snapshots (``SessionSnapshotV1``) and workflow checkpoints in the v1 layout.

Upstream's semantics (WIRE_FORMAT.md 2.4): bare until a snapshot is saved; from then on
``save`` and every fragment save replace their member and commit the whole snapshot. Here
each commit is one If-Match PUT, so concurrent member saves lose nothing. In-memory client
(with an injected server clock where gc needs time to pass) and, for import/export, the
directory round trip.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from s3store import AsyncS3SessionStore, S3SessionStore, codec
from s3store import snapshot as snap
from s3store._sync.client import put_metadata
from s3store.errors import (
    AlreadyExistsError,
    ConfigurationError,
    CorruptObjectError,
    InvalidIdError,
    KeyCollisionError,
    PreconditionFailedError,
)
from s3store.keys import encode_v1_id
from s3store.models import (
    ArtifactStore,
    SessionData,
    SessionSnapshotV1,
    TraceEvent,
    WorkflowCheckpoint,
)
from s3store.testing import AsyncMemoryObjectClient, MemoryBackend, MemoryObjectClient
from s3store.transfer import export_dir, import_dir
from s3store.types import IfMatch
from tests import helpers

BUCKET = "snapshots"
FIXTURE_DIGEST = "sha256:04a7553d28cc8c244cc118bb92061dc6655d908f3446ad66812c66aa8f6d1f84"
BIG = "".join(f"line {i:05d} of a long build log\n" for i in range(400))  # > inline threshold


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryBackend:
    backend = MemoryBackend(clock=clock)
    backend.create_bucket(BUCKET)
    return backend


def make(memory: MemoryBackend, layout: str = "v1", **kwargs: Any) -> S3SessionStore:
    client = MemoryObjectClient(BUCKET, backend=memory)
    return S3SessionStore(BUCKET, "p", client=client, layout=layout, **kwargs)  # type: ignore[arg-type]


def fixture_snapshot() -> SessionSnapshotV1:
    loaded: SessionSnapshotV1 = codec.loads(
        SessionSnapshotV1, helpers.fixture("session_snapshot_v1.json")
    )
    return loaded


def workflow(workflow_id: str = "wf-1", schema_version: int = 1) -> WorkflowCheckpoint:
    checkpoint: WorkflowCheckpoint = WorkflowCheckpoint.model_validate(
        {
            "schema_version": schema_version,
            "workflow_id": workflow_id,
            "steps": [
                {
                    "task_id": "t1",
                    "outcome": {"task_id": "t1", "session_id": "s", "success": True},
                }
            ],
            "checkpoint_ms": 1700000000000,
        }
    )
    return checkpoint


def raw(memory: MemoryBackend, key: str) -> bytes:
    got = memory.get(BUCKET, key)
    assert got is not None
    return got.body


# -- snapshots ---------------------------------------------------------------------------


def test_snapshot_is_stored_as_upstream_writes_it(memory: MemoryBackend) -> None:
    store = make(memory)
    snapshot = fixture_snapshot()
    store.save_snapshot(snapshot)
    key = store.layout.session_key("sess-0001")
    assert raw(memory, key) == helpers.fixture("session_snapshot_v1.json")
    info = memory.get(BUCKET, key)
    assert info is not None
    # Upstream's digest (the fixture WAL records it) is in the object's metadata.
    assert info.info.metadata[snap.DIGEST_METADATA] == FIXTURE_DIGEST
    assert snap.snapshot_digest(snapshot) == FIXTURE_DIGEST
    assert store.load_snapshot("sess-0001") == snapshot
    assert store.load("sess-0001") == snapshot.session
    assert store.load_trace_events("sess-0001") == snapshot.trace_events
    assert store.list() == ["sess-0001"]
    assert store.exists("sess-0001")


def test_v1_sessions_are_bare_until_a_snapshot_is_saved(memory: MemoryBackend) -> None:
    store = make(memory)
    session = helpers.session("sess-0001")
    store.save(session)
    key = store.layout.session_key("sess-0001")
    assert raw(memory, key) == helpers.fixture("session.json")
    store.save_trace_events("sess-0001", helpers.trace_events())
    seg = encode_v1_id("sess-0001")
    assert raw(memory, f"p/v1/traces/{seg}.json") == helpers.fixture("trace_events.json")
    # load_snapshot of a bare session assembles it from its fragments, as upstream does.
    assembled = store.load_snapshot("sess-0001")
    assert assembled is not None
    assert assembled.session == session
    assert assembled.trace_events == helpers.trace_events()
    assert assembled.run_records == []
    # Once a snapshot exists, the fragment files are ignored.
    store.save_snapshot(assembled.model_copy(update={"trace_events": []}))
    assert store.load_trace_events("sess-0001") == []


def test_fixture_envelope_and_bare_session_load_by_parsed_keys(memory: MemoryBackend) -> None:
    # Issue 14.8: ids "session" / "schema_version" are bare sessions, not envelopes.
    store = make(memory)
    for sid in ("session", "schema_version"):
        data = helpers.session(sid)
        store.save(data)
        assert store.load(sid) == data
    key = store.layout.session_key("future")
    future = helpers.fixture("session_snapshot_v1.json").replace(
        b'"schema_version": 1', b'"schema_version": 2', 1
    )
    store.put_object(key, future.replace(b'"sess-0001"', b'"future"', 1))
    with pytest.raises(CorruptObjectError, match="schema version 2"):
        store.load("future")


@pytest.mark.parametrize(
    "member", ["session", "artifacts", "trace_events", "run_records", "verification", "subagents"]
)
def test_every_fragment_save_keeps_the_other_members(memory: MemoryBackend, member: str) -> None:
    store = make(memory)
    original = fixture_snapshot().model_copy(
        update={"artifacts": helpers.artifacts(BIG, "small").artifacts}
    )
    store.save_snapshot(original)
    sid = "sess-0001"
    expected = original
    if member == "session":
        changed = helpers.with_message(original.session, "one more turn")
        store.save(changed)
        expected = original.model_copy(update={"session": changed})
    elif member == "artifacts":
        arts = helpers.artifacts("short", BIG + "more")
        arts = arts.model_copy(update={"retained_uris": ["b", "a"]})
        store.save_artifacts(sid, arts)
        expected = original.model_copy(
            update={"artifacts": arts.artifacts, "retained_artifact_uris": ["a", "b"]}
        )
    elif member == "trace_events":
        events = [*original.trace_events, *helpers.trace_events()]
        store.save_trace_events(sid, events)
        expected = original.model_copy(update={"trace_events": events})
    elif member == "run_records":
        store.save_run_records(sid, [])
        expected = original.model_copy(update={"run_records": []})
    elif member == "verification":
        reports = helpers.verification_reports()
        store.save_verification_reports(sid, reports)
        expected = original.model_copy(update={"verification_reports": reports})
    else:
        tasks = helpers.subagent_tasks()
        store.save_subagent_tasks(sid, tasks)
        expected = original.model_copy(update={"subagent_tasks": tasks})
    fresh = make(memory)
    assert fresh.load_snapshot(sid) == expected
    assert fresh.load_artifacts(sid) == snap.artifact_store(expected)
    # No fragment document was written: the snapshot holds everything.
    seg = encode_v1_id(sid)
    assert not [k for k in memory.keys(BUCKET) if seg in k and "/sessions/" not in k]
    # Every write recorded the digest of what it wrote; fsck agrees.
    assert fresh.fsck().problems == []


def test_fragment_save_modes_on_a_snapshot(memory: MemoryBackend) -> None:
    store = make(memory)
    first = store.save_snapshot(fixture_snapshot())
    with pytest.raises(AlreadyExistsError):
        store.save_trace_events("sess-0001", [], mode="create")
    with pytest.raises(PreconditionFailedError):
        store.save_trace_events("sess-0001", [], mode=IfMatch('"0000"'))
    second = store.save_trace_events("sess-0001", [], mode=IfMatch(first.etag))
    with pytest.raises(PreconditionFailedError):
        store.save(helpers.session("sess-0001"), mode=IfMatch(first.etag))
    store.save(helpers.session("sess-0001"), mode=IfMatch(second.etag))
    with pytest.raises(AlreadyExistsError):
        store.save_snapshot(fixture_snapshot(), mode="create")


def test_fragment_save_request_counts(memory: MemoryBackend) -> None:
    """README, "v1 layout": what a fragment save onto a snapshot costs."""
    writer = make(memory)
    writer.save_snapshot(fixture_snapshot())
    events = helpers.trace_events()

    def cost(store: S3SessionStore, call: Any) -> dict[str, int]:
        before = dict(store.stats.requests)
        call()
        return {
            k: v - before.get(k, 0)
            for k, v in store.stats.requests.items()
            if v != before.get(k, 0)
        }

    # The writer knows the version it wrote: one If-Match PUT.
    assert cost(writer, lambda: writer.save_trace_events("sess-0001", events)) == {"PutObject": 1}
    assert cost(writer, lambda: writer.save(helpers.session("sess-0001"))) == {"PutObject": 1}
    # A process that has not read the session: GET + PUT.
    cold = make(memory)
    assert cost(cold, lambda: cold.save_run_records("sess-0001", [])) == {
        "GetObject": 1,
        "PutObject": 1,
    }
    # The writer's memory is stale now: its If-Match PUT fails (412, and one HEAD tells it
    # did not land), one GET, one PUT.
    assert cost(writer, lambda: writer.save_trace_events("sess-0001", [])) == {
        "PutObject": 2,
        "HeadObject": 1,
        "GetObject": 1,
    }
    # Large artifact contents: blobs first (one PUT each, new), then the snapshot.
    assert cost(writer, lambda: writer.save_artifacts("sess-0001", helpers.artifacts(BIG))) == {
        "PutObject": 2
    }
    # A bare v1 session: the session key is read (is it a snapshot?), then the fragment PUT.
    writer.save(helpers.session("bare"))
    assert cost(writer, lambda: writer.save_trace_events("bare", events)) == {
        "GetObject": 1,
        "PutObject": 1,
    }
    assert cost(writer, lambda: writer.save(helpers.session("bare"))) == {"PutObject": 1}


async def test_concurrent_fragment_saves_lose_nothing() -> None:
    backend = MemoryBackend()
    backend.create_bucket(BUCKET)

    def store() -> AsyncS3SessionStore:
        client = AsyncMemoryObjectClient(BUCKET, backend=backend)
        return AsyncS3SessionStore(BUCKET, "p", client=client, layout="v1")

    await store().save_snapshot(fixture_snapshot())
    base = helpers.trace_events()[0]
    rounds = 6

    async def writer(kind: str) -> None:
        mine = store()
        for n in range(rounds):
            if kind == "session":
                session = helpers.session("sess-0001", messages=n + 1)
                await mine.save(session)
            elif kind == "traces":
                await mine.save_trace_events("sess-0001", [base] * (n + 1))
            elif kind == "runs":
                await mine.save_run_records("sess-0001", helpers.run_records() * (n + 1))
            elif kind == "artifacts":
                await mine.save_artifacts("sess-0001", helpers.artifacts(*["x"] * (n + 1)))
            else:
                await mine.save_subagent_tasks("sess-0001", helpers.subagent_tasks() * (n + 1))
            await asyncio.sleep(0)

    kinds = ["session", "traces", "runs", "artifacts", "subagents"]
    await asyncio.gather(*(writer(k) for k in kinds))
    final = await store().load_snapshot("sess-0001")
    assert final is not None
    assert len(final.session.messages) == rounds
    assert len(final.trace_events) == rounds
    assert len(final.run_records) == rounds * len(helpers.run_records())
    assert len(final.artifacts) == rounds
    assert len(final.subagent_tasks) == rounds * len(helpers.subagent_tasks())
    assert final.verification_reports == fixture_snapshot().verification_reports


def test_leases_keep_the_snapshot_members(memory: MemoryBackend) -> None:
    store = make(memory)
    original = fixture_snapshot()
    store.save_snapshot(original)
    with store.lease("sess-0001", holder="pod-a", ttl=30, renew=False) as lease:
        store.update(
            "sess-0001",
            lambda s: helpers.with_message(s or original.session, "leased"),
            lease=lease,
        )
        store.save(helpers.with_message(original.session, "saved"), lease=lease)
    loaded = make(memory).load_snapshot("sess-0001")
    assert loaded is not None
    assert loaded.trace_events == original.trace_events
    assert loaded.run_records == original.run_records
    assert loaded.session.messages[-1] == helpers.message("saved")
    assert make(memory).fsck().problems == []


def test_snapshot_blobs_are_marked_by_gc(memory: MemoryBackend, clock: Clock) -> None:
    store = make(memory)
    snapshot = fixture_snapshot().model_copy(update={"artifacts": helpers.artifacts(BIG).artifacts})
    store.save_snapshot(snapshot)
    blob_keys = [k for k in memory.keys(BUCKET) if "/blobs/" in k]
    assert len(blob_keys) == 1
    clock.now += timedelta(days=3)
    report = store.gc(grace=timedelta(hours=2))
    assert (report.referenced, report.deleted) == (1, 0)
    assert make(memory).load_snapshot("sess-0001") == snapshot
    # Replaced by other artifacts: the old blob is collected once old enough.
    store.save_artifacts("sess-0001", helpers.artifacts("small"))
    clock.now += timedelta(days=3)
    report = store.gc(grace=timedelta(hours=2))
    assert report.deleted == 1
    assert store.fsck().problems == []


def test_fsck_checks_the_recorded_digest(memory: MemoryBackend) -> None:
    store = make(memory)
    key = store.layout.session_key("sess-0001")
    with put_metadata(key, {snap.DIGEST_METADATA: "sha256:" + "0" * 64}):
        store.put_object(key, helpers.fixture("session_snapshot_v1.json"))
    problems = store.fsck().problems
    assert [p.kind for p in problems] == ["snapshot-digest"]


def test_digest_compare_and_swap(memory: MemoryBackend) -> None:
    store = make(memory)
    snapshot = fixture_snapshot()
    with pytest.raises(PreconditionFailedError):
        store.save_snapshot(snapshot, expected_digest=FIXTURE_DIGEST)  # nothing stored yet
    store.save_snapshot(snapshot)
    changed = snapshot.model_copy(update={"trace_events": []})
    with pytest.raises(PreconditionFailedError):
        store.save_snapshot(changed, expected_digest="sha256:" + "1" * 64)
    store.save_snapshot(changed, expected_digest=FIXTURE_DIGEST)
    assert store.load_trace_events("sess-0001") == []


def test_snapshot_checks(memory: MemoryBackend) -> None:
    with pytest.raises(ConfigurationError, match="layout='v1'"):
        make(memory, "legacy").save_snapshot(fixture_snapshot())
    store = make(memory)
    with pytest.raises(ConfigurationError, match="schema version 2"):
        store.save_snapshot(fixture_snapshot().model_copy(update={"schema_version": 2}))
    # A snapshot stored under another id's key is a collision.
    key = store.layout.session_key("other")
    store.put_object(key, helpers.fixture("session_snapshot_v1.json"))
    with pytest.raises(KeyCollisionError):
        store.load_snapshot("other")


# -- workflow checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["legacy", "v1"])
def test_workflow_checkpoints(memory: MemoryBackend, layout: str) -> None:
    store = make(memory, layout)
    checkpoint = workflow("team/wf-1")
    store.save_workflow_checkpoint("team/wf-1", checkpoint)
    key = (
        "p/workflow_checkpoints/team_wf-1.json"
        if layout == "legacy"
        else f"p/v1/workflow_checkpoints/{encode_v1_id('team/wf-1')}.json"
    )
    assert raw(memory, key) == codec.dumps(checkpoint)
    assert store.load_workflow_checkpoint("team/wf-1") == checkpoint
    with pytest.raises(InvalidIdError, match="key mismatch"):
        store.save_workflow_checkpoint("wf-2", checkpoint)
    store.put_object(
        store.layout.workflow_checkpoint_key("future"), codec.dumps(workflow("future", 2))
    )
    with pytest.raises(CorruptObjectError, match="schema version"):
        store.load_workflow_checkpoint("future")
    store.put_object(
        store.layout.workflow_checkpoint_key("moved"), codec.dumps(workflow("elsewhere"))
    )
    with pytest.raises(KeyCollisionError):
        store.load_workflow_checkpoint("moved")
    store.delete_workflow_checkpoint("team/wf-1")
    store.delete_workflow_checkpoint("team/wf-1")  # missing is fine
    assert store.load_workflow_checkpoint("team/wf-1") is None


# -- import / export ------------------------------------------------------------------------


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def v1_directory(root: Path, *, big: bool = True) -> dict[str, bytes]:
    """Envelopes (one with a large artifact, one all inline), a bare session with fragments,
    loop and workflow checkpoints: every file must come back byte for byte."""
    envelope = fixture_snapshot()
    with_big = envelope.model_copy(
        update={
            "session": helpers.session("big"),
            "artifacts": helpers.artifacts(BIG if big else "tiny", "small").artifacts,
        }
    )
    bare = encode_v1_id("tenant/bare")
    files = {
        f"v1/sessions/{encode_v1_id('sess-0001')}.json": helpers.fixture(
            "session_snapshot_v1.json"
        ),
        f"v1/sessions/{encode_v1_id('big')}.json": codec.dumps(with_big),
        f"v1/sessions/{bare}.json": codec.dumps(helpers.session("tenant/bare")),
        f"v1/artifacts/{bare}/artifacts.json": codec.dumps(helpers.artifacts("short")),
        f"v1/traces/{bare}.json": helpers.fixture("trace_events.json"),
        f"v1/runs/{bare}.json": helpers.fixture("run_records.json"),
        f"v1/verification/{bare}.json": helpers.fixture("verification_reports.json"),
        f"v1/subagent_tasks/{bare}.json": helpers.fixture("subagent_tasks.json"),
        f"v1/loop_checkpoints/{encode_v1_id('run-0001')}.json": helpers.fixture(
            "loop_checkpoint.json"
        ),
        f"v1/workflow_checkpoints/{encode_v1_id('wf/1')}.json": codec.dumps(workflow("wf/1")),
    }
    for rel, data in files.items():
        _write(root, rel, data)
    return files


def test_v1_directory_round_trip_is_byte_identical(memory: MemoryBackend, tmp_path: Path) -> None:
    files = v1_directory(tmp_path / "src")
    store = make(memory)
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    assert report.blobs_uploaded == 1
    assert store.load_workflow_checkpoint("wf/1") == workflow("wf/1")
    big = store.load_snapshot("big")
    assert big is not None
    assert big.artifacts[0].content == BIG
    # The large content lives in the blob pool; the stored snapshot refers to it.
    stored = raw(memory, store.layout.session_key("big"))
    assert BIG.encode() not in stored
    assert store.fsck().problems == []
    out = export_dir(make(memory), tmp_path / "out")
    assert out.ok, out.problems
    assert _tree(tmp_path / "out") == files
    # A second import changes nothing.
    again = import_dir(make(memory), tmp_path / "src")
    assert again.ok
    assert again.uploaded == []


def test_legacy_workflow_checkpoints_round_trip(memory: MemoryBackend, tmp_path: Path) -> None:
    files = {
        "sess-0001.json": helpers.fixture("session.json"),
        "workflow_checkpoints/wf_1.json": codec.dumps(workflow("wf/1")),
    }
    for rel, data in files.items():
        _write(tmp_path / "src", rel, data)
    store = make(memory, "legacy")
    assert import_dir(store, tmp_path / "src").ok
    assert store.load_workflow_checkpoint("wf/1") == workflow("wf/1")
    assert export_dir(store, tmp_path / "out").ok
    assert _tree(tmp_path / "out") == files


def test_session_data_and_trace_event_types_unchanged() -> None:
    # The members a fragment save may replace are exactly upstream's.
    assert snap.MEMBERS == (
        "session",
        "artifacts",
        "trace_events",
        "run_records",
        "verification_reports",
        "subagent_tasks",
    )
    assert SessionSnapshotV1.model_fields["session"].annotation is SessionData
    assert isinstance(helpers.trace_events()[0], TraceEvent)
    assert ArtifactStore.model_fields["retained_uris"] is not None
