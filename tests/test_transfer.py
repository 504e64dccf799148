"""Import/export between FileSessionStore directories and a bucket (s3store.transfer).

Runs against moto server (the session's ``moto_endpoint``, reset per test) and the
in-memory client. Directories are built from ``tests/fixtures/``: the bytes the Rust store
writes, so "byte-identical after import and export" means the Rust store loads the result.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3store import S3SessionStore, codec
from s3store.keys import encode_v1_id
from s3store.models import SessionData, SessionSnapshotV1
from s3store.testing import MemoryBackend, MemoryObjectClient
from s3store.transfer import IMPORT_MARKER, classify_path, export_dir, import_dir, split_snapshot
from s3store.types import md5_etag
from tests import helpers
from tests.conftest import BUCKET, _ensure_bucket

StoreFactory = Callable[..., S3SessionStore]

BIG = "".join(f"line {i:05d} of a long build log\n" for i in range(400))  # > inline threshold


@pytest.fixture(params=["moto", "memory"])
def make_store(request: pytest.FixtureRequest, prefix: str) -> Iterator[StoreFactory]:
    """Build stores (any layout) on one fresh bucket; every store is closed at the end."""
    opened: list[S3SessionStore] = []
    if request.param == "moto":
        endpoint: str = request.getfixturevalue("moto_endpoint")
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=10):
            pass
        _ensure_bucket(endpoint)

        def factory(**kwargs: Any) -> S3SessionStore:
            store = S3SessionStore(bucket=BUCKET, prefix=prefix, endpoint_url=endpoint, **kwargs)
            opened.append(store)
            return store

    else:
        memory = MemoryBackend()
        memory.create_bucket(BUCKET)

        def factory(**kwargs: Any) -> S3SessionStore:
            client = MemoryObjectClient(BUCKET, backend=memory)
            store = S3SessionStore(client=client, prefix=prefix, **kwargs)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _with_id(name: str, old: str, new: str, field: str = "id") -> bytes:
    data = helpers.fixture(name)
    needle = f'"{field}": "{old}"'.encode()
    assert needle in data
    return data.replace(needle, f'"{field}": "{new}"'.encode(), 1)


def _big_manifest() -> bytes:
    # Two artifacts with the same large content (one blob) and one small inline content.
    return codec.dumps(helpers.artifacts(BIG, BIG, "small"))


def legacy_dir(root: Path) -> dict[str, bytes]:
    """A legacy-layout FileSessionStore directory; returns the files that must round-trip."""
    files = {
        "sess-0001.json": helpers.fixture("session.json"),
        "artifacts/sess-0001/artifacts.json": helpers.fixture("artifacts.json"),
        "traces/sess-0001.json": helpers.fixture("trace_events.json"),
        "runs/sess-0001.json": helpers.fixture("run_records.json"),
        "verification/sess-0001.json": helpers.fixture("verification_reports.json"),
        "subagent_tasks/sess-0001.json": helpers.fixture("subagent_tasks.json"),
        "loop_checkpoints/run-0001.json": helpers.fixture("loop_checkpoint.json"),
        # The 8bf60f34 manifest (no retained_uris) and an era-C checkpoint (no convergence).
        "sess-0002.json": _with_id("session.json", "sess-0001", "sess-0002"),
        "artifacts/sess-0002/artifacts.json": helpers.fixture("artifacts_legacy_8bf60f34.json"),
        "loop_checkpoints/run-0000.json": _with_id(
            "loop_checkpoint_legacy.json", "run-0001", "run-0000", "run_id"
        ),
        # An id with a slash: stored under its sanitised name, its real id inside.
        "tenant_x.json": _with_id("session.json", "sess-0001", "tenant/x"),
        "artifacts/tenant_x/artifacts.json": _big_manifest(),
        "traces/tenant_x.json": helpers.fixture("trace_events.json"),
    }
    for rel, data in files.items():
        _write(root, rel, data)
    # Not session-store documents: skipped, not copied.
    _write(root, ".health_check", b"ok")
    _write(root, "sess-0001.json.1700000000.42.tmp", b"{")
    return files


def v1_dir(root: Path) -> tuple[dict[str, bytes], str]:
    """A v1-layout directory with one bare session and one SessionSnapshotV1 envelope.

    Returns the files that round-trip byte for byte, and the snapshot's relative path.
    """
    x = encode_v1_id("tenant/sess-0002")
    snapshot_rel = f"v1/sessions/{encode_v1_id('sess-0001')}.json"
    files = {
        f"v1/sessions/{x}.json": _with_id("session.json", "sess-0001", "tenant/sess-0002"),
        f"v1/artifacts/{x}/artifacts.json": _big_manifest(),
        f"v1/traces/{x}.json": helpers.fixture("trace_events.json"),
        f"v1/runs/{x}.json": helpers.fixture("run_records.json"),
        f"v1/verification/{x}.json": helpers.fixture("verification_reports.json"),
        f"v1/subagent_tasks/{x}.json": helpers.fixture("subagent_tasks.json"),
        f"v1/loop_checkpoints/{encode_v1_id('run-0001')}.json": helpers.fixture(
            "loop_checkpoint.json"
        ),
    }
    for rel, data in files.items():
        _write(root, rel, data)
    _write(root, snapshot_rel, helpers.fixture("session_snapshot_v1.json"))
    # A stale fragment of the snapshotted session: upstream ignores it, so does import.
    _write(root, f"v1/traces/{encode_v1_id('sess-0001')}.json", b"[]")
    _write(root, "v1/wal/session-store.ndjson", helpers.fixture("session-store.ndjson"))
    _write(root, "v1/writer_lease.json", helpers.fixture("writer_lease.json"))
    return files, snapshot_rel


def test_classify_path_knows_both_trees() -> None:
    entry = classify_path("artifacts/a_b/artifacts.json")
    assert entry is not None
    assert (entry.kind, entry.layout, entry.name) == ("artifacts", "legacy", "a_b")
    entry = classify_path(f"v1/runs/{encode_v1_id('x/y')}.json")
    assert entry is not None
    assert (entry.kind, entry.layout, entry.name) == ("runs", "v1", "x/y")
    assert classify_path("v1/sessions/not-base64.json") is None
    assert classify_path("blobs/blake3/ab/" + "ab" * 32) is None
    entry = classify_path("workflow_checkpoints/w.json")
    assert entry is not None
    assert (entry.kind, entry.layout, entry.name) == ("workflow_checkpoints", "legacy", "w")


def test_legacy_import_export_is_byte_identical(make_store: StoreFactory, tmp_path: Path) -> None:
    files = legacy_dir(tmp_path / "src")
    store = make_store()
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    assert {p for p, _ in report.skipped} == {
        ".health_check",
        "sess-0001.json.1700000000.42.tmp",
    }
    assert report.blobs_uploaded == 1  # the shared large content, once
    assert store.load("tenant/x") is not None
    assert store.load_loop_checkpoint("run-0000") is not None

    out = export_dir(make_store(), tmp_path / "out")
    assert out.ok, out.problems
    assert _tree(tmp_path / "out") == files


def test_v1_import_export_is_byte_identical(make_store: StoreFactory, tmp_path: Path) -> None:
    """v1 directory → v1 store → ``export --layout v1``: every document byte for byte.

    The ``SessionSnapshotV1`` envelope is stored as a snapshot and exported as the same
    envelope (issue 15); the stale fragment next to it is not imported (upstream ignores
    fragments once a snapshot exists). Exported to a legacy directory, the snapshot is split
    into one document per component (see test_legacy_directory_through_a_v1_store).
    """
    files, snapshot_rel = v1_dir(tmp_path / "src")
    store = make_store(layout="v1")
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    skipped = {p for p, _ in report.skipped}
    assert f"v1/traces/{encode_v1_id('sess-0001')}.json" in skipped
    assert {"v1/wal/session-store.ndjson", "v1/writer_lease.json"} <= skipped

    out = export_dir(make_store(layout="v1"), tmp_path / "out", layout="v1")
    assert out.ok, out.problems
    exported = _tree(tmp_path / "out")
    assert exported == {**files, snapshot_rel: helpers.fixture("session_snapshot_v1.json")}

    # To a legacy directory: the fragment form, each file as the Rust store writes it.
    legacy = export_dir(make_store(layout="v1"), tmp_path / "legacy", layout="legacy")
    assert legacy.ok, legacy.problems
    snapshot = codec.loads(SessionSnapshotV1, helpers.fixture("session_snapshot_v1.json"))
    split = split_snapshot(snapshot)
    tree = _tree(tmp_path / "legacy")
    assert tree["sess-0001.json"] == helpers.fixture("session.json")
    assert tree["traces/sess-0001.json"] == codec.dumps(split["traces"])
    assert tree["artifacts/sess-0001/artifacts.json"] == codec.dumps(split["artifacts"])


def test_legacy_directory_through_a_v1_store(make_store: StoreFactory, tmp_path: Path) -> None:
    # Ids change representation (sanitised file names → base64 keys) and back again.
    files = legacy_dir(tmp_path / "src")
    store = make_store(layout="v1")
    assert import_dir(store, tmp_path / "src").ok
    assert store.load_trace_events("tenant/x") is not None
    assert sorted(store.list()) == ["sess-0001", "sess-0002", "tenant/x"]
    v1_out = export_dir(store, tmp_path / "v1")
    assert v1_out.ok
    assert f"v1/sessions/{encode_v1_id('tenant/x')}.json" in _tree(tmp_path / "v1")
    out = export_dir(make_store(layout="v1"), tmp_path / "out", layout="legacy")
    assert out.ok, out.problems
    assert _tree(tmp_path / "out") == files


def test_import_twice_uploads_nothing(make_store: StoreFactory, tmp_path: Path) -> None:
    legacy_dir(tmp_path / "src")
    first = import_dir(make_store(), tmp_path / "src")
    assert first.uploaded
    again = make_store()  # fresh stats, and no memory of the blobs the first one wrote
    second = import_dir(again, tmp_path / "src")
    assert second.ok
    assert second.uploaded == []
    assert second.blobs_uploaded == 0
    assert sorted(second.unchanged) == sorted(first.uploaded)
    assert again.stats.requests.get("PutObject", 0) == 0
    assert again.stats.requests.get("CreateMultipartUpload", 0) == 0


def test_changed_file_is_uploaded_again(make_store: StoreFactory, tmp_path: Path) -> None:
    legacy_dir(tmp_path / "src")
    assert import_dir(make_store(), tmp_path / "src").ok
    _write(tmp_path / "src", "traces/sess-0001.json", b"[]")
    store = make_store()
    report = import_dir(store, tmp_path / "src")
    assert report.uploaded == [f"{store.layout.root}traces/sess-0001.json"]
    assert store.load_trace_events("sess-0001") == []


def test_unreadable_documents_are_reported_and_skipped(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    legacy_dir(tmp_path / "src")
    _write(tmp_path / "src", "broken.json", b'{"id": "broken"')
    _write(tmp_path / "src", "runs/sess-0002.json", b'[{"snapshot": 1}]')
    _write(tmp_path / "src", "sealed.json", b"A3SE\x01" + bytes(40))
    store = make_store()
    report = import_dir(store, tmp_path / "src")
    assert {p for p, _ in report.problems} == {"broken.json", "runs/sess-0002.json", "sealed.json"}
    assert not report.ok
    assert store.load("sess-0001") is not None  # the rest went in


def test_export_refreshes_only_changed_files(make_store: StoreFactory, tmp_path: Path) -> None:
    legacy_dir(tmp_path / "src")
    store = make_store()
    assert import_dir(store, tmp_path / "src").ok
    first = export_dir(store, tmp_path / "out")
    second = export_dir(make_store(), tmp_path / "out")
    assert second.written == []
    assert sorted(second.unchanged) == sorted(first.written)
    assert not list((tmp_path / "out").rglob("*.tmp"))


# -- re-import never reverts newer data (issue 14.7) ------------------------------------


def _newer_turn(store: S3SessionStore) -> bytes:
    """An agent saves a second turn of sess-0001 (session, traces, artifacts) after import."""
    session = store.load("sess-0001")
    assert session is not None
    session.messages.append(session.messages[0])
    store.save(session)
    store.save_trace_events("sess-0001", [])
    store.save_artifacts("sess-0001", helpers.artifacts("newer output", BIG + "newer"))
    got = store.get_object(store.layout.session_key("sess-0001"))
    assert got is not None
    return got.body


def test_reimport_keeps_what_changed_in_the_bucket(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    files = legacy_dir(tmp_path / "src")
    assert import_dir(make_store(), tmp_path / "src").ok
    agent = make_store()
    newer = _newer_turn(agent)
    newer_artifacts = agent.load_artifacts("sess-0001")

    store = make_store()
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    root = store.layout.root
    changed = {f"{root}sess-0001.json", f"{root}traces/sess-0001.json"}
    changed.add(f"{root}artifacts/sess-0001/artifacts.json")
    assert {key for key, _ in report.kept} == changed
    assert all("not written by an import" in reason for _, reason in report.kept)
    assert report.uploaded == []
    assert store.stats.requests.get("PutObject", 0) == 0
    # The agent's turn is still there.
    got = store.get_object(f"{root}sess-0001.json")
    assert got is not None
    assert got.body == newer
    assert store.load_trace_events("sess-0001") == []
    assert store.load_artifacts("sess-0001") == newer_artifacts
    # Untouched documents still match their files.
    runs = store.get_object(f"{root}runs/sess-0001.json")
    assert runs is not None
    assert runs.body == files["runs/sess-0001.json"]


def test_reimport_updates_what_only_an_import_wrote(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    legacy_dir(tmp_path / "src")
    first = make_store()
    assert import_dir(first, tmp_path / "src").ok
    key = f"{first.layout.root}traces/sess-0001.json"
    got = first.get_object(key)
    assert got is not None
    assert got.info.metadata[IMPORT_MARKER] == md5_etag(got.body).strip('"')
    # The file changed, the bucket's copy is still the import's: replaced (If-Match).
    _write(tmp_path / "src", "traces/sess-0001.json", b"[]")
    _write(
        tmp_path / "src", "artifacts/sess-0001/artifacts.json", codec.dumps(helpers.artifacts(BIG))
    )
    store = make_store()
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    assert report.kept == []
    assert sorted(report.uploaded) == [
        f"{store.layout.root}artifacts/sess-0001/artifacts.json",
        key,
    ]
    assert store.load_trace_events("sess-0001") == []
    manifest = store.get_object(f"{store.layout.root}artifacts/sess-0001/artifacts.json")
    assert manifest is not None
    assert manifest.info.metadata[IMPORT_MARKER] == md5_etag(manifest.body).strip('"')


def test_overwrite_replaces_what_changed_in_the_bucket(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    files = legacy_dir(tmp_path / "src")
    assert import_dir(make_store(), tmp_path / "src").ok
    _newer_turn(make_store())
    store = make_store()
    report = import_dir(store, tmp_path / "src", overwrite=True)
    assert report.ok, report.problems
    assert report.kept == []
    root = store.layout.root
    assert len(report.uploaded) == 3
    got = store.get_object(f"{root}sess-0001.json")
    assert got is not None
    assert got.body == files["sess-0001.json"]
    assert got.info.metadata[IMPORT_MARKER] == md5_etag(got.body).strip('"')
    assert store.load_trace_events("sess-0001") is not None
    assert store.load_trace_events("sess-0001") != []
    # Marked as the import's again: a plain re-import is a no-op.
    again = import_dir(make_store(), tmp_path / "src")
    assert again.uploaded == []
    assert again.kept == []


def test_reimport_keeps_objects_written_during_the_import(
    make_store: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key missing from the listing is written create-only; one written by an agent after
    the listing wins (and a changed key replaced by If-Match loses to a write in between)."""
    legacy_dir(tmp_path / "src")
    store = make_store()
    agent = make_store()
    session = codec.loads(SessionData, helpers.fixture("session.json"))
    session.messages.append(session.messages[0])
    agent.save(session)  # the agent got there first, after the import listed the bucket
    monkeypatch.setattr(store, "iter_objects", lambda *a, **k: iter(()))
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    assert [key for key, _ in report.kept] == [f"{store.layout.root}sess-0001.json"]
    assert "during this import" in report.kept[0][1]
    assert store.load("sess-0001") == session
