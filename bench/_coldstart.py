"""One cold start, as a serverless function sees it; run by ``bench/run.py`` in a fresh process.

``python bench/_coldstart.py async|sync ENDPOINT PREFIX`` imports s3store, builds a store
(and its client), saves one session, loads it back, and prints the phase times as JSON.
"""

import time

T0 = time.perf_counter()

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

SESSION: dict[str, Any] = {
    "id": "cold-0001",
    "config": {
        "name": "Cold",
        "workspace": "/w",
        "max_context_length": 200000,
        "auto_compact": True,
    },
    "state": "Active",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hello " * 150}]},
        {"role": "assistant", "content": [{"type": "text", "text": "world " * 150}]},
    ],
    "context_usage": {"used_tokens": 1, "max_tokens": 200000, "percent": 0.0, "turns": 1},
    "total_usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "tool_names": ["bash"],
    "thinking_enabled": False,
    "created_at": 1700000000,
    "updated_at": 1700000001,
}


def main() -> None:
    mode, endpoint, prefix = sys.argv[1:4]
    times: dict[str, float] = {}
    mark = T0

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name] = now - mark
        mark = now

    import s3store

    store_cls: Any = s3store.AsyncS3SessionStore if mode == "async" else s3store.S3SessionStore
    session_cls: Any = s3store.SessionData
    lap("import")
    # s3store imports its SDK lazily when it builds the client; import it here to time it.
    if mode == "async":
        import aioboto3  # noqa: F401
    else:
        import boto3  # noqa: F401
    lap("sdk_import")
    store = store_cls(bucket="s3store-bench", prefix=prefix, endpoint_url=endpoint)
    if mode == "async":

        async def run() -> int:
            nonlocal mark
            await store.__aenter__()
            lap("client")
            session = session_cls.model_validate(SESSION)
            lap("build")
            await store.save(session)
            lap("save")
            loaded = await store.load(session.id)
            assert loaded is not None
            assert loaded.id == session.id
            lap("load")
            requests: int = store.stats.total_requests
            await store.aclose()
            lap("close")
            return requests

        requests = asyncio.run(run())
    else:
        store.__enter__()
        lap("client")
        session = session_cls.model_validate(SESSION)
        lap("build")
        store.save(session)
        lap("save")
        loaded = store.load(session.id)
        assert loaded is not None
        assert loaded.id == session.id
        lap("load")
        requests = store.stats.total_requests
        store.close()
        lap("close")
    times["total"] = time.perf_counter() - T0
    times["requests"] = float(requests)
    print(json.dumps(times))


if __name__ == "__main__":
    main()
