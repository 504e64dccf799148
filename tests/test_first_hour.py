"""Issue 18, "the first hour without surprises": one test per item.

CLI items run the real entry point (``python -m s3store.cli``) as a subprocess and assert
the exit code and that stderr is one ``s3store: error: ...`` line without a traceback. API
items run on the in-memory client or moto server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from s3store import AsyncS3SessionStore, S3SessionStore, codec, errors
from s3store.config import StoreSettings, client_kwargs, settings_from_env
from s3store.devserver import free_port
from s3store.errors import (
    ConfigurationError,
    DocumentError,
    InvalidArgumentError,
    StoreError,
)
from s3store.models import SessionData
from s3store.testing import MemoryObjectClient
from tests import helpers
from tests.conftest import BUCKET, _ensure_bucket
from tests.test_transfer import v1_dir

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, env: dict[str, str], code: int = 0, timeout: float = 90, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI through its real entry point; asserts the exit code and no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "s3store.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("s3store: error: "), lines[0]
    return lines[0]


@pytest.fixture
def env(moto_endpoint: str, prefix: str) -> dict[str, str]:
    """A subprocess environment pointing at a fresh moto prefix."""
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    _ensure_bucket(moto_endpoint)
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "S3STORE_URL": f"s3://{BUCKET}/{prefix}",
    }


def store_for(env: dict[str, str], **options: Any) -> S3SessionStore:
    return S3SessionStore.from_url(
        env["S3STORE_URL"], endpoint_url=env["AWS_ENDPOINT_URL"], **options
    )


# -- docs that were not true ------------------------------------------------------------


def test_aws_region_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    kwargs = client_kwargs(StoreSettings(bucket="b"))
    assert kwargs["region_name"] == "eu-west-1"
    assert boto3.session.Session().client("s3", **kwargs).meta.region_name == "eu-west-1"
    # An explicit region wins over the environment.
    assert client_kwargs(StoreSettings(bucket="b", region_name="ap-south-1"))["region_name"] == (
        "ap-south-1"
    )
    monkeypatch.delenv("AWS_REGION")
    assert "region_name" not in client_kwargs(StoreSettings(bucket="b"))


def test_export_layout_options_are_distinct(env: dict[str, str], tmp_path: Path) -> None:
    v1_dir(tmp_path / "src")
    run("import", str(tmp_path / "src"), "--layout", "v1", env=env)
    # On a v1 store, --layout v1 after the command is the store's layout: files are written.
    done = run("export", str(tmp_path / "a"), "--layout", "v1", env=env)
    assert re.search(r": [1-9]\d* files written", done.stdout), done.stdout
    # The layout is detected when not given.
    assert "files written" in run("export", str(tmp_path / "b"), env=env).stdout
    # The directory's layout is --out-layout.
    run("export", str(tmp_path / "c"), "--out-layout", "legacy", env=env)
    assert any((tmp_path / "c").glob("*.json"))
    # --layout naming a layout the prefix does not hold is an error, with the fix.
    line = error_line(run("export", str(tmp_path / "d"), "--layout", "legacy", env=env, code=2))
    assert "holds v1-layout keys" in line
    assert "--out-layout" in line


def test_endpoint_without_scheme_and_huge_grace_are_one_line(env: dict[str, str]) -> None:
    line = error_line(run("ls", "--endpoint-url", "127.0.0.1:8333", env=env, code=2))
    assert "http://127.0.0.1:8333" in line
    bad_env = {**env, "AWS_ENDPOINT_URL": "localhost:9000"}
    assert "AWS_ENDPOINT_URL" in error_line(run("ls", env=bad_env, code=2))
    assert "100 years" in error_line(run("gc", "--grace", "999999d", env=env, code=2))
    with pytest.raises(ConfigurationError, match="scheme"):
        S3SessionStore(bucket="b", endpoint_url="127.0.0.1:8333")


def test_exit_code_3_when_the_server_or_the_data_failed(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A missing bucket.
    missing = {**env, "S3STORE_URL": "s3://no-such-bucket-here/p"}
    assert "bucket does not exist" in error_line(run("ls", env=missing, code=3))
    # A closed port (nothing listens there).
    closed = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    error_line(run("ls", env=closed, code=3, timeout=120))
    # A corrupt document in show (fsck reports it: exit 1).
    with store_for(env) as store:
        store.save(helpers.session("good"))
        store.put_object(store.layout.session_key("bad"), b"{not json")
        store.save(helpers.session("a/b"))
    assert "corrupt" in error_line(run("show", "bad", env=env, code=3))
    assert run("fsck", env=env, code=1).stdout
    # A key collision: a\\b shares a_b's key, which holds a/b's session.
    assert "collision" in error_line(run("show", "a\\b", env=env, code=3))
    # A missing session is "problems found".
    error_line(run("show", "nope", env=env, code=1))


def test_no_credentials_is_a_configuration_error(env: dict[str, str], tmp_path: Path) -> None:
    bare = {
        k: v
        for k, v in env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    bare |= {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    assert "no AWS credentials" in error_line(run("ls", env=bare, code=2))


def test_botocore_configuration_errors_map_to_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from botocore.exceptions import NoCredentialsError, ParamValidationError

    mapped = errors.translate_error(
        ParamValidationError(report='Invalid bucket name "s3://x": Bucket name must match ...'),
        operation="get_object",
        bucket="s3://x",
        key="k",
    )
    assert isinstance(mapped, ConfigurationError)
    assert "not a valid bucket name" in str(mapped)
    assert "regex" not in str(mapped)
    creds = errors.translate_error(NoCredentialsError(), operation="put", bucket="b", key="k")
    assert isinstance(creds, ConfigurationError)
    assert not isinstance(creds, errors.TransientError)
    # A URL given as the bucket is refused at construction, in one line.
    with pytest.raises(ConfigurationError, match="from_url"):
        S3SessionStore(bucket="s3://agents/prod")


def test_option_values_are_checked_at_construction() -> None:
    client = MemoryObjectClient("b")
    for bad in (
        {"checksums": "never"},
        {"max_attempts": 0},
        {"retry_mode": "fast"},
        {"read_timeout": -1},
        {"max_concurrency": "8"},
        {"layout": "v2"},
        {"sse": "rot13"},
        {"no_such_option": 1},
    ):
        with pytest.raises(ConfigurationError):
            S3SessionStore(client=client, **bad)
    S3SessionStore(client=client, max_attempts=1, retry_mode="adaptive", checksums="when_required")


def test_every_error_inherits_a_builtin_and_names_its_bucket() -> None:
    classes = [
        getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type) and getattr(errors, name) is not StoreError
    ]
    assert len(classes) >= 20
    for cls in classes:
        builtins = [b for b in cls.__mro__ if b.__module__ == "builtins"]
        assert builtins[0] is not Exception, cls
    assert issubclass(errors.TransientError, RuntimeError)
    assert not issubclass(errors.TransientError, OSError)
    from s3store import OutcomeUnknownError, TransientError

    assert issubclass(OutcomeUnknownError, TransientError)
    # An error about an object ends with the bucket/key block.
    store = S3SessionStore(client=MemoryObjectClient("b"), prefix="p")
    store.put_object("p/x.json", b"{")
    with pytest.raises(errors.CorruptObjectError) as caught:
        store.load("x")
    assert str(caught.value).endswith("[bucket=b, key=p/x.json]")


# -- errors that misled -----------------------------------------------------------------


def test_inputs_are_validated_at_the_api_boundary() -> None:
    store = S3SessionStore(client=MemoryObjectClient("b"), prefix="p")
    with pytest.raises(DocumentError, match="SessionData"):
        store.save({"id": "s1"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="SessionData"):
        store.save(42)  # type: ignore[arg-type]
    # A dict of the wire form is validated and saved; it loads back equal.
    wire = json.loads(codec.dumps(helpers.session("s1")))
    store.save(wire)
    assert store.load("s1") == helpers.session("s1")

    def mutate_only(session: SessionData | None) -> Any:
        assert session is not None
        session.messages.clear()  # and returns nothing

    with pytest.raises(InvalidArgumentError, match="returned None"):
        store.update("s1", mutate_only)
    assert store.load("s1") == helpers.session("s1")
    with pytest.raises(DocumentError):
        store.save_trace_events("s1", [{"schema": "x"}])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="list of RunRecord"):
        store.save_run_records("s1", "abc")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.save_artifacts("s1", [1, 2])  # type: ignore[arg-type]
    # Nothing unreadable was written.
    assert store.load_trace_events("s1") is None
    assert store.load_run_records("s1") is None
    assert store.fsck().ok


def test_wrong_client_flavour_is_refused_at_construction(moto_endpoint: str) -> None:
    import boto3

    sync_client = boto3.client("s3", endpoint_url=moto_endpoint)
    with pytest.raises(ConfigurationError, match="needs an async client"):
        AsyncS3SessionStore(client=sync_client, bucket=BUCKET)

    async def async_into_sync() -> None:
        import aiobotocore.session  # type: ignore[import-untyped]

        session = aiobotocore.session.get_session()
        async with session.create_client("s3", endpoint_url=moto_endpoint) as client:
            with pytest.raises(ConfigurationError, match="needs a synchronous client"):
                S3SessionStore(client=client, bucket=BUCKET)

    asyncio.run(async_into_sync())
    with pytest.raises(ConfigurationError, match="unsupported client"):
        S3SessionStore(client=object(), bucket=BUCKET)
    # Options that configure a client the store would build, with a client passed: refused.
    with pytest.raises(ConfigurationError, match="max_attempts, read_timeout"):
        S3SessionStore(client=sync_client, bucket=BUCKET, max_attempts=2, read_timeout=5)


def test_gc_takes_seconds_strings_and_timedeltas() -> None:
    store = S3SessionStore(client=MemoryObjectClient("b"), prefix="p", inline_threshold=0)
    store.save_artifacts("s1", helpers.artifacts("x" * 100))
    for grace in (3600, 3600.0, "7d", "24h", "3600", timedelta(hours=2)):
        report = store.gc(grace=grace)  # type: ignore[arg-type]
        assert report.deleted == 0
    for bad in ("soon", -1, "999999d", float("nan")):
        with pytest.raises(ConfigurationError):
            store.gc(grace=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.gc(grace=[1])  # type: ignore[arg-type]
    # Below the floor is still refused.
    with pytest.raises(ConfigurationError, match="floor"):
        store.gc(grace=60)  # type: ignore[arg-type]


def test_s3store_url_prefix_applies_only_to_its_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3STORE_URL", "s3://agents/prod")
    assert settings_from_env().prefix == "prod"
    assert settings_from_env(bucket="agents").prefix == "prod"
    other = settings_from_env(bucket="other")
    assert (other.bucket, other.prefix) == ("other", "")
    assert settings_from_env(bucket="other", prefix="p").prefix == "p"
    bound = S3SessionStore(client=MemoryObjectClient("elsewhere"))
    assert (bound.bucket, bound.prefix) == ("elsewhere", "")
    monkeypatch.setenv("S3STORE_URL", "agents/prod")
    with pytest.raises(ConfigurationError, match="S3STORE_URL"):
        settings_from_env()


# -- CLI edges --------------------------------------------------------------------------


def test_cli_detects_the_layout(env: dict[str, str], tmp_path: Path) -> None:
    with store_for(env, layout="v1") as store:
        store.save(helpers.session("sess-v1"))
        store.save_trace_events("sess-v1", helpers.trace_events())
    assert run("ls", env=env).stdout.split() == ["sess-v1"]
    assert run("fsck", env=env).stdout.startswith("2 documents")
    du = json.loads(run("du", "--json", env=env).stdout)
    assert du["layout"] == "v1"
    assert "other" not in du["kinds"]
    line = error_line(run("ls", "--layout", "legacy", env=env, code=2))
    assert "holds v1-layout keys" in line
    assert run("ls", "--layout", "v1", env=env).stdout.split() == ["sess-v1"]


def test_show_takes_the_stems_ls_prints_and_ls_long_marks_corrupt_sessions(
    env: dict[str, str],
) -> None:
    with store_for(env) as store:
        store.save(helpers.session("demo/alpha"))
        store.save(helpers.session("sess-0001"))
        # Truncated, and over the placeholder size (list skips tiny objects).
        truncated = b'{"id": "broken", "pad": "' + b"x" * 600
        store.put_object(store.layout.session_key("broken"), truncated)
    listed = run("ls", env=env).stdout.split()
    assert listed == ["broken", "demo_alpha", "sess-0001"]
    assert "id        demo/alpha" in run("show", "demo_alpha", env=env).stdout
    assert "id        demo/alpha" in run("show", "demo/alpha", env=env).stdout
    done = run("ls", "--long", env=env, code=1)
    assert "UNREADABLE" in done.stdout
    assert "sess-0001" in done.stdout
    assert "demo_alpha (demo/alpha)" in done.stdout
    assert "broken" in done.stderr
    rows = json.loads(run("ls", "--long", "--json", env=env, code=1).stdout)
    assert [r["id"] for r in rows if "error" in r] == ["broken"]


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something that is not HTTP listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_serve_checks_the_port_and_refuses_options_it_would_ignore(
    listener: int, tmp_path: Path
) -> None:
    env = {**os.environ}
    for engine in ("moto", "weed"):
        done = run(
            "serve", "--engine", engine, "--port", str(listener), "--dir", str(tmp_path),
            env=env, code=2, timeout=20,
        )  # fmt: skip
        assert "in use" in error_line(done)
        assert "ready" not in done.stderr
        assert "export" not in done.stdout
    assert "serve does not take --url" in error_line(
        run("--url", "s3://b/p", "serve", "--engine", "moto", env=env, code=2)
    )
    error_line(run("serve", "--region", "eu-west-1", env=env, code=2))
    error_line(run("serve", "--port", "0", env=env, code=2))


def test_help_texts_say_formats_and_defaults(env: dict[str, str]) -> None:
    gc_help = run("gc", "--help", env=env).stdout
    assert "s, m, h, d or w" in gc_help
    assert "24h" in gc_help
    show_help = " ".join(run("show", "--help", env=env).stdout.split())
    assert "session id, or the file stem" in show_help
    serve_help = " ".join(run("serve", "--help", env=env).stdout.split())
    for default in ("8333", "s3store-dev", ".s3store/serve", "weed"):
        assert f"(default: {default})" in serve_help
    assert "exit codes: 0 ok" in " ".join(run("--help", env=env).stdout.split())
    with store_for(env, inline_threshold=0) as store:
        store.save_artifacts("s1", helpers.artifacts("y" * 10))
    assert "younger than 24h," in run("gc", env=env).stdout
    assert "younger than 7d," in run("gc", "--grace", "7d", env=env).stdout


def test_exit_codes_are_documented_where_they_are_defined() -> None:
    from s3store import cli

    readme = (ROOT / "README.md").read_text()
    table = re.search(r"### Exit codes\n(.*?)\n\n(?=\S)", readme, re.S)
    assert table is not None
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|", table.group(1), re.M))
    assert set(map(int, rows)) == {
        cli.EXIT_OK,
        cli.EXIT_PROBLEMS,
        cli.EXIT_USAGE,
        cli.EXIT_FAILED,
        cli.EXIT_INTERNAL,
        cli.EXIT_INTERRUPTED,
    }
    for code in rows:
        assert f" {code} " in cli.EXIT_CODES_HELP.replace(";", " ").replace(":", " ") + " "
    # And the codes themselves: a bug is 70, one line, no traceback.
    assert cli.exit_code(ConfigurationError("x")) == 2
    assert cli.exit_code(errors.BucketNotFoundError("x")) == 3
    assert cli.exit_code(errors.CorruptObjectError("x")) == 3
    assert cli.exit_code(ConnectionRefusedError()) == 3
    assert cli.exit_code(KeyError("x")) == 70


@pytest.mark.parametrize("id", ["sess-0001", "a_b"])
def test_exists_on_a_missing_bucket_raises_instead_of_answering_false(
    moto_endpoint: str, id: str
) -> None:
    store = S3SessionStore(
        bucket="no-such-bucket-here", endpoint_url=moto_endpoint, region_name="us-east-1"
    )
    with pytest.raises(errors.BucketNotFoundError, match="no-such-bucket-here"):
        store.exists(id)
    memory = S3SessionStore(bucket="b", client=MemoryObjectClient("b", create=False))
    with pytest.raises(errors.BucketNotFoundError):
        memory.exists(id)


def test_exists_is_one_request_and_tells_placeholders_from_sessions(moto_endpoint: str) -> None:
    _ensure_bucket(moto_endpoint)
    store = S3SessionStore(bucket=BUCKET, endpoint_url=moto_endpoint, prefix="exists-peek")
    store.save(helpers.session("small"))
    with store.lease("held", holder="w1", ttl=60, renew=False):
        before = store.stats.total_requests
        assert store.exists("small") is True
        assert store.exists("held") is False  # only a lease placeholder is there
        assert store.exists("nobody") is False
        assert store.stats.total_requests - before == 3
