"""Key layout: how ids become S3 keys, and keys become ids again. Pure functions, no I/O.

Two layouts mirror the two directory trees of a3s-code's ``FileSessionStore``:

``legacy`` (the seed's tree, eras A–C)::

    <prefix>/<safe_id>.json                       session (SessionData)
    <prefix>/artifacts/<safe_id>/artifacts.json   artifact manifest
    <prefix>/traces/<safe_id>.json                trace events
    <prefix>/verification/<safe_id>.json          verification reports
    <prefix>/runs/<safe_id>.json                  run records
    <prefix>/subagent_tasks/<safe_id>.json        subagent task snapshots
    <prefix>/loop_checkpoints/<safe_run_id>.json  loop checkpoint
    <prefix>/workflow_checkpoints/<safe_wf_id>.json  workflow checkpoint
    <prefix>/.health_check                        health probe (deleted right away)

``safe_id`` is exactly the Rust ``safe_session_id``: every ``/`` and ``\\`` becomes ``_``, then
every non-overlapping ``..`` becomes ``_``. It is lossy (``a/b`` and ``a_b`` share a key), which
is why the store checks the id embedded in a document on load.

``v1`` (upstream's collision-free tree, eras D–F)::

    <prefix>/v1/sessions/id_<b64>.json
    <prefix>/v1/artifacts/id_<b64>/artifacts.json
    <prefix>/v1/{traces,verification,runs,subagent_tasks}/id_<b64>.json
    <prefix>/v1/loop_checkpoints/id_<b64(run_id)>.json
    <prefix>/v1/workflow_checkpoints/id_<b64(workflow_id)>.json

``<b64>`` is URL-safe base64 of the UTF-8 id without ``=`` padding.

Both layouts share s3store's own objects, which the Rust store never sees::

    <prefix>/blobs/blake3/<2 hex>/<64 hex>        content-addressed artifact bodies
    <prefix>/leases/<safe_id>.json                writer leases (legacy layout)
    <prefix>/v1/leases/id_<b64>.json              writer leases (v1 layout)

Ids s3store refuses (``InvalidIdError``) beyond what the Rust store does: the empty id, ids with
NUL or other control characters (not representable in S3 listings or file names), ids that are
not valid UTF-8 (lone surrogates), and ids whose key would exceed S3's 1,024-byte limit.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass
from typing import Literal

from s3store.errors import ConfigurationError, InvalidIdError

S3_MAX_KEY_BYTES = 1024
BLOB_ALGORITHM = "blake3"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

LayoutName = Literal["legacy", "v1"]


class Part(enum.Enum):
    """The kinds of per-session object, with their directory names in the Rust tree."""

    SESSION = "sessions"
    ARTIFACTS = "artifacts"
    TRACES = "traces"
    VERIFICATION = "verification"
    RUNS = "runs"
    SUBAGENT_TASKS = "subagent_tasks"


SIDECAR_PARTS: tuple[Part, ...] = (Part.TRACES, Part.VERIFICATION, Part.RUNS, Part.SUBAGENT_TASKS)


def safe_session_id(id: str) -> str:
    """The Rust ``safe_session_id`` / ``legacy_safe_id`` sanitiser, character for character."""
    # str.replace scans left to right and does not overlap, exactly like Rust's.
    return id.replace("/", "_").replace("\\", "_").replace("..", "_")


def encode_v1_id(id: str) -> str:
    """``id_`` + URL-safe base64 of the UTF-8 id, without padding (upstream's v1 key)."""
    raw = base64.urlsafe_b64encode(id.encode("utf-8")).decode("ascii").rstrip("=")
    return f"id_{raw}"


def decode_v1_id(name: str) -> str | None:
    """Invert :func:`encode_v1_id`; ``None`` for anything upstream's ``list`` would skip."""
    if not name.startswith("id_"):
        return None
    raw = name[3:]
    if "=" in raw or len(raw) % 4 == 1:
        return None
    try:
        data = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        decoded = data.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Strict decoding: the canonical encoding of the result must be what we were given
    # (rejects non-zero trailing bits, as Rust's base64 does).
    return decoded if encode_v1_id(decoded) == name else None


def normalize_prefix(prefix: str) -> str:
    """Normalise a key prefix: no leading or trailing ``/``, single separators, may be empty.

    Raises ConfigurationError for ``.``/``..`` segments or control characters, which would
    let an exported directory tree escape its root.
    """
    if _CONTROL.search(prefix):
        raise ConfigurationError(f"prefix {prefix!r} contains a control character")
    segments = [s for s in prefix.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ConfigurationError(f"prefix {prefix!r} has a '.' or '..' segment")
    return "/".join(segments)


def validate_id(id: str, *, what: str = "session id") -> None:
    """Refuse ids that cannot be stored safely (see the module docstring)."""
    if not isinstance(id, str):
        raise InvalidIdError(f"{what} must be a str, not {type(id).__name__}", id=None)
    if id == "":
        raise InvalidIdError(f"{what} is empty", id=id)
    if _CONTROL.search(id):
        raise InvalidIdError(f"{what} contains a NUL or control character", id=id)
    try:
        id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdError(f"{what} is not valid UTF-8 (lone surrogate)", id=id) from None


def blob_key_suffix(digest: str) -> str:
    """``blobs/blake3/<2 hex>/<64 hex>`` for a BLAKE3 hex digest (the key below the prefix)."""
    if not _HEX64.fullmatch(digest):
        raise ValueError(f"not a lowercase 64-hex BLAKE3 digest: {digest!r}")
    return f"blobs/{BLOB_ALGORITHM}/{digest[:2]}/{digest}"


@dataclass(frozen=True)
class Layout:
    """Maps ids to keys under one normalised prefix, in the legacy or v1 tree."""

    prefix: str
    name: LayoutName = "legacy"

    def __post_init__(self) -> None:
        if self.name not in ("legacy", "v1"):
            raise ConfigurationError(f"layout must be 'legacy' or 'v1', not {self.name!r}")
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))

    # -- building keys -------------------------------------------------------------------

    @property
    def root(self) -> str:
        """The prefix with its trailing separator (``""`` for an empty prefix)."""
        return f"{self.prefix}/" if self.prefix else ""

    def _checked(self, key: str, id: str, what: str) -> str:
        if len(key.encode("utf-8")) > S3_MAX_KEY_BYTES:
            raise InvalidIdError(
                f"{what} gives a key longer than S3's {S3_MAX_KEY_BYTES}-byte limit", id=id
            )
        return key

    def id_segment(self, id: str, *, what: str = "session id") -> str:
        """The file-name stem an id maps to in this layout."""
        validate_id(id, what=what)
        if self.name == "v1":
            return encode_v1_id(id)
        segment = safe_session_id(id)
        if segment == ".":
            # "artifacts/./artifacts.json" is not a key servers agree on (SeaweedFS: 400),
            # and on disk it is the parent directory.
            raise InvalidIdError(f"{what} '.' cannot be stored in the legacy layout", id=id)
        return segment

    def _base(self) -> str:
        return self.root if self.name == "legacy" else f"{self.root}v1/"

    def session_key(self, id: str) -> str:
        """Key of the session document."""
        seg = self.id_segment(id)
        where = self._base() if self.name == "legacy" else f"{self._base()}sessions/"
        return self._checked(f"{where}{seg}.json", id, "session id")

    def sidecar_key(self, part: Part, id: str) -> str:
        """Key of a sidecar document (traces, verification, runs, subagent tasks)."""
        if part not in SIDECAR_PARTS:
            raise ValueError(f"{part} is not a sidecar")
        seg = self.id_segment(id)
        return self._checked(f"{self._base()}{part.value}/{seg}.json", id, "session id")

    def artifact_dir(self, id: str) -> str:
        """The per-session artifact "directory" (a key prefix ending in ``/``)."""
        seg = self.id_segment(id)
        return self._checked(f"{self._base()}artifacts/{seg}/", id, "session id")

    def artifact_manifest_key(self, id: str) -> str:
        """Key of the per-session artifact manifest."""
        return self._checked(f"{self.artifact_dir(id)}artifacts.json", id, "session id")

    def loop_checkpoint_key(self, run_id: str) -> str:
        """Key of a loop checkpoint, by run id."""
        seg = self.id_segment(run_id, what="run id")
        return self._checked(f"{self._base()}loop_checkpoints/{seg}.json", run_id, "run id")

    def workflow_checkpoint_key(self, workflow_id: str) -> str:
        """Key of a workflow checkpoint, by workflow id."""
        seg = self.id_segment(workflow_id, what="workflow id")
        return self._checked(
            f"{self._base()}workflow_checkpoints/{seg}.json", workflow_id, "workflow id"
        )

    def lease_key(self, id: str) -> str:
        """Key of the writer lease of a session.

        Legacy: ``<prefix>/leases/<safe_id>.json``; v1: ``<prefix>/v1/leases/id_<b64>.json``,
        a directory of its own, so the v1 id ``a`` (``id_YQ``) and the legacy id ``id_YQ``
        never share a lease.
        """
        seg = self.id_segment(id)
        return self._checked(f"{self._base()}leases/{seg}.json", id, "session id")

    def health_key(self) -> str:
        """Key the health check writes and deletes."""
        return f"{self.root}.health_check"

    def probe_key(self, token: str) -> str:
        """Scratch key for the capability probe."""
        return f"{self.root}.s3store-probe-{token}"

    def blob_key(self, digest: str) -> str:
        """Key of a content-addressed blob."""
        return f"{self.root}{blob_key_suffix(digest)}"

    @property
    def blob_root(self) -> str:
        """Prefix under which every blob lives."""
        return f"{self.root}blobs/{BLOB_ALGORITHM}/"

    def blob_digest(self, key: str) -> str:
        """Validate a blob key and return its digest; ValueError for anything else."""
        rest = key.removeprefix(self.blob_root)
        if rest == key:
            raise ValueError(f"not a blob key under {self.blob_root!r}: {key!r}")
        fan, _, digest = rest.partition("/")
        if not _HEX64.fullmatch(digest) or fan != digest[:2]:
            raise ValueError(f"malformed blob key: {key!r}")
        return digest

    # -- listing -------------------------------------------------------------------------

    @property
    def session_list_prefix(self) -> str:
        """Prefix to list (with delimiter ``/``) to find session documents."""
        return self._base() if self.name == "legacy" else f"{self._base()}sessions/"

    def session_id_from_key(self, key: str) -> str | None:
        """The listed id for a key directly under :attr:`session_list_prefix`, else None.

        Legacy: the file stem (the sanitised id, as the Rust ``list`` returns it). v1: the
        decoded id; undecodable names are skipped, as upstream does.
        """
        name = key.removeprefix(self.session_list_prefix)
        if name == key or "/" in name or not name.endswith(".json"):
            return None
        stem = name[: -len(".json")]
        if self.name == "v1":
            return decode_v1_id(stem)
        # Rust's file_stem of ".json" is ".json" (a dot file with no extension).
        return stem or None
