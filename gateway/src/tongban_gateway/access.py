"""Access checks at the edge: RFC 9068 access tokens (keys from the auth service, revocations from NATS)
and the scopes each route requires per method (RFC 6750 challenges on refusal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from tongban_gateway.config import Settings
from tongban_gateway.metrics import GatewayMetrics
from tongban_gateway.routes import RouteEntry
from tongban_kit.bearer import BearerAuth
from tongban_kit.jwks import JwksSource
from tongban_kit.nats import Bus, connect
from tongban_kit.problems import Problem
from tongban_kit.revocations import RevocationList
from tongban_kit.tokens import TokenVerifier, VerifiedToken

log = logging.getLogger(__name__)

#: seconds between attempts to reach NATS while it is down at start-up
NATS_RETRY_SECONDS = 2.0


def verifier_for(settings: Settings, revocations: RevocationList) -> TokenVerifier:
    """The verifier of the auth service's access tokens: issuer and JWKS URL from the gateway's settings."""
    return TokenVerifier(
        JwksSource(settings.jwks_url),
        issuer=settings.token_issuer,
        audience=settings.oidc_audience,
        leeway=settings.oidc_leeway_seconds,
        revocations=revocations,
    )


class AccessControl:
    """Authenticates requests to non-public routes and checks the scopes the route asks of their method."""

    def __init__(self, settings: Settings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.revocations = RevocationList()
        self.verifier = verifier_for(settings, self.revocations)
        self.bearer = BearerAuth(self.verifier)
        self.bus: Bus | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._fetching: asyncio.Task[bool] | None = None
        #: called with the bus once NATS is connected (other parts of the gateway that follow the bus)
        self.on_connect: list[Callable[[Bus], Awaitable[None]]] = []

    async def start(self) -> None:
        """Fetch the signing keys and follow revocations (replayed first, so a restart forgets none in force).

        Waits at most `revocation_replay_wait_seconds` for NATS and the replay; keeps trying in the background.
        """
        await self.verifier.source.refresh()
        self._connecting = asyncio.create_task(self._follow_revocations(), name="gateway-revocations")
        done, _ = await asyncio.wait({self._connecting}, timeout=self.settings.revocation_replay_wait_seconds)
        if not done or self.bearer.feed is None or not self.bearer.feed.caught_up.is_set():
            log.warning("revocations not replayed yet; continuing in the background")

    async def _follow_revocations(self) -> None:
        s = self.settings
        while self.bus is None:
            try:
                self.bus = await connect(
                    s.nats_url, name="gateway", user=s.nats_user, password=s.nats_password, namespace=s.nats_namespace
                )
            except Exception as exc:  # NATS down: serve with the revocations known so far, keep trying
                log.warning("NATS unreachable (%s); revocations follow once it is back", type(exc).__name__)
                await asyncio.sleep(NATS_RETRY_SECONDS)
        for hook in self.on_connect:
            await hook(self.bus)
        await self.bearer.start(self.bus)

    async def close(self) -> None:
        """Stop following revocations, close NATS and the JWKS client."""
        if self._fetching is not None:
            self._fetching.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        await self.bearer.close()
        if self.bus is not None:
            await self.bus.close()
            self.bus = None

    async def check(self, request: Request, route: RouteEntry) -> VerifiedToken | None:
        """The verified token of a request to a protected route (None on public routes); raises Problem 400/401/403."""
        if route.public:
            return None
        try:
            principal = await self.bearer.authenticate(request)
        except Problem as exc:
            if self.metrics is not None:
                self.metrics.tokens_refused.labels(_reason(exc)).inc()
            raise
        needed = route.required_scopes(request.method)
        if needed and not principal.scopes.issuperset(needed):
            if self.metrics is not None:
                self.metrics.tokens_refused.labels("insufficient_scope").inc()
            raise self.bearer.insufficient_scope(needed, principal.scopes)
        return principal.token

    def unready(self) -> str | None:
        """Why access tokens cannot be verified (None: they can). Keys once fetched stay in use while the auth
        service is away, so only a gateway that never had any is unready; it asks for them again in the background
        (at most every 10 s) rather than keep the probe waiting."""
        source = self.verifier.source
        if source.kids:
            return None
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(source.refresh(), name="gateway-jwks")
        return "no signing keys to verify access tokens yet (JWKS unreachable)"

    def readiness(self) -> dict[str, str]:
        """'ok' or why not, for the signing keys and the NATS connection the revocations come through.

        Without NATS the gateway still serves ('degraded'): tokens revoked meanwhile are refused once it is back.
        """
        source = self.verifier.source
        jwks = "ok" if source.kids else "unavailable: no signing keys fetched yet"
        feed = self.bearer.feed
        if self.bus is None or not self.bus.nc.is_connected:
            nats = "degraded: not connected, revocations may be missed"
        elif feed is None or not feed.caught_up.is_set():
            nats = "degraded: revocations still replaying"
        else:
            nats = "ok"
        return {"jwks": jwks, "nats": nats}


def _reason(problem: Problem) -> str:
    challenge = (problem.headers or {}).get("WWW-Authenticate", "")
    if 'error="invalid_token"' in challenge:
        return "invalid_token"
    if 'error="invalid_request"' in challenge:
        return "invalid_request"
    return "missing"
