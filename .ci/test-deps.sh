#!/usr/bin/env bash
# Dependency-range and packaging jobs, run by `make test-deps` (and .ci/run):
#
#   newest   Python 3.11, no constraints: the newest versions pyproject.toml's ranges allow.
#            Phase 1 without the async extra (so boto3/botocore are the newest releases;
#            aioboto3 pins an older botocore), phase 2 adds the async extra for the async
#            store on moto.
#   lowest   Python 3.11, constraints-lowest.txt: every lower bound.
#   py3.12   Python 3.12 against the lock (constraints.txt).
#   py3.13   Python 3.13 against the lock.
#   wheel    `python -m build` (sdist + wheel), `twine check`, py.typed in the wheel, the wheel
#            installed (not editable) into a fresh venv, the conformance suite run from a copy
#            of tests/ outside the source tree.
#
# Each job builds a fresh venv under .venv-deps-<job>/ (gitignored) and runs the fast subset
# on the in-memory client and moto server. Usage: .ci/test-deps.sh [JOB...] (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1

# The fast subset: conformance suites (async + sync), memory store, codec and models, hostile
# input, encryption, packaging and the serverless handler; 'slow' tests excluded.
FAST_TESTS=(tests/_async tests/_sync tests/test_store_memory.py tests/test_codec.py
    tests/test_models.py tests/test_bad_input.py tests/test_packaging.py tests/test_lambda_handler.py)
[ -f tests/test_crypto.py ] && FAST_TESTS+=(tests/test_crypto.py)
EXTRAS="async,server,encryption,test"

python_for() {  # python_for 3.12 -> an interpreter of that minor version
    local want=$1 root candidate
    root=${PYENV_ROOT:-$HOME/.pyenv}
    command -v pyenv >/dev/null 2>&1 && root=$(pyenv root)
    for candidate in "$root"/versions/"$want".*/bin/python; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    if command -v "python$want" >/dev/null 2>&1; then command -v "python$want"; return; fi
    echo "test-deps: no Python $want (looked under \$(pyenv root)/versions and on PATH)" >&2
    return 1
}

fresh_venv() {  # fresh_venv DIR VERSION
    rm -rf "$1"
    "$(python_for "$2")" -m venv "$1"
}

pip_q() {  # pip_q VENV ARGS...: quiet, without the noise of absent local indexes
    local venv=$1 log status=0
    shift
    log=$(mktemp)
    "$venv/bin/pip" install --quiet --no-compile "$@" >"$log" 2>&1 || status=$?
    grep -v '^WARNING: Location' "$log" || true
    rm -f "$log"
    return "$status"
}

versions() {
    "$1/bin/python" - <<'EOF'
import importlib.metadata as md, platform
names = ["boto3", "botocore", "aioboto3", "aiobotocore", "pydantic", "blake3", "moto", "cryptography"]
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        found.append(f"{name} -")
print(f"test-deps: Python {platform.python_version()}: " + ", ".join(found))
EOF
}

run_fast() {  # run_fast VENV BACKENDS PYTEST-ARGS...
    local venv=$1 backends=$2
    shift 2
    versions "$venv"
    S3STORE_TEST_BACKENDS=$backends "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        -m 'not slow' "$@"
}

job_newest() {
    local venv=$ROOT/.venv-deps-newest
    fresh_venv "$venv" 3.11
    pip_q "$venv" -e ".[server,encryption,test]"
    # Without aioboto3, async stores on moto cannot build their own client: the async suite
    # runs on the in-memory client here and on moto in phase 2.
    local sync_side=(tests/_sync tests/test_store_memory.py tests/test_codec.py tests/test_models.py
        tests/test_packaging.py tests/test_lambda_handler.py)
    [ -f tests/test_crypto.py ] && sync_side+=(tests/test_crypto.py)
    run_fast "$venv" memory,moto "${sync_side[@]}"
    run_fast "$venv" memory tests/_async tests/test_bad_input.py
    pip_q "$venv" -e ".[$EXTRAS]"
    run_fast "$venv" moto tests/_async tests/test_bad_input.py
}

job_lowest() {
    local venv=$ROOT/.venv-deps-lowest
    fresh_venv "$venv" 3.11
    pip_q "$venv" -c constraints-lowest.txt -e ".[$EXTRAS]"
    run_fast "$venv" memory,moto "${FAST_TESTS[@]}"
}

job_python() {  # job_python 3.12
    local venv=$ROOT/.venv-deps-py$1
    fresh_venv "$venv" "$1"
    pip_q "$venv" -c constraints.txt -e ".[$EXTRAS]"
    run_fast "$venv" memory,moto "${FAST_TESTS[@]}"
}

job_wheel() {
    local venv=$ROOT/.venv-deps-wheel build_venv=$ROOT/.venv-deps-build dist=$ROOT/.venv-deps-dist
    local copy
    fresh_venv "$build_venv" 3.11
    pip_q "$build_venv" -c constraints.txt build twine
    rm -rf "$dist"
    "$build_venv/bin/python" -m build --outdir "$dist" . >"$build_venv/build.log" 2>&1 ||
        { cat "$build_venv/build.log"; return 1; }
    "$build_venv/bin/twine" check --strict "$dist"/*
    "$build_venv/bin/python" - "$dist" <<'EOF'
import sys, tarfile, zipfile
from pathlib import Path

dist = Path(sys.argv[1])
(wheel,) = dist.glob("s3store-*.whl")
(sdist,) = dist.glob("s3store-*.tar.gz")
names = set(zipfile.ZipFile(wheel).namelist())
for needed in ("s3store/py.typed", "s3store/_async/store.py", "s3store/_sync/store.py",
               "s3store/cli.py"):
    assert needed in names, f"{wheel.name} lacks {needed}"
assert not any(n.startswith(("tests/", "bench/", "examples/")) for n in names), sorted(names)
sdist_names = tarfile.open(sdist).getnames()
assert any(n.endswith("/s3store/py.typed") for n in sdist_names), f"{sdist.name} lacks py.typed"
print(f"test-deps: {wheel.name}: {len(names)} files, py.typed present; {sdist.name} ok")
EOF
    fresh_venv "$venv" 3.11
    local wheel
    wheel=$(ls "$dist"/s3store-*.whl)
    pip_q "$venv" -c constraints.txt "s3store[$EXTRAS] @ file://$wheel"
    # The suite runs from a copy of tests/ (and the pytest settings) in a directory without
    # the source tree, so `import s3store` can only find the installed wheel.
    copy=$(mktemp -d /tmp/s3store-wheel-tests.XXXXXX)
    cp -r tests "$copy/tests"
    cp -r examples "$copy/examples"
    cp pyproject.toml "$copy/pyproject.toml"
    find "$copy" -name __pycache__ -prune -exec rm -rf {} +
    (
        cd "$copy"
        S3STORE_EXPECT_INSTALLED=1 run_fast "$venv" memory,moto tests/_async tests/_sync \
            tests/test_packaging.py tests/test_lambda_handler.py
    ) || { rm -rf "$copy"; return 1; }
    rm -rf "$copy"
}

jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(newest lowest py3.12 py3.13 wheel)
for job in "${jobs[@]}"; do
    start=$(date +%s)
    echo "test-deps: == $job =="
    case $job in
        newest) job_newest ;;
        lowest) job_lowest ;;
        py3.12 | py3.13) job_python "${job#py}" ;;
        wheel) job_wheel ;;
        *) echo "test-deps: unknown job $job (newest lowest py3.12 py3.13 wheel)" >&2; exit 2 ;;
    esac
    echo "test-deps: $job took $(( $(date +%s) - start ))s"
done
