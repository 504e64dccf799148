"""Encryption at rest in the store (``encryption=KeyRing``): documents, blobs, placeholders,
snapshots, import and export of sealed directories.

Sealed bytes the store writes are opened here by upstream's rules written out with the
``cryptography`` primitives directly (``A3SE`` + ``0x01`` + 12-byte nonce + AES-256-GCM
ciphertext and tag, no associated data), not through :mod:`s3store.crypto`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from s3store import S3SessionStore, cas, codec, crypto
from s3store.crypto import KeyRing, SealedWithoutKeyError
from s3store.errors import CorruptObjectError, StoreError
from s3store.keys import encode_v1_id
from s3store.models import SessionSnapshotV1
from s3store.testing import MemoryBackend, MemoryObjectClient
from s3store.transfer import export_dir, import_dir
from tests import helpers
from tests.test_snapshots import BIG, v1_directory, workflow

BUCKET = "sealed"
KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


@pytest.fixture
def memory() -> MemoryBackend:
    backend = MemoryBackend()
    backend.create_bucket(BUCKET)
    return backend


def make(
    memory: MemoryBackend, ring: KeyRing | None = None, layout: str = "v1", **kwargs: Any
) -> S3SessionStore:
    client = MemoryObjectClient(BUCKET, backend=memory)
    return S3SessionStore(
        BUCKET,
        "p",
        client=client,
        layout=layout,  # type: ignore[arg-type]
        encryption=ring,
        **kwargs,
    )


def raw(memory: MemoryBackend, key: str) -> bytes:
    got = memory.get(BUCKET, key)
    assert got is not None
    return got.body


def upstream_open(key: bytes, data: bytes) -> bytes:
    """STORE-ENCRYPT1 as a3s-code reads it: magic, version 1, nonce, ciphertext+tag."""
    assert data[:4] == b"A3SE"
    assert data[4] == 1
    nonce, sealed = data[5:17], data[17:]
    return AESGCM(key).decrypt(nonce, sealed, None)


def upstream_seal(key: bytes, plaintext: bytes) -> bytes:
    nonce = bytes(12)
    return b"A3SE\x01" + nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def test_documents_are_sealed_as_upstream_reads_them(memory: MemoryBackend) -> None:
    store = make(memory, KeyRing.single(KEY), layout="legacy")
    store.save(helpers.session("sess-0001"))
    store.save_trace_events("sess-0001", helpers.trace_events())
    store.save_loop_checkpoint("run-0001", helpers.loop_checkpoint())
    store.save_workflow_checkpoint("wf-1", workflow("wf-1"))
    stored = raw(memory, "p/sess-0001.json")
    assert upstream_open(KEY, stored) == helpers.fixture("session.json")
    assert upstream_open(KEY, raw(memory, "p/traces/sess-0001.json")) == helpers.fixture(
        "trace_events.json"
    )
    assert upstream_open(KEY, raw(memory, "p/loop_checkpoints/run-0001.json")) == (
        helpers.fixture("loop_checkpoint.json")
    )
    assert upstream_open(KEY, raw(memory, "p/workflow_checkpoints/wf-1.json")) == codec.dumps(
        workflow("wf-1")
    )
    # Every seal has a fresh nonce.
    store.save(helpers.session("sess-0001"))
    assert raw(memory, "p/sess-0001.json")[5:17] != stored[5:17]
    assert store.load("sess-0001") == helpers.session("sess-0001")
    assert store.list() == ["sess-0001"]
    assert store.exists("sess-0001")


def test_upstream_sealed_bytes_load(memory: MemoryBackend) -> None:
    store = make(memory, KeyRing.single(KEY))
    key = store.layout.session_key("sess-0001")
    store.put_object(key, upstream_seal(KEY, helpers.fixture("session.json")))
    assert store.load("sess-0001") == helpers.session("sess-0001")


def test_readers_without_a_key_refuse_and_readers_with_one_accept_plaintext(
    memory: MemoryBackend,
) -> None:
    plain = make(memory)
    plain.save(helpers.session("old"))  # written before encryption was turned on
    sealed = make(memory, KeyRing.single(KEY))
    sealed.save(helpers.session("new"))
    assert sealed.load("old") == helpers.session("old")  # migration: plaintext accepted
    with pytest.raises(SealedWithoutKeyError):
        plain.load("new")
    with pytest.raises(StoreError):
        make(memory, KeyRing.single(OTHER)).load("new")
    strict = make(memory, KeyRing.single(KEY, accept_plaintext=False))
    with pytest.raises(crypto.NotSealedError):
        strict.load("old")


def test_blobs_are_sealed_and_keyed(memory: MemoryBackend) -> None:
    ring = KeyRing.single(KEY)
    store = make(memory, ring, layout="legacy")
    artifacts = helpers.artifacts(BIG, "small")
    store.save_artifacts("sess-0001", artifacts)
    blob_keys = [k for k in memory.keys(BUCKET) if "/blobs/" in k]
    assert len(blob_keys) == 1
    address = blob_keys[0].rsplit("/", 1)[1]
    # The address is keyed: it does not reveal the content's plain BLAKE3 digest.
    assert address == ring.blob_address(BIG.encode())
    assert address != cas.blake3_hex(BIG.encode())
    body = raw(memory, blob_keys[0])
    assert BIG.encode()[:64] not in body
    # Sealed content, then the upload trailer (unique per upload, for gc's If-Match).
    assert body.endswith(cas.BLOB_TRAILER_MAGIC)
    assert upstream_open(KEY, cas.blob_payload(body)) == BIG.encode()
    assert make(memory, ring, layout="legacy").load_artifacts("sess-0001") == artifacts
    assert store.fsck().problems == []
    report = store.gc(grace=timedelta(hours=2), dry_run=True)
    assert report.referenced == 1
    # Another key cannot read the manifest (nor tell which blobs hold equal content).
    with pytest.raises(StoreError):
        make(memory, KeyRing.single(OTHER), layout="legacy").load_artifacts("sess-0001")


def test_plaintext_blobs_from_before_encryption_still_read(memory: MemoryBackend) -> None:
    make(memory, layout="legacy").save_artifacts("old", helpers.artifacts(BIG))
    store = make(memory, KeyRing.single(KEY), layout="legacy")
    assert store.load_artifacts("old") == helpers.artifacts(BIG)
    store.save_artifacts("new", helpers.artifacts(BIG))
    assert len([k for k in memory.keys(BUCKET) if "/blobs/" in k]) == 2  # no dedup across
    assert store.fsck().problems == []


def test_v2_envelopes_are_bound_to_their_location(memory: MemoryBackend) -> None:
    ring = KeyRing({"k2": KEY}, write_version=2)
    store = make(memory, ring)
    store.save(helpers.session("a"))
    moved = raw(memory, store.layout.session_key("a"))
    assert moved[4] == 2
    store.put_object(store.layout.session_key("b"), moved)
    with pytest.raises(crypto.DecryptionError):
        store.load("b")
    rotated = KeyRing({"k3": OTHER, "k2": KEY}, write_version=2)
    assert make(memory, rotated).load("a") == helpers.session("a")


def test_sealed_placeholders_are_no_session(memory: MemoryBackend) -> None:
    ring = KeyRing({"a-rather-long-key-identifier-of-forty-chars": KEY}, write_version=2)
    store = make(memory, ring)
    with store.lease("fresh", holder="pod-a", ttl=30, renew=False):
        placeholder = raw(memory, store.layout.session_key("fresh"))
        assert crypto.is_sealed(placeholder)
        assert store.load("fresh") is None
        assert not store.exists("fresh")
        assert store.list() == []
    store.save(helpers.session("real"))
    assert store.list() == ["real"]


def test_sealed_snapshots(memory: MemoryBackend) -> None:
    store = make(memory, KeyRing.single(KEY))
    snapshot: SessionSnapshotV1 = codec.loads(
        SessionSnapshotV1, helpers.fixture("session_snapshot_v1.json")
    )
    store.save_snapshot(snapshot)
    key = store.layout.session_key("sess-0001")
    assert upstream_open(KEY, raw(memory, key)) == helpers.fixture("session_snapshot_v1.json")
    store.save_trace_events("sess-0001", [])
    loaded = make(memory, KeyRing.single(KEY)).load_snapshot("sess-0001")
    assert loaded == snapshot.model_copy(update={"trace_events": []})
    assert store.fsck().problems == []


def _seal_tree(root: Path, key: bytes) -> None:
    for path in root.rglob("*.json"):
        path.write_bytes(crypto.seal_v1(key, path.read_bytes()))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sealed_directory_round_trip_is_byte_identical(
    memory: MemoryBackend, tmp_path: Path
) -> None:
    # All contents inline: every upstream envelope is kept as it is, so export gives the
    # directory back byte for byte.
    v1_directory(tmp_path / "src", big=False)
    _seal_tree(tmp_path / "src", KEY)
    sealed_files = _tree(tmp_path / "src")
    ring = KeyRing.single(KEY)
    store = make(memory, ring)
    report = import_dir(store, tmp_path / "src")
    assert report.ok, report.problems
    assert store.load_workflow_checkpoint("wf/1") == workflow("wf/1")
    assert store.load_snapshot("big") is not None
    assert store.fsck().problems == []
    out = export_dir(make(memory, ring), tmp_path / "out")
    assert out.ok, out.problems
    assert _tree(tmp_path / "out") == sealed_files
    assert import_dir(make(memory, ring), tmp_path / "src").uploaded == []
    # Without the key the directory is refused, file by file.
    refused = import_dir(make(MemoryBackend(), None), tmp_path / "src")
    assert refused.problems


def test_sealed_directory_with_blobs(memory: MemoryBackend, tmp_path: Path) -> None:
    # A large content goes to the (sealed, keyed) blob pool; export seals the envelope
    # again: same plaintext, new nonce, and a3s-code opens it.
    files = v1_directory(tmp_path / "src")
    _seal_tree(tmp_path / "src", KEY)
    ring = KeyRing.single(KEY)
    assert import_dir(make(memory, ring), tmp_path / "src").ok
    out = export_dir(make(memory, ring), tmp_path / "out")
    assert out.ok, out.problems
    exported = _tree(tmp_path / "out")
    assert exported.keys() == files.keys()
    assert {rel: upstream_open(KEY, data) for rel, data in exported.items()} == files
    plain = export_dir(make(memory, ring), tmp_path / "plain", sealed=False)
    assert plain.ok
    assert _tree(tmp_path / "plain") == files


def test_plain_directory_into_a_sealed_store(memory: MemoryBackend, tmp_path: Path) -> None:
    files = v1_directory(tmp_path / "src")
    ring = KeyRing.single(KEY)
    assert import_dir(make(memory, ring), tmp_path / "src").ok
    seg = encode_v1_id("tenant/bare")
    assert crypto.is_sealed(raw(memory, f"p/v1/traces/{seg}.json"))
    assert import_dir(make(memory, ring), tmp_path / "src").uploaded == []
    assert export_dir(make(memory, ring), tmp_path / "out", sealed=False).ok
    assert _tree(tmp_path / "out") == files


def test_corrupt_sealed_document(memory: MemoryBackend) -> None:
    store = make(memory, KeyRing.single(KEY))
    store.save(helpers.session("x"))
    key = store.layout.session_key("x")
    body = bytearray(raw(memory, key))
    body[-1] ^= 1
    store.put_object(key, bytes(body))
    with pytest.raises(crypto.DecryptionError):
        store.load("x")
    assert not isinstance(crypto.DecryptionError("x"), CorruptObjectError)
