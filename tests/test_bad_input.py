"""Bad input: hostile ids and corrupt objects.

Ids become keys inside the prefix or are refused with InvalidIdError; never a key outside
the prefix, never another id's object handed over silently. Corrupt objects raise typed
errors naming the key and leave everything else readable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3store import AsyncS3SessionStore, S3SessionStore, cas, codec
from s3store.errors import (
    CorruptObjectError,
    DocumentTooLargeError,
    IntegrityError,
    InvalidIdError,
    KeyCollisionError,
    StoreError,
)
from s3store.keys import S3_MAX_KEY_BYTES, Layout, LayoutName, Part, decode_v1_id
from s3store.testing import MemoryBackend, MemoryObjectClient
from tests import helpers
from tests.conftest import BUCKET, Backend

LAYOUTS = pytest.mark.parametrize("layout", ["legacy", "v1"])
HOSTILE_IDS = [
    "",
    ".",
    "..",
    "...",
    "../escape",
    "../../etc/passwd",
    "a/../../b",
    "/abs",
    "a/b",
    "a\\b",
    "..\\..\\win",
    "./x",
    "x/.",
    "x/./y",
    "%2e%2e%2f",
    "nul\x00byte",
    "bell\x07",
    "newline\nid",
    "del\x7f",
    "lone\ud800surrogate",
    "\udfff",
    "é" * 600,
    "x" * 1100,
    "ok-id",
    " spaced id ",
    "emoji-🙂",
    "?query#frag",
    "white\u2028space",
]


def _all_keys(backend: Backend) -> set[str]:
    return set(backend.raw_keys(""))


@pytest.fixture
def base(prefix: str) -> str:
    return f"{prefix}/inner"


async def _attempt(op: Callable[[], Awaitable[Any]]) -> str:
    """'ok', 'invalid' (InvalidIdError) or 'collision' (KeyCollisionError)."""
    try:
        await op()
    except InvalidIdError:
        return "invalid"
    except KeyCollisionError:
        return "collision"
    return "ok"


def _operations(store: AsyncS3SessionStore, sid: str) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: store.save(helpers.session(sid)),
        lambda: store.load(sid),
        lambda: store.exists(sid),
        lambda: store.save_trace_events(sid, helpers.trace_events()),
        lambda: store.load_trace_events(sid),
        lambda: store.save_artifacts(sid, helpers.artifacts("a", "b" * 5000)),
        lambda: store.load_artifacts(sid),
        lambda: store.save_loop_checkpoint(sid, helpers.loop_checkpoint(sid)),
        lambda: store.load_loop_checkpoint(sid),
    ]


@LAYOUTS
async def test_hostile_ids_stay_inside_the_prefix(backend: Backend, base: str, layout: str) -> None:
    before = _all_keys(backend)
    outcomes: dict[str, str] = {}
    # "." in the legacy layout: see test_dot_id_is_refused_in_the_legacy_layout.
    hostile = [sid for sid in HOSTILE_IDS if layout == "v1" or sid != "."]
    async with AsyncS3SessionStore(**backend.store_kwargs(base, layout=layout)) as store:
        for sid in hostile:
            ops = _operations(store, sid)
            results = {await _attempt(op) for op in ops}
            # An id is refused by every operation or accepted by every one.
            assert results in ({"invalid"}, {"ok"}, {"ok", "collision"}), (sid, results)
            outcomes[sid] = "invalid" if results == {"invalid"} else "ok"
            if outcomes[sid] == "ok":
                # The object is at exactly the key the layout computed (no server-side
                # normalisation of "." segments or escapes).
                keys = set(backend.raw_keys(f"{base}/"))
                assert store.layout.session_key(sid) in keys
                assert store.layout.sidecar_key(Part.TRACES, sid) in keys
                assert store.layout.artifact_manifest_key(sid) in keys
        listed = await store.list()
        report = await store.fsck()
    new = _all_keys(backend) - before
    assert new, "nothing was written"
    outside = sorted(k for k in new if not k.startswith(f"{base}/"))
    assert not outside, outside
    assert report.ok, report.problems
    refused = {sid for sid, outcome in outcomes.items() if outcome == "invalid"}
    assert refused == {
        "",
        "nul\x00byte",
        "bell\x07",
        "newline\nid",
        "del\x7f",
        "lone\ud800surrogate",
        "\udfff",
        "é" * 600,
        "x" * 1100,
    }
    if layout == "v1":
        assert sorted(listed) == sorted(sid for sid in hostile if sid not in refused)


async def test_dot_id_is_refused_in_the_legacy_layout(backend: Backend, base: str) -> None:
    """Legacy id "." keeps its name (as in Rust), so its artifact manifest key is
    ``<prefix>/artifacts/./artifacts.json``: SeaweedFS answers 400 InvalidRequest, and HTTP
    stacks that normalise dot segments would write ``<prefix>/artifacts/artifacts.json``."""
    async with AsyncS3SessionStore(**backend.store_kwargs(base)) as store:
        with pytest.raises(InvalidIdError):
            store.layout.artifact_manifest_key(".")
        with pytest.raises(InvalidIdError):
            await store.save_artifacts(".", helpers.artifacts("a"))


async def test_delete_of_a_hostile_id_deletes_only_inside_the_prefix(
    backend: Backend, base: str
) -> None:
    sibling = f"{base.rsplit('/', 1)[0]}/sibling.json"
    backend.raw_put(sibling, b"{}")
    async with AsyncS3SessionStore(**backend.store_kwargs(base)) as store:
        for sid in ["..", "../sibling", "../../x", "a/b"]:
            await store.save(helpers.session(sid))
            await store.delete(sid)
    assert backend.raw_get(sibling) == b"{}"


@LAYOUTS
async def test_colliding_ids_never_get_each_others_session(
    backend: Backend, base: str, layout: str
) -> None:
    """legacy: ``a/b``, ``a\\b``, ``a..b`` and ``a_b`` share a key (as in the Rust store);
    loading one id never returns another's session. v1: no shared keys at all."""
    family = ["a/b", "a\\b", "a..b", "a_b"]
    async with AsyncS3SessionStore(**backend.store_kwargs(base, layout=layout)) as store:
        for writer in family:
            await store.save(helpers.session(writer))
            for reader in family:
                if reader == writer:
                    assert await store.load(reader) == helpers.session(writer)
                elif layout == "v1":
                    loaded = await store.load(reader)
                    assert loaded is None or loaded.id == reader
                else:
                    with pytest.raises(KeyCollisionError) as caught:
                        await store.load(reader)
                    assert (caught.value.requested, caught.value.stored) == (reader, writer)
                    assert not await store.exists(reader)
        keys = {store.layout.session_key(sid) for sid in family}
        assert len(keys) == (1 if layout == "legacy" else len(family))


def test_legacy_sidecars_of_colliding_ids_share_a_key() -> None:
    """Known limit of the legacy (Rust) tree, documented in RELIABILITY.md: sidecars carry
    no id, so ``a/b`` and ``a_b`` share their traces undetected. The v1 layout does not."""
    legacy, v1 = Layout("p", "legacy"), Layout("p", "v1")
    assert legacy.sidecar_key(Part.TRACES, "a/b") == legacy.sidecar_key(Part.TRACES, "a_b")
    assert v1.sidecar_key(Part.TRACES, "a/b") != v1.sidecar_key(Part.TRACES, "a_b")


def test_key_length_limit_counts_utf8_bytes_with_the_prefix() -> None:
    layout = Layout("some/prefix", "legacy")
    room = S3_MAX_KEY_BYTES - len("some/prefix/loop_checkpoints/.json")
    assert len(layout.loop_checkpoint_key("x" * room).encode()) == S3_MAX_KEY_BYTES
    with pytest.raises(InvalidIdError):
        layout.loop_checkpoint_key("x" * (room + 1))
    with pytest.raises(InvalidIdError):
        layout.loop_checkpoint_key("é" * (room // 2 + 1))  # two bytes each


# -- hypothesis: arbitrary text ids, in memory -------------------------------------------

_ANY_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=()) | st.sampled_from("/\\.\x00\n"),
    max_size=40,
) | st.text(max_size=10)


@pytest.mark.parametrize("layout", ["legacy", "v1"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(st.one_of(_ANY_TEXT, st.text(alphabet="ab/\\._", max_size=6)), max_size=6))
def test_any_text_id_is_safe(layout: LayoutName, ids: list[str]) -> None:
    memory = MemoryBackend()
    memory.create_bucket(BUCKET)
    store = S3SessionStore(
        client=MemoryObjectClient(BUCKET, backend=memory), prefix="p/q", layout=layout
    )
    saved: dict[str, str] = {}
    for sid in ids:
        try:
            key = store.layout.session_key(sid)
        except InvalidIdError:
            with pytest.raises(InvalidIdError):
                store.save(helpers.session(sid))
            continue
        assert key.startswith("p/q/")
        assert ".." not in key.split("/")
        if layout == "v1":
            stem = key.rsplit("/", 1)[1].removesuffix(".json")
            assert decode_v1_id(stem) == sid
        store.save(helpers.session(sid))
        saved[key] = sid
    for sid in ids:
        try:
            key = store.layout.session_key(sid)
        except InvalidIdError:
            continue
        if saved[key] == sid:
            loaded = store.load(sid)
            assert loaded is not None
            assert loaded.id == sid
        else:
            with pytest.raises(KeyCollisionError):
                store.load(sid)
    assert all(k.startswith("p/q/") for k in memory.keys(BUCKET))


# -- corrupt objects -----------------------------------------------------------------------

GOOD = helpers.fixture("session.json")
CORRUPT_BODIES = {
    "truncated": GOOD[: len(GOOD) // 2],
    "not-json": b"\x89PNG\r\n\x1a\n not json at all",
    "not-utf8": b'{"id": "\xff\xfe"}',
    "wrong-type": b"[1, 2, 3]",
    "wrong-schema": b'{"id": "s1", "messages": "not a list"}',
    "nan": b'{"id": NaN}',
    # Last: after an empty PUT, SeaweedFS leaves the raw (urllib3) connection hanging until
    # its 60 s read timeout on the next request; the raw client is not used after this.
    "empty": b"",
}


@pytest.fixture
async def store(backend: Backend, base: str) -> AsyncIterator[AsyncS3SessionStore]:
    async with AsyncS3SessionStore(**backend.store_kwargs(base)) as opened:
        yield opened


def _targets(store: AsyncS3SessionStore, n: str) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    return [
        (store.layout.session_key(n), lambda: store.load(n)),
        (store.layout.sidecar_key(Part.TRACES, n), lambda: store.load_trace_events(n)),
        (store.layout.sidecar_key(Part.RUNS, n), lambda: store.load_run_records(n)),
        (store.layout.loop_checkpoint_key(n), lambda: store.load_loop_checkpoint(n)),
        (store.layout.artifact_manifest_key(n), lambda: store.load_artifacts(n)),
    ]


async def test_corrupt_documents_raise_typed_errors_naming_the_key(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    await store.save(helpers.session("healthy"))
    await store.save_trace_events("healthy", helpers.trace_events())
    corrupt: set[str] = set()
    for kind, body in CORRUPT_BODIES.items():
        for key, load in _targets(store, kind):
            backend.raw_put(key, body)
            corrupt.add(key)
            with pytest.raises(CorruptObjectError) as caught:
                await load()
            assert caught.value.key == key
            assert key in str(caught.value)
    # Everything else is untouched and readable; fsck names exactly the corrupt keys.
    assert await store.load("healthy") == helpers.session("healthy")
    assert await store.load_trace_events("healthy") == helpers.trace_events()
    assert "healthy" in await store.list()
    report = await store.fsck()
    assert {p.key for p in report.problems} == corrupt


async def test_deeply_nested_json_is_a_corrupt_object(
    store: AsyncS3SessionStore, backend: Backend
) -> None:
    for key, load in _targets(store, "deep"):
        backend.raw_put(key, b"[" * 100_000 + b"]" * 100_000)
        with pytest.raises(CorruptObjectError) as caught:
            await load()
        assert caught.value.key == key


async def test_blob_with_the_wrong_hash_is_an_integrity_error(
    store: AsyncS3SessionStore, backend: Backend, base: str
) -> None:
    artifacts = helpers.artifacts("small", "B" * 6000)
    await store.save_artifacts("s1", artifacts)
    await store.save_artifacts("s2", helpers.artifacts("other", "C" * 6000))
    [blob] = [
        k
        for k in backend.raw_keys(f"{store.prefix}/blobs/")
        if cas.blob_payload(backend.raw_get(k) or b"") == b"B" * 6000
    ]
    backend.raw_put(blob, b"B" * 5999 + b"!")
    # A fresh reader (the writer's store may serve the bytes it verified from its cache).
    async with AsyncS3SessionStore(**backend.store_kwargs(base)) as reader:
        with pytest.raises(IntegrityError) as caught:
            await reader.load_artifacts("s1")
        assert caught.value.key == blob
        assert blob in str(caught.value)
        assert await reader.load_artifacts("s2") == helpers.artifacts("other", "C" * 6000)
        report = await reader.fsck()
    assert [(p.kind, p.key) for p in report.problems] == [("integrity", blob)]


async def test_oversized_documents_are_refused_both_ways(backend: Backend, base: str) -> None:
    cap = 4096
    async with AsyncS3SessionStore(**backend.store_kwargs(base, max_document_bytes=cap)) as store:
        big = helpers.session("big", messages=200)
        assert len(codec.dumps(big)) > cap
        with pytest.raises(DocumentTooLargeError) as refused:
            await store.save(big)
        assert refused.value.key == store.layout.session_key("big")
        assert backend.raw_get(store.layout.session_key("big")) is None
        key = store.layout.session_key("planted")
        backend.raw_put(key, codec.dumps(helpers.session("planted", messages=200)))
        with pytest.raises(DocumentTooLargeError) as caught:
            await store.load("planted")
        assert caught.value.key == key
        assert key in str(caught.value)
        assert isinstance(caught.value, StoreError)
        await store.save(helpers.session("small", messages=0))
        assert await store.load("small") == helpers.session("small", messages=0)


def test_prefix_of_hostile_form_is_refused() -> None:
    for bad in ["..", "a/../b", "./a", "a\x00b", "a\nb"]:
        with pytest.raises(StoreError):
            S3SessionStore(client=MemoryObjectClient(BUCKET), prefix=bad)
