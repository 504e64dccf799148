"""Every code block of README.md, run as written, in order, against the server it documents.

The README's first hour starts ``s3store serve`` (SeaweedFS on 127.0.0.1:8333, as written)
and pastes the ``export`` line it prints; every later block runs in that environment:
``sh`` lines through ``bash -c`` with the venv's ``s3store`` script on PATH, ``python``
blocks as files run by this interpreter. A block that cannot run here (it installs from
PyPI, needs Docker or an AWS account, or is not code) is listed in ``NOT_RUN`` with the
reason; a block that is neither run nor listed fails the test, so a new block is either
runnable or says why not.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from s3store.devserver import weed_binary
from tests.test_transfer import legacy_dir

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PORT = 8333  # the README's

# A unique piece of a block's text -> why it is not run here.
NOT_RUN = {
    "make demo   # saves sessions": "make targets: `make test` runs this very test",
    "pip install s3store                  # the library": "installs from PyPI (network); "
    "tests/test_packaging.py installs the built wheel",
    "pip install 's3store[server]'\n": "installs from PyPI (network); this venv has the extra",
    "STORE = S3SessionStore()  # once per process": "an excerpt of examples/lambda_handler.py, "
    "which tests/test_lambda_handler.py runs as a Lambda runtime would",
    "export AWS_PROFILE=agents": "needs an AWS account",
    "make sim SEEDS=500": "the simulator: `make test` runs it (100 seeds per profile)",
    "s3store/keys.py, cas.py, codec.py": "a map of the source files, not code",
    "LOCALSTACK_AUTH_TOKEN=...": "needs Docker and a LocalStack token",
    "make localstack          # installs": "installs LocalStack (network); "
    "`make test-localstack` runs it",
}

# Fragments run inside an async function with an open store and a session named as they use.
ASYNC_FRAGMENT_PRELUDE = """\
import asyncio

from s3store import AsyncS3SessionStore


async def _fragment() -> None:
    async with AsyncS3SessionStore() as store:
        first = await store.load("sess-0001")
        assert first is not None
        session = first.model_copy(update={{"id": "sess-1"}})  # the fragment's id
{body}

asyncio.run(_fragment())
"""


@dataclass
class Block:
    lang: str
    text: str
    line: int


def blocks() -> list[Block]:
    text = README.read_text()
    found = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), match.group(2), line))
    return found


def reason_not_run(block: Block) -> str | None:
    hits = [reason for piece, reason in NOT_RUN.items() if piece in block.text]
    assert len(hits) <= 1, block
    return hits[0] if hits else None


@dataclass
class Shell:
    """The reader's shell: its environment, its working directory, the server it started."""

    cwd: Path
    env: dict[str, str]
    serve: subprocess.Popen[str] | None = None
    printed: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def start_serve(self, command: str) -> str:
        self.stop_serve()
        args = shlex.split(command)
        with (self.cwd.parent / "serve.err").open("a") as err:
            self.serve = subprocess.Popen(
                args, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=err, text=True
            )
        assert self.serve.stdout is not None
        line = self.serve.stdout.readline().strip()
        assert line.startswith("export "), (line, (self.cwd.parent / "serve.err").read_text())
        self.printed.append(line)
        return line

    def stop_serve(self) -> None:
        process, self.serve = self.serve, None
        if process is None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0, (self.cwd.parent / "serve.err").read_text()
        finally:
            assert process.stdout is not None
            process.stdout.close()

    def export(self, line: str) -> None:
        words = shlex.split(line)
        assert words[0] == "export"
        for word in words[1:]:
            name, _, value = word.partition("=")
            self.env[name] = value

    def run(self, line: str) -> str:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, (line, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (line, done.stderr)
        self.ran.append(line)
        return done.stdout

    def python(self, code: str, name: str) -> str:
        path = self.cwd / name
        path.write_text(code)
        return self.run(f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}")


def run_sh(shell: Shell, block: Block) -> None:
    lines = block.text.splitlines()
    expected: dict[str, str] = {}
    last_command = None
    for raw in lines:
        if raw.startswith("$ "):
            last_command = raw[2:].strip()
        elif last_command is not None and raw.strip():
            expected[last_command] = raw.strip()
    for raw in lines:
        line = raw.strip()
        if raw.startswith("$ "):
            line = raw[2:].strip()
        elif expected and raw.strip() in expected.values():
            continue  # a transcript's output line
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            shell.export(line)
        elif line.split("#")[0].strip().startswith("s3store serve"):
            command = line.split("#")[0].strip()
            printed = shell.start_serve(command)
            if command in expected:
                assert printed == expected[command]
        else:
            shell.run(line)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    if weed_binary() is None:
        pytest.skip("SeaweedFS 'weed' binary not installed (the README's `s3store serve`)")
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.skip(f"port {PORT} (the README's) is in use on this machine")
    home = tmp_path / "home"
    legacy_dir(home / ".a3s" / "sessions")  # what `s3store import ~/.a3s/sessions` reads
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("S3STORE_URL", "S3STORE_TEST_BACKENDS")
    }
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(cwd=work, env=env)
    try:
        yield shell
    finally:
        shell.stop_serve()


def test_every_block_is_run_or_says_why_not() -> None:
    found = blocks()
    assert len(found) >= 15
    used = {piece for piece in NOT_RUN for b in found if piece in b.text}
    assert used == set(NOT_RUN), f"stale NOT_RUN entries: {set(NOT_RUN) - used}"
    for block in found:
        if reason_not_run(block) is None:
            assert block.lang in ("sh", "python"), f"README.md:{block.line}: {block.lang!r}"


def test_readme_runs_as_written(shell: Shell) -> None:
    python_runs = 0
    for block in blocks():
        if reason_not_run(block) is not None:
            continue
        if block.lang == "sh":
            run_sh(shell, block)
        elif "await store." in block.text and "async def" not in block.text:
            body = textwrap.indent(block.text, " " * 8)
            shell.python(ASYNC_FRAGMENT_PRELUDE.format(body=body), f"block{block.line}.py")
            python_runs += 1
        else:
            shell.python(block.text, f"block{block.line}.py")
            python_runs += 1
    assert python_runs >= 4
    # The first hour, end to end: serve printed the export line the README shows, Python
    # saved and loaded sess-0001, the CLI sees it.
    assert shell.printed[0] == (
        f"export AWS_ENDPOINT_URL=http://127.0.0.1:{PORT} AWS_ACCESS_KEY_ID=s3store "
        "AWS_SECRET_ACCESS_KEY=s3store-dev-secret AWS_REGION=us-east-1 "
        "S3STORE_URL=s3://s3store-dev/dev"
    )
    assert "sess-0001" in shell.run("s3store ls").split()
    assert "renamed" in shell.run("s3store show sess-0001")
    assert any(line.startswith("s3store fsck") for line in shell.ran)
    assert any(line.startswith("s3store import") for line in shell.ran)
