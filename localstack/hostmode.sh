#!/usr/bin/env bash
# LocalStack (S3 only) on the host, without Docker, for the s3store dev loop.
#
#   bash localstack/hostmode.sh install|start|stop|restart|status|env
#
# Environment (all optional):
#   LOCALSTACK_VENV            venv path                 (default: <repo>/.venv-localstack)
#   LOCALSTACK_PYTHON          interpreter for the venv  (default: pyenv 3.13.0, then 3.13.x/3.12.x, then python3.13/python3.12)
#   LOCALSTACK_PORT            gateway port on 127.0.0.1 (default: 4566)
#   LOCALSTACK_BUCKET          bucket created on start   (default: s3store-dev)
#   LOCALSTACK_PREFIX          key prefix in S3STORE_URL (default: dev)
#   LOCALSTACK_STATE_DIR       state, log and pid file   (default: <repo>/.localstack)
#   LOCALSTACK_GATEWAY_SERVER  auto (default: twisted on [::ffff:127.0.0.1] if the kernel allows, else hypercorn),
#                              twisted or hypercorn. Either way only 127.0.0.1 is bound (checked after start).
#   LOCALSTACK_READY_TIMEOUT   seconds to wait for S3    (default: 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${LOCALSTACK_VENV:-$ROOT/.venv-localstack}"
STATE_DIR="${LOCALSTACK_STATE_DIR:-$ROOT/.localstack}"
PORT="${LOCALSTACK_PORT:-4566}"
BUCKET="${LOCALSTACK_BUCKET:-s3store-dev}"
PREFIX="${LOCALSTACK_PREFIX:-dev}"
GATEWAY_SERVER="${LOCALSTACK_GATEWAY_SERVER:-auto}"
READY_TIMEOUT="${LOCALSTACK_READY_TIMEOUT:-60}"
REQUIREMENTS="$HERE/requirements.txt"
CONSTRAINTS="$HERE/constraints.txt"
STAMP="$VENV/.localstack-installed"
PID_FILE="$STATE_DIR/localstack.pid"
LOG_FILE="$STATE_DIR/localstack.log"
ENDPOINT="http://127.0.0.1:$PORT"

LOG_OFFSET=0
log_tail() { # last lines this start wrote to the log
    tail -c "+$((LOG_OFFSET + 1))" "$LOG_FILE" 2>/dev/null | tail -n 30 >&2 || true
}
log() { printf 'localstack: %s\n' "$*" >&2; }
die() { printf 'localstack: %s\n' "$*" >&2; exit 1; }

case "$PORT" in '' | *[!0-9]*) die "LOCALSTACK_PORT must be a number, got '$PORT'" ;; esac
case "$READY_TIMEOUT" in '' | *[!0-9]*) die "LOCALSTACK_READY_TIMEOUT must be a number, got '$READY_TIMEOUT'" ;; esac

env_line() {
    printf 'export AWS_ENDPOINT_URL=%s AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 S3STORE_URL=s3://%s/%s\n' \
        "$ENDPOINT" "$BUCKET" "$PREFIX"
}

# ---------------------------------------------------------------- install

python_ok() { # $1: interpreter; true if it runs and is >= 3.12 (localstack-core uses PEP 695 syntax)
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
        python_ok "$LOCALSTACK_PYTHON" || return 1
        printf '%s\n' "$LOCALSTACK_PYTHON"
        return 0
    fi
    local candidates=(/root/.pyenv/versions/3.13.0/bin/python) c
    # Other 3.13.x, then 3.12.x under pyenv, newest first.
    local found=(/root/.pyenv/versions/3.1[23].*/bin/python)
    if [[ -e "${found[0]}" ]]; then
        while IFS= read -r c; do candidates+=("$c"); done < <(printf '%s\n' "${found[@]}" | sort -Vr)
    fi
    for c in python3.13 python3.12; do
        command -v "$c" >/dev/null 2>&1 && candidates+=("$(command -v "$c")")
    done
    for c in "${candidates[@]}"; do
        if [[ -x "$c" ]] && python_ok "$c"; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

install_fingerprint() { # changes whenever the pins or the interpreter change
    {
        cat "$REQUIREMENTS"
        [[ -f "$CONSTRAINTS" ]] && cat "$CONSTRAINTS"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

is_installed() {
    [[ -f "$STAMP" && -x "$VENV/bin/python" ]] || return 1
    [[ "$(cat "$STAMP")" == "$(install_fingerprint 2>/dev/null)" ]]
}

cmd_install() {
    if is_installed; then
        [[ "${1:-}" == quiet ]] || log "already installed in $VENV"
        return 0
    fi
    local py install_log reason
    mkdir -p "$STATE_DIR"
    install_log="$STATE_DIR/install.log"
    if ! py="$(find_python)"; then
        if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
            die "cannot install: LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a working Python >= 3.12"
        fi
        die "cannot install: no Python >= 3.12 found (tried /root/.pyenv/versions/3.1[23]*, python3.13, python3.12; set LOCALSTACK_PYTHON)"
    fi
    log "installing into $VENV with $py (log: $install_log)"
    : >"$install_log"
    # A venv whose interpreter is missing or different is rebuilt from scratch.
    if [[ -x "$VENV/bin/python" ]] &&
        [[ "$("$VENV/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null)" != "$("$py" -c 'import sys; print(sys.version)')" ]]; then
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        rm -rf "$VENV"
        if ! "$py" -m venv "$VENV" >>"$install_log" 2>&1; then
            die "cannot install: '$py -m venv $VENV' failed (see $install_log)"
        fi
    fi
    local pip_args=(install --disable-pip-version-check --no-input -r "$REQUIREMENTS")
    [[ -f "$CONSTRAINTS" ]] && pip_args+=(-c "$CONSTRAINTS")
    if ! "$VENV/bin/python" -m pip "${pip_args[@]}" >>"$install_log" 2>&1; then
        reason="$(grep -m 1 -E '^ERROR' "$install_log" | sed 's/^ERROR: //' || true)"
        die "cannot install: pip install failed: ${reason:-see $install_log} (full log: $install_log)"
    fi
    install_fingerprint >"$STAMP"
    log "installed ($("$VENV/bin/python" -m pip show localstack-core 2>/dev/null | sed -n 's/^Version: /localstack-core /p'))"
}

# ---------------------------------------------------------------- process handling

# PID of our LocalStack if the pid file points at a live process that is really it.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against PID reuse: the process must be localstack.runtime.main.
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *localstack.runtime.main* ]] || return 1
    printf '%s\n' "$pid"
}

group_pids() { # $1: process group id -> live members, one per line
    ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g { print $1 }'
}

port_in_use() {
    ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .
}

health() { # prints the s3 state from /_localstack/health, or nothing
    "$VENV/bin/python" - "$ENDPOINT" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/_localstack/health", timeout=2) as r:
        print(json.load(r).get("services", {}).get("s3", ""))
except Exception:
    pass
PY
}

elapsed() { # seconds since $1 (an $EPOCHREALTIME value), 2 decimals
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

elapsed_lt() { # true while less than $2 seconds have passed since $1
    awk -v a="$1" -v b="$EPOCHREALTIME" -v t="$2" 'BEGIN { exit !((b - a) < t) }'
}

v4mapped_loopback_ok() { # can an IPv6 socket bound to ::ffff:127.0.0.1 take IPv4 connections here?
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import socket
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.bind(("::ffff:127.0.0.1", 0))
srv.listen(1)
socket.create_connection(("127.0.0.1", srv.getsockname()[1]), timeout=2).close()
PY
}

create_bucket() {
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
        "$VENV/bin/python" - "$ENDPOINT" "$BUCKET" <<'PY'
import sys
import boto3
from botocore.config import Config

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(retries={"max_attempts": 3}, s3={"addressing_style": "path"}))
try:
    s3.head_bucket(Bucket=bucket)
    print(f"localstack: bucket {bucket} already exists", file=sys.stderr)
except s3.exceptions.ClientError:
    try:
        s3.create_bucket(Bucket=bucket)  # us-east-1: also 200 if it appeared meanwhile
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    print(f"localstack: created bucket {bucket}", file=sys.stderr)
PY
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid) on $ENDPOINT"
        create_bucket
        env_line
        return 0
    fi
    cmd_install quiet
    if port_in_use; then
        die "port $PORT is already in use by another process (set LOCALSTACK_PORT):$(ss -Hltnp "sport = :$PORT" | head -n 3 | tr -s ' ' | sed 's/^/ /')"
    fi
    mkdir -p "$STATE_DIR/fs"
    rm -f "$PID_FILE"

    # Loopback only. Hypercorn honours the host in GATEWAY_LISTEN. The twisted gateway ignores an
    # IPv4 host (TCP4ServerEndpoint(reactor, port) binds 0.0.0.0) but passes an IPv6 one through,
    # so it gets the IPv4-mapped loopback [::ffff:127.0.0.1]: reachable at 127.0.0.1 and nowhere else.
    local server="$GATEWAY_SERVER" listen
    if [[ "$server" == auto ]]; then
        if v4mapped_loopback_ok; then server=twisted; else server=hypercorn; fi
    fi
    case "$server" in
    twisted)
        v4mapped_loopback_ok || die "LOCALSTACK_GATEWAY_SERVER=twisted needs IPv6 with IPv4-mapped addresses (net.ipv6.bindv6only=0); use hypercorn"
        listen="[::ffff:127.0.0.1]:$PORT"
        ;;
    hypercorn) listen="127.0.0.1:$PORT" ;;
    *) die "LOCALSTACK_GATEWAY_SERVER must be auto, twisted or hypercorn, got '$server'" ;;
    esac
    LOG_OFFSET="$(stat -c %s "$LOG_FILE" 2>/dev/null || echo 0)"
    printf '\n===== %s start (port %s, gateway %s, listen %s)\n' "$(date -u +%FT%TZ)" "$PORT" "$server" "$listen" >>"$LOG_FILE"

    local t0=$EPOCHREALTIME
    # setsid: own session and process group, so it survives this shell and `stop` can signal the
    # whole group. The launched bash writes its own PID (== the pgid, kept across exec) to the pid
    # file before exec'ing LocalStack, so the file is right whether or not setsid had to fork.
    (
        cd "$STATE_DIR"
        # shellcheck disable=SC2016 # $$/$1/$2 are for the inner bash
        exec env \
            SERVICES=s3 \
            EAGER_SERVICE_LOADING=1 \
            GATEWAY_LISTEN="$listen" \
            GATEWAY_SERVER="$server" \
            LOCALSTACK_HOST="127.0.0.1:$PORT" \
            FILESYSTEM_ROOT="$STATE_DIR/fs" \
            DISABLE_EVENTS=1 \
            SKIP_SSL_CERT_DOWNLOAD=1 \
            DNS_ADDRESS=0 \
            ANALYTICS_API=http://127.0.0.1:9 \
            API_ENDPOINT=http://127.0.0.1:9 \
            PYTHONUNBUFFERED=1 \
            setsid nohup bash -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && exec "$2" -m localstack.runtime.main' \
            _ "$PID_FILE" "$VENV/bin/python"
    ) </dev/null >>"$LOG_FILE" 2>&1 &

    local state="" i
    for ((i = 0; i < 100; i++)); do # the pid file appears within milliseconds
        [[ -s "$PID_FILE" ]] && break
        sleep 0.05
    done
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || {
        log "LocalStack did not start (no pid file); last lines of $LOG_FILE:"
        log_tail
        exit 1
    }
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log "process $pid exited before S3 was ready; last lines of $LOG_FILE:"
            log_tail
            exit 1
        fi
        state="$(health)"
        [[ "$state" == "running" || "$state" == "available" ]] && break
        if ! elapsed_lt "$t0" "$READY_TIMEOUT"; then
            log "S3 not ready after ${READY_TIMEOUT}s (health: '${state:-no answer}'); stopping pid $pid. Last lines of $LOG_FILE:"
            log_tail
            cmd_stop >/dev/null 2>&1 || true
            exit 1
        fi
        sleep 0.2
    done
    # Refuse to keep running if anything of ours listens beyond loopback.
    local addr bad=""
    while read -r addr; do
        case "$addr" in
        127.0.0.1:* | '[::ffff:127.0.0.1]:'* | '[::1]:'*) ;;
        *) bad+=" $addr" ;;
        esac
    done < <(ss -Hltunp 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) { print $5 }')
    if [[ -n "$bad" ]]; then
        cmd_stop >/dev/null 2>&1 || true
        die "refusing to run: LocalStack listened on non-loopback address(es):$bad (stopped it)"
    fi
    log "ready in $(elapsed "$t0")s (pid $pid, gateway $server on $listen, s3 $state, log $LOG_FILE)"
    create_bucket
    log "point s3store at it with:"
    env_line
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        if [[ -f "$PID_FILE" ]]; then
            log "not running (removing stale $PID_FILE)"
            rm -f "$PID_FILE"
        else
            log "not running"
        fi
        return 0
    fi
    # Started with setsid, so the process group id is the pid.
    local pgid
    pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
    if [[ "$pgid" == "$pid" ]]; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    local i
    for ((i = 0; i < 150; i++)); do # up to 15 s for a clean shutdown
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Anything left in its process group (helpers it forked) goes too.
    if [[ "$pgid" == "$pid" ]]; then
        local left
        left="$(group_pids "$pgid")"
        if [[ -n "$left" ]]; then
            kill -KILL -- "-$pgid" 2>/dev/null || true
            sleep 0.2
        fi
        left="$(group_pids "$pgid")"
        [[ -z "$left" ]] || die "processes still alive in group $pgid: ${left//$'\n'/ }"
    fi
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "pid $pid is still alive"
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "localstack: running (pid $pid) on $ENDPOINT, s3: $(health || true)"
        return 0
    fi
    echo "localstack: not running"
    return 3
}

usage() {
    cat >&2 <<EOF
usage: $0 {install|start|stop|restart|status|env}
  install  create $VENV with the pinned LocalStack (idempotent)
  start    install if needed, start S3 on $ENDPOINT, create bucket $BUCKET, print the env line
  stop     stop the LocalStack started by 'start'
  restart  stop, then start
  status   exit 0 if running, 3 if not
  env      print the export line only:  eval "\$($0 env)"
EOF
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop && cmd_start ;;
status) cmd_status ;;
env) env_line ;;
-h | --help | help) usage ;;
*)
    usage
    exit 2
    ;;
esac
