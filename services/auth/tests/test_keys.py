"""Signing keys: generation, encryption at rest, rotation with overlap, the published JWKS and the CLI."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import text, update
from sqlmodel import col, select

from tongban_auth import keys
from tongban_auth.__main__ import main as auth_main
from tongban_auth.config import Settings
from tongban_auth.models import KeyState, SigningKey
from tongban_auth.tokens import Signer
from tongban_kit.db import Database
from tongban_kit.outbox import utcnow
from tongban_kit.secrets import SecretBox, SecretDecryptError
from tongban_kit.testing.recorder import EventRecorder

from .helpers import event_about


async def _rows(db: Database, alg: str | None = None) -> list[SigningKey]:
    async with db.session() as s:
        stmt = select(SigningKey)
        if alg:
            stmt = stmt.where(SigningKey.alg == alg)
        return list((await s.exec(stmt)).all())


async def _published(client: httpx.AsyncClient) -> KeySet:
    r = await client.get("/oauth2/jwks")
    assert r.status_code == 200
    return KeySet.import_key_set(r.json())


async def test_start_up_creates_an_active_and_a_next_key_per_algorithm(auth_db: Database) -> None:
    rows = await _rows(auth_db)
    assert sorted((r.alg, r.state) for r in rows) == [
        ("ES256", "active"),
        ("ES256", "next"),
        ("RS256", "active"),
        ("RS256", "next"),
    ]
    for r in rows:
        assert r.public_jwk["kid"] == r.kid and r.public_jwk["alg"] == r.alg and r.public_jwk["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & r.public_jwk.keys()
        assert r.public_jwk["kty"] == ("EC" if r.alg == "ES256" else "RSA")


async def test_kid_is_the_rfc7638_thumbprint(auth_db: Database, auth_settings: Settings) -> None:
    box = keys.make_box(auth_settings)
    for r in await _rows(auth_db):
        private = keys.load_private(r, box)
        assert private.thumbprint() == r.kid
        assert KeySet.import_key_set({"keys": [r.public_jwk]}).keys[0].thumbprint() == r.kid


async def test_private_keys_are_encrypted_at_rest(auth_db: Database, auth_settings: Settings) -> None:
    box = keys.make_box(auth_settings)
    async with auth_db.session() as s:
        raw = (await s.exec(text("SELECT * FROM auth_signing_key"))).all()  # type: ignore[call-overload]
    dump = " ".join(str(v) for row in raw for v in row)
    assert "PRIVATE KEY" not in dump
    for r in await _rows(auth_db):
        private = keys.load_private(r, box).as_dict(private=True)
        secret_b64 = str(private["d"])
        assert secret_b64 not in dump and secret_b64.rstrip("=") not in dump
        pem_body = keys.load_private(r, box).as_pem(private=True).split(b"\n")[1].decode()
        assert pem_body not in dump
        assert r.private_key_enc.startswith(f"v1.{box.key_id}.")
        assert base64.urlsafe_b64decode(r.private_key_enc.split(".")[2] + "==")  # opaque bytes


async def test_sealed_key_needs_the_right_key_and_its_own_row(auth_db: Database, auth_settings: Settings) -> None:
    rows = await _rows(auth_db, "ES256")
    other = SecretBox("another key-encryption key", keys.KEY_INFO)
    with pytest.raises(SecretDecryptError, match="no decryption key"):
        keys.load_private(rows[0], other)
    # a sealed key copied onto another row does not open: the kid is bound into the seal
    swapped = SigningKey.model_validate({**rows[0].model_dump(), "private_key_enc": rows[1].private_key_enc})
    with pytest.raises(SecretDecryptError, match="failed authentication"):
        keys.load_private(swapped, keys.make_box(auth_settings))
    # after a change of key-encryption key the old one still opens existing rows
    changed = Settings(
        environment="test",
        cursor_secret=auth_settings.cursor_secret,
        key_encryption_key="a brand new key-encryption key",
        old_key_encryption_keys=[auth_settings.key_encryption_key],
    )
    assert keys.load_private(rows[0], keys.make_box(changed)).thumbprint() == rows[0].kid


async def test_jwks_publishes_every_live_key_with_short_caching(
    client: httpx.AsyncClient, auth_db: Database, auth_settings: Settings
) -> None:
    r = await client.get("/oauth2/jwks")
    assert r.status_code == 200
    assert r.headers["cache-control"] == f"public, max-age={auth_settings.jwks_max_age_seconds}"
    published = r.json()["keys"]
    live = {x.kid for x in await _rows(auth_db) if x.state != KeyState.retired}
    assert live <= {k["kid"] for k in published}
    for k in published:
        assert k["use"] == "sig" and k["alg"] in ("ES256", "RS256") and "d" not in k


async def test_signed_tokens_carry_kid_alg_and_typ(signer: Signer, client: httpx.AsyncClient) -> None:
    for alg in ("ES256", "RS256"):
        token = await signer.sign({"sub": "demo-citizen", "iss": "test"}, "at+jwt", alg=alg)
        verified = jwt.decode(token, await _published(client), algorithms=["ES256", "RS256"])
        assert verified.header["typ"] == "at+jwt" and verified.header["alg"] == alg
        assert verified.header["kid"] == (await signer.key(alg)).kid
        assert verified.claims["sub"] == "demo-citizen"
    default = jwt.decode(await signer.sign({"sub": "x"}, "JWT"), await _published(client), algorithms=["ES256"])
    assert default.header["alg"] == "ES256"


async def test_rotation_keeps_the_old_key_published_until_retire_after(
    auth_db: Database,
    auth_settings: Settings,
    signer: Signer,
    client: httpx.AsyncClient,
    event_recorder: EventRecorder,
) -> None:
    box = keys.make_box(auth_settings)
    before = {r.state: r.kid for r in await _rows(auth_db, "ES256")}
    old_token = await signer.sign({"sub": "before-rotation"}, "at+jwt")
    assert jwt.decode(old_token, await _published(client)).header["kid"] == before["active"]

    with pytest.raises(keys.RotationTooEarly):
        await keys.rotate(auth_db, auth_settings, box, "ES256")
    done = await keys.rotate(auth_db, auth_settings, box, "ES256", min_next_age=timedelta(0), actor="test")
    assert done.retired_kid == before["active"] and done.active_kid == before["next"]
    assert done.retire_after is not None
    overlap = timedelta(seconds=auth_settings.max_token_lifetime_seconds + auth_settings.jwks_max_age_seconds)
    assert timedelta(0) < done.retire_after - utcnow() <= overlap

    after = await _rows(auth_db, "ES256")
    assert {r.state for r in after if r.kid == before["active"]} == {"retired"}
    assert sum(r.state == KeyState.next for r in after) == 1 and done.next_kid not in before.values()

    published = await _published(client)
    assert {before["active"], done.active_kid, done.next_kid} <= {k.kid for k in published.keys}
    assert jwt.decode(old_token, published).claims["sub"] == "before-rotation"

    signer.forget()
    new_token = await signer.sign({"sub": "after-rotation"}, "at+jwt")
    assert jwt.decode(new_token, published).header["kid"] == done.active_kid

    event = await event_about(event_recorder, "auth.key.rotated.v1", done.active_kid)
    assert event["data"]["retired_kid"] == before["active"] and event["data"]["actor"] == "test"

    # past retire_after the old key leaves the JWKS (and the table at the next rotation); its tokens fail
    async with auth_db.session() as s:
        await s.exec(
            update(SigningKey)
            .where(col(SigningKey.kid) == before["active"])
            .values(retire_after=utcnow() - timedelta(seconds=1))
        )
        await s.commit()
    published = await _published(client)
    assert before["active"] not in {k.kid for k in published.keys}
    with pytest.raises(JoseError):
        jwt.decode(old_token, published)
    await keys.rotate(auth_db, auth_settings, box, "ES256", min_next_age=timedelta(0))
    assert before["active"] not in {r.kid for r in await _rows(auth_db)}


async def test_signer_picks_up_a_rotation_after_its_cache_time(
    auth_db: Database, auth_settings: Settings, signer: Signer
) -> None:
    quick = Signer(
        auth_db, keys.make_box(auth_settings), auth_settings.model_copy(update={"signing_key_cache_seconds": 0})
    )
    first = (await quick.key("RS256")).kid
    await keys.rotate(auth_db, auth_settings, keys.make_box(auth_settings), "RS256", min_next_age=timedelta(0))
    assert (await quick.key("RS256")).kid != first


async def test_rotate_keys_command(
    auth_db: Database, auth_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "ENVIRONMENT": "test",
        "CURSOR_SECRET": "c" * 32,
        "DATABASE_URL": auth_settings.database_url,
        "KEY_ENCRYPTION_KEY": auth_settings.key_encryption_key,
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
    }
    for k, v in env.items():
        monkeypatch.setenv(f"TONGBAN_AUTH_{k}", v)
    before = {r.state: r.kid for r in await _rows(auth_db, "ES256")}
    assert await asyncio.to_thread(auth_main, ["rotate-keys", "--alg", "ES256"]) == 2  # next key too young
    assert "not rotated" in capsys.readouterr().err
    assert await asyncio.to_thread(auth_main, ["rotate-keys", "--alg", "ES256", "--now"]) == 0
    assert f"active {before['next']}" in capsys.readouterr().out
    after = {r.kid: r.state for r in await _rows(auth_db, "ES256")}
    assert after[before["active"]] == "retired" and after[before["next"]] == "active"


def test_unknown_algorithms_are_refused() -> None:
    with pytest.raises(ValueError):
        keys.generate("HS256")
    with pytest.raises(ValueError):
        Settings(signing_algs=[])
