"""The writer process that tests/test_crash.py kills with SIGKILL at random points.

    python -m tests.crash_worker --endpoint URL --bucket B --prefix P --session ID

It resumes from the session's stored generation (its message count) and then, per
generation: saves the artifacts (blobs first, manifest last), the trace events, then the
session document, and prints ``ack <generation>`` (flushed) once the session save returned.
Before each step it prints ``step <name> <generation>``, so the test can kill it at a chosen
point of the sequence. Everything it writes is a pure function of the generation, so a
restarted writer that redoes a generation writes the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from s3store import AsyncS3SessionStore
from s3store.models import ArtifactStore, SessionData, TraceEvent
from s3store.types import PutMode
from tests import helpers

SHARED = "output every generation shares\n" * 200
_TRACES = helpers.trace_events()


def session_at(sid: str, generation: int) -> SessionData:
    """The session at ``generation``: one message per generation."""
    data = helpers.session(sid, messages=0)
    return data.model_copy(
        update={"messages": [helpers.message(f"gen {g}") for g in range(1, generation + 1)]}
    )


def artifacts_at(generation: int) -> ArtifactStore:
    """Inline marker, a blob new in this generation, and a blob every generation shares."""
    return helpers.artifacts(f"gen {generation}", f"gen {generation} output\n" + "z" * 5000, SHARED)


def traces_at(generation: int) -> list[TraceEvent]:
    return [e.model_copy(update={"duration_ms": generation}) for e in _TRACES]


def generation_of_artifacts(artifacts: ArtifactStore) -> int:
    content = artifacts.artifacts[0].content
    assert isinstance(content, str)
    return int(content.removeprefix("gen "))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    async with AsyncS3SessionStore(
        bucket=args.bucket, endpoint_url=args.endpoint, prefix=args.prefix, layout=args.layout
    ) as store:
        current = await store.load(args.session)
        generation = 0 if current is None else len(current.messages)
        say(f"ready {generation}")
        while generation < args.max_generation:
            generation += 1
            say(f"step artifacts {generation}")
            await store.save_artifacts(args.session, artifacts_at(generation))
            say(f"step traces {generation}")
            await store.save_trace_events(args.session, traces_at(generation))
            say(f"step session {generation}")
            mode: PutMode = "create" if generation == 1 else "overwrite"
            await store.save(session_at(args.session, generation), mode=mode)
            say(f"ack {generation}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--layout", default="legacy", choices=["legacy", "v1"])
    parser.add_argument("--max-generation", type=int, default=1_000_000)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
