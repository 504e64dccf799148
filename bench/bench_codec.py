"""Codec speed: parse + serialise of a large session vs plain ``json``.

Builds a ~5 MB session of 2,000 messages (text, tool_use with nested input, tool_result
blocks), then times ``codec.loads(SessionData, ...)`` + ``codec.dumps(...)`` against
``json.loads`` + ``json.dumps(indent=2, ensure_ascii=False)`` of the same bytes, taking the
median of several repeats. Run with ``.venv/bin/python bench/bench_codec.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from s3store import codec
from s3store.demo import session_config
from s3store.models import SessionData

# Words with non-ASCII text and characters that need escaping.
_WORDS = (
    *("the", "agent", "reads", "src/lib.rs", "and", "runs", "cargo", "test"),
    *("résumé", "ünïcode", "文件", "🚀", "quote", '"', "backslash", "\\"),
    *("tab", "\t", "newline", "\n", "bell\x07", "del\x7f", "slash/"),
)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def build_session(messages: int = 2000, seed: int = 7) -> dict[str, Any]:
    """A SessionData-shaped JSON value with ``messages`` varied messages."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(messages):
        if i % 2 == 0:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": _text(rng, 130)}]
            if i % 4 == 2:
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{i - 1:05d}",
                        "content": _text(rng, 700),
                        "is_error": rng.random() < 0.1,
                    }
                )
            out.append({"role": "user", "content": blocks})
        else:
            blocks = [
                {"type": "text", "text": _text(rng, 160)},
                {
                    "type": "tool_use",
                    "id": f"toolu_{i:05d}",
                    "name": "bash",
                    "input": {
                        "command": _text(rng, 8),
                        "timeout": 120000,
                        "env": {"RUST_LOG": "debug", "ratio": rng.random()},
                        "args": [_text(rng, 2) for _ in range(5)],
                        "options": {"cwd": "/work", "shell": True, "retries": None},
                    },
                },
            ]
            msg: dict[str, Any] = {"role": "assistant", "content": blocks}
            if i % 3 == 0:
                msg["reasoning_content"] = _text(rng, 40)
            out.append(msg)
    return {
        "id": "bench-session",
        "config": session_config("bench", "/work"),
        "state": "Active",
        "messages": out,
        "context_usage": {
            "used_tokens": 150000,
            "max_tokens": 200000,
            "percent": 0.75,
            "turns": 1000,
        },
        "total_usage": {
            "prompt_tokens": 1000000,
            "completion_tokens": 200000,
            "total_tokens": 1200000,
            "cache_read_tokens": None,
            "cache_write_tokens": None,
        },
        "total_cost": 12.3456,
        "cost_records": [],
        "tool_names": ["bash", "read", "write"],
        "thinking_enabled": False,
        "thinking_budget": None,
        "created_at": 1700000000,
        "updated_at": 1700000100,
        "tasks": [],
    }


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    doc = json.dumps(build_session(args.messages), indent=2, ensure_ascii=False).encode()
    # Canonical bytes: what the codec itself writes for this session.
    raw = codec.dumps(codec.loads(SessionData, doc))
    if codec.dumps(codec.loads(SessionData, raw)) != raw:
        raise SystemExit("round trip is not byte-identical")

    def plain() -> None:
        json.dumps(json.loads(raw), indent=2, ensure_ascii=False).encode()

    def ours() -> None:
        codec.dumps(codec.loads(SessionData, raw))

    def ours_load() -> None:
        codec.loads(SessionData, raw)

    session = codec.loads(SessionData, raw)

    def ours_dump() -> None:
        codec.dumps(session)

    plain()
    ours()  # warm caches (TypeAdapter, field specs)
    t_plain = _median_seconds(plain, args.repeats)
    t_ours = _median_seconds(ours, args.repeats)
    t_load = _median_seconds(ours_load, args.repeats)
    t_dump = _median_seconds(ours_dump, args.repeats)

    print(f"document: {len(raw) / 1e6:.2f} MB, {args.messages} messages, {args.repeats} repeats")
    print(f"{'step':<44}{'median ms':>12}")
    print(f"{'json.loads + json.dumps(indent=2)':<44}{t_plain * 1e3:>12.1f}")
    print(f"{'codec.loads + codec.dumps':<44}{t_ours * 1e3:>12.1f}")
    print(f"{'  codec.loads only':<44}{t_load * 1e3:>12.1f}")
    print(f"{'  codec.dumps only':<44}{t_dump * 1e3:>12.1f}")
    print(f"{'ratio (codec / json)':<44}{t_ours / t_plain:>12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
