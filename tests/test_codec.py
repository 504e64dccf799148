"""The codec: byte-exact fixture round trips, layout, escaping, errors, generated documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3store import codec
from s3store import models as models_module
from s3store.errors import DocumentError, DocumentTooLargeError
from s3store.models import (
    ArtifactStore,
    LoopCheckpoint,
    Message,
    RunRecord,
    SessionData,
    SessionSnapshotV1,
    SubagentTaskSnapshot,
    TraceEvent,
    VerificationReport,
    WriterLease,
)

FIXTURES = Path(__file__).parent / "fixtures"
_SETTINGS = settings(max_examples=200, deadline=None)

FIXTURE_TYPES: dict[str, Any] = {
    "session.json": SessionData,
    "session_snapshot_v1.json": SessionSnapshotV1,
    "artifacts.json": ArtifactStore,
    "artifacts_legacy_8bf60f34.json": ArtifactStore,
    "trace_events.json": list[TraceEvent],
    "run_records.json": list[RunRecord],
    "verification_reports.json": list[VerificationReport],
    "subagent_tasks.json": list[SubagentTaskSnapshot],
    "loop_checkpoint.json": LoopCheckpoint,
    "loop_checkpoint_legacy.json": LoopCheckpoint,
    "writer_lease.json": WriterLease,
}


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_json_fixture_has_a_type() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == set(FIXTURE_TYPES)


@pytest.mark.parametrize("name", sorted(FIXTURE_TYPES))
def test_fixture_round_trips_byte_for_byte(name: str) -> None:
    raw = _fixture(name)
    obj = codec.loads(FIXTURE_TYPES[name], raw, source=name)
    assert codec.dumps(obj) == raw


@pytest.mark.parametrize("name", sorted(FIXTURE_TYPES))
def test_fixture_compact_matches_json_separators(name: str) -> None:
    raw = _fixture(name)
    obj = codec.loads(FIXTURE_TYPES[name], raw)
    # No fixture has a float that Python prints differently, so the stdlib is an oracle here.
    expected = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
    assert codec.dumps_compact(obj) == expected.encode()


def test_fixture_layout_matches_json_indent_2() -> None:
    raw = _fixture("session_snapshot_v1.json")
    assert json.dumps(json.loads(raw), indent=2, ensure_ascii=False).encode() == raw


def test_snapshot_digest_matches_wal_fixture() -> None:
    import hashlib

    snapshot = codec.loads(SessionSnapshotV1, _fixture("session_snapshot_v1.json"))
    body = b"a3s.code.session-store-snapshot.identity.v1\x00" + codec.dumps_compact(snapshot)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    wal = [json.loads(line) for line in _fixture("session-store.ndjson").splitlines()]
    assert {entry["snapshotDigest"] for entry in wal} == {digest}


# --- unknown keys ------------------------------------------------------------------------

_UNKNOWN_EVERYWHERE = {
    "zeta_first": {"b": 1, "a": [1.5, 1e-7, None]},
    "id": "sess-x",
    "config": {
        "name": "n",
        "new_config_flag": True,
        "workspace": "/w",
        "system_prompt": None,
        "max_context_length": 1000,
        "auto_compact": False,
        "auto_compact_threshold": 0.9,
        "storage_type": "memory",
        "planning_mode": "Enabled",
        "goal_tracking": True,
        "tool_presentation_profile": {"schema": "s", "mode": "code", "extra_mode": 1},
        "tool_result_transform_policy": {
            "schema": "p",
            "max_output_bytes": 1,
            "head_bytes": 2,
            "tail_bytes": 3,
            "fold_repeated_lines": True,
            "repeated_line_threshold": 4,
            "structured_sample_items": 5,
        },
        "trailing_unknown": "x",
    },
    "state": "Paused",
    "messages": [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "citations": [], "text": "hi"},
                {"type": "future_block", "payload": {"z": 1, "a": 2.0}, "n": 3},
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [
                        {"type": "text", "text": "x", "lang": "en"},
                        {"type": "document", "ref": "r"},
                    ],
                    "is_error": None,
                    "trust": "external",
                    "redaction_reviewed": True,
                    "provenance": "p",
                },
            ],
            "new_message_field": 7,
        }
    ],
    "context_usage": {"used_tokens": 1, "max_tokens": 2, "percent": 0.5, "turns": 3},
    "total_usage": {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "cache_read_tokens": 4,
        "cache_write_tokens": None,
    },
    "total_cost": 1e-6,
    "cost_records": [],
    "tool_names": [],
    "thinking_enabled": True,
    "thinking_budget": 1024,
    "created_at": -1,
    "updated_at": 2,
    "tasks": [],
    "new_top_level": {"k": "v"},
}

_RUNS_WITH_UNKNOWN = [
    {
        "snapshot": {
            "id": "r",
            "session_id": "s",
            "status": "completed",
            "prompt": "p",
            "created_at_ms": 1,
            "updated_at_ms": 2,
            "result_text": "done",
            "event_count": 9,
            "future": [],
        },
        "events": [
            {
                "sequence": 7,
                "timestamp_ms": 3,
                "event": {
                    "type": "tool_end",
                    "id": "i",
                    "name": "n",
                    "output": "o",
                    "exit_code": -1,
                    "duration_ms": 12,
                    "metadata": {"k": [1]},
                },
                "trace_id": "abc",
            },
            {
                "sequence": 8,
                "timestamp_ms": 4,
                "event": {"type": "future_event_kind", "binding": {"x": 1}},
            },
            {
                "sequence": 9,
                "timestamp_ms": 5,
                "event": {
                    "type": "memory_stored",
                    "memory_id": "m",
                    "memory_type": "t",
                    "importance": 0.1,
                    "tags": ["a"],
                    "score": 0.25,
                },
            },
        ],
    }
]


def _pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode()


def test_unknown_keys_at_every_level_round_trip_byte_for_byte() -> None:
    raw = _pretty(_UNKNOWN_EVERYWHERE).replace(b"1e-07", b"1e-7").replace(b"1e-06", b"1e-6")
    session = codec.loads(SessionData, raw, source="unknown.json")
    assert session.__pydantic_extra__ == {
        "zeta_first": _UNKNOWN_EVERYWHERE["zeta_first"],
        "new_top_level": {"k": "v"},
    }
    assert codec.dumps(session) == raw


def test_unknown_keys_in_run_events_round_trip_byte_for_byte() -> None:
    raw = _pretty(_RUNS_WITH_UNKNOWN)
    records = codec.loads(list[RunRecord], raw)
    assert type(records[0].events[1].event).__name__ == "RawAgentEvent"
    assert codec.dumps(records) == raw
    assert (
        codec.dumps_compact(records)
        == json.dumps(_RUNS_WITH_UNKNOWN, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_unknown_key_added_in_python_is_written_last() -> None:
    lease = codec.loads(WriterLease, _fixture("writer_lease.json"))
    lease2 = WriterLease.model_validate({**json.loads(_fixture("writer_lease.json")), "x": 1})
    assert codec.dumps(lease2).endswith(b'"acquiredAtMs": 1700000004900,\n  "x": 1\n}')
    assert lease == WriterLease.model_validate(json.loads(_fixture("writer_lease.json")))


# --- strings -----------------------------------------------------------------------------


def test_string_escaping_rules() -> None:
    text = '"\\/\x00\x01\x08\t\n\x0c\r\x1f\x7f é 文 🚀 \u2028'
    out = codec.dumps(text).decode()
    assert out == ('"\\"\\\\/\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\x7f é 文 🚀 \u2028"')


@_SETTINGS
@given(st.text())
def test_strings_round_trip_and_escape_only_what_serde_escapes(text: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        with pytest.raises(DocumentError, match="lone surrogate"):
            codec.dumps(text)
        return
    out = codec.dumps(text).decode()
    assert json.loads(out) == text
    body = out[1:-1]
    for ch in body:
        assert ord(ch) >= 0x20  # every control character is escaped
    assert "\\/" not in body.replace("\\\\", "")
    assert body.count("\\u") == len([c for c in text if ord(c) < 0x20 and c not in "\b\t\n\f\r"])


def test_lone_surrogate_is_a_document_error() -> None:
    raw = _fixture("session.json").replace(b"Example Session", b"bad \xed\xa0\x80")
    with pytest.raises(DocumentError, match="UTF-8"):
        codec.loads(SessionData, raw, source="s.json")
    escaped = _fixture("session.json").replace(b"Example Session", b"bad \\ud800")
    with pytest.raises(DocumentError, match="surrogate"):
        codec.loads(SessionData, escaped, source="s.json")
    session = codec.loads(SessionData, _fixture("session.json"))
    session.id = "x\ud800"
    with pytest.raises(DocumentError, match="lone surrogate"):
        codec.dumps(session)


# --- opaque JSON values: layout against the stdlib ---------------------------------------

_json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@_SETTINGS
@given(_json_value.filter(lambda v: "\ud800" not in json.dumps(v)))
def test_opaque_values_match_json_dumps_layout(value: Any) -> None:
    try:
        expected = json.dumps(value, indent=2, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return
    if any(0xD800 <= ord(c) <= 0xDFFF for c in expected.decode("utf-8", "surrogatepass")):
        return
    assert codec.dumps(value) == expected
    assert (
        codec.dumps_compact(value)
        == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    )


# --- generated SessionData documents -----------------------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_opaque_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_opaque = st.recursive(
    _opaque_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
_u64 = st.integers(0, 2**64 - 1)
_source = st.fixed_dictionaries({"type": st.just("base64"), "media_type": _text, "data": _text})
_text_block = st.fixed_dictionaries({"type": st.just("text"), "text": _text})
_image_block = st.fixed_dictionaries({"type": st.just("image"), "source": _source})
_tool_use = st.fixed_dictionaries(
    {"type": st.just("tool_use"), "id": _text, "name": _text, "input": _opaque}
)
_tool_result = st.fixed_dictionaries(
    {
        "type": st.just("tool_result"),
        "tool_use_id": _text,
        "content": _text
        | st.lists(
            st.fixed_dictionaries({"type": st.just("text"), "text": _text})
            | st.fixed_dictionaries({"type": st.just("image"), "source": _source}),
            max_size=2,
        ),
        "is_error": st.none() | st.booleans(),
    },
    optional={
        "trust": st.sampled_from(["trusted", "workspace_data", "external"]),
        "redaction_reviewed": st.booleans(),
    },
)
_raw_block = st.fixed_dictionaries(
    {"type": st.sampled_from(["thinking", "redacted_thinking", "document"]), "data": _opaque}
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system"]),
        "content": st.lists(
            _text_block | _image_block | _tool_use | _tool_result | _raw_block, max_size=4
        ),
    },
    optional={
        "reasoning_content": _text,
        "transcript_text": _text,
        "transcript_visibility": st.sampled_from(["product", "wire"]),
    },
)
_session = st.fixed_dictionaries(
    {
        "id": _text,
        "config": st.fixed_dictionaries(
            {
                "name": _text,
                "workspace": _text,
                "system_prompt": st.none() | _text,
                "max_context_length": st.integers(0, 2**32 - 1),
                "auto_compact": st.booleans(),
            },
            optional={
                "auto_compact_threshold": st.floats(0, 1),
                "storage_type": st.sampled_from(["memory", "file", "custom"]),
                "planning_mode": st.sampled_from(["Auto", "Disabled", "Enabled"]),
                "goal_tracking": st.booleans(),
            },
        ),
        "state": st.sampled_from(["Unknown", "Active", "Paused", "Completed", "Error"]),
        "messages": st.lists(_message, max_size=5),
        "context_usage": st.fixed_dictionaries(
            {
                "used_tokens": _u64,
                "max_tokens": _u64,
                "percent": st.floats(allow_nan=False, allow_infinity=False, width=32),
                "turns": _u64,
            }
        ),
        "total_usage": st.fixed_dictionaries(
            {"prompt_tokens": _u64, "completion_tokens": _u64, "total_tokens": _u64},
            optional={"cache_read_tokens": st.none() | _u64, "cache_write_tokens": _u64},
        ),
        "tool_names": st.lists(_text, max_size=3),
        "thinking_enabled": st.booleans(),
        "created_at": st.integers(-(2**63), 2**63 - 1),
        "updated_at": st.integers(-(2**63), 2**63 - 1),
    },
    optional={
        "total_cost": st.floats(allow_nan=False, allow_infinity=False),
        "model_name": _text,
        "thinking_budget": st.none() | _u64,
        "tenant_id": _text,
        "todos": st.lists(
            st.fixed_dictionaries(
                {"id": _text, "description": _text, "status": st.just("pending")}
            ),
            max_size=2,
        ),
    },
)


@_SETTINGS
@given(_session)
def test_generated_sessions_load_dump_load(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc, ensure_ascii=False).encode()
    first = codec.loads(SessionData, raw, source="generated")
    out = codec.dumps(first)
    second = codec.loads(SessionData, out, source="re-read")
    # f32 fields keep the Python double and are rounded only when written, so the models
    # may differ in those; the bytes may not.
    assert codec.dumps(second) == out
    assert second.messages == first.messages
    compact = codec.dumps_compact(second)
    assert json.loads(compact) == json.loads(out)
    assert codec.dumps(codec.loads(SessionData, compact)) == out


# --- errors ------------------------------------------------------------------------------


def test_invalid_json_names_source() -> None:
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, b'{"id": ', source="sessions/x.json")
    assert "sessions/x.json" in str(info.value)
    assert "invalid JSON" in str(info.value)
    assert info.value.source == "sessions/x.json"
    assert info.value.errors


@pytest.mark.parametrize("data", [b"", b"   \n", ""], ids=["bytes", "whitespace", "str"])
def test_empty_input_is_a_document_error(data: bytes | str) -> None:
    with pytest.raises(DocumentError, match="empty"):
        codec.loads(SessionData, data, source="e.json")


def test_truncated_json_is_a_document_error() -> None:
    raw = _fixture("session.json")
    with pytest.raises(DocumentError, match="invalid JSON"):
        codec.loads(SessionData, raw[: len(raw) // 2], source="t.json")


def test_nan_literal_is_rejected() -> None:
    raw = _fixture("session.json").replace(b'"total_cost": 0.00651', b'"total_cost": NaN')
    with pytest.raises(DocumentError, match="NaN"):
        codec.loads(SessionData, raw)


def test_wrong_schema_names_source_and_first_path() -> None:
    doc = json.loads(_fixture("session.json"))
    doc["messages"][3]["content"][0]["type"] = 5
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, json.dumps(doc), source="sess.json")
    assert "sess.json" in str(info.value)
    assert "messages.3.content.0.type" in str(info.value)
    assert info.value.errors[0][0] == "messages.3.content.0.type"


def test_missing_field_inside_tagged_union_reports_wire_path() -> None:
    doc = json.loads(_fixture("session.json"))
    del doc["messages"][1]["content"][1]["id"]
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, json.dumps(doc), source="sess.json")
    assert info.value.errors[0][0] == "messages.1.content.1.id"


def test_wrong_type_in_list_document() -> None:
    doc = json.loads(_fixture("run_records.json"))
    doc[0]["events"][2]["sequence"] = "2"
    with pytest.raises(DocumentError) as info:
        codec.loads(list[RunRecord], json.dumps(doc), source="runs.json")
    assert info.value.errors[0][0] == "0.events.2.sequence"


def test_missing_required_field() -> None:
    doc = json.loads(_fixture("session.json"))
    del doc["tool_names"]
    with pytest.raises(DocumentError) as info:
        codec.loads(SessionData, json.dumps(doc))
    assert info.value.errors[0][0] == "tool_names"
    assert "SessionData" in str(info.value)


def test_top_level_not_an_object() -> None:
    with pytest.raises(DocumentError):
        codec.loads(SessionData, b"[]", source="x")
    with pytest.raises(DocumentError):
        codec.loads(list[TraceEvent], b"{}", source="x")


def test_size_cap_is_checked_before_parsing() -> None:
    with pytest.raises(DocumentTooLargeError, match="exceeds the 10 byte limit"):
        codec.loads(SessionData, b"{" + b" " * 20, source="big.json", max_bytes=10)


def test_utf16_is_rejected() -> None:
    raw = _fixture("writer_lease.json").decode().encode("utf-16")
    with pytest.raises(DocumentError, match="UTF-8"):
        codec.loads(WriterLease, raw)


def test_str_input_is_accepted() -> None:
    text = _fixture("writer_lease.json").decode()
    assert codec.dumps(codec.loads(WriterLease, text)) == text.encode()


def test_unwritable_value_is_a_document_error() -> None:
    with pytest.raises(DocumentError, match="cannot write"):
        codec.dumps({"k": object()})
    with pytest.raises(DocumentError, match="object key"):
        codec.dumps({1: "v"})


# --- fast path (pydantic-core / orjson) ---------------------------------------------------

_CANONICAL = [n for n in sorted(FIXTURE_TYPES) if "legacy" not in n]


@pytest.mark.parametrize("name", _CANONICAL)
def test_canonical_fixtures_take_the_fast_path(name: str) -> None:
    raw = _fixture(name)
    tp = FIXTURE_TYPES[name]
    loaded = codec._fast_load(tp, raw)
    assert loaded is not codec._MISS
    assert loaded == codec._validate(tp, codec._parse(raw, "", None), "", None)
    assert codec._fast_dump(loaded, 2) == raw
    assert codec._fast_dump(loaded, None) == codec._encode(codec._emit(loaded, False), name)


@pytest.mark.parametrize("name", [n for n in sorted(FIXTURE_TYPES) if "legacy" in n])
def test_legacy_fixtures_take_the_recording_path(name: str) -> None:
    raw = _fixture(name)
    assert codec._fast_load(FIXTURE_TYPES[name], raw) is codec._MISS
    loaded = codec.loads(FIXTURE_TYPES[name], raw)
    assert codec._fast_dump(loaded, 2) is None
    assert codec.dumps(loaded) == raw


def test_fast_path_declines_what_it_cannot_check() -> None:
    raw = _fixture("writer_lease.json")
    doc = json.loads(raw)
    # A repeated field, an unknown key, an unknown tag, a number serde reads differently:
    # the fast path declines and the recording path decides, as before.
    repeated = raw.replace(b'"epoch": ', b'"epoch": 1,\n  "epoch": ', 1)
    assert codec._fast_load(WriterLease, repeated) is codec._MISS
    with pytest.raises(DocumentError, match="duplicate field"):
        codec.loads(WriterLease, repeated)
    unknown = codec.dumps(codec.from_value(WriterLease, {**doc, "zz": 1}))
    assert codec._fast_load(WriterLease, unknown) is codec._MISS
    assert codec.dumps(codec.loads(WriterLease, unknown)) == unknown
    assert codec._fast_load(WriterLease, raw.replace(b"\n", b"")) is codec._MISS
    assert codec.loads(WriterLease, raw.replace(b"\n", b"")) == codec.loads(WriterLease, raw)


def test_fast_dump_declines_numbers_pydantic_core_writes_otherwise() -> None:
    session = codec.loads(SessionData, _fixture("session.json"))
    big = session.model_copy(update={"total_cost": 1.5e16})
    assert codec._fast_dump(big, 2) is None
    assert b'"total_cost": 1.5e16' in codec.dumps(big)
    block = {"type": "tool_use", "id": "t", "name": "n", "input": {"a": 2**64, "b": 1e300}}
    message = {"role": "assistant", "content": [block]}
    wide = session.model_copy(update={"messages": [codec.from_value(Message, message)]})
    assert codec._fast_dump(wide, 2) is None
    out = codec.dumps(wide)
    assert b'"a": 1.8446744073709552e19' in out
    assert b'"b": 1e300' in out


def test_pydantic_core_parser_stands_in_for_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydantic_core

    monkeypatch.setattr(
        codec, "_json_parse", lambda raw: pydantic_core.from_json(raw, allow_inf_nan=False)
    )
    monkeypatch.setattr(codec, "_json_pretty", lambda v: pydantic_core.to_json(v, indent=2))
    monkeypatch.setattr(codec, "_opaque_ok", codec._plain_json)
    monkeypatch.setattr(codec, "_orjson_dump", None)
    test_fast_dump_declines_numbers_pydantic_core_writes_otherwise()
    for name in _CANONICAL:
        raw = _fixture(name)
        assert codec._fast_load(FIXTURE_TYPES[name], raw) is not codec._MISS
        assert codec.dumps(codec.loads(FIXTURE_TYPES[name], raw)) == raw


def test_large_loads_restore_the_gc_state(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    raw = _fixture("session.json")
    monkeypatch.setattr(codec, "_GC_PAUSE_BYTES", 1)
    seen: list[bool] = []
    real = codec._load_fast

    def spy(tp: Any, data: bytes) -> Any:
        seen.append(gc.isenabled())
        return real(tp, data)

    monkeypatch.setattr(codec, "_load_fast", spy)
    assert gc.isenabled()
    codec.loads(SessionData, raw)
    assert gc.isenabled()
    with pytest.raises(DocumentError):
        codec.loads(SessionData, raw.replace(b'"id"', b'"id": 1, "x"', 1))
    assert gc.isenabled()
    gc.disable()
    try:
        codec.loads(SessionData, raw)
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert seen == [False, False, False]


# --- orjson writer -------------------------------------------------------------------------


def _emitted(obj: Any) -> tuple[bytes, bytes]:
    return codec._encode(codec._emit(obj, True), "x"), codec._encode(codec._emit(obj, False), "x")


def _writers_agree(obj: Any) -> bool:
    """The orjson writer either declines or writes the Python emitter's bytes; True if taken."""
    pretty, compact = _emitted(obj)
    fast = codec._orjson_dump(obj, codec._PRETTY) if codec._orjson_dump else None
    fast_compact = codec._orjson_dump(obj, 0) if codec._orjson_dump else None
    assert fast is None or fast == pretty
    assert fast_compact is None or fast_compact == compact
    return fast is not None


@pytest.mark.parametrize("name", _CANONICAL)
def test_orjson_writer_writes_canonical_fixtures(name: str) -> None:
    loaded = codec.loads(FIXTURE_TYPES[name], _fixture(name))
    assert _writers_agree(loaded) == (codec._orjson_dump is not None)


@pytest.mark.parametrize("name", [n for n in sorted(FIXTURE_TYPES) if "legacy" in n])
def test_orjson_writer_keeps_recorded_eras(name: str) -> None:
    loaded = codec.loads(FIXTURE_TYPES[name], _fixture(name))
    assert _writers_agree(loaded) == (codec._orjson_dump is not None)
    assert codec.dumps(loaded) == _fixture(name)


def test_orjson_writer_keeps_unknown_keys_in_place() -> None:
    doc = json.loads(_fixture("session.json"))
    doc = {"first": [1, {"a": None}], **doc, "last": "z"}
    doc["config"] = {**doc["config"], "new_flag": True}
    doc["messages"][0]["content"][0]["annotation"] = {"k": 1.5}
    raw = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    loaded = codec.loads(SessionData, raw)
    assert _writers_agree(loaded) == (codec._orjson_dump is not None)
    assert codec.dumps(loaded) == raw
    # Python-built models with extras write them after the fields, as the emitter does.
    built = SessionData.new("s")
    built.__pydantic_extra__ = {"zz": [1], "aa": {}}
    assert _writers_agree(built) == (codec._orjson_dump is not None)
    # An unknown key spelt like a field's wire key: only the emitter writes both.
    clash = codec.loads(models_module.WriterLease, _fixture("writer_lease.json"))
    clash.__pydantic_extra__ = {"holderId": "again"}
    assert not _writers_agree(clash)
    assert codec.dumps(clash).count(b'"holderId"') == 2


_FLOATS = [0.0, -0.0, 5e-324, 1e-7, 0.1, 1e15, 9999999999999998.0, 1e16, 1.5e16, 1e300]


@pytest.mark.parametrize("value", [*_FLOATS, 5, -(2**63), 2**64 - 1])
def test_orjson_writer_float_fields(value: float) -> None:
    session = codec.loads(SessionData, _fixture("session.json"))
    for field in ("total_cost", "context_usage"):
        if field == "total_cost":
            changed = session.model_copy(update={"total_cost": value})
        else:
            usage = session.context_usage.model_copy(update={"percent": float(value)})
            changed = session.model_copy(update={"context_usage": usage})
        if field == "context_usage" and abs(float(value)) > 3e38:
            with pytest.raises(DocumentError):
                codec.dumps(changed)
            continue
        assert _writers_agree(changed)


@pytest.mark.parametrize("value", [*_FLOATS, 2**64, -(2**63) - 1, (1, "t")])
def test_orjson_writer_opaque_values(value: Any) -> None:
    session = codec.loads(SessionData, _fixture("session.json"))
    block = {"type": "tool_use", "id": "t", "name": "n", "input": {"v": value, "w": [value]}}
    message = codec.from_value(Message, {"role": "assistant", "content": [block]})
    _writers_agree(session.model_copy(update={"messages": [message]}))


def test_orjson_writer_declines_what_the_emitter_refuses() -> None:
    import datetime
    import math

    session = codec.loads(SessionData, _fixture("session.json"))
    for bad in (datetime.datetime.now(datetime.UTC), {1: "v"}, object()):
        block = {"type": "tool_use", "id": "t", "name": "n", "input": {}}
        message = codec.from_value(Message, {"role": "assistant", "content": [block]})
        message.content[0].input = {"v": bad}
        changed = session.model_copy(update={"messages": [message]})
        assert codec._orjson_dump is None or codec._orjson_dump(changed, 0) is None
        with pytest.raises(DocumentError):
            codec.dumps(changed)
    for bad_float in (math.inf, math.nan):
        changed = session.model_copy(update={"total_cost": bad_float})
        assert codec._orjson_dump is None or codec._orjson_dump(changed, 0) is None
        with pytest.raises(DocumentError, match="not a finite"):
            codec.dumps(changed)
    session.id = "x\ud800"
    assert codec._orjson_dump is None or codec._orjson_dump(session, 0) is None


def test_orjson_writer_enum_keyed_maps_and_extras() -> None:
    from s3store.models import SessionConfig, SessionQueueConfig

    queue = SessionQueueConfig.model_validate(
        {
            "laneHandlers": {"Execute": {"mode": "External", "timeout_ms": 5}},
            "laneTimeouts": {"Query": 7, "Control": 1},
        }
    )
    config = SessionConfig(
        name="n", workspace="/w", max_context_length=1, auto_compact=False, queue_config=queue
    )
    session = SessionData.new("s", config=config)
    assert _writers_agree(session)
    assert b'"Query": 7' in codec.dumps(session)
    extra = SessionData.new("s", config=config)
    extra.__pydantic_extra__ = {"zz": 1}
    assert _writers_agree(extra) == (codec._orjson_dump is not None)


@_SETTINGS
@given(_json_value.filter(lambda v: "\ud800" not in json.dumps(v)), st.text(max_size=12))
def test_orjson_writer_agrees_on_generated_inputs(value: Any, text: str) -> None:
    session = codec.loads(SessionData, _fixture("session.json"))
    block = {"type": "tool_use", "id": text, "name": "n", "input": value}
    message = codec.from_value(Message, {"role": "assistant", "content": [block]})
    changed = session.model_copy(update={"messages": [message], "model_name": text})
    try:
        _emitted(changed)
    except DocumentError:
        return
    _writers_agree(changed)


@_SETTINGS
@given(_session)
def test_orjson_writer_agrees_on_generated_sessions(doc: dict[str, Any]) -> None:
    session = codec.loads(SessionData, json.dumps(doc, ensure_ascii=False).encode())
    _writers_agree(session)


def _generated_models() -> Any:
    # The wire-property strategies build every model kind, every event variant included.
    from tests.test_wire_property import _model

    return st.one_of(
        _model(SessionSnapshotV1, 0),
        _model(LoopCheckpoint, 0),
        st.lists(_model(RunRecord, 0), min_size=1, max_size=2),
        st.lists(_model(TraceEvent, 0), min_size=1, max_size=3),
    )


@settings(max_examples=150, deadline=None)
@given(_generated_models())
def test_orjson_writer_agrees_on_generated_models(obj: Any) -> None:
    try:
        _emitted(obj)
    except DocumentError:
        return
    _writers_agree(obj)


# --- shaped fast load (unknown keys, older eras) -------------------------------------------


def _metas(obj: Any) -> list[tuple[str, Any]]:
    """Every model's class and shape record, depth first (what dumps relies on)."""
    out: list[tuple[str, Any]] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, list):
            stack.extend(reversed(o))
        elif isinstance(o, dict):
            stack.extend(reversed(list(o.values())))
        elif isinstance(o, models_module.WireModel):
            meta = o.wire_meta()
            out.append((type(o).__name__, repr(meta) if meta is not None else None))
            stack.extend(reversed([o.__dict__[name] for name in type(o).model_fields]))
    return out


def _shaped_agrees(tp: Any, raw: bytes) -> bool:
    """The shaped fast load, when it takes ``raw``, gives the recording path's result."""
    slow = codec._validate(tp, codec._parse(raw, "", None), "", None)
    shaped = codec._shaped_load(tp, raw)
    if shaped is codec._MISS:
        return False
    assert shaped == slow
    assert _metas(shaped) == _metas(slow)
    assert codec.dumps(shaped) == codec.dumps(slow) == raw
    return True


@pytest.mark.parametrize("name", sorted(FIXTURE_TYPES))
def test_shaped_load_matches_the_recording_path_on_fixtures(name: str) -> None:
    raw = _fixture(name)
    taken = _shaped_agrees(FIXTURE_TYPES[name], raw)
    assert taken or codec._orjson_dump is None


def test_shaped_load_takes_unknown_keys_and_absent_fields() -> None:
    doc = json.loads(_fixture("session.json"))
    doc = {"first": [1, {"a": None}], **doc, "last": "z"}
    doc["config"] = {**doc["config"], "new_flag": True}
    del doc["config"]["tool_presentation_profile"]  # an older era
    doc["messages"][0]["content"][0]["annotation"] = {"k": 1.5}
    raw = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    assert codec._fast_load(SessionData, raw) is codec._MISS
    assert _shaped_agrees(SessionData, raw)
    loaded = codec.loads(SessionData, raw)
    assert loaded.config.wire_meta() is not None
    assert codec.dumps(loaded) == raw


def test_shaped_load_declines_what_only_the_recording_path_decides() -> None:
    doc = json.loads(_fixture("session.json"))
    # Both spellings of one field, an unknown tag, a repeated key.
    both = {**doc, "todos": doc["tasks"]}
    raw = json.dumps(both, indent=2, ensure_ascii=False).encode()
    assert codec._shaped_load(SessionData, raw) is codec._MISS
    tagged = json.loads(_fixture("session.json"))
    tagged["messages"][0]["content"][0]["type"] = "future_block"
    raw = json.dumps(tagged, indent=2, ensure_ascii=False).encode()
    assert codec._shaped_load(SessionData, raw) is codec._MISS
    assert codec.dumps(codec.loads(SessionData, raw)) == raw
    lease = _fixture("writer_lease.json")
    repeated = lease.replace(b'"epoch": ', b'"zz": 1,\n  "zz": 2,\n  "epoch": ', 1)
    assert codec._shaped_load(WriterLease, repeated) is codec._MISS


_extra_value = st.none() | st.booleans() | st.integers(0, 10) | st.text(max_size=4)


@_SETTINGS
@given(
    _session,
    st.lists(st.tuples(st.integers(0, 40), st.text(min_size=1, max_size=6), _extra_value)),
)
def test_shaped_load_agrees_on_generated_unknown_keys(
    doc: dict[str, Any], extras: list[tuple[int, str, Any]]
) -> None:
    # Unknown keys spread over the objects of the document, at any position.
    objects: list[dict[str, Any]] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            objects.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    for index, key, value in extras:
        target = objects[index % len(objects)]
        if key in target:
            continue
        items = list(target.items())
        items.insert(index % (len(items) + 1), (key, value))
        target.clear()
        target.update(items)
    try:
        raw = codec.dumps(codec.loads(SessionData, json.dumps(doc, ensure_ascii=False)))
    except DocumentError:
        return
    _shaped_agrees(SessionData, raw)
