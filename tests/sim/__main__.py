"""``python -m tests.sim``: run seeds of the fleet simulation and report violations."""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.fleet import PROFILES, TRANSPORTS, run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds per profile")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, help="run only this seed")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES))
    parser.add_argument(
        "--transport",
        choices=[*TRANSPORTS, "all"],
        default="boto",
        help="the stores' object client: SimClient (boto), the obstore client, or both",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the whole history")
    parser.add_argument(
        "--keep-going", action="store_true", help="do not stop at the first failure"
    )
    args = parser.parse_args(argv)
    profiles = args.profile or sorted(PROFILES)
    transports = list(TRANSPORTS) if args.transport == "all" else [args.transport]
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started = time.perf_counter()
    runs = failures = steps = 0
    found: dict[str, tuple[int, str, str]] = {}
    totals: dict[str, int] = {}
    runs_of = [(profile, transport) for transport in transports for profile in profiles]
    for seed in seeds:
        for profile, transport in runs_of:
            result = run_seed(seed, profile, transport)
            runs += 1
            steps += result.steps
            for name, count in result.stats.items():
                totals[name] = totals.get(name, 0) + count
            if args.verbose:
                print(result.tail if result.ok else result.report())
            if not result.ok:
                failures += 1
                for violation in result.violations:
                    found.setdefault(violation.split(":")[0], (seed, profile, transport))
                if not args.verbose:
                    print(result.report(), file=sys.stderr)
                if not args.keep_going:
                    break
        if failures and not args.keep_going:
            break
    elapsed = time.perf_counter() - started
    print(
        f"{runs} histories ({len(profiles)} profiles, transport {args.transport}), "
        f"{steps} requests, {failures} failed, "
        f"{elapsed:.1f}s, {runs / elapsed:.1f} histories/s"
    )
    print("  exercised: " + ", ".join(f"{n} {k}" for k, n in sorted(totals.items())))
    for invariant, (seed, profile, transport) in sorted(found.items()):
        print(f"  {invariant}: first seed {seed} ({profile}, {transport})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
