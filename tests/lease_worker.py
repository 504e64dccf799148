"""A lease holder in its own process, for tests/test_leases.py to pause with SIGSTOP.

    python -m tests.lease_worker --endpoint URL --bucket B --prefix P --session ID \
        --holder NAME --ttl SECONDS

It acquires the lease (renewing in the background) and prints ``acquired <epoch>``. Then it
reads commands from stdin, one per line, and answers each with one flushed line:

- ``save <n>``: ``store.save(session with n messages, lease=lease)``
- ``update <text>``: ``store.update(id, append a message <text>, lease=lease)``
- ``exit``: release the lease and exit

Each write answers ``acked <etag>`` or ``refused <ErrorType>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from s3store import AsyncS3SessionStore
from s3store.errors import StoreError
from s3store.models import SessionData
from tests import helpers


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    async with (
        AsyncS3SessionStore(
            bucket=args.bucket, endpoint_url=args.endpoint, prefix=args.prefix, layout=args.layout
        ) as store,
        store.lease(args.session, holder=args.holder, ttl=args.ttl) as lease,
    ):
        say(f"acquired {lease.epoch}")
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line or line == "exit":
                break
            command, _, argument = line.partition(" ")
            try:
                if command == "save":
                    result = await store.save(
                        helpers.session(args.session, messages=int(argument)), lease=lease
                    )
                elif command == "update":

                    def append(current: SessionData | None, text: str = argument) -> SessionData:
                        base = current or helpers.session(args.session, messages=0)
                        return helpers.with_message(base, text)

                    result = await store.update(args.session, append, lease=lease)
                else:
                    say(f"unknown {command}")
                    continue
            except StoreError as exc:
                say(f"refused {type(exc).__name__}")
                continue
            say(f"acked {result.etag}")
    say("released")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--holder", required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--layout", default="legacy", choices=["legacy", "v1"])
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
