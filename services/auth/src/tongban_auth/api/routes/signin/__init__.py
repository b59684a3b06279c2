"""The browser side of the OpenID provider: `/oauth2/authorize`, pushed requests, the login, MFA and consent
pages, RP-initiated logout and the account page (sessions, consents, TOTP enrolment).

Every form is CSRF-protected; the state of a sign-in travels sealed in the form (`tongban_auth.interaction`).
Errors that cannot go back to a client safely are shown on an error page; the rest go back to the client's
redirect URI (RFC 6749 §4.1.2.1, RFC 9207).

`router` carries every route, in the order of the flow: authorize and PAR, the sign-in forms, the account page,
logout, TOTP enrolment.
"""

from fastapi import APIRouter

from tongban_auth.api.routes.signin import account, authorization, enrolment, forms, signout

router = APIRouter()
for _module in (authorization, forms, account, signout, enrolment):
    router.include_router(_module.router)

__all__ = ["router"]
