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

The emitter is one recursive function driven by per-class field specs (key text, skip rule,
float kind, default) computed once per model class; it does not go through ``model_dump``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any, Final, TypeVar, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from s3store._floatfmt import format_f32, format_f64
from s3store.errors import DocumentError, DocumentTooLargeError
from s3store.models import WIRE_CONTEXT, WireModel, WireRule, field_rules, wire_key

__all__ = ["DEFAULT_MAX_BYTES", "dumps", "dumps_compact", "loads"]

#: Size cap of one document, as in a3s-code (256 MiB).
DEFAULT_MAX_BYTES: Final = 256 * 1024**2

M = TypeVar("M", bound=BaseModel)

# Skip rules and float kinds as small ints: compared in the hot loop.
_ALWAYS, _IF_NONE, _IF_EMPTY, _IF_FALSE, _IF_DEFAULT, _NEVER = range(6)
_GENERIC, _KIND_F64, _KIND_F32 = range(3)

_RULE_TO_SKIP = {
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

    def value(v: Any, level: int) -> None:
        t = type(v)
        if t is str:
            app(enc(v))
        elif t is int:
            app(int_repr(v))
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
                elif ti is int:
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
                elif ti is int:
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
            app(int_repr(v))
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
                elif kind == _KIND_F32:
                    app(sep + key + colon + f32(v))
                else:
                    app(sep + key + colon + f64(v))
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
                    if t is int:
                        app(sep + key + colon + int_repr(v))
                    else:
                        app(sep + key + colon)
                        value(v, inner)
                elif kind == _KIND_F32:
                    app(sep + key + colon + f32(v))
                else:
                    app(sep + key + colon + f64(v))
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
    return _encode(_emit(obj, True), _describe(obj))


def dumps_compact(obj: BaseModel | Sequence[BaseModel] | Any) -> bytes:
    """Serialise like ``serde_json::to_vec`` (no whitespace); the bytes digests are made of."""
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


def _parse(raw: bytes, what: str, source: str | None) -> Any:
    def fail(message: str) -> DocumentError:
        return DocumentError(f"{what}{message}", source=source, errors=[("", message)])

    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32, serde does not.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"document is not valid UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
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
