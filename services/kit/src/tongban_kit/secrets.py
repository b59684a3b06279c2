"""Secrets at rest: AES-256-GCM with a key derived from a configured secret, old keys kept for reading."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_KEY_ID = re.compile(r"[0-9a-f]{8}", re.ASCII)


class SecretDecryptError(ValueError):
    """A sealed value could not be opened: bad format, unknown key, wrong key or tampering."""


def b64url(data: bytes) -> str:
    """Unpadded base64url text of the bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_material(secret: str) -> bytes:
    """The 32 raw bytes of a base64 or base64url key, otherwise the UTF-8 bytes of the passphrase."""
    text = secret.strip()
    if not text:
        raise ValueError("secrets must not be empty")
    standard = text.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return raw if len(raw) == KEY_BYTES else text.encode("utf-8")


def derive_key(secret: str, info: bytes) -> bytes:
    """Derive a 32-byte key from a configured secret with HKDF-SHA256; distinct info labels give independent keys."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(key_material(secret))


def key_fingerprint(key: bytes) -> str:
    """Short public identifier of a derived key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def _associated_data(key_id: str, context: bytes) -> bytes:
    """Token header (and the caller's context) bound into the GCM tag."""
    return f"{TOKEN_VERSION}.{key_id}".encode("ascii") + context


class SecretBox:
    """Seals text as `v1.<key_id>.<base64url(nonce|ciphertext|tag)>`; opens tokens of the current or an old key."""

    def __init__(self, secret: str, info: bytes, old_secrets: Sequence[str] = ()) -> None:
        """Derive the current key and every old key still accepted for opening."""
        if isinstance(old_secrets, str):
            raise TypeError("old secrets must be a sequence of secrets, not a single string")
        current = derive_key(secret, info)
        self._key_id = key_fingerprint(current)
        self._aead = AESGCM(current)
        self._openers: dict[str, list[AESGCM]] = {}
        seen: set[bytes] = set()
        for key in (current, *(derive_key(old, info) for old in old_secrets)):
            if key not in seen:
                seen.add(key)
                self._openers.setdefault(key_fingerprint(key), []).append(AESGCM(key))

    def __repr__(self) -> str:
        """Show only the public key id, never key material."""
        return f"SecretBox(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """Fingerprint of the current key, embedded in every new token."""
        return self._key_id

    def seal(self, plaintext: bytes, context: bytes = b"") -> str:
        """Encrypt with a random nonce; `context` (e.g. the row's id) must be given again to open."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _associated_data(self._key_id, context))
        return f"{TOKEN_VERSION}.{self._key_id}.{b64url(nonce + sealed)}"

    def open(self, token: str, context: bytes = b"") -> bytes:
        """Decrypt a token of this or an old key; raise SecretDecryptError if malformed or not authentic."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            raise SecretDecryptError(f"not a {TOKEN_VERSION} token")
        _, key_id, body = parts
        if not _KEY_ID.fullmatch(key_id):
            raise SecretDecryptError("token has a malformed key id")
        candidates = self._openers.get(key_id)
        if not candidates:
            raise SecretDecryptError(f"no decryption key configured for key id {key_id}")
        if not _BASE64URL.fullmatch(body):
            raise SecretDecryptError("token body is not base64url")
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SecretDecryptError("token body is not base64url") from None
        if b64url(blob) != body:
            raise SecretDecryptError("token body is not canonical base64url")
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise SecretDecryptError("token is too short")
        for aead in candidates:
            try:
                return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(key_id, context))
            except InvalidTag:
                continue
        raise SecretDecryptError("token failed authentication (tampered or encrypted with another key)")

    def needs_resealing(self, token: str) -> bool:
        """Whether the token was made with an old key (or is not a token of the current key at all)."""
        return not token.startswith(f"{TOKEN_VERSION}.{self._key_id}.")
