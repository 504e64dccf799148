"""examples/lambda_handler.py run the way a function runtime runs it.

A fresh process with only environment configuration (``S3STORE_URL``, ``AWS_ENDPOINT_URL``,
the credentials) imports the module once, then invokes the handler several times, as warm
invocations do. Runs on every S3 server backend (moto, SeaweedFS, LocalStack via
``make test-localstack``); skipped on the in-memory client, which has no endpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3store import S3SessionStore
from tests.conftest import BUCKET, Backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The runtime's side: import the handler module once (init phase), then invoke it per event.
RUNTIME = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
module = importlib.import_module("lambda_handler")
store = module.STORE
for line in sys.stdin:
    result = module.handler(json.loads(line), None)
    assert module.STORE is store
    result["requests"] = store.stats.total_requests
    print(json.dumps(result), flush=True)
"""


def invoke(backend: Backend, prefix: str, events: list[dict[str, str]]) -> list[dict[str, object]]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(("AWS_", "PATH", "HOME", "LANG", "SYSTEMROOT"))
    }
    env.update(
        S3STORE_URL=f"s3://{BUCKET}/{prefix}",
        AWS_ENDPOINT_URL=str(backend.endpoint),
        PYTHONDONTWRITEBYTECODE="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME, str(EXAMPLES)],
        input="".join(json.dumps(event) + "\n" for event in events),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_handler_appends_turns_with_one_store_per_process(backend: Backend, prefix: str) -> None:
    if backend.endpoint is None:
        pytest.skip("the handler needs an S3 endpoint")
    events = [
        {"session_id": "sess-lambda", "role": "user", "text": "hello"},
        {"session_id": "sess-lambda", "role": "assistant", "text": "hi, how can I help?"},
        {"session_id": "sess-lambda", "role": "user", "text": "append a third turn"},
        {"session_id": "sess-other", "role": "user", "text": "another session"},
    ]
    results = invoke(backend, prefix, events)
    assert [r["messages"] for r in results] == [1, 2, 3, 1]
    assert all(r["etag"] for r in results)
    # One store for the process: the capability probe runs once, on the first invocation;
    # every later invocation costs exactly update()'s two requests (GET + conditional PUT).
    requests = [int(str(r["requests"])) for r in results]
    assert [b - a for a, b in itertools.pairwise(requests)] == [2, 2, 2]

    # A second cold start (a new process) sees what the first one wrote.
    again = invoke(backend, prefix, [{"session_id": "sess-lambda", "text": "after restart"}])
    assert again[0]["messages"] == 4

    with S3SessionStore(**backend.store_kwargs(prefix)) as store:
        session = store.load("sess-lambda")
        assert session is not None
        texts = [m.content[0].text for m in session.messages]  # type: ignore[union-attr]
        assert texts == ["hello", "hi, how can I help?", "append a third turn", "after restart"]
        assert [m.role for m in session.messages] == ["user", "assistant", "user", "user"]
        assert sorted(store.list()) == ["sess-lambda", "sess-other"]
