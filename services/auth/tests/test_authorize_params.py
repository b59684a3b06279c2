"""Authorization request checks (RFC 6749 §4.1, RFC 7636, OIDC Core §3.1.2, RFC 9700)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tongban_auth.authorize import PageError, RedirectError, error_redirect, parse, with_query
from tongban_auth.config import Settings
from tongban_auth.models import Client, ClientType

SETTINGS = Settings(
    environment="test", key_encryption_key="k" * 32, cursor_secret="c" * 32, issuer="https://id.example"
)
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "https://app.example/callback"


def client(**over: object) -> Client:
    values: dict[str, object] = {
        "client_id": "app",
        "name": "App",
        "client_type": ClientType.public,
        "redirect_uris": [REDIRECT, "https://app.example/other"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile", "email", "offline_access", "user:read"],
        "access_token_lifetime": 600,
        "id_token_lifetime": 600,
        "refresh_token_lifetime": 3600,
        "token_endpoint_auth_method": "none",
        "require_pkce": True,
    }
    values.update(over)
    return Client(**values)


def params(**over: str | list[str] | None) -> dict[str, list[str]]:
    base: dict[str, str | list[str] | None] = {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "s1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    base.update(over)
    return {k: (v if isinstance(v, list) else [v]) for k, v in base.items() if v is not None}


def test_a_good_request_is_accepted() -> None:
    req = parse(params(nonce="n", prompt="login consent", max_age="300", login_hint="demo"), client(), SETTINGS)
    assert req.scopes == ["openid", "profile"]
    assert (req.state, req.nonce, req.max_age, req.login_hint) == ("s1", "n", 300, "demo")
    assert req.prompt == ["login", "consent"]
    assert req.code_challenge == CHALLENGE and req.is_oidc


@pytest.mark.parametrize(
    "redirect",
    [
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://APP.example/callback",
        "https://app.example.evil/callback",
        "https://app.example/callback#frag",
        "http://app.example/callback",
    ],
)
def test_redirect_uri_must_match_exactly_and_is_never_followed_otherwise(redirect: str) -> None:
    with pytest.raises(PageError):
        parse(params(redirect_uri=redirect), client(), SETTINGS)


def test_redirect_uri_may_be_left_out_only_with_one_registered_and_never_by_openid() -> None:
    with pytest.raises(PageError):
        parse(params(redirect_uri=None, scope="profile"), client(), SETTINGS)
    with pytest.raises(PageError, match="redirect_uri is required"):  # OIDC Core §3.1.2.1: always required
        parse(params(redirect_uri=None), client(redirect_uris=[REDIRECT]), SETTINGS)
    req = parse(params(redirect_uri=None, scope="profile"), client(redirect_uris=[REDIRECT]), SETTINGS)
    assert req.redirect_uri == REDIRECT


def test_repeated_parameters_are_refused() -> None:
    with pytest.raises(PageError):
        parse(params(redirect_uri=[REDIRECT, REDIRECT]), client(), SETTINGS)
    with pytest.raises(RedirectError) as err:
        parse(params(scope=["openid", "profile"]), client(), SETTINGS)
    assert err.value.error == "invalid_request"


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"scope": "openid nonsense"}, "invalid_scope"),
        ({"scope": None}, "invalid_scope"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "sometimes"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"max_age": "soon"}, "invalid_request"),
        ({"request": "eyJ..."}, "request_not_supported"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:x"}, "invalid_request_uri"),
    ],
)
def test_bad_requests_go_back_to_the_client_with_an_error(over: dict[str, str | None], error: str) -> None:
    with pytest.raises(RedirectError) as err:
        parse(params(**over), client(), SETTINGS)
    assert err.value.error == error
    location = error_redirect(err.value, SETTINGS.issuer)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT
    q = parse_qs(parts.query)
    assert q["error"] == [error] and q["state"] == ["s1"] and q["iss"] == [SETTINGS.issuer]


def test_confidential_clients_may_skip_pkce_only_when_not_required() -> None:
    conf = client(client_type=ClientType.confidential, require_pkce=False)
    req = parse(params(code_challenge=None, code_challenge_method=None), conf, SETTINGS)
    assert req.code_challenge is None
    with pytest.raises(RedirectError):
        parse(
            params(code_challenge=None, code_challenge_method=None),
            client(client_type=ClientType.confidential),
            SETTINGS,
        )


def test_clients_without_the_code_grant_are_refused() -> None:
    with pytest.raises(RedirectError) as err:
        parse(params(), client(grant_types=["client_credentials"]), SETTINGS)
    assert err.value.error == "unauthorized_client"


def test_with_query_keeps_the_registered_query() -> None:
    assert with_query("https://a.example/cb?x=1", {"code": "c", "state": None}) == "https://a.example/cb?x=1&code=c"
