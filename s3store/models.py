"""Pydantic v2 models of the a3s-code session-store documents (wire-compatible with Rust serde).

Every model mirrors one Rust struct of ``a3s-code-core`` (see ``WIRE_FORMAT.md`` sections 3
and 5): fields are declared in Rust struct order, which is the order ``s3store.codec`` writes
them in. Write them with :func:`s3store.codec.dumps` and read them with
:func:`s3store.codec.loads`; ``model_dump`` / ``model_dump_json`` do not know the serde rules.

Per-field serde rules are declared as ``Annotated`` metadata and applied by the codec:

* :data:`SKIP_NONE` (``skip_serializing_if = "Option::is_none"``), :data:`SKIP_EMPTY`
  (``Vec::is_empty``), :data:`SKIP_FALSE`, :data:`SKIP_DEFAULT` (skipped while equal to the
  default) and :data:`NEVER_WRITTEN` (``api_key``). A field without a rule is always written; a
  non-skipped ``None`` is written as ``null``. :data:`ALWAYS_WRITTEN` marks a bare Rust
  ``Option`` that is written as ``null`` even when the document read lacked it (no era).
* :data:`F32` marks Rust ``f32`` fields (rounded to f32 and printed with f32-shortest digits);
  every other float is an ``f64``.

Compatibility rules:

* **Old documents load.** Fields added after the first era have defaults (serde ``default``, or
  ``None`` for an ``Option``, which serde treats as ``None`` when missing). A missing field
  without a default is an error, as in serde.
* **New documents round-trip.** Unknown keys are kept (``extra="allow"``). When a document is
  read through :func:`s3store.codec.loads` and a model carries unknown keys, the input key
  order is recorded, and on output each unknown key is written right after the known key
  that preceded it in the input (keys before any known key go first). A document with unknown
  keys at any nesting level therefore round-trips byte for byte.
* **Era preservation.** A field that has a default and is always written (no skip rule), but
  was *absent* from the document read by :func:`s3store.codec.loads`, stays absent on output
  as long as it still equals its default and was not assigned. So a legacy loop checkpoint
  without ``convergence`` or an artifact manifest without ``retained_uris`` is written back
  in its own era's shape. Models built in Python (constructor, ``model_validate`` without the
  wire context) have no such record and are written in the newest shape, every always-written
  field present.
* **Unknown union tags load.** A content block, tool-result content item or ``AgentEvent``
  whose ``type`` this module does not know becomes a raw variant (:class:`RawContentBlock`,
  :class:`RawToolResultContent`, :class:`RawAgentEvent`) holding every key as-is, and is
  written back unchanged.
* ``LlmConfigData.api_key`` is accepted on input and never written. Input aliases: ``todos``
  for ``SessionData.tasks``, ``description`` for ``Task.content``, ``auto_parallel`` /
  ``allow_manual_delegation`` in :class:`AutoDelegationConfig`; a :class:`PermissionRule`
  may be a bare string and is written as ``{"rule": ...}``.
* Opaque parts (``tool_use.input``, metadata, details, args, payload, bindings,
  ``security_config``, structs whose serde attributes were not researched) are plain JSON
  values (dict/list/str/int/float/bool/None) and keep their key order.
* Rust ``DateTime<Utc>`` fields (``LlmCostRecord.timestamp``) are :data:`Timestamp`: text
  validated as chrono validates it and held in the form chrono writes (UTC, ``Z``, 0/3/6/9
  fractional digits, up to nanoseconds, which ``datetime`` cannot hold); a ``datetime`` is
  accepted on input.
* Floats are checked as serde checks them: finite, a JSON number (an integer is accepted),
  and for :data:`Float32` within the f32 range.
* A Rust ``HashSet`` (``ConfirmationPolicy.yolo_lanes``) collapses duplicates; a struct with
  no serde default on a field (``ToolResultTransformPolicyV1``) gets none here either.
* A JSON object that repeats one of a model's fields is refused (serde: "duplicate field");
  a repeated key of an opaque value keeps the last value, as ``serde_json::Value`` does.
* Struct shapes follow upstream A3S-Lab/Code; each model that changed after the first port
  names its upstream file and commit in a comment.
"""

# No ``from __future__ import annotations``, and every model is defined before the models
# that use it: pydantic would compile each annotation string at class creation, and a class
# with an unresolved forward reference is rebuilt (its whole schema generated) on first use.

import datetime
import enum
import gc
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AliasChoices,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo

from s3store._gc import GcPaused

# Defining the classes below allocates enough to set off collections that free nothing
# (s3store/_gc.py; bench/cold_start.py). Not a ``with`` block: it would indent the module.
# Resumed at the end of the module; an exception in between is a bug that fails every import.
_resume_gc = gc.isenabled()
gc.disable()

# --- serde rule markers ------------------------------------------------------------------


class WireRule(enum.Enum):
    """A serde serialisation rule attached to a field as ``Annotated`` metadata."""

    SKIP_NONE = "skip_serializing_if = Option::is_none"
    SKIP_EMPTY = "skip_serializing_if = Vec::is_empty (or map is_empty)"
    SKIP_FALSE = "skip_serializing_if = is_false"
    SKIP_DEFAULT = "skipped while equal to the field default"
    NEVER_WRITTEN = "skip_serializing"
    ALWAYS_WRITTEN = "written even when absent from the document read (a bare Option -> null)"
    F32 = "Rust f32: rounded to f32 and printed with f32-shortest digits"


SKIP_NONE = WireRule.SKIP_NONE
SKIP_EMPTY = WireRule.SKIP_EMPTY
SKIP_FALSE = WireRule.SKIP_FALSE
SKIP_DEFAULT = WireRule.SKIP_DEFAULT
NEVER_WRITTEN = WireRule.NEVER_WRITTEN
ALWAYS_WRITTEN = WireRule.ALWAYS_WRITTEN
F32 = WireRule.F32

#: Validation context that marks a document as read from the wire; ``codec.loads`` passes it.
WIRE_CONTEXT: dict[str, bool] = {"s3store_wire": True}
_WIRE_KEY = "s3store_wire"

# Rust integer widths. Strict: serde accepts neither "1" nor 1.0 nor true for an integer.
U64 = Annotated[int, Strict(), Field(ge=0, le=2**64 - 1)]
U32 = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]
I64 = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
I32 = Annotated[int, Strict(), Field(ge=-(2**31), le=2**31 - 1)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
# serde reads a JSON integer into a float field but never a string or a bool; a non-finite
# value would be written as null, which serde then refuses to read back.
F64 = Annotated[float, Strict(), AllowInfNan(False)]
# Beyond this bound a double rounds to an infinite f32 (the largest f32 plus half an ulp).
_F32_OVERFLOW = 3.4028235677973366e38
Float32 = Annotated[
    float, Strict(), AllowInfNan(False), Field(gt=-_F32_OVERFLOW, lt=_F32_OVERFLOW), F32
]
"""A Rust ``f32`` field: finite, within the f32 range, written with f32-shortest digits."""
JsonValue = Any
"""An opaque JSON value: dict (key order kept), list, str, int, float, bool or None."""


# --- chrono DateTime<Utc> ----------------------------------------------------------------

# chrono's relaxed RFC 3339 reader: "T", "t" or a space between date and time, optional
# fraction, "Z"/"z" or a numeric offset.
_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))",
    re.ASCII,
)


def format_timestamp(value: datetime.datetime, nanos: int | None = None) -> str:
    """The text chrono writes for a ``DateTime<Utc>`` (RFC 3339, ``Z``, 0/3/6/9 digits).

    ``value`` must be timezone-aware; ``nanos`` overrides its fractional second (``datetime``
    keeps only microseconds, chrono nanoseconds).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a naive datetime has no time zone; give it one (e.g. timezone.utc)")
    utc = value.astimezone(datetime.UTC)
    if nanos is None:
        nanos = utc.microsecond * 1000
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = f".{nanos // 1_000_000:03d}"
    elif nanos % 1000 == 0:
        fraction = f".{nanos // 1000:06d}"
    else:
        fraction = f".{nanos:09d}"
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}{fraction}Z"
    )


def parse_timestamp(text: str) -> datetime.datetime:
    """Parse a ``DateTime<Utc>`` as chrono does; the result is UTC (microsecond precision)."""
    return datetime.datetime.fromisoformat(_canonical_timestamp(text).replace("Z", "+00:00"))


@lru_cache(maxsize=1024)
def _canonical_timestamp(text: str) -> str:
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if second == "60":
        # chrono reads a leap second, which datetime cannot hold; Rust never writes one.
        raise ValueError(f"leap-second timestamps are not supported: {text!r}")
    # chrono reads at most nanoseconds; further digits are ignored.
    nanos = int(((fraction or "") + "000000000")[:9])
    offset = datetime.timedelta()
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"invalid UTC offset in timestamp {text!r}")
        offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    try:
        moment = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=datetime.timezone(offset),
        )
        return format_timestamp(moment, nanos)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid timestamp {text!r}: {exc}") from None


def _timestamp(value: Any) -> str:
    if type(value) is str:
        return _canonical_timestamp(value)
    if isinstance(value, datetime.datetime):
        return format_timestamp(value)
    raise ValueError("a timestamp must be an RFC 3339 string or an aware datetime")


Timestamp = Annotated[str, PlainValidator(_timestamp, json_schema_input_type=str)]
"""A chrono ``DateTime<Utc>``: held as the text chrono writes for it.

Accepts an RFC 3339 string (any offset, ``T`` or space, any fraction) or an aware
``datetime``; stores the UTC form with ``Z`` and 0, 3, 6 or 9 fractional digits, exactly what
Rust writes back, so a value read from Rust keeps its text. Invalid text is rejected, as serde
rejects it.
"""


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that repeated a key (last value kept, first position, as serde_json's Map).

    Only :mod:`s3store.codec` builds these; a wire model refuses one, as serde refuses a
    duplicate struct field, while an opaque value keeps it like ``serde_json::Value``.
    """

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]], duplicates: list[str]) -> None:
        super().__init__(pairs)
        self.duplicates = duplicates


class WireMeta:
    """What the codec needs to re-emit a document in the shape it was read in.

    ``absent``: always-written defaulted fields missing from the input document.
    ``anchors``: unknown key → the known field it followed in the input (``None``: first).
    """

    __slots__ = ("absent", "anchors")

    def __init__(
        self, absent: frozenset[str] | None, anchors: dict[str | None, list[str]] | None
    ) -> None:
        self.absent = absent
        self.anchors = anchors

    def __repr__(self) -> str:
        return f"WireMeta(absent={self.absent!r}, anchors={self.anchors!r})"


def field_rules(info: FieldInfo) -> frozenset[WireRule]:
    """The :class:`WireRule` markers of a field."""
    return frozenset(m for m in info.metadata if isinstance(m, WireRule))


def wire_key(name: str, info: FieldInfo) -> str:
    """The JSON key a field is written under."""
    return info.serialization_alias or info.alias or name


def _input_keys(name: str, info: FieldInfo) -> list[str]:
    keys = [name]
    if info.alias:
        keys.append(info.alias)
    va = info.validation_alias
    if isinstance(va, str):
        keys.append(va)
    elif isinstance(va, AliasChoices):
        keys.extend(c for c in va.choices if isinstance(c, str))
    return keys


# Per wire model class: (era fields, input key -> field name); see WireModel._s3_shape.
_WireShape = tuple[tuple[str, ...], dict[str, str]]
_SHAPES: dict[type, _WireShape] = {}


class WireModel(BaseModel):
    """Base of every wire model: keeps unknown keys and records how a document was shaped."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        protected_namespaces=(),
        # Extras must be JSON values; an arbitrary object could not be written anyway.
        arbitrary_types_allowed=False,
        # Build validators on first use: a cold start pays only for the models it touches.
        defer_build=True,
    )

    @classmethod
    def _s3_shape(cls) -> _WireShape:
        """The class's era fields and input keys, computed once its fields are final.

        Not at class creation: a field annotated with a model defined further down the module
        (``Annotated[Later | None, SKIP_NONE]``) has no metadata until the forward reference
        resolves, so its skip rule would be missed and it would count as an era field.
        """
        shape = _SHAPES.get(cls)
        if shape is not None:
            return shape
        if not cls.__pydantic_fields_complete__:
            cls.model_rebuild()
        era: list[str] = []
        input_keys: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            if not info.is_required() and not field_rules(info):
                era.append(name)
            for key in _input_keys(name, info):
                input_keys[key] = name
        shape = (tuple(era), input_keys)
        _SHAPES[cls] = shape
        return shape

    @model_validator(mode="wrap")
    @classmethod
    def _s3_record_wire_shape(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if type(data) is _DuplicateKeys:
            # serde refuses a repeated field but skips repeated unknown keys unread.
            known = (_SHAPES.get(cls) or cls._s3_shape())[1]
            repeated = [name for name in data.duplicates if name in known]
            if repeated:
                names = ", ".join(f"`{name}`" for name in repeated)
                raise ValueError(f"duplicate field {names}")
            data = dict(data)
        inst = handler(data)
        if type(data) is not dict:
            return inst
        context = info.context
        if context is None or not context.get(_WIRE_KEY):
            return inst
        absent: frozenset[str] | None = None
        era, known = _SHAPES.get(cls) or cls._s3_shape()
        if era:
            fields_set = inst.__pydantic_fields_set__
            missing = [name for name in era if name not in fields_set]
            if missing:
                absent = frozenset(missing)
        extra = inst.__pydantic_extra__
        anchors: dict[str | None, list[str]] | None = None
        if extra:
            anchors = {}
            previous: str | None = None
            for key in data:
                field = known.get(key)
                if field is not None:
                    previous = field
                elif key in extra:
                    anchors.setdefault(previous, []).append(key)
        if absent is not None or anchors is not None:
            # Kept in the (undeclared) private slot, only for the few instances that need it:
            # a declared PrivateAttr would cost a per-instance init on every model loaded.
            object.__setattr__(
                inst, "__pydantic_private__", {"_s3_wire": WireMeta(absent, anchors)}
            )
        return inst

    def wire_meta(self) -> WireMeta | None:
        """The recorded input shape (``None`` for models built in Python)."""
        private = self.__pydantic_private__
        if private is None:
            return None
        meta = private.get("_s3_wire")
        return meta if isinstance(meta, WireMeta) else None

    def __eq__(self, other: object) -> bool:
        # Compare values only: the recorded input shape (kept in __pydantic_private__) is not
        # part of a model's value.
        if not isinstance(other, BaseModel):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.__dict__ == other.__dict__
            and (self.__pydantic_extra__ or {}) == (other.__pydantic_extra__ or {})
        )


def _tagged(known: dict[str, type[WireModel]], raw: type[WireModel]) -> Callable[[Any], str]:
    """A pydantic discriminator: ``type=<tag>`` for a known tag, ``type=*`` (raw) otherwise."""
    class_tags = {cls: f"type={tag}" for tag, cls in known.items()}

    def discriminate(value: Any) -> str:
        if isinstance(value, dict):
            tag = value.get("type")
            if type(tag) is str and tag in known:
                return "type=" + tag
            return "type=*"
        if isinstance(value, WireModel):
            return class_tags.get(type(value), "type=*")
        return "type=*"

    return discriminate


# --- enums (section 5.8 spellings) -------------------------------------------------------


class SessionState(enum.StrEnum):
    """Session lifecycle state (Rust variant names)."""

    UNKNOWN = "Unknown"
    ACTIVE = "Active"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    ERROR = "Error"


class StorageBackend(enum.StrEnum):
    """Where a session is stored (lowercase)."""

    MEMORY = "memory"
    FILE = "file"
    CUSTOM = "custom"


class PlanningMode(enum.StrEnum):
    """Planning mode (Rust variant names)."""

    AUTO = "Auto"
    DISABLED = "Disabled"
    ENABLED = "Enabled"


class TaskStatus(enum.StrEnum):
    """Status of a planning task (snake_case)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class TaskPriority(enum.StrEnum):
    """Priority of a planning task (snake_case)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ToolResultTrustV1(enum.StrEnum):
    """Trust level of a tool result (snake_case)."""

    TRUSTED = "trusted"
    WORKSPACE_DATA = "workspace_data"
    EXTERNAL = "external"


class TranscriptVisibility(enum.StrEnum):
    """Visibility of a message's transcript text (snake_case)."""

    PRODUCT = "product"
    WIRE = "wire"


class PermissionDecision(enum.StrEnum):
    """Outcome of a permission rule (snake_case)."""

    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"


class TimeoutAction(enum.StrEnum):
    """What a confirmation timeout does (Rust variant names)."""

    REJECT = "Reject"
    AUTO_APPROVE = "AutoApprove"


class SessionLane(enum.StrEnum):
    """Queue lane (Rust variant names)."""

    CONTROL = "Control"
    QUERY = "Query"
    EXECUTE = "Execute"
    GENERATE = "Generate"


class TaskHandlerMode(enum.StrEnum):
    """How a lane's tasks are handled (Rust variant names)."""

    INTERNAL = "Internal"
    EXTERNAL = "External"
    HYBRID = "Hybrid"


class ToolPresentationMode(enum.StrEnum):
    """Tool presentation mode (snake_case)."""

    ADAPTIVE = "adaptive"
    DIRECT = "direct"
    CODE = "code"
    DISABLED = "disabled"


class RunStatus(enum.StrEnum):
    """Status of a run (snake_case)."""

    CREATED = "created"
    PLANNING = "planning"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class VerificationStatus(enum.StrEnum):
    """Status of a verification check or report (snake_case)."""

    PASSED = "passed"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"
    SKIPPED = "skipped"


class SubagentStatus(enum.StrEnum):
    """Status of a subagent task (snake_case)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TraceEventKind(enum.StrEnum):
    """Kind of a trace event (snake_case)."""

    TOOL_EXECUTION = "tool_execution"
    PROGRAM_EXECUTION = "program_execution"


# --- usage, cost, tasks, llm config (3.3) ------------------------------------------------


class ContextUsage(WireModel):
    """Context-window usage of a session."""

    used_tokens: U64
    max_tokens: U64
    percent: Float32
    turns: U64


class TokenUsage(WireModel):
    """Token counts of one LLM call or a whole session."""

    prompt_tokens: U64
    completion_tokens: U64
    total_tokens: U64
    cache_read_tokens: U64 | None = None
    cache_write_tokens: U64 | None = None


# telemetry.rs: `timestamp` is a chrono DateTime<Utc> (typed since s3store issue 16).
class LlmCostRecord(WireModel):
    """Cost of one LLM call; ``timestamp`` is a :data:`Timestamp` (chrono's RFC 3339 text)."""

    model: Str
    provider: Str
    prompt_tokens: U64
    completion_tokens: U64
    total_tokens: U64
    cost_usd: F64 | None = None
    timestamp: Timestamp
    session_id: Str | None = None


class Task(WireModel):
    """A planning task (``todos`` entry); ``description`` is accepted for ``content``."""

    id: Str
    content: Str = Field(validation_alias=AliasChoices("content", "description"))
    status: TaskStatus
    priority: TaskPriority = TaskPriority.MEDIUM
    tool: Annotated[Str | None, SKIP_NONE] = None
    dependencies: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    success_criteria: Annotated[Str | None, SKIP_NONE] = None


class LlmConfigData(WireModel):
    """LLM settings of a session; ``api_key`` is read but never written."""

    provider: Str
    model: Str
    api_key: Annotated[Str | None, NEVER_WRITTEN] = Field(default=None, repr=False)
    base_url: Str | None = None


# --- messages (3.4) ----------------------------------------------------------------------


class ImageSource(WireModel):
    """Inline image data of an image block."""

    type: Str
    media_type: Str
    data: Str


class TextBlock(WireModel):
    """``{"type": "text"}`` content block."""

    type: Literal["text"] = "text"
    text: Str


class ImageBlock(WireModel):
    """``{"type": "image"}`` content block."""

    type: Literal["image"] = "image"
    source: ImageSource


class ToolUseBlock(WireModel):
    """``{"type": "tool_use"}`` content block; ``input`` is an opaque JSON value."""

    type: Literal["tool_use"] = "tool_use"
    id: Str
    name: Str
    input: JsonValue


class ToolResultTextContent(WireModel):
    """``{"type": "text"}`` item of a tool result's content array."""

    type: Literal["text"] = "text"
    text: Str


class ToolResultImageContent(WireModel):
    """``{"type": "image"}`` item of a tool result's content array."""

    type: Literal["image"] = "image"
    source: ImageSource


class RawToolResultContent(WireModel):
    """A tool result content item with a ``type`` this module does not know (kept as-is)."""

    type: Str


ToolResultContent = Annotated[
    Annotated[ToolResultTextContent, Tag("type=text")]
    | Annotated[ToolResultImageContent, Tag("type=image")]
    | Annotated[RawToolResultContent, Tag("type=*")],
    Discriminator(
        _tagged(
            {"text": ToolResultTextContent, "image": ToolResultImageContent}, RawToolResultContent
        )
    ),
]
"""Tagged union of tool-result content items."""

ToolResultContentField = Str | list[ToolResultContent]
"""Untagged: a plain string or an array of :data:`ToolResultContent`."""


class ToolResultBlock(WireModel):
    """``{"type": "tool_result"}`` content block."""

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: Str
    content: ToolResultContentField
    is_error: Bool | None = None
    trust: Annotated[ToolResultTrustV1, SKIP_DEFAULT] = ToolResultTrustV1.WORKSPACE_DATA
    redaction_reviewed: Annotated[Bool, SKIP_FALSE] = False


class RawContentBlock(WireModel):
    """A content block with a ``type`` this module does not know (kept and written as-is)."""

    type: Str


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("type=text")]
    | Annotated[ImageBlock, Tag("type=image")]
    | Annotated[ToolUseBlock, Tag("type=tool_use")]
    | Annotated[ToolResultBlock, Tag("type=tool_result")]
    | Annotated[RawContentBlock, Tag("type=*")],
    Discriminator(
        _tagged(
            {
                "text": TextBlock,
                "image": ImageBlock,
                "tool_use": ToolUseBlock,
                "tool_result": ToolResultBlock,
            },
            RawContentBlock,
        )
    ),
]
"""Tagged union (on ``"type"``) of message content blocks."""


class Message(WireModel):
    """One conversation message."""

    role: Str
    content: list[ContentBlock]
    reasoning_content: Annotated[Str | None, SKIP_NONE] = None
    transcript_text: Annotated[Str | None, SKIP_NONE] = None
    transcript_visibility: Annotated[TranscriptVisibility, SKIP_DEFAULT] = (
        TranscriptVisibility.PRODUCT
    )


# --- policy objects inside SessionConfig (3.7) -------------------------------------------


class LaneHandlerConfig(WireModel):
    """Handler of one queue lane (snake_case keys, unlike its camelCase parent)."""

    mode: TaskHandlerMode
    timeout_ms: U64


class RetryPolicyConfig(WireModel):
    """Queue retry policy (camelCase)."""

    strategy: Str
    max_retries: U32 = Field(default=3, alias="maxRetries")
    initial_delay_ms: U64 = Field(default=100, alias="initialDelayMs")
    fixed_delay_ms: U64 | None = Field(default=None, alias="fixedDelayMs")


class RateLimitConfig(WireModel):
    """Queue rate limit (camelCase)."""

    limit_type: Str = Field(alias="limitType")
    max_operations: U64 | None = Field(default=None, alias="maxOperations")


class PriorityBoostConfig(WireModel):
    """Queue priority boost (camelCase)."""

    strategy: Str
    deadline_ms: U64 | None = Field(default=None, alias="deadlineMs")


class SessionQueueConfig(WireModel):
    """Per-session command queue settings (camelCase; options written as ``null``).

    The two maps are Rust ``HashMap``s, so their key order on the wire is arbitrary; it is
    kept as read.
    """

    control_max_concurrency: U64 = Field(default=4, alias="controlMaxConcurrency")
    query_max_concurrency: U64 = Field(default=12, alias="queryMaxConcurrency")
    execute_max_concurrency: U64 = Field(default=4, alias="executeMaxConcurrency")
    generate_max_concurrency: U64 = Field(default=2, alias="generateMaxConcurrency")
    lane_handlers: dict[SessionLane, LaneHandlerConfig] = Field(
        default_factory=dict, alias="laneHandlers"
    )
    enable_dlq: Bool = Field(default=False, alias="enableDlq")
    dlq_max_size: U64 | None = Field(default=None, alias="dlqMaxSize")
    enable_metrics: Bool = Field(default=False, alias="enableMetrics")
    enable_alerts: Bool = Field(default=False, alias="enableAlerts")
    default_timeout_ms: U64 | None = Field(default=None, alias="defaultTimeoutMs")
    storage_path: Str | None = Field(default=None, alias="storagePath")
    retry_policy: RetryPolicyConfig | None = Field(default=None, alias="retryPolicy")
    rate_limit: RateLimitConfig | None = Field(default=None, alias="rateLimit")
    priority_boost: PriorityBoostConfig | None = Field(default=None, alias="priorityBoost")
    pressure_threshold: U64 | None = Field(default=None, alias="pressureThreshold")
    lane_timeouts: dict[SessionLane, U64] = Field(default_factory=dict, alias="laneTimeouts")


def _distinct(values: list[Any]) -> list[Any]:
    # A Rust HashSet: equal members collapse. Its wire order is arbitrary; the first
    # occurrence's position is kept.
    return values if len(set(values)) == len(values) else list(dict.fromkeys(values))


# hitl.rs @0473774: `yolo_lanes` is a HashSet<SessionLane>.
class ConfirmationPolicy(WireModel):
    """Human-in-the-loop confirmation policy (all fields required; ``yolo_lanes`` is a set)."""

    enabled: Bool
    default_timeout_ms: U64
    timeout_action: TimeoutAction
    yolo_lanes: Annotated[list[SessionLane], AfterValidator(_distinct)]


class PermissionRule(WireModel):
    """A permission pattern; read from ``"pattern"`` or ``{"rule": "pattern"}``."""

    rule: Str

    @model_validator(mode="before")
    @classmethod
    def _from_plain_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"rule": data}
        return data


class PermissionPolicy(WireModel):
    """Allow/deny/ask permission rules."""

    deny: list[PermissionRule] = Field(default_factory=list)
    allow: list[PermissionRule] = Field(default_factory=list)
    ask: list[PermissionRule] = Field(default_factory=list)
    default_decision: PermissionDecision = PermissionDecision.ASK
    enabled: Bool = True


class AutoDelegationConfig(WireModel):
    """Automatic child-agent delegation (camelCase; snake_case aliases accepted on input)."""

    enabled: Bool = False
    auto_parallel: Bool = Field(
        default=True,
        alias="autoParallel",
        validation_alias=AliasChoices("autoParallel", "auto_parallel"),
    )
    allow_manual_delegation: Bool = Field(
        default=True,
        alias="allowManualDelegation",
        validation_alias=AliasChoices("allowManualDelegation", "allow_manual_delegation"),
    )
    min_confidence: Float32 = Field(default=0.72, alias="minConfidence")
    max_tasks: U64 = Field(default=4, alias="maxTasks")


# tools/presentation.rs @0473774: no field has a serde default (only the struct, where
# SessionConfig holds it), so a partial object is refused as serde refuses it.
class ToolPresentationProfileV1(WireModel):
    """How tools are presented to the model (``a3s.code.tool-presentation-profile.v1``)."""

    SCHEMA: ClassVar[str] = "a3s.code.tool-presentation-profile.v1"

    schema_: Str = Field(alias="schema")
    mode: ToolPresentationMode

    @classmethod
    def adaptive(cls) -> Self:
        """The default profile (Rust ``ToolPresentationProfileV1::default()``)."""
        return cls(schema_=cls.SCHEMA, mode=ToolPresentationMode.ADAPTIVE)


# tools/transform.rs @0473774: every field required (deny_unknown_fields, no field default).
class ToolResultTransformPolicyV1(WireModel):
    """How large tool results are folded; :meth:`conservative` is the Rust default."""

    SCHEMA: ClassVar[str] = "a3s.code.tool-result-transform-policy.v1"

    schema_: Str = Field(alias="schema")
    max_output_bytes: U64
    head_bytes: U64
    tail_bytes: U64
    fold_repeated_lines: Bool
    repeated_line_threshold: U64
    structured_sample_items: U64

    @classmethod
    def conservative(cls) -> Self:
        """The default policy (Rust ``ToolResultTransformPolicyV1::conservative()``)."""
        return cls(
            schema_=cls.SCHEMA,
            max_output_bytes=102400,
            head_bytes=102400,
            tail_bytes=0,
            fold_repeated_lines=False,
            repeated_line_threshold=3,
            structured_sample_items=0,
        )


# --- session (3.1, 3.2) ------------------------------------------------------------------


class SessionConfig(WireModel):
    """Configuration of a session."""

    name: Str
    workspace: Str
    system_prompt: Str | None = None
    max_context_length: U32
    auto_compact: Bool
    auto_compact_threshold: Float32 = 0.8
    storage_type: StorageBackend = StorageBackend.FILE
    queue_config: Annotated[SessionQueueConfig | None, SKIP_NONE] = None
    confirmation_policy: Annotated[ConfirmationPolicy | None, SKIP_NONE] = None
    permission_policy: Annotated[PermissionPolicy | None, SKIP_NONE] = None
    enforce_active_skill_tool_restrictions: Annotated[Bool, SKIP_FALSE] = False
    max_parallel_tasks: Annotated[U64 | None, SKIP_NONE] = None
    auto_delegation: Annotated[AutoDelegationConfig | None, SKIP_NONE] = None
    parent_id: Annotated[Str | None, SKIP_NONE] = None
    security_config: Annotated[JsonValue | None, SKIP_NONE] = None
    planning_mode: PlanningMode = PlanningMode.AUTO
    goal_tracking: Bool = False
    tool_presentation_profile: ToolPresentationProfileV1 = Field(
        default_factory=ToolPresentationProfileV1.adaptive
    )
    tool_result_transform_policy: ToolResultTransformPolicyV1 = Field(
        default_factory=ToolResultTransformPolicyV1.conservative
    )


# immutable_content.rs (deny_unknown_fields, all required; read at the search index's
# newest stored version).
class ImmutableContentAdapterBindingV1(WireModel):
    """Identity of the host's immutable-content authority bound to a session."""

    schema_: Str = Field(alias="schema")
    authority_digest: Str
    maximum_bytes: U64
    binding_digest: Str


class SessionData(WireModel):
    """A whole session: the bare session document of every store era."""

    id: Str
    config: SessionConfig
    state: SessionState
    messages: list[Message]
    context_usage: ContextUsage
    total_usage: TokenUsage
    total_cost: F64 = 0.0
    model_name: Annotated[Str | None, SKIP_NONE] = None
    cost_records: list[LlmCostRecord] = Field(default_factory=list)
    tool_names: list[Str]
    thinking_enabled: Bool
    thinking_budget: U64 | None = None
    created_at: I64
    updated_at: I64
    llm_config: Annotated[LlmConfigData | None, SKIP_NONE] = None
    tasks: list[Task] = Field(default_factory=list, validation_alias=AliasChoices("tasks", "todos"))
    parent_id: Annotated[Str | None, SKIP_NONE] = None
    tenant_id: Annotated[Str | None, SKIP_NONE] = None
    principal: Annotated[Str | None, SKIP_NONE] = None
    agent_template_id: Annotated[Str | None, SKIP_NONE] = None
    correlation_id: Annotated[Str | None, SKIP_NONE] = None
    durable_memory_binding: Annotated[JsonValue | None, SKIP_NONE] = None
    cognitive_package_binding: Annotated[JsonValue | None, SKIP_NONE] = None
    immutable_content_adapter_binding: Annotated[
        ImmutableContentAdapterBindingV1 | None, SKIP_NONE
    ] = None

    @classmethod
    def new(
        cls,
        id: str,
        *,
        name: str = "",
        workspace: str = "",
        system_prompt: str | None = None,
        **fields: Any,
    ) -> Self:
        """A fresh session, as a3s-code's ``Session::new`` creates it, validated.

        Every required field gets the value Rust starts a session with: state ``Active``, no
        messages, tools or tasks, zero usage and cost, ``ContextUsage::default()`` (200,000
        max tokens), thinking off, and ``created_at`` = ``updated_at`` = now in Unix seconds
        (Rust's ``as_secs() as i64``). The config is ``SessionConfig::default()`` with
        ``name``, ``workspace`` and ``system_prompt`` filled in.

        ``fields`` overrides any top-level field by name (``config=...``, ``messages=[...]``,
        ``model_name="..."``, ...); values may be models or plain JSON-like dicts. A
        ``config`` override replaces the whole config, so it cannot be combined with
        ``name``/``workspace``/``system_prompt``.

        Raises:
            pydantic.ValidationError: an override is not valid for its field, or names no
                field of :class:`SessionData`.
            TypeError: ``config`` given together with a config shortcut.

        Example::

            session = SessionData.new("sess-1", workspace="/repo", model_name="gpt-5")
            codec.dumps(session)  # what a3s-code writes for that fresh session
        """
        if "config" in fields and (name or workspace or system_prompt is not None):
            raise TypeError("give either config= or name/workspace/system_prompt, not both")
        known = cls._s3_shape()[1]
        unknown = [key for key in fields if key not in known]
        if unknown:
            # extra="allow" would keep a misspelt override as an unknown key and write it.
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    {"type": "extra_forbidden", "loc": (key,), "input": fields[key]}
                    for key in unknown
                ],
            )
        now = int(time.time())
        data: dict[str, Any] = {
            "id": id,
            "config": {
                "name": name,
                "workspace": workspace,
                "system_prompt": system_prompt,
                "max_context_length": 0,
                "auto_compact": False,
            },
            "state": SessionState.ACTIVE,
            "messages": [],
            "context_usage": {
                "used_tokens": 0,
                "max_tokens": 200_000,
                "percent": 0.0,
                "turns": 0,
            },
            "total_usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "tool_names": [],
            "thinking_enabled": False,
            "created_at": now,
            "updated_at": now,
        }
        data.update(fields)
        return cls.model_validate(data)


# --- artifacts (3.9) ---------------------------------------------------------------------


class ToolArtifact(WireModel):
    """A stored tool output."""

    artifact_id: Str
    artifact_uri: Str
    tool_name: Str
    content: Str
    original_bytes: U64
    shown_bytes: U64


class ArtifactStore(WireModel):
    """The artifact manifest ``artifacts.json`` (``retained_uris`` sorted; absent in 8bf60f34)."""

    artifacts: list[ToolArtifact]
    retained_uris: list[Str] = Field(default_factory=list)


# --- traces, verification (3.6) ----------------------------------------------------------


class TraceEvent(WireModel):
    """One tool or program execution trace (``a3s.trace_event.v1``)."""

    schema_: Str = Field(alias="schema")
    kind: TraceEventKind
    name: Str
    success: Bool
    exit_code: I32
    duration_ms: U64
    output_bytes: U64
    metadata_keys: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    artifact_uris: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    details: Annotated[JsonValue | None, SKIP_NONE] = None


class VerificationCheck(WireModel):
    """One check of a verification report."""

    id: Str
    kind: Str
    description: Str
    status: VerificationStatus
    required: Bool = False
    suggested_tools: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    evidence_uris: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    residual_risk: Annotated[Str | None, SKIP_NONE] = None


class VerificationReport(WireModel):
    """A verification report (``a3s.verification_report.v1``)."""

    schema_: Str = Field(alias="schema")
    subject: Str
    status: VerificationStatus
    checks: list[VerificationCheck]
    residual_risks: Annotated[list[Str], SKIP_EMPTY] = Field(default_factory=list)
    effect_digest: Annotated[Str | None, SKIP_NONE] = None


# --- subagents (3.6) ---------------------------------------------------------------------


class SubagentProgressEntry(WireModel):
    """One progress line of a subagent task."""

    timestamp_ms: U64
    status: Str
    metadata: JsonValue


class ToolSourceAnchor(WireModel):
    """A source location observed by a child tool call (newest versions only)."""

    tool: Str
    url_or_path: Str


class SubagentTaskSnapshot(WireModel):
    """State of one delegated subagent task."""

    task_id: Str
    parent_session_id: Str
    child_session_id: Str
    agent: Str
    description: Str
    status: SubagentStatus
    started_ms: U64
    updated_ms: U64
    finished_ms: Annotated[U64 | None, SKIP_NONE] = None
    output: Annotated[Str | None, SKIP_NONE] = None
    success: Annotated[Bool | None, SKIP_NONE] = None
    progress: list[SubagentProgressEntry]
    # Serde attributes and position not confirmed upstream (WIRE_FORMAT open question 3).
    source_anchors: Annotated[list[ToolSourceAnchor], SKIP_EMPTY] = Field(default_factory=list)


# --- agent events, runs: s3store/_run_models.py, defined on first use ----------------

# --- checkpoints (3.5) -------------------------------------------------------------------


class RequiredAction(enum.StrEnum):
    """What an external observation asks of the run (snake_case)."""

    NONE = "none"
    WORKSPACE_CHANGE = "workspace_change"
    ADDRESS = "address"


# external_observation.rs @0473774: no serde attributes; `source_revision` is a bare Option,
# so Rust always writes it (null when absent).
class ExternalObservationV1(WireModel):
    """A typed external observation bound into a run (``a3s.code.external-observation.v1``)."""

    schema_: Str = Field(alias="schema")
    kind: Str
    subject: Str
    digest: Str
    payload: Str
    source_revision: Annotated[Str | None, ALWAYS_WRITTEN] = None
    required_action: RequiredAction


class LoopConvergenceState(WireModel):
    """Loop-convergence guard state of a checkpoint (every field defaulted)."""

    parse_error_count: U32 = 0
    continuation_count: U32 = 0
    reasoning_only_repair_count: U32 = 0
    recent_tool_signatures: list[Str] = Field(default_factory=list)
    guarded_duplicate_signature: Annotated[Str | None, SKIP_NONE] = None
    guarded_duplicate_count: U32 = 0
    last_incomplete_response_hash: Annotated[Str | None, SKIP_NONE] = None
    incomplete_response_stalled: Bool = False
    gate_continuation_count: Annotated[U32, SKIP_DEFAULT] = 0
    # MutationLedger: opaque; Rust skips it at its default, so a present value is written.
    mutations: Annotated[JsonValue | None, SKIP_NONE] = None
    open_observations: Annotated[list[ExternalObservationV1], SKIP_EMPTY] = Field(
        default_factory=list
    )
    verifier_spent: Annotated[Bool, SKIP_FALSE] = False
    next_turn_is_verifier: Annotated[Bool, SKIP_FALSE] = False
    workspace_watch_bound: Annotated[Bool, SKIP_FALSE] = False
    workspace_porcelain: Annotated[list[Str] | None, SKIP_NONE] = None
    workspace_head: Annotated[Str | None, SKIP_NONE] = None
    workspace_stamps: Annotated[list[JsonValue], SKIP_EMPTY] = Field(default_factory=list)


class LoopCheckpoint(WireModel):
    """Resumable state of an agent loop run (one document per run id)."""

    schema_version: U32 = 0
    run_id: Str
    session_id: Str
    capability_binding: Annotated[JsonValue | None, SKIP_NONE] = None
    turn: U64
    messages: list[Message]
    total_usage: TokenUsage
    tool_calls_count: U64
    verification_reports: list[VerificationReport] = Field(default_factory=list)
    convergence: LoopConvergenceState = Field(default_factory=LoopConvergenceState)
    checkpoint_ms: U64


class WorkflowStepCheckpoint(WireModel):
    """One finished step of a workflow; ``outcome`` (StepOutcome) is opaque."""

    task_id: Str
    outcome: JsonValue
    result_receipt: Annotated[JsonValue | None, SKIP_NONE] = None


class WorkflowCheckpoint(WireModel):
    """Resumable state of a workflow (one document per workflow id)."""

    schema_version: U32 = 0
    workflow_id: Str
    steps: list[WorkflowStepCheckpoint]
    checkpoint_ms: U64


# --- snapshot, lease (2.6) ---------------------------------------------------------------


class WriterLease(WireModel):
    """The writer lease ``writer_lease.json`` (camelCase)."""

    schema_: Str = Field(alias="schema")
    epoch: U64
    holder_id: Str = Field(alias="holderId")
    acquired_at_ms: U64 = Field(alias="acquiredAtMs")


# Defined by s3store/_run_models.py on first use (see there); mypy sees them here.
_RUN_MODEL_NAMES = frozenset(
    {
        "AGENT_EVENT_TYPES",
        "AgentEndEvent",
        "AgentEvent",
        "AgentGoal",
        "AgentModeChangedEvent",
        "AgentStartEvent",
        "BudgetThresholdHitEvent",
        "CognitiveContextBoundEvent",
        "CommandDeadLetteredEvent",
        "CommandRetryEvent",
        "Complexity",
        "ConfirmationReceivedEvent",
        "ConfirmationRequiredEvent",
        "ConfirmationTimeoutEvent",
        "ContextCompactedEvent",
        "ContextResolvedEvent",
        "ContextResolvingEvent",
        "ErrorEvent",
        "ExecutionPlan",
        "ExternalTaskCompletedEvent",
        "ExternalTaskPendingEvent",
        "GoalAchievedEvent",
        "GoalExtractedEvent",
        "GoalProgressEvent",
        "LlmResponseMeta",
        "MemoriesSearchedEvent",
        "MemoryClearedEvent",
        "MemoryRecalledEvent",
        "MemoryStoredEvent",
        "ModelInputBoundEvent",
        "ModelPresentationBoundEvent",
        "ModelUsageBoundEvent",
        "PassivationRequestedEvent",
        "PeerInvocationEvent",
        "PermissionDeniedEvent",
        "PersistenceFailedEvent",
        "PlanningEndEvent",
        "PlanningStartEvent",
        "QueueAlertEvent",
        "RawAgentEvent",
        "ReasoningDeltaEvent",
        "RunCapabilityBoundEvent",
        "RunControlAppliedEvent",
        "RunEventRecord",
        "RunRecord",
        "RunSnapshot",
        "RunWorkspaceChangeSet",
        "SessionSnapshotV1",
        "StepEndEvent",
        "StepStartEvent",
        "SubagentEndEvent",
        "SubagentProgressEvent",
        "SubagentStartEvent",
        "TaskUpdatedEvent",
        "TextDeltaEvent",
        "ToolEndEvent",
        "ToolExecutionStartEvent",
        "ToolInputDeltaEvent",
        "ToolOutputDeltaEvent",
        "ToolRequestBoundEvent",
        "ToolStartEvent",
        "TurnEndEvent",
        "TurnStartEvent",
        "UserQuestionEvent",
        "VerificationSummary",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _RUN_MODEL_NAMES:
        raise AttributeError(f"module 's3store.models' has no attribute {name!r}")
    with GcPaused():
        from s3store import _run_models

    value = getattr(_run_models, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_RUN_MODEL_NAMES])


if TYPE_CHECKING:
    from s3store._run_models import (
        AGENT_EVENT_TYPES as AGENT_EVENT_TYPES,
    )
    from s3store._run_models import (
        AgentEndEvent as AgentEndEvent,
    )
    from s3store._run_models import (
        AgentEvent as AgentEvent,
    )
    from s3store._run_models import (
        AgentGoal as AgentGoal,
    )
    from s3store._run_models import (
        AgentModeChangedEvent as AgentModeChangedEvent,
    )
    from s3store._run_models import (
        AgentStartEvent as AgentStartEvent,
    )
    from s3store._run_models import (
        BudgetThresholdHitEvent as BudgetThresholdHitEvent,
    )
    from s3store._run_models import (
        CognitiveContextBoundEvent as CognitiveContextBoundEvent,
    )
    from s3store._run_models import (
        CommandDeadLetteredEvent as CommandDeadLetteredEvent,
    )
    from s3store._run_models import (
        CommandRetryEvent as CommandRetryEvent,
    )
    from s3store._run_models import (
        Complexity as Complexity,
    )
    from s3store._run_models import (
        ConfirmationReceivedEvent as ConfirmationReceivedEvent,
    )
    from s3store._run_models import (
        ConfirmationRequiredEvent as ConfirmationRequiredEvent,
    )
    from s3store._run_models import (
        ConfirmationTimeoutEvent as ConfirmationTimeoutEvent,
    )
    from s3store._run_models import (
        ContextCompactedEvent as ContextCompactedEvent,
    )
    from s3store._run_models import (
        ContextResolvedEvent as ContextResolvedEvent,
    )
    from s3store._run_models import (
        ContextResolvingEvent as ContextResolvingEvent,
    )
    from s3store._run_models import (
        ErrorEvent as ErrorEvent,
    )
    from s3store._run_models import (
        ExecutionPlan as ExecutionPlan,
    )
    from s3store._run_models import (
        ExternalTaskCompletedEvent as ExternalTaskCompletedEvent,
    )
    from s3store._run_models import (
        ExternalTaskPendingEvent as ExternalTaskPendingEvent,
    )
    from s3store._run_models import (
        GoalAchievedEvent as GoalAchievedEvent,
    )
    from s3store._run_models import (
        GoalExtractedEvent as GoalExtractedEvent,
    )
    from s3store._run_models import (
        GoalProgressEvent as GoalProgressEvent,
    )
    from s3store._run_models import (
        LlmResponseMeta as LlmResponseMeta,
    )
    from s3store._run_models import (
        MemoriesSearchedEvent as MemoriesSearchedEvent,
    )
    from s3store._run_models import (
        MemoryClearedEvent as MemoryClearedEvent,
    )
    from s3store._run_models import (
        MemoryRecalledEvent as MemoryRecalledEvent,
    )
    from s3store._run_models import (
        MemoryStoredEvent as MemoryStoredEvent,
    )
    from s3store._run_models import (
        ModelInputBoundEvent as ModelInputBoundEvent,
    )
    from s3store._run_models import (
        ModelPresentationBoundEvent as ModelPresentationBoundEvent,
    )
    from s3store._run_models import (
        ModelUsageBoundEvent as ModelUsageBoundEvent,
    )
    from s3store._run_models import (
        PassivationRequestedEvent as PassivationRequestedEvent,
    )
    from s3store._run_models import (
        PeerInvocationEvent as PeerInvocationEvent,
    )
    from s3store._run_models import (
        PermissionDeniedEvent as PermissionDeniedEvent,
    )
    from s3store._run_models import (
        PersistenceFailedEvent as PersistenceFailedEvent,
    )
    from s3store._run_models import (
        PlanningEndEvent as PlanningEndEvent,
    )
    from s3store._run_models import (
        PlanningStartEvent as PlanningStartEvent,
    )
    from s3store._run_models import (
        QueueAlertEvent as QueueAlertEvent,
    )
    from s3store._run_models import (
        RawAgentEvent as RawAgentEvent,
    )
    from s3store._run_models import (
        ReasoningDeltaEvent as ReasoningDeltaEvent,
    )
    from s3store._run_models import (
        RunCapabilityBoundEvent as RunCapabilityBoundEvent,
    )
    from s3store._run_models import (
        RunControlAppliedEvent as RunControlAppliedEvent,
    )
    from s3store._run_models import (
        RunEventRecord as RunEventRecord,
    )
    from s3store._run_models import (
        RunRecord as RunRecord,
    )
    from s3store._run_models import (
        RunSnapshot as RunSnapshot,
    )
    from s3store._run_models import (
        RunWorkspaceChangeSet as RunWorkspaceChangeSet,
    )
    from s3store._run_models import (
        SessionSnapshotV1 as SessionSnapshotV1,
    )
    from s3store._run_models import (
        StepEndEvent as StepEndEvent,
    )
    from s3store._run_models import (
        StepStartEvent as StepStartEvent,
    )
    from s3store._run_models import (
        SubagentEndEvent as SubagentEndEvent,
    )
    from s3store._run_models import (
        SubagentProgressEvent as SubagentProgressEvent,
    )
    from s3store._run_models import (
        SubagentStartEvent as SubagentStartEvent,
    )
    from s3store._run_models import (
        TaskUpdatedEvent as TaskUpdatedEvent,
    )
    from s3store._run_models import (
        TextDeltaEvent as TextDeltaEvent,
    )
    from s3store._run_models import (
        ToolEndEvent as ToolEndEvent,
    )
    from s3store._run_models import (
        ToolExecutionStartEvent as ToolExecutionStartEvent,
    )
    from s3store._run_models import (
        ToolInputDeltaEvent as ToolInputDeltaEvent,
    )
    from s3store._run_models import (
        ToolOutputDeltaEvent as ToolOutputDeltaEvent,
    )
    from s3store._run_models import (
        ToolRequestBoundEvent as ToolRequestBoundEvent,
    )
    from s3store._run_models import (
        ToolStartEvent as ToolStartEvent,
    )
    from s3store._run_models import (
        TurnEndEvent as TurnEndEvent,
    )
    from s3store._run_models import (
        TurnStartEvent as TurnStartEvent,
    )
    from s3store._run_models import (
        UserQuestionEvent as UserQuestionEvent,
    )
    from s3store._run_models import (
        VerificationSummary as VerificationSummary,
    )

__all__ = [
    "AGENT_EVENT_TYPES",
    "ALWAYS_WRITTEN",
    "F32",
    "NEVER_WRITTEN",
    "SKIP_DEFAULT",
    "SKIP_EMPTY",
    "SKIP_FALSE",
    "SKIP_NONE",
    "WIRE_CONTEXT",
    "AgentEndEvent",
    "AgentEvent",
    "AgentGoal",
    "AgentModeChangedEvent",
    "AgentStartEvent",
    "ArtifactStore",
    "AutoDelegationConfig",
    "BudgetThresholdHitEvent",
    "CognitiveContextBoundEvent",
    "CommandDeadLetteredEvent",
    "CommandRetryEvent",
    "Complexity",
    "ConfirmationPolicy",
    "ConfirmationReceivedEvent",
    "ConfirmationRequiredEvent",
    "ConfirmationTimeoutEvent",
    "ContentBlock",
    "ContextCompactedEvent",
    "ContextResolvedEvent",
    "ContextResolvingEvent",
    "ContextUsage",
    "ErrorEvent",
    "ExecutionPlan",
    "ExternalObservationV1",
    "ExternalTaskCompletedEvent",
    "ExternalTaskPendingEvent",
    "Float32",
    "GoalAchievedEvent",
    "GoalExtractedEvent",
    "GoalProgressEvent",
    "ImageBlock",
    "ImageSource",
    "ImmutableContentAdapterBindingV1",
    "LaneHandlerConfig",
    "LlmConfigData",
    "LlmCostRecord",
    "LlmResponseMeta",
    "LoopCheckpoint",
    "LoopConvergenceState",
    "MemoriesSearchedEvent",
    "MemoryClearedEvent",
    "MemoryRecalledEvent",
    "MemoryStoredEvent",
    "Message",
    "ModelInputBoundEvent",
    "ModelPresentationBoundEvent",
    "ModelUsageBoundEvent",
    "PassivationRequestedEvent",
    "PeerInvocationEvent",
    "PermissionDecision",
    "PermissionDeniedEvent",
    "PermissionPolicy",
    "PermissionRule",
    "PersistenceFailedEvent",
    "PlanningEndEvent",
    "PlanningMode",
    "PlanningStartEvent",
    "PriorityBoostConfig",
    "QueueAlertEvent",
    "RateLimitConfig",
    "RawAgentEvent",
    "RawContentBlock",
    "RawToolResultContent",
    "ReasoningDeltaEvent",
    "RequiredAction",
    "RetryPolicyConfig",
    "RunCapabilityBoundEvent",
    "RunControlAppliedEvent",
    "RunEventRecord",
    "RunRecord",
    "RunSnapshot",
    "RunStatus",
    "RunWorkspaceChangeSet",
    "SessionConfig",
    "SessionData",
    "SessionLane",
    "SessionQueueConfig",
    "SessionSnapshotV1",
    "SessionState",
    "StepEndEvent",
    "StepStartEvent",
    "StorageBackend",
    "SubagentEndEvent",
    "SubagentProgressEntry",
    "SubagentProgressEvent",
    "SubagentStartEvent",
    "SubagentStatus",
    "SubagentTaskSnapshot",
    "Task",
    "TaskHandlerMode",
    "TaskPriority",
    "TaskStatus",
    "TaskUpdatedEvent",
    "TextBlock",
    "TextDeltaEvent",
    "TimeoutAction",
    "Timestamp",
    "TokenUsage",
    "ToolArtifact",
    "ToolEndEvent",
    "ToolExecutionStartEvent",
    "ToolInputDeltaEvent",
    "ToolOutputDeltaEvent",
    "ToolPresentationMode",
    "ToolPresentationProfileV1",
    "ToolRequestBoundEvent",
    "ToolResultBlock",
    "ToolResultContent",
    "ToolResultContentField",
    "ToolResultImageContent",
    "ToolResultTextContent",
    "ToolResultTransformPolicyV1",
    "ToolResultTrustV1",
    "ToolSourceAnchor",
    "ToolStartEvent",
    "ToolUseBlock",
    "TraceEvent",
    "TraceEventKind",
    "TranscriptVisibility",
    "TurnEndEvent",
    "TurnStartEvent",
    "UserQuestionEvent",
    "VerificationCheck",
    "VerificationReport",
    "VerificationStatus",
    "VerificationSummary",
    "WireMeta",
    "WireModel",
    "WireRule",
    "WorkflowCheckpoint",
    "WorkflowStepCheckpoint",
    "WriterLease",
    "field_rules",
    "format_timestamp",
    "parse_timestamp",
    "wire_key",
]

if _resume_gc:
    gc.enable()
del _resume_gc
