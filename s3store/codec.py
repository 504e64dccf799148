"""JSON codec for the wire models: serde_json-identical bytes out, checked models in.

* :func:`dumps` writes exactly what ``serde_json::to_vec_pretty`` writes for the Rust value:
  2-space indent, ``"key": value``, ``[]``/``{}`` for empties, raw UTF-8, serde's string
  escaping, Ryu float layout (``s3store._floatfmt``), no trailing newline.
* :func:`dumps_compact` writes ``serde_json::to_vec`` bytes (no whitespace), the input of the
  store's digests.
* :func:`loads` parses and validates a document into a model (or ``list[Model]``), recording
  its shape (era and unknown-key positions, see :mod:`s3store.models`) so that :func:`dumps`
  writes it back byte for byte. Every failure is a :class:`~s3store.errors.DocumentError`
  naming the document and the first offending field path.

What serde refuses is refused here too: a repeated field in a struct (``duplicate field``),
a float literal beyond the f64 range (``1e400``, which ``json`` would read as infinity),
``NaN``/``Infinity``, and on output a non-finite value in a float field (serde_json would
write ``null``, which the field cannot read back).

Integers in opaque values (``tool_use.input``, metadata, ...) outside the i64/u64 range are
written as the f64 serde_json reads them into (``2**64`` becomes ``1.8446744073709552e19``),
so the bytes survive a Rust round trip; one beyond the f64 range cannot be written at all.
The literal ``-0`` (an f64 ``-0.0`` in serde_json) is read as the integer 0.

Two paths, one output. The fast path runs in Rust: :func:`loads` parses with orjson (or
pydantic-core's parser when orjson is not installed), checks that the document is already in
canonical serde_json form (re-serialising the parsed value gives the same bytes, which also
rules out repeated keys, ``-0``, out-of-range numbers and non-canonical escapes), and validates
it with a copy of the model schema that has no Python validator per object, refuses unknown
keys and unknown union tags, and stops at the first always-written field that is absent. A
canonical document with unknown keys (a newer writer) or absent fields (an older era) is then
validated by a second copy that keeps unknown keys and fills defaults, and a walk over the
models gives each one that needs it the shape record the recording validator would give it.
:func:`dumps` turns the models into plain dicts (wire keys, skip rules, recorded shapes, f32
and large f64 values pre-formatted as ``orjson.Fragment``) and writes them with orjson, whose
layout is serde_json's but for the ``1e+16`` exponent form, which sends a document to the
emitter. Without orjson it serialises with a copy of the pydantic-core serialisation schema
instead, after a walk that sends any model with a recorded shape, unknown keys or private
state to the Python emitter, and checks the output for the two things pydantic-core writes
differently from serde_json (``1e+16`` exponents, integers beyond i64/u64). Whatever the fast
path declines goes through the Python path below, which handles every case: the parser with
the duplicate-key and number checks, the validator that records the document's shape, and
the emitter.

The emitter is one recursive function driven by per-class field specs (key text, skip rule,
float kind, default) computed once per model class; it does not go through ``model_dump``.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import threading
import typing
from collections.abc import Callable, Sequence
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any, Final, TypeVar, overload

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaSerializer, SchemaValidator

from s3store._floatfmt import format_f32, format_f64
from s3store._gc import GcPaused
from s3store.errors import DocumentError, DocumentTooLargeError
from s3store.models import (
    _SHAPES,
    WIRE_CONTEXT,
    WireMeta,
    WireModel,
    WireRule,
    _DuplicateKeys,
    field_rules,
    wire_key,
)

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - exercised by the pydantic-core fallback test
    orjson = None

__all__ = ["DEFAULT_MAX_BYTES", "dumps", "dumps_compact", "loads"]

#: Size cap of one document, as in a3s-code (256 MiB).
DEFAULT_MAX_BYTES: Final = 256 * 1024**2

# Documents from this size on are read with the cyclic GC paused (see loads).
_GC_PAUSE_BYTES: Final = 128 * 1024

M = TypeVar("M", bound=BaseModel)

# Skip rules and float kinds as small ints: compared in the hot loop.
_ALWAYS, _IF_NONE, _IF_EMPTY, _IF_FALSE, _IF_DEFAULT, _NEVER = range(6)
_GENERIC, _KIND_F64, _KIND_F32 = range(3)

_RULE_TO_SKIP = {
    WireRule.ALWAYS_WRITTEN: _ALWAYS,
    WireRule.SKIP_NONE: _IF_NONE,
    WireRule.SKIP_EMPTY: _IF_EMPTY,
    WireRule.SKIP_FALSE: _IF_FALSE,
    WireRule.SKIP_DEFAULT: _IF_DEFAULT,
    WireRule.NEVER_WRITTEN: _NEVER,
}

# (attribute name, encoded key without separator, skip rule, float kind, default)
_FieldSpec = tuple[str, str, int, int, Any]
_specs: dict[type[BaseModel], tuple[_FieldSpec, ...]] = {}


def _is_float_annotation(annotation: Any) -> bool:
    if annotation is float:
        return True
    args = getattr(annotation, "__args__", ())
    return float in args


def _class_spec(cls: type[BaseModel]) -> tuple[_FieldSpec, ...]:
    spec = _specs.get(cls)
    if spec is not None:
        return spec
    fields: list[_FieldSpec] = []
    for name, info in cls.model_fields.items():
        rules = field_rules(info)
        skip = _ALWAYS
        for rule in rules:
            skip = _RULE_TO_SKIP.get(rule, skip)
        if WireRule.F32 in rules:
            kind = _KIND_F32
        elif _is_float_annotation(info.annotation):
            kind = _KIND_F64
        else:
            kind = _GENERIC
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields.append((name, encode_basestring(wire_key(name, info)), skip, kind, default))
    spec = tuple(fields)
    _specs[cls] = spec
    return spec


def _is_skipped(skip: int, value: Any, default: Any) -> bool:
    if skip == _IF_NONE:
        return value is None
    if skip == _IF_EMPTY:
        return not value
    if skip == _IF_FALSE:
        return value is False
    if skip == _IF_DEFAULT:
        return bool(value == default)
    return skip == _NEVER


class _Layout:
    """Separator strings per nesting level, cached (no whitespace in compact mode).

    ``obj_open[n]`` / ``arr_open[n]`` open a container and start its first item at level
    ``n``, ``comma[n]`` starts a further item, ``close[n]`` is the newline before the closing
    bracket of a container at level ``n``.
    """

    __slots__ = ("arr_open", "close", "colon", "comma", "obj_open", "pretty")

    def __init__(self, pretty: bool) -> None:
        self.pretty = pretty
        self.colon = ": " if pretty else ":"
        self.obj_open: list[str] = []
        self.arr_open: list[str] = []
        self.comma: list[str] = []
        self.close: list[str] = []
        self.grow(32)

    def grow(self, levels: int) -> None:
        while len(self.close) < levels:
            n = len(self.close)
            nl = "\n" + "  " * n if self.pretty else ""
            self.close.append(nl)
            self.obj_open.append("{" + nl)
            self.arr_open.append("[" + nl)
            self.comma.append("," + nl)


_LAYOUTS = {True: _Layout(True), False: _Layout(False)}

# serde_json keeps an integer of a `Value` exact only within i64/u64; any other integer it
# reads into an f64 (and writes as one, e.g. 2**64 -> 1.8446744073709552e19). s3store writes
# what serde would write back, so the bytes are stable under a Rust round trip.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


def _wide_int(v: int) -> str:
    try:
        return format_f64(float(v))
    except OverflowError:
        raise DocumentError(
            f"cannot write the integer {str(v)[:20]}... ({v.bit_length()} bits): "
            "beyond the f64 range serde_json reads numbers into"
        ) from None


def _non_finite(v: float, kind: int) -> DocumentError:
    # serde_json writes a non-finite float as null, and serde then refuses to read it into
    # the float field: the document would not load in Rust.
    rust = "f32" if kind == _KIND_F32 else "f64"
    return DocumentError(f"cannot write {v!r} in an {rust} field: not a finite {rust} value")


def _emit(obj: Any, pretty: bool) -> str:
    """Serialise ``obj`` (model, list, JSON value) the way serde_json does."""
    layout = _LAYOUTS[pretty]
    parts: list[str] = []
    app = parts.append
    enc = encode_basestring
    f64 = format_f64
    f32 = format_f32
    int_repr = int.__repr__
    colon = layout.colon
    obj_open = layout.obj_open
    arr_open = layout.arr_open
    comma = layout.comma
    close = layout.close
    specs = _specs
    class_spec = _class_spec
    model_base = BaseModel
    enum_base = enum.Enum
    lo = _INT_MIN
    hi = _INT_MAX
    wide = _wide_int

    def value(v: Any, level: int) -> None:
        t = type(v)
        if t is str:
            app(enc(v))
        elif t is int:
            app(int_repr(v) if lo <= v <= hi else wide(v))
        elif v is None:
            app("null")
        elif t is bool:
            app("true" if v else "false")
        elif t is float:
            app(f64(v))
        elif t is list or t is tuple:
            if not v:
                app("[]")
                return
            inner = level + 1
            if inner >= len(close):
                layout.grow(inner + 16)
            sep = arr_open[inner]
            next_sep = comma[inner]
            for item in v:
                ti = type(item)
                if ti is str:
                    app(sep + enc(item))
                elif ti is int and lo <= item <= hi:
                    app(sep + int_repr(item))
                else:
                    app(sep)
                    value(item, inner)
                sep = next_sep
            app(close[level] + "]")
        elif t is dict:
            if not v:
                app("{}")
                return
            inner = level + 1
            if inner >= len(close):
                layout.grow(inner + 16)
            sep = obj_open[inner]
            next_sep = comma[inner]
            for k, item in v.items():
                if type(k) is not str:
                    k = _object_key(k)
                ti = type(item)
                if ti is str:
                    app(sep + enc(k) + colon + enc(item))
                elif ti is int and lo <= item <= hi:
                    app(sep + enc(k) + colon + int_repr(item))
                else:
                    app(sep + enc(k) + colon)
                    value(item, inner)
                sep = next_sep
            app(close[level] + "}")
        elif isinstance(v, model_base):
            model(v, level)
        elif isinstance(v, enum_base):
            value(v.value, level)
        elif isinstance(v, str):
            app(enc(v))
        elif isinstance(v, bool):
            app("true" if v else "false")
        elif isinstance(v, int):
            value(int(v), level)
        elif isinstance(v, float):
            app(f64(v))
        elif isinstance(v, (list, tuple)):
            value(list(v), level)
        elif isinstance(v, dict):
            value(dict(v), level)
        else:
            raise DocumentError(f"cannot write a value of type {t.__name__} as JSON")

    def model(obj: BaseModel, level: int) -> None:
        cls = type(obj)
        spec = specs.get(cls) or class_spec(cls)
        inner = level + 1
        if inner >= len(close):
            layout.grow(inner + 16)
        first_sep = obj_open[inner]
        next_sep = comma[inner]
        sep = first_sep
        if obj.__pydantic_extra__ or obj.__pydantic_private__:
            for key, v, kind in _shaped_entries(obj, spec):
                if kind == _GENERIC or v is None:
                    app(sep + key + colon)
                    value(v, inner)
                else:
                    text = f32(v) if kind == _KIND_F32 else f64(v)
                    if text == "null":
                        raise _non_finite(v, kind)
                    app(sep + key + colon + text)
                sep = next_sep
        else:
            d = obj.__dict__
            for name, key, skip, kind, default in spec:
                v = d[name]
                if skip:
                    if skip == _IF_NONE:
                        if v is None:
                            continue
                    elif skip == _IF_EMPTY:
                        if not v:
                            continue
                    elif _is_skipped(skip, v, default):
                        continue
                t = type(v)
                if t is str:
                    app(sep + key + colon + enc(v))
                elif kind == _GENERIC or v is None:
                    if t is int and lo <= v <= hi:
                        app(sep + key + colon + int_repr(v))
                    else:
                        app(sep + key + colon)
                        value(v, inner)
                else:
                    text = f32(v) if kind == _KIND_F32 else f64(v)
                    if text == "null":
                        raise _non_finite(v, kind)
                    app(sep + key + colon + text)
                sep = next_sep
        if sep is first_sep:
            app("{}")
        else:
            app(close[level] + "}")

    value(obj, 0)
    return "".join(parts)


def _object_key(k: Any) -> str:
    # serde_json writes string-like map keys (str enums such as SessionLane) as strings.
    if isinstance(k, enum.Enum) and isinstance(k.value, str):
        return k.value
    if isinstance(k, str):
        return str(k)
    raise DocumentError(f"cannot write a JSON object key of type {type(k).__name__}")


def _shaped_entries(obj: BaseModel, spec: tuple[_FieldSpec, ...]) -> list[tuple[str, Any, int]]:
    """Keys to write for a model read from the wire: era-absent fields and unknown keys."""
    meta = obj.wire_meta() if isinstance(obj, WireModel) else None
    absent = meta.absent if meta is not None else None
    anchors = meta.anchors if meta is not None else None
    extra = obj.__pydantic_extra__ or {}
    fields_set = obj.__pydantic_fields_set__
    d = obj.__dict__
    entries: list[tuple[str, Any, int]] = []
    written: set[str] = set()

    def add_extras(after: str | None) -> None:
        if anchors is None:
            return
        for k in anchors.get(after, ()):
            if k in extra and k not in written:
                written.add(k)
                entries.append((encode_basestring(k), extra[k], _GENERIC))

    add_extras(None)
    for name, key, skip, kind, default in spec:
        v = d[name]
        if not (
            (skip and _is_skipped(skip, v, default))
            or (
                absent is not None
                and name in absent
                and name not in fields_set
                and bool(v == default)
            )
        ):
            entries.append((key, v, kind))
        add_extras(name)
    for k, v in extra.items():
        if k not in written:
            entries.append((encode_basestring(k), v, _GENERIC))
    return entries


# --- public API --------------------------------------------------------------------------


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Only a lone surrogate gets here; Rust strings cannot hold one.
        raise DocumentError(
            f"cannot write {what}: string contains a lone surrogate "
            f"({text[exc.start : exc.end]!a} at character {exc.start})"
        ) from None


def _describe(obj: Any) -> str:
    if isinstance(obj, BaseModel):
        return type(obj).__name__
    if isinstance(obj, list) and obj and isinstance(obj[0], BaseModel):
        return f"list[{type(obj[0]).__name__}]"
    return type(obj).__name__


def dumps(obj: BaseModel | Sequence[BaseModel] | Any) -> bytes:
    """Serialise a model (or a list of models) exactly like ``serde_json::to_vec_pretty``.

    Raises:
        DocumentError: a string holds a lone surrogate, or a value is not JSON.
    """
    out = _orjson_dump(obj, _PRETTY) if _orjson_dump is not None else _fast_dump(obj, 2)
    if out is not None:
        return out
    return _encode(_emit(obj, True), _describe(obj))


def dumps_compact(obj: BaseModel | Sequence[BaseModel] | Any) -> bytes:
    """Serialise like ``serde_json::to_vec`` (no whitespace); the bytes digests are made of."""
    out = _orjson_dump(obj, 0) if _orjson_dump is not None else _fast_dump(obj, None)
    if out is not None:
        return out
    return _encode(_emit(obj, False), _describe(obj))


@lru_cache(maxsize=256)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


# A JSON string escape of a UTF-16 surrogate; checked further only when present.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:
        # json.loads turns 1e400 into inf; serde_json refuses it ("number out of range").
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    # Rare: the wire models refuse the object if a repeated key is one of their fields.
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for key, _ in pairs:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    return _DuplicateKeys(pairs, list(repeated))


def _parse(raw: bytes, what: str, source: str | None) -> Any:
    def fail(message: str) -> DocumentError:
        return DocumentError(f"{what}{message}", source=source, errors=[("", message)])

    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32, serde does not.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"document is not valid UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise fail(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise fail(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise fail("invalid JSON: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(raw) is not None:
        # serde_json rejects an escaped lone surrogate; json.loads lets it through.
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise fail("invalid JSON: string contains a lone surrogate escape") from None
    return doc


def _wire_path(loc: tuple[int | str, ...], doc: Any) -> str:
    """The document path of a pydantic error location.

    pydantic inserts union-member names (``type=text``, ``str``, ``list[...]``) into error
    locations; walking the parsed document keeps only the segments that exist in it (plus a
    final missing key).
    """
    path: list[str] = []
    node = doc
    last = len(loc) - 1
    for i, segment in enumerate(loc):
        if isinstance(node, dict) and isinstance(segment, str) and segment in node:
            node = node[segment]
            path.append(segment)
        elif isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
            node = node[segment]
            path.append(str(segment))
        elif i == last and isinstance(node, dict) and not _is_variant(segment):
            path.append(str(segment))
    return ".".join(path)


def _is_variant(segment: int | str) -> bool:
    # pydantic names union members "type=<tag>" (our tags), "str", "list[...]", ...
    return isinstance(segment, str) and (
        segment.startswith(("type=", "list[", "dict[", "function-"))
        or segment in ("str", "int", "list", "dict")
    )


@overload
def loads(
    tp: type[M], data: bytes | str, *, source: str | None = None, max_bytes: int = ...
) -> M: ...
@overload
def loads(
    tp: Any, data: bytes | str, *, source: str | None = None, max_bytes: int = ...
) -> Any: ...
def loads(
    tp: Any,
    data: bytes | str,
    *,
    source: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """Parse and validate a document into ``tp`` (a model class or ``list[Model]``).

    The model records the document's era shape and unknown-key positions, so that
    :func:`dumps` writes it back unchanged.

    Args:
        tp: the model class, or ``list[Model]``.
        data: the document bytes (UTF-8) or text.
        source: what the document is (a key or file name), used in error messages.
        max_bytes: size cap, checked before parsing.

    Raises:
        DocumentTooLargeError: ``data`` is larger than ``max_bytes``.
        DocumentError: empty, not UTF-8, not JSON, or not the expected schema; ``.errors``
            lists ``(field path, message)`` pairs, first problem first.
    """
    # With a source, DocumentError names it in its "[document=...]" context block.
    what = "" if source is not None else f"{_type_name(tp)} document: "
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise DocumentTooLargeError(
            f"{what}document of {len(raw)} bytes exceeds the {max_bytes} byte limit",
            source=source,
            errors=[("", "document too large")],
        )
    # A large document becomes thousands of tracked objects; with the cyclic GC on, their
    # allocation triggers gen0/gen1 passes that promote them, and the full collections that
    # follow walk every live object of the process (30-45 ms each with aioboto3 loaded; a
    # 5 MB session: about 45 of 100 ms per load in the async store). Pausing it here defers
    # that to one pass over the new objects. From 128 KiB: a 220 KiB load on SeaweedFS
    # (bench/transport.py) fell from 7.9 to 5.1 ms of client CPU at concurrency 1 and from
    # 7.2 to 4.7 ms at 16; at 22 KiB no gain showed. Only if it was on; threads racing here
    # at worst re-enable it early.
    with GcPaused(len(raw) >= _GC_PAUSE_BYTES):
        fast = _load_fast(tp, raw)
        if fast is not _MISS:
            return fast
        if not raw.strip():
            raise DocumentError(f"{what}empty document", source=source, errors=[("", "empty")])
        return _validate(tp, _parse(raw, what, source), what, source)


def from_value(tp: Any, doc: Any, *, source: str | None = None) -> Any:
    """Validate an already-parsed JSON value (``json.loads`` output) as :func:`loads` does.

    The result records its era shape like a loaded document, so :func:`dumps` writes the
    same bytes back.
    """
    what = "" if source is not None else f"{_type_name(tp)} document: "
    return _validate(tp, doc, what, source)


def _validate(tp: Any, doc: Any, what: str, source: str | None) -> Any:
    try:
        return _adapter(tp).validate_python(doc, context=WIRE_CONTEXT)
    except ValidationError as exc:
        errors = [(_wire_path(tuple(err["loc"]), doc), err["msg"]) for err in exc.errors()]
        first_path, first_msg = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DocumentError(
            f"{what}invalid {_type_name(tp)} at {first_path or '<root>'}: {first_msg}{more}",
            source=source,
            errors=errors,
        ) from None


# --- fast path (pydantic-core, orjson) ---------------------------------------------------
#
# Built once per type on first use (not at import), from the type's own core schema:
#
# * validator: the recording wrap validator removed, unknown keys refused, tagged unions
#   switched from the Python discriminator to the plain ``type`` key (an unknown tag fails),
#   and every always-written defaulted field's default replaced by a factory that raises
#   ``_ShapeNeeded`` (an absent field is an older era, whose shape must be recorded).
#   Any failure sends the document to the recording path, which gives the same result or the
#   same error it always gave. Validation never depends on the path taken.
# * serializer: wire keys, ``serialization_exclude``/``serialization_exclude_if`` for the
#   skip rules, and a plain function on float fields that writes f32 values with f32-shortest
#   digits and declines (``_Decline``) what pydantic-core would lay out unlike serde_json.

_MISS: Final[Any] = object()


class _ShapeNeeded(Exception):
    """An always-written field is absent: the document needs the shape-recording path."""


class _Decline(Exception):
    """The fast serializer cannot write this value exactly as serde_json would."""


def _raise_shape_needed() -> Any:
    raise _ShapeNeeded


def _is_none(v: Any) -> bool:
    return v is None


def _is_falsy(v: Any) -> bool:
    return not v


def _is_false(v: Any) -> bool:
    return v is False


def _ser_f64(v: Any) -> Any:
    if v is None:
        return None
    x = float(v)
    # pydantic-core writes 1e16 as "1e+16" and a non-finite value as null; serde refuses
    # the latter and writes "1e16". Both go to the Python emitter.
    if not (-1e16 < x < 1e16):
        raise _Decline
    return x


def _ser_float_in(v: Any) -> Any:
    # A field declared with a float inside (``F64 | None``): written as the emitter writes it.
    if v is None or type(v) is int:
        return v
    if type(v) is not float or not -1e16 < v < 1e16:
        raise _Decline
    return v


def _ser_f32(v: Any) -> Any:
    if v is None:
        return None
    text = format_f32(v)
    if text == "null":
        raise _Decline
    x = float(text)
    # The f32-shortest digits survive as an f64 (at most 9 digits); only the decimal/
    # scientific switch differs (f32: 1e-6..1e13, f64: 1e-5..1e16), and from 1e16 on
    # pydantic-core writes "1e+16".
    if not -1e16 < x < 1e16 or format_f64(x) != text:
        raise _Decline
    return x


_build_lock = threading.Lock()
_fast_validators: dict[Any, SchemaValidator | None] = {}
_shaped_validators: dict[Any, SchemaValidator | None] = {}
_fast_serializers: dict[Any, SchemaSerializer | None] = {}
# Per class: the fields whose values can hold models, and the opaque (JSON value) fields;
# both are walked before fast serialisation.
_model_children: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _mentions(tp: Any, what: Callable[[Any], bool]) -> bool:
    return what(tp) or any(_mentions(arg, what) for arg in typing.get_args(tp))


def _is_model_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_float(tp: Any) -> bool:
    return tp is float


def _is_any(tp: Any) -> bool:
    return tp is Any


def _children(cls: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    entry = _model_children.get(cls)
    if entry is None:
        if not cls.__pydantic_fields_complete__:
            cls.model_rebuild()
        models: list[str] = []
        opaque: list[str] = []
        for name, info in cls.model_fields.items():
            if _mentions(info.annotation, _is_model_type):
                models.append(name)
            elif _mentions(info.annotation, _is_any):
                opaque.append(name)
        entry = (tuple(models), tuple(opaque))
        _model_children[cls] = entry
    return entry


def _schema_classes(schema: Any, out: set[type]) -> None:
    if isinstance(schema, dict):
        cls = schema.get("cls")
        if schema.get("type") == "model" and isinstance(cls, type):
            out.add(cls)
        for key, value in schema.items():
            if key != "cls":
                _schema_classes(value, out)
    elif isinstance(schema, list):
        for item in schema:
            _schema_classes(item, out)


def _core_schema(tp: Any) -> tuple[Any, set[type]]:
    """The type's core schema, with every model class in it fully built."""
    adapter = _adapter(tp)
    schema = adapter.core_schema
    if not isinstance(schema, dict):
        adapter.rebuild(force=True)
        schema = adapter.core_schema
    classes: set[type] = set()
    _schema_classes(schema, classes)
    for cls in classes:
        if issubclass(cls, BaseModel) and not cls.__pydantic_fields_complete__:
            cls.model_rebuild()
    return schema, classes


def _is_shape_recorder(node: dict[str, Any]) -> bool:
    function = node.get("function")
    if not isinstance(function, dict):
        return False
    fn = getattr(function.get("function"), "__func__", None)
    return fn is not None and fn is getattr(WireModel._s3_record_wire_shape, "__func__", None)


def _fast_validation_schema(node: Any, cls: type | None = None, shaped: bool = False) -> Any:
    """The fast-path copy of a validation schema (see above).

    ``shaped``: the variant for :func:`_shaped_load`, which keeps unknown keys and the
    defaults of absent fields, and leaves recording the shape to a walk afterwards.
    """
    extra = "allow" if shaped else "forbid"

    def copy(node: Any, cls: type | None = None) -> Any:
        if isinstance(node, list):
            return [copy(item) for item in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind == "function-wrap" and _is_shape_recorder(node):
            inner = dict(node["schema"])
            if "ref" in node:
                inner["ref"] = node["ref"]
            return copy(inner)
        if kind == "model":
            out = dict(node)
            out["config"] = {**node.get("config", {}), "extra_fields_behavior": extra}
            out["schema"] = copy(node["schema"], node["cls"])
            return out
        if kind == "model-fields" and cls is not None and issubclass(cls, WireModel):
            era = () if shaped else cls._s3_shape()[0]
            fields: dict[str, Any] = {}
            for name, field in node["fields"].items():
                field = dict(field)
                inner = copy(field["schema"])
                if name in era and inner.get("type") == "default":
                    inner = {
                        k: v
                        for k, v in inner.items()
                        if k not in ("default", "default_factory", "default_factory_takes_data")
                    }
                    inner["default_factory"] = _raise_shape_needed
                field["schema"] = inner
                fields[name] = field
            return {**node, "fields": fields, "extra_behavior": extra}
        if kind == "tagged-union" and callable(node.get("discriminator")):
            choices = {
                tag[5:]: copy(choice)
                for tag, choice in node["choices"].items()
                if tag.startswith("type=") and tag != "type=*"
            }
            out = {k: v for k, v in node.items() if k not in ("choices", "discriminator")}
            return {**out, "choices": choices, "discriminator": "type"}
        return {k: (v if k == "cls" else copy(v, cls)) for k, v in node.items()}

    return copy(node, cls)


def _fast_serialization_schema(node: Any, cls: type | None = None) -> Any:
    if isinstance(node, list):
        return [_fast_serialization_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind == "model":
        out = dict(node)
        out["config"] = {**node.get("config", {}), "ser_json_inf_nan": "null"}
        out["schema"] = _fast_serialization_schema(node["schema"], node["cls"])
        return out
    if kind == "model-fields" and cls is not None and issubclass(cls, BaseModel):
        spec = {
            name: (key, skip, fkind, default)
            for name, key, skip, fkind, default in _class_spec(cls)
        }
        fields = {}
        for name, field in node["fields"].items():
            field = dict(field)
            inner = _fast_serialization_schema(field["schema"])
            key, skip, fkind, default = spec[name]
            field["serialization_alias"] = json.loads(key)
            field.pop("serialization_exclude", None)
            field.pop("serialization_exclude_if", None)
            if skip == _NEVER:
                field["serialization_exclude"] = True
            elif skip == _IF_NONE:
                field["serialization_exclude_if"] = _is_none
            elif skip == _IF_EMPTY:
                field["serialization_exclude_if"] = _is_falsy
            elif skip == _IF_FALSE:
                field["serialization_exclude_if"] = _is_false
            elif skip == _IF_DEFAULT:
                field["serialization_exclude_if"] = _equals(default)
            function: Callable[[Any], Any] | None = None
            if fkind != _GENERIC:
                function = _ser_f32 if fkind == _KIND_F32 else _ser_f64
            elif _mentions(cls.model_fields[name].annotation, _is_float):
                function = _ser_float_in
            if function is not None:
                inner = {
                    **inner,
                    "serialization": pydantic_core.core_schema.plain_serializer_function_ser_schema(
                        function
                    ),
                }
            field["schema"] = inner
            fields[name] = field
        return {**node, "fields": fields}
    if kind == "tagged-union" and callable(node.get("discriminator")):
        # The Python discriminator would run once per value; pydantic-core reads the tag
        # itself, and a raw variant (unknown tag) is found by trying the members in turn.
        choices = {
            (tag[5:] if tag != "type=*" else "*"): _fast_serialization_schema(choice)
            for tag, choice in node["choices"].items()
        }
        out = {k: v for k, v in node.items() if k not in ("choices", "discriminator")}
        return {**out, "choices": choices, "discriminator": "type"}
    return {k: (v if k == "cls" else _fast_serialization_schema(v, cls)) for k, v in node.items()}


def _equals(default: Any) -> Callable[[Any], bool]:
    def is_default(v: Any) -> bool:
        return bool(v == default)

    return is_default


def _without_prebuilt(classes: set[type], build: Callable[[], Any]) -> Any:
    """Run ``build`` while pydantic-core cannot reuse the classes' own validators/serializers.

    pydantic-core replaces a complete model class's schema by the validator/serializer the
    class already has (``__pydantic_complete__``); the fast path needs its own copies.
    """
    saved = {cls: cls.__dict__.get("__pydantic_complete__") for cls in classes}
    try:
        for cls in classes:
            type.__setattr__(cls, "__pydantic_complete__", False)
        return build()
    finally:
        for cls, value in saved.items():
            if value is None:
                type.__delattr__(cls, "__pydantic_complete__")
            else:
                type.__setattr__(cls, "__pydantic_complete__", value)


def _fast_validator(tp: Any) -> SchemaValidator | None:
    return _validator(tp, shaped=False)


def _shaped_validator(tp: Any) -> SchemaValidator | None:
    return _validator(tp, shaped=True)


def _validator(tp: Any, *, shaped: bool) -> SchemaValidator | None:
    """The fast (unknown keys refused) or shaped validator of ``tp``, built once."""
    cache = _shaped_validators if shaped else _fast_validators
    try:
        return cache[tp]
    except KeyError:
        pass
    except TypeError:  # unhashable type expression
        return None
    with _build_lock:
        if tp not in cache:
            validator: SchemaValidator | None
            try:
                schema, classes = _core_schema(tp)
                fast = _fast_validation_schema(schema, shaped=shaped)
                validator = _without_prebuilt(classes, lambda: SchemaValidator(fast))
            except Exception:  # pragma: no cover - the recording path still works
                validator = None
            cache[tp] = validator
    return cache[tp]


def _fast_serializer(tp: Any) -> SchemaSerializer | None:
    try:
        return _fast_serializers[tp]
    except KeyError:
        pass
    with _build_lock:
        if tp not in _fast_serializers:
            serializer: SchemaSerializer | None
            try:
                schema, classes = _core_schema(tp)
                fast = _fast_serialization_schema(schema)
                serializer = _without_prebuilt(classes, lambda: SchemaSerializer(fast))
            except Exception:  # pragma: no cover - the Python emitter still works
                serializer = None
            _fast_serializers[tp] = serializer
    return _fast_serializers[tp]


def _pydantic_core_parse(raw: bytes) -> Any:
    return pydantic_core.from_json(raw, allow_inf_nan=False)


def _pydantic_core_pretty(value: Any) -> bytes:
    return pydantic_core.to_json(value, indent=2)


# orjson parses about 1.5x and writes about 5x faster than pydantic-core's own JSON functions,
# which stand in when orjson is not installed.
_json_parse: Callable[[bytes], Any] = _pydantic_core_parse
_json_pretty: Callable[[Any], bytes] = _pydantic_core_pretty
if orjson is not None:
    _json_parse = orjson.loads
    _json_pretty = functools.partial(orjson.dumps, option=orjson.OPT_INDENT_2)


def _fast_load(tp: Any, raw: bytes) -> Any:
    """``tp`` validated from ``raw`` without the recording path, or ``_MISS``."""
    validator = _fast_validator(tp)
    if validator is None:
        return _MISS
    try:
        doc = _json_parse(raw)
        # Canonical form only: equal bytes mean no repeated key, no "-0", no number that
        # reads back differently, nothing serde_json would refuse or write otherwise.
        if _json_pretty(doc) != raw:
            return _MISS
        return validator.validate_python(doc)
    except (ValueError, TypeError, _ShapeNeeded):
        # ValueError covers orjson.JSONDecodeError and pydantic's ValidationError.
        return _MISS


def _shaped_load(tp: Any, raw: bytes) -> Any:
    """``tp`` from a canonical ``raw`` that has unknown keys or absent fields, or ``_MISS``."""
    try:
        doc = _json_parse(raw)
        if _json_pretty(doc) != raw:
            return _MISS
    except (ValueError, TypeError):
        return _MISS
    return _validate_shaped(tp, doc)


def _validate_shaped(tp: Any, doc: Any) -> Any:
    """Validate in Rust keeping unknown keys and defaulting absent fields, then record shapes.

    The walk afterwards gives each model the record the recording validator would give it;
    only models with unknown keys or absent era fields get one, and only those look at their
    input object's key order.
    """
    validator = _shaped_validator(tp)
    if validator is None:
        return _MISS
    try:
        result = validator.validate_python(doc)
        _record_shapes(result, doc)
    except (ValueError, TypeError, _ShapeNeeded):
        return _MISS
    return result


def _load_fast(tp: Any, raw: bytes) -> Any:
    """:func:`_fast_load`, then :func:`_shaped_load` on the same parse, or ``_MISS``."""
    validator = _fast_validator(tp)
    if validator is None:
        return _MISS
    try:
        doc = _json_parse(raw)
        if _json_pretty(doc) != raw:
            return _MISS
    except (ValueError, TypeError):
        return _MISS
    if type(doc) is dict and _lacks_era_field(tp, doc):
        # An older writer's document: the fast validator would validate every message before
        # meeting the absent top-level field, then the shaped path would do it all again.
        return _validate_shaped(tp, doc)
    try:
        return validator.validate_python(doc)
    except (ValueError, TypeError, _ShapeNeeded):
        # A newer writer's unknown keys or an older era's missing fields (or invalid).
        return _validate_shaped(tp, doc)


# Per model class: for each era field (always written, defaulted when absent), the input
# keys it may be read from.
_era_spellings: dict[type, tuple[tuple[str, ...], ...]] = {}


def _lacks_era_field(tp: Any, doc: dict[str, Any]) -> bool:
    """Whether a top-level era field of model ``tp`` is absent from ``doc``."""
    spellings = _era_spellings.get(tp)
    if spellings is None:
        if not (isinstance(tp, type) and issubclass(tp, WireModel)):
            return False
        era, input_keys = tp._s3_shape()
        by_field: dict[str, list[str]] = {name: [] for name in era}
        for key, name in input_keys.items():
            if name in by_field:
                by_field[name].append(key)
        spellings = tuple(tuple(keys) for keys in by_field.values())
        _era_spellings[tp] = spellings
    return any(not any(key in doc for key in keys) for keys in spellings)


# Per class: field name -> the input keys it may be read from (name, aliases).
_spellings: dict[type, dict[str, tuple[str, ...]]] = {}


def _field_spellings(cls: type, known: dict[str, str]) -> dict[str, tuple[str, ...]]:
    by_field: dict[str, list[str]] = {}
    for key, field in known.items():
        by_field.setdefault(field, []).append(key)
    spellings = {name: tuple(keys) for name, keys in by_field.items()}
    _spellings[cls] = spellings
    return spellings


def _record_shapes(value: Any, source: Any) -> None:
    """Give every model in ``value`` the shape record of its input object in ``source``."""
    stack = [(value, source)]
    pop = stack.pop
    push = stack.append
    while stack:
        v, src = pop()
        t = type(v)
        if t is list:
            if type(src) is not list or len(src) != len(v):
                raise _ShapeNeeded
            stack.extend(zip(v, src, strict=True))
            continue
        if t is dict:
            if type(src) is not dict or len(src) != len(v):
                raise _ShapeNeeded
            # Map values pair up in order: the canonical check ruled out repeated keys.
            stack.extend(zip(v.values(), src.values(), strict=True))
            continue
        if not isinstance(v, WireModel):
            continue
        if type(src) is not dict:
            # A model read from something else (a PermissionRule string): nothing to record.
            continue
        cls = t
        era, known = _SHAPES.get(cls) or cls._s3_shape()
        absent: frozenset[str] | None = None
        if era:
            fields_set = v.__pydantic_fields_set__
            missing = [name for name in era if name not in fields_set]
            if missing:
                absent = frozenset(missing)
        anchors: dict[str | None, list[str]] | None = None
        extra = v.__pydantic_extra__
        if extra:
            anchors = {}
            previous: str | None = None
            for key in src:
                field = known.get(key)
                if field is not None:
                    previous = field
                elif key in extra:
                    anchors.setdefault(previous, []).append(key)
        if absent is not None or anchors is not None:
            object.__setattr__(v, "__pydantic_private__", {"_s3_wire": WireMeta(absent, anchors)})
        models, _ = _model_children.get(cls) or _children(cls)
        spellings = _spellings.get(cls) or _field_spellings(cls, known)
        d = v.__dict__
        for name in models:
            child = d[name]
            if child is None or type(child) is str:
                continue
            keys = [key for key in spellings[name] if key in src]
            if not keys:
                continue  # a default, built without the wire context: no record
            if len(keys) > 1:
                # Two spellings of one field (``tasks`` and ``todos``): let the recording
                # path decide which one counts.
                raise _ShapeNeeded
            push((child, src[keys[0]]))


def _plain_json(value: Any) -> bool:
    """True if pydantic-core writes ``value`` (an opaque value) exactly as serde_json does.

    Plain dict (string keys) / list / str / bool / None, integers within i64/u64 and finite
    floats below 1e16 (pydantic-core writes ``1e+16``, serde_json ``1e16``); a model, an enum,
    a tuple or anything else inside an opaque value goes to the Python emitter.
    """
    stack = [value]
    pop = stack.pop
    extend = stack.extend
    lo = _INT_MIN
    hi = _INT_MAX
    while stack:
        v = pop()
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if not lo <= v <= hi:
                return False
        elif t is float:
            if not -1e16 < v < 1e16:
                return False
        elif t is dict:
            for k in v:
                if type(k) is not str:
                    return False
            extend(v.values())
        elif t is list:
            extend(v)
        else:
            return False
    return True


def _plain_json_orjson(value: Any) -> bool:
    """:func:`_plain_json` in one orjson call (it refuses what the Python check refuses).

    orjson raises for integers beyond i64/u64, non-string keys, models and, with the
    pass-through options, datetimes, dataclasses and subclasses of the JSON types. A
    positive exponent in its output (``1e+16``; orjson 3.10 writes ``1e16``) is a float
    of 1e16 or more, which pydantic-core writes as ``1e+16``; a string holding such text only
    costs the slower path. It writes a UUID as its string where the Python emitter refuses
    it.
    """
    try:
        out = orjson.dumps(value, option=_PASSTHROUGH)
    except TypeError:  # orjson.JSONEncodeError
        return False
    return b"e" not in out or _POSITIVE_EXPONENT.search(out) is None


_POSITIVE_EXPONENT: Final = re.compile(rb"[0-9]e\+?[0-9]")
_opaque_ok: Callable[[Any], bool] = _plain_json
if orjson is not None:
    _PASSTHROUGH = (
        orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
    _opaque_ok = _plain_json_orjson


def _needs_emitter(obj: Any) -> bool:
    """True if the Python emitter must write ``obj``.

    That is when a model in it has a recorded shape, unknown keys or private state, or an
    opaque value in it is not plain JSON the way :func:`_plain_json` checks.
    """
    stack = [obj]
    pop = stack.pop
    push = stack.append
    extend = stack.extend
    children = _model_children
    opaque_ok = _opaque_ok
    while stack:
        o = pop()
        t = type(o)
        if t is list:
            extend(o)
            continue
        if t is dict:
            extend(o.values())
            continue
        entry = children.get(t)
        if entry is None:
            if not isinstance(o, BaseModel):
                continue
            entry = _children(t)
        if o.__pydantic_private__ is not None or o.__pydantic_extra__:
            return True
        d = o.__dict__
        models, opaque = entry
        for name in models:
            push(d[name])
        for name in opaque:
            v = d[name]
            if v is not None and type(v) is not str and not opaque_ok(v):
                return True
    return False


def _fast_dump(obj: Any, indent: int | None) -> bytes | None:
    t = type(obj)
    if t is list:
        if not obj:
            return None
        first = type(obj[0])
        if not issubclass(first, WireModel) or any(type(item) is not first for item in obj):
            return None
        tp: Any = list[first]  # type: ignore[valid-type]
    elif isinstance(obj, WireModel):
        tp = t
    else:
        return None
    if _needs_emitter(obj):
        return None
    serializer = _fast_serializer(tp)
    if serializer is None:
        return None
    try:
        out = serializer.to_json(obj, indent=indent, by_alias=True, warnings="error")
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        return None
    return out


# --- orjson writer -----------------------------------------------------------------------
#
# orjson writes plain values as serde_json does (same pretty layout, escaping and f64
# digits), except that it spells a positive exponent "1e+16" where serde writes "1e16". So a
# model is turned into plain dicts (wire keys, skip rules applied) and handed to orjson,
# with every f32 field and every f64 field of 1e16 or more pre-formatted as an
# ``orjson.Fragment``. A model with a recorded shape or unknown keys is laid out as the
# emitter lays it out (_shaped_entries). Anything else is declined to the Python emitter: a
# non-finite float field, an unknown key spelt like a written field, and whatever orjson
# refuses (integers beyond i64/u64, non-string keys, lone surrogates, datetimes,
# dataclasses, models inside opaque values). An opaque float of 1e16 or more shows in the
# output as a digit, "e+" and a digit, which sends the document to the emitter too.

# (attribute name, wire key, skip rule, float kind, default, holds models or enum-keyed maps)
_PlainSpec = tuple[str, str, int, int, Any, bool]
_LEAF_TYPES: Final = frozenset({str, int, float, bool, type(None)})
_plain_specs: dict[type, tuple[_PlainSpec, ...]] = {}
_E_PLUS: Final = re.compile(rb"[0-9]e\+[0-9]")


def _needs_conversion(tp: Any) -> bool:
    # Models become dicts, and maps keyed by an enum need string keys for orjson.
    return _is_model_type(tp) or (
        typing.get_origin(tp) is dict and typing.get_args(tp)[:1] != (str,)
    )


def _plain_spec(cls: type[BaseModel]) -> tuple[_PlainSpec, ...]:
    spec = _plain_specs.get(cls)
    if spec is None:
        if not cls.__pydantic_fields_complete__:
            cls.model_rebuild()
        fields = cls.model_fields
        spec = tuple(
            (
                name,
                json.loads(key),
                skip,
                kind,
                default,
                _mentions(fields[name].annotation, _needs_conversion),
            )
            for name, key, skip, kind, default in _class_spec(cls)
        )
        _plain_specs[cls] = spec
    return spec


def _to_plain(obj: Any) -> Any:
    """``obj`` as plain values orjson writes like serde_json; raises ``_Decline`` if it cannot."""
    specs = _plain_specs
    plain_spec = _plain_spec
    # Checked before isinstance(v, BaseModel): pydantic's metaclass makes that check slow.
    plain = _LEAF_TYPES
    model_base = BaseModel
    fragment = orjson.Fragment
    f32 = format_f32
    f64 = format_f64

    def field(v: Any, kind: int, convert: bool) -> Any:
        if convert:
            return value(v)
        if kind and v is not None:
            x = float(v)
            if kind == _KIND_F32:
                text = f32(x)
                if text == "null":
                    raise _Decline
                return fragment(text)
            if -1e16 < x < 1e16:
                return x
            if x - x == 0.0:
                return fragment(f64(x))
            raise _Decline
        return v

    def shaped(o: BaseModel) -> dict[str, Any]:
        # The order _shaped_entries gives the emitter: unknown keys at their anchors, fields
        # of an older era left out while they still hold their default.
        meta = o.wire_meta() if isinstance(o, WireModel) else None
        absent = meta.absent if meta is not None else None
        anchors = meta.anchors if meta is not None else None
        extra = o.__pydantic_extra__ or {}
        fields_set = o.__pydantic_fields_set__
        d = o.__dict__
        out: dict[str, Any] = {}
        written: set[str] = set()

        def put(key: str, v: Any) -> None:
            if key in out:
                # An unknown key spelt like a field's wire key: a dict cannot hold both.
                raise _Decline
            out[key] = v

        def add_extras(after: str | None) -> None:
            if anchors is not None:
                for k in anchors.get(after, ()):
                    if k in extra and k not in written:
                        written.add(k)
                        put(k, extra[k])

        add_extras(None)
        for name, key, skip, kind, default, convert in specs.get(type(o)) or plain_spec(type(o)):
            v = d[name]
            if not (
                (skip and _is_skipped(skip, v, default))
                or (
                    absent is not None
                    and name in absent
                    and name not in fields_set
                    and bool(v == default)
                )
            ):
                put(key, field(v, kind, convert))
            add_extras(name)
        for k, v in extra.items():
            if k not in written:
                put(k, v)
        return out

    def model(o: BaseModel) -> dict[str, Any]:
        if o.__pydantic_extra__ or o.__pydantic_private__ is not None:
            return shaped(o)
        d = o.__dict__
        out: dict[str, Any] = {}
        for name, key, skip, kind, default, convert in specs.get(type(o)) or plain_spec(type(o)):
            v = d[name]
            if skip:
                if skip == _IF_NONE:
                    if v is None:
                        continue
                elif skip == _IF_EMPTY:
                    if not v:
                        continue
                elif skip == _IF_FALSE:
                    if v is False:
                        continue
                elif skip == _IF_DEFAULT:
                    if v == default:
                        continue
                else:  # _NEVER
                    continue
            if convert:
                out[key] = value(v)
            elif kind and v is not None:
                x = float(v)
                if kind == _KIND_F32:
                    text = f32(x)
                    if text == "null":
                        raise _Decline
                    out[key] = fragment(text)
                elif -1e16 < x < 1e16:
                    out[key] = x
                elif x - x == 0.0:
                    out[key] = fragment(f64(x))
                else:
                    raise _Decline
            else:
                out[key] = v
        return out

    def value(v: Any) -> Any:
        t = type(v)
        if t is list:
            return [model(item) if type(item) in specs else value(item) for item in v]
        if t in specs:
            return model(v)
        if t in plain:
            return v
        if t is dict:
            return {(k if type(k) is str else _object_key(k)): value(item) for k, item in v.items()}
        if isinstance(v, model_base):
            return model(v)
        return v

    return value(obj)


# From this many list items at the top level (about 1 MB of session messages) a write runs
# with the cyclic GC paused, as a large read does (see loads).
_GC_PAUSE_ITEMS: Final = 400


def _many_items(obj: Any) -> bool:
    if type(obj) is list:
        return len(obj) >= _GC_PAUSE_ITEMS
    items = 0
    for v in obj.__dict__.values():
        if type(v) is list:
            items += len(v)
    return items >= _GC_PAUSE_ITEMS


def _orjson_dump_impl(obj: Any, option: int) -> bytes | None:
    if not (isinstance(obj, BaseModel) or type(obj) is list):
        return None
    # The plain copy is one container per model: a 5 MB session allocates enough of them
    # to set off full collections, which then walk every live object.
    try:
        with GcPaused(_many_items(obj)):
            out: bytes = orjson.dumps(_to_plain(obj), option=option | _PASSTHROUGH_TYPES)
    except (_Decline, DocumentError, TypeError):
        # TypeError covers orjson.JSONEncodeError.
        return None
    # "+" alone: a one-byte search is a memchr, "e+" a slow scan of text full of "e".
    if b"+" in out and _E_PLUS.search(out) is not None:
        return None
    return out


_orjson_dump: Callable[[Any, int], bytes | None] | None = None
_PRETTY = 0
# orjson would write datetimes and dataclasses, which the emitter refuses: make it raise.
_PASSTHROUGH_TYPES = 0
if orjson is not None:
    _orjson_dump = _orjson_dump_impl
    _PRETTY = orjson.OPT_INDENT_2
    _PASSTHROUGH_TYPES = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
