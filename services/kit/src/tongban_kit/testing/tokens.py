"""A token issuer for tests: ES256 and RS256 keys, their JWK Set, good access tokens and every kind of bad one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tongban_kit.ids import new_id

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int, size: int | None = None) -> str:
    return b64url(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def public_jwk(key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    """The public JWK of a private key, with `kid`, `alg` and `use: sig`."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        nums = key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _uint(nums.x, 32), "y": _uint(nums.y, 32), **_meta(kid, alg)}
    rnums = key.public_key().public_numbers()
    return {"kty": "RSA", "n": _uint(rnums.n), "e": _uint(rnums.e), **_meta(kid, alg)}


def _meta(kid: str, alg: str) -> dict[str, str]:
    return {"kid": kid, "alg": alg, "use": "sig"}


def sign_jws(header: dict[str, Any], payload: dict[str, Any] | bytes, key: PrivateKey | bytes | None) -> str:
    """A compact JWS: ES256/RS256 with a private key, HS256 with a byte secret, or no signature (`None`)."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(body)}".encode("ascii")
    if key is None:
        signature = b""
    elif isinstance(key, bytes):
        signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


class TestIssuer:
    """Mints RFC 9068 access tokens signed with its own ES256 and RS256 keys; `jwks` verifies them."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self, issuer: str = "http://127.0.0.1:8000", audience: str = "tongban-api", *, rsa_bits: int = 2048
    ) -> None:
        self.issuer, self.audience = issuer, audience
        self.keys: dict[str, PrivateKey] = {
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits),
        }
        self.kids = {alg: f"test-{alg.lower()}-{new_id()[-8:]}" for alg in self.keys}

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWK Set of both keys."""
        return {"keys": [public_jwk(key, self.kids[alg], alg) for alg, key in self.keys.items()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid access-token claims (5 minutes, scope `openid`); overrides replace them, `None` removes one."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": self.audience,
            "client_id": "demo-app",
            "scope": "openid",
            "jti": new_id(),
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, alg: str = "ES256", *, kid: str | None = None, typ: str | None = "at+jwt", **claims: Any) -> str:
        """A signed access token; keyword arguments override claims (`None` removes a claim)."""
        header: dict[str, Any] = {"alg": alg, "kid": kid or self.kids[alg], "typ": typ}
        return sign_jws({k: v for k, v in header.items() if v is not None}, self.claims(**claims), self.keys[alg])

    def expired(self, **claims: Any) -> str:
        """A token that expired ten minutes ago."""
        now = int(time.time())
        return self.mint(**{"iat": now - 900, "exp": now - 600, **claims})

    def not_yet_valid(self, **claims: Any) -> str:
        """A token whose `nbf` lies ten minutes ahead."""
        return self.mint(**{"nbf": int(time.time()) + 600, **claims})

    def unsigned(self, **claims: Any) -> str:
        """An `alg: none` token (RFC 7519 §6) naming a real kid."""
        return sign_jws({"alg": "none", "kid": self.kids["ES256"], "typ": "at+jwt"}, self.claims(**claims), None)

    def hs256_with_public_key(self, alg: str = "RS256", **claims: Any) -> str:
        """The algorithm-confusion attack: HS256 keyed with the public key's PEM bytes, naming the real kid."""
        pem = (
            self.keys[alg]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return sign_jws({"alg": "HS256", "kid": self.kids[alg], "typ": "at+jwt"}, self.claims(**claims), pem)

    def unknown_kid(self, **claims: Any) -> str:
        """A token signed by a key the JWK Set does not publish, under a kid it does not know."""
        stranger = ec.generate_private_key(ec.SECP256R1())
        return sign_jws(
            {"alg": "ES256", "kid": "unknown-" + new_id(), "typ": "at+jwt"}, self.claims(**claims), stranger
        )

    def tampered(self, **claims: Any) -> str:
        """A validly signed token whose payload was then replaced (scope widened to `admin`)."""
        head, _, signature = self.mint(**claims).split(".")
        forged = b64url(orjson.dumps(self.claims(**{**claims, "scope": "openid admin"})))
        return f"{head}.{forged}.{signature}"


class JwksServer:
    """An issuer's JWK Set served over HTTP from a thread, for service processes that fetch it (`url`).

    A thread, not the event loop: the processes are often driven by blocking code (a CLI run, a benchmark).
    """

    def __init__(self, issuer: TestIssuer) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = orjson.dumps(issuer.jwks)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-jwks", daemon=True)
        self.thread.start()
        #: where the JWK Set is (the path is the auth service's)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth2/jwks"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
