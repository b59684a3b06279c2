"""Protection of personal identifiers at rest: AES-256-GCM encryption plus a keyed hash for exact-match lookups."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Sequence

from tongban_kit.secrets import SecretBox, SecretDecryptError, derive_key

ENCRYPTION_KEY_INFO = b"tongban-user/pii/aes-256-gcm/v1"
HASH_KEY_INFO = b"tongban-user/pii/lookup-hmac-sha256/v1"

__all__ = ["ENCRYPTION_KEY_INFO", "HASH_KEY_INFO", "PiiCipher", "PiiDecryptError", "derive_key", "lookup_form"]


class PiiDecryptError(ValueError):
    """A protected value could not be decrypted: bad format, unknown key, wrong key or tampering."""


def lookup_form(value: str) -> str:
    """Canonical text hashed for lookups: NFKC-folded, all whitespace removed, upper-cased."""
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


class PiiCipher:
    """Encrypts personal identifiers for storage and computes keyed hashes for exact-match indexes."""

    def __init__(self, encryption_key: str, hash_key: str, old_encryption_keys: Sequence[str] = ()) -> None:
        """Derive the current encryption key, the lookup hash key and any retired keys still accepted for decryption."""
        if isinstance(old_encryption_keys, str):
            raise TypeError("old_encryption_keys must be a sequence of secrets, not a single string")
        self._box = SecretBox(encryption_key, ENCRYPTION_KEY_INFO, old_encryption_keys)
        self._hash_key = derive_key(hash_key, HASH_KEY_INFO)

    def __repr__(self) -> str:
        """Show only the public key id, never key material."""
        return f"PiiCipher(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """Fingerprint of the current encryption key, embedded in every new token."""
        return self._box.key_id

    def encrypt(self, plaintext: str) -> str:
        """Encrypt with AES-256-GCM and a random nonce into a token v1.<key_id>.<base64url(nonce|ciphertext|tag)>."""
        return self._box.seal(plaintext.encode("utf-8"))

    def decrypt(self, token: str) -> str:
        """Decrypt a token made by this or a retired key; raise PiiDecryptError if it is malformed or not authentic."""
        try:
            data = self._box.open(token)
        except SecretDecryptError as exc:
            raise PiiDecryptError(f"PII {exc}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PiiDecryptError("PII token does not hold UTF-8 text") from None

    def needs_reencryption(self, token: str) -> bool:
        """Whether the token was made with a retired key (or is not a token of the current key at all)."""
        return self._box.needs_resealing(token)

    def lookup_hash(self, value: str) -> str:
        """Hex HMAC-SHA256 of the value's lookup form: deterministic, for exact-match indexes."""
        return hmac.new(self._hash_key, lookup_form(value).encode("utf-8"), hashlib.sha256).hexdigest()
