"""Bearer-token authentication for FastAPI routes (RFC 6750): a verified Principal or a problem answer."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import Request, Security
from fastapi.security import HTTPBearer

from tongban_kit.jwks import JwksSource
from tongban_kit.nats import Bus
from tongban_kit.problems import Problem
from tongban_kit.revocations import RevocationFeed, RevocationList
from tongban_kit.settings import ServiceSettings
from tongban_kit.tokens import InvalidToken, TokenVerifier, VerifiedToken

log = logging.getLogger(__name__)

#: the b64token syntax of RFC 6750 §2.1
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: characters RFC 6750 §3 allows in error_description and scope values
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
#: documents the scheme in OpenAPI; the header itself is parsed below, so the scheme never answers on its own
_OPENAPI_SCHEME = HTTPBearer(auto_error=False, description="An access token (RFC 9068 JWT) from the auth service")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a verified access token names."""

    sub: str
    client_id: str
    scopes: frozenset[str]
    act: dict[str, Any] | None
    admin_units: tuple[str, ...]
    grant_id: str | None
    token: VerifiedToken

    @classmethod
    def of(cls, token: VerifiedToken) -> Principal:
        """The principal of a verified token."""
        return cls(token.sub, token.client_id, token.scopes, token.act, token.admin_units, token.grant_id, token)

    @property
    def actor(self) -> str | None:
        """The client acting for the subject (RFC 8693 `act.sub`), if any."""
        sub = self.act.get("sub") if self.act else None
        return sub if isinstance(sub, str) else None

    def has_scopes(self, *needed: str) -> bool:
        """True when the token grants every scope in `needed`."""
        return self.scopes.issuperset(needed)


def _quoted(value: str) -> str:
    return _UNSAFE.sub("?", value)


class BearerAuth:
    """Authenticates requests by their `Authorization: Bearer` header with a TokenVerifier."""

    def __init__(self, verifier: TokenVerifier, *, realm: str = "tongban") -> None:
        self.verifier, self.realm = verifier, realm
        self.feed: RevocationFeed | None = None

    def challenge(self, error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
        """A `WWW-Authenticate` value (RFC 6750 §3); no error attribute when the request had no credentials."""
        parts = [f'Bearer realm="{_quoted(self.realm)}"']
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quoted(description)}"')
        if scope:
            parts.append(f'scope="{_quoted(scope)}"')
        return ", ".join(parts)

    def _token(self, request: Request) -> str:
        values = request.headers.getlist("authorization")
        if "access_token" in request.query_params:
            detail = "send the access token in the Authorization header, not in the query string"
            if values:
                detail = "the request carries an access token in more than one place"
            raise Problem(
                400,
                detail,
                type="invalid-request",
                headers={"WWW-Authenticate": self.challenge("invalid_request", detail)},
            )
        if len(values) > 1:
            detail = "the request has more than one Authorization header"
            raise Problem(
                400,
                detail,
                type="invalid-request",
                headers={"WWW-Authenticate": self.challenge("invalid_request", detail)},
            )
        scheme, _, credentials = (values[0] if values else "").partition(" ")
        if scheme.lower() != "bearer":
            raise Problem(
                401,
                "this resource needs an access token: Authorization: Bearer <token>",
                type="authentication-required",
                headers={"WWW-Authenticate": self.challenge()},
            )
        token = credentials.strip(" ")
        if not _B64TOKEN.fullmatch(token):
            raise self._invalid("the Authorization header does not hold a bearer token")
        return token

    def _invalid(self, description: str) -> Problem:
        return Problem(
            401,
            f"the access token is not valid: {description}",
            type="invalid-token",
            headers={"WWW-Authenticate": self.challenge("invalid_token", description)},
        )

    async def authenticate(self, request: Request) -> Principal:
        """The principal of the request's bearer token; raises Problem 400/401."""
        token = self._token(request)
        try:
            verified = await self.verifier.verify(token)
        except InvalidToken as exc:
            log.info("rejected access token: %s", exc.reason, extra={"reason": exc.reason})
            raise self._invalid(exc.description) from None
        principal = Principal.of(verified)
        request.state.principal = principal
        return principal

    def require(self, *scopes: str) -> Callable[..., Awaitable[Principal]]:
        """A FastAPI dependency: the caller's Principal, holding every scope in `scopes` (else 403)."""
        needed = frozenset(scopes)

        async def dependency(request: Request, _: Any = Security(_OPENAPI_SCHEME, scopes=list(scopes))) -> Principal:
            principal = await self.authenticate(request)
            if not principal.scopes.issuperset(needed):
                raise self.insufficient_scope(needed, principal.scopes)
            return principal

        return dependency

    def insufficient_scope(self, needed: frozenset[str], held: frozenset[str]) -> Problem:
        """The 403 of a token without every scope in `needed` (RFC 6750 §3.1 `insufficient_scope` challenge)."""
        text = " ".join(sorted(needed))
        missing = " ".join(sorted(needed - held))
        return Problem(
            403,
            f"the access token lacks the scope(s): {missing}",
            type="insufficient-scope",
            headers={
                "WWW-Authenticate": self.challenge(
                    "insufficient_scope", f"this request needs the scope(s): {text}", text
                )
            },
            required_scopes=sorted(needed),
        )

    async def start(self, bus: Bus | None) -> None:
        """Start following revocations on the bus (when the verifier keeps a revocation list)."""
        revocations = self.verifier.revocations
        if bus is None or revocations is None or self.feed is not None:
            return
        self.feed = RevocationFeed(bus, revocations)
        if not await self.feed.start(wait=5.0):
            log.warning("revocation feed has not caught up yet; continuing in the background")

    async def close(self) -> None:
        """Stop the revocation feed and close the JWKS client."""
        if self.feed is not None:
            await self.feed.stop()
            self.feed = None
        await self.verifier.source.close()


def verifier_from_settings(
    settings: ServiceSettings, *, revocations: RevocationList | None = None
) -> TokenVerifier | None:
    """A verifier for the configured issuer, or None while `oidc_issuer` is empty (Bearer tokens not configured)."""
    issuer = settings.oidc_issuer
    if not issuer:
        return None
    jwks_url = settings.oidc_jwks_url or issuer.rstrip("/") + "/oauth2/jwks"
    return TokenVerifier(
        JwksSource(jwks_url),
        issuer=issuer,
        audience=settings.oidc_audience,
        leeway=settings.oidc_leeway_seconds,
        revocations=revocations if revocations is not None else RevocationList(),
    )


def bearer_from_settings(settings: ServiceSettings) -> BearerAuth | None:
    """Bearer authentication for the configured issuer (with a revocation list), or None when not configured."""
    verifier = verifier_from_settings(settings)
    return BearerAuth(verifier) if verifier is not None else None


@lru_cache(maxsize=256)
def _scope_check(bearer: BearerAuth, scopes: tuple[str, ...]) -> Callable[..., Awaitable[Principal]]:
    return bearer.require(*scopes)


def app_requires(*scopes: str, scheme: HTTPBearer | None = None) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency for a service whose BearerAuth is `app.state.bearer`: the request's Principal, holding
    every scope in `scopes` (401/403 otherwise).

    `app.state.bearer` is None when the service has no token issuer configured: then no token can be verified and
    every protected route answers 503 `authentication-not-configured`; the fault lies with the deployment, not the
    caller. `scheme` documents the scheme in OpenAPI (a service may describe its scopes there).
    """
    needed = tuple(sorted(scopes))

    async def dependency(
        request: Request, _: Any = Security(scheme or _OPENAPI_SCHEME, scopes=list(needed))
    ) -> Principal:
        bearer: BearerAuth | None = getattr(request.app.state, "bearer", None)
        if bearer is None:
            name = request.app.state.runtime.settings.service_name.upper()
            raise Problem(
                503,
                f"this service is not configured to accept access tokens (set TONGBAN_{name}_OIDC_ISSUER)",
                type="authentication-not-configured",
            )
        return await _scope_check(bearer, needed)(request)

    return dependency
