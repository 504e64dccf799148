"""``SessionSnapshotV1`` in the bucket: upstream's envelope test, the stored form, the digest.

No I/O. The store (:mod:`s3store._async.snapshots`) and ``import``/``export``
(:mod:`s3store.transfer`) use it.

Upstream's rule (``FileSessionStore::read_session_file_at``): a v1 session document whose
parsed top level has a key ``schema_version`` **or** a key ``session`` is an envelope and must
load as ``SessionSnapshotV1`` with ``schema_version == 1``; anything else is a bare
``SessionData``. The decision is made on the parsed keys, never on the bytes.

Stored form: the envelope exactly as a3s-code writes it, except that an artifact whose content
is ``inline_threshold`` UTF-8 bytes or more carries a blob reference instead of the text, as
artifact manifests do (see :mod:`s3store.cas`)::

    "content": {"algo": "blake3", "digest": "<64 hex>", "size": <bytes>}

A snapshot whose contents are all inline is byte-identical to upstream's file.

Digest (STORE-CAS1): ``sha256:`` + hex SHA-256 of the domain
``a3s.code.session-store-snapshot.identity.v1``, one ``0x00`` byte and the compact
``serde_json::to_vec`` bytes of the whole snapshot with every content inline. The store
records it in the object's metadata (``x-amz-meta-s3store-snapshot-digest``) on every snapshot
write.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3store import codec, models
from s3store.cas import BlobRef, blake3_hex
from s3store.errors import DocumentError
from s3store.models import ArtifactStore, ToolArtifact

if TYPE_CHECKING:
    from s3store.models import SessionSnapshotV1

SNAPSHOT_DIGEST_DOMAIN = b"a3s.code.session-store-snapshot.identity.v1"
DIGEST_METADATA = "s3store-snapshot-digest"
"""User metadata on every snapshot object s3store writes: the snapshot's upstream digest."""

MEMBERS = (
    "session",
    "artifacts",
    "trace_events",
    "run_records",
    "verification_reports",
    "subagent_tasks",
)
"""The members a fragment save can replace (``artifacts`` also sets the retained URIs)."""


def parse_tree(body: bytes, *, source: str) -> Any:
    """The parsed JSON of a document (duplicate keys, non-finite numbers refused as serde does).

    Raises:
        DocumentError: not UTF-8 or not JSON.
    """
    return codec._parse(body, "", source)


def is_snapshot_tree(tree: Any) -> bool:
    """Upstream's test: a top-level object with a ``schema_version`` or a ``session`` key."""
    return isinstance(tree, dict) and ("schema_version" in tree or "session" in tree)


def snapshot_digest(snapshot: SessionSnapshotV1) -> str:
    """Upstream's snapshot digest: ``sha256:<hex>`` over domain, ``0x00``, compact JSON."""
    compact = codec.dumps_compact(snapshot)
    return "sha256:" + hashlib.sha256(SNAPSHOT_DIGEST_DOMAIN + b"\x00" + compact).hexdigest()


def ensure_loadable(snapshot: SessionSnapshotV1, *, source: str) -> None:
    """Upstream's ``ensure_loadable``: only schema version 1 loads."""
    if snapshot.schema_version != 1:
        raise DocumentError(
            f"session snapshot schema version {snapshot.schema_version} is not loadable",
            source=source,
        )


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot as stored: the model with referenced contents blanked, and the references.

    ``snapshot.artifacts[i].content`` is ``""`` for every ``i`` in ``refs``.
    """

    snapshot: SessionSnapshotV1
    refs: dict[int, BlobRef] = field(default_factory=dict)

    @property
    def digests(self) -> set[str]:
        """Every blob address the snapshot refers to."""
        return {ref.digest for ref in self.refs.values()}

    def render(self) -> bytes:
        """The stored bytes: upstream's pretty JSON, references where contents were split."""
        if not self.refs:
            return codec.dumps(self.snapshot)
        nonce = uuid.uuid4().hex
        artifacts = list(self.snapshot.artifacts)
        marks: dict[str, BlobRef] = {}
        for index, ref in self.refs.items():
            mark = f"s3store-blob-ref-{nonce}-{index}"
            marks[mark] = ref
            artifacts[index] = artifacts[index].model_copy(update={"content": mark})
        text = codec.dumps(self.snapshot.model_copy(update={"artifacts": artifacts})).decode()
        for mark, ref in marks.items():
            # artifacts[i].content sits 6 spaces in, as in a manifest.
            rendered = codec.dumps(ref.to_json()).decode("utf-8").replace("\n", "\n      ")
            text = text.replace(f'"{mark}"', rendered, 1)
        return text.encode("utf-8")

    def join(self, bodies: dict[str, bytes], *, source: str) -> SessionSnapshotV1:
        """The full snapshot, every referenced content inlined from ``bodies`` (by address)."""
        if not self.refs:
            return self.snapshot
        artifacts = list(self.snapshot.artifacts)
        for index, ref in self.refs.items():
            try:
                text = bodies[ref.digest].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DocumentError(
                    f"blob {ref.digest} referenced by {source} is not UTF-8: {exc}", source=source
                ) from None
            artifacts[index] = artifacts[index].model_copy(update={"content": text})
        return self.snapshot.model_copy(update={"artifacts": artifacts})

    def replace(self, member: str, value: Any) -> StoredSnapshot:
        """A copy with one non-artifact member replaced (see :func:`with_artifacts`)."""
        if member not in MEMBERS or member == "artifacts":
            raise ValueError(f"not a replaceable snapshot member: {member!r}")
        update = {member: value if member == "session" else list(value)}
        return StoredSnapshot(self.snapshot.model_copy(update=update), dict(self.refs))


def _split_list(
    artifacts: Sequence[ToolArtifact], inline_threshold: int, address: Callable[[bytes], str]
) -> tuple[list[ToolArtifact], dict[int, BlobRef], dict[str, bytes]]:
    kept: list[ToolArtifact] = []
    refs: dict[int, BlobRef] = {}
    blobs: dict[str, bytes] = {}
    for index, artifact in enumerate(artifacts):
        data = artifact.content.encode("utf-8")
        if len(data) < inline_threshold:
            kept.append(artifact)
            continue
        digest = address(data)
        blobs[digest] = data
        refs[index] = BlobRef(digest=digest, size=len(data))
        kept.append(artifact.model_copy(update={"content": ""}))
    return kept, refs, blobs


def split_snapshot(
    snapshot: SessionSnapshotV1,
    *,
    inline_threshold: int,
    address: Callable[[bytes], str] = blake3_hex,
) -> tuple[StoredSnapshot, dict[str, bytes]]:
    """The stored form of a full snapshot, and the blob bodies it refers to (by address)."""
    kept, refs, blobs = _split_list(snapshot.artifacts, inline_threshold, address)
    stored = StoredSnapshot(snapshot.model_copy(update={"artifacts": kept}), refs)
    return stored, blobs


def with_artifacts(
    stored: StoredSnapshot,
    artifacts: ArtifactStore,
    *,
    inline_threshold: int,
    address: Callable[[bytes], str] = blake3_hex,
) -> tuple[StoredSnapshot, dict[str, bytes]]:
    """A copy whose artifacts (and retained URIs) are ``artifacts``'s; plus the new blobs.

    ``retained_artifact_uris`` is written sorted, as upstream's ``SessionSnapshotV1::new``
    does.
    """
    kept, refs, blobs = _split_list(artifacts.artifacts, inline_threshold, address)
    update = {"artifacts": kept, "retained_artifact_uris": sorted(artifacts.retained_uris)}
    return StoredSnapshot(stored.snapshot.model_copy(update=update), refs), blobs


def parse_stored(tree: Any, *, source: str) -> StoredSnapshot:
    """Validate a parsed stored snapshot (references allowed); DocumentError if malformed.

    ``tree`` is modified (referenced contents are blanked before validation).
    """
    refs: dict[int, BlobRef] = {}
    artifacts = tree.get("artifacts") if isinstance(tree, dict) else None
    if isinstance(artifacts, list):
        for index, artifact in enumerate(artifacts):
            if isinstance(artifact, dict) and isinstance(artifact.get("content"), dict):
                path = f"artifacts.{index}.content"
                refs[index] = BlobRef.from_json(artifact["content"], source=source, path=path)
                artifact["content"] = ""
    snapshot: SessionSnapshotV1 = codec.from_value(models.SessionSnapshotV1, tree, source=source)
    ensure_loadable(snapshot, source=source)
    return StoredSnapshot(snapshot, refs)


def referenced_digests(tree: Any, *, source: str) -> set[str]:
    """The blob addresses a parsed stored snapshot refers to, without validating the rest
    (for gc's mark phase). DocumentError for a malformed reference."""
    found: set[str] = set()
    artifacts = tree.get("artifacts") if isinstance(tree, dict) else None
    if isinstance(artifacts, list):
        for index, artifact in enumerate(artifacts):
            if isinstance(artifact, dict) and isinstance(artifact.get("content"), dict):
                path = f"artifacts.{index}.content"
                found.add(BlobRef.from_json(artifact["content"], source=source, path=path).digest)
    return found


def artifact_store(snapshot: SessionSnapshotV1) -> ArtifactStore:
    """The snapshot's artifacts as an ``ArtifactStore`` (upstream's ``artifact_store()``)."""
    return ArtifactStore(
        artifacts=list(snapshot.artifacts),
        retained_uris=list(snapshot.retained_artifact_uris),
    )


__all__ = [
    "DIGEST_METADATA",
    "MEMBERS",
    "SNAPSHOT_DIGEST_DOMAIN",
    "StoredSnapshot",
    "artifact_store",
    "ensure_loadable",
    "is_snapshot_tree",
    "parse_stored",
    "parse_tree",
    "referenced_digests",
    "snapshot_digest",
    "split_snapshot",
    "with_artifacts",
]
