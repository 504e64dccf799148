"""A serverless handler (AWS Lambda style) that appends one turn to an agent session.

The store is built once per process, at import (the function's init phase), from the
environment, and every invocation reuses it: its HTTP connections, its blob cache and the
capability probe's answer. Nothing here holds credentials; boto3 takes them from the
standard chain (the function's role, or ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``).

Environment:

- ``S3STORE_URL=s3://bucket/prefix`` (required): where the sessions live;
- ``AWS_REGION``; ``AWS_ENDPOINT_URL`` for an S3-compatible server (LocalStack, SeaweedFS).

Event: ``{"session_id": "sess-1", "role": "user", "text": "hello"}``.
Result: ``{"session_id": ..., "messages": <count after the append>, "etag": ...}``.

The runtime install is ``pip install s3store`` (boto3, botocore, pydantic, blake3); the sync
store needs no aioboto3.
"""

from __future__ import annotations

import time
from typing import Any

from s3store import Message, S3SessionStore, SessionData

# Built at import, once per process. The client is opened on the first call and kept.
STORE = S3SessionStore()

_NEW_SESSION: dict[str, Any] = {
    "config": {
        "name": "lambda",
        "workspace": "/tmp",
        "max_context_length": 200000,
        "auto_compact": True,
    },
    "state": "Active",
    "messages": [],
    "context_usage": {"used_tokens": 0, "max_tokens": 200000, "percent": 0.0, "turns": 0},
    "total_usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    "tool_names": [],
    "thinking_enabled": False,
}


def _append(session: SessionData | None, session_id: str, message: Message) -> SessionData:
    """The session with ``message`` appended (a new session if there is none yet)."""
    now = int(time.time())
    if session is None:
        session = SessionData.model_validate(
            {**_NEW_SESSION, "id": session_id, "created_at": now, "updated_at": now}
        )
    return session.model_copy(update={"messages": [*session.messages, message], "updated_at": now})


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """Append ``event["text"]`` as one turn of ``event["session_id"]``.

    ``update()`` loads the session, applies the change and saves it with a compare-and-swap
    (If-Match, or create-only for a new session), retrying on a concurrent writer: two
    invocations appending to one session at once both land, in some order.
    """
    session_id = str(event["session_id"])
    message = Message.model_validate(
        {"role": event.get("role", "user"), "content": [{"type": "text", "text": event["text"]}]}
    )
    appended: list[int] = []

    def change(current: SessionData | None) -> SessionData:
        new = _append(current, session_id, message)
        appended.append(len(new.messages))
        return new

    result = STORE.update(session_id, change)
    return {"session_id": session_id, "messages": appended[-1], "etag": result.etag}
