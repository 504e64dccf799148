"""Model rules: field order, skip rules, eras, aliases, unknown tags, float kinds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from s3store import _run_models, codec, models
from s3store.errors import DocumentError as DocumentErrorType
from s3store.models import (
    ArtifactStore,
    AutoDelegationConfig,
    BudgetThresholdHitEvent,
    ContextCompactedEvent,
    ContextUsage,
    GoalProgressEvent,
    LlmConfigData,
    LoopCheckpoint,
    LoopConvergenceState,
    MemoryRecalledEvent,
    MemoryStoredEvent,
    Message,
    PermissionPolicy,
    RawAgentEvent,
    RawContentBlock,
    RunEventRecord,
    SessionConfig,
    SessionData,
    SessionLane,
    SessionQueueConfig,
    SessionSnapshotV1,
    SessionState,
    Task,
    TaskStatus,
    TextBlock,
    TokenUsage,
    ToolResultBlock,
    ToolResultTrustV1,
    ToolUseBlock,
    WireModel,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _keys(raw: bytes) -> list[str]:
    return list(json.loads(raw))


def _session() -> SessionData:
    return SessionData(
        id="s",
        config=SessionConfig(name="n", workspace="/w", max_context_length=10, auto_compact=False),
        state=SessionState.ACTIVE,
        messages=[Message(role="user", content=[TextBlock(text="hi")])],
        context_usage=ContextUsage(used_tokens=1, max_tokens=2, percent=0.5, turns=1),
        total_usage=TokenUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        tool_names=["bash"],
        thinking_enabled=False,
        created_at=1,
        updated_at=2,
    )


def test_all_is_complete() -> None:
    public = {
        name
        for module in (models, _run_models)
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and isinstance(value, type)
    }
    assert public <= set(models.__all__)
    for name in models.__all__:
        assert hasattr(models, name), name


def test_run_models_are_defined_on_first_use_only() -> None:
    # A fresh interpreter: this process has long since loaded them.
    script = (
        "import sys, gc, s3store\n"
        "s3store.S3SessionStore, s3store.AsyncS3SessionStore, s3store.SessionData\n"
        "assert 's3store._run_models' not in sys.modules, 'loaded by the stores'\n"
        "assert gc.isenabled(), 'collector left paused'\n"
        "from s3store.models import RunRecord, AgentEvent, SessionSnapshotV1\n"
        "from s3store import RunRecord as Again\n"
        "assert Again is RunRecord and 's3store._run_models' in sys.modules\n"
        "assert gc.isenabled()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_python_built_session_writes_newest_shape() -> None:
    out = codec.dumps(_session())
    doc = json.loads(out)
    assert list(doc) == [
        "id",
        "config",
        "state",
        "messages",
        "context_usage",
        "total_usage",
        "total_cost",
        "cost_records",
        "tool_names",
        "thinking_enabled",
        "thinking_budget",
        "created_at",
        "updated_at",
        "tasks",
    ]
    assert list(doc["config"]) == [
        "name",
        "workspace",
        "system_prompt",
        "max_context_length",
        "auto_compact",
        "auto_compact_threshold",
        "storage_type",
        "planning_mode",
        "goal_tracking",
        "tool_presentation_profile",
        "tool_result_transform_policy",
    ]
    assert doc["config"]["tool_presentation_profile"] == {
        "schema": "a3s.code.tool-presentation-profile.v1",
        "mode": "adaptive",
    }
    assert doc["total_usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
    }
    assert b'"total_cost": 0.0,' in out
    assert b'"auto_compact_threshold": 0.8,' in out
    assert b'"thinking_budget": null,' in out


def test_session_fixture_equals_python_built_equivalent() -> None:
    loaded = codec.loads(SessionData, _fixture("session.json"))
    rebuilt = SessionData.model_validate(json.loads(_fixture("session.json")))
    assert loaded == rebuilt
    assert codec.dumps(rebuilt) == _fixture("session.json")


def test_python_built_checkpoint_writes_convergence() -> None:
    cp = LoopCheckpoint(
        run_id="r",
        session_id="s",
        turn=0,
        messages=[],
        total_usage=TokenUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        tool_calls_count=0,
        checkpoint_ms=1,
    )
    assert _keys(codec.dumps(cp)) == [
        "schema_version",
        "run_id",
        "session_id",
        "turn",
        "messages",
        "total_usage",
        "tool_calls_count",
        "verification_reports",
        "convergence",
        "checkpoint_ms",
    ]


def test_legacy_checkpoint_gains_no_convergence() -> None:
    raw = _fixture("loop_checkpoint_legacy.json")
    cp = codec.loads(LoopCheckpoint, raw)
    assert cp.convergence == LoopConvergenceState()
    assert codec.dumps(cp) == raw
    assert "convergence" not in _keys(codec.dumps(cp))


def test_legacy_checkpoint_writes_modified_convergence() -> None:
    cp = codec.loads(LoopCheckpoint, _fixture("loop_checkpoint_legacy.json"))
    cp.convergence.parse_error_count = 2  # mutated in place: not in model_fields_set
    keys = _keys(codec.dumps(cp))
    assert keys.index("convergence") == keys.index("verification_reports") + 1
    cp2 = codec.loads(LoopCheckpoint, _fixture("loop_checkpoint_legacy.json"))
    cp2.convergence = LoopConvergenceState()  # assigned, even if equal to the default
    assert "convergence" in _keys(codec.dumps(cp2))
    modern = codec.loads(LoopCheckpoint, _fixture("loop_checkpoint.json"))
    assert codec.dumps(cp2) == codec.dumps(modern)


def test_legacy_artifact_manifest_gains_no_retained_uris() -> None:
    raw = _fixture("artifacts_legacy_8bf60f34.json")
    store = codec.loads(ArtifactStore, raw)
    assert store.retained_uris == []
    assert codec.dumps(store) == raw
    store.retained_uris.append("a3s://x")
    assert json.loads(codec.dumps(store))["retained_uris"] == ["a3s://x"]


def test_pre_snapshot_session_stays_in_its_era() -> None:
    doc = json.loads(_fixture("session.json"))
    for key in ("total_cost", "cost_records", "thinking_budget", "tasks"):
        del doc[key]
    del doc["config"]["tool_presentation_profile"]
    del doc["config"]["tool_result_transform_policy"]
    del doc["total_usage"]["cache_read_tokens"]
    raw = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    session = codec.loads(SessionData, raw)
    assert session.total_cost == 0.0
    assert session.config.tool_result_transform_policy.max_output_bytes == 102400
    assert codec.dumps(session) == raw
    session.total_cost = 1.5
    assert b'"total_cost": 1.5,' in codec.dumps(session)


def test_snapshot_without_retained_artifact_uris() -> None:
    doc = json.loads(_fixture("session_snapshot_v1.json"))
    del doc["retained_artifact_uris"]
    raw = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    assert codec.dumps(codec.loads(SessionSnapshotV1, raw)) == raw


def test_api_key_is_read_but_never_written() -> None:
    doc = json.loads(_fixture("session.json"))
    doc["llm_config"]["api_key"] = "sk-secret"
    session = codec.loads(SessionData, json.dumps(doc))
    assert session.llm_config is not None
    assert session.llm_config.api_key == "sk-secret"
    assert b"sk-secret" not in codec.dumps(session)
    assert b"api_key" not in codec.dumps_compact(session)
    built = LlmConfigData(provider="p", model="m", api_key="sk-2")
    assert codec.dumps(built) == b'{\n  "provider": "p",\n  "model": "m",\n  "base_url": null\n}'
    assert "sk-2" not in repr(built)


def test_input_aliases() -> None:
    doc = json.loads(_fixture("session.json"))
    doc["todos"] = [{"id": "1", "description": "Inspect src/", "status": "completed"}]
    del doc["tasks"]
    session = codec.loads(SessionData, json.dumps(doc))
    assert session.tasks == [Task(id="1", content="Inspect src/", status=TaskStatus.COMPLETED)]
    out = json.loads(codec.dumps(session))
    # Key renamed as serde does; "priority" was absent in this (older) task, so it stays absent.
    assert out["tasks"] == [{"id": "1", "content": "Inspect src/", "status": "completed"}]
    assert "todos" not in out


def test_auto_delegation_aliases_and_camel_case() -> None:
    cfg = codec.loads(
        AutoDelegationConfig,
        b'{"enabled": true, "auto_parallel": false, "allow_manual_delegation": false}',
    )
    assert (cfg.auto_parallel, cfg.allow_manual_delegation) == (False, False)
    assert codec.dumps_compact(AutoDelegationConfig()) == (
        b'{"enabled":false,"autoParallel":true,"allowManualDelegation":true,'
        b'"minConfidence":0.72,"maxTasks":4}'
    )


def test_permission_rule_from_plain_string() -> None:
    policy = codec.loads(PermissionPolicy, b'{"allow": ["Bash(ls:*)", {"rule": "Read"}]}')
    assert [r.rule for r in policy.allow] == ["Bash(ls:*)", "Read"]
    assert json.loads(codec.dumps(policy))["allow"] == [{"rule": "Bash(ls:*)"}, {"rule": "Read"}]


def test_queue_config_maps_and_nulls() -> None:
    raw = (
        b'{"laneHandlers": {"Execute": {"mode": "External", "timeout_ms": 5}},'
        b' "laneTimeouts": {"Query": 7}, "retryPolicy": {"strategy": "fixed"}}'
    )
    cfg = codec.loads(SessionQueueConfig, raw)
    assert cfg.lane_handlers[SessionLane.EXECUTE].timeout_ms == 5
    built = SessionQueueConfig.model_validate(json.loads(raw))
    assert json.loads(codec.dumps(built)) == {
        "controlMaxConcurrency": 4,
        "queryMaxConcurrency": 12,
        "executeMaxConcurrency": 4,
        "generateMaxConcurrency": 2,
        "laneHandlers": {"Execute": {"mode": "External", "timeout_ms": 5}},
        "enableDlq": False,
        "dlqMaxSize": None,
        "enableMetrics": False,
        "enableAlerts": False,
        "defaultTimeoutMs": None,
        "storagePath": None,
        "retryPolicy": {
            "strategy": "fixed",
            "maxRetries": 3,
            "initialDelayMs": 100,
            "fixedDelayMs": None,
        },
        "rateLimit": None,
        "priorityBoost": None,
        "pressureThreshold": None,
        "laneTimeouts": {"Query": 7},
    }


def test_tool_result_skip_rules() -> None:
    block = ToolResultBlock(tool_use_id="t", content="x")
    assert codec.dumps_compact(block) == (
        b'{"type":"tool_result","tool_use_id":"t","content":"x","is_error":null}'
    )
    block.trust = ToolResultTrustV1.EXTERNAL
    block.redaction_reviewed = True
    assert codec.dumps_compact(block).endswith(b'"trust":"external","redaction_reviewed":true}')


def test_unknown_content_block_round_trips() -> None:
    raw = b'{"role":"assistant","content":[{"data":"x","type":"thinking","signature":"s"}]}'
    msg = codec.loads(Message, raw)
    block = msg.content[0]
    assert isinstance(block, RawContentBlock)
    assert block.type == "thinking"
    assert codec.dumps_compact(msg) == raw


def test_unknown_agent_event_round_trips() -> None:
    raw = b'{"sequence":1,"timestamp_ms":2,"event":{"type":"future_event_kind","id":"x"}}'
    record = codec.loads(RunEventRecord, raw)
    assert isinstance(record.event, RawAgentEvent)
    assert codec.dumps_compact(record) == raw


def test_known_tag_instances_dispatch_in_python() -> None:
    msg = Message(role="assistant", content=[ToolUseBlock(id="1", name="n", input={"b": 1})])
    assert isinstance(msg.content[0], ToolUseBlock)
    msg2 = Message.model_validate(
        {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "new", "x": 1}]}
    )
    assert isinstance(msg2.content[0], TextBlock)
    assert isinstance(msg2.content[1], RawContentBlock)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            MemoryStoredEvent(memory_id="m", memory_type="t", importance=1 / 3, tags=[]),
            b'"importance":0.33333334',
        ),
        (
            MemoryRecalledEvent(memory_id="m", content="c", relevance=0.1 + 0.2),
            b'"relevance":0.3}',
        ),
        (
            GoalProgressEvent(goal="g", progress=2 / 3, completed_steps=1, total_steps=3),
            b'"progress":0.6666667',
        ),
        (
            ContextCompactedEvent(
                session_id="s", before_messages=1, after_messages=1, percent_before=1e-6
            ),
            b'"percent_before":0.000001}',
        ),
        (
            BudgetThresholdHitEvent(resource="r", kind="soft", consumed=1 / 3, limit=1e-6),
            b'"consumed":0.3333333333333333,"limit":1e-6}',
        ),
    ],
    ids=["importance", "relevance", "progress", "percent_before", "consumed_limit"],
)
def test_event_float_kinds(event: WireModel, expected: bytes) -> None:
    assert expected in codec.dumps_compact(event)


def test_context_usage_percent_is_f32() -> None:
    usage = ContextUsage(used_tokens=1234, max_tokens=200000, percent=1234 / 200000, turns=2)
    assert b'"percent":0.00617' in codec.dumps_compact(usage)
    usage.percent = 1 / 7
    assert b'"percent":0.14285715' in codec.dumps_compact(usage)


def test_wire_meta_is_not_part_of_equality() -> None:
    raw = _fixture("loop_checkpoint_legacy.json")
    loaded = codec.loads(LoopCheckpoint, raw)
    assert loaded.wire_meta() is not None
    built = LoopCheckpoint.model_validate(json.loads(raw))
    assert built.wire_meta() is None
    assert loaded == built
    assert loaded.model_copy(deep=True) == loaded
    assert codec.dumps(loaded.model_copy(deep=True)) == raw


def test_required_fields_follow_serde() -> None:
    with pytest.raises(DocumentErrorType):
        codec.loads(TokenUsage, b'{"prompt_tokens": 1, "completion_tokens": 2}')
    usage = codec.loads(
        TokenUsage, b'{"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}'
    )
    assert usage.cache_read_tokens is None


@pytest.mark.parametrize(
    "bad",
    ['"1"', "1.0", "true", "-1", str(2**64)],
    ids=["string", "float", "bool", "negative", "overflow"],
)
def test_integers_are_strict(bad: str) -> None:
    raw = f'{{"prompt_tokens": {bad}, "completion_tokens": 2, "total_tokens": 3}}'
    with pytest.raises(DocumentErrorType) as info:
        codec.loads(TokenUsage, raw)
    assert info.value.errors[0][0] == "prompt_tokens"


def test_enum_spellings() -> None:
    assert [s.value for s in SessionState] == ["Unknown", "Active", "Paused", "Completed", "Error"]
    with pytest.raises(DocumentErrorType):
        codec.loads(Task, b'{"id": "1", "content": "c", "status": "Pending"}')


def _all_models() -> list[Any]:
    # Through __all__: the run models are defined on first access, so vars() lacks them.
    everything = [getattr(models, name) for name in models.__all__]
    return [
        value
        for value in everything
        if isinstance(value, type) and issubclass(value, WireModel) and value is not WireModel
    ]


@pytest.mark.parametrize("cls", _all_models(), ids=lambda c: c.__name__)
def test_every_model_has_a_docstring_and_allows_extras(cls: type[WireModel]) -> None:
    assert cls.__doc__
    assert cls.model_config.get("extra") == "allow"


# --- SessionData.new ---------------------------------------------------------------------


def test_new_session_has_every_required_field_and_round_trips() -> None:
    before = int(time.time())
    session = SessionData.new("sess-new", workspace="/repo", system_prompt="Be brief.")
    after = int(time.time())
    raw = codec.dumps(session)
    doc = json.loads(raw)
    required = [name for name, info in SessionData.model_fields.items() if info.is_required()]
    assert required
    assert all(name in doc for name in required)
    # What Session::new starts with (core/src/session/mod.rs).
    assert doc["state"] == "Active"
    assert doc["messages"] == []
    assert doc["tool_names"] == []
    assert doc["tasks"] == []
    assert doc["context_usage"] == {
        "used_tokens": 0,
        "max_tokens": 200000,
        "percent": 0.0,
        "turns": 0,
    }
    assert doc["config"]["workspace"] == "/repo"
    assert doc["config"]["system_prompt"] == "Be brief."
    assert doc["config"]["max_context_length"] == 0
    # Unix seconds, an integer, as Rust's `as_secs() as i64`.
    assert type(doc["created_at"]) is int
    assert before <= doc["created_at"] == doc["updated_at"] <= after
    loaded = codec.loads(SessionData, raw)
    assert loaded == session
    assert codec.dumps(loaded) == raw


def test_new_session_applies_overrides() -> None:
    config = SessionConfig(name="n", workspace="/w", max_context_length=8, auto_compact=True)
    session = SessionData.new(
        "sess-o",
        config=config,
        state="Paused",
        model_name="m",
        thinking_enabled=True,
        created_at=5,
        todos=[{"id": "1", "content": "c", "status": "pending"}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    )
    assert session.config == config
    assert session.state is SessionState.PAUSED
    assert session.model_name == "m"
    assert session.thinking_enabled is True
    assert session.created_at == 5
    assert session.updated_at >= 5
    assert session.tasks[0].status is TaskStatus.PENDING
    assert isinstance(session.messages[0].content[0], TextBlock)
    assert not session.model_extra
    assert codec.loads(SessionData, codec.dumps(session)) == session


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"state": "Bogus"}, "state"),
        ({"created_at": "now"}, "created_at"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"modle_name": "typo"}, "modle_name"),
    ],
    ids=["enum", "integer", "nested", "unknown-field"],
)
def test_new_session_refuses_a_bad_override(override: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as info:
        SessionData.new("sess-bad", **override)
    assert ".".join(str(p) for p in info.value.errors()[0]["loc"]) == path


def test_new_session_refuses_config_with_shortcuts() -> None:
    config = SessionConfig(name="n", workspace="/w", max_context_length=8, auto_compact=True)
    with pytest.raises(TypeError):
        SessionData.new("s", config=config, workspace="/other")


# --- era fields and forward references -----------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (SessionData, "immutable_content_adapter_binding"),
        (LoopConvergenceState, "open_observations"),
        (models.RunSnapshot, "workspace_change_set"),
    ],
)
def test_skip_rule_behind_forward_reference_is_not_an_era_field(
    cls: type[WireModel], field: str
) -> None:
    # The field's type is a model defined later in models.py; its skip rule must still count.
    era, _ = cls._s3_shape()
    assert field not in era


def test_loaded_session_records_no_absent_skip_field() -> None:
    doc = json.loads(_fixture("session.json"))
    doc["future_key"] = 1  # unknown key: the shape-recording path
    session = codec.loads(SessionData, json.dumps(doc, indent=2, ensure_ascii=False))
    meta = session.wire_meta()
    assert meta is not None
    assert "immutable_content_adapter_binding" not in (meta.absent or frozenset())
