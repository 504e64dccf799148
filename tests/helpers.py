"""Builders shared by the conformance suite (sync, I/O-free)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s3store import codec
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

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def session(id: str = "sess-0001", *, messages: int | None = None) -> SessionData:
    """The fixture session under another id (and optionally with N generated messages)."""
    loaded = codec.loads(SessionData, fixture("session.json"))
    data = loaded.model_copy(update={"id": id})
    if messages is not None:
        data = data.model_copy(update={"messages": [message(f"m{i}") for i in range(messages)]})
    return data


def message(text: str, role: str = "user") -> Message:
    return Message.model_validate({"role": role, "content": [{"type": "text", "text": text}]})


def with_message(data: SessionData, text: str) -> SessionData:
    return data.model_copy(update={"messages": [*data.messages, message(text)]})


def artifacts(*contents: str, tool: str = "bash") -> ArtifactStore:
    entries: list[dict[str, Any]] = []
    for index, content in enumerate(contents):
        digest = f"{index:064x}"
        entries.append(
            {
                "artifact_id": f"tool-output:{tool}:{digest}",
                "artifact_uri": f"a3s://tool-output/{tool}/{digest}",
                "tool_name": tool,
                "content": content,
                "original_bytes": len(content.encode()),
                "shown_bytes": len(content.encode()),
            }
        )
    return ArtifactStore.model_validate({"artifacts": entries, "retained_uris": []})


def trace_events() -> list[TraceEvent]:
    loaded: list[TraceEvent] = codec.loads(list[TraceEvent], fixture("trace_events.json"))
    return loaded


def run_records() -> list[RunRecord]:
    loaded: list[RunRecord] = codec.loads(list[RunRecord], fixture("run_records.json"))
    return loaded


def verification_reports() -> list[VerificationReport]:
    loaded: list[VerificationReport] = codec.loads(
        list[VerificationReport], fixture("verification_reports.json")
    )
    return loaded


def subagent_tasks() -> list[SubagentTaskSnapshot]:
    loaded: list[SubagentTaskSnapshot] = codec.loads(
        list[SubagentTaskSnapshot], fixture("subagent_tasks.json")
    )
    return loaded


def loop_checkpoint(run_id: str = "run-0001") -> LoopCheckpoint:
    loaded = codec.loads(LoopCheckpoint, fixture("loop_checkpoint.json"))
    return loaded.model_copy(update={"run_id": run_id})


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until ``condition()`` holds (checked every 10 ms); AssertionError after
    ``within`` seconds. For state that background tasks (renewals, periodic calls) reach
    without an event to wait on."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached in {within} s"
        await asyncio.sleep(0.01)
