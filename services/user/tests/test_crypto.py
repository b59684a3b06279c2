"""Tests for encryption and lookup hashing of personal identifiers."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tongban_user.crypto import (
    ENCRYPTION_KEY_INFO,
    HASH_KEY_INFO,
    PiiCipher,
    PiiDecryptError,
    derive_key,
)
from tongban_user.identity import PROVINCE_PREFIXES, china_today, make_id_number

WORKED_EXAMPLE = "11010519491231002X"
RAW_KEY = bytes(range(32))

id_numbers = st.builds(
    make_id_number,
    st.builds(
        lambda p, r: p + r, st.sampled_from(sorted(PROVINCE_PREFIXES)), st.text("0123456789", min_size=4, max_size=4)
    ),
    st.dates(min_value=date(1900, 1, 1), max_value=china_today()),
    st.text("0123456789", min_size=3, max_size=3),
)


@pytest.fixture
def cipher() -> PiiCipher:
    return PiiCipher(encryption_key="encryption passphrase for tests", hash_key="hash passphrase for tests")


def is_subsequence(needle: str, haystack: str) -> bool:
    """Whether the characters of needle appear in haystack in order (not necessarily adjacent)."""
    rest = iter(haystack)
    return all(ch in rest for ch in needle)


@given(st.text(max_size=200))
def test_round_trip(plaintext: str) -> None:
    cipher = PiiCipher("enc", "hash")
    assert cipher.decrypt(cipher.encrypt(plaintext)) == plaintext


def test_token_format(cipher: PiiCipher) -> None:
    version, key_id, body = cipher.encrypt(WORKED_EXAMPLE).split(".")
    assert version == "v1"
    assert key_id == cipher.key_id
    assert len(key_id) == 8
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 12 + len(WORKED_EXAMPLE) + 16
    assert "passphrase" not in repr(cipher)


def test_same_plaintext_encrypts_differently(cipher: PiiCipher) -> None:
    tokens = {cipher.encrypt(WORKED_EXAMPLE) for _ in range(50)}
    assert len(tokens) == 50
    assert {cipher.decrypt(token) for token in tokens} == {WORKED_EXAMPLE}


def test_any_changed_character_is_detected(cipher: PiiCipher) -> None:
    token = cipher.encrypt(WORKED_EXAMPLE)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    header = len("v1.") + len(cipher.key_id) + 1
    for position in range(header, len(token)):
        replacement = alphabet[(alphabet.index(token[position]) + 1) % len(alphabet)]
        with pytest.raises(PiiDecryptError):
            cipher.decrypt(token[:position] + replacement + token[position + 1 :])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t + "A",
        lambda t: t.replace("v1.", "v2.", 1),
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t + ".extra",
        lambda t: t[: len("v1.12345678.") + 10],
        lambda t: "",
        lambda t: "not a token",
        lambda t: t.replace(".", ".=", 2),
    ],
)
def test_malformed_tokens_are_rejected(cipher: PiiCipher, mangle: Callable[[str], str]) -> None:
    with pytest.raises(PiiDecryptError):
        cipher.decrypt(mangle(cipher.encrypt(WORKED_EXAMPLE)))


def test_wrong_key_fails(cipher: PiiCipher) -> None:
    token = cipher.encrypt(WORKED_EXAMPLE)
    other = PiiCipher("another encryption passphrase", "hash passphrase for tests")
    with pytest.raises(PiiDecryptError, match="no decryption key"):
        other.decrypt(token)
    # Relabelling the token with the other key's id still fails authentication.
    forged = token.replace(cipher.key_id, other.key_id, 1)
    with pytest.raises(PiiDecryptError, match="failed authentication"):
        other.decrypt(forged)


def test_old_key_still_decrypts_after_rotation() -> None:
    old = PiiCipher("key of 2024", "hash key")
    legacy_token = old.encrypt(WORKED_EXAMPLE)
    rotated = PiiCipher("key of 2025", "hash key", old_encryption_keys=["key of 2024"])
    assert rotated.key_id != old.key_id
    assert rotated.decrypt(legacy_token) == WORKED_EXAMPLE
    assert rotated.needs_reencryption(legacy_token)
    fresh = rotated.encrypt(WORKED_EXAMPLE)
    assert fresh.split(".")[1] == rotated.key_id
    assert not rotated.needs_reencryption(fresh)
    with pytest.raises(PiiDecryptError):
        old.decrypt(fresh)
    with pytest.raises(PiiDecryptError):
        PiiCipher("key of 2025", "hash key").decrypt(legacy_token)
    assert rotated.lookup_hash(WORKED_EXAMPLE) == old.lookup_hash(WORKED_EXAMPLE)


def test_old_keys_must_be_a_sequence_of_secrets() -> None:
    with pytest.raises(TypeError):
        PiiCipher("new", "hash", old_encryption_keys="old")


def test_lookup_hash_is_deterministic_and_keyed(cipher: PiiCipher) -> None:
    digest = cipher.lookup_hash(WORKED_EXAMPLE)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert cipher.lookup_hash(WORKED_EXAMPLE) == digest
    assert PiiCipher("a different encryption key", "hash passphrase for tests").lookup_hash(WORKED_EXAMPLE) == digest
    assert PiiCipher("encryption passphrase for tests", "another hash key").lookup_hash(WORKED_EXAMPLE) != digest
    assert cipher.lookup_hash("11010519491231002Y") != digest


def test_lookup_hash_normalises(cipher: PiiCipher) -> None:
    digest = cipher.lookup_hash(WORKED_EXAMPLE)
    assert cipher.lookup_hash("11010519491231002x") == digest
    assert cipher.lookup_hash(" 110105 19491231 002X\n") == digest
    assert cipher.lookup_hash("１１０１０５１９４９１２３１００２Ｘ") == digest


def test_keys_are_independent_even_from_one_secret() -> None:
    assert derive_key("same secret", ENCRYPTION_KEY_INFO) != derive_key("same secret", HASH_KEY_INFO)
    assert len(derive_key("same secret", ENCRYPTION_KEY_INFO)) == 32


def test_base64_keys_are_decoded() -> None:
    standard = base64.b64encode(RAW_KEY).decode()
    urlsafe = base64.urlsafe_b64encode(RAW_KEY).decode().rstrip("=")
    assert standard != urlsafe
    assert derive_key(standard, ENCRYPTION_KEY_INFO) == derive_key(urlsafe, ENCRYPTION_KEY_INFO)
    a, b = PiiCipher(standard, standard), PiiCipher(urlsafe, urlsafe)
    assert a.key_id == b.key_id
    assert b.decrypt(a.encrypt(WORKED_EXAMPLE)) == WORKED_EXAMPLE
    assert a.lookup_hash(WORKED_EXAMPLE) == b.lookup_hash(WORKED_EXAMPLE)
    random_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    assert PiiCipher(random_key, random_key).key_id != a.key_id


@pytest.mark.parametrize("secret", ["", "   "])
def test_empty_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        PiiCipher(secret, "hash")
    with pytest.raises(ValueError):
        PiiCipher("enc", secret)


@settings(max_examples=200)
@given(id_numbers)
def test_ciphertext_does_not_reveal_the_number(number: str) -> None:
    cipher = PiiCipher("enc", "hash")
    token = cipher.encrypt(number)
    assert number not in token
    assert number[:17] not in "".join(ch for ch in token if ch.isdigit())
    assert not is_subsequence(number[:17], token)
    assert cipher.decrypt(token) == number
