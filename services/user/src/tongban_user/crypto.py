"""Protection of personal identifiers at rest: AES-256-GCM encryption plus a keyed hash for exact-match lookups."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ENCRYPTION_KEY_INFO = b"tongban-user/pii/aes-256-gcm/v1"
HASH_KEY_INFO = b"tongban-user/pii/lookup-hmac-sha256/v1"

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_KEY_ID = re.compile(r"[0-9a-f]{8}", re.ASCII)


class PiiDecryptError(ValueError):
    """A protected value could not be decrypted: bad format, unknown key, wrong key or tampering."""


def _b64url(data: bytes) -> str:
    """Unpadded base64url text of the bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_material(secret: str) -> bytes:
    """The 32 raw bytes of a base64 or base64url key, otherwise the UTF-8 bytes of the passphrase."""
    text = secret.strip()
    if not text:
        raise ValueError("PII secrets must not be empty")
    standard = text.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return raw if len(raw) == KEY_BYTES else text.encode("utf-8")


def derive_key(secret: str, info: bytes) -> bytes:
    """Derive a 32-byte key from a configured secret with HKDF-SHA256; distinct info labels give independent keys."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(_key_material(secret))


def key_fingerprint(key: bytes) -> str:
    """Short public identifier of a derived key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def lookup_form(value: str) -> str:
    """Canonical text hashed for lookups: NFKC-folded, all whitespace removed, upper-cased."""
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def _associated_data(key_id: str) -> bytes:
    """Token header bound into the GCM tag so the version and key id cannot be altered."""
    return f"{TOKEN_VERSION}.{key_id}".encode("ascii")


class PiiCipher:
    """Encrypts personal identifiers for storage and computes keyed hashes for exact-match indexes."""

    def __init__(self, encryption_key: str, hash_key: str, old_encryption_keys: Sequence[str] = ()) -> None:
        """Derive the current encryption key, the lookup hash key and any retired keys still accepted for decryption."""
        if isinstance(old_encryption_keys, str):
            raise TypeError("old_encryption_keys must be a sequence of secrets, not a single string")
        current = derive_key(encryption_key, ENCRYPTION_KEY_INFO)
        self._key_id = key_fingerprint(current)
        self._aead = AESGCM(current)
        self._decryptors: dict[str, list[AESGCM]] = {}
        seen: set[bytes] = set()
        for key in (current, *(derive_key(old, ENCRYPTION_KEY_INFO) for old in old_encryption_keys)):
            if key not in seen:
                seen.add(key)
                self._decryptors.setdefault(key_fingerprint(key), []).append(AESGCM(key))
        self._hash_key = derive_key(hash_key, HASH_KEY_INFO)

    def __repr__(self) -> str:
        """Show only the public key id, never key material."""
        return f"PiiCipher(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """Fingerprint of the current encryption key, embedded in every new token."""
        return self._key_id

    def encrypt(self, plaintext: str) -> str:
        """Encrypt with AES-256-GCM and a random nonce into a token v1.<key_id>.<base64url(nonce|ciphertext|tag)>."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), _associated_data(self._key_id))
        return f"{TOKEN_VERSION}.{self._key_id}.{_b64url(nonce + sealed)}"

    def decrypt(self, token: str) -> str:
        """Decrypt a token made by this or a retired key; raise PiiDecryptError if it is malformed or not authentic."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            raise PiiDecryptError(f"not a {TOKEN_VERSION} PII token")
        _, key_id, body = parts
        if not _KEY_ID.fullmatch(key_id):
            raise PiiDecryptError("PII token has a malformed key id")
        candidates = self._decryptors.get(key_id)
        if not candidates:
            raise PiiDecryptError(f"no decryption key configured for key id {key_id}")
        if not _BASE64URL.fullmatch(body):
            raise PiiDecryptError("PII token body is not base64url")
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise PiiDecryptError("PII token body is not base64url") from None
        if _b64url(blob) != body:
            raise PiiDecryptError("PII token body is not canonical base64url")
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise PiiDecryptError("PII token is too short")
        for aead in candidates:
            try:
                data = aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(key_id))
            except InvalidTag:
                continue
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise PiiDecryptError("PII token does not hold UTF-8 text") from None
        raise PiiDecryptError("PII token failed authentication (tampered or encrypted with another key)")

    def needs_reencryption(self, token: str) -> bool:
        """Whether the token was made with a retired key (or is not a token of the current key at all)."""
        return not token.startswith(f"{TOKEN_VERSION}.{self._key_id}.")

    def lookup_hash(self, value: str) -> str:
        """Hex HMAC-SHA256 of the value's lookup form: deterministic, for exact-match indexes."""
        return hmac.new(self._hash_key, lookup_form(value).encode("utf-8"), hashlib.sha256).hexdigest()
