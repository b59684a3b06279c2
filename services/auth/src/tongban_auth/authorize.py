"""Authorization requests: parsing and checking the parameters of `/oauth2/authorize` and pushed requests.

The checks follow OAuth 2.0 (RFC 6749 §4.1), PKCE (RFC 7636), OpenID Connect Core §3.1.2, the OAuth 2.0
Security BCP (RFC 9700) and RFC 9207 (`iss` in responses):

- an unknown client or a redirect URI that is not registered exactly is never redirected to: the user sees an
  error page (RFC 6749 §4.1.2.1);
- every other error goes back to the client's redirect URI with `error`, `error_description`, `state` and `iss`;
- PKCE with S256 is required for public clients and for clients registered with `require_pkce`; `plain` is
  refused;
- only `response_type=code` with `response_mode=query`; request objects (`request`) are not supported, pushed
  requests (`request_uri` from `/oauth2/par`) are.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from tongban_auth.config import Settings
from tongban_auth.models import Client, ClientStatus, ClientType
from tongban_auth.schemas import SCOPES, GrantType

PAR_URN_PREFIX = "urn:ietf:params:oauth:request_uri:"
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256 digest, no padding
MAX_PARAM = 2000
#: parameters an authorization request may carry (others are ignored, as RFC 6749 §3.1 asks)
KNOWN = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "acr_values",
    "login_hint",
    "ui_locales",
    "response_mode",
    "request",
    "request_uri",
)


class PageError(Exception):
    """An error shown to the user on our own page: the client or redirect URI cannot be trusted."""

    def __init__(self, error: str, description: str) -> None:
        """Name the OAuth error code and a description for the page."""
        super().__init__(description)
        self.error = error
        self.description = description


class RedirectError(Exception):
    """An error returned to the client at its (checked) redirect URI."""

    def __init__(self, error: str, description: str, request: AuthRequest) -> None:
        """Name the OAuth error code, a description, and the request whose redirect URI and state to use."""
        super().__init__(description)
        self.error = error
        self.description = description
        self.request = request


@dataclass
class AuthRequest:
    """A checked authorization request; kept (sealed) across the login, MFA and consent pages."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    acr_values: list[str] = field(default_factory=list)
    login_hint: str | None = None
    ui_locales: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthRequest:
        """Back from `to_dict`."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def is_oidc(self) -> bool:
        """Whether this is an OpenID Connect request (scope `openid`)."""
        return "openid" in self.scopes


def with_query(uri: str, params: dict[str, str | None]) -> str:
    """`uri` with `params` (None values left out) added to its query."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query and extra else parts.query or extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def error_redirect(err: RedirectError, issuer: str) -> str:
    """The client redirect URI carrying an error response (RFC 6749 §4.1.2.1, RFC 9207)."""
    return with_query(
        err.request.redirect_uri,
        {"error": err.error, "error_description": err.description, "state": err.request.state, "iss": issuer},
    )


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise PageError("invalid_request", f"parameter {name} given more than once")
    if not values or values[0] == "":
        return None
    if len(values[0]) > MAX_PARAM:
        raise PageError("invalid_request", f"parameter {name} is too long")
    return values[0]


def redirect_target(client: Client, given: str | None, *, oidc: bool = False) -> str:
    """The redirect URI to use: exactly one of the registered ones (RFC 9700 §4.1.1).

    It may be left out only by a plain OAuth request of a client with one registered URI: OpenID Connect
    requires it in every request (OIDC Core §3.1.2.1), and with several registered the choice is the client's.
    """
    if given is None:
        if len(client.redirect_uris) == 1 and not oidc:
            return client.redirect_uris[0]
        raise PageError("invalid_request", "redirect_uri is required")
    if given not in client.redirect_uris:
        raise PageError("invalid_request", "redirect_uri is not registered for this client")
    return given


def check_client(client: Client | None, client_id: str | None) -> Client:
    """The client of an authorization request, or an error page."""
    if not client_id:
        raise PageError("invalid_request", "client_id is required")
    if client is None:
        raise PageError("invalid_client", "unknown client")
    if client.status != ClientStatus.active:
        raise PageError("unauthorized_client", "this application is disabled")
    return client


def parse(params: dict[str, list[str]], client: Client, settings: Settings, *, pushed: bool = False) -> AuthRequest:
    """Check an authorization request for `client` (already looked up from `client_id`).

    `params` maps each parameter to all its values (repeated parameters are an error). Raises `PageError` when
    the redirect URI cannot be trusted, `RedirectError` for everything after that.
    """
    scope_values = params.get("scope") or [""]
    redirect_uri = redirect_target(client, _single(params, "redirect_uri"), oidc="openid" in scope_values[0].split())
    try:
        state = _single(params, "state")
    except PageError as exc:  # the redirect URI is trusted: answer there, without a state (which one would it be?)
        raise RedirectError(exc.error, exc.description, AuthRequest(client.client_id, redirect_uri, [])) from None
    req = AuthRequest(client_id=client.client_id, redirect_uri=redirect_uri, scopes=[], state=state)

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(error, description, req)

    try:
        values = {name: _single(params, name) for name in KNOWN}
    except PageError as exc:
        raise fail(exc.error, exc.description) from None
    if values["request"] is not None:
        raise fail("request_not_supported", "request objects are not supported; use pushed authorization requests")
    if values["request_uri"] is not None and not pushed:
        raise fail("invalid_request_uri", "request_uri is not a valid pushed authorization request")
    response_type = values["response_type"]
    if response_type is None:
        raise fail("invalid_request", "response_type is required")
    if response_type != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if values["response_mode"] not in (None, "query"):
        raise fail("invalid_request", "only response_mode=query is supported")
    if GrantType.authorization_code.value not in client.grant_types:
        raise fail("unauthorized_client", "this client may not use the authorization code flow")

    scope = values["scope"] or ""
    scopes = list(dict.fromkeys(scope.split()))
    if not scopes:
        raise fail("invalid_scope", "scope is required")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise fail("invalid_scope", f"unknown scope: {' '.join(unknown)}")
    not_allowed = [s for s in scopes if s not in client.scopes]
    if not_allowed:
        raise fail("invalid_scope", f"scope not allowed for this client: {' '.join(not_allowed)}")
    req.scopes = scopes

    challenge, method = values["code_challenge"], values["code_challenge_method"]
    if challenge is None:
        if method is not None:
            raise fail("invalid_request", "code_challenge_method without code_challenge")
        if client.client_type == ClientType.public or client.require_pkce:
            raise fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
    else:
        if method != "S256":
            raise fail("invalid_request", "code_challenge_method must be S256")
        if not CHALLENGE.match(challenge):
            raise fail("invalid_request", "code_challenge must be the base64url SHA-256 of the code verifier")
    req.code_challenge, req.code_challenge_method = challenge, method

    prompt = (values["prompt"] or "").split()
    if any(p not in PROMPTS for p in prompt):
        raise fail("invalid_request", f"prompt values are {', '.join(sorted(PROMPTS))}")
    if "none" in prompt and len(prompt) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined with other values")
    req.prompt = list(dict.fromkeys(prompt))

    if values["max_age"] is not None:
        if not values["max_age"].isdigit() or len(values["max_age"]) > 9:
            raise fail("invalid_request", "max_age must be a non-negative integer")
        req.max_age = int(values["max_age"])
    acr_values = (values["acr_values"] or "").split()
    req.acr_values = list(dict.fromkeys(acr_values))
    if values["nonce"] is not None:
        req.nonce = values["nonce"]
    req.login_hint = values["login_hint"]
    req.ui_locales = values["ui_locales"]
    return req


def wants_mfa(req: AuthRequest, settings: Settings) -> bool:
    """Whether the client asked for multi-factor authentication (`acr_values`)."""
    return settings.acr_mfa in req.acr_values
