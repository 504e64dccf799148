"""``s3store demo`` (what ``make demo`` runs): every document kind through a real S3 API.

Without a configured endpoint it starts moto's S3 server on 127.0.0.1 inside this process
(dummy credentials, set for this process only), so it needs no setup and leaves nothing
behind. With ``S3STORE_URL`` / ``AWS_ENDPOINT_URL`` (or ``--url`` / ``--endpoint-url``) it
runs against that endpoint under a fresh unique prefix, and deletes only what it wrote.

The documents are built here, shaped like the a3s-code fixtures (the package does not read
``tests/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import IO, TYPE_CHECKING, Any, TypeVar

from s3store import codec
from s3store.errors import UnsupportedBackendError
from s3store.keys import LayoutName
from s3store.models import (
    ArtifactStore,
    LoopCheckpoint,
    RunRecord,
    SessionData,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
)

if TYPE_CHECKING:
    from s3store._sync.store import S3SessionStore

T = TypeVar("T")

DEMO_BUCKET = "s3store-demo"
SESSION_IDS = ("demo/alpha", "demo-beta", "demo-gamma")
_T0 = 1_700_000_000


# -- documents --------------------------------------------------------------------------


def _text(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
    }


def _tool_turn(tool_id: str, command: str, output: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": f"Running `{command}`."},
                {"type": "tool_use", "id": tool_id, "name": "bash", "input": {"command": command}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_id,
                    "content": output[:200],
                    "is_error": False,
                }
            ],
        },
    ]


def session_config(name: str, workspace: str) -> dict[str, Any]:
    """A ``SessionConfig`` document in the current writer's shape (as in ``session.json``)."""
    return {
        "name": name,
        "workspace": workspace,
        "system_prompt": "You are helpful.",
        "max_context_length": 200000,
        "auto_compact": True,
        "auto_compact_threshold": 0.8,
        "storage_type": "file",
        "planning_mode": "Auto",
        "goal_tracking": False,
        "tool_presentation_profile": {
            "schema": "a3s.code.tool-presentation-profile.v1",
            "mode": "adaptive",
        },
        "tool_result_transform_policy": {
            "schema": "a3s.code.tool-result-transform-policy.v1",
            "max_output_bytes": 102400,
            "head_bytes": 102400,
            "tail_bytes": 0,
            "fold_repeated_lines": False,
            "repeated_line_threshold": 3,
            "structured_sample_items": 0,
        },
    }


def demo_session(id: str, n: int) -> SessionData:
    """A session shaped like the fixture ``session.json`` (current writer's shape)."""
    messages = [_text("user", f"Build the project and run the tests ({id}).")]
    messages += _tool_turn("toolu_01", "cargo build", "Compiling demo v0.1.0\nFinished\n")
    messages.append(
        {**_text("assistant", "The build passed; 12 tests ran."), "reasoning_content": "ok"}
    )
    doc = {
        "id": id,
        "config": session_config(f"Demo session {n}", "/home/user/project"),
        "state": "Active",
        "messages": messages,
        "context_usage": {
            "used_tokens": 1234,
            "max_tokens": 200000,
            "percent": 0.00617,
            "turns": 2,
        },
        "total_usage": _usage(1000, 234),
        "total_cost": 0.00651,
        "model_name": "claude-sonnet-4-20250514",
        "cost_records": [
            {
                "model": "claude-sonnet-4-20250514",
                "provider": "anthropic",
                "prompt_tokens": 1000,
                "completion_tokens": 234,
                "total_tokens": 1234,
                "cost_usd": 0.00651,
                "timestamp": "2023-11-14T22:13:20.123456789Z",
                "session_id": id,
            }
        ],
        "tool_names": ["bash", "read"],
        "thinking_enabled": False,
        "thinking_budget": None,
        "created_at": _T0 + n,
        "updated_at": _T0 + 100 + n,
        "llm_config": {
            "provider": "anthropic",
            "model": "claude-sonnet-4-20250514",
            "base_url": None,
        },
        "tasks": [
            {"id": "1", "content": "Build and test", "status": "completed", "priority": "medium"}
        ],
    }
    result: SessionData = _load(SessionData, doc)
    return result


def _artifact(tool: str, content: str, shown: int | None = None) -> dict[str, Any]:
    digest = hashlib.sha256(content.encode()).hexdigest()
    size = len(content.encode())
    return {
        "artifact_id": f"tool-output:{tool}:{digest}",
        "artifact_uri": f"a3s://tool-output/{tool}/{digest}",
        "tool_name": tool,
        "content": content,
        "original_bytes": size,
        "shown_bytes": min(size, shown if shown is not None else size),
    }


def shared_build_log() -> str:
    """The large tool output every demo session holds: it dedups into one blob."""
    lines = [f"   Compiling crate-{i:04d} v0.{i % 7}.{i % 13} (registry)" for i in range(2400)]
    return "\n".join([*lines, "    Finished `dev` profile in 42.17s", ""])


def demo_artifacts(n: int) -> ArtifactStore:
    """One small inline output, the shared large build log, and (session 0) a unique one."""
    entries = [
        _artifact("bash", "lib.rs\nmain.rs\n"),
        _artifact("bash", shared_build_log(), shown=4096),
    ]
    if n == 0:
        unique = "".join(f"test case_{i:05d} ... ok\n" for i in range(600))
        entries.append(_artifact("cargo_test", unique, shown=2048))
    retained = sorted(e["artifact_uri"] for e in entries[1:2])
    result: ArtifactStore = _load(ArtifactStore, {"artifacts": entries, "retained_uris": retained})
    return result


def demo_traces(id: str) -> list[TraceEvent]:
    """Trace events like the fixture: one tool execution, one program execution."""
    result: list[TraceEvent] = _load(
        list[TraceEvent],
        [
            {
                "schema": "a3s.trace_event.v1",
                "kind": "tool_execution",
                "name": "bash",
                "success": True,
                "exit_code": 0,
                "duration_ms": 12,
                "output_bytes": 15,
                "metadata_keys": ["artifact"],
            },
            {
                "schema": "a3s.trace_event.v1",
                "kind": "program_execution",
                "name": "program",
                "success": True,
                "exit_code": 0,
                "duration_ms": 3,
                "output_bytes": 42,
                "metadata_keys": ["trace"],
                "details": {"program_name": "program_repo_map", "session": id, "step_count": 7},
            },
        ],
    )
    return result


def demo_runs(id: str, run_id: str) -> list[RunRecord]:
    """One run record with three events."""
    events = [
        {"type": "agent_start", "prompt": "Build the project"},
        {"type": "text_delta", "text": "Running "},
        {"type": "text_delta", "text": "cargo build."},
    ]
    result: list[RunRecord] = _load(
        list[RunRecord],
        [
            {
                "snapshot": {
                    "id": run_id,
                    "session_id": id,
                    "status": "completed",
                    "prompt": "Build the project",
                    "created_at_ms": _T0 * 1000,
                    "updated_at_ms": _T0 * 1000 + 3,
                    "event_count": len(events),
                },
                "events": [
                    {"sequence": i, "timestamp_ms": _T0 * 1000 + i + 1, "event": e}
                    for i, e in enumerate(events)
                ],
            }
        ],
    )
    return result


def demo_verification() -> list[VerificationReport]:
    """A passed and a needs-review report."""
    result: list[VerificationReport] = _load(
        list[VerificationReport],
        [
            {
                "schema": "a3s.verification_report.v1",
                "subject": "program:test",
                "status": "passed",
                "checks": [
                    {
                        "id": "check:test",
                        "kind": "test",
                        "description": "Run tests",
                        "status": "passed",
                        "required": True,
                        "suggested_tools": ["bash"],
                    }
                ],
            },
            {
                "schema": "a3s.verification_report.v1",
                "subject": "program:lint",
                "status": "needs_review",
                "checks": [
                    {
                        "id": "check:lint",
                        "kind": "lint",
                        "description": "Run lints",
                        "status": "needs_review",
                        "required": True,
                    }
                ],
                "residual_risks": ["lint was not executed"],
            },
        ],
    )
    return result


def demo_subagents(id: str) -> list[SubagentTaskSnapshot]:
    """A finished and a running subagent task."""
    result: list[SubagentTaskSnapshot] = _load(
        list[SubagentTaskSnapshot],
        [
            {
                "task_id": "task-1",
                "parent_session_id": id,
                "child_session_id": f"{id}-child-1",
                "agent": "explore",
                "description": "find the failing test",
                "status": "completed",
                "started_ms": _T0 * 1000 + 1000,
                "updated_ms": _T0 * 1000 + 2000,
                "finished_ms": _T0 * 1000 + 2000,
                "output": "done",
                "success": True,
                "progress": [
                    {
                        "timestamp_ms": _T0 * 1000 + 1500,
                        "status": "tool_completed: bash",
                        "metadata": {},
                    }
                ],
            },
            {
                "task_id": "task-2",
                "parent_session_id": id,
                "child_session_id": f"{id}-child-2",
                "agent": "general",
                "description": "still running",
                "status": "running",
                "started_ms": _T0 * 1000 + 3000,
                "updated_ms": _T0 * 1000 + 3000,
                "progress": [],
            },
        ],
    )
    return result


def demo_checkpoint(id: str, run_id: str) -> LoopCheckpoint:
    """A loop checkpoint after one tool turn."""
    messages = [_text("user", "Build the project")]
    messages += _tool_turn("toolu_01", "cargo build", "Finished\n")
    result: LoopCheckpoint = _load(
        LoopCheckpoint,
        {
            "schema_version": 1,
            "run_id": run_id,
            "session_id": id,
            "turn": 1,
            "messages": messages,
            "total_usage": _usage(600, 120),
            "tool_calls_count": 1,
            "verification_reports": [],
            "convergence": {
                "parse_error_count": 0,
                "continuation_count": 0,
                "reasoning_only_repair_count": 0,
                "recent_tool_signatures": [],
                "guarded_duplicate_count": 0,
                "incomplete_response_stalled": False,
            },
            "checkpoint_ms": _T0 * 1000 + 3500,
        },
    )
    return result


def _load(tp: Any, doc: Any) -> Any:
    # Through the codec, so the models carry the wire shape exactly as if read from disk.
    return codec.loads(tp, json.dumps(doc).encode())


# -- measuring --------------------------------------------------------------------------


@dataclass
class _Ledger:
    """Requests per store call, measured by diffing ``store.stats`` around each call."""

    stats: Any
    rows: list[tuple[str, Counter[str]]] = field(default_factory=list)

    def call(self, label: str, fn: Callable[[], T]) -> T:
        before = Counter(self.stats.requests)
        try:
            return fn()
        finally:
            self.rows.append((label, Counter(self.stats.requests) - before))


def _fmt_ops(ops: Counter[str]) -> str:
    return ", ".join(f"{op} {count}" for op, count in sorted(ops.items())) or "-"


def human_bytes(size: float) -> str:
    """``1.5 KiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def render_tree(objects: list[tuple[str, int]], root: str) -> list[str]:
    """Indented key tree with sizes, for keys (relative to ``root``) and their byte sizes."""
    lines: list[str] = []
    seen: set[tuple[str, ...]] = set()
    width = max((len(k.rsplit("/", 1)[-1]) + 2 * k.count("/") for k, _ in objects), default=0)
    for key, size in sorted(objects):
        parts = key[len(root) :].split("/")
        for depth in range(len(parts) - 1):
            folder = tuple(parts[: depth + 1])
            if folder not in seen:
                seen.add(folder)
                lines.append(f"  {'  ' * depth}{parts[depth]}/")
        name = f"{'  ' * (len(parts) - 1)}{parts[-1]}"
        lines.append(f"  {name:<{width + 2}} {human_bytes(size):>10}")
    return lines


# -- the demo ---------------------------------------------------------------------------


@contextmanager
def _demo_credentials() -> Iterator[None]:
    """Dummy credentials for the embedded server, for this process only, restored after."""
    changes = {
        "AWS_ACCESS_KEY_ID": "s3store-demo",
        "AWS_SECRET_ACCESS_KEY": "s3store-demo",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PROFILE": None,
        "AWS_SESSION_TOKEN": None,
    }
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(
    *,
    url: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    layout: LayoutName | None = None,
    keep: bool = False,
    out: IO[str],
) -> int:
    """Run the demo; 0 if every document came back equal, 1 otherwise.

    Embedded mode (no URL and no endpoint anywhere): moto on 127.0.0.1, bucket
    ``s3store-demo``, prefix ``demo``. Configured mode: the given bucket (or
    ``s3store-demo``, created if missing) under ``<prefix>/s3store-demo-<random>``.
    """
    from s3store._sync.store import S3SessionStore
    from s3store.config import parse_s3_url
    from s3store.devserver import MotoServer, ensure_bucket, s3_client

    url = url or os.environ.get("S3STORE_URL") or None
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    started = time.monotonic()
    if url is None and endpoint_url is None:
        server = MotoServer()
        with _demo_credentials():
            server.start()
            try:
                print(f"embedded S3: moto server on {server.endpoint} (in memory)", file=out)
                ensure_bucket(s3_client(server.endpoint, "demo", "demo"), DEMO_BUCKET)
                with S3SessionStore(
                    bucket=DEMO_BUCKET,
                    prefix="demo",
                    endpoint_url=server.endpoint,
                    region_name="us-east-1",
                    layout=layout,
                ) as store:
                    code = _exercise(store, out)
            finally:
                server.stop()
                print("embedded S3 stopped", file=out)
    else:
        bucket, base = parse_s3_url(url) if url else (DEMO_BUCKET, "")
        prefix = "/".join(p for p in (base, f"s3store-demo-{uuid.uuid4().hex[:8]}") if p)
        with S3SessionStore(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint_url,
            region_name=region,
            profile_name=profile,
            layout=layout,
        ) as store:
            print(f"configured S3: s3://{bucket}/{prefix}/ (a fresh prefix)", file=out)
            created = store.ensure_bucket() if url is None else False
            try:
                code = _exercise(store, out)
            finally:
                if not keep:
                    # Only keys under the fresh prefix: everything there was written here.
                    keys = [info.key for info in store.iter_objects()]
                    store.delete_objects(keys)
                    print(f"removed the {len(keys)} demo objects", file=out)
                    if created:
                        _remove_demo_bucket(store, out)
    print(f"done in {time.monotonic() - started:.1f} s", file=out)
    return code


def _bucket_client(store: S3SessionStore) -> Any:
    """A plain boto3 client with the store's endpoint, region, profile and retries: the
    store's object-client seam has no bucket lifecycle beyond ``create_bucket``, on
    purpose (a session store never deletes buckets), so the demo does its own."""
    import boto3

    from s3store.config import client_kwargs

    session = boto3.Session(profile_name=store.settings.profile_name)
    return session.client("s3", **client_kwargs(store.settings))


def _remove_demo_bucket(store: S3SessionStore, out: IO[str]) -> None:
    """Delete the bucket this run created, if nothing else was put there meanwhile (S3
    refuses to delete a non-empty bucket: someone else's objects are never touched)."""
    try:
        _bucket_client(store).delete_bucket(Bucket=store.bucket)
    except Exception as exc:  # leaving a bucket behind is reported, not fatal
        print(f"kept bucket {store.bucket} (could not delete it: {exc})", file=out)
    else:
        print(f"removed the bucket {store.bucket} this demo created", file=out)


def _touch(session: SessionData | None) -> SessionData:
    """The update the demo applies: a newer ``updated_at``."""
    if session is None:
        raise LookupError("demo-beta vanished during the demo")
    return session.model_copy(update={"updated_at": _T0 + 500})


def _exercise(store: S3SessionStore, out: IO[str]) -> int:
    ledger = _Ledger(store.stats)
    expected: dict[tuple[str, str], Any] = {}
    for n, id in enumerate(SESSION_IDS):
        run_id = f"run-{id.replace('/', '-')}-1"
        docs: dict[str, Any] = {
            "session": demo_session(id, n),
            "artifacts": demo_artifacts(n),
            "traces": demo_traces(id),
            "runs": demo_runs(id, run_id),
            "verification": demo_verification(),
            "subagent_tasks": demo_subagents(id),
        }
        checkpoint = demo_checkpoint(id, run_id)
        ledger.call(f"save {id}", partial(store.save, docs["session"]))
        ledger.call(f"save_artifacts {id}", partial(store.save_artifacts, id, docs["artifacts"]))
        ledger.call(f"save_trace_events {id}", partial(store.save_trace_events, id, docs["traces"]))
        ledger.call(f"save_run_records {id}", partial(store.save_run_records, id, docs["runs"]))
        ledger.call(
            f"save_verification_reports {id}",
            partial(store.save_verification_reports, id, docs["verification"]),
        )
        ledger.call(
            f"save_subagent_tasks {id}",
            partial(store.save_subagent_tasks, id, docs["subagent_tasks"]),
        )
        ledger.call(
            f"save_loop_checkpoint {run_id}",
            partial(store.save_loop_checkpoint, run_id, checkpoint),
        )
        expected.update({(kind, id): value for kind, value in docs.items()})
        expected[("checkpoint", run_id)] = checkpoint

    loaders: dict[str, Callable[[str], Any]] = {
        "session": store.load,
        "artifacts": store.load_artifacts,
        "traces": store.load_trace_events,
        "runs": store.load_run_records,
        "verification": store.load_verification_reports,
        "subagent_tasks": store.load_subagent_tasks,
        "checkpoint": store.load_loop_checkpoint,
    }
    mismatches: list[str] = []
    for (kind, id), value in expected.items():
        loaded = ledger.call(f"load {kind} {id}", partial(loaders[kind], id))
        # Equal as values and as bytes: what comes back serialises exactly as it went in.
        if loaded != value or codec.dumps(loaded) != codec.dumps(value):
            mismatches.append(f"{kind} {id}")
    listed = ledger.call("list", store.list)
    try:
        ledger.call(
            "update demo-beta (CAS; first use probes the server)",
            partial(store.update, "demo-beta", _touch),
        )
    except UnsupportedBackendError as exc:
        print(f"(conditional update skipped: {exc.summary})", file=out)
    fsck = ledger.call("fsck", store.fsck)
    totals = Counter(store.stats.requests)

    objects = [(info.key, info.size) for info in store.iter_objects()]
    root = store.layout.root
    print(f"\nkey tree of s3://{store.bucket}/{root}  ({store.layout.name} layout)", file=out)
    for line in render_tree(objects, root):
        print(line, file=out)

    logical = sum(
        len(a.content.encode())
        for kind_id, value in expected.items()
        if kind_id[0] == "artifacts"
        for a in value.artifacts
        if len(a.content.encode()) >= store.settings.inline_threshold
    )
    stored = sum(size for key, size in objects if key.startswith(store.layout.blob_root))
    blobs = sum(1 for key, _ in objects if key.startswith(store.layout.blob_root))
    print(
        f"\n{len(objects)} objects, {human_bytes(sum(s for _, s in objects))}; artifact contents "
        f"of {human_bytes(logical)} stored as {blobs} blobs of {human_bytes(stored)} "
        f"(dedup {logical / stored if stored else 1:.2f}x)",
        file=out,
    )

    print("\nrequests per call (diff of store.stats around each call)", file=out)
    grouped: dict[str, list[Counter[str]]] = {}
    for label, ops in ledger.rows:
        # "save_artifacts demo/alpha" -> "save_artifacts": one row per API call, all sessions.
        name = label.split(" (")[0]
        name = " ".join(name.split()[:2]) if name.startswith("load ") else name.split()[0]
        grouped.setdefault(name, []).append(ops)
    width = max(len(name) for name in grouped)
    print(f"  {'call':<{width}}  calls  requests each  operations (all calls)", file=out)
    for name, counts in grouped.items():
        each = "/".join(str(sum(c.values())) for c in counts)
        total: Counter[str] = sum(counts, Counter())
        print(f"  {name:<{width}}  {len(counts):>5}  {each:<13}  {_fmt_ops(total)}", file=out)
    print(
        "  (update is a compare-and-swap; its first use probes what the server enforces)", file=out
    )
    print("\nrequests per operation (store.stats)", file=out)
    for op, count in sorted(totals.items()):
        print(f"  {op:<24} {count:>5}", file=out)
    print(f"  {'total':<24} {sum(totals.values()):>5}", file=out)
    up, down = store.stats.bytes_up, store.stats.bytes_down
    print(f"  bytes up {human_bytes(up)}, down {human_bytes(down)}", file=out)

    checks = [
        (not mismatches, f"{len(expected)} documents loaded back equal, byte for byte"),
        (len(listed) == len(SESSION_IDS), f"list() found {len(listed)} sessions"),
        (fsck.ok, f"fsck: {fsck.documents} documents, {fsck.blobs} blobs, no problems"),
    ]
    print("", file=out)
    for ok, text in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}", file=out)
    for name in mismatches:
        print(f"FAIL {name} differs after the round trip", file=out)
    return 0 if all(ok for ok, _ in checks) else 1
