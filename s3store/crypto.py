"""At-rest encryption: sealed envelopes, key rings and keyed blob addresses. No I/O.

This module turns plaintext bytes (a document's pretty JSON, a blob's body) into sealed bytes
and back. It never touches the network or the file system; the store decides what to seal
and passes the bytes through here.

Envelope v1: upstream STORE-ENCRYPT1 (default)
==============================================

Byte for byte what a3s-code's ``FileSessionStore::with_encryption_key`` writes and reads
(``core/src/store/encryption.rs``), so a directory or bucket sealed by either side opens in
the other::

    offset   size  field
    0        4     magic, ASCII "A3SE" (41 33 53 45)
    4        1     version 0x01
    5        12    nonce, fresh from the OS CSPRNG for every seal
    17       n     AES-256-GCM ciphertext of the n plaintext bytes
    17+n     16    GCM authentication tag
                   total n + 33 bytes; associated data: none (empty)

Envelope v2: s3store extension (opt-in, ``KeyRing(write_version=2)``)
======================================================================

Adds a key id, so keys can rotate (read with any known key, write with the current one),
and binds the ciphertext to caller-supplied associated data such as its bucket and key,
so a sealed object copied or moved to another key fails to open. a3s-code cannot read v2::

    offset   size  field
    0        4     magic, ASCII "A3SE"
    4        1     version 0x02
    5        1     L, length of the key id, 1..255
    6        L     key id, ASCII letters, digits, ".", "_" or "-"
    6+L      12    nonce, fresh from the OS CSPRNG for every seal
    18+L     n     AES-256-GCM ciphertext of the n plaintext bytes
    18+L+n   16    GCM authentication tag
                   total n + 34 + L bytes

    GCM associated data = bytes [0, 18+L) of the envelope (magic through nonce) || caller AAD

The header goes into the associated data so that the key id cannot be swapped. The caller
AAD is opaque bytes; :func:`location_aad` is the canonical encoding the store uses::

    location_aad(bucket, key, context) =
        u32be(len(C)) || C || u32be(len(B)) || B || u32be(len(K)) || K
    where C, B, K are the UTF-8 bytes of context, bucket and object key.

The length prefixes keep ``("ab", "c")`` and ``("a", "bc")`` apart. The contexts are
:data:`DOCUMENT_AAD_CONTEXT` for documents and :data:`BLOB_AAD_CONTEXT` for blobs, so a
document can never be opened as a blob or a blob as a document. Passing ``bucket=""`` binds
the key alone, for buckets that are replicated or renamed. Because the object key includes
the store prefix, a v2 object moved to another prefix must be re-sealed.

Recognising sealed bytes
========================

Bytes are treated as an envelope when they start with ``A3SE`` (:func:`is_sealed`). A JSON
document never starts that way, so plaintext documents pass through unchanged for readers
that accept plaintext (migration). An envelope with an unknown version byte, or too short to
hold its header and tag, is an error, never plaintext.

Keyed blob addresses
====================

Blobs are content-addressed: a plain BLAKE3 digest lets anyone who can list the bucket
confirm that a blob holds a text they can guess, and see which sessions share content. With
a key ring the address is BLAKE3 in keyed mode instead (:meth:`KeyRing.blob_address`)::

    address_key = BLAKE3-derive_key(context=BLOB_ADDRESS_CONTEXT, key material=encryption key)
    address     = hex(BLAKE3-keyed(address_key, content))          (64 hex digits)

The address key is derived from, and never equal to, the encryption key. Addresses still
deduplicate under one key; without the key they reveal nothing about content equality.
After a rotation new blobs are addressed with the new current key (content stored before
and after does not deduplicate); :meth:`KeyRing.match_blob_address` checks a blob against
every key of the ring. Blob bodies are sealed with the same envelope as documents; in v2
their associated data is :func:`blob_aad` of the blob's location.

Blobs stored before encryption was turned on stay at their plain BLAKE3 address.
:meth:`KeyRing.read_blob` tells the two apart by the address rather than by sniffing the
bytes (a blob's content may itself start with ``A3SE``), and checks that what it returns
hashes to the address it was read from.

How the store uses it
=====================

Documents: ``ring.seal_document(body, bucket=…, object_key=…)`` before a PUT and
``ring.open_document(data, bucket=…, object_key=…)`` after a GET; without a ring,
``open_or_plaintext(data, None, …)`` refuses sealed bytes with
:class:`SealedWithoutKeyError`. Blobs: ``address = ring.blob_address(content)``, then
``ring.seal_blob`` / ``ring.read_blob``. Export to a directory a3s-code will read:
``ring.seal(body, version=1)``.

What is and is not hidden
=========================

Hidden from whoever can read the bucket but lacks the key: the contents of every sealed
document and blob, and (with keyed addresses) which blobs hold equal content. Tampering with
a sealed object (any bit of nonce, ciphertext, tag or v2 header) is detected on read, and
with v2 so is an object copied to another location.

Not hidden: object keys (session ids are in the key names), object sizes (plaintext size
plus 33 bytes in v1, plus 34 + len(key id) in v2), timestamps and ETags, which objects exist
and how often they change, the key id of v2 envelopes, and the number of blob references
(manifests are sealed, but each blob is an object). Readers that accept plaintext also
accept plaintext written by anyone who can write to the bucket: turn plaintext acceptance
off (and v1 acceptance, once everything is v2) when a migration is complete. The AES-GCM
and BLAKE3 implementations are constant time; trying several keys on a v1 envelope takes
time proportional to the number of keys tried, which reveals nothing about key bytes.

Key handling
============

Keys are 32 random bytes (:func:`generate_key`), supplied by the host, never derived from
passwords. They can be given as raw bytes, or as text: ``base64:<standard or URL-safe
base64>``, ``hex:<64 hex digits>``, or unprefixed hex digits / base64. Text is never
used as raw key bytes. :meth:`KeyRing.from_env` reads the environment variable
``S3STORE_ENCRYPTION_KEY`` (:data:`DEFAULT_ENV_VAR`; another name can be passed): either
one key in any of those forms (key id ``default``), or a rotation list of ``<key id>=<key>``
entries separated by commas or whitespace, current key first::

    S3STORE_ENCRYPTION_KEY="hex:000102…1f"
    S3STORE_ENCRYPTION_KEY="2026-06=base64:q83vASNF…, 2025-11=hex:000102…1f"

Key bytes never appear in ``repr``/``str`` or in any error message,
and a key ring refuses to be pickled; they do live in process memory as immutable ``bytes``,
which Python cannot wipe. Each key should seal fewer than 2**32 objects (random 96-bit
nonces; NIST SP 800-38D): rotate well before that.

``cryptography`` (AES-GCM) is an optional dependency, imported on first use rather than with
this module; without it, building a key ring or sealing raises
:class:`EncryptionUnavailableError`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, overload

import blake3

from s3store.errors import ConfigurationError, IntegrityError, StoreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BytesLike = bytes | bytearray | memoryview
"""What the seal and open functions accept as input."""

MAGIC: Final = b"A3SE"
V1: Final = 1
V2: Final = 2
VERSIONS: Final = (V1, V2)
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
V1_HEADER_SIZE: Final = len(MAGIC) + 1 + NONCE_SIZE
V1_OVERHEAD: Final = V1_HEADER_SIZE + TAG_SIZE
MAX_KEY_ID_LENGTH: Final = 255

DEFAULT_KEY_ID: Final = "default"
"""The id of a key given alone (``KeyRing.single``, a one-key environment variable)."""
DEFAULT_ENV_VAR: Final = "S3STORE_ENCRYPTION_KEY"
BLOB_ADDRESS_CONTEXT: Final = "s3store 2026 blob address v1"
"""BLAKE3 ``derive_key`` context for the blob address key. Changing it changes every address."""
DOCUMENT_AAD_CONTEXT: Final = "s3store 2026 document aad v2"
BLOB_AAD_CONTEXT: Final = "s3store 2026 blob aad v2"

_KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")
# "<id>=<key>"; the value may not start with "=" so that padded bare base64 is not misread.
_NAMED_ENTRY_RE = re.compile(r"([A-Za-z0-9._-]{1,255})=([^=].*)", re.DOTALL)
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
# Lengths of the base64 text of 32 bytes, with and without padding.
_BASE64_KEY_LENGTHS = (43, 44)
_PARALLEL_HASH_THRESHOLD = 4 * 1024 * 1024
_INSTALL_HINT = (
    "at-rest encryption needs the 'cryptography' package: "
    "pip install 's3store[encryption]' (or pip install 'cryptography>=42')"
)


# -- errors -------------------------------------------------------------------------------


class EncryptionError(StoreError, ValueError):
    """Root of the at-rest encryption errors. Messages never contain key material.

    Hierarchy::

        EncryptionError (StoreError, ValueError)
        ├── KeyConfigurationError (ConfigurationError)  bad key, key id, ring or env var
        │   └── EncryptionUnavailableError              'cryptography' is not installed
        ├── SealedWithoutKeyError      sealed bytes, but the reader has no key
        ├── NotSealedError             plaintext where sealed bytes are required
        ├── MalformedEnvelopeError     "A3SE" bytes too short or with a bad key id field
        ├── UnsupportedEnvelopeError   unknown version byte, or a version the ring refuses
        └── DecryptionError            authentication failed: wrong key, or bytes modified,
            └── UnknownKeyIdError      ... v2 names a key id the ring does not hold
    """


class KeyConfigurationError(EncryptionError, ConfigurationError):
    """A key, key id, key ring or key environment variable is unusable."""


class EncryptionUnavailableError(KeyConfigurationError):
    """Encryption was asked for, but the optional ``cryptography`` package is missing."""


class SealedWithoutKeyError(EncryptionError):
    """The bytes are sealed (encrypted at rest) and the reader has no key."""


class NotSealedError(EncryptionError):
    """The bytes are plaintext where sealed bytes are required."""


class MalformedEnvelopeError(EncryptionError):
    """The bytes start with ``A3SE`` but are not a well-formed envelope (e.g. truncated)."""


class UnsupportedEnvelopeError(EncryptionError):
    """The envelope version is unknown, or one this key ring is configured to refuse.

    Attributes:
        version: the version byte found.
    """

    def __init__(
        self,
        message: str,
        *,
        version: int,
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        self.version = version
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"envelope_version": self.version}


class DecryptionError(EncryptionError):
    """Authentication failed. AES-GCM cannot tell these apart: the key is wrong, the bytes
    were modified, or (v2) the object was sealed for another location."""


class UnknownKeyIdError(DecryptionError):
    """A v2 envelope names a key id that the key ring does not hold (a wrong-key case).

    Attributes:
        key_id: the key id in the envelope (key ids are not secret).
    """

    def __init__(
        self,
        message: str,
        *,
        key_id: str,
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        self.key_id = key_id
        super().__init__(message, bucket=bucket, key=key)

    def _extra_context(self) -> dict[str, object]:
        return {"key_id": self.key_id}


# -- primitives ---------------------------------------------------------------------------


def _aesgcm_class() -> type[AESGCM]:
    # Imported per call (a dict lookup once loaded) so that the optional dependency costs
    # nothing to `import s3store.crypto` and its absence is reported where it matters.
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise EncryptionUnavailableError(_INSTALL_HINT) from None
    return AESGCM


def _invalid_tag_class() -> type[Exception]:
    try:
        from cryptography.exceptions import InvalidTag
    except ImportError:
        raise EncryptionUnavailableError(_INSTALL_HINT) from None
    return InvalidTag


def _cipher(key: bytes) -> AESGCM:
    return _aesgcm_class()(_check_key(key))


def _check_key(key: object, *, what: str = "encryption key") -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise KeyConfigurationError(
            f"{what} must be {KEY_SIZE} raw bytes (use parse_key for text), got {type(key).__name__}"
        )
    raw = bytes(key)
    if len(raw) != KEY_SIZE:
        raise KeyConfigurationError(f"{what} must be exactly {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def _check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        # The id is not echoed: a key passed in its place by mistake must not be logged.
        shown = f"of {len(key_id)} characters" if isinstance(key_id, str) else "(not a str)"
        raise KeyConfigurationError(
            f"a key id {shown} is invalid: use 1 to {MAX_KEY_ID_LENGTH} ASCII letters, "
            "digits, '.', '_' or '-'"
        )
    return key_id


def generate_key() -> bytes:
    """32 fresh random bytes from the OS CSPRNG, suitable as an encryption key."""
    return os.urandom(KEY_SIZE)


def format_key(key: bytes) -> str:
    """The ``base64:`` text form of a key, as :func:`parse_key` and ``from_env`` read it.

    Handle the result like the key itself: it *is* the key.
    """
    return "base64:" + base64.b64encode(_check_key(key)).decode("ascii")


def parse_key(value: bytes | bytearray | str, *, what: str = "encryption key") -> bytes:
    """A 32-byte key from raw bytes or from text.

    Text forms: ``base64:<base64>`` (standard or URL-safe alphabet, padding optional),
    ``hex:<64 hex digits>``, or either without a prefix (text made only of hex digits is
    read as hex unless it is 43 or 44 characters long, anything else as base64). The decoded key must be exactly 32 bytes. ``what`` names the
    key in error messages, which never contain the value.

    Raises:
        KeyConfigurationError: the value is not a 32-byte key in one of these forms.
    """
    if isinstance(value, bytes | bytearray):
        return _check_key(value, what=what)
    if not isinstance(value, str):
        raise KeyConfigurationError(f"{what} must be bytes or str, got {type(value).__name__}")
    text = value.strip()
    scheme, sep, rest = text.partition(":")
    if sep:
        kind = scheme.strip().lower()
        if kind in ("base64", "b64"):
            decoded = _decode_base64(rest, what=what)
        elif kind == "hex":
            decoded = _decode_hex(rest, what=what)
        else:
            # The prefix is not echoed: a mistyped value could be the key itself.
            raise KeyConfigurationError(
                f"{what} has an unknown encoding prefix: use 'base64:' or 'hex:'"
            )
    elif _HEX_RE.fullmatch(text) and len(text) not in _BASE64_KEY_LENGTHS:
        # All hex digits: a hex key, even at the wrong length, so that the error reports
        # the length the user meant rather than that of a base64 reading.
        decoded = _decode_hex(text, what=what)
    elif text:
        decoded = _decode_base64(text, what=what)
    else:
        raise KeyConfigurationError(f"{what} is empty")
    if len(decoded) != KEY_SIZE:
        raise KeyConfigurationError(
            f"{what} decodes to {len(decoded)} bytes; it must be exactly {KEY_SIZE} "
            "(generate one with s3store.crypto.generate_key)"
        )
    return decoded


def _decode_base64(text: str, *, what: str) -> bytes:
    compact = "".join(text.split()).translate(str.maketrans("-_", "+/"))
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigurationError(f"{what} is not valid base64") from None


def _decode_hex(text: str, *, what: str) -> bytes:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise KeyConfigurationError(f"{what} is not valid hex") from None


def derive_blob_address_key(key: bytes) -> bytes:
    """The 32-byte BLAKE3 key for blob addresses, derived from an encryption key.

    BLAKE3's ``derive_key`` mode with context :data:`BLOB_ADDRESS_CONTEXT`: one-way and
    domain separated, so publishing addresses reveals nothing about the encryption key.
    """
    return bytes(blake3.blake3(_check_key(key), derive_key_context=BLOB_ADDRESS_CONTEXT).digest())


def _byte_view(data: BytesLike) -> memoryview:
    # BLAKE3 and len() need a flat byte view: a memoryview of, say, an int array would
    # otherwise be refused (BLAKE3) or measured in items rather than bytes (len).
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _keyed_blake3_hex(address_key: bytes, content: BytesLike) -> str:
    view = _byte_view(content)
    threads = blake3.blake3.AUTO if len(view) >= _PARALLEL_HASH_THRESHOLD else 1
    return str(blake3.blake3(view, key=address_key, max_threads=threads).hexdigest())


def location_aad(bucket: str, key: str, *, context: str = DOCUMENT_AAD_CONTEXT) -> bytes:
    """The canonical v2 associated data binding a sealed object to its location.

    ``u32be(len) || UTF-8`` of ``context``, ``bucket`` and ``key`` in that order (see the
    module docstring). ``bucket=""`` binds the object key alone.
    """
    out = bytearray()
    for part in (context, bucket, key):
        encoded = part.encode("utf-8")
        out += len(encoded).to_bytes(4, "big")
        out += encoded
    return bytes(out)


def blob_aad(object_key: str, *, bucket: str = "") -> bytes:
    """:func:`location_aad` of a blob's object key, with the blob context."""
    return location_aad(bucket, object_key, context=BLOB_AAD_CONTEXT)


# -- parsing ------------------------------------------------------------------------------


def is_sealed(data: BytesLike) -> bool:
    """Whether ``data`` is an at-rest envelope (starts with ``A3SE``), whatever its version.

    Deliberately wider than a3s-code's check (``A3SE``, version 1, longer than 17 bytes):
    bytes that claim to be an envelope but are truncated or of an unknown version are
    reported as such instead of being handed on as plaintext. No JSON document starts with
    ``A3SE``, so plaintext documents are never mistaken for envelopes.
    """
    return bytes(_byte_view(data)[: len(MAGIC)]) == MAGIC


@dataclass(frozen=True)
class EnvelopeInfo:
    """The public header of an envelope, as :func:`inspect_envelope` reads it.

    Attributes:
        version: 1 or 2.
        key_id: the key id (v2); ``None`` for v1, which does not record one.
        header_size: bytes before the ciphertext (17 for v1, 18 + len(key id) for v2).
        plaintext_size: the size of the plaintext sealed inside.
    """

    version: int
    key_id: str | None
    header_size: int
    plaintext_size: int


def inspect_envelope(
    data: BytesLike, *, bucket: str | None = None, key: str | None = None
) -> EnvelopeInfo:
    """Parse an envelope's header without decrypting (no key needed).

    ``bucket`` and ``key`` (the object's location) only label error messages.

    Raises:
        NotSealedError: ``data`` does not start with ``A3SE``.
        UnsupportedEnvelopeError: the version byte is not 1 or 2.
        MalformedEnvelopeError: the envelope is truncated or its key id field is invalid.
    """
    where = {"bucket": bucket, "key": key}
    view = _byte_view(data)
    if not is_sealed(view):
        raise NotSealedError("not an at-rest envelope (no 'A3SE' magic)", **where)
    if len(view) < len(MAGIC) + 1:
        raise MalformedEnvelopeError("at-rest envelope truncated before its version byte", **where)
    version = view[len(MAGIC)]
    if version == V1:
        header_size = V1_HEADER_SIZE
        key_id = None
    elif version == V2:
        if len(view) < 6:
            raise MalformedEnvelopeError(
                "at-rest envelope v2 truncated before its key id length", **where
            )
        id_length = view[5]
        header_size = 6 + id_length + NONCE_SIZE
        key_id = None
    else:
        raise UnsupportedEnvelopeError(
            f"at-rest envelope version {version} is not supported (this s3store reads 1 and 2)",
            version=version,
            **where,
        )
    if len(view) < header_size + TAG_SIZE:
        raise MalformedEnvelopeError(
            f"at-rest envelope v{version} is truncated: {len(view)} bytes, at least "
            f"{header_size + TAG_SIZE} needed",
            **where,
        )
    if version == V2:
        key_id = bytes(view[6 : 6 + view[5]]).decode("ascii", errors="replace")
        if not _KEY_ID_RE.fullmatch(key_id):
            raise MalformedEnvelopeError("at-rest envelope v2 has an invalid key id field", **where)
    return EnvelopeInfo(
        version=version,
        key_id=key_id,
        header_size=header_size,
        plaintext_size=len(view) - header_size - TAG_SIZE,
    )


# -- v1 and v2 with one raw key -------------------------------------------------------------


def seal_v1(key: bytes, plaintext: BytesLike) -> bytes:
    """Seal ``plaintext`` in an upstream-compatible v1 envelope (no associated data).

    Raises:
        KeyConfigurationError: ``key`` is not 32 bytes.
        EncryptionUnavailableError: ``cryptography`` is not installed.
    """
    return _seal_v1_with(_cipher(key), plaintext)


def _seal_v1_with(cipher: AESGCM, plaintext: BytesLike) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return b"".join((MAGIC, bytes((V1,)), nonce, cipher.encrypt(nonce, plaintext, None)))


def _v2_header(key_id: str, nonce: bytes) -> bytes:
    encoded = key_id.encode("ascii")
    return b"".join((MAGIC, bytes((V2, len(encoded))), encoded, nonce))


def seal_v2(key: bytes, plaintext: BytesLike, *, key_id: str, aad: BytesLike = b"") -> bytes:
    """Seal ``plaintext`` in a v2 envelope naming ``key_id``, bound to ``aad``.

    Raises:
        KeyConfigurationError: ``key`` is not 32 bytes or ``key_id`` is invalid.
        EncryptionUnavailableError: ``cryptography`` is not installed.
    """
    return _seal_v2_with(_cipher(key), _check_key_id(key_id), plaintext, aad)


def _seal_v2_with(cipher: AESGCM, key_id: str, plaintext: BytesLike, aad: BytesLike) -> bytes:
    header = _v2_header(key_id, os.urandom(NONCE_SIZE))
    return header + cipher.encrypt(header[-NONCE_SIZE:], plaintext, header + bytes(aad))


def _decrypt(cipher: AESGCM, view: memoryview, info: EnvelopeInfo, aad: BytesLike) -> bytes | None:
    nonce = bytes(view[info.header_size - NONCE_SIZE : info.header_size])
    associated = None if info.version == V1 else bytes(view[: info.header_size]) + bytes(aad)
    try:
        return cipher.decrypt(nonce, view[info.header_size :], associated)
    except _invalid_tag_class():
        return None


def open_v1(
    key: bytes, data: BytesLike, *, bucket: str | None = None, object_key: str | None = None
) -> bytes:
    """The plaintext inside a v1 envelope (upstream's ``open``).

    ``bucket`` and ``object_key`` only label error messages.

    Raises:
        NotSealedError / MalformedEnvelopeError: ``data`` is not a well-formed envelope.
        UnsupportedEnvelopeError: the envelope is not version 1.
        DecryptionError: wrong key, or the bytes were modified.
    """
    view = _byte_view(data)
    info = inspect_envelope(view, bucket=bucket, key=object_key)
    if info.version != V1:
        raise UnsupportedEnvelopeError(
            f"expected an at-rest envelope v1, found v{info.version}",
            version=info.version,
            bucket=bucket,
            key=object_key,
        )
    plaintext = _decrypt(_cipher(key), view, info, b"")
    if plaintext is None:
        raise DecryptionError(
            "at-rest envelope v1 did not authenticate: wrong key, or the bytes were modified",
            bucket=bucket,
            key=object_key,
        )
    return plaintext


def open_v2(
    key: bytes,
    data: BytesLike,
    *,
    aad: BytesLike = b"",
    bucket: str | None = None,
    object_key: str | None = None,
) -> bytes:
    """The plaintext inside a v2 envelope, opened with ``key`` whatever key id it names.

    Use :meth:`KeyRing.open` to pick the key by id. ``bucket`` and ``object_key`` only label
    error messages; the binding is ``aad``.

    Raises:
        NotSealedError / MalformedEnvelopeError: ``data`` is not a well-formed envelope.
        UnsupportedEnvelopeError: the envelope is not version 2.
        DecryptionError: wrong key, other associated data, or the bytes were modified.
    """
    view = _byte_view(data)
    info = inspect_envelope(view, bucket=bucket, key=object_key)
    if info.version != V2:
        raise UnsupportedEnvelopeError(
            f"expected an at-rest envelope v2, found v{info.version}",
            version=info.version,
            bucket=bucket,
            key=object_key,
        )
    plaintext = _decrypt(_cipher(key), view, info, aad)
    if plaintext is None:
        raise DecryptionError(_v2_failure(info), bucket=bucket, key=object_key)
    return plaintext


def _v2_failure(info: EnvelopeInfo) -> str:
    return (
        f"at-rest envelope v2 (key id {info.key_id!r}) did not authenticate: the bytes were "
        "modified, the object was sealed for another location (associated data), or the "
        "key held under that id is not the one it was sealed with"
    )


def open_or_plaintext(
    data: BytesLike,
    keyring: KeyRing | None,
    *,
    aad: BytesLike = b"",
    allow_plaintext: bool | None = None,
    bucket: str | None = None,
    object_key: str | None = None,
) -> bytes:
    """What a document reader does with stored bytes: open them, or pass plaintext on.

    * Sealed bytes and a key ring: the plaintext (:meth:`KeyRing.open`).
    * Sealed bytes and no key ring: :class:`SealedWithoutKeyError`, never the ciphertext.
    * Plaintext: returned unchanged when plaintext is allowed, else :class:`NotSealedError`.
      ``allow_plaintext=None`` means the ring's ``accept_plaintext`` (always allowed
      without a ring).

    ``bucket`` and ``object_key`` only label error messages; the v2 binding is ``aad``.
    """
    if is_sealed(data):
        if keyring is None:
            raise SealedWithoutKeyError(
                "object is sealed (encrypted at rest, 'A3SE' envelope) and no encryption key "
                "is configured: give the store a KeyRing (e.g. KeyRing.from_env("
                f"{DEFAULT_ENV_VAR!r}))",
                bucket=bucket,
                key=object_key,
            )
        return keyring.open(data, aad=aad, bucket=bucket, object_key=object_key)
    if allow_plaintext is None:
        allow_plaintext = keyring is None or keyring.accept_plaintext
    if not allow_plaintext:
        raise NotSealedError(
            "object is plaintext, but this reader requires sealed (encrypted) objects",
            bucket=bucket,
            key=object_key,
        )
    return data if isinstance(data, bytes) else bytes(data)


# -- key ring -------------------------------------------------------------------------------


class KeyRing:
    """Named 32-byte keys: seal with the current one, open with any of them.

    Args:
        keys: ``{key id: key}`` or ``(key id, key)`` pairs; keys as 32 raw bytes or text
            (:func:`parse_key`). Ids are 1-255 ASCII letters, digits, ``.``, ``_``, ``-``.
        current: the id to seal with (default: the first key).
        write_version: envelope to write: 1 (upstream compatible, default) or 2.
        accept_plaintext: whether readers pass plaintext through (migration; default True).
        accept_v1: whether v1 envelopes open (default True). v1 carries no associated data,
            so a ring that writes v2 can refuse v1 once a bucket is migrated, closing the
            downgrade of a location-bound object to an unbound one.

    The ring is immutable; :meth:`with_key` returns a rotated copy. ``repr`` shows ids and
    settings, never key bytes, and pickling is refused so keys do not leak into caches or
    subprocess payloads by accident.

    Raises:
        KeyConfigurationError: no keys, a duplicate or invalid id, a key that is not 32
            bytes, an unknown ``current``, or inconsistent settings.
        EncryptionUnavailableError: ``cryptography`` is not installed (checked here, so a
            misconfigured process fails at start-up rather than on its first write).
    """

    __slots__ = (
        "_accept_plaintext",
        "_accept_v1",
        "_address_keys",
        "_ciphers",
        "_current",
        "_write_version",
    )

    _ciphers: dict[str, AESGCM]
    _address_keys: dict[str, bytes]
    _current: str
    _write_version: int
    _accept_plaintext: bool
    _accept_v1: bool

    def __init__(
        self,
        keys: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]],
        *,
        current: str | None = None,
        write_version: int = V1,
        accept_plaintext: bool = True,
        accept_v1: bool = True,
    ) -> None:
        if isinstance(keys, str | bytes | bytearray | memoryview):
            # A lone key would otherwise be iterated character by character.
            raise KeyConfigurationError(
                "KeyRing takes {key id: key} or (key id, key) pairs; use KeyRing.single(key) "
                "for one key"
            )
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not pairs:
            raise KeyConfigurationError("a key ring needs at least one key")
        if write_version not in VERSIONS:
            raise KeyConfigurationError(
                f"write_version must be 1 (upstream compatible) or 2, got {write_version!r}"
            )
        if write_version == V1 and not accept_v1:
            raise KeyConfigurationError(
                "accept_v1=False needs write_version=2: the ring could not read what it writes"
            )
        aesgcm = _aesgcm_class()
        ciphers: dict[str, AESGCM] = {}
        address_keys: dict[str, bytes] = {}
        for key_id, key in pairs:
            _check_key_id(key_id)
            if key_id in ciphers:
                raise KeyConfigurationError(f"duplicate key id {key_id!r} in key ring")
            raw = parse_key(key, what=f"key {key_id!r}")
            ciphers[key_id] = aesgcm(raw)
            address_keys[key_id] = derive_blob_address_key(raw)
        chosen = pairs[0][0] if current is None else current
        if chosen not in ciphers:
            raise KeyConfigurationError(
                f"current key id {chosen!r} is not in the key ring (ids: {sorted(ciphers)})"
            )
        self._ciphers = ciphers
        self._address_keys = address_keys
        self._current = chosen
        self._write_version = write_version
        self._accept_plaintext = accept_plaintext
        self._accept_v1 = accept_v1

    # -- construction ------------------------------------------------------------------

    @classmethod
    def single(
        cls,
        key: bytes | str,
        *,
        key_id: str = DEFAULT_KEY_ID,
        write_version: int = V1,
        accept_plaintext: bool = True,
    ) -> KeyRing:
        """A ring with one key: what a3s-code's ``with_encryption_key`` takes."""
        return cls([(key_id, key)], write_version=write_version, accept_plaintext=accept_plaintext)

    @overload
    @classmethod
    def from_env(
        cls,
        name: str = ...,
        *,
        required: Literal[True],
        environ: Mapping[str, str] | None = ...,
        current: str | None = ...,
        write_version: int = ...,
        accept_plaintext: bool = ...,
        accept_v1: bool = ...,
    ) -> KeyRing: ...

    @overload
    @classmethod
    def from_env(
        cls,
        name: str = ...,
        *,
        required: bool = ...,
        environ: Mapping[str, str] | None = ...,
        current: str | None = ...,
        write_version: int = ...,
        accept_plaintext: bool = ...,
        accept_v1: bool = ...,
    ) -> KeyRing | None: ...

    @classmethod
    def from_env(
        cls,
        name: str = DEFAULT_ENV_VAR,
        *,
        required: bool = False,
        environ: Mapping[str, str] | None = None,
        current: str | None = None,
        write_version: int = V1,
        accept_plaintext: bool = True,
        accept_v1: bool = True,
    ) -> KeyRing | None:
        """A ring from the environment variable ``name`` (``None`` if unset or blank).

        One key: ``base64:…``, ``hex:…`` or unprefixed (see :func:`parse_key`); its id is
        ``"default"``. Several keys, for rotation: ``id=key`` entries separated by commas or
        whitespace, the current key first (or named by ``current``), e.g.
        ``S3STORE_ENCRYPTION_KEY="k2=base64:…,k1=hex:…"``. Messages name the variable and
        the entry, never the value.

        Raises:
            KeyConfigurationError: the value is malformed, or ``required`` and it is unset.
        """
        env = os.environ if environ is None else environ
        value = env.get(name, "")
        entries = [entry for entry in re.split(r"[,\s]+", value) if entry]
        if not entries:
            if required:
                raise KeyConfigurationError(f"environment variable {name} holds no encryption key")
            return None
        pairs: list[tuple[str, bytes | str]] = []
        named = [_NAMED_ENTRY_RE.fullmatch(entry) for entry in entries]
        if len(entries) == 1 and named[0] is None:
            pairs.append((DEFAULT_KEY_ID, parse_key(entries[0], what=name)))
        else:
            for index, match in enumerate(named, start=1):
                if match is None:
                    raise KeyConfigurationError(
                        f"{name}: entry {index} is not of the form <key id>=<key>, as every "
                        "entry must be when several keys are given"
                    )
                key_id = match.group(1)
                pairs.append((key_id, parse_key(match.group(2), what=f"{name} key {key_id!r}")))
        try:
            return cls(
                pairs,
                current=current,
                write_version=write_version,
                accept_plaintext=accept_plaintext,
                accept_v1=accept_v1,
            )
        except EncryptionUnavailableError:
            raise
        except KeyConfigurationError as error:
            # Name the variable, so an operator knows where the bad setting came from.
            raise error.reworded(f"{name}: {error.summary}") from None

    def with_key(self, key_id: str, key: bytes | str, *, make_current: bool = True) -> KeyRing:
        """A copy of this ring with one more key, by default the new current key (rotation)."""
        ring = object.__new__(KeyRing)
        _check_key_id(key_id)
        if key_id in self._ciphers:
            raise KeyConfigurationError(f"duplicate key id {key_id!r} in key ring")
        raw = parse_key(key, what=f"key {key_id!r}")
        ring._ciphers = {**self._ciphers, key_id: _aesgcm_class()(raw)}
        ring._address_keys = {**self._address_keys, key_id: derive_blob_address_key(raw)}
        ring._current = key_id if make_current else self._current
        ring._write_version = self._write_version
        ring._accept_plaintext = self._accept_plaintext
        ring._accept_v1 = self._accept_v1
        return ring

    # -- properties --------------------------------------------------------------------

    @property
    def current_key_id(self) -> str:
        """The id of the key new seals use."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, in the order given."""
        return tuple(self._ciphers)

    @property
    def write_version(self) -> int:
        """The envelope version :meth:`seal` writes (1 or 2)."""
        return self._write_version

    @property
    def accept_plaintext(self) -> bool:
        """Whether readers using this ring pass plaintext through."""
        return self._accept_plaintext

    @property
    def accept_v1(self) -> bool:
        """Whether v1 envelopes open."""
        return self._accept_v1

    @property
    def overhead(self) -> int:
        """Bytes a seal adds to the plaintext (33 for v1, 34 + len(current id) for v2)."""
        if self._write_version == V1:
            return V1_OVERHEAD
        return V1_OVERHEAD + 1 + len(self._current)

    def __repr__(self) -> str:
        return (
            f"KeyRing(key_ids={self.key_ids!r}, current={self._current!r}, "
            f"write_version={self._write_version}, accept_plaintext={self._accept_plaintext}, "
            f"accept_v1={self._accept_v1})"
        )

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a KeyRing holds key material and cannot be pickled")

    def __copy__(self) -> KeyRing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> KeyRing:
        return self

    # -- documents ---------------------------------------------------------------------

    def seal(
        self, plaintext: BytesLike, *, aad: BytesLike = b"", version: int | None = None
    ) -> bytes:
        """Seal with the current key, in the ring's ``write_version`` envelope by default.

        ``aad`` (e.g. :func:`location_aad` of the object) binds a v2 envelope to its
        location; v1 has no associated data, so it is ignored there, which is what keeps v1
        readable by a3s-code. ``version=1`` forces an upstream-compatible envelope whatever
        the ring writes, for exporting to a directory a3s-code will open.
        """
        chosen = self._write_version if version is None else version
        cipher = self._ciphers[self._current]
        if chosen == V1:
            return _seal_v1_with(cipher, plaintext)
        if chosen == V2:
            return _seal_v2_with(cipher, self._current, plaintext, aad)
        raise KeyConfigurationError(f"envelope version must be 1 or 2, got {version!r}")

    def seal_document(self, plaintext: BytesLike, *, bucket: str, object_key: str) -> bytes:
        """Seal a document's bytes for storage at ``bucket``/``object_key``.

        In v2 the envelope is bound to :func:`location_aad` of that location (pass
        ``bucket=""`` to bind the object key alone); in v1 the location is not bound.
        """
        return self.seal(plaintext, aad=location_aad(bucket, object_key))

    def open_document(self, data: BytesLike, *, bucket: str, object_key: str) -> bytes:
        """The plaintext of a document read from ``bucket``/``object_key``.

        Sealed bytes are opened (v2 must have been sealed for this very location);
        plaintext is passed through if ``accept_plaintext`` (migration from an unencrypted
        store), refused otherwise.

        Raises:
            NotSealedError: plaintext while ``accept_plaintext`` is off.
            EncryptionError: as :meth:`open`, for sealed bytes.
        """
        return open_or_plaintext(
            data,
            self,
            aad=location_aad(bucket, object_key),
            bucket=bucket or None,
            object_key=object_key,
        )

    def open(
        self,
        data: BytesLike,
        *,
        aad: BytesLike = b"",
        bucket: str | None = None,
        object_key: str | None = None,
    ) -> bytes:
        """The plaintext of a sealed envelope (v1 or v2); plaintext input is refused.

        v2 is opened with the key its id names and with ``aad``; v1 (no key id, no
        associated data) with the current key first, then every other key. ``bucket`` and
        ``object_key`` only label error messages.

        Raises:
            NotSealedError / MalformedEnvelopeError: not a well-formed envelope.
            UnsupportedEnvelopeError: unknown version, or v1 while ``accept_v1`` is off.
            UnknownKeyIdError: a v2 key id the ring does not hold.
            DecryptionError: no key authenticates it (wrong key, modified bytes, or a v2
                object sealed for other associated data).
        """
        where = {"bucket": bucket, "key": object_key}
        view = _byte_view(data)
        info = inspect_envelope(view, **where)
        if info.version == V1:
            if not self._accept_v1:
                raise UnsupportedEnvelopeError(
                    "at-rest envelope v1 refused: this key ring only opens location-bound "
                    "v2 envelopes (accept_v1=False)",
                    version=V1,
                    **where,
                )
            order = [self._current, *(k for k in self._ciphers if k != self._current)]
            for key_id in order:
                plaintext = _decrypt(self._ciphers[key_id], view, info, b"")
                if plaintext is not None:
                    return plaintext
            raise DecryptionError(
                f"at-rest envelope v1 did not authenticate with any of the {len(order)} keys "
                f"in the ring (ids {list(order)}): wrong key, or the bytes were modified",
                **where,
            )
        assert info.key_id is not None
        cipher = self._ciphers.get(info.key_id)
        if cipher is None:
            raise UnknownKeyIdError(
                f"at-rest envelope v2 was sealed with key id {info.key_id!r}, which this key "
                f"ring does not hold (ids {list(self._ciphers)})",
                key_id=info.key_id,
                **where,
            )
        plaintext = _decrypt(cipher, view, info, aad)
        if plaintext is None:
            raise DecryptionError(_v2_failure(info), **where)
        return plaintext

    def open_or_plaintext(
        self,
        data: BytesLike,
        *,
        aad: BytesLike = b"",
        bucket: str | None = None,
        object_key: str | None = None,
    ) -> bytes:
        """:meth:`open` sealed bytes; pass plaintext through if ``accept_plaintext``.

        Raises:
            NotSealedError: plaintext while ``accept_plaintext`` is off.
            EncryptionError: as :meth:`open`, for sealed bytes.
        """
        return open_or_plaintext(data, self, aad=aad, bucket=bucket, object_key=object_key)

    # -- blobs -------------------------------------------------------------------------

    def blob_address(self, content: BytesLike, *, key_id: str | None = None) -> str:
        """The 64-hex keyed BLAKE3 address of a blob (current key unless ``key_id``).

        Equal contents get equal addresses under one key; without the key, addresses say
        nothing about content equality. Never equal to the plain BLAKE3 digest.
        """
        chosen = self._current if key_id is None else key_id
        address_key = self._address_keys.get(chosen)
        if address_key is None:
            raise KeyConfigurationError(f"key id {chosen!r} is not in the key ring")
        return _keyed_blake3_hex(address_key, content)

    def match_blob_address(self, content: BytesLike, address: str) -> str | None:
        """The id of the key whose blob address for ``content`` is ``address``, or ``None``.

        Every key is tried (current first) in constant time per comparison, so blobs
        addressed before a rotation still verify.
        """
        expected = address.lower().encode("ascii", errors="replace")
        order = [self._current, *(k for k in self._address_keys if k != self._current)]
        for key_id in order:
            actual = _keyed_blake3_hex(self._address_keys[key_id], content).encode("ascii")
            if hmac.compare_digest(actual, expected):
                return key_id
        return None

    def seal_blob(self, content: BytesLike, *, bucket: str, object_key: str) -> bytes:
        """Seal a blob body; in v2 it is bound to :func:`blob_aad` of its location.

        ``object_key`` should be the key built from :meth:`blob_address` of ``content``.
        """
        return self.seal(content, aad=blob_aad(object_key, bucket=bucket))

    def open_blob(self, data: BytesLike, *, bucket: str, object_key: str) -> bytes:
        """Open a sealed blob body stored at ``bucket``/``object_key``.

        Plaintext is always refused here: blob bodies are arbitrary bytes, so sniffing for
        ``A3SE`` cannot tell plaintext from an envelope. :meth:`read_blob` also handles
        plaintext blobs and checks the address.

        Raises:
            EncryptionError: as :meth:`open`.
        """
        return self.open(
            data,
            aad=blob_aad(object_key, bucket=bucket),
            bucket=bucket or None,
            object_key=object_key,
        )

    def read_blob(self, data: BytesLike, *, address: str, bucket: str, object_key: str) -> bytes:
        """The verified content of a blob stored under ``address`` (64 hex digits).

        The address, not the bytes, decides what the blob is, so content that happens to
        start with ``A3SE`` is never misread:

        * ``address`` is the plain BLAKE3 digest of ``data``: a blob stored before
          encryption was turned on, returned as is if ``accept_plaintext``.
        * otherwise ``data`` is opened as :meth:`open_blob`, and the plaintext must hash to
          ``address`` under one of the ring's address keys. v1 envelopes carry no location,
          so this check is what catches a sealed blob copied over another address.

        Raises:
            NotSealedError: a plaintext blob while ``accept_plaintext`` is off.
            EncryptionError: as :meth:`open`.
            IntegrityError: the content does not hash to ``address`` under any key.
        """
        view = _byte_view(data)
        expected = address.lower()
        where = {"bucket": bucket or None, "key": object_key}
        plain_digest = str(blake3.blake3(view).hexdigest())
        if hmac.compare_digest(plain_digest.encode("ascii"), expected.encode("ascii", "replace")):
            if not self._accept_plaintext:
                raise NotSealedError(
                    "blob is stored in plaintext under its plain BLAKE3 address, but this "
                    "key ring requires sealed objects (accept_plaintext=False)",
                    **where,
                )
            return bytes(view)
        content = self.open_blob(view, bucket=bucket, object_key=object_key)
        if self.match_blob_address(content, expected) is None:
            raise IntegrityError(
                "sealed blob opened, but its content does not hash to its address under any "
                "key in the ring: the object was copied over another blob's address",
                expected=expected,
                actual=self.blob_address(content),
                **where,
            )
        return content


__all__ = [
    "BLOB_AAD_CONTEXT",
    "BLOB_ADDRESS_CONTEXT",
    "DEFAULT_ENV_VAR",
    "DEFAULT_KEY_ID",
    "DOCUMENT_AAD_CONTEXT",
    "KEY_SIZE",
    "MAGIC",
    "NONCE_SIZE",
    "TAG_SIZE",
    "V1",
    "V1_HEADER_SIZE",
    "V1_OVERHEAD",
    "V2",
    "BytesLike",
    "DecryptionError",
    "EncryptionError",
    "EncryptionUnavailableError",
    "EnvelopeInfo",
    "KeyConfigurationError",
    "KeyRing",
    "MalformedEnvelopeError",
    "NotSealedError",
    "SealedWithoutKeyError",
    "UnknownKeyIdError",
    "UnsupportedEnvelopeError",
    "blob_aad",
    "derive_blob_address_key",
    "format_key",
    "generate_key",
    "inspect_envelope",
    "is_sealed",
    "location_aad",
    "open_or_plaintext",
    "open_v1",
    "open_v2",
    "parse_key",
    "seal_v1",
    "seal_v2",
]
