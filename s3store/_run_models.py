"""a3s-code's agent events, run records and the v1 snapshot that embeds them.

Part of :mod:`s3store.models` and reached through it (``s3store.models.RunRecord``): the
52 agent events and the models that embed them are defined on first use, not when the
models load, because a process that only saves and loads sessions never needs them and
defining them took about a third of the models' import time (``bench/cold_start.py``).
See :mod:`s3store.models` for the wire rules every model here follows.
"""

import enum
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag

from s3store.models import (
    ALWAYS_WRITTEN,
    F64,
    I32,
    I64,
    SKIP_EMPTY,
    SKIP_NONE,
    U32,
    U64,
    Bool,
    Float32,
    JsonValue,
    RunStatus,
    SessionData,
    SessionLane,
    Str,
    SubagentTaskSnapshot,
    Task,
    TaskStatus,
    TokenUsage,
    ToolArtifact,
    TraceEvent,
    VerificationReport,
    VerificationStatus,
    WireModel,
    _tagged,
)

# --- structs carried by agent events ----------------------------------------------------


# verification.rs @0473774: counts required, subject lists skipped when empty.
class VerificationSummary(WireModel):
    """Summary of a run's verification reports (``agent_end.verification_summary``)."""

    status: VerificationStatus
    report_count: U64
    required_check_count: U64
    pending_required_check_count: U64
    failed_check_count: U64
    residual_risk_count: U64
    pending_subjects: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    failed_subjects: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)


# llm/types.rs @4d238808: every field optional, skipped when absent.
class LlmResponseMeta(WireModel):
    """Provider details of the final LLM response (``agent_end.meta``)."""

    provider: Annotated[Str | None, SKIP_NONE] = None
    request_model: Annotated[Str | None, SKIP_NONE] = None
    request_url: Annotated[Str | None, SKIP_NONE] = None
    response_id: Annotated[Str | None, SKIP_NONE] = None
    response_model: Annotated[Str | None, SKIP_NONE] = None
    response_object: Annotated[Str | None, SKIP_NONE] = None
    first_token_ms: Annotated[U64 | None, SKIP_NONE] = None
    duration_ms: Annotated[U64 | None, SKIP_NONE] = None


class Complexity(enum.StrEnum):
    """Estimated complexity of an execution plan (Rust variant names)."""

    SIMPLE = "Simple"
    MEDIUM = "Medium"
    COMPLEX = "Complex"
    VERY_COMPLEX = "VeryComplex"


# planning/mod.rs @314addf7: no serde attributes; steps are planning Tasks.
class ExecutionPlan(WireModel):
    """A decomposed plan (``planning_end.plan``)."""

    goal: Str
    steps: list[Task]
    complexity: Complexity
    required_tools: list[Str]
    estimated_steps: U64


# planning/mod.rs @314addf7: `progress` is an f32, `achieved_at` a bare Option (always written).
class AgentGoal(WireModel):
    """A tracked goal (``goal_extracted.goal``); timestamps are Unix seconds."""

    description: Str
    success_criteria: list[Str]
    progress: Float32
    achieved: Bool
    created_at: I64
    achieved_at: Annotated[I64 | None, ALWAYS_WRITTEN] = None


# --- agent events (3.6; agent.rs @0473774, variants and order as upstream) ---------------


class AgentStartEvent(WireModel):
    """``agent_start``."""

    type: Literal["agent_start"] = "agent_start"
    prompt: Str


class AgentModeChangedEvent(WireModel):
    """``agent_mode_changed``."""

    type: Literal["agent_mode_changed"] = "agent_mode_changed"
    mode: Str
    agent: Str
    description: Str


class TurnStartEvent(WireModel):
    """``turn_start``."""

    type: Literal["turn_start"] = "turn_start"
    turn: U64


class TextDeltaEvent(WireModel):
    """``text_delta``."""

    type: Literal["text_delta"] = "text_delta"
    text: Str


class ReasoningDeltaEvent(WireModel):
    """``reasoning_delta``."""

    type: Literal["reasoning_delta"] = "reasoning_delta"
    text: Str


class ToolStartEvent(WireModel):
    """``tool_start``."""

    type: Literal["tool_start"] = "tool_start"
    id: Str
    name: Str


# agent.rs @0473774: `id` added before `delta` (default, skipped when absent).
class ToolInputDeltaEvent(WireModel):
    """``tool_input_delta`` (``id`` names the call when the provider interleaves calls)."""

    type: Literal["tool_input_delta"] = "tool_input_delta"
    id: Annotated[Str | None, SKIP_NONE] = None
    delta: Str


class ToolRequestBoundEvent(WireModel):
    """``tool_request_bound``; ``snapshot`` (ToolRequestSnapshotV1) is opaque."""

    type: Literal["tool_request_bound"] = "tool_request_bound"
    tool_id: Str
    tool_name: Str
    snapshot: JsonValue


class ToolExecutionStartEvent(WireModel):
    """``tool_execution_start``."""

    type: Literal["tool_execution_start"] = "tool_execution_start"
    id: Str
    name: Str
    args: JsonValue


# agent.rs @0473774: `args` added between `name` and `output` (default, skipped when absent).
class ToolEndEvent(WireModel):
    """``tool_end``; ``error_kind`` (ToolErrorKind) is opaque."""

    type: Literal["tool_end"] = "tool_end"
    id: Str
    name: Str
    args: Annotated[JsonValue | None, SKIP_NONE] = None
    output: Str
    exit_code: I32
    metadata: Annotated[JsonValue | None, SKIP_NONE] = None
    error_kind: Annotated[JsonValue | None, SKIP_NONE] = None


class ToolOutputDeltaEvent(WireModel):
    """``tool_output_delta``."""

    type: Literal["tool_output_delta"] = "tool_output_delta"
    id: Str
    name: Str
    delta: Str


class TurnEndEvent(WireModel):
    """``turn_end``."""

    type: Literal["turn_end"] = "turn_end"
    turn: U64
    usage: TokenUsage


# agent.rs @0473774: verification_summary and meta typed (were opaque).
class AgentEndEvent(WireModel):
    """``agent_end``."""

    type: Literal["agent_end"] = "agent_end"
    text: Str
    usage: TokenUsage
    verification_summary: VerificationSummary
    meta: Annotated[LlmResponseMeta | None, SKIP_NONE] = None


class ErrorEvent(WireModel):
    """``error``."""

    type: Literal["error"] = "error"
    message: Str


class ConfirmationRequiredEvent(WireModel):
    """``confirmation_required``."""

    type: Literal["confirmation_required"] = "confirmation_required"
    tool_id: Str
    tool_name: Str
    args: JsonValue
    timeout_ms: U64


class ConfirmationReceivedEvent(WireModel):
    """``confirmation_received``."""

    type: Literal["confirmation_received"] = "confirmation_received"
    tool_id: Str
    approved: Bool
    reason: Str | None = None


class ConfirmationTimeoutEvent(WireModel):
    """``confirmation_timeout``."""

    type: Literal["confirmation_timeout"] = "confirmation_timeout"
    tool_id: Str
    action_taken: Str


class UserQuestionEvent(WireModel):
    """``user_question``."""

    type: Literal["user_question"] = "user_question"
    question_id: Str
    question: Str
    options: list[Str]


class ExternalTaskPendingEvent(WireModel):
    """``external_task_pending``."""

    type: Literal["external_task_pending"] = "external_task_pending"
    task_id: Str
    session_id: Str
    lane: SessionLane
    command_type: Str
    payload: JsonValue
    timeout_ms: U64


class ExternalTaskCompletedEvent(WireModel):
    """``external_task_completed``."""

    type: Literal["external_task_completed"] = "external_task_completed"
    task_id: Str
    session_id: Str
    success: Bool


class PermissionDeniedEvent(WireModel):
    """``permission_denied``."""

    type: Literal["permission_denied"] = "permission_denied"
    tool_id: Str
    tool_name: Str
    args: JsonValue
    reason: Str


class ContextResolvingEvent(WireModel):
    """``context_resolving``."""

    type: Literal["context_resolving"] = "context_resolving"
    providers: list[Str]


class ContextResolvedEvent(WireModel):
    """``context_resolved``."""

    type: Literal["context_resolved"] = "context_resolved"
    total_items: U64
    total_tokens: U64


class RunCapabilityBoundEvent(WireModel):
    """``run_capability_bound``; ``snapshot`` (RunCapabilitySnapshotV1) is opaque."""

    type: Literal["run_capability_bound"] = "run_capability_bound"
    call_sequence: U64
    snapshot: JsonValue


class ModelPresentationBoundEvent(WireModel):
    """``model_presentation_bound``; ``snapshot`` is opaque."""

    type: Literal["model_presentation_bound"] = "model_presentation_bound"
    snapshot: JsonValue


class ModelInputBoundEvent(WireModel):
    """``model_input_bound``; ``snapshot`` is opaque."""

    type: Literal["model_input_bound"] = "model_input_bound"
    snapshot: JsonValue


class ModelUsageBoundEvent(WireModel):
    """``model_usage_bound``; ``snapshot`` is opaque."""

    type: Literal["model_usage_bound"] = "model_usage_bound"
    snapshot: JsonValue


class CognitiveContextBoundEvent(WireModel):
    """``cognitive_context_bound``; ``binding`` (CognitivePackageBindingV1) is opaque."""

    type: Literal["cognitive_context_bound"] = "cognitive_context_bound"
    binding: JsonValue


class CommandDeadLetteredEvent(WireModel):
    """``command_dead_lettered``."""

    type: Literal["command_dead_lettered"] = "command_dead_lettered"
    command_id: Str
    command_type: Str
    lane: Str
    error: Str
    attempts: U32


class CommandRetryEvent(WireModel):
    """``command_retry``."""

    type: Literal["command_retry"] = "command_retry"
    command_id: Str
    command_type: Str
    lane: Str
    attempt: U32
    delay_ms: U64


class QueueAlertEvent(WireModel):
    """``queue_alert``."""

    type: Literal["queue_alert"] = "queue_alert"
    level: Str
    alert_type: Str
    message: Str


class TaskUpdatedEvent(WireModel):
    """``task_updated``."""

    type: Literal["task_updated"] = "task_updated"
    session_id: Str
    tasks: list[Task]


class MemoryStoredEvent(WireModel):
    """``memory_stored`` (``importance`` is an f32)."""

    type: Literal["memory_stored"] = "memory_stored"
    memory_id: Str
    memory_type: Str
    importance: Float32
    tags: list[Str]


class MemoryRecalledEvent(WireModel):
    """``memory_recalled`` (``relevance`` is an f32)."""

    type: Literal["memory_recalled"] = "memory_recalled"
    memory_id: Str
    content: Str
    relevance: Float32


class MemoriesSearchedEvent(WireModel):
    """``memories_searched``."""

    type: Literal["memories_searched"] = "memories_searched"
    query: Str | None = None
    tags: list[Str]
    result_count: U64


class MemoryClearedEvent(WireModel):
    """``memory_cleared``."""

    type: Literal["memory_cleared"] = "memory_cleared"
    tier: Str
    count: U64


# agent.rs @0473774: `started_ms` added (serde default 0, always written).
class SubagentStartEvent(WireModel):
    """``subagent_start``."""

    type: Literal["subagent_start"] = "subagent_start"
    task_id: Str
    session_id: Str
    parent_session_id: Str
    agent: Str
    description: Str
    started_ms: U64 = 0


class SubagentProgressEvent(WireModel):
    """``subagent_progress``."""

    type: Literal["subagent_progress"] = "subagent_progress"
    task_id: Str
    session_id: Str
    status: Str
    metadata: JsonValue


# agent.rs @0473774: `finished_ms` added (serde default 0, always written).
class SubagentEndEvent(WireModel):
    """``subagent_end``."""

    type: Literal["subagent_end"] = "subagent_end"
    task_id: Str
    session_id: Str
    agent: Str
    output: Str
    success: Bool
    finished_ms: U64 = 0


class PlanningStartEvent(WireModel):
    """``planning_start``."""

    type: Literal["planning_start"] = "planning_start"
    prompt: Str


# agent.rs @0473774: `plan` typed as ExecutionPlan (was opaque).
class PlanningEndEvent(WireModel):
    """``planning_end``."""

    type: Literal["planning_end"] = "planning_end"
    plan: ExecutionPlan
    estimated_steps: U64


class StepStartEvent(WireModel):
    """``step_start``."""

    type: Literal["step_start"] = "step_start"
    step_id: Str
    description: Str
    step_number: U64
    total_steps: U64


class StepEndEvent(WireModel):
    """``step_end``."""

    type: Literal["step_end"] = "step_end"
    step_id: Str
    status: TaskStatus
    step_number: U64
    total_steps: U64


# agent.rs @0473774: `goal` typed as AgentGoal (was opaque, losing f32 `progress`).
class GoalExtractedEvent(WireModel):
    """``goal_extracted``."""

    type: Literal["goal_extracted"] = "goal_extracted"
    goal: AgentGoal


class GoalProgressEvent(WireModel):
    """``goal_progress`` (``progress`` is an f32)."""

    type: Literal["goal_progress"] = "goal_progress"
    goal: Str
    progress: Float32
    completed_steps: U64
    total_steps: U64


class GoalAchievedEvent(WireModel):
    """``goal_achieved``."""

    type: Literal["goal_achieved"] = "goal_achieved"
    goal: Str
    total_steps: U64
    duration_ms: I64


# agent.rs @0473774: `summary` added (default, skipped when absent).
class ContextCompactedEvent(WireModel):
    """``context_compacted`` (``percent_before`` is an f32)."""

    type: Literal["context_compacted"] = "context_compacted"
    session_id: Str
    before_messages: U64
    after_messages: U64
    percent_before: Float32
    summary: Annotated[Str | None, SKIP_NONE] = None


# agent.rs @0473774; `operation` (RunControlOperation) is kept as its string spelling.
class RunControlAppliedEvent(WireModel):
    """``run_control_applied`` (``turn_id`` is a bare Option: written as ``null``)."""

    type: Literal["run_control_applied"] = "run_control_applied"
    request_id: Str
    operation: Str
    turn_id: Annotated[Str | None, ALWAYS_WRITTEN] = None
    turn_revision: U64
    input: Annotated[Str | None, SKIP_NONE] = None
    reason: Annotated[Str | None, SKIP_NONE] = None


class PersistenceFailedEvent(WireModel):
    """``persistence_failed``."""

    type: Literal["persistence_failed"] = "persistence_failed"
    session_id: Str
    operation: Str
    error: Str


class BudgetThresholdHitEvent(WireModel):
    """``budget_threshold_hit`` (``consumed`` and ``limit`` are f64)."""

    type: Literal["budget_threshold_hit"] = "budget_threshold_hit"
    resource: Str
    kind: Str
    consumed: F64
    limit: F64
    message: Annotated[Str | None, SKIP_NONE] = None


class PassivationRequestedEvent(WireModel):
    """``passivation_requested``."""

    type: Literal["passivation_requested"] = "passivation_requested"
    reason: Str
    deadline_ms: Annotated[U64 | None, SKIP_NONE] = None


class PeerInvocationEvent(WireModel):
    """``peer_invocation``."""

    type: Literal["peer_invocation"] = "peer_invocation"
    from_session_id: Str
    from_tenant_id: Annotated[Str | None, SKIP_NONE] = None
    correlation_id: Annotated[Str | None, SKIP_NONE] = None


class RawAgentEvent(WireModel):
    """An agent event with a ``type`` this module does not know (kept and written as-is)."""

    type: Str


_AGENT_EVENT_CLASSES: tuple[type[WireModel], ...] = (
    AgentStartEvent,
    AgentModeChangedEvent,
    TurnStartEvent,
    TextDeltaEvent,
    ReasoningDeltaEvent,
    ToolStartEvent,
    ToolInputDeltaEvent,
    ToolRequestBoundEvent,
    ToolExecutionStartEvent,
    ToolEndEvent,
    ToolOutputDeltaEvent,
    TurnEndEvent,
    AgentEndEvent,
    ErrorEvent,
    ConfirmationRequiredEvent,
    ConfirmationReceivedEvent,
    ConfirmationTimeoutEvent,
    UserQuestionEvent,
    ExternalTaskPendingEvent,
    ExternalTaskCompletedEvent,
    PermissionDeniedEvent,
    ContextResolvingEvent,
    ContextResolvedEvent,
    RunCapabilityBoundEvent,
    ModelPresentationBoundEvent,
    ModelInputBoundEvent,
    ModelUsageBoundEvent,
    CognitiveContextBoundEvent,
    CommandDeadLetteredEvent,
    CommandRetryEvent,
    QueueAlertEvent,
    TaskUpdatedEvent,
    MemoryStoredEvent,
    MemoryRecalledEvent,
    MemoriesSearchedEvent,
    MemoryClearedEvent,
    SubagentStartEvent,
    SubagentProgressEvent,
    SubagentEndEvent,
    PlanningStartEvent,
    PlanningEndEvent,
    StepStartEvent,
    StepEndEvent,
    GoalExtractedEvent,
    GoalProgressEvent,
    GoalAchievedEvent,
    ContextCompactedEvent,
    RunControlAppliedEvent,
    PersistenceFailedEvent,
    BudgetThresholdHitEvent,
    PassivationRequestedEvent,
    PeerInvocationEvent,
)

#: Known ``AgentEvent`` tags → model class.
AGENT_EVENT_TYPES: dict[str, type[WireModel]] = {
    cls.model_fields["type"].default: cls for cls in _AGENT_EVENT_CLASSES
}

AgentEvent = Annotated[
    Annotated[AgentStartEvent, Tag("type=agent_start")]
    | Annotated[AgentModeChangedEvent, Tag("type=agent_mode_changed")]
    | Annotated[TurnStartEvent, Tag("type=turn_start")]
    | Annotated[TextDeltaEvent, Tag("type=text_delta")]
    | Annotated[ReasoningDeltaEvent, Tag("type=reasoning_delta")]
    | Annotated[ToolStartEvent, Tag("type=tool_start")]
    | Annotated[ToolInputDeltaEvent, Tag("type=tool_input_delta")]
    | Annotated[ToolRequestBoundEvent, Tag("type=tool_request_bound")]
    | Annotated[ToolExecutionStartEvent, Tag("type=tool_execution_start")]
    | Annotated[ToolEndEvent, Tag("type=tool_end")]
    | Annotated[ToolOutputDeltaEvent, Tag("type=tool_output_delta")]
    | Annotated[TurnEndEvent, Tag("type=turn_end")]
    | Annotated[AgentEndEvent, Tag("type=agent_end")]
    | Annotated[ErrorEvent, Tag("type=error")]
    | Annotated[ConfirmationRequiredEvent, Tag("type=confirmation_required")]
    | Annotated[ConfirmationReceivedEvent, Tag("type=confirmation_received")]
    | Annotated[ConfirmationTimeoutEvent, Tag("type=confirmation_timeout")]
    | Annotated[UserQuestionEvent, Tag("type=user_question")]
    | Annotated[ExternalTaskPendingEvent, Tag("type=external_task_pending")]
    | Annotated[ExternalTaskCompletedEvent, Tag("type=external_task_completed")]
    | Annotated[PermissionDeniedEvent, Tag("type=permission_denied")]
    | Annotated[ContextResolvingEvent, Tag("type=context_resolving")]
    | Annotated[ContextResolvedEvent, Tag("type=context_resolved")]
    | Annotated[RunCapabilityBoundEvent, Tag("type=run_capability_bound")]
    | Annotated[ModelPresentationBoundEvent, Tag("type=model_presentation_bound")]
    | Annotated[ModelInputBoundEvent, Tag("type=model_input_bound")]
    | Annotated[ModelUsageBoundEvent, Tag("type=model_usage_bound")]
    | Annotated[CognitiveContextBoundEvent, Tag("type=cognitive_context_bound")]
    | Annotated[CommandDeadLetteredEvent, Tag("type=command_dead_lettered")]
    | Annotated[CommandRetryEvent, Tag("type=command_retry")]
    | Annotated[QueueAlertEvent, Tag("type=queue_alert")]
    | Annotated[TaskUpdatedEvent, Tag("type=task_updated")]
    | Annotated[MemoryStoredEvent, Tag("type=memory_stored")]
    | Annotated[MemoryRecalledEvent, Tag("type=memory_recalled")]
    | Annotated[MemoriesSearchedEvent, Tag("type=memories_searched")]
    | Annotated[MemoryClearedEvent, Tag("type=memory_cleared")]
    | Annotated[SubagentStartEvent, Tag("type=subagent_start")]
    | Annotated[SubagentProgressEvent, Tag("type=subagent_progress")]
    | Annotated[SubagentEndEvent, Tag("type=subagent_end")]
    | Annotated[PlanningStartEvent, Tag("type=planning_start")]
    | Annotated[PlanningEndEvent, Tag("type=planning_end")]
    | Annotated[StepStartEvent, Tag("type=step_start")]
    | Annotated[StepEndEvent, Tag("type=step_end")]
    | Annotated[GoalExtractedEvent, Tag("type=goal_extracted")]
    | Annotated[GoalProgressEvent, Tag("type=goal_progress")]
    | Annotated[GoalAchievedEvent, Tag("type=goal_achieved")]
    | Annotated[ContextCompactedEvent, Tag("type=context_compacted")]
    | Annotated[RunControlAppliedEvent, Tag("type=run_control_applied")]
    | Annotated[PersistenceFailedEvent, Tag("type=persistence_failed")]
    | Annotated[BudgetThresholdHitEvent, Tag("type=budget_threshold_hit")]
    | Annotated[PassivationRequestedEvent, Tag("type=passivation_requested")]
    | Annotated[PeerInvocationEvent, Tag("type=peer_invocation")]
    | Annotated[RawAgentEvent, Tag("type=*")],
    Discriminator(_tagged(AGENT_EVENT_TYPES, RawAgentEvent)),
]
"""Tagged union (on ``"type"``) of agent events; unknown tags load as :class:`RawAgentEvent`."""


# --- runs (3.6) --------------------------------------------------------------------------


# run.rs (RunWorkspaceChangeSet, all fields required; newest stored version).
class RunWorkspaceChangeSet(WireModel):
    """Workspace diff evidence captured around one run."""

    base_tree: Str
    result_tree: Str
    patch_digest: Str
    patch_bytes: U64
    patch_base64: Str
    observed_at_ms: U64


class RunSnapshot(WireModel):
    """Summary state of one run."""

    id: Str
    session_id: Str
    status: RunStatus
    prompt: Str
    cognitive_package_binding: Annotated[JsonValue | None, SKIP_NONE] = None
    capability_binding: Annotated[JsonValue | None, SKIP_NONE] = None
    created_at_ms: U64
    updated_at_ms: U64
    result_text: Annotated[Str | None, SKIP_NONE] = None
    error: Annotated[Str | None, SKIP_NONE] = None
    event_count: U64
    workspace_change_set: Annotated[RunWorkspaceChangeSet | None, SKIP_NONE] = None


class RunEventRecord(WireModel):
    """One retained event of a run."""

    sequence: U64
    timestamp_ms: U64
    event: AgentEvent


class RunRecord(WireModel):
    """A run and its retained events."""

    snapshot: RunSnapshot
    events: list[RunEventRecord]


# --- snapshot (2.6) ----------------------------------------------------------------------


class SessionSnapshotV1(WireModel):
    """A session with every fragment, committed as one document (eras D–F)."""

    schema_version: U32
    session: SessionData
    artifacts: list[ToolArtifact] = Field(default_factory=list)
    retained_artifact_uris: list[Str] = Field(default_factory=list)
    trace_events: list[TraceEvent] = Field(default_factory=list)
    run_records: list[RunRecord] = Field(default_factory=list)
    verification_reports: list[VerificationReport] = Field(default_factory=list)
    subagent_tasks: list[SubagentTaskSnapshot] = Field(default_factory=list)
