"""Deterministic workload data for the benchmark: sessions, turns, sidecars, tool outputs."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

from s3store import codec, demo
from s3store.models import (
    ArtifactStore,
    LoopCheckpoint,
    Message,
    RunRecord,
    SessionData,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
)

KIB = 1024
MIB = 1024 * KIB

_WORDS = (
    *("the", "agent", "reads", "src/lib.rs", "and", "runs", "cargo", "test", "--all"),
    *("résumé", "ünïcode", "文件", "fn", "main()", "let", "x", "=", "Ok(())", "error[E0308]"),
    *("warning:", "unused", "variable", "line", "42", "passed;", "0", "failed;", "\n"),
)


def text(rng: random.Random, nbytes: int) -> str:
    """Words up to about ``nbytes`` UTF-8 bytes."""
    out: list[str] = []
    size = 0
    while size < nbytes:
        word = rng.choice(_WORDS)
        out.append(word)
        size += len(word.encode()) + 1
    return " ".join(out)


def message_dict(rng: random.Random, turn: int, nbytes: int = KIB) -> dict[str, Any]:
    """A ~``nbytes`` message as a3s-code stores it (alternating user / assistant)."""
    role = "user" if turn % 2 == 0 else "assistant"
    return {"role": role, "content": [{"type": "text", "text": text(rng, nbytes - 60)}]}


def message(rng: random.Random, turn: int, nbytes: int = KIB) -> Message:
    return Message.model_validate(message_dict(rng, turn, nbytes))


def strands_message(rng: random.Random, turn: int, nbytes: int = KIB) -> dict[str, Any]:
    """The same message in strands' content-block shape."""
    role = "user" if turn % 2 == 0 else "assistant"
    return {"role": role, "content": [{"text": text(rng, nbytes - 60)}]}


_SESSION_BASE: dict[str, Any] = {
    "config": {
        "name": "Bench Session",
        "workspace": "/home/user/project",
        "system_prompt": "You are helpful.",
        "max_context_length": 200000,
        "auto_compact": True,
        "auto_compact_threshold": 0.8,
        "storage_type": "file",
        "planning_mode": "Auto",
        "goal_tracking": False,
    },
    "state": "Active",
    "messages": [],
    "context_usage": {"used_tokens": 1234, "max_tokens": 200000, "percent": 0.00617, "turns": 2},
    "total_usage": {
        "prompt_tokens": 1000,
        "completion_tokens": 234,
        "total_tokens": 1234,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
    },
    "total_cost": 0.00651,
    "model_name": "claude-sonnet-4-20250514",
    "tool_names": ["bash", "read"],
    "thinking_enabled": False,
    "thinking_budget": None,
    "created_at": 1700000000,
    "updated_at": 1700000100,
    "llm_config": {
        "provider": "anthropic",
        "model": "claude-sonnet-4-20250514",
        "base_url": None,
    },
    "tenant_id": "acme",
}


def session(id: str, messages: list[Message] | None = None) -> SessionData:
    base = codec.loads(SessionData, json.dumps({**_SESSION_BASE, "id": id}).encode())
    return base.model_copy(update={"messages": list(messages or [])})


def trace_event(turn: int) -> TraceEvent:
    return TraceEvent.model_validate(
        {
            "schema": "a3s.trace_event.v1",
            "kind": "tool_execution",
            "name": "bash",
            "success": True,
            "exit_code": 0,
            "duration_ms": 12 + turn,
            "output_bytes": 150 + turn,
            "metadata_keys": ["artifact"],
            "artifact_uris": [
                f"a3s://tool-output/bash/{hashlib.sha256(str(turn).encode()).hexdigest()}"
            ],
        }
    )


def checkpoint(run_id: str, session_id: str, turn: int, recent: list[Message]) -> LoopCheckpoint:
    value: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id,
        "session_id": session_id,
        "turn": turn,
        "messages": [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in recent],
        "total_usage": {
            "prompt_tokens": 600 * (turn + 1),
            "completion_tokens": 120 * (turn + 1),
            "total_tokens": 720 * (turn + 1),
            "cache_read_tokens": None,
            "cache_write_tokens": None,
        },
        "tool_calls_count": turn,
        "verification_reports": [],
        "convergence": {
            "parse_error_count": 0,
            "continuation_count": 0,
            "reasoning_only_repair_count": 0,
            "recent_tool_signatures": [],
            "guarded_duplicate_count": 0,
            "incomplete_response_stalled": False,
        },
        "checkpoint_ms": 1700000003500 + turn,
    }
    return codec.loads(LoopCheckpoint, json.dumps(value).encode())


@dataclass
class Turn:
    """What an agent loop persists after one turn of one session."""

    session: SessionData
    run_id: str
    checkpoint: LoopCheckpoint
    traces: list[TraceEvent]


def agent_turns(session_ids: list[str], turns: int, seed: int = 1) -> dict[str, list[Turn]]:
    """Per session, the state after each turn: one ~1 KiB message more, a checkpoint, traces."""
    rng = random.Random(seed)
    msgs = [message(rng, t) for t in range(turns)]
    events = [trace_event(t) for t in range(turns)]
    out: dict[str, list[Turn]] = {}
    for sid in session_ids:
        base = session(sid)
        run_id = f"run-{sid}"
        out[sid] = [
            Turn(
                session=base.model_copy(update={"messages": msgs[: t + 1]}),
                run_id=run_id,
                checkpoint=checkpoint(run_id, sid, t, msgs[max(0, t - 1) : t + 1]),
                traces=events[: t + 1],
            )
            for t in range(turns)
        ]
    return out


def run_records(session_id: str) -> list[RunRecord]:
    """The restore workload's run records: the demo's, which mirror the a3s-code fixture."""
    return demo.demo_runs(session_id, f"run-{session_id}")


def verification_reports() -> list[VerificationReport]:
    """A passed and a needs-review report (the demo's)."""
    return demo.demo_verification()


def subagent_tasks(session_id: str) -> list[SubagentTaskSnapshot]:
    """A finished and a running subagent task (the demo's)."""
    return demo.demo_subagents(session_id)


# -- artifacts --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactMix:
    """The tool-output workload: a shared pool of large outputs plus small ones."""

    sessions: int
    per_session: int = 20
    large_pool: int = 60
    large_per_session: int = 14
    small_pool: int = 40
    small_shared_per_session: int = 3
    seed: int = 3

    def describe(self) -> str:
        small_unique = self.per_session - self.large_per_session - self.small_shared_per_session
        return (
            f"{self.sessions} sessions x {self.per_session} artifacts: {self.large_per_session} "
            f"drawn from a pool of {self.large_pool} outputs of 2-200 KiB (log-uniform), "
            f"{self.small_shared_per_session} from a pool of {self.small_pool} small shared "
            f"outputs (100 B-3 KiB), {small_unique} small outputs unique to the session (50-600 B)"
        )


def _tool_output(rng: random.Random, nbytes: int) -> str:
    return text(rng, nbytes)


def _artifact(tool: str, content: str) -> dict[str, Any]:
    digest = hashlib.sha256(content.encode()).hexdigest()
    size = len(content.encode())
    return {
        "artifact_id": f"tool-output:{tool}:{digest}",
        "artifact_uri": f"a3s://tool-output/{tool}/{digest}",
        "tool_name": tool,
        "content": content,
        "original_bytes": size,
        "shown_bytes": size,
    }


def artifact_sessions(mix: ArtifactMix) -> dict[str, ArtifactStore]:
    """One ArtifactStore per session id, per the mix."""
    rng = random.Random(mix.seed)
    large = [_tool_output(rng, int(2 * KIB * 100 ** rng.random())) for _ in range(mix.large_pool)]
    small = [_tool_output(rng, rng.randint(100, 3 * KIB)) for _ in range(mix.small_pool)]
    unique = mix.per_session - mix.large_per_session - mix.small_shared_per_session
    out: dict[str, ArtifactStore] = {}
    for index in range(mix.sessions):
        sid = f"art-{index:04d}"
        contents = rng.sample(large, mix.large_per_session)
        contents += rng.sample(small, mix.small_shared_per_session)
        contents += [
            f"[{sid} #{k}] exit 0\n" + _tool_output(rng, rng.randint(50, 600))
            for k in range(unique)
        ]
        rng.shuffle(contents)
        entries = [_artifact("bash" if i % 3 else "read", c) for i, c in enumerate(contents)]
        out[sid] = ArtifactStore.model_validate(
            {"artifacts": entries, "retained_uris": sorted(e["artifact_uri"] for e in entries)}
        )
    return out


def big_artifact(nbytes: int, nonce: str) -> ArtifactStore:
    """One artifact of exactly ``nbytes`` ASCII bytes, unique per ``nonce``."""
    raw = random.Random(nonce).randbytes(nbytes * 3 // 4 + 3)
    body = (nonce + base64.b64encode(raw).decode())[:nbytes]
    return ArtifactStore.model_validate({"artifacts": [_artifact("bash", body)]})
