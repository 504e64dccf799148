"""Issue 16 and the codec half of 14.8: the wire models follow upstream A3S-Lab/Code.

Each test names the upstream definition it checks (file @ commit of A3S-Lab/Code).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from s3store import codec
from s3store.errors import DocumentError
from s3store.models import (
    AGENT_EVENT_TYPES,
    AgentEndEvent,
    AgentGoal,
    ConfirmationPolicy,
    ContextUsage,
    ExternalObservationV1,
    GoalExtractedEvent,
    LlmCostRecord,
    LoopConvergenceState,
    PlanningEndEvent,
    RawAgentEvent,
    RunEventRecord,
    RunRecord,
    RunSnapshot,
    SessionConfig,
    SessionData,
    SessionLane,
    SubagentEndEvent,
    SubagentStartEvent,
    TokenUsage,
    ToolEndEvent,
    ToolInputDeltaEvent,
    ToolUseBlock,
    WriterLease,
    format_timestamp,
    parse_timestamp,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _compact(obj: Any) -> bytes:
    return codec.dumps_compact(obj)


def _keys(obj: Any) -> list[str]:
    return list(json.loads(codec.dumps(obj)))


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


# --- 1. AgentEvent variants (core/src/agent.rs @0473774) ---------------------------------

UPSTREAM_TAGS_0473774 = [
    "agent_start",
    "agent_mode_changed",
    "turn_start",
    "text_delta",
    "reasoning_delta",
    "tool_start",
    "tool_input_delta",
    "tool_request_bound",
    "tool_execution_start",
    "tool_end",
    "tool_output_delta",
    "turn_end",
    "agent_end",
    "error",
    "confirmation_required",
    "confirmation_received",
    "confirmation_timeout",
    "user_question",
    "external_task_pending",
    "external_task_completed",
    "permission_denied",
    "context_resolving",
    "context_resolved",
    "run_capability_bound",
    "model_presentation_bound",
    "model_input_bound",
    "model_usage_bound",
    "cognitive_context_bound",
    "command_dead_lettered",
    "command_retry",
    "queue_alert",
    "task_updated",
    "memory_stored",
    "memory_recalled",
    "memories_searched",
    "memory_cleared",
    "subagent_start",
    "subagent_progress",
    "subagent_end",
    "planning_start",
    "planning_end",
    "step_start",
    "step_end",
    "goal_extracted",
    "goal_progress",
    "goal_achieved",
    "context_compacted",
    "run_control_applied",
    "persistence_failed",
    "budget_threshold_hit",
    "passivation_requested",
    "peer_invocation",
]


def test_every_upstream_event_tag_is_known_in_upstream_order() -> None:
    assert list(AGENT_EVENT_TYPES) == UPSTREAM_TAGS_0473774


def test_python_built_subagent_events_write_their_timestamps() -> None:
    start = SubagentStartEvent(
        task_id="t", session_id="c", parent_session_id="p", agent="a", description="d"
    )
    assert _keys(start)[-1] == "started_ms"
    assert _compact(start).endswith(b'"description":"d","started_ms":0}')
    end = SubagentEndEvent(task_id="t", session_id="c", agent="a", output="o", success=True)
    assert _compact(end).endswith(b'"success":true,"finished_ms":0}')


def test_older_subagent_events_keep_their_bytes() -> None:
    raw = (
        b'{"sequence":1,"timestamp_ms":2,"event":{"type":"subagent_start","task_id":"t",'
        b'"session_id":"c","parent_session_id":"p","agent":"a","description":"d"}}'
    )
    record = codec.loads(RunEventRecord, raw)
    assert isinstance(record.event, SubagentStartEvent)
    assert record.event.started_ms == 0
    assert codec.dumps_compact(record) == raw
    newer = raw.replace(b'"d"}}', b'"d","started_ms":17}}')
    assert codec.dumps_compact(codec.loads(RunEventRecord, newer)) == newer


def test_tool_input_delta_writes_id_before_delta() -> None:
    assert _compact(ToolInputDeltaEvent(delta="{", id="call-1")) == (
        b'{"type":"tool_input_delta","id":"call-1","delta":"{"}'
    )
    assert _compact(ToolInputDeltaEvent(delta="{")) == b'{"type":"tool_input_delta","delta":"{"}'


def test_tool_end_writes_args_between_name_and_output() -> None:
    event = ToolEndEvent(id="i", name="bash", output="ok", exit_code=0, args={"cmd": "ls"})
    assert _keys(event) == ["type", "id", "name", "args", "output", "exit_code"]
    bare = ToolEndEvent(id="i", name="bash", output="ok", exit_code=0)
    assert _keys(bare) == ["type", "id", "name", "output", "exit_code"]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "tool_request_bound", "tool_id": "i", "tool_name": "n", "snapshot": {"d": "x"}},
        {"type": "tool_execution_start", "id": "i", "name": "n", "args": {"a": [1]}},
        {"type": "user_question", "question_id": "q", "question": "?", "options": ["y", "n"]},
        {"type": "run_capability_bound", "call_sequence": 3, "snapshot": {"z": 1, "a": 2}},
        {"type": "model_presentation_bound", "snapshot": {}},
        {"type": "model_input_bound", "snapshot": {"digest": "d"}},
        {"type": "model_usage_bound", "snapshot": {"n": 1}},
        {"type": "cognitive_context_bound", "binding": {"schema": "s"}},
        {
            "type": "context_compacted",
            "session_id": "s",
            "before_messages": 9,
            "after_messages": 2,
            "percent_before": 0.9,
            "summary": "so far",
        },
        {
            "type": "run_control_applied",
            "request_id": "r",
            "operation": "global_stop",
            "turn_id": None,
            "turn_revision": 4,
            "reason": "user",
        },
    ],
    ids=lambda e: e["type"],
)
def test_newer_event_tags_load_typed_and_round_trip(event: dict[str, Any]) -> None:
    raw = json.dumps({"sequence": 1, "timestamp_ms": 2, "event": event}, indent=2).encode()
    record = codec.loads(RunEventRecord, raw)
    assert not isinstance(record.event, RawAgentEvent)
    assert type(record.event) is AGENT_EVENT_TYPES[event["type"]]
    assert codec.dumps(record) == raw


def test_run_control_applied_writes_null_turn_id() -> None:
    event = AGENT_EVENT_TYPES["run_control_applied"].model_validate(
        {"request_id": "r", "operation": "global_resume", "turn_revision": 1}
    )
    assert _compact(event) == (
        b'{"type":"run_control_applied","request_id":"r","operation":"global_resume",'
        b'"turn_id":null,"turn_revision":1}'
    )


# --- 2. goal_extracted.goal is AgentGoal (core/src/planning/mod.rs @314addf7) -------------


def test_goal_progress_is_an_f32() -> None:
    goal = AgentGoal(
        description="ship",
        success_criteria=["tests"],
        progress=0.000005,
        achieved=False,
        created_at=1,
    )
    event = GoalExtractedEvent(goal=goal)
    assert _compact(event) == (
        b'{"type":"goal_extracted","goal":{"description":"ship","success_criteria":["tests"],'
        b'"progress":0.000005,"achieved":false,"created_at":1,"achieved_at":null}}'
    )
    raw = _compact(RunEventRecord(sequence=0, timestamp_ms=0, event=event))
    assert codec.dumps_compact(codec.loads(RunEventRecord, raw)) == raw
    with pytest.raises(DocumentError, match=r"goal\.progress"):
        codec.loads(GoalExtractedEvent, _compact(event).replace(b"0.000005", b'"half"'))


def test_goal_requires_its_fields() -> None:
    with pytest.raises(DocumentError, match="achieved"):
        codec.loads(
            GoalExtractedEvent,
            b'{"type":"goal_extracted","goal":{"description":"d","success_criteria":[],'
            b'"progress":0.5,"created_at":1}}',
        )


# --- 3. DateTime<Utc> fields (core/src/telemetry.rs; chrono's serde) ---------------------


def _cost(timestamp: Any) -> LlmCostRecord:
    return LlmCostRecord.model_validate(
        {
            "model": "m",
            "provider": "p",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "total_tokens": 2,
            "timestamp": timestamp,
        }
    )


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ("2023-11-14T22:13:20Z", "2023-11-14T22:13:20Z"),
        ("2023-11-14T22:13:20.123456789Z", "2023-11-14T22:13:20.123456789Z"),
        ("2023-11-14T22:13:20.123000Z", "2023-11-14T22:13:20.123Z"),
        ("2023-11-14T22:13:20.120000Z", "2023-11-14T22:13:20.120Z"),
        ("2023-11-14T22:13:20.000Z", "2023-11-14T22:13:20Z"),
        ("2023-11-14T22:13:20.1234Z", "2023-11-14T22:13:20.123400Z"),
        ("2023-11-14 22:13:20Z", "2023-11-14T22:13:20Z"),
        ("2023-11-15T03:43:20+05:30", "2023-11-14T22:13:20Z"),
        ("2023-11-14T20:13:20-02:00", "2023-11-14T22:13:20Z"),
        ("2023-11-14t22:13:20z", "2023-11-14T22:13:20Z"),
        ("2024-01-01T00:30:00.5+01:00", "2023-12-31T23:30:00.500Z"),
    ],
)
def test_timestamps_are_written_as_chrono_writes_them(given: str, written: str) -> None:
    assert _cost(given).timestamp == written
    doc = json.loads(codec.dumps(_cost(given)))
    assert doc["timestamp"] == written
    assert codec.loads(LlmCostRecord, codec.dumps(_cost(given))).timestamp == written


@pytest.mark.parametrize(
    "bad",
    [
        "not a timestamp",
        "2023-11-14",
        "2023-11-14T22:13:20",
        "2023-13-01T00:00:00Z",
        "2023-02-30T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:13:20+25:00",
        "",
        1700000000,
    ],
)
def test_invalid_timestamps_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        _cost(bad)
    doc = json.loads((FIXTURES / "session.json").read_bytes())
    doc["cost_records"][0]["timestamp"] = bad
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, json.dumps(doc), source="s.json")
    assert info.value.errors[0][0] == "cost_records.0.timestamp"


def test_datetime_values_are_accepted() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    moment = datetime.datetime(2023, 11, 15, 3, 43, 20, 250000, tzinfo=tz)
    assert _cost(moment).timestamp == "2023-11-14T22:13:20.250Z"
    assert parse_timestamp("2023-11-15T03:43:20.25+05:30") == moment
    with pytest.raises(ValueError, match="naive"):
        _cost(datetime.datetime(2023, 1, 1))
    assert format_timestamp(moment, nanos=1) == "2023-11-14T22:13:20.000000001Z"


def test_fixture_timestamp_keeps_its_text() -> None:
    raw = (FIXTURES / "session.json").read_bytes()
    session = codec.loads(SessionData, raw)
    assert codec.dumps(session) == raw


# --- 4. Rust structs that were opaque ----------------------------------------------------


def test_workspace_change_set_is_written_in_struct_order() -> None:
    # core/src/run.rs: RunWorkspaceChangeSet.
    snapshot = RunSnapshot.model_validate(
        {
            "id": "r",
            "session_id": "s",
            "status": "completed",
            "prompt": "p",
            "created_at_ms": 1,
            "updated_at_ms": 2,
            "event_count": 0,
            "workspace_change_set": {
                "observed_at_ms": 5,
                "patch_base64": "",
                "patch_bytes": 0,
                "patch_digest": "sha256:x",
                "result_tree": "b",
                "base_tree": "a",
            },
        }
    )
    out = json.loads(codec.dumps(snapshot))["workspace_change_set"]
    assert list(out) == [
        "base_tree",
        "result_tree",
        "patch_digest",
        "patch_bytes",
        "patch_base64",
        "observed_at_ms",
    ]
    with pytest.raises(ValueError, match="patch_bytes"):
        RunSnapshot.model_validate(
            {**snapshot.model_dump(), "workspace_change_set": {"base_tree": "a"}}
        )


def test_immutable_content_adapter_binding_is_typed() -> None:
    doc = json.loads((FIXTURES / "session.json").read_bytes())
    doc["immutable_content_adapter_binding"] = {
        "binding_digest": "sha256:b",
        "maximum_bytes": 1024,
        "authority_digest": "sha256:a",
        "schema": "a3s.code.immutable-content-adapter-binding.v1",
    }
    session = SessionData.model_validate(doc)
    out = json.loads(codec.dumps(session))["immutable_content_adapter_binding"]
    assert list(out) == ["schema", "authority_digest", "maximum_bytes", "binding_digest"]
    del doc["immutable_content_adapter_binding"]["maximum_bytes"]
    with pytest.raises(ValueError, match="maximum_bytes"):
        SessionData.model_validate(doc)


def test_agent_end_summary_and_meta_follow_serde() -> None:
    # core/src/verification.rs @0473774 and core/src/llm/types.rs.
    event = AgentEndEvent.model_validate(
        {
            "text": "done",
            "usage": _usage(),
            "verification_summary": {
                "status": "passed",
                "report_count": 1,
                "required_check_count": 1,
                "pending_required_check_count": 0,
                "failed_check_count": 0,
                "residual_risk_count": 0,
                "pending_subjects": [],
                "failed_subjects": [],
            },
            "meta": {"provider": "anthropic", "request_url": None, "duration_ms": 12},
        }
    )
    out = json.loads(codec.dumps(event))
    assert "pending_subjects" not in out["verification_summary"]
    assert out["meta"] == {"provider": "anthropic", "duration_ms": 12}
    with pytest.raises(ValueError, match="report_count"):
        AgentEndEvent.model_validate(
            {"text": "t", "usage": _usage(), "verification_summary": {"status": "passed"}}
        )


def test_planning_end_plan_drops_null_tools() -> None:
    # core/src/planning/mod.rs @314addf7: ExecutionPlan, steps are Tasks (tool skipped if None).
    event = PlanningEndEvent.model_validate(
        {
            "plan": {
                "goal": "g",
                "steps": [{"id": "1", "content": "c", "status": "pending", "tool": None}],
                "complexity": "VeryComplex",
                "required_tools": ["bash"],
                "estimated_steps": 1,
            },
            "estimated_steps": 1,
        }
    )
    step = json.loads(codec.dumps(event))["plan"]["steps"][0]
    assert step == {"id": "1", "content": "c", "status": "pending", "priority": "medium"}
    with pytest.raises(ValueError, match="complexity"):
        PlanningEndEvent.model_validate(
            {
                "plan": {
                    "goal": "g",
                    "steps": [],
                    "complexity": "very_complex",
                    "required_tools": [],
                    "estimated_steps": 0,
                },
                "estimated_steps": 0,
            }
        )


def test_open_observations_write_null_source_revision() -> None:
    # core/src/external_observation.rs @0473774: `source_revision` is a bare Option.
    observation = {
        "schema": "a3s.code.external-observation.v1",
        "kind": "ci",
        "subject": "build",
        "digest": "obs-1",
        "payload": "failed",
        "required_action": "workspace_change",
    }
    state = LoopConvergenceState.model_validate({"open_observations": [observation]})
    out = json.loads(codec.dumps(state))["open_observations"][0]
    assert list(out) == [
        "schema",
        "kind",
        "subject",
        "digest",
        "payload",
        "source_revision",
        "required_action",
    ]
    assert out["source_revision"] is None
    # Also when read from a document that lacked it: Rust writes the null back.
    loaded = codec.loads(ExternalObservationV1, json.dumps(observation))
    assert b'"source_revision":null' in codec.dumps_compact(loaded)
    with pytest.raises(DocumentError):
        codec.loads(ExternalObservationV1, json.dumps({**observation, "required_action": "x"}))


# --- 5. sets and required fields ---------------------------------------------------------


def test_yolo_lanes_is_a_set() -> None:
    # core/src/hitl.rs: HashSet<SessionLane>.
    policy = ConfirmationPolicy.model_validate(
        {
            "enabled": True,
            "default_timeout_ms": 1,
            "timeout_action": "Reject",
            "yolo_lanes": ["Query", "Execute", "Query"],
        }
    )
    assert policy.yolo_lanes == [SessionLane.QUERY, SessionLane.EXECUTE]
    assert json.loads(codec.dumps(policy))["yolo_lanes"] == ["Query", "Execute"]


@pytest.mark.parametrize(
    ("key", "partial"),
    [
        ("tool_result_transform_policy", {"schema": "a3s.code.tool-result-transform-policy.v1"}),
        ("tool_result_transform_policy", {"max_output_bytes": 1}),
        ("tool_presentation_profile", {"schema": "a3s.code.tool-presentation-profile.v1"}),
        ("tool_presentation_profile", {"mode": "code"}),
    ],
)
def test_partial_policies_are_refused(key: str, partial: dict[str, Any]) -> None:
    # tools transform/presentation @0473774: no field-level serde default.
    doc = json.loads((FIXTURES / "session.json").read_bytes())
    doc["config"][key] = partial
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, json.dumps(doc))
    assert info.value.errors[0][0].startswith(f"config.{key}.")


def test_missing_policies_still_default() -> None:
    config = SessionConfig(name="n", workspace="/w", max_context_length=1, auto_compact=False)
    out = json.loads(codec.dumps(config))
    assert out["tool_result_transform_policy"]["max_output_bytes"] == 102400
    assert out["tool_presentation_profile"] == {
        "schema": "a3s.code.tool-presentation-profile.v1",
        "mode": "adaptive",
    }


# --- 6. integers beyond i64/u64 in opaque JSON -------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (2**64 - 1, b"18446744073709551615"),
        (-(2**63), b"-9223372036854775808"),
        (2**64, b"1.8446744073709552e19"),
        (10**30, b"1e30"),
        (-(2**63) - 1, b"-9.223372036854776e18"),
        (10**17 + 1, b"100000000000000001"),
    ],
)
def test_wide_integers_are_written_as_serde_reads_them(value: int, written: bytes) -> None:
    block = ToolUseBlock(id="i", name="n", input={"n": value, "l": [value]})
    out = codec.dumps_compact(block)
    assert out == b'{"type":"tool_use","id":"i","name":"n","input":{"n":%s,"l":[%s]}}' % (
        written,
        written,
    )
    again = codec.loads(ToolUseBlock, out)
    assert codec.dumps_compact(again) == out


def test_wide_integer_read_from_a_document_is_rewritten_as_f64() -> None:
    raw = b'{"type":"tool_use","id":"i","name":"n","input":18446744073709551616}'
    block = codec.loads(ToolUseBlock, raw)
    assert codec.dumps_compact(block).endswith(b'"input":1.8446744073709552e19}')


def test_integer_beyond_f64_cannot_be_written() -> None:
    with pytest.raises(DocumentError, match="f64 range"):
        codec.dumps(ToolUseBlock(id="i", name="n", input=10**400))


# --- issue 14.8: duplicate keys and overflowing floats -----------------------------------


def test_duplicate_struct_field_is_refused() -> None:
    raw = (FIXTURES / "writer_lease.json").read_bytes().replace(b"{", b'{\n  "epoch": 9,', 1)
    with pytest.raises(DocumentError, match="duplicate field `epoch`"):
        codec.loads(WriterLease, raw, source="lease.json")


def test_duplicate_session_id_is_refused_with_its_path() -> None:
    raw = (FIXTURES / "session.json").read_bytes()
    doubled = raw.replace(b'"id": "sess-0001",', b'"id": "sess-0001",\n  "id": "other",', 1)
    assert doubled != raw
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, doubled, source="sessions/sess-0001.json")
    assert "duplicate field `id`" in str(info.value)
    assert "sessions/sess-0001.json" in str(info.value)


def test_duplicate_key_deep_in_a_run_is_refused() -> None:
    doc = json.loads((FIXTURES / "run_records.json").read_bytes())
    text = json.dumps(doc)
    doubled = text.replace('"type": "text_delta",', '"type": "text_delta", "text": "x",', 1)
    with pytest.raises(DocumentError) as info:
        codec.loads(list[RunRecord], doubled)
    assert "duplicate field `text`" in str(info.value)
    assert info.value.errors[0][0].startswith("0.events.")


def test_duplicate_event_tag_is_refused() -> None:
    raw = b'{"sequence":1,"timestamp_ms":2,"event":{"type":"text_delta","type":"error","text":"x"}}'
    with pytest.raises(DocumentError, match="duplicate field `type`"):
        codec.loads(RunEventRecord, raw)


def test_duplicate_keys_in_opaque_values_keep_the_last_value() -> None:
    # serde_json::Value (preserve_order): last value wins, at the key's first position.
    raw = b'{"type":"tool_use","id":"i","name":"n","input":{"a":1,"b":2,"a":3}}'
    block = codec.loads(ToolUseBlock, raw)
    assert block.input == {"a": 3, "b": 2}
    assert codec.dumps_compact(block).endswith(b'"input":{"a":3,"b":2}}')


def test_duplicate_unknown_keys_are_skipped_like_serde() -> None:
    raw = b'{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"x":1,"x":2}'
    usage = codec.loads(TokenUsage, raw)
    assert usage.__pydantic_extra__ == {"x": 2}


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400", b"1.5e309"])
def test_overflowing_float_is_refused(literal: bytes) -> None:
    raw = (FIXTURES / "session.json").read_bytes()
    bad = raw.replace(b'"total_cost": 0.00651', b'"total_cost": ' + literal)
    assert bad != raw
    with pytest.raises(DocumentError, match="out of range"):
        codec.loads(SessionData, bad)
    opaque = b'{"type":"tool_use","id":"i","name":"n","input":[' + literal + b"]}"
    with pytest.raises(DocumentError, match="out of range"):
        codec.loads(ToolUseBlock, opaque)


def test_non_finite_float_fields_are_refused_in_python() -> None:
    with pytest.raises(ValueError, match="finite"):
        AgentGoal(
            description="d",
            success_criteria=[],
            progress=float("inf"),
            achieved=False,
            created_at=0,
        )
    with pytest.raises(ValueError, match="less than"):
        AgentGoal(description="d", success_criteria=[], progress=1e39, achieved=False, created_at=0)
    session = codec.loads(SessionData, (FIXTURES / "session.json").read_bytes())
    session.total_cost = float("nan")  # assignment is not validated; the writer checks
    with pytest.raises(DocumentError, match="finite f64"):
        codec.dumps(session)
    session.total_cost = 0.5
    session.context_usage.percent = 1e39
    with pytest.raises(DocumentError, match="finite f32"):
        codec.dumps(session)


def test_float_fields_refuse_strings_and_booleans() -> None:
    for bad in (b'"0.5"', b"true"):
        raw = b'{"used_tokens":1,"max_tokens":2,"percent":%s,"turns":3}' % bad
        with pytest.raises(DocumentError):
            codec.loads(ContextUsage, raw)
