"""Copy sessions between an a3s-code ``FileSessionStore`` directory and a bucket.

:func:`import_dir` reads a directory the Rust store wrote, in the legacy layout (the seed's
tree), upstream's ``v1`` layout, or both, and writes it into a store; :func:`export_dir`
writes a directory that the Rust store of the chosen layout loads. The CLI's ``import`` and
``export`` commands are thin wrappers around them.

Byte fidelity: documents that need no change (sessions, trace events, run records,
verification reports, subagent tasks, loop checkpoints) are copied byte for byte in both
directions; they are parsed only to validate them and to learn the ids in them. Two kinds of
document are rewritten, because their stored form differs from the file form:

- artifact manifests: in the bucket, large contents live in content-addressed blobs (see
  :mod:`s3store.cas`); import goes through ``store.save_artifacts`` and export loads through
  ``store.load_artifacts`` and writes the manifest with every content inline again;
- ``SessionSnapshotV1`` envelopes (a v1 session file with ``schema_version``/``session``
  keys): import splits them into the session document plus one document per component, the
  fragment form (see :func:`split_snapshot`).

Import is idempotent: it lists the target prefix once and skips every document whose stored
ETag is the MD5 of the bytes it would write (the ETag S3 gives a single-part upload without
SSE-KMS), and every manifest whose bytes and blobs are all there already.

Import never reverts newer data. Every object it writes carries an import marker in its
metadata (``x-amz-meta-s3store-import``: the MD5 of the bytes written); any other write
(an agent's ``save``) replaces the object's metadata and so drops it. A key that is missing
is written create-only; a key whose bytes differ is read once (GET) and replaced only if it
still holds exactly what an import wrote (marker = MD5 of its bytes), by If-Match on the
ETag just read. Everything else (changed in the bucket since it was imported, written by
something else, or changed during the import) is left alone and listed in
:attr:`ImportReport.kept` with the reason, unless ``overwrite=True`` (``--overwrite``).

Both functions take the sync store (:class:`s3store.S3SessionStore`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from s3store import cas, codec, crypto
from s3store import snapshot as snap
from s3store._sync.client import put_metadata
from s3store._sync.journal import ARRAY_KINDS, Journal
from s3store._sync.lease import is_placeholder
from s3store.errors import (
    AlreadyExistsError,
    DocumentError,
    PreconditionFailedError,
    StoreError,
    UnsupportedBackendError,
)
from s3store.keys import (
    SIDECAR_PARTS,
    Layout,
    LayoutName,
    Part,
    decode_v1_id,
    safe_session_id,
)
from s3store.models import (
    ArtifactStore,
    LoopCheckpoint,
    RunRecord,
    SessionData,
    SessionSnapshotV1,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
    WorkflowCheckpoint,
)
from s3store.types import GetResult, IfMatch, ObjectInfo, PutMode, md5_etag

if TYPE_CHECKING:
    from s3store._sync.store import S3SessionStore
    from s3store.crypto import KeyRing

Kind = Literal[
    "session",
    "artifacts",
    "traces",
    "verification",
    "runs",
    "subagent_tasks",
    "loop_checkpoints",
    "workflow_checkpoints",
]
"""The kinds of document in a ``FileSessionStore`` tree (sidecars named by their directory)."""

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each unit of work."""

_SIDECARS: dict[str, Part] = {part.value: part for part in SIDECAR_PARTS}
_SIDECAR_TYPES: dict[str, Any] = {
    "traces": list[TraceEvent],
    "verification": list[VerificationReport],
    "runs": list[RunRecord],
    "subagent_tasks": list[SubagentTaskSnapshot],
}
_V1_DIRS: dict[str, Kind] = {
    "sessions": "session",
    "traces": "traces",
    "verification": "verification",
    "runs": "runs",
    "subagent_tasks": "subagent_tasks",
    "loop_checkpoints": "loop_checkpoints",
    "workflow_checkpoints": "workflow_checkpoints",
}
_LEGACY_DIRS: dict[str, Kind] = {
    "traces": "traces",
    "verification": "verification",
    "runs": "runs",
    "subagent_tasks": "subagent_tasks",
    "loop_checkpoints": "loop_checkpoints",
    "workflow_checkpoints": "workflow_checkpoints",
}
_HEADS = ("session", "loop_checkpoints", "workflow_checkpoints")
"""Kinds whose documents carry their own id (parsed before anything is written)."""
# The Rust store's at-rest encryption envelope (STORE-ENCRYPT1): "A3SE" + version byte 1.
_SEALED_MAGIC = b"A3SE\x01"
IMPORT_MARKER = "s3store-import"
"""User metadata on every object :func:`import_dir` writes: the hex MD5 of its bytes."""


# -- the tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeEntry:
    """One document of a ``FileSessionStore`` tree, by its path relative to the root.

    ``name`` is what the path says about the id: the file stem (the sanitised id) in the
    legacy layout, the decoded id in the v1 layout.
    """

    kind: Kind
    layout: LayoutName
    name: str
    rel: str


def classify_path(rel: str) -> TreeEntry | None:
    """What a ``/``-separated path relative to a store root holds; None if not a document.

    Undecodable v1 names give None, as upstream's ``list`` skips them.
    """
    parts = rel.split("/")
    if parts[0] == "v1":
        if len(parts) == 3 and parts[2].endswith(".json") and parts[1] in _V1_DIRS:
            ident = decode_v1_id(parts[2][: -len(".json")])
            return None if ident is None else TreeEntry(_V1_DIRS[parts[1]], "v1", ident, rel)
        if len(parts) == 4 and parts[1] == "artifacts" and parts[3] == "artifacts.json":
            ident = decode_v1_id(parts[2])
            return None if ident is None else TreeEntry("artifacts", "v1", ident, rel)
        return None
    if len(parts) == 1 and rel.endswith(".json") and len(rel) > len(".json"):
        return TreeEntry("session", "legacy", rel[: -len(".json")], rel)
    if (
        len(parts) == 2
        and parts[0] in _LEGACY_DIRS
        and parts[1].endswith(".json")
        and len(parts[1]) > len(".json")
    ):
        return TreeEntry(_LEGACY_DIRS[parts[0]], "legacy", parts[1][: -len(".json")], rel)
    if len(parts) == 3 and parts[0] == "artifacts" and parts[2] == "artifacts.json" and parts[1]:
        return TreeEntry("artifacts", "legacy", parts[1], rel)
    return None


def _skip_reason(rel: str) -> str:
    """Why a file of a store directory is not imported."""
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(".tmp") or ".tmp" in name:
        return "temporary file of an interrupted write"
    if name == ".health_check":
        return "health probe"
    if rel.startswith("v1/wal/"):
        return "write-ahead log (no payload; s3store uses conditional writes instead)"
    if rel == "v1/writer_lease.json":
        return "writer lease (s3store has its own leases)"
    if rel.startswith("v1/"):
        return "undecodable v1 name or unknown v1 file"
    return "not a session-store document"


def key_for(layout: Layout, kind: Kind, ident: str) -> str:
    """The key (relative to the layout's prefix) of a document of ``kind`` for ``ident``."""
    if kind == "session":
        return layout.session_key(ident)
    if kind == "artifacts":
        return layout.artifact_manifest_key(ident)
    if kind == "loop_checkpoints":
        return layout.loop_checkpoint_key(ident)
    if kind == "workflow_checkpoints":
        return layout.workflow_checkpoint_key(ident)
    return layout.sidecar_key(_SIDECARS[kind], ident)


@dataclass
class _Parsed:
    """The ids and shape learned from a session or checkpoint document."""

    embedded: str
    snapshot: SessionSnapshotV1 | None = None
    stored: snap.StoredSnapshot | None = None
    plain: bytes = b""


def _plaintext(ring: KeyRing | None, body: bytes, rel: str) -> bytes:
    """A document's plaintext: sealed bytes are opened with the key ring (refused without)."""
    return crypto.open_or_plaintext(body, ring, object_key=rel)


def _parse_head_document(entry: TreeEntry, body: bytes, ring: KeyRing | None = None) -> _Parsed:
    """Validate a session or checkpoint (sealed ones opened with ``ring``); DocumentError if
    it is not loadable. Snapshots are told by their parsed top-level keys (upstream's rule)."""
    plain = _plaintext(ring, body, entry.rel)
    if entry.kind == "loop_checkpoints":
        checkpoint = codec.loads(LoopCheckpoint, plain, source=entry.rel)
        if checkpoint.schema_version > 1:
            raise DocumentError(
                f"loop checkpoint schema version {checkpoint.schema_version} is not loadable",
                source=entry.rel,
            )
        return _Parsed(checkpoint.run_id, plain=plain)
    if entry.kind == "workflow_checkpoints":
        workflow = codec.loads(WorkflowCheckpoint, plain, source=entry.rel)
        if workflow.schema_version > 1:
            raise DocumentError(
                f"workflow checkpoint schema version {workflow.schema_version} is not loadable",
                source=entry.rel,
            )
        return _Parsed(workflow.workflow_id, plain=plain)
    if entry.layout == "v1":
        tree = snap.parse_tree(plain, source=entry.rel)
        if snap.is_snapshot_tree(tree):
            stored = snap.parse_stored(tree, source=entry.rel)
            return _Parsed(stored.snapshot.session.id, stored.snapshot, stored, plain)
    return _Parsed(codec.loads(SessionData, plain, source=entry.rel).id, plain=plain)


def _resolve_ids(
    entries: Iterable[TreeEntry], parsed: dict[TreeEntry, _Parsed]
) -> tuple[dict[TreeEntry, str], list[tuple[str, str]]]:
    """The real id of every entry, and notes about entries kept under their file name.

    v1 names are the ids. Legacy names are sanitised ids: a session or checkpoint's id is the
    one embedded in it (when it sanitises to the file name); a sidecar's is that of the
    session with the same file name, else the file name itself (what Rust's ``list`` says).
    """
    ids: dict[TreeEntry, str] = {}
    notes: list[tuple[str, str]] = []
    by_stem: dict[str, str] = {}
    for entry, info in parsed.items():
        if entry.layout != "legacy":
            continue
        if safe_session_id(info.embedded) == entry.name:
            ids[entry] = info.embedded
            if entry.kind == "session":
                by_stem[entry.name] = info.embedded
        else:
            ids[entry] = entry.name
            notes.append(
                (entry.rel, f"holds id {info.embedded!r}, which does not map to this file name")
            )
    for entry in entries:
        if entry in ids:
            continue
        if entry.layout == "v1":
            ids[entry] = entry.name
        else:
            ids[entry] = by_stem.get(entry.name, entry.name)
    return ids, notes


def split_snapshot(snapshot: SessionSnapshotV1) -> dict[Kind, Any]:
    """The fragment form of a ``SessionSnapshotV1``: one value per document kind.

    Every component is returned, empty ones too: upstream's loaders return ``Some`` (maybe
    empty) for every component of a snapshot, and a missing fragment would load as ``None``.
    The artifact store takes the snapshot's ``retained_artifact_uris`` as its
    ``retained_uris``.
    """
    return {
        "session": snapshot.session,
        "artifacts": ArtifactStore(
            artifacts=list(snapshot.artifacts),
            retained_uris=list(snapshot.retained_artifact_uris),
        ),
        "traces": list(snapshot.trace_events),
        "verification": list(snapshot.verification_reports),
        "runs": list(snapshot.run_records),
        "subagent_tasks": list(snapshot.subagent_tasks),
    }


# -- progress ---------------------------------------------------------------------------


class _Counter:
    """Thread-safe done/total counter that reports to an optional progress callback."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total = total
        self.done = 0
        self._progress = progress
        self._lock = threading.Lock()
        if progress is not None:
            progress(0, total)

    def step(self) -> None:
        with self._lock:
            self.done += 1
            if self._progress is not None:
                self._progress(self.done, self.total)


# -- import -----------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What :func:`import_dir` did.

    Attributes:
        uploaded: keys written (documents and manifests).
        unchanged: keys that already held exactly these bytes (nothing sent).
        blobs_uploaded: artifact blobs sent.
        skipped: ``(path, reason)`` for files that are not imported on purpose.
        kept: ``(key, reason)`` for objects left as they are because the bucket's copy is
            not what an import wrote (it changed since, or during this import); the file
            differs from it. ``overwrite=True`` replaces them.
        problems: ``(path, detail)`` for documents that could not be imported.
    """

    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    blobs_uploaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problems."""
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for JSON output."""
        return {
            "uploaded": sorted(self.uploaded),
            "unchanged": sorted(self.unchanged),
            "blobs_uploaded": self.blobs_uploaded,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "kept": [{"key": k, "reason": r} for k, r in sorted(self.kept)],
            "problems": [{"path": p, "detail": d} for p, d in self.problems],
            "ok": self.ok,
        }


@dataclass
class _Upload:
    key: str
    body: bytes | None  # a document's bytes, or None for an artifact manifest job
    source: str
    ident: str = ""
    artifacts: ArtifactStore | None = None
    plain: bytes | None = None  # the plaintext of ``body`` (they differ when sealed)
    snapshot: SessionSnapshotV1 | None = None  # a snapshot job (v1 store)
    file_body: bytes | None = None  # the file's bytes (an upstream envelope kept as is)


def _walk(root: Path) -> list[str]:
    """Every regular file under ``root``, as sorted ``/``-separated relative paths."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in filenames:
            path = base / name
            if path.is_file():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def _same(info: ObjectInfo | None, body: bytes) -> bool:
    return info is not None and info.etag.strip('"') == md5_etag(body).strip('"')


def _validate_sidecar(entry: TreeEntry, body: bytes) -> None:
    codec.loads(_SIDECAR_TYPES[entry.kind], body, source=entry.rel)


def _stored_bytes(store: S3SessionStore, key: str, file_body: bytes, plain: bytes) -> bytes:
    """What an import stores for a document: the plaintext without a key ring; with one, the
    file's upstream (v1) envelope as it is when the ring writes v1 too (so export gives the
    same bytes back), else the plaintext sealed by the store's ring."""
    ring = store.encryption
    if ring is None:
        return plain
    if ring.write_version == crypto.V1 and file_body.startswith(_SEALED_MAGIC):
        return file_body
    return ring.seal_document(plain, bucket=store.bucket, object_key=key)


def import_dir(
    store: S3SessionStore,
    source: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Copy an a3s-code ``FileSessionStore`` directory into ``store`` (in its layout).

    Reads the legacy tree and the v1 tree (base64url names, ``SessionSnapshotV1``
    envelopes); where both hold a document for the same id, the v1 one wins, as upstream's
    reader prefers it. Fragment files of a session stored as a snapshot are ignored, as
    upstream ignores them. Unreadable documents are reported in ``problems`` and skipped;
    the rest is still imported.

    An object that is not what an import wrote (an agent saved a newer turn since, or
    something else wrote it) is never replaced: it is listed in ``kept`` with the reason.
    ``overwrite=True`` replaces such objects with the files' bytes (plain PUTs).
    Without it, new keys are written create-only and imported ones replaced by If-Match,
    so the server must enforce conditional writes (see the store's capability probe).

    Raises:
        ConfigurationError: ``source`` is not a directory.
        StoreError: the bucket could not be listed or written.
    """
    from s3store._backends import gather_limited
    from s3store.errors import ConfigurationError

    root = Path(source)
    if not root.is_dir():
        raise ConfigurationError(f"not a directory: {root}")
    report = ImportReport()
    entries: list[TreeEntry] = []
    for rel in _walk(root):
        entry = classify_path(rel)
        if entry is None:
            report.skipped.append((rel, _skip_reason(rel)))
        else:
            entries.append(entry)

    bodies: dict[TreeEntry, bytes] = {}
    parsed: dict[TreeEntry, _Parsed] = {}
    ring = store.encryption
    for entry in [e for e in entries if e.kind in _HEADS]:
        body = (root / entry.rel).read_bytes()
        try:
            info = _parse_head_document(entry, body, ring)
        except StoreError as exc:  # unreadable, or sealed without the key
            report.problems.append((entry.rel, exc.summary))
            entries.remove(entry)
            continue
        if entry.layout == "v1" and info.embedded != entry.name:
            report.problems.append(
                (entry.rel, f"holds id {info.embedded!r}, not the id {entry.name!r} of its name")
            )
            entries.remove(entry)
            continue
        bodies[entry] = body
        parsed[entry] = info
    ids, notes = _resolve_ids(entries, parsed)
    report.skipped.extend(notes)

    # One document per (kind, id): v1 beats legacy, as upstream reads v1 first.
    chosen: dict[tuple[Kind, str], TreeEntry] = {}
    for entry in sorted(entries, key=lambda e: e.layout != "v1"):
        slot = (entry.kind, ids[entry])
        if slot in chosen:
            report.skipped.append((entry.rel, f"superseded by {chosen[slot].rel}"))
        else:
            chosen[slot] = entry
    snapshots = {
        ids[e]: e for e in chosen.values() if e in parsed and parsed[e].snapshot is not None
    }

    layout = store.layout
    plan: list[_Upload] = []
    for (kind, ident), entry in chosen.items():
        try:
            if kind not in _HEADS and ident in snapshots:
                report.skipped.append(
                    (entry.rel, f"superseded by the snapshot in {snapshots[ident].rel}")
                )
                continue
            snapshot = parsed[entry].snapshot if entry in parsed else None
            if snapshot is not None and layout.name == "legacy":
                plan.extend(_snapshot_uploads(store, snapshot, entry.rel))
                continue
            key = key_for(layout, kind, ident)
            if kind == "artifacts":
                file_body = (root / entry.rel).read_bytes()
                plain = _plaintext(ring, file_body, entry.rel)
                model = codec.loads(ArtifactStore, plain, source=entry.rel)
                plan.append(_Upload(key, None, entry.rel, ident, model, file_body=file_body))
                continue
            file_body = bodies.get(entry) or (root / entry.rel).read_bytes()
            plain = (
                parsed[entry].plain if entry in parsed else _plaintext(ring, file_body, entry.rel)
            )
            if kind not in _HEADS:
                _validate_sidecar(entry, plain)
            if len(plain) > store.settings.max_document_bytes:
                raise DocumentError(f"{len(plain)} bytes, over the document size limit")
            body = _stored_bytes(store, key, file_body, plain)
            plan.append(_Upload(key, body, entry.rel, ident, plain=plain, snapshot=snapshot))
        except StoreError as exc:
            report.problems.append((entry.rel, exc.summary))

    existing = {info.key: info for info in store.iter_objects(layout.root)}
    counter = _Counter(len(plan), progress)
    lock = threading.Lock()

    def run(job: _Upload) -> None:
        try:
            outcome, blobs = _execute(store, job, existing, overwrite=overwrite)
        except UnsupportedBackendError as exc:
            with lock:
                report.problems.append(
                    (job.source, f"{exc.summary} (--overwrite imports without conditions)")
                )
        except StoreError as exc:
            with lock:
                report.problems.append((job.source, exc.summary))
        else:
            with lock:
                if isinstance(outcome, str):
                    report.kept.append((job.key, f"{outcome} (from {job.source})"))
                else:
                    (report.uploaded if outcome else report.unchanged).append(job.key)
                report.blobs_uploaded += blobs
        counter.step()

    gather_limited([_bind(run, job) for job in plan], store.settings.max_concurrency)
    return report


def _bind(fn: Callable[[_Upload], None], job: _Upload) -> Callable[[], None]:
    return lambda: fn(job)


def _snapshot_uploads(
    store: S3SessionStore, snapshot: SessionSnapshotV1, rel: str
) -> list[_Upload]:
    """A snapshot imported into a legacy-layout store: one document per component."""
    ident = snapshot.session.id
    jobs: list[_Upload] = []
    for kind, value in split_snapshot(snapshot).items():
        key = key_for(store.layout, kind, ident)
        if kind == "artifacts":
            jobs.append(_Upload(key, None, rel, ident, value))
        else:
            plain = codec.dumps(value)
            jobs.append(_Upload(key, _stored_bytes(store, key, b"", plain), rel, plain=plain))
    return jobs


_NOT_IMPORTED = (
    "the bucket's copy differs from the file and was not written by an import "
    "(changed in the bucket since it was imported, e.g. a newer turn); left as it is"
)
_CREATED_MEANWHILE = "created in the bucket during this import; left as it is"
_CHANGED_MEANWHILE = "changed in the bucket during this import; left as it is"


def _is_import(got_body: bytes, metadata: dict[str, str], plain: bytes | None = None) -> bool:
    """Whether an object holds exactly the bytes an import wrote (its marker matches the MD5
    of its bytes, or of their plaintext when the store sealed what the import gave it)."""
    marker = metadata.get(IMPORT_MARKER)
    if marker is None:
        return False
    if marker == md5_etag(got_body).strip('"'):
        return True
    return plain is not None and marker == md5_etag(plain).strip('"')


def _stored_plain(store: S3SessionStore, key: str, body: bytes) -> bytes | None:
    """The plaintext of a stored object, or None if it cannot be opened."""
    try:
        return store._open_document(key, body)
    except StoreError:
        return None


@dataclass(frozen=True)
class _Decision:
    """How to write a key: ``mode``; or nothing (``same``: it holds the bytes already);
    or leave the bucket's copy alone (``keep``: why)."""

    mode: PutMode = "overwrite"
    same: bool = False
    keep: str | None = None


def _decide(
    store: S3SessionStore,
    key: str,
    body: bytes,
    listed: ObjectInfo | None,
    overwrite: bool,
    plain: bytes | None = None,
) -> _Decision:
    """How to write ``body`` at ``key`` without reverting anything newer in the bucket.

    Costs one GET when the listing shows different bytes (and ``overwrite`` is off).
    """
    if overwrite:
        return _Decision("overwrite")
    if listed is None:
        return _Decision("create")
    got = store.get_object(key)
    if got is None:  # deleted since the listing
        return _Decision("create")
    got_plain = _stored_plain(store, key, got.body) if plain is not None else None
    if got.body == body or (got_plain is not None and got_plain == plain):
        # Same bytes (or the same plaintext, sealed with another nonce), though the ETag is
        # not their MD5 (SSE-KMS, sealing); a manifest with missing blobs is still written
        # (for its blobs), and only if it still holds these bytes.
        return _Decision(IfMatch(got.info.etag), same=True)
    if _is_import(got.body, got.info.metadata, got_plain):
        return _Decision(IfMatch(got.info.etag))
    return _Decision(keep=_NOT_IMPORTED)


def _execute(
    store: S3SessionStore, job: _Upload, existing: dict[str, ObjectInfo], *, overwrite: bool
) -> tuple[bool | str, int]:
    """Run one upload unless the bucket holds it already or must not be replaced.

    Returns (True: written, False: unchanged, or the reason it was kept; blobs sent).
    """
    listed = existing.get(job.key)
    if job.snapshot is not None:
        return _execute_snapshot(store, job, existing, overwrite=overwrite)
    if job.artifacts is None:
        assert job.body is not None
        if _same(listed, job.body):
            return False, 0
        decision = _decide(store, job.key, job.body, listed, overwrite, job.plain)
        if decision.keep is not None:
            return decision.keep, 0
        if decision.same:
            return False, 0
        try:
            # The store's own write path (conditions, 409 retries, write tokens, request
            # counting); the bytes are the file's, not a re-serialisation.
            with put_metadata(job.key, {IMPORT_MARKER: md5_etag(job.body).strip('"')}):
                store.put_object(job.key, job.body, mode=decision.mode)
        except AlreadyExistsError:
            return _CREATED_MEANWHILE, 0
        except PreconditionFailedError:
            return _CHANGED_MEANWHILE, 0
        return True, 0
    split = cas.split_artifacts(
        job.artifacts, inline_threshold=store.settings.inline_threshold, address=store._blob_address
    )
    if not split.blobs and store.encryption is not None and job.file_body is not None:
        # Every content inline: the manifest is a plain document (an upstream envelope
        # imported as it is, so that export gives the file back byte for byte).
        plain = split.manifest
        body = _stored_bytes(store, job.key, job.file_body, plain)
        return _execute(
            store, _Upload(job.key, body, job.source, plain=plain), existing, overwrite=overwrite
        )
    present = {d for d in split.blobs if store.layout.blob_key(d) in existing}
    if _same(listed, split.manifest) and present == set(split.blobs):
        return False, 0
    decision = _decide(store, job.key, split.manifest, listed, overwrite, split.manifest)
    if decision.keep is not None:
        return decision.keep, 0
    if decision.same and present == set(split.blobs):
        return False, 0
    # Tell the store which blob versions the listing showed, so it does not send them again
    # while they are young (the store decides what "young" is).
    store.mark_blobs_present([existing[store.layout.blob_key(d)] for d in present])
    try:
        # Blobs go up as the store uploads them; only the manifest PUT carries the marker.
        with put_metadata(job.key, {IMPORT_MARKER: md5_etag(split.manifest).strip('"')}):
            store.save_artifacts(job.ident, job.artifacts, mode=decision.mode)
    except AlreadyExistsError:
        return _CREATED_MEANWHILE, 0
    except PreconditionFailedError:
        return _CHANGED_MEANWHILE, 0
    return True, len(split.blobs) - len(present)


def _execute_snapshot(
    store: S3SessionStore, job: _Upload, existing: dict[str, ObjectInfo], *, overwrite: bool
) -> tuple[bool | str, int]:
    """Import a ``SessionSnapshotV1`` into a v1 store as a snapshot.

    All contents inline: the document is stored as the file holds it (an upstream envelope
    kept as it is when the store's ring writes v1), with its digest in the metadata. Large
    contents: through ``save_snapshot`` (blobs first, then the snapshot referring to them).
    """
    assert job.snapshot is not None
    assert job.body is not None
    assert job.plain is not None
    snapshot = job.snapshot
    stored, blobs = snap.split_snapshot(
        snapshot, inline_threshold=store.settings.inline_threshold, address=store._blob_address
    )
    digest = snap.snapshot_digest(snapshot)
    listed = existing.get(job.key)
    if not blobs:
        if _same(listed, job.body):
            return False, 0
        decision = _decide(store, job.key, job.body, listed, overwrite, job.plain)
        if decision.keep is not None:
            return decision.keep, 0
        if decision.same:
            return False, 0
        marker = {IMPORT_MARKER: md5_etag(job.body).strip('"'), snap.DIGEST_METADATA: digest}
        try:
            with put_metadata(job.key, marker):
                store.put_object(job.key, job.body, mode=decision.mode)
        except AlreadyExistsError:
            return _CREATED_MEANWHILE, 0
        except PreconditionFailedError:
            return _CHANGED_MEANWHILE, 0
        return True, 0
    rendered = stored.render()
    present = {d for d in blobs if store.layout.blob_key(d) in existing}
    if _same(listed, rendered) and present == set(blobs):
        return False, 0
    decision = _decide(store, job.key, rendered, listed, overwrite, rendered)
    if decision.keep is not None:
        return decision.keep, 0
    if decision.same and present == set(blobs):
        return False, 0
    store.mark_blobs_present([existing[store.layout.blob_key(d)] for d in present])
    try:
        with put_metadata(job.key, {IMPORT_MARKER: md5_etag(rendered).strip('"')}):
            store.save_snapshot(snapshot, mode=decision.mode)
    except AlreadyExistsError:
        return _CREATED_MEANWHILE, 0
    except PreconditionFailedError:
        return _CHANGED_MEANWHILE, 0
    return True, len(blobs) - len(present)


# -- export -----------------------------------------------------------------------------


@dataclass
class ExportReport:
    """What :func:`export_dir` did.

    Attributes:
        written: files written (relative paths).
        unchanged: files that already held exactly these bytes (left alone).
        problems: ``(key, detail)`` for documents that could not be exported.
    """

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problems."""
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for JSON output."""
        return {
            "written": sorted(self.written),
            "unchanged": sorted(self.unchanged),
            "problems": [{"key": k, "detail": d} for k, d in self.problems],
            "ok": self.ok,
        }


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` via a temp file and rename; False if it already held it.

    The temp file sits next to the target (same file system, so the rename is atomic) and
    is named like the Rust store's (``<name>.<nanos>.<pid>.tmp``), which its readers ignore.
    """
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{time.time_ns()}.{os.getpid()}.tmp")
    try:
        with temp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return True


def export_dir(
    store: S3SessionStore,
    dest: str | os.PathLike[str],
    *,
    layout: LayoutName | None = None,
    progress: ProgressFn | None = None,
    sealed: bool | None = None,
) -> ExportReport:
    """Write what ``store`` holds as a ``FileSessionStore`` directory of ``layout``.

    ``layout`` defaults to the store's. Documents are written byte for byte as stored;
    artifact manifests are loaded through the store (every blob re-hashed) and written with
    their contents inline, as the Rust store writes them. A ``SessionSnapshotV1`` stored in
    a v1 store is written to a v1 directory as upstream's envelope (contents inline again)
    and split into fragments for a legacy one. Files are replaced atomically; files that
    already hold the right bytes are left alone; nothing is deleted.

    ``sealed`` (default: whether the store has a key ring) writes every document in
    upstream's v1 envelope (STORE-ENCRYPT1), which ``FileSessionStore::with_encryption_key``
    opens: an object stored as a v1 envelope of the same plaintext is written as it is (so
    an imported sealed directory comes back byte for byte), anything else is sealed with
    the ring's current key. ``sealed=False`` writes plaintext.
    """
    from s3store._backends import gather_limited
    from s3store.errors import ConfigurationError

    ring = store.encryption
    seal = ring is not None if sealed is None else sealed
    if seal and ring is None:
        raise ConfigurationError("export sealed=True needs a store with an encryption key ring")
    target = Layout("", layout or store.layout.name)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    root = store.layout.root
    entries: list[TreeEntry] = []
    journaled = False  # journal-mode deltas: sessions are exported folded (README)
    for info in store.iter_objects(root):
        entry = classify_path(info.key[len(root) :])
        if entry is not None and entry.layout == store.layout.name:
            entries.append(entry)
        elif info.key[len(root) :].startswith(("journal/", "v1/journal/")):
            journaled = True

    bodies: dict[TreeEntry, bytes] = {}
    parsed: dict[TreeEntry, _Parsed] = {}

    def fetch(entry: TreeEntry) -> None:
        got = store.get_object(root + entry.rel)
        if got is None:  # deleted since the listing
            return
        try:
            if entry.kind == "session" and is_placeholder(_plaintext(ring, got.body, entry.rel)):
                return  # a lease placeholder: no session
            if entry.kind == "session" and journaled and ring is None:
                folded = Journal(store).export_body(entry.name, got.body, got.info)
                if folded is not None:
                    got = GetResult(folded, got.info)
            info = _parse_head_document(entry, got.body, ring)
        except StoreError as exc:  # unreadable, or sealed without the key
            report.problems.append((root + entry.rel, exc.summary))
            return
        bodies[entry] = got.body
        parsed[entry] = info

    heads = [e for e in entries if e.kind in _HEADS]
    gather_limited([_bind_entry(fetch, e) for e in heads], store.settings.max_concurrency)
    entries = [e for e in entries if e in parsed or e.kind not in _HEADS]
    ids, _ = _resolve_ids(entries, parsed)
    snapshot_ids = {
        ids[e]
        for e in entries
        if e in parsed and parsed[e].snapshot is not None and target.name == "legacy"
    }
    counter = _Counter(len(entries), progress)
    lock = threading.Lock()

    def output(raw: bytes | None, plain: bytes) -> bytes:
        if not seal:
            return plain
        assert ring is not None
        if raw is not None and raw.startswith(_SEALED_MAGIC):
            try:
                if ring.open(raw) == plain:
                    return raw  # the upstream envelope as stored: byte for byte
            except StoreError:
                pass
        return ring.seal(plain, version=crypto.V1)

    def write(rel_key: str, data: bytes) -> None:
        path = out.joinpath(*rel_key.split("/"))
        changed = write_atomic(path, data)
        with lock:
            (report.written if changed else report.unchanged).append(rel_key)

    def export(entry: TreeEntry) -> None:
        ident = ids[entry]
        try:
            if entry.kind not in _HEADS and ident in snapshot_ids:
                return  # the snapshot's components win, as upstream ignores stale fragments
            head = parsed.get(entry)
            if head is not None and head.snapshot is not None:
                assert head.stored is not None
                full = head.snapshot
                if head.stored.refs:
                    loaded = store.load_snapshot(ident)
                    if loaded is None:
                        return
                    full = loaded
                if target.name == "legacy":
                    for kind, value in split_snapshot(full).items():
                        write(key_for(target, kind, ident), output(None, codec.dumps(value)))
                    return
                plain = head.plain if not head.stored.refs else codec.dumps(full)
                raw = bodies[entry] if not head.stored.refs else None
                write(key_for(target, entry.kind, ident), output(raw, plain))
                return
            rel_key = key_for(target, entry.kind, ident)
            if entry.kind == "artifacts":
                # The store's own id for the key: the file stem (legacy) or the id (v1).
                artifacts = store._load_manifest(entry.name)
                if artifacts is not None:
                    stored = store.get_object(root + entry.rel) if seal else None
                    raw = stored.body if stored is not None else None
                    write(rel_key, output(raw, codec.dumps(artifacts)))
                return
            body = bodies.get(entry)
            if body is None:
                got = store.get_object(root + entry.rel)
                if got is None:
                    return
                body = got.body
                part = _SIDECARS.get(entry.kind)
                if journaled and ring is None and part in ARRAY_KINDS:
                    # Journaled trace events / run records: exported folded, as sessions.
                    assert part is not None
                    journaled_kind = ARRAY_KINDS[part]
                    folded = Journal(store).export_body(entry.name, body, got.info, journaled_kind)
                    if folded is not None:
                        body = folded
            write(rel_key, output(body, _plaintext(ring, body, entry.rel)))
        except (StoreError, OSError) as exc:
            with lock:
                report.problems.append((root + entry.rel, getattr(exc, "summary", str(exc))))
        finally:
            counter.step()

    gather_limited([_bind_entry(export, e) for e in entries], store.settings.max_concurrency)
    return report


def _bind_entry(fn: Callable[[TreeEntry], None], entry: TreeEntry) -> Callable[[], None]:
    return lambda: fn(entry)
