"""The ``s3store`` command line: inspect, move and maintain sessions in a bucket.

Only the ``s3store`` entry point imports this module (``import s3store`` stays light), and
each command imports what it needs when it runs.

Exit codes (README, "Exit codes"), every failure with one ``s3store: error: ...`` line on
stderr and no traceback:

    0    ok
    1    problems found: fsck problems, import/export problems, a missing session or key,
         sessions ``ls --long`` could not read
    2    usage or configuration: a bad option or value, no bucket configured, no
         credentials, a malformed endpoint, a layout that does not match the prefix
    3    the server or the data failed: unreachable endpoint, missing bucket, access denied,
         5xx after retries, a corrupt document, a key collision, a failed server start
    70   internal error (a bug in s3store; ``S3STORE_DEBUG=1`` shows the traceback)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from s3store._sync.store import S3SessionStore

PROG = "s3store"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERNAL, EXIT_INTERRUPTED = 70, 130
EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 problems found (fsck, import/export, missing session or key); "
    "2 usage or configuration error; 3 the server or the data failed (unreachable, missing "
    "bucket, access denied, corrupt document); 70 internal error; 130 interrupted"
)
_PARTS = ("session", "artifacts", "traces", "runs", "verification", "subagents")
_GRACE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(code)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not usage + message."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{PROG} --help')", EXIT_USAGE)


# -- output helpers ---------------------------------------------------------------------


def _emit_json(value: Any, out: IO[str] | None = None) -> None:
    """Machine output: JSON on stdout."""
    stream = out or sys.stdout
    json.dump(value, stream, indent=2, ensure_ascii=False, default=_json_default)
    stream.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# C0 and C1 control characters, DEL, and the Unicode bidi controls that reorder what a
# terminal shows ("Trojan Source"): shown as escapes, never sent to the terminal raw.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _clean(value: object) -> str:
    """Text from a bucket made safe for a terminal: control characters (escape sequences,
    carriage returns, bells, bidi overrides) shown visibly, as ``\\x1b``, ``\\u202e``."""
    return _CONTROL.sub(_escape_control, str(value))


def _human_bytes(size: float) -> str:
    from s3store.demo import human_bytes

    return human_bytes(size)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    """A left-aligned text table on stdout (numbers right-aligned)."""
    rows = [[_clean(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            str(c).rjust(w) if str(c).replace(".", "").isdigit() else str(c).ljust(w)
            for c, w in zip(row, widths, strict=True)
        ]
        return "  ".join(cells).rstrip()

    print(line(header))
    for row in rows:
        print(line(row))


class ProgressBar:
    """A tiny progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = self.stream.isatty()
        self._lock = threading.Lock()
        self._drawn = False
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Redraw for ``done`` of ``total`` (at most 20 times a second, and at the end)."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if done < total and now - self._last < 0.05:
                return
            self._last = now
            width = 30
            filled = width * done // total if total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total}")
            self.stream.flush()
            self._drawn = True

    def text(self, message: str) -> None:
        """Show a status text instead of a bar."""
        if self.enabled:
            with self._lock:
                self.stream.write(f"\r\x1b[K{self.label}: {message}")
                self.stream.flush()
                self._drawn = True

    def close(self) -> None:
        """Erase the bar."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


class RequestTicker:
    """For one long store call: a live request count on stderr (terminals only)."""

    def __init__(self, label: str, store: S3SessionStore) -> None:
        self.bar = ProgressBar(label)
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RequestTicker:
        if self.bar.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.bar.text(f"{self.store.stats.total_requests} requests...")

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bar.close()


# -- store ------------------------------------------------------------------------------


def open_store(args: argparse.Namespace) -> S3SessionStore:
    """The sync store for the global options (``--url`` else ``S3STORE_URL``, ...)."""
    from s3store._sync.store import S3SessionStore
    from s3store.config import parse_s3_url
    from s3store.errors import ConfigurationError

    url = args.url or os.environ.get("S3STORE_URL")
    if not url:
        raise ConfigurationError(
            "no bucket: pass --url s3://bucket/prefix or set S3STORE_URL=s3://bucket/prefix"
        )
    bucket, prefix = parse_s3_url(url)
    store = S3SessionStore(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        profile_name=args.profile,
        layout=args.layout,
    )
    # import may write one layout beside the other; every other command reads one.
    _settle_layout(store, args.layout, strict=getattr(args, "command", None) != "import")
    return store


def _layouts_present(store: S3SessionStore) -> set[str]:
    """Which layouts have sessions (legacy) or any key (v1) under the prefix: 2 listings."""
    from s3store.keys import Layout

    present: set[str] = set()
    legacy = Layout(store.prefix, "legacy")
    for info in store.iter_objects(legacy.session_list_prefix, delimiter="/"):
        if legacy.session_id_from_key(info.key) is not None:
            present.add("legacy")
            break
    for _ in store.iter_objects(f"{legacy.root}v1/"):
        present.add("v1")
        break
    return present


def _settle_layout(store: S3SessionStore, given: str | None, *, strict: bool = True) -> None:
    """Use the layout the prefix holds: detected when ``--layout`` is not given and only one
    layout is there; with ``--layout`` naming a layout that is absent while the other is
    present, a usage error (an empty listing would be a lie)."""
    from s3store.keys import Layout

    present = _layouts_present(store)
    if given is None:
        if present == {"v1"}:
            store.layout = Layout(store.prefix, "v1")
            store.settings = store.settings.with_(layout="v1")
        return
    if strict and given not in present and present:
        (other,) = present
        raise CliError(
            f"--layout {given}: s3://{store.bucket}/{store.layout.root} holds {other}-layout "
            f"keys and no {given}-layout ones; drop --layout (the layout is detected) or pass "
            f"--layout {other} (export: --out-layout chooses the directory's layout)"
        )


def _base(store: S3SessionStore) -> str:
    """Where the per-kind directories start: the prefix (legacy) or ``<prefix>/v1/``."""
    root = store.layout.root
    return root if store.layout.name == "legacy" else f"{root}v1/"


# -- ls ---------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    """List sessions (``--long``: size, updated, messages, sidecars present)."""
    from s3store._backends import gather_limited
    from s3store.errors import StoreError
    from s3store.keys import SIDECAR_PARTS

    with open_store(args) as store:
        layout = store.layout
        if not args.long:
            ids = store.list()
            if args.json:
                _emit_json(ids)
            else:
                for ident in ids:
                    print(ident)
            return EXIT_OK
        infos = {}
        for info in store.iter_objects(layout.session_list_prefix, delimiter="/"):
            listed = layout.session_id_from_key(info.key)
            if listed is not None:
                infos[listed] = info
        present: set[str] = set()
        base = _base(store)
        for directory in [p.value for p in SIDECAR_PARTS] + ["artifacts"]:
            present.update(i.key for i in store.iter_objects(f"{base}{directory}/"))
        ids = sorted(infos)

        def describe(ident: str) -> dict[str, Any]:
            info = infos[ident]
            try:
                session = store.load_versioned_unchecked(info.key)
            except StoreError as exc:
                return {
                    "id": ident,
                    "session_id": None,
                    "key": info.key,
                    "size": info.size,
                    "last_modified": info.last_modified,
                    "messages": None,
                    "sidecars": [],
                    "error": str(exc),
                }
            sidecars = [
                name
                for name, key in [
                    ("artifacts", layout.artifact_manifest_key(ident)),
                    *[(p.value, layout.sidecar_key(p, ident)) for p in SIDECAR_PARTS],
                ]
                if key in present
            ]
            return {
                "id": ident,
                "session_id": session.id if session else None,
                "key": info.key,
                "size": info.size,
                "last_modified": info.last_modified,
                "messages": len(session.messages) if session else None,
                "sidecars": sidecars,
            }

        rows = gather_limited([partial(describe, i) for i in ids], store.settings.max_concurrency)
        unreadable = [r for r in rows if "error" in r]
        code = EXIT_PROBLEMS if unreadable else EXIT_OK
        if args.json:
            _emit_json(rows)
            return code
        table = [
            [
                r["id"] if r["session_id"] in (None, r["id"]) else f"{r['id']} ({r['session_id']})",
                _human_bytes(r["size"]),
                r["last_modified"].strftime("%Y-%m-%d %H:%M:%S") if r["last_modified"] else "-",
                "UNREADABLE" if "error" in r else str(r["messages"]),
                ",".join(r["sidecars"]) or "-",
            ]
            for r in rows
        ]
        _table(table, ["ID", "SIZE", "UPDATED (UTC)", "MSGS", "SIDECARS"])
        for r in unreadable:
            print(f"{_clean(r['id'])}: {_clean(r['error'])}", file=sys.stderr)
    return code


# -- show, cat --------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    """Show one part of a session: people-readable, or its wire JSON with ``--json``."""
    from s3store import codec
    from s3store.errors import KeyCollisionError
    from s3store.keys import safe_session_id

    with open_store(args) as store:
        loaders: dict[str, Callable[[str], Any]] = {
            "session": store.load,
            "artifacts": store.load_artifacts,
            "traces": store.load_trace_events,
            "runs": store.load_run_records,
            "verification": store.load_verification_reports,
            "subagents": store.load_subagent_tasks,
        }
        try:
            value = loaders[args.part](args.id)
        except KeyCollisionError as exc:
            # `ls` lists legacy file stems (demo_alpha) as the Rust store does; the session
            # at that key is demo/alpha's. Showing it by its stem is what was asked for.
            if store.layout.name != "legacy" or safe_session_id(exc.stored) != args.id:
                raise
            value = loaders[args.part](exc.stored)
    if value is None:
        what = "session" if args.part == "session" else f"{args.part} for session"
        raise CliError(f"no {what} {args.id!r}", EXIT_PROBLEMS)
    if args.json:
        # The wire document, exactly as the Rust store would write it.
        sys.stdout.write(codec.dumps(value).decode("utf-8") + "\n")
        return EXIT_OK
    _SHOW[args.part](value)
    return EXIT_OK


def _when(seconds: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _first_line(text: str, width: int = 90) -> str:
    line = _clean(text.strip().splitlines()[0] if text.strip() else "")
    return line if len(line) <= width else line[: width - 1] + "…"


def _show_session(s: Any) -> None:
    print(f"id        {_clean(s.id)}")
    print(f"name      {_clean(s.config.name)}")
    print(f"state     {_clean(s.state)}")
    print(f"workspace {_clean(s.config.workspace)}")
    if s.model_name:
        print(f"model     {_clean(s.model_name)}")
    print(f"created   {_when(s.created_at)}")
    print(f"updated   {_when(s.updated_at)}")
    usage = s.total_usage
    print(
        f"usage     {usage.total_tokens} tokens ({usage.prompt_tokens} in, "
        f"{usage.completion_tokens} out), cost ${s.total_cost:.4f}"
    )
    if s.tasks:
        print(f"tasks     {len(s.tasks)}")
    print(f"messages  {len(s.messages)}")
    for index, message in enumerate(s.messages):
        summary = []
        for block in message.content:
            kind = getattr(block, "type", "?")
            if kind == "text":
                summary.append(_first_line(block.text))
            elif kind == "tool_use":
                summary.append(f"[tool_use {_clean(block.name)}]")
            elif kind == "tool_result":
                summary.append(f"[tool_result {_clean(block.tool_use_id)}]")
            else:
                summary.append(f"[{_clean(kind)}]")
        print(f"  {index:>3} {_clean(message.role):<9} {' '.join(summary)}")


def _show_artifacts(a: Any) -> None:
    rows = [
        [x.tool_name, _human_bytes(len(x.content.encode())), str(x.shown_bytes), x.artifact_uri]
        for x in a.artifacts
    ]
    _table(rows, ["TOOL", "SIZE", "SHOWN", "URI"])
    print(f"{len(a.artifacts)} artifacts, {len(a.retained_uris)} retained")


def _show_traces(events: Any) -> None:
    rows = [
        [str(e.kind), e.name, "yes" if e.success else "no", str(e.exit_code), str(e.duration_ms)]
        for e in events
    ]
    _table(rows, ["KIND", "NAME", "OK", "EXIT", "MS"])


def _show_runs(runs: Any) -> None:
    rows = [
        [r.snapshot.id, str(r.snapshot.status), str(len(r.events)), _first_line(r.snapshot.prompt)]
        for r in runs
    ]
    _table(rows, ["RUN", "STATUS", "EVENTS", "PROMPT"])


def _show_verification(reports: Any) -> None:
    for report in reports:
        print(f"{_clean(report.subject)}: {_clean(report.status)}")
        for check in report.checks:
            required = " (required)" if check.required else ""
            print(
                f"  {_clean(check.status):<13} {_clean(check.id)}{required}: "
                f"{_clean(check.description)}"
            )


def _show_subagents(tasks: Any) -> None:
    rows = [
        [t.task_id, t.agent, str(t.status), t.child_session_id, _first_line(t.description, 50)]
        for t in tasks
    ]
    _table(rows, ["TASK", "AGENT", "STATUS", "CHILD SESSION", "DESCRIPTION"])


_SHOW: dict[str, Callable[[Any], None]] = {
    "session": _show_session,
    "artifacts": _show_artifacts,
    "traces": _show_traces,
    "runs": _show_runs,
    "verification": _show_verification,
    "subagents": _show_subagents,
}


def cmd_cat(args: argparse.Namespace) -> int:
    """Print one object: its bytes, or a JSON envelope with ``--json``."""
    import base64

    with open_store(args) as store:
        root = store.layout.root
        key = args.key if root and args.key.startswith(root) else f"{root}{args.key.lstrip('/')}"
        got = store.get_object(key)
    if got is None:
        raise CliError(f"no object {key!r} in bucket {store.bucket!r}", EXIT_PROBLEMS)
    body = got.body
    if not args.json:
        sys.stdout.buffer.write(body)
        if sys.stdout.isatty() and not body.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
        return EXIT_OK
    envelope: dict[str, Any] = {
        "key": key,
        "size": got.info.size or len(body),
        "etag": got.info.etag,
        "last_modified": got.info.last_modified,
    }
    try:
        envelope["json"] = json.loads(body)
    except ValueError:
        try:
            envelope["text"] = body.decode("utf-8")
        except UnicodeDecodeError:
            envelope["base64"] = base64.b64encode(body).decode("ascii")
    _emit_json(envelope)
    return EXIT_OK


# -- import, export ---------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    """Copy a FileSessionStore directory into the bucket (idempotent)."""
    from s3store.transfer import import_dir

    bar = ProgressBar("import")
    with open_store(args) as store:
        try:
            report = import_dir(store, args.dir, overwrite=args.overwrite, progress=bar)
        finally:
            bar.close()
        requests = store.stats.total_requests
    if args.json:
        _emit_json(report.as_dict())
    else:
        print(
            f"imported {args.dir} into s3://{store.bucket}/{store.layout.root} "
            f"({store.layout.name} layout): {len(report.uploaded)} written, "
            f"{len(report.unchanged)} unchanged, {len(report.kept)} kept (changed in the "
            f"bucket), {report.blobs_uploaded} blobs uploaded, "
            f"{len(report.skipped)} files skipped, {requests} requests"
        )
        for path, reason in report.skipped:
            print(f"  skipped {_clean(path)}: {_clean(reason)}")
        for key, reason in sorted(report.kept):
            print(f"  kept {_clean(key)}: {_clean(reason)}")
        if report.kept:
            print("  (--overwrite replaces what was kept with the files' bytes)")
        for path, detail in report.problems:
            print(f"  PROBLEM {path}: {detail}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_export(args: argparse.Namespace) -> int:
    """Write a directory the Rust FileSessionStore of the chosen layout loads."""
    from s3store.transfer import export_dir

    bar = ProgressBar("export")
    with open_store(args) as store:
        layout = args.out_layout or store.layout.name
        try:
            report = export_dir(store, args.dir, layout=layout, progress=bar)
        finally:
            bar.close()
    if args.json:
        _emit_json(report.as_dict())
    else:
        print(
            f"exported s3://{store.bucket}/{store.layout.root} to {args.dir} ({layout} layout): "
            f"{len(report.written)} files written, {len(report.unchanged)} unchanged"
        )
        for key, detail in report.problems:
            print(f"  PROBLEM {key}: {detail}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


# -- gc, fsck, du -----------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``24h``, ``7d``, ``2w`` (a number and one unit) as a timedelta."""
    from s3store import _validate
    from s3store.errors import StoreError

    match = _GRACE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and s, m, h, d or w (30s, 15m, 24h, 7d)"
        )
    try:
        return _validate.duration(text, "duration")
    except StoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_duration(value: timedelta) -> str:
    """A timedelta as the CLI spells durations: ``24h``, ``7d``, ``90m``, ``45s``."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds % size == 0 and (seconds >= 2 * size or (unit in "hm" and seconds >= size)):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def cmd_gc(args: argparse.Namespace) -> int:
    """Delete unreferenced blobs older than the grace period (dry run unless --apply)."""
    with open_store(args) as store, RequestTicker("gc", store):
        if args.grace_floor is not None:
            floor = args.grace_floor.total_seconds()
            store.settings = store.settings.with_(
                gc_grace_floor=floor,
                blob_reuse_window=min(store.settings.blob_reuse_window, floor / 2),
            )
        report = store.gc(
            grace=args.grace,
            dry_run=not args.apply,
            allow_no_manifests=args.allow_no_manifests,
            exclusive=args.exclusive,
        )
    if args.json:
        _emit_json(report.as_dict())
        return EXIT_OK
    verb = "deleted" if args.apply else "would delete"
    for key in report.deleted_keys:
        print(f"{verb}: {key}")
    print(
        f"{report.manifests} manifests (both layouts), {report.blobs} blobs: "
        f"kept {report.referenced} referenced, {report.kept_young} unreferenced but younger "
        f"than {format_duration(args.grace)}, {report.kept_refreshed} refreshed by a writer "
        "during gc"
    )
    print(f"{verb} {report.deleted} blobs, {_human_bytes(report.deleted_bytes)}")
    if not args.apply and report.deleted:
        print("dry run: pass --apply to delete")
    return EXIT_OK


def cmd_fsck(args: argparse.Namespace) -> int:
    """Check every document and blob; exit 1 if anything is wrong."""
    with open_store(args) as store, RequestTicker("fsck", store):
        report = store.fsck()
    if args.json:
        _emit_json(report.as_dict())
    else:
        for problem in report.problems:
            print(f"{problem.kind:<13} {problem.key}: {problem.detail}")
        print(
            f"{report.documents} documents, {report.blobs} blobs checked: "
            f"{len(report.problems)} problems, {len(report.unreferenced_blobs)} unreferenced "
            f"blobs{' (gc removes them)' if report.unreferenced_blobs else ''}"
        )
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_du(args: argparse.Namespace) -> int:
    """Objects and bytes by kind, and the artifact dedup ratio."""
    from s3store import cas
    from s3store._backends import gather_limited
    from s3store.errors import DocumentError
    from s3store.transfer import classify_path

    with open_store(args) as store:
        layout = store.layout
        root = layout.root
        kinds: dict[str, list[int]] = {}
        manifests: list[str] = []
        for info in store.iter_objects(root):
            rel = info.key[len(root) :]
            entry = classify_path(rel)
            if info.key.startswith(layout.blob_root):
                kind = "blobs"
            elif rel.startswith("leases/"):
                kind = "leases"
            elif entry is not None and entry.layout == layout.name:
                kind = entry.kind
                if kind == "artifacts":
                    manifests.append(info.key)
            else:
                kind = "other"
            counts = kinds.setdefault(kind, [0, 0])
            counts[0] += 1
            counts[1] += info.size

        def logical(key: str) -> tuple[int, int]:
            got = store.get_object(key)
            if got is None:
                return 0, 0
            try:
                refs = cas.parse_manifest(got.body, source=key).refs.values()
            except DocumentError:
                return 0, 0
            return len(refs), sum(r.size for r in refs)

        sizes = gather_limited(
            [partial(logical, k) for k in manifests], store.settings.max_concurrency
        )
    refs = sum(n for n, _ in sizes)
    logical_bytes = sum(b for _, b in sizes)
    stored = kinds.get("blobs", [0, 0])[1]
    ratio = logical_bytes / stored if stored else None
    result = {
        "bucket": store.bucket,
        "prefix": store.prefix,
        "layout": layout.name,
        "kinds": {k: {"objects": v[0], "bytes": v[1]} for k, v in sorted(kinds.items())},
        "objects": sum(v[0] for v in kinds.values()),
        "bytes": sum(v[1] for v in kinds.values()),
        "blob_refs": refs,
        "logical_blob_bytes": logical_bytes,
        "stored_blob_bytes": stored,
        "dedup_ratio": ratio,
    }
    if args.json:
        _emit_json(result)
        return EXIT_OK
    rows = [[k, str(v[0]), _human_bytes(v[1])] for k, v in sorted(kinds.items())]
    rows.append(["total", str(result["objects"]), _human_bytes(float(str(result["bytes"])))])
    _table(rows, ["KIND", "OBJECTS", "BYTES"])
    if ratio is not None:
        print(
            f"artifacts: {refs} blob references, {_human_bytes(logical_bytes)} logical in "
            f"{_human_bytes(stored)} of blobs: dedup ratio {ratio:.2f}"
        )
    return EXIT_OK


# -- serve, demo ------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Run a local S3 endpoint in the foreground until SIGINT/SIGTERM."""
    from s3store.devserver import (
        DEV_ACCESS_KEY,
        DEV_SECRET_KEY,
        MotoServer,
        WeedServer,
        ensure_bucket,
        s3_client,
    )

    refused = [
        f"--{name.replace('_', '-')}"
        for name in ("url", "endpoint_url", "region", "profile", "layout")
        if getattr(args, name, None) is not None
    ]
    if refused:
        raise CliError(
            f"serve does not take {', '.join(refused)}: it runs the endpoint, on 127.0.0.1 "
            "(--port), and creates --bucket; the export line it prints configures the rest"
        )
    if not 0 < args.port < 65536:
        raise CliError(f"--port {args.port} is not a TCP port (1-65535)")
    _check_port_free(args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    weed: WeedServer | None = None
    moto: MotoServer | None = None
    try:
        if args.engine == "weed":
            weed = WeedServer(Path(args.dir).resolve(), args.port)
            try:
                weed.start()
            except RuntimeError as exc:
                raise CliError(str(exc), EXIT_FAILED) from None
            endpoint = weed.endpoint
            what = (
                f"SeaweedFS (weed mini), data in {weed.data_dir} (persistent), log {weed.log_path}"
            )
        else:
            moto = MotoServer(port=args.port)
            moto.start()
            endpoint = moto.endpoint
            what = "moto server, in memory: NOT persistent, data is lost when it stops"
        ensure_bucket(s3_client(endpoint, DEV_ACCESS_KEY, DEV_SECRET_KEY), args.bucket)
        print(f"{PROG} serve: {what}", file=sys.stderr)
        print(
            f"export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY} "
            f"AWS_SECRET_ACCESS_KEY={DEV_SECRET_KEY} AWS_REGION=us-east-1 "
            f"S3STORE_URL=s3://{args.bucket}/dev",
            flush=True,
        )
        print(f"{PROG} serve: ready on {endpoint}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.2):
            if weed is not None and weed.process is not None and weed.process.poll() is not None:
                raise CliError(
                    f"weed exited unexpectedly (code {weed.process.returncode}); "
                    f"see {weed.log_path}",
                    EXIT_FAILED,
                )
        print(f"{PROG} serve: stopping", file=sys.stderr, flush=True)
    finally:
        if weed is not None:
            weed.stop()
        if moto is not None:
            moto.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _check_port_free(port: int) -> None:
    """Refuse a port something listens on already (another S3 server, or anything else):
    connecting to it would reach that listener, not the server serve starts."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        in_use = probe.connect_ex(("127.0.0.1", port)) == 0
    if in_use:
        raise CliError(
            f"port {port} on 127.0.0.1 is in use (another server?): stop it or pass --port "
            "with a free port"
        )


def cmd_demo(args: argparse.Namespace) -> int:
    """Round-trip every document kind through S3 and show keys and request counts."""
    from s3store import demo

    return demo.run(
        url=args.url,
        endpoint_url=args.endpoint_url,
        region=args.region,
        profile=args.profile,
        layout=args.layout,
        keep=args.keep,
        out=sys.stdout,
    )


# -- parser -----------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool, layout: bool = True) -> None:
    # The same options work before and after the command: the subcommand copies default to
    # SUPPRESS so they do not overwrite what was given before it.
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--url", default=default, help="s3://bucket/prefix (default: $S3STORE_URL)")
    parser.add_argument(
        "--endpoint-url", default=default, help="S3 endpoint (default: $AWS_ENDPOINT_URL)"
    )
    parser.add_argument("--region", default=default, help="AWS region")
    parser.add_argument("--profile", default=default, help="AWS profile")
    if layout:
        parser.add_argument(
            "--layout",
            choices=("legacy", "v1"),
            default=default,
            help="key layout of the store (default: legacy)",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``s3store`` command."""
    parser = _Parser(
        prog=PROG,
        description="a3s-code agent sessions in S3: inspect, import/export, maintain.",
        epilog=EXIT_CODES_HELP,
    )
    _add_common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if name != "serve":
            _add_common(sub, suppress=True)
        sub.set_defaults(func=func)
        return sub

    def json_flag(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")

    sub = command(
        "serve",
        cmd_serve,
        "run a local S3 endpoint for dev loops in the foreground (Ctrl-C stops it); paste "
        "the export line it prints into another shell",
    )
    sub.add_argument("--dir", default=".s3store/serve", help="data directory (weed engine)")
    sub.add_argument("--port", type=int, default=8333, help="S3 port on 127.0.0.1")
    sub.add_argument("--bucket", default="s3store-dev", help="bucket to create")
    sub.add_argument(
        "--engine",
        choices=("weed", "moto"),
        default="weed",
        help="weed: SeaweedFS, on disk (default); moto: in memory, not persistent",
    )

    sub = command("demo", cmd_demo, "round-trip every document kind through S3")
    sub.add_argument(
        "--keep", action="store_true", help="keep the demo objects on a configured endpoint"
    )

    sub = command("ls", cmd_ls, "list sessions")
    sub.add_argument("--long", "-l", action="store_true", help="size, updated, messages, sidecars")
    json_flag(sub)

    sub = command("show", cmd_show, "show a session or one of its sidecars")
    sub.add_argument(
        "id",
        metavar="ID",
        help="session id, or the file stem `ls` prints in the legacy layout (demo_alpha)",
    )
    sub.add_argument(
        "--part", choices=_PARTS, default="session", help="the session or which sidecar"
    )
    json_flag(sub)

    sub = command("cat", cmd_cat, "print one object (key relative to the prefix)")
    sub.add_argument("key", metavar="KEY", help="object key relative to the prefix")
    json_flag(sub)

    sub = command("import", cmd_import, "copy a FileSessionStore directory into the bucket")
    sub.add_argument("dir", metavar="DIR", help="a FileSessionStore directory (either layout)")
    sub.add_argument(
        "--overwrite",
        action="store_true",
        help="replace objects that changed in the bucket since they were imported "
        "(default: keep them and report them)",
    )
    json_flag(sub)

    sub = command("export", cmd_export, "write a directory the Rust FileSessionStore loads")
    sub.add_argument("dir", metavar="DIR", help="directory to write (created if missing)")
    sub.add_argument(
        "--out-layout",
        dest="out_layout",
        choices=("legacy", "v1"),
        default=None,
        help="layout of the directory (default: the store's); --layout is the store's",
    )
    json_flag(sub)

    sub = command("gc", cmd_gc, "delete unreferenced artifact blobs (dry run unless --apply)")
    sub.add_argument(
        "--grace",
        type=parse_duration,
        default="24h",
        help="keep unreferenced blobs younger than this: a number and s, m, h, d or w "
        "(30m, 24h, 7d); at least the floor",
    )
    sub.add_argument(
        "--grace-floor",
        type=parse_duration,
        default=None,
        help="the smallest grace allowed, as --grace (store default 1h); lower it only when "
        "every writer of the bucket uses a blob_reuse_window below half of it (tests, dev "
        "buckets)",
    )
    sub.add_argument(
        "--allow-no-manifests",
        action="store_true",
        help="collect blobs even when no artifact manifest exists (else refused: wrong prefix?)",
    )
    sub.add_argument(
        "--exclusive",
        action="store_true",
        help="no writer runs meanwhile: delete without If-Match (servers without "
        "conditional DeleteObject, e.g. LocalStack)",
    )
    sub.add_argument("--apply", action="store_true", help="really delete")
    json_flag(sub)

    sub = command("fsck", cmd_fsck, "check documents and blobs (exit 1 on problems)")
    json_flag(sub)

    sub = command("du", cmd_du, "objects and bytes by kind, artifact dedup ratio")
    json_flag(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (head, less) went away: not an error. Point stdout at devnull so the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        code = exit_code(exc)
        if code == EXIT_INTERNAL and os.environ.get("S3STORE_DEBUG"):
            raise
        message = str(exc) or type(exc).__name__
        if code == EXIT_INTERNAL:
            message = (
                f"internal error: {type(exc).__name__}: {message} (a bug in s3store; "
                "S3STORE_DEBUG=1 shows the traceback)"
            )
        _fail(message, code)


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception that ends a command (see the module docstring)."""
    from s3store.errors import (
        ConfigurationError,
        InvalidArgumentError,
        InvalidIdError,
        StoreError,
    )

    if isinstance(exc, ConfigurationError | InvalidIdError | InvalidArgumentError):
        return EXIT_USAGE
    if isinstance(exc, StoreError | OSError):
        return EXIT_FAILED
    if type(exc).__module__.startswith(("botocore", "boto3", "urllib3")):
        return EXIT_FAILED
    return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
