"""The sign-in flow behind `/oauth2/authorize`: decide what the person must do next, and finish with a code.

`next_step` looks at the SSO session, the request's `prompt`, `max_age` and `acr_values`, and the remembered
consent, and answers with one of: show the login page, show the MFA page, show the consent page, or redirect
to the client with an authorization code (or, for `prompt=none`, with `login_required`,
`interaction_required` or `consent_required`). The web routes turn these answers into pages and redirects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import consents, grants
from tongban_auth.authorize import AuthRequest, RedirectError, wants_mfa, with_query
from tongban_auth.config import Settings
from tongban_auth.interaction import Interaction
from tongban_auth.models import Grant, LoginSession
from tongban_kit.ids import new_id
from tongban_kit.outbox import utcnow


@dataclass
class Show:
    """Show a page of the flow: `login`, `mfa` or `consent`."""

    page: str
    interaction: Interaction
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Done:
    """Send the browser to `location` (the client's redirect URI with a code or an error, or the account page)."""

    location: str


def session_satisfies(it: Interaction, session: LoginSession | None, settings: Settings) -> str | None:
    """What the session lacks for this request: `login`, `mfa`, or None when it will do."""
    req = it.request
    if session is None:
        return "login"
    if req is None:
        return None
    if "login" in req.prompt and not it.login_done:
        return "login"
    too_old = req.max_age is not None and utcnow() - session.auth_time > timedelta(seconds=req.max_age)
    if too_old and not it.login_done:
        return "login"
    if wants_mfa(req, settings) and session.acr != settings.acr_mfa:
        return "mfa"
    return None


#: the scopes of a request a person is entitled to (`TokenIssuer.person_scopes` without the entitlements)
Entitled = Callable[[str, list[str]], Awaitable[list[str]]]


async def next_step(
    s: AsyncSession,
    it: Interaction,
    session: LoginSession | None,
    settings: Settings,
    *,
    account_url: str,
    entitled: Entitled | None = None,
) -> Show | Done:
    """The next step of the interaction for the browser's current session (which may be None).

    Once the person is known, the request's scopes shrink to those they are entitled to (`entitled`): the consent
    page lists only those and the code carries only those.
    """
    req = it.request
    lacking = session_satisfies(it, session, settings)
    if lacking is not None:
        if req is not None and "none" in req.prompt:
            raise RedirectError(
                "login_required" if lacking == "login" else "interaction_required",
                "the person must sign in" if lacking == "login" else "a second factor is required",
                req,
            )
        return Show(lacking, it)
    assert session is not None
    if req is None:
        return Done(account_url)
    if entitled is not None:
        req = it.request = replace(req, scopes=await entitled(session.user_id, list(req.scopes)))
    already = await consents.approved(s, session.user_id, req.client_id)
    missing = consents.needs_consent(req.scopes, already)
    if missing or ("consent" in req.prompt and not it.consent_done):
        if "none" in req.prompt:
            raise RedirectError("consent_required", "the person has not approved these scopes", req)
        if not it.consent_done:
            return Show("consent", it)
    return Done(await issue_code(s, req, session, settings))


async def issue_code(s: AsyncSession, req: AuthRequest, session: LoginSession, settings: Settings) -> str:
    """Record the grant and a single-use code; the redirect URI carrying them (RFC 6749 §4.1.2, RFC 9207)."""
    now = utcnow()
    grant = Grant(
        id=new_id(),
        client_id=req.client_id,
        user_id=session.user_id,
        session_id=session.sid,
        scopes=list(req.scopes),
        auth_time=session.auth_time,
        amr=list(session.amr),
        acr=session.acr,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.grant_max_seconds),
    )
    s.add(grant)
    code = await grants.create_authorization_code(
        s,
        grant=grant,
        redirect_uri=req.redirect_uri,
        scopes=list(req.scopes),
        code_challenge=req.code_challenge,
        code_challenge_method=req.code_challenge_method,
        nonce=req.nonce,
        settings=settings,
    )
    await s.commit()
    return with_query(req.redirect_uri, {"code": code, "state": req.state, "iss": settings.issuer})
