"""Result types of the maintenance operations (gc, fsck)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GcReport:
    """What a garbage collection found and did."""

    manifests: int
    blobs: int
    referenced: int
    """Blobs kept because a manifest refers to them."""
    kept_young: int
    """Unreferenced blobs kept because they are younger than the grace period."""
    deleted: int
    """Blobs deleted (dry run: that would be deleted)."""
    deleted_bytes: int
    dry_run: bool
    kept_refreshed: int = 0
    """Candidates kept because a writer re-uploaded them after the listing (If-Match failed)."""
    grace_seconds: float = 0.0
    deleted_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class FsckProblem:
    """One problem fsck found: its kind (``document``, ``integrity``, ``missing-blob``)."""

    kind: str
    key: str
    detail: str


@dataclass
class FsckReport:
    """Everything fsck checked and found; ``ok`` when there are no problems."""

    documents: int = 0
    blobs: int = 0
    problems: list[FsckProblem] = field(default_factory=list)
    unreferenced_blobs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problems (unreferenced blobs are not problems: gc removes them)."""
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for JSON output."""
        return {**asdict(self), "ok": self.ok}
