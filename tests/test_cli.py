"""The ``s3store`` command line, run for real as a subprocess against moto server.

``python -m s3store.cli`` is the same code the ``s3store`` console script runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from s3store.devserver import DEV_ACCESS_KEY, DEV_SECRET_KEY, free_port, s3_client, weed_binary
from tests.conftest import BUCKET, _ensure_bucket, raw_client
from tests.test_transfer import legacy_dir


def run(
    *args: str, env: dict[str, str], code: int = 0, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; assert its exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "s3store.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("s3store: error: ")
    assert "Traceback" not in stderr
    return lines[0]


class InProcess:
    """``cli.main`` in this process: the same code without the interpreter start-up cost.

    Subprocess runs (``run``) cover every command once; the many variations use this.
    """

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        from s3store import cli

        self.capsys.readouterr()
        try:
            got = cli.main(list(args))
        except SystemExit as exc:
            got = exc.code if isinstance(exc.code, int) else 1
        out, err = self.capsys.readouterr()
        assert got == code, (got, out, err)
        return out, err


@pytest.fixture
def env(moto_endpoint: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing the CLI at a fresh moto bucket prefix (subprocess and here)."""
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    _ensure_bucket(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("S3STORE_URL", f"s3://{BUCKET}/{prefix}")
    return {**os.environ}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(capsys)


@pytest.fixture
def imported(env: dict[str, str], tmp_path: Path, cli: InProcess) -> dict[str, str]:
    """The legacy fixture directory, imported (in process)."""
    legacy_dir(tmp_path / "src")
    cli("import", str(tmp_path / "src"))
    return env


def test_import_is_idempotent_and_export_round_trips(
    env: dict[str, str], tmp_path: Path, cli: InProcess
) -> None:
    legacy_dir(tmp_path / "src")
    done = run("import", str(tmp_path / "src"), env=env)
    assert "0 unchanged" in done.stdout
    assert "blobs uploaded" in done.stdout
    again = json.loads(cli("import", str(tmp_path / "src"), "--json")[0])
    assert again["uploaded"] == []
    assert again["blobs_uploaded"] == 0
    assert "files written" in run("export", str(tmp_path / "out"), env=env).stdout
    source = {p.relative_to(tmp_path / "src") for p in (tmp_path / "src").rglob("*.json")}
    for rel in source:
        assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "src" / rel).read_bytes()
    cli("export", str(tmp_path / "v1"), "--out-layout", "v1")
    assert (tmp_path / "v1" / "v1" / "sessions").is_dir()


def test_ls_show_cat(imported: dict[str, str], cli: InProcess) -> None:
    assert run("ls", env=imported).stdout.split() == ["sess-0001", "sess-0002", "tenant_x"]
    rows = json.loads(cli("ls", "--long", "--json")[0])
    first = rows[0]
    assert first["id"] == "sess-0001"
    assert first["messages"] == 4
    assert first["size"] > 0
    assert first["last_modified"]
    assert set(first["sidecars"]) == {
        "artifacts",
        "traces",
        "runs",
        "verification",
        "subagent_tasks",
    }
    assert rows[2]["session_id"] == "tenant/x"
    table = cli("ls", "--long")[0]
    assert "tenant_x (tenant/x)" in table
    assert "MSGS" in table.splitlines()[0]

    human = run("show", "sess-0001", env=imported).stdout
    assert "Example Session" in human
    assert "messages  4" in human
    wire = cli("show", "sess-0001", "--json")[0]
    assert (
        wire.encode() == (Path(__file__).parent / "fixtures" / "session.json").read_bytes() + b"\n"
    )
    for part, needle in [
        ("traces", "tool_execution"),
        ("runs", "run-0001"),
        ("verification", "program:lint"),
        ("subagents", "task-2"),
        ("artifacts", "a3s://tool-output/bash/"),
    ]:
        assert needle in cli("show", "sess-0001", "--part", part)[0]
    arts = json.loads(cli("show", "tenant/x", "--part", "artifacts", "--json")[0])
    assert len(arts["artifacts"]) == 3  # contents inline again
    assert "no session 'nope'" in one_error_line(cli("show", "nope", code=1)[1])

    raw = run("cat", "traces/sess-0001.json", env=imported).stdout
    fixture = (Path(__file__).parent / "fixtures" / "trace_events.json").read_text()
    assert raw == fixture
    envelope = json.loads(cli("cat", "traces/sess-0001.json", "--json")[0])
    assert envelope["json"][0]["name"] == "bash"
    assert envelope["etag"]
    one_error_line(cli("cat", "no/such/key", code=1)[1])


def test_fsck_gc_du(
    imported: dict[str, str], moto_endpoint: str, prefix: str, cli: InProcess
) -> None:
    assert "0 problems" in cli("fsck")[0]
    assert "dedup ratio 2.00" in run("du", env=imported).stdout
    usage = json.loads(cli("du", "--json")[0])
    assert usage["kinds"]["blobs"]["objects"] == 1
    assert usage["kinds"]["session"]["objects"] == 3
    assert usage["blob_refs"] == 2
    # Stored blobs carry a 24-byte upload trailer (FORMAT.md), hence not exactly 2.
    assert usage["dedup_ratio"] == pytest.approx(2.0, rel=0.01)

    assert "would delete 0 blobs" in run("gc", "--grace", "2h", env=imported).stdout
    gc = json.loads(cli("gc", "--json")[0])
    assert gc["dry_run"] is True
    assert gc["deleted"] == 0

    # Tamper with the one blob: fsck reports it and exits 1.
    raw = raw_client(moto_endpoint)
    listing = raw.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/blobs/")
    (blob,) = [o["Key"] for o in listing["Contents"]]
    raw.put_object(Bucket=BUCKET, Key=blob, Body=b"tampered")
    report = json.loads(run("fsck", "--json", env=imported, code=1).stdout)
    assert [p["kind"] for p in report["problems"]] == ["integrity"]
    assert "integrity" in cli("fsck", code=1)[0]


def test_gc_apply_deletes_orphans(
    env: dict[str, str], moto_endpoint: str, prefix: str, cli: InProcess
) -> None:
    orphan = f"{prefix}/blobs/blake3/ab/{'ab' * 32}"
    raw_client(moto_endpoint).put_object(Bucket=BUCKET, Key=orphan, Body=b"x")
    # Younger than the default 24 h grace: kept.
    # No manifest at all looks like a wrong prefix: refused unless told.
    assert "no artifact manifest" in cli("gc", "--apply", code=2)[1]
    quick = ("--grace", "1s", "--grace-floor", "1s", "--allow-no-manifests", "--json")
    assert json.loads(cli("gc", "--apply", "--allow-no-manifests", "--json")[0])["deleted"] == 0
    assert "below the floor" in cli("gc", "--grace", "1s", code=2)[1]
    # Server clocks have one-second resolution: wait until the blob is measurably older.
    deadline = time.monotonic() + 10
    while json.loads(cli("gc", *quick)[0])["deleted"] == 0:
        assert time.monotonic() < deadline, "the orphan never aged past the grace period"
        time.sleep(0.2)  # poll interval of the wait above
    report = json.loads(cli("gc", "--apply", *quick)[0])
    assert report["deleted"] == 1
    listing = raw_client(moto_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=orphan)
    assert "Contents" not in listing


def test_usage_and_configuration_errors_are_one_line(
    env: dict[str, str], cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_error_line(run("ls", "--bogus", env=env, code=2).stderr)
    one_error_line(cli(code=2)[1])
    assert "invalid duration" in one_error_line(cli("gc", "--grace", "soon", code=2)[1])
    assert "s3://" in one_error_line(cli("ls", "--url", "http://x", code=2)[1])
    one_error_line(cli("import", "/nonexistent/dir", code=2)[1])
    one_error_line(cli("ls", "--url", "s3://no-such-bucket-here/p", code=3)[1])
    monkeypatch.delenv("S3STORE_URL")
    assert "no bucket" in one_error_line(cli("ls", code=2)[1])


def test_global_options_work_after_the_command(
    imported: dict[str, str],
    moto_endpoint: str,
    prefix: str,
    cli: InProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("S3STORE_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    args = ["--url", f"s3://{BUCKET}/{prefix}", "--endpoint-url", moto_endpoint]
    assert "sess-0001" in cli("ls", *args)[0]
    assert "sess-0001" in cli(*args, "ls")[0]


def test_demo_runs_embedded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("S3STORE_URL", "AWS_ENDPOINT_URL")}
    done = run("demo", env=env)
    out = done.stdout
    assert "embedded S3: moto server" in out
    assert "documents loaded back equal" in out
    assert "FAIL" not in out
    for kind in ("artifacts/", "traces/", "runs/", "verification/", "subagent_tasks/"):
        assert kind in out
    assert "loop_checkpoints/" in out
    assert "blobs/" in out
    assert "PutObject" in out
    assert "dedup" in out


def test_serve_persists_across_restarts(tmp_path: Path) -> None:
    if weed_binary() is None:
        pytest.skip("SeaweedFS 'weed' binary not installed")
    port = free_port()
    args = [sys.executable, "-m", "s3store.cli", "serve", "--dir", str(tmp_path / "data")]
    args += ["--port", str(port), "--bucket", "serve-test"]

    def start() -> tuple[subprocess.Popen[str], str]:
        with (tmp_path / "serve.err").open("a") as err:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the server answers
        assert line.startswith("export AWS_ENDPOINT_URL="), (line, process.poll())
        return process, line

    def stop(process: subprocess.Popen[str]) -> None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0, (tmp_path / "serve.err").read_text()
        finally:
            assert process.stdout is not None
            process.stdout.close()

    process, line = start()
    try:
        assert f"http://127.0.0.1:{port}" in line
        assert "S3STORE_URL=s3://serve-test/dev" in line
        client = s3_client(f"http://127.0.0.1:{port}", DEV_ACCESS_KEY, DEV_SECRET_KEY)
        client.put_object(Bucket="serve-test", Key="dev/hello", Body=b"persisted")
    finally:
        stop(process)
    process, _ = start()
    try:
        client = s3_client(f"http://127.0.0.1:{port}", DEV_ACCESS_KEY, DEV_SECRET_KEY)
        body = client.get_object(Bucket="serve-test", Key="dev/hello")["Body"].read()
        assert body == b"persisted"
    finally:
        stop(process)


def test_serve_without_weed_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In process, so the lookup can be made to fail; the code path is the entry point's.
    from s3store import cli, devserver

    monkeypatch.setattr(devserver, "weed_binary", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--dir", str(tmp_path / "d"), "--port", str(free_port())])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("s3store: error: SeaweedFS 'weed' binary not found")


def test_reimport_keeps_newer_turns_unless_overwrite(
    env: dict[str, str], tmp_path: Path, cli: InProcess
) -> None:
    from s3store import S3SessionStore

    files = legacy_dir(tmp_path / "src")
    cli("import", str(tmp_path / "src"))
    with S3SessionStore.from_url(env["S3STORE_URL"]) as agent:
        session = agent.load("sess-0001")
        assert session is not None
        session.messages.append(session.messages[0])
        agent.save(session)
    out, _ = cli("import", str(tmp_path / "src"))
    assert "1 kept (changed in the bucket)" in out
    assert "kept " in out
    assert "sess-0001.json: the bucket's copy differs from the file" in out
    assert "--overwrite" in out
    report = json.loads(cli("import", str(tmp_path / "src"), "--json")[0])
    assert [k["key"].rsplit("/", 1)[-1] for k in report["kept"]] == ["sess-0001.json"]
    assert report["uploaded"] == []
    assert len(json.loads(cli("show", "sess-0001", "--json")[0])["messages"]) == 5
    forced = json.loads(cli("import", str(tmp_path / "src"), "--overwrite", "--json")[0])
    assert forced["kept"] == []
    assert [k.rsplit("/", 1)[-1] for k in forced["uploaded"]] == ["sess-0001.json"]
    wire = cli("show", "sess-0001", "--json")[0]
    assert wire.encode() == files["sess-0001.json"] + b"\n"


def test_show_never_prints_terminal_escapes(env: dict[str, str], cli: InProcess) -> None:
    from s3store import S3SessionStore, codec
    from s3store.models import SessionData, TraceEvent

    fixtures = Path(__file__).parent / "fixtures"
    session = codec.loads(SessionData, (fixtures / "session.json").read_bytes())
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u009b1m\r\u202eevil"
    session.config.name = f"name {hostile}"
    session.messages[0].content[0].text = f"hello {hostile}"  # type: ignore[union-attr]
    events = codec.loads(list[TraceEvent], (fixtures / "trace_events.json").read_bytes())
    events[0].name = f"bash {hostile}"
    with S3SessionStore.from_url(env["S3STORE_URL"]) as store:
        store.save(session)
        store.save_trace_events(session.id, events)
    for part in ("session", "traces"):
        out, _ = cli("show", session.id, "--part", part)
        for raw in ("\x1b", "\x07", "\r", "\u009b", "\u202e"):
            assert raw not in out, (part, raw)
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x9b1m\\x0d\\u202eevil" in out
    # The wire form stays the stored document, byte for byte.
    wire = cli("show", session.id, "--json")[0]
    assert codec.loads(SessionData, wire.encode()).config.name == f"name {hostile}"


def test_demo_on_a_configured_endpoint_removes_only_the_bucket_it_created(
    moto_endpoint: str,
) -> None:
    from s3store.demo import DEMO_BUCKET

    env = {k: v for k, v in os.environ.items() if k != "S3STORE_URL"}
    env["AWS_ENDPOINT_URL"] = moto_endpoint
    raw = raw_client(moto_endpoint)

    def buckets() -> set[str]:
        return {b["Name"] for b in raw.list_buckets()["Buckets"]}

    if DEMO_BUCKET in buckets():
        raw.delete_bucket(Bucket=DEMO_BUCKET)
    out = run("demo", env=env).stdout  # the real entry point, in a fresh process
    assert f"removed the bucket {DEMO_BUCKET} this demo created" in out
    assert DEMO_BUCKET not in buckets()

    raw.create_bucket(Bucket=DEMO_BUCKET)  # someone's bucket: the demo must keep it
    out = run("demo", env=env).stdout
    assert "removed the bucket" not in out
    assert DEMO_BUCKET in buckets()
    assert raw.list_objects_v2(Bucket=DEMO_BUCKET).get("KeyCount", 0) == 0
    raw.delete_bucket(Bucket=DEMO_BUCKET)
