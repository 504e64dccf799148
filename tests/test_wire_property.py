"""Property: anything built in Python is written as serde would write it and reads back.

Models are generated from their own field declarations (types, bounds, unions, optionals),
built with their constructors, never parsed from fixtures. For each one: ``dumps`` →
``loads`` → ``dumps`` gives the same bytes, and the written JSON obeys the Rust types
(required keys present, integer widths, f32 values that are exact f32s in shortest form,
enum spellings, chrono timestamps), i.e. nothing a Rust reader would refuse.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import re
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import PlainValidator, Tag

from s3store import codec, models
from s3store._floatfmt import format_f32, round_f32
from s3store.models import (
    LoopCheckpoint,
    RunRecord,
    SessionData,
    SessionSnapshotV1,
    TraceEvent,
    WireModel,
    WireRule,
    field_rules,
    wire_key,
)

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_RAW = (models.RawAgentEvent, models.RawContentBlock, models.RawToolResultContent)
_CANONICAL_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6}|\.\d{9})?Z")

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)  # beyond i64/u64 too: written as serde reads them
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_zones = st.sampled_from([datetime.UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=30))])
_timestamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 2),
    max_value=datetime.datetime(9999, 12, 30),
    timezones=_zones,
) | st.builds(
    lambda d, nanos: d.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}+01:00",
    st.datetimes(
        min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9999, 12, 30)
    ),
    st.integers(0, 999_999_999),
)


def _bounds(metadata: list[Any]) -> tuple[int | float | None, int | float | None]:
    low: int | float | None = None
    high: int | float | None = None
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge  # type: ignore[assignment]
        elif isinstance(m, annotated_types.Le):
            high = m.le  # type: ignore[assignment]
        elif isinstance(m, annotated_types.Gt):
            low = math.nextafter(m.gt, math.inf)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Lt):
            high = math.nextafter(m.lt, -math.inf)  # type: ignore[arg-type]
        elif hasattr(m, "metadata"):  # a FieldInfo nested in Annotated
            more = _bounds(list(m.metadata))
            low = more[0] if more[0] is not None else low
            high = more[1] if more[1] is not None else high
    return low, high


def _strategy(tp: Any, metadata: list[Any], depth: int) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return _strategy(base, [*metadata, *extra], depth)
    if any(isinstance(m, PlainValidator) for m in metadata):
        return _timestamps
    if tp is Any:
        return _json
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is Union or origin is types.UnionType:
        options = [a for a in get_args(tp) if a is not type(None)]
        tagged = [_tagged_member(a) for a in options]
        if any(t is not None for t in tagged):
            members = [t for t in tagged if t is not None and t not in _RAW]
            return st.one_of([_model(m, depth + 1) for m in members])
        inner = st.one_of([_strategy(a, metadata, depth) for a in options])
        return st.none() | inner if len(options) < len(get_args(tp)) else inner
    if origin is list:
        (item,) = get_args(tp)
        return st.lists(_strategy(item, [], depth), max_size=0 if depth > 4 else 3)
    if origin is dict:
        key, item = get_args(tp)
        return st.dictionaries(_strategy(key, [], depth), _strategy(item, [], depth), max_size=2)
    if tp is bool:
        return st.booleans()
    if tp is int:
        low, high = _bounds(metadata)
        return st.integers(low, high)  # type: ignore[arg-type]
    if tp is float:
        if WireRule.F32 in metadata:
            # Any double in range: the writer rounds it to f32.
            return st.floats(-3.4e38, 3.4e38) | st.floats(
                width=32, allow_nan=False, allow_infinity=False
            )
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        return _text
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and issubclass(tp, WireModel):
        return _model(tp, depth + 1)
    raise NotImplementedError(f"no strategy for {tp!r}")


def _tagged_member(tp: Any) -> type[WireModel] | None:
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        if any(isinstance(m, Tag) for m in meta):
            return typing.cast(type[WireModel], base)
    return None


def _later(tp: Any, depth: int) -> typing.Callable[[], st.SearchStrategy[Any]]:
    # Resolved lazily: event unions refer to models declared later in the module.
    def build() -> st.SearchStrategy[Any]:
        return _strategy(tp, [], depth)

    return build


_MODEL_STRATEGIES: dict[tuple[type[WireModel], int], st.SearchStrategy[Any]] = {}


def _model(cls: type[WireModel], depth: int) -> st.SearchStrategy[Any]:
    key = (cls, min(depth, 6))
    cached = _MODEL_STRATEGIES.get(key)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls, include_extras=True, localns=vars(models))
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in cls.model_fields.items():
        if name == "type" and get_origin(info.annotation) is Literal:
            continue  # the constructor default is the tag
        strategy = st.deferred(_later(hints[name], depth))
        (required if info.is_required() else optional)[name] = strategy
    built = st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))
    _MODEL_STRATEGIES[key] = built
    return built


# --- what the written JSON must obey -----------------------------------------------------


def _check(model: Any, doc: Any, path: str) -> None:
    if isinstance(model, list):
        assert isinstance(doc, list), path
        assert len(model) == len(doc), path
        for i, (m, d) in enumerate(zip(model, doc, strict=True)):
            _check(m, d, f"{path}.{i}")
        return
    if isinstance(model, dict):
        assert isinstance(doc, dict), path
        for k, v in model.items():
            _check(v, doc[k.value if isinstance(k, enum.Enum) else k], f"{path}.{k}")
        return
    if isinstance(model, enum.Enum):
        assert doc == model.value, path
        return
    if not isinstance(model, WireModel):
        return
    assert isinstance(doc, dict), path
    for name, info in type(model).model_fields.items():
        key = wire_key(name, info)
        rules = field_rules(info)
        value = getattr(model, name)
        if WireRule.NEVER_WRITTEN in rules:
            assert key not in doc, f"{path}.{key} must never be written"
            continue
        if info.is_required():
            assert key in doc, f"{path}.{key} is required by serde"
        if key not in doc:
            continue
        written = doc[key]
        where = f"{path}.{key}"
        if WireRule.F32 in rules:
            assert isinstance(written, float), where
            assert math.isfinite(written), where
            # The text names exactly the f32 the field holds, in shortest f32 digits.
            assert math.isfinite(round_f32(written)), where
            assert round_f32(written) == round_f32(value), f"{where}: {written!r}"
            assert format_f32(written) == format_f32(value), where
        elif info.annotation is float or (
            isinstance(value, float) and not isinstance(written, (dict, list))
        ):
            assert isinstance(written, float), where
            assert math.isfinite(written), where
        elif any(isinstance(m, PlainValidator) for m in info.metadata):
            assert _CANONICAL_TS.fullmatch(written), f"{where}: {written!r}"
            assert models.parse_timestamp(written) is not None
        elif isinstance(value, bool):
            assert written is value, where
        elif isinstance(value, int) and not isinstance(value, enum.Enum) and info.annotation is int:
            low, high = _bounds(list(info.metadata))
            assert isinstance(written, int), where
            assert low is None or written >= low, where
            assert high is None or written <= high, where
        else:
            _check(value, written, where)


def _paths_agree(obj: Any, tp: Any) -> None:
    """The fast (pydantic-core) path, when it takes a value, gives the Python path's result."""
    pretty = codec._encode(codec._emit(obj, True), "generated")
    compact = codec._encode(codec._emit(obj, False), "generated")
    fast = codec._fast_dump(obj, 2)
    assert fast is None or fast == pretty
    fast_compact = codec._fast_dump(obj, None)
    assert fast_compact is None or fast_compact == compact
    slow = codec._validate(tp, codec._parse(pretty, "", None), "", None)
    loaded = codec._fast_load(tp, pretty)
    if loaded is not codec._MISS:
        assert loaded == slow
        assert codec._emit(loaded, True) == codec._emit(slow, True)
        for model in loaded if isinstance(loaded, list) else [loaded]:
            assert model.wire_meta() is None


def _round_trip(obj: Any, tp: Any) -> None:
    _paths_agree(obj, tp)
    first = codec.dumps(obj)
    again = codec.loads(tp, first, source="generated")
    second = codec.dumps(again)
    assert second == first
    assert codec.dumps_compact(again) == codec.dumps_compact(codec.loads(tp, second))
    _check(obj if not isinstance(obj, list) else list(obj), json.loads(first), "$")
    _check(again, json.loads(second), "$")


@_SETTINGS
@given(_model(SessionData, 0))
def test_python_built_sessions_round_trip_and_obey_rust_types(session: SessionData) -> None:
    _round_trip(session, SessionData)


@_SETTINGS
@given(st.lists(_model(TraceEvent, 0), max_size=3))
def test_python_built_traces_round_trip_and_obey_rust_types(events: list[TraceEvent]) -> None:
    _round_trip(events, list[TraceEvent])


@_SETTINGS
@given(st.lists(_model(RunRecord, 0), max_size=2))
def test_python_built_runs_round_trip_and_obey_rust_types(runs: list[RunRecord]) -> None:
    _round_trip(runs, list[RunRecord])


@_SETTINGS
@given(_model(LoopCheckpoint, 0))
def test_python_built_checkpoints_round_trip_and_obey_rust_types(cp: LoopCheckpoint) -> None:
    _round_trip(cp, LoopCheckpoint)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_model(SessionSnapshotV1, 0))
def test_python_built_snapshots_round_trip(snapshot: SessionSnapshotV1) -> None:
    _round_trip(snapshot, SessionSnapshotV1)


def test_every_event_variant_is_generated() -> None:
    seen: set[str] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_model(models.RunEventRecord, 0))
    def collect(record: models.RunEventRecord) -> None:
        seen.add(record.event.type)
        _round_trip(record, models.RunEventRecord)

    collect()
    assert len(seen) > len(models.AGENT_EVENT_TYPES) // 2
