"""Checks at the store's API boundary: the value a caller passes is what the method takes.

Every public write method calls one of these first, so a wrong value fails at once with a
typed error naming what was expected, never deep inside (``AttributeError: 'dict' object
has no attribute 'id'``) and never by writing a document the store cannot read back.

The rules: a method takes its model (``SessionData``, ``ArtifactStore``, ...) or, for the
array sidecars, a list (or tuple) of models. A ``dict`` (or a list of dicts) is accepted and
validated exactly as the wire format is read (:func:`s3store.codec.loads`), so what is
written is what a load returns; an invalid one raises :class:`DocumentError`. Anything else
raises :class:`InvalidArgumentError` (a ``TypeError``).
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from s3store.errors import ConfigurationError, DocumentError, InvalidArgumentError

M = TypeVar("M", bound=BaseModel)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# timedelta's own limit is 999999999 days; anything near it is a typo, not a policy.
_MAX_DURATION = timedelta(days=36500)


def _from_dict(tp: type[M], value: Any, what: str) -> M:
    from s3store import codec

    try:
        body = json.dumps(value, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"{what} is not JSON: {exc}", source=what) from None
    try:
        return codec.loads(tp, body, source=what)
    except DocumentError as exc:
        raise DocumentError(
            f"{what} is not a valid {tp.__name__}: {exc.summary}", source=what, errors=exc.errors
        ) from None


def model(value: Any, tp: type[M], what: str) -> M:
    """``value`` as a ``tp``: the model itself, or a dict validated as the wire format."""
    if isinstance(value, tp):
        return value
    if isinstance(value, Mapping):
        return _from_dict(tp, dict(value), what)
    raise InvalidArgumentError(
        f"{what} must be a {tp.__name__} (or a dict of its wire form), got {type(value).__name__}"
    )


def session(value: Any, what: str = "session") -> Any:
    """A ``SessionData`` for ``save``: the model, or a dict validated as one."""
    from s3store.models import SessionData

    return model(value, SessionData, what)


def models(value: Any, tp: type[M], what: str) -> list[M]:
    """A list of ``tp`` for the array sidecars: a list or tuple of models (or dicts)."""
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Sequence):
        raise InvalidArgumentError(
            f"{what} must be a list of {tp.__name__}, got {type(value).__name__}"
        )
    return [model(item, tp, f"{what}[{index}]") for index, item in enumerate(value)]


def update_result(value: Any, id: str) -> Any:
    """What an ``update()`` function returned: it must return the session to save."""
    if value is None:
        raise InvalidArgumentError(
            f"the update() function for {id!r} returned None: it must return the session to "
            "save (mutating the argument in place is not enough; return it)"
        )
    return session(value, "the session returned by the update() function")


def duration(value: Any, what: str) -> timedelta:
    """A non-negative duration: a timedelta, seconds (int or float), or a string such as
    ``"3600"``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"``."""
    seconds: float
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ConfigurationError(f"{what} must not be negative, got {value}")
        if value > _MAX_DURATION:
            raise ConfigurationError(f"{what} {value} is over the limit of 100 years")
        return value
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ConfigurationError(
                f"invalid {what} {value!r}: use seconds or a number and one unit "
                "(90s, 15m, 24h, 7d, 2w)"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise InvalidArgumentError(
            f"{what} must be a timedelta, seconds or a string like '7d', got {type(value).__name__}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise ConfigurationError(f"{what} must be a non-negative duration, got {value!r}")
    if seconds > _MAX_DURATION.total_seconds():
        raise ConfigurationError(f"{what} {value!r} is over the limit of 100 years")
    return timedelta(seconds=seconds)


def client(
    given: Any,
    adapter: type,
    store_type: type,
    endpoint_url: str | None,
    region_name: str | None,
    options: Mapping[str, Any],
) -> None:
    """At construction: refuse a client of the other flavour (a boto3 client given to the
    async store, an aioboto3 one to the sync store) or of no known kind, and options that
    would configure a client the store does not build (see ``config.refuse_client_options``).
    """
    from s3store._memory import MemoryClientBase
    from s3store.config import refuse_client_options

    store = store_type.__name__
    refuse_client_options(
        given, {"endpoint_url": endpoint_url, "region_name": region_name, **options}
    )
    if given is None or isinstance(given, MemoryClientBase):
        return
    want_async = inspect.iscoroutinefunction(getattr(adapter, "get", None))
    method = getattr(given, "put_object", None)
    if method is None:
        method = getattr(given, "get", None)
        if method is None or not callable(getattr(given, "put", None)):
            raise ConfigurationError(
                f"unsupported client type {type(given).__name__}: pass a boto3 / aioboto3 S3 "
                "client, an in-memory client, or an object client"
            )
    if not callable(method):
        raise ConfigurationError(f"unsupported client type {type(given).__name__}")
    botocore_client = getattr(getattr(given, "meta", None), "config", None) is not None
    if botocore_client:
        modules = [cls.__module__ for cls in type(given).__mro__]
        is_async = any(m.startswith(("aiobotocore", "aioboto3")) for m in modules)
    else:
        is_async = inspect.iscoroutinefunction(method)
    if is_async == want_async or (want_async and not botocore_client):
        return  # an object client's method may return an awaitable without being async def
    if want_async:
        raise ConfigurationError(
            f"{store} needs an async client (aioboto3 / aiobotocore), got a synchronous "
            f"{type(given).__name__}: use S3SessionStore with it, or pass an async client"
        )
    raise ConfigurationError(
        f"{store} needs a synchronous client (boto3), got an async "
        f"{type(given).__name__}: use AsyncS3SessionStore with it, or pass a boto3 client"
    )
