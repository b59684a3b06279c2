"""The authentication service's web pages: server-rendered HTML in zh-CN and English, CSRF-protected, no scripts.

Set-up (once, in the app factory)::

    pages = Pages(settings)          # templates, catalogues and the CSRF key (HKDF of settings.key_encryption_key)
    pages.install(app)               # mounts `router` (static files), renders CsrfError as a 403 page,
                                     # sets app.state.pages

Rendering (in a route)::

    return pages.render(request, "login.html", action=url, interaction=iid, error="login.error.invalid")
    return pages.render(request, "consent.html", redirect_origins=[redirect_uri], ...)   # widens CSP form-action

`render(request, name, *, status=200, redirect_origins=(), **ctx) -> HTMLResponse` checks the context against the
template's contract below (unknown or missing keys raise TypeError; optional keys default to None), fills `csrf`
when not given, negotiates the language and sets on every page: `Content-Security-Policy: default-src 'none';
style-src 'self'; img-src 'self' data:; form-action 'self' <origins of redirect_origins>; frame-ancestors 'none';
base-uri 'none'`, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `Cache-Control: no-store`,
`X-Content-Type-Options: nosniff`, `Content-Language`. `error_page(request, *, status, title_key, message_key,
detail=None, error_code=None)` renders `error.html`.

Language: `pages.locale(request) -> "zh-CN" | "en"` takes the first supported tag of `ui_locales` (query, then the
form given to `check_csrf`), then the `tongban_lang` cookie, then `Accept-Language` (q-values), else zh-CN. A page
reached with an explicit `ui_locales` remembers it in the `tongban_lang` cookie. Every page links to the other
language (same query, `ui_locales` replaced); every form posts `ui_locales` back. Messages live in
`i18n/zh-CN.json` and `i18n/en.json` (flat, same keys); templates look literal keys up with `t("key", name=value)`
and computed ones with `tk(expr)`, scopes with `t.scope(name)`. `pages.translator(request)` gives the same lookup.

CSRF: the browser secret is a random cookie `tongban_csrf` (`__Host-tongban_csrf` when cookies are Secure;
HttpOnly, SameSite=Lax, Path=/, session lifetime); the form token is base64url(HMAC-SHA256(key, secret)) with
the key derived by HKDF from `settings.key_encryption_key` under the label `tongban-auth/web/csrf-token/v1` (old
key-encryption keys are accepted too). Every POST form carries hidden `csrf` and `ui_locales` fields.

- `pages.csrf_token(request) -> str`: the token for this browser, minting the secret when the browser has none;
  `render` fills the `csrf` context key with it and sets the cookie (`pages.apply_cookies(request, response)`
  does that on any other response).
- `pages.check_csrf(request, form_or_token) -> bool`: the posted form (a mapping with `csrf`) or the `csrf`
  value itself; True when it belongs to the browser's cookie (constant-time), otherwise raises `CsrfError`
  (a `Problem`: 403, type `csrf-failed`), which `install` renders as the 403 error page.
- `await pages.checked_form(request, *, max_fields=50) -> FormData`: reads the form (no files) and checks it.
- `pages.browser_key(request) -> str`: a stable id of this browser derived from the same secret (not the token),
  for binding sealed interaction state to the browser.

Static files: `router` serves `GET|HEAD /oauth2/static/{path}`: `tongban.css` and its content-hashed name
`tongban.<sha256:16>.css` (the one templates link, `Cache-Control: public, max-age=31536000, immutable`; the plain
name revalidates), ETag, exact content types, a 404 problem for anything else (only packaged files are known, so
no traversal). Links honour the issuer's path.

Templates and their context (`?` marks optional keys; forms post to `action` and the listed fields):

- `login.html`: action, interaction, csrf, client_name?, login_hint?, error? (one of LOGIN_ERRORS), retry_after?
  (seconds). Posts `login`, `password`, `interaction`. Ids: `login`, `password`, `submit`.
- `mfa.html`: action, interaction, methods (subset of totp/recovery/sms/email), method (one of them), csrf,
  sent_to? (masked destination), error? (MFA_ERRORS), retry_after?. Posts `op=verify` with `method`, `code`
  (id `code`, button id `submit`); `op=send` with `method` (button id `send`, sms/email only); `op=switch` with
  the chosen `method`. Every form also posts `interaction`.
- `consent.html`: action, interaction, client_name, client_id, scopes (names), user_name, csrf. Posts
  `decision=approve|deny` (buttons `submit` and `deny`) with `interaction`.
- `logout.html`: action, state_blob (posted back as `state_blob`), csrf, client_name?. Posts `decision=logout|cancel`.
- `signed_out.html`: return_to? (an http(s) link back to the app; anything else is not shown).
- `error.html`: title_key, message_key (`error.<name>.title` / `.message` for a name in ERROR_PAGES), detail?
  (plain text), error_code?, request_id? (defaults to the current request id).
- `account.html`: user_name, sessions (dicts: sid, created_at, last_seen_at, ip, user_agent, current), consents
  (dicts: client_id, client_name, scopes, granted_at), totp_enabled, csrf, actions (dict of POST URLs:
  end_session ← `sid`, end_all, revoke_consent ← `client_id`, totp_setup, logout). Times are datetimes (naive
  ones are UTC) or ISO text, shown in Asia/Shanghai time.
- `totp_setup.html`: secret (base32), otpauth_uri, action, csrf, qr_svg? (SVG markup, e.g. from `qr_svg(uri)`;
  the only value rendered unescaped), error? (TOTP_ERRORS), recovery_codes? (shown instead of the form, once),
  back_url?. Posts `code` (id `code`).
"""

from __future__ import annotations

from tongban_auth.web.csrf import CsrfError
from tongban_auth.web.formatting import format_datetime, qr_svg
from tongban_auth.web.i18n import LOCALES, Locale
from tongban_auth.web.pages import ERROR_PAGES, LOGIN_ERRORS, MFA_ERRORS, TEMPLATES, TOTP_ERRORS, Pages
from tongban_auth.web.static import router

__all__ = [
    "ERROR_PAGES",
    "LOCALES",
    "LOGIN_ERRORS",
    "MFA_ERRORS",
    "TEMPLATES",
    "TOTP_ERRORS",
    "CsrfError",
    "Locale",
    "Pages",
    "format_datetime",
    "qr_svg",
    "router",
]
