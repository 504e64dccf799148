"""Content addressing for artifact bodies: BLAKE3 digests, blob references, manifests. No I/O.

A stored artifact manifest has the shape of the Rust ``artifacts.json`` (``artifacts`` in
insertion order, then ``retained_uris``), except that an artifact whose content is at least
``inline_threshold`` UTF-8 bytes carries a reference instead of the text::

    "content": {"algo": "blake3", "digest": "<64 hex>", "size": <bytes>}

Short contents stay inline strings, so a manifest with only short contents is byte-identical
to what the Rust store writes. The reference is an object where Rust expects a string, so a
Rust reader fails loudly on a manifest with references instead of misreading it; ``export``
inlines them again. See FORMAT.md.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blake3

from s3store import codec
from s3store.errors import DocumentError
from s3store.models import ArtifactStore

ALGORITHM = "blake3"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STREAM_CHUNK = 4 * 1024 * 1024


def blake3_hex(data: bytes | memoryview) -> str:
    """Lowercase hex BLAKE3 digest of ``data`` (multi-threaded for large inputs)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO) if len(data) >= _STREAM_CHUNK else None
    if hasher is None:
        return blake3.blake3(data).hexdigest()
    view = memoryview(data)
    # Hash in a streaming pass over the buffer so huge contents are never copied.
    for start in range(0, len(view), _STREAM_CHUNK):
        hasher.update(view[start : start + _STREAM_CHUNK])
    return hasher.hexdigest()


# Every upload of a blob appends a trailer: 16 random bytes, then this magic. The content
# (and so the digest) is unchanged, but each upload's bytes, and so its ETag, are unique: gc
# deletes a blob only with If-Match on the ETag it listed, so a writer that re-uploads
# ("freshens") a blob gc is about to collect makes that delete fail. See FORMAT.md.
BLOB_TRAILER_MAGIC = b"S3SBLOB1"
BLOB_NONCE_BYTES = 16
BLOB_TRAILER_BYTES = BLOB_NONCE_BYTES + len(BLOB_TRAILER_MAGIC)


def blob_trailer() -> bytes:
    """A fresh trailer for one upload of a blob."""
    return uuid.uuid4().bytes + BLOB_TRAILER_MAGIC


def blob_payload(body: bytes) -> bytes:
    """The content of a stored blob: the body without its trailer (legacy blobs have none)."""
    if len(body) >= BLOB_TRAILER_BYTES and body.endswith(BLOB_TRAILER_MAGIC):
        return body[:-BLOB_TRAILER_BYTES]
    return body


def open_blob(body: bytes, digest: str) -> bytes | None:
    """The verified content of a stored blob, or None if it does not hash to ``digest``.

    A body that ends with the trailer magic is checked without its trailer first; a blob
    written before trailers existed (or whose content happens to end with the magic) is then
    checked whole.
    """
    payload = blob_payload(body)
    if blake3_hex(payload) == digest:
        return payload
    if payload is not body and blake3_hex(body) == digest:
        return body
    return None


@dataclass(frozen=True)
class BlobRef:
    """A reference from a manifest to a content-addressed blob."""

    digest: str
    size: int
    algo: str = ALGORITHM

    def to_json(self) -> dict[str, Any]:
        """The manifest form."""
        return {"algo": self.algo, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, value: Any, *, source: str, path: str) -> BlobRef:
        """Parse and validate a manifest reference."""
        if (
            not isinstance(value, dict)
            or value.get("algo") != ALGORITHM
            or not isinstance(value.get("digest"), str)
            or not _HEX64.fullmatch(value["digest"])
            or not isinstance(value.get("size"), int)
            or value["size"] < 0
        ):
            raise DocumentError(
                f"invalid blob reference at {path} in {source}: {value!r:.200}",
                source=source,
                errors=[(path, "expected {algo: 'blake3', digest: <64 hex>, size: int}")],
            )
        return cls(digest=value["digest"], size=value["size"])


@dataclass(frozen=True)
class SplitManifest:
    """A manifest ready to store, and the blob bodies it refers to (by digest)."""

    manifest: bytes
    blobs: dict[str, bytes]


def split_artifacts(
    store: ArtifactStore,
    *,
    inline_threshold: int,
    address: Callable[[bytes], str] = blake3_hex,
) -> SplitManifest:
    """Turn an ArtifactStore into a manifest with blob references plus the blob bodies.

    Large contents are never JSON-encoded: each is swapped for a unique placeholder before
    the manifest is serialised, and the placeholder's text is then replaced by the reference.
    ``address`` names a blob by its content: the plain BLAKE3 digest, or the keyed BLAKE3
    address when the store encrypts (:meth:`s3store.crypto.KeyRing.blob_address`).
    """
    blobs: dict[str, bytes] = {}
    refs: dict[str, BlobRef] = {}
    nonce = uuid.uuid4().hex
    artifacts = []
    for index, artifact in enumerate(store.artifacts):
        data = artifact.content.encode("utf-8")
        if len(data) < inline_threshold:
            artifacts.append(artifact)
            continue
        digest = address(data)
        blobs[digest] = data
        placeholder = f"s3store-blob-ref-{nonce}-{index}"
        refs[placeholder] = BlobRef(digest=digest, size=len(data))
        artifacts.append(artifact.model_copy(update={"content": placeholder}))
    if not refs:
        return SplitManifest(manifest=codec.dumps(store), blobs=blobs)
    text = codec.dumps(store.model_copy(update={"artifacts": artifacts})).decode("utf-8")
    for placeholder, ref in refs.items():
        # The content value sits at a fixed depth: artifacts[i].content, 6 spaces in.
        rendered = codec.dumps(ref.to_json()).decode("utf-8").replace("\n", "\n      ")
        text = text.replace(f'"{placeholder}"', rendered, 1)
    return SplitManifest(manifest=text.encode("utf-8"), blobs=blobs)


@dataclass(frozen=True)
class ParsedManifest:
    """A stored manifest: its JSON tree and the blob references in it, by artifact index."""

    tree: dict[str, Any]
    refs: dict[int, BlobRef]

    @property
    def digests(self) -> set[str]:
        """Every digest the manifest refers to."""
        return {ref.digest for ref in self.refs.values()}


def parse_manifest(data: bytes, *, source: str) -> ParsedManifest:
    """Parse a stored manifest (with or without references); DocumentError if malformed."""
    try:
        tree = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DocumentError(f"{source} is not valid JSON: {exc!r:.200}", source=source) from None
    if not isinstance(tree, dict) or not isinstance(tree.get("artifacts"), list):
        raise DocumentError(
            f"{source} is not an artifact manifest (no 'artifacts' array)",
            source=source,
            errors=[("artifacts", "missing or not an array")],
        )
    refs: dict[int, BlobRef] = {}
    for index, artifact in enumerate(tree["artifacts"]):
        if isinstance(artifact, dict) and isinstance(artifact.get("content"), dict):
            path = f"artifacts.{index}.content"
            refs[index] = BlobRef.from_json(artifact["content"], source=source, path=path)
    return ParsedManifest(tree=tree, refs=refs)


def join_artifacts(
    parsed: ParsedManifest, bodies: dict[str, bytes], *, source: str
) -> ArtifactStore:
    """Inline blob bodies back into the manifest and validate it as an ArtifactStore."""
    tree = parsed.tree
    for index, ref in parsed.refs.items():
        try:
            text = bodies[ref.digest].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(
                f"blob {ref.digest} referenced by {source} is not UTF-8: {exc}", source=source
            ) from None
        tree["artifacts"][index]["content"] = text
    loaded: ArtifactStore = codec.from_value(ArtifactStore, tree, source=source)
    return loaded
