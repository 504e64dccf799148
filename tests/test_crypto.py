"""At-rest encryption (s3store.crypto): known answers, interop with upstream, tampering, keys.

The interop checks decrypt with ``cryptography``'s AESGCM directly, following the rules of
a3s-code's ``core/src/store/encryption.rs`` rather than s3store's own parser, so that a bug
shared by s3store's sealing and opening cannot hide. tests/fixtures/crypto/README.md says
how the vectors were made and checked.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from s3store import crypto
from s3store.crypto import (
    DecryptionError,
    EncryptionError,
    EncryptionUnavailableError,
    KeyConfigurationError,
    KeyRing,
    MalformedEnvelopeError,
    NotSealedError,
    SealedWithoutKeyError,
    UnknownKeyIdError,
    UnsupportedEnvelopeError,
)
from s3store.errors import ConfigurationError, IntegrityError, StoreError

VECTORS_DIR = Path(__file__).parent / "fixtures" / "crypto"
VECTORS: dict[str, Any] = json.loads((VECTORS_DIR / "vectors.json").read_text())
ENVELOPES = {vector["name"]: vector for vector in VECTORS["envelopes"]}

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
KEY_C = bytes([0xC3]) * 32
BUCKET = "agents"
OBJECT_KEY = "prod/v1/sessions/id_c2Vzcy0wMDAx.json"
ENV = crypto.DEFAULT_ENV_VAR


def _plaintext(vector: dict[str, Any]) -> bytes:
    if "plaintext_file" in vector:
        return (VECTORS_DIR / str(vector["plaintext_file"])).read_bytes()
    return str(vector["plaintext_utf8"]).encode("utf-8")


def _sealed(vector: dict[str, Any]) -> bytes:
    return (VECTORS_DIR / str(vector["sealed_file"])).read_bytes()


def _upstream_open(key: bytes, sealed: bytes) -> bytes:
    """a3s-code's ``SessionStoreAtRestCipher::open``, restated with a bare AES-GCM."""
    if not (len(sealed) > 17 and sealed.startswith(b"A3SE") and sealed[4] == 1):
        raise AssertionError("upstream would not treat these bytes as sealed")
    return AESGCM(key).decrypt(sealed[5:17], sealed[17:], None)


@pytest.fixture
def fixed_nonce(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Make the next seals draw these nonces instead of fresh random ones."""
    queue: list[bytes] = []
    real = os.urandom

    def fake(size: int) -> bytes:
        if size == crypto.NONCE_SIZE and queue:
            return queue.pop(0)
        return real(size)

    monkeypatch.setattr(os, "urandom", fake)
    return queue


# -- known answers and upstream interop ------------------------------------------------------


@pytest.mark.parametrize("name", ["upstream-unit-test-inputs", "session-v1"])
def test_v1_vectors_open(name: str) -> None:
    vector = ENVELOPES[name]
    key = bytes.fromhex(vector["key_hex"])
    sealed = _sealed(vector)
    assert crypto.open_v1(key, sealed) == _plaintext(vector)
    assert KeyRing.single(key).open(sealed) == _plaintext(vector)
    info = crypto.inspect_envelope(sealed)
    assert (info.version, info.key_id, info.header_size) == (1, None, 17)
    assert info.plaintext_size == len(_plaintext(vector)) == len(sealed) - 33


@pytest.mark.parametrize("name", ["upstream-unit-test-inputs", "session-v1"])
def test_v1_vectors_follow_upstream_rules(name: str) -> None:
    vector = ENVELOPES[name]
    assert _upstream_open(bytes.fromhex(vector["key_hex"]), _sealed(vector)) == _plaintext(vector)


@pytest.mark.parametrize("name", ["upstream-unit-test-inputs", "session-v1"])
def test_v1_seal_reproduces_vector_with_its_nonce(name: str, fixed_nonce: list[bytes]) -> None:
    vector = ENVELOPES[name]
    fixed_nonce.append(bytes.fromhex(vector["nonce_hex"]))
    assert crypto.seal_v1(bytes.fromhex(vector["key_hex"]), _plaintext(vector)) == _sealed(vector)


def test_v1_upstream_unit_test_behaviour() -> None:
    # encryption.rs seal_round_trip_and_wrong_key_fail_closed, on the fixed vector.
    vector = ENVELOPES["upstream-unit-test-inputs"]
    sealed = _sealed(vector)
    assert crypto.is_sealed(sealed)
    assert sealed != b'{"ok":true}'
    with pytest.raises(DecryptionError):
        crypto.open_v1(bytes([8]) * 32, sealed)
    ring = KeyRing.single(bytes([7]) * 32)
    assert ring.open_document(b"plain", bucket="", object_key="x") == b"plain"
    assert crypto.open_or_plaintext(b"plain", ring) == b"plain"


@pytest.mark.parametrize("plaintext", [b"", b"{}", b'{"ok":true}', os.urandom(70_000)])
def test_s3store_v1_seals_open_under_upstream_rules(plaintext: bytes) -> None:
    ring = KeyRing.single(KEY_A)
    for sealed in (
        crypto.seal_v1(KEY_A, plaintext),
        ring.seal(plaintext),
        ring.seal_document(plaintext, bucket=BUCKET, object_key=OBJECT_KEY),
        KeyRing.single(KEY_A, write_version=2).seal(plaintext, version=1),
    ):
        assert len(sealed) == len(plaintext) + crypto.V1_OVERHEAD
        assert _upstream_open(KEY_A, sealed) == plaintext


def test_v2_vector() -> None:
    vector = ENVELOPES["session-v2"]
    key = bytes.fromhex(vector["key_hex"])
    aad = crypto.location_aad(vector["bucket"], vector["object_key"])
    assert aad.hex() == vector["aad_hex"]
    sealed = _sealed(vector)
    info = crypto.inspect_envelope(sealed)
    assert (info.version, info.key_id) == (2, vector["key_id"])
    assert info.header_size == 18 + len(vector["key_id"])
    ring = KeyRing({vector["key_id"]: key}, write_version=2)
    assert ring.open(sealed, aad=aad) == _plaintext(vector)
    assert ring.open_document(
        sealed, bucket=vector["bucket"], object_key=vector["object_key"]
    ) == _plaintext(vector)
    assert crypto.open_v2(key, sealed, aad=aad) == _plaintext(vector)
    # The header is authenticated as associated data, ahead of the caller's.
    header = sealed[: info.header_size]
    nonce = header[-crypto.NONCE_SIZE :]
    assert AESGCM(key).decrypt(nonce, sealed[info.header_size :], header + aad) == _plaintext(
        vector
    )


def test_v2_seal_reproduces_vector_with_its_nonce(fixed_nonce: list[bytes]) -> None:
    vector = ENVELOPES["session-v2"]
    fixed_nonce.append(bytes.fromhex(vector["nonce_hex"]))
    ring = KeyRing({vector["key_id"]: "hex:" + vector["key_hex"]}, write_version=2)
    sealed = ring.seal_document(
        _plaintext(vector), bucket=vector["bucket"], object_key=vector["object_key"]
    )
    assert sealed == _sealed(vector)


def test_v2_is_not_sealed_for_upstream() -> None:
    # a3s-code only recognises version 1: it would hand v2 to its JSON parser, which fails.
    sealed = KeyRing.single(KEY_A, write_version=2).seal(b"{}")
    assert sealed[4] == 2
    with pytest.raises(AssertionError, match="upstream would not"):
        _upstream_open(KEY_A, sealed)


@pytest.mark.parametrize("vector", VECTORS["blob_addresses"])
def test_blob_address_vectors(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key_hex"])
    content = vector["content_utf8"].encode("utf-8")
    assert crypto.derive_blob_address_key(key).hex() == vector["address_key_hex"]
    ring = KeyRing.single(key)
    assert ring.blob_address(content) == vector["address"]
    assert ring.blob_address(memoryview(content)) == vector["address"]
    assert blake3.blake3(content).hexdigest() == vector["plain_blake3"] != vector["address"]
    assert ring.match_blob_address(content, vector["address"].upper()) == "default"


def test_blob_addresses_hide_content_equality_across_keys() -> None:
    content = b"the same tool output in two tenants"
    first, second = KeyRing.single(KEY_A), KeyRing.single(KEY_B)
    assert first.blob_address(content) == first.blob_address(content)
    assert first.blob_address(content) != second.blob_address(content)
    assert crypto.derive_blob_address_key(KEY_A) != KEY_A
    assert first.match_blob_address(content, second.blob_address(content)) is None


def test_blob_address_of_large_and_non_byte_buffers() -> None:
    ring = KeyRing.single(KEY_A)
    big = os.urandom(5 * 1024 * 1024)
    key = crypto.derive_blob_address_key(KEY_A)
    assert ring.blob_address(big) == blake3.blake3(big, key=key).hexdigest()
    words = memoryview(bytearray(b"\x01\x00\x00\x00\x02\x00\x00\x00")).cast("I")
    assert ring.blob_address(words) == ring.blob_address(b"\x01\x00\x00\x00\x02\x00\x00\x00")


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("plaintext", [b"", b"x", b"A3SE\x01" + bytes(40), os.urandom(1 << 20)])
def test_ring_round_trip(version: int, plaintext: bytes) -> None:
    ring = KeyRing.single(KEY_A, write_version=version)
    aad = crypto.location_aad(BUCKET, OBJECT_KEY)
    sealed = ring.seal(plaintext, aad=aad)
    assert len(sealed) == len(plaintext) + ring.overhead
    assert crypto.is_sealed(sealed)
    assert ring.open(sealed, aad=aad) == plaintext
    assert ring.open(bytearray(sealed), aad=memoryview(aad)) == plaintext
    assert ring.open_or_plaintext(memoryview(sealed), aad=aad) == plaintext


def test_raw_key_functions_round_trip() -> None:
    assert crypto.open_v1(KEY_A, crypto.seal_v1(KEY_A, bytearray(b"doc"))) == b"doc"
    sealed = crypto.seal_v2(KEY_A, b"doc", key_id="k1", aad=b"where")
    assert crypto.open_v2(KEY_A, sealed, aad=b"where") == b"doc"
    with pytest.raises(UnsupportedEnvelopeError):
        crypto.open_v1(KEY_A, sealed)
    with pytest.raises(UnsupportedEnvelopeError):
        crypto.open_v2(KEY_A, crypto.seal_v1(KEY_A, b"doc"))


def test_every_seal_draws_a_fresh_nonce() -> None:
    ring = KeyRing.single(KEY_A)
    sealed = {ring.seal(b"same plaintext") for _ in range(50)}
    assert len(sealed) == 50
    assert len({crypto.inspect_envelope(s).header_size for s in sealed}) == 1


def test_documents_and_blobs_round_trip() -> None:
    for version in (1, 2):
        ring = KeyRing.single(KEY_A, write_version=version)
        sealed = ring.seal_document(b'{"id": "s"}', bucket=BUCKET, object_key=OBJECT_KEY)
        assert ring.open_document(sealed, bucket=BUCKET, object_key=OBJECT_KEY) == b'{"id": "s"}'
        content = b"A3SE looks sealed but is content"
        address = ring.blob_address(content)
        blob_key = f"prod/blobs/blake3/{address[:2]}/{address}"
        body = ring.seal_blob(content, bucket=BUCKET, object_key=blob_key)
        assert ring.open_blob(body, bucket=BUCKET, object_key=blob_key) == content
        assert ring.read_blob(body, address=address, bucket=BUCKET, object_key=blob_key) == content


def test_read_blob_plaintext_migration_and_address_checks() -> None:
    ring = KeyRing.single(KEY_A)
    strict = KeyRing.single(KEY_A, accept_plaintext=False)
    content = b"A3SE\x01 written before encryption was turned on" + bytes(40)
    plain_address = blake3.blake3(content).hexdigest()
    assert ring.read_blob(content, address=plain_address, bucket="", object_key="b") == content
    with pytest.raises(NotSealedError):
        strict.read_blob(content, address=plain_address, bucket="", object_key="b")
    # v1 carries no location: a sealed blob copied over another address is caught by the hash.
    other = b"another blob"
    moved = ring.seal_blob(other, bucket="", object_key="b")
    with pytest.raises(IntegrityError) as caught:
        ring.read_blob(moved, address=ring.blob_address(content), bucket="", object_key="b")
    assert caught.value.actual == ring.blob_address(other)
    # v2 binds the blob to its location: a copy under another key fails to open.
    v2 = KeyRing({"k": KEY_A}, write_version=2)
    address = v2.blob_address(content)
    body = v2.seal_blob(content, bucket=BUCKET, object_key=f"blobs/{address}")
    with pytest.raises(DecryptionError):
        v2.read_blob(body, address=address, bucket=BUCKET, object_key="blobs/elsewhere")
    # Plain bytes under a keyed address are not trusted as plaintext.
    with pytest.raises(NotSealedError):
        ring.read_blob(other, address=ring.blob_address(other), bucket="", object_key="b")


# -- tampering, truncation, unknown versions ------------------------------------------------


def _envelopes() -> list[tuple[str, KeyRing, bytes, bytes]]:
    aad = crypto.location_aad(BUCKET, OBJECT_KEY)
    v1_ring = KeyRing.single(bytes([7]) * 32)
    v2_ring = KeyRing({"k2026-01": KEY_A}, write_version=2)
    return [
        ("v1 fixture", v1_ring, _sealed(ENVELOPES["upstream-unit-test-inputs"]), b""),
        ("v2", v2_ring, v2_ring.seal(b'{"ok":true}', aad=aad), aad),
        ("v1 empty", v1_ring, v1_ring.seal(b""), b""),
    ]


def _opens(ring: KeyRing, data: bytes, aad: bytes) -> bool:
    try:
        ring.open(data, aad=aad)
    except EncryptionError:
        return False
    return True


@pytest.mark.parametrize("flip", [0x01, 0x80, 0xFF])
def test_every_byte_flip_fails(flip: int) -> None:
    for label, ring, sealed, aad in _envelopes():
        for position in range(len(sealed)):
            tampered = bytearray(sealed)
            tampered[position] ^= flip
            assert not _opens(ring, bytes(tampered), aad), f"{label}: byte {position} flipped"


def test_every_byte_flip_of_a_large_document_fails() -> None:
    vector = ENVELOPES["session-v1"]
    ring = KeyRing.single(bytes.fromhex(vector["key_hex"]), accept_plaintext=False)
    sealed = _sealed(vector)
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(EncryptionError):
            ring.open_document(bytes(tampered), bucket="", object_key="k")


def test_magic_flip_is_plaintext_only_for_readers_that_accept_it() -> None:
    sealed = bytearray(_sealed(ENVELOPES["upstream-unit-test-inputs"]))
    sealed[0] ^= 0x01
    lenient = KeyRing.single(bytes([7]) * 32)
    # Passed on unchanged, as upstream does: binary, so the JSON parser refuses it next.
    assert lenient.open_document(sealed, bucket="", object_key="k") == bytes(sealed)
    with pytest.raises(UnicodeDecodeError):
        json.loads(bytes(sealed))
    with pytest.raises(NotSealedError):
        lenient.open(sealed)


def test_truncations_and_extensions_fail() -> None:
    for label, ring, sealed, aad in _envelopes():
        for length in range(len(sealed)):
            assert not _opens(ring, sealed[:length], aad), f"{label}: {length}-byte prefix"
        with pytest.raises(DecryptionError):
            ring.open(sealed + b"\x00", aad=aad)


def test_truncated_envelope_is_an_error_not_plaintext() -> None:
    ring = KeyRing.single(KEY_A)
    for data in (b"A3SE", b"A3SE\x01", b"A3SE\x01" + bytes(27), b"A3SE\x02", b"A3SE\x02\x05ab"):
        with pytest.raises(MalformedEnvelopeError):
            ring.open_document(data, bucket="", object_key="k")
        with pytest.raises(SealedWithoutKeyError):
            crypto.open_or_plaintext(data, None)
    with pytest.raises(MalformedEnvelopeError, match="key id"):
        ring.open(b"A3SE\x02\x00" + bytes(40))
    with pytest.raises(MalformedEnvelopeError, match="key id"):
        ring.open(b"A3SE\x02\x03a b" + bytes(40))


@pytest.mark.parametrize("version", [0, 3, 0x7F, 0xFF])
def test_unknown_version_is_an_error_not_plaintext(version: int) -> None:
    data = b"A3SE" + bytes([version]) + bytes(60)
    with pytest.raises(UnsupportedEnvelopeError) as caught:
        KeyRing.single(KEY_A).open_document(data, bucket=BUCKET, object_key=OBJECT_KEY)
    assert caught.value.version == version
    assert f"envelope_version={version}" in str(caught.value)
    assert OBJECT_KEY in str(caught.value)
    with pytest.raises(SealedWithoutKeyError):
        crypto.open_or_plaintext(data, None, bucket=BUCKET, object_key=OBJECT_KEY)


def test_reader_without_key_refuses_sealed_bytes_and_passes_plaintext() -> None:
    sealed = _sealed(ENVELOPES["session-v1"])
    with pytest.raises(SealedWithoutKeyError, match="no encryption key") as caught:
        crypto.open_or_plaintext(sealed, None, bucket=BUCKET, object_key=OBJECT_KEY)
    assert caught.value.bucket == BUCKET
    assert caught.value.key == OBJECT_KEY
    document = _plaintext(ENVELOPES["session-v1"])
    assert crypto.open_or_plaintext(document, None) == document
    with pytest.raises(NotSealedError):
        crypto.open_or_plaintext(document, None, allow_plaintext=False)
    with pytest.raises(NotSealedError):
        KeyRing.single(KEY_A, accept_plaintext=False).open_document(
            document, bucket=BUCKET, object_key=OBJECT_KEY
        )


# -- wrong keys, associated data, rotation ------------------------------------------------


def test_wrong_key_fails() -> None:
    v1 = KeyRing.single(KEY_A).seal(b"secret")
    with pytest.raises(DecryptionError, match="wrong key"):
        KeyRing.single(KEY_B).open(v1)
    v2 = KeyRing({"k": KEY_A}, write_version=2).seal(b"secret")
    with pytest.raises(DecryptionError) as caught:
        KeyRing({"k": KEY_B}).open(v2)
    assert not isinstance(caught.value, UnknownKeyIdError)
    with pytest.raises(UnknownKeyIdError) as unknown:
        KeyRing({"other": KEY_A}).open(v2)
    assert unknown.value.key_id == "k"


def test_v2_binds_location_and_context() -> None:
    ring = KeyRing({"k": KEY_A}, write_version=2)
    sealed = ring.seal_document(b"{}", bucket=BUCKET, object_key=OBJECT_KEY)
    for bucket, key in [
        ("other-bucket", OBJECT_KEY),
        (BUCKET, OBJECT_KEY + "x"),
        (BUCKET, "prod/v1/sessions/id_b3RoZXI.json"),
        ("", OBJECT_KEY),
    ]:
        with pytest.raises(DecryptionError, match="another location"):
            ring.open_document(sealed, bucket=bucket, object_key=key)
    # A document can never be opened as a blob at the same key, nor the other way round.
    with pytest.raises(DecryptionError):
        ring.open_blob(sealed, bucket=BUCKET, object_key=OBJECT_KEY)
    blob = ring.seal_blob(b"body", bucket=BUCKET, object_key=OBJECT_KEY)
    with pytest.raises(DecryptionError):
        ring.open_document(blob, bucket=BUCKET, object_key=OBJECT_KEY)
    # bucket="" binds the key alone: the object survives a bucket rename, not a key move.
    portable = ring.seal_document(b"{}", bucket="", object_key=OBJECT_KEY)
    assert ring.open_document(portable, bucket="", object_key=OBJECT_KEY) == b"{}"


def test_location_aad_is_unambiguous() -> None:
    assert crypto.location_aad("ab", "c") != crypto.location_aad("a", "bc")
    assert crypto.location_aad("", "ab") != crypto.location_aad("a", "b")
    assert crypto.blob_aad("k", bucket="b") == crypto.location_aad(
        "b", "k", context=crypto.BLOB_AAD_CONTEXT
    )
    assert crypto.location_aad("b", "k") != crypto.blob_aad("k", bucket="b")


def test_v2_key_id_is_authenticated() -> None:
    # Two ids of equal length holding the same key: rewriting the id must still fail.
    ring = KeyRing({"k1": KEY_A, "k2": KEY_A}, write_version=2)
    sealed = bytearray(ring.seal(b"{}"))
    assert sealed[6:8] == b"k1"
    sealed[7] = ord("2")
    with pytest.raises(DecryptionError):
        ring.open(bytes(sealed))


def test_v1_ignores_aad_and_accept_v1_closes_the_downgrade() -> None:
    v1_ring = KeyRing.single(KEY_A)
    sealed = v1_ring.seal_document(b"{}", bucket=BUCKET, object_key=OBJECT_KEY)
    assert v1_ring.open_document(sealed, bucket="elsewhere", object_key="moved") == b"{}"
    strict = KeyRing.single(KEY_A, write_version=2).with_key("v2", KEY_B)
    assert strict.open(sealed) == b"{}"
    refusing = KeyRing({"default": KEY_A}, write_version=2, accept_v1=False)
    with pytest.raises(UnsupportedEnvelopeError, match="accept_v1"):
        refusing.open(sealed)
    with pytest.raises(KeyConfigurationError, match="accept_v1"):
        KeyRing({"a": KEY_A}, accept_v1=False)


@pytest.mark.parametrize("version", [1, 2])
def test_key_rotation(version: int) -> None:
    old = KeyRing({"2025": KEY_A}, write_version=version)
    before = old.seal_document(b"old", bucket=BUCKET, object_key=OBJECT_KEY)
    rotated = old.with_key("2026", KEY_B)
    assert rotated.current_key_id == "2026"
    assert rotated.key_ids == ("2025", "2026")
    assert old.current_key_id == "2025"
    after = rotated.seal_document(b"new", bucket=BUCKET, object_key=OBJECT_KEY)
    for sealed, plaintext in ((before, b"old"), (after, b"new")):
        assert rotated.open_document(sealed, bucket=BUCKET, object_key=OBJECT_KEY) == plaintext
    if version == 2:
        assert crypto.inspect_envelope(after).key_id == "2026"
    new_only = KeyRing({"2026": KEY_B}, write_version=version)
    assert new_only.open_document(after, bucket=BUCKET, object_key=OBJECT_KEY) == b"new"
    with pytest.raises(DecryptionError):
        new_only.open_document(before, bucket=BUCKET, object_key=OBJECT_KEY)
    # Blob addresses follow the current key; older ones still verify.
    content = b"artifact body"
    assert rotated.blob_address(content) != old.blob_address(content)
    assert rotated.blob_address(content, key_id="2025") == old.blob_address(content)
    assert rotated.match_blob_address(content, old.blob_address(content)) == "2025"
    assert rotated.match_blob_address(content, rotated.blob_address(content)) == "2026"
    with pytest.raises(KeyConfigurationError):
        rotated.blob_address(content, key_id="1999")


def test_rotation_without_making_current_and_explicit_current() -> None:
    ring = KeyRing.single(KEY_A).with_key("next", KEY_B, make_current=False)
    assert ring.current_key_id == "default"
    assert KeyRing({"a": KEY_A, "b": KEY_B}, current="b").current_key_id == "b"
    with pytest.raises(KeyConfigurationError, match="not in the key ring"):
        KeyRing({"a": KEY_A}, current="b")
    with pytest.raises(KeyConfigurationError, match="duplicate"):
        ring.with_key("next", KEY_C)
    with pytest.raises(KeyConfigurationError, match="duplicate"):
        KeyRing([("a", KEY_A), ("a", KEY_B)])


# -- key material and configuration ------------------------------------------------------


def test_parse_key_forms() -> None:
    key = bytes(range(200, 232))
    std = crypto.format_key(key)
    assert std.startswith("base64:")
    body = std.removeprefix("base64:")
    urlsafe = body.replace("+", "-").replace("/", "_")
    for text in [
        std,
        body,
        body.rstrip("="),
        "b64:" + body,
        "BASE64:" + urlsafe,
        urlsafe.rstrip("="),
        key.hex(),
        key.hex().upper(),
        "hex:" + key.hex(),
        f"  hex:{key.hex()}\n",
    ]:
        assert crypto.parse_key(text) == key, text
    assert crypto.parse_key(key) == key
    assert crypto.parse_key(bytearray(key)) == key
    assert len(crypto.generate_key()) == 32
    assert crypto.generate_key() != crypto.generate_key()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hex:" + "ab" * 31, "31 bytes"),
        ("hex:" + "ab" * 33, "33 bytes"),
        ("ab" * 33, "33 bytes"),
        ("hex:zz" + "ab" * 31, "not valid hex"),
        ("base64:" + "A" * 42 + "!!", "not valid base64"),
        ("base64:" + crypto.format_key(KEY_A)[7:-4], "bytes"),
        ("aes:" + KEY_A.hex(), "unknown encoding prefix"),
        (bytes(31), "exactly 32 bytes"),
        (bytes(33), "exactly 32 bytes"),
    ],
)
def test_parse_key_errors(value: str | bytes, message: str) -> None:
    with pytest.raises(KeyConfigurationError, match=message) as caught:
        crypto.parse_key(value)
    if isinstance(value, str) and len(value) > 8:
        assert value.strip()[-8:] not in str(caught.value)


def test_key_ids_are_validated() -> None:
    for bad in ["", "has space", "ü", "a/b", "x" * 256, "k=v"]:
        with pytest.raises(KeyConfigurationError, match="key id"):
            KeyRing({bad: KEY_A})
    KeyRing({"x" * 255: KEY_A, "a.b_c-1": KEY_B})
    with pytest.raises(KeyConfigurationError, match=r"KeyRing\.single"):
        KeyRing(KEY_A.hex())  # type: ignore[arg-type]
    with pytest.raises(KeyConfigurationError, match="at least one key"):
        KeyRing({})
    with pytest.raises(KeyConfigurationError, match="write_version"):
        KeyRing({"a": KEY_A}, write_version=3)
    with pytest.raises(KeyConfigurationError, match="version"):
        KeyRing.single(KEY_A).seal(b"", version=3)


def test_from_env_single_key() -> None:
    assert KeyRing.from_env(environ={}) is None
    assert KeyRing.from_env(environ={ENV: "  "}) is None
    for text in (KEY_A.hex(), "hex:" + KEY_A.hex(), crypto.format_key(KEY_A)):
        ring = KeyRing.from_env(environ={ENV: text})
        assert ring is not None
        assert ring.key_ids == ("default",)
        sealed = crypto.seal_v1(KEY_A, b"{}")
        assert ring.open(sealed) == b"{}"
    named = KeyRing.from_env(environ={ENV: "prod=" + crypto.format_key(KEY_A)}, required=True)
    assert named.key_ids == ("prod",)


def test_from_env_reads_os_environ_and_custom_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY_A.hex())
    ring = KeyRing.from_env()
    assert ring is not None
    assert ring.open(crypto.seal_v1(KEY_A, b"x")) == b"x"
    monkeypatch.setenv("TENANT_KEY", crypto.format_key(KEY_B))
    other = KeyRing.from_env("TENANT_KEY", write_version=2, required=True)
    assert other.write_version == 2
    monkeypatch.delenv(ENV)
    with pytest.raises(KeyConfigurationError, match=ENV):
        KeyRing.from_env(required=True)


def test_from_env_rotation_list() -> None:
    value = f"k2=base64:{crypto.format_key(KEY_B)[7:]}, k1=hex:{KEY_A.hex()}\n k0={KEY_C.hex()}"
    ring = KeyRing.from_env(environ={ENV: value}, required=True)
    assert ring.key_ids == ("k2", "k1", "k0")
    assert ring.current_key_id == "k2"
    assert ring.open(crypto.seal_v1(KEY_A, b"old")) == b"old"
    picked = KeyRing.from_env(environ={ENV: value}, current="k1", required=True)
    assert picked.current_key_id == "k1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{KEY_A.hex()},{KEY_B.hex()}", "entry 1 is not of the form"),
        (f"a={KEY_A.hex()},{KEY_B.hex()}", "entry 2 is not of the form"),
        (f"a={KEY_A.hex()},a={KEY_B.hex()}", "duplicate key id"),
        (f"a={KEY_A.hex()},b=hex:{KEY_B.hex()[:-2]}", "key 'b'.*31 bytes"),
        (f"a={KEY_A.hex()},b=hex:{KEY_B.hex()[:-1]}g", "key 'b'.*not valid hex"),
        ("hex:" + KEY_A.hex()[:-2], "31 bytes"),
        ("not a key", "entry 1 is not of the form"),
        ("notakey", "decodes to"),
        ("pgp:" + KEY_A.hex(), "unknown encoding prefix"),
    ],
)
def test_from_env_errors(value: str, message: str) -> None:
    with pytest.raises(KeyConfigurationError, match=message) as caught:
        KeyRing.from_env(environ={ENV: value})
    text = str(caught.value)
    assert ENV in text
    for secret in (KEY_A.hex(), KEY_B.hex(), KEY_A.hex()[:-2], KEY_B.hex()[:-2]):
        assert secret not in text


def test_from_env_unknown_current() -> None:
    with pytest.raises(KeyConfigurationError, match="current key id 'zz'"):
        KeyRing.from_env(environ={ENV: f"a={KEY_A.hex()}"}, current="zz")


def test_errors_are_typed() -> None:
    leaves: list[type[Exception]] = [
        KeyConfigurationError,
        EncryptionUnavailableError,
        SealedWithoutKeyError,
        NotSealedError,
        MalformedEnvelopeError,
        UnsupportedEnvelopeError,
        DecryptionError,
        UnknownKeyIdError,
    ]
    for cls in leaves:
        assert issubclass(cls, EncryptionError)
        assert issubclass(cls, StoreError)
        assert issubclass(cls, ValueError)
    assert issubclass(KeyConfigurationError, ConfigurationError)
    assert issubclass(UnknownKeyIdError, DecryptionError)


def test_key_material_never_shown_and_not_picklable() -> None:
    ring = KeyRing({"a": KEY_A, "b": KEY_B})
    shown = repr(ring) + str(ring)
    for key in (KEY_A, KEY_B):
        assert key.hex() not in shown
        assert crypto.format_key(key)[7:] not in shown
        assert repr(key) not in shown
    assert "'a'" in shown
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(ring)
    import copy

    assert copy.deepcopy(ring) is ring


def test_missing_cryptography_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(EncryptionUnavailableError) as caught:
        crypto.seal_v1(KEY_A, b"{}")
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install" in message
    assert "cryptography" in message
    with pytest.raises(EncryptionUnavailableError):
        KeyRing.single(KEY_A)
    with pytest.raises(EncryptionUnavailableError):
        crypto.open_v1(KEY_A, _sealed(ENVELOPES["upstream-unit-test-inputs"]))


def test_module_imports_without_cryptography() -> None:
    # Block the package outright in a fresh interpreter: the I/O-free helpers still work and
    # the first seal reports what to install.
    script = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("blocked for the test")
        return None
sys.meta_path.insert(0, Block())
from s3store import crypto
assert not any(m.startswith("cryptography") for m in sys.modules)
assert crypto.is_sealed(b"A3SE\\x01")
assert crypto.parse_key("00" * 32) == bytes(32)
crypto.derive_blob_address_key(bytes(32))
try:
    crypto.KeyRing.single(bytes(32))
except crypto.EncryptionUnavailableError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 's3store[encryption]'" in result.stdout


# -- properties -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=2048),
    aad=st.binary(max_size=64),
    version=st.sampled_from([1, 2]),
    key=st.binary(min_size=32, max_size=32),
    key_id=st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
)
def test_round_trip_property(
    plaintext: bytes, aad: bytes, version: int, key: bytes, key_id: str
) -> None:
    ring = KeyRing({key_id: key}, write_version=version)
    sealed = ring.seal(plaintext, aad=aad)
    assert ring.open(sealed, aad=aad) == plaintext
    assert crypto.inspect_envelope(sealed).plaintext_size == len(plaintext)
    if version == 1:
        assert _upstream_open(key, sealed) == plaintext
    else:
        assert crypto.open_v2(key, sealed, aad=aad) == plaintext


@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=256),
    version=st.sampled_from([1, 2]),
    data=st.data(),
)
def test_tamper_property(plaintext: bytes, version: int, data: st.DataObject) -> None:
    ring = KeyRing({"k": KEY_A}, write_version=version)
    sealed = bytearray(ring.seal(plaintext, aad=b"loc"))
    position = data.draw(st.integers(0, len(sealed) - 1))
    sealed[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(EncryptionError):
        ring.open(bytes(sealed), aad=b"loc")


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_json_documents_are_never_mistaken_for_envelopes(text: str) -> None:
    document = json.dumps({"id": text}, indent=2).encode("utf-8")
    assert not crypto.is_sealed(document)
    assert crypto.open_or_plaintext(document, None) == document
