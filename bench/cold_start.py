"""What a serverless function pays on a cold start, phase by phase, against boto3 alone.

``.venv/bin/python bench/cold_start.py [--runs 15]`` starts moto's server on 127.0.0.1 (in
this process), writes one a3s-code session (``tests/fixtures/session.json``), then runs fresh
interpreters, ``--runs`` times each, and prints the median (and min) of every phase:

- **interpreter start**: ``python -c pass``, wall time seen from outside;
- **boto3 floor** (one child): ``import boto3``, ``boto3.client("s3")``, one ``get_object`` +
  ``json.loads``: what a handler that uses boto3 directly pays;
- **s3store** (another child): ``from s3store import S3SessionStore``, store construction
  (with its boto3 client; boto3 is imported there), the first ``load`` (GET + decode + model
  validation).

s3store's own share is the s3store child's total minus the floor's (same interpreter, same
GET of the same bytes). All traffic goes to 127.0.0.1; every loop is bounded.

Bytecode: boto3, pydantic and the other dependencies are installed with their ``.pyc`` files,
and a wheel install of s3store compiles its modules the same way; a checkout (editable
install) run with ``PYTHONDONTWRITEBYTECODE=1`` would instead compile every s3store module
from source in every child. So by default the children import a temporary copy of the
package compiled once by ``compileall``, as an installed wheel is; ``--source`` measures the
compile-from-source case.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "session.json"
BUCKET = "s3store-cold"
PREFIX = "cold"


# -- the children ----------------------------------------------------------------------


def child_floor(endpoint: str, key: str) -> dict[str, float]:
    """boto3 alone: import, client, one GET + json.loads."""
    times: dict[str, float] = {}
    mark = T0

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name] = now - mark
        mark = now

    import boto3

    lap("import boto3")
    client = boto3.client("s3", endpoint_url=endpoint)
    lap("boto3.client('s3')")
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert json.loads(body)["id"]
    lap("get_object + json.loads")
    return times


def child_s3store(endpoint: str, session_id: str) -> dict[str, float]:
    """s3store: import, store construction (client included), first load."""
    times: dict[str, float] = {}
    mark = T0

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name] = now - mark
        mark = now

    from s3store import S3SessionStore

    lap("import s3store")
    sdk_loaded = "boto3" in sys.modules
    store = S3SessionStore(bucket=BUCKET, prefix=PREFIX, endpoint_url=endpoint)
    store.__enter__()  # builds the boto3 client (importing boto3) as the first call would
    lap("store construction + client")
    session = store.load(session_id)
    assert session is not None
    lap("first load")
    store.close()
    times["_boto3 imported by import s3store"] = float(sdk_loaded)
    return times


# -- the parent ------------------------------------------------------------------------


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"cold_start: child failed: {done.stderr.strip()[-2000:]}")
    phases: dict[str, float] = json.loads(done.stdout) if done.stdout.strip() else {}
    return wall, phases


RUNTIME_REQUIREMENTS = ("boto3", "botocore", "pydantic", "blake3", "orjson")


def _runtime_venv(where: Path) -> str:
    """A venv with s3store's runtime requirements only, at the versions of constraints.txt.

    pydantic scans every installed distribution for plugins on its first validator build, so
    the project's dev venv (about 200 distributions: moto, mypy, matplotlib, ...) charges
    s3store milliseconds that a function's deployment package would not.
    """
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    python = str(where / "bin" / "python")
    subprocess.run(
        [
            python,
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("-c", str(HERE.parent / "constraints.txt")),
            *RUNTIME_REQUIREMENTS,
        ],
        check=True,
        timeout=600,
    )
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per variant")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON too")
    parser.add_argument(
        "--runtime-venv",
        action="store_true",
        help="run the children in a new venv holding only s3store's runtime requirements "
        "(pinned by constraints.txt), as a function's deployment package would",
    )
    parser.add_argument(
        "--source",
        action="store_true",
        help="compile s3store from source in every child (no cached bytecode)",
    )
    args = parser.parse_args()
    runs = max(1, min(args.runs, 200))

    from s3store.devserver import MotoServer, ensure_bucket, s3_client

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3STORE_"))},
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "testsecret",
        "AWS_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    installed = tempfile.TemporaryDirectory(prefix="s3store-cold-")
    child_python = sys.executable
    if args.runtime_venv:
        child_python = _runtime_venv(Path(installed.name) / "venv")
    if not args.source:
        copy = Path(installed.name) / "s3store"
        shutil.copytree(HERE.parent / "s3store", copy, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(copy)],
            env={**env, "PYTHONDONTWRITEBYTECODE": ""},
            check=True,
            timeout=120,
        )
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (installed.name, env.get("PYTHONPATH", "")) if p
        )
    elif args.runtime_venv:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE.parent), env.get("PYTHONPATH", "")) if p
        )
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    server = MotoServer()
    server.start()
    try:
        raw = s3_client(server.endpoint, "test", "testsecret")
        ensure_bucket(raw, BUCKET)
        body = FIXTURE.read_bytes()
        session_id = str(json.loads(body)["id"])
        key = f"{PREFIX}/{session_id}.json"
        raw.put_object(Bucket=BUCKET, Key=key, Body=body)

        me = [child_python, str(Path(__file__).resolve())]
        walls: dict[str, list[float]] = {"interpreter": [], "floor": [], "s3store": []}
        phases: dict[str, list[float]] = {}
        notes: dict[str, bool] = {}
        for _ in range(runs):
            wall, _p = _run([child_python, "-c", "pass"], env)
            walls["interpreter"].append(wall)
            wall, got = _run([*me, "--child", "floor", server.endpoint, key], env)
            walls["floor"].append(wall)
            for name, value in got.items():
                phases.setdefault(f"floor: {name}", []).append(value)
            wall, got = _run([*me, "--child", "s3store", server.endpoint, session_id], env)
            walls["s3store"].append(wall)
            for name, value in got.items():
                if name.startswith("_"):
                    notes[name[1:]] = bool(value)
                else:
                    phases.setdefault(f"s3store: {name}", []).append(value)
    finally:
        server.stop()
        installed.cleanup()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.1f} ms  (min {min(values) * 1000:6.1f})"

    def totals(kind: str) -> list[float]:
        columns = [phases[k] for k in phases if k.startswith(kind)]
        return [sum(column[i] for column in columns) for i in range(runs)]

    floor_total = totals("floor")
    s3_total = totals("s3store")
    share = [a - b for a, b in zip(s3_total, floor_total, strict=True)]
    rows: list[tuple[str, list[float]]] = [
        ("interpreter start (python -c pass)", walls["interpreter"]),
        *((f"  {k}", v) for k, v in phases.items() if k.startswith("floor")),
        ("boto3 floor, in process", floor_total),
        ("boto3 floor, whole process (wall)", walls["floor"]),
        *((f"  {k}", v) for k, v in phases.items() if k.startswith("s3store")),
        ("s3store, in process", s3_total),
        ("s3store, whole process (wall)", walls["s3store"]),
        ("s3store's own share (s3store - floor, in process)", share),
    ]
    width = max(len(name) for name, _ in rows)
    print(
        f"cold start, {runs} fresh processes per variant, moto server on 127.0.0.1, "
        f"{FIXTURE.name} ({len(body)} bytes), Python {sys.version.split()[0]}, s3store "
        + ("compiled from source" if args.source else "bytecode cached (compileall)")
        + (", children in a runtime-only venv" if args.runtime_venv else ", children in .venv")
    )
    print(f"{'phase':<{width}}  median      (min)")
    for name, values in rows:
        print(f"{name:<{width}}  {ms(values)}")
    for note, value in notes.items():
        print(f"({note}: {'yes' if value else 'no'})")
    if args.json:
        print(json.dumps({name.strip(): statistics.median(v) for name, v in rows}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, endpoint, target = sys.argv[2:5]
        result = (
            child_floor(endpoint, target) if kind == "floor" else child_s3store(endpoint, target)
        )
        print(json.dumps(result))
    else:
        main()
