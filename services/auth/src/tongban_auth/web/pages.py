"""`Pages`: renders the sign-in pages with the security headers, the negotiated language and the CSRF cookie."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.datastructures import FormData

from tongban_auth.config import Settings
from tongban_auth.web import csrf as csrf_mod
from tongban_auth.web import i18n
from tongban_auth.web.csrf import CsrfError, CsrfSigner
from tongban_auth.web.formatting import format_datetime, group, iso_datetime, safe_href
from tongban_auth.web.static import router, static_path
from tongban_kit.context import request_id_var

log = logging.getLogger(__name__)

MFA_METHODS = ("totp", "recovery", "sms", "email")
#: message keys the callers may pass as `error` (login, MFA, TOTP set-up) and the error pages' `<name>`s, whose
#: `error.<name>.title` / `error.<name>.message` keys are the `title_key` / `message_key` of `error.html`
LOGIN_ERRORS = tuple(f"login.error.{e}" for e in ("invalid", "required", "throttled", "disabled", "expired"))
MFA_ERRORS = tuple(f"mfa.error.{e}" for e in ("invalid", "required", "expired", "throttled", "send_failed"))
TOTP_ERRORS = tuple(f"totp.error.{e}" for e in ("invalid", "required", "expired"))
ERROR_PAGES = (
    *("csrf", "invalid_request", "invalid_client", "invalid_redirect_uri", "interaction_expired", "access_denied"),
    *("not_found", "server_error", "temporarily_unavailable"),
)
ACCOUNT_ACTIONS = frozenset({"end_session", "end_all", "revoke_consent", "totp_setup", "logout"})
#: template → (context keys the caller must give, optional keys with their defaults); `csrf` is filled when absent
TEMPLATES: dict[str, tuple[frozenset[str], dict[str, Any]]] = {
    "login.html": (
        frozenset({"action", "interaction", "csrf"}),
        {"client_name": None, "login_hint": None, "error": None, "retry_after": None},
    ),
    "mfa.html": (
        frozenset({"action", "interaction", "methods", "method", "csrf"}),
        {"sent_to": None, "error": None, "retry_after": None, "step_up": False},
    ),
    "consent.html": (
        frozenset({"action", "interaction", "client_name", "client_id", "scopes", "user_name", "csrf"}),
        {},
    ),
    "logout.html": (frozenset({"action", "state_blob", "csrf"}), {"client_name": None}),
    "signed_out.html": (frozenset(), {"return_to": None}),
    "error.html": (
        frozenset({"title_key", "message_key"}),
        {"detail": None, "error_code": None, "request_id": None},
    ),
    "account.html": (frozenset({"user_name", "sessions", "consents", "totp_enabled", "csrf", "actions"}), {}),
    "totp_setup.html": (
        frozenset({"action", "csrf"}),
        {
            "secret": "",
            "otpauth_uri": "otpauth://totp/",
            "qr_svg": None,
            "error": None,
            "recovery_codes": None,
            "back_url": None,
            "replace": False,
        },
    ),
}
_NETLOC = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)
_NEW_CSRF = "tongban_csrf_new"
_FORM = "tongban_form"


def origin_of(url: str) -> str | None:
    """The `scheme://host[:port]` origin of an http(s) URL, or None when it is not one that is safe to put in CSP."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not _NETLOC.fullmatch(parts.netloc):
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def content_security_policy(redirect_origins: Iterable[str] = ()) -> str:
    """The pages' CSP; `form-action` also allows the origins a form's redirect may lead to."""
    origins: list[str] = []
    for value in redirect_origins:
        origin = origin_of(value)
        if origin is None:
            log.warning("redirect origin %r left out of the content security policy", value)
        elif origin not in origins:
            origins.append(origin)
    form_action = " ".join(["'self'", *origins])
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def security_headers(redirect_origins: Iterable[str] = ()) -> dict[str, str]:
    """Headers on every page: CSP, no framing, no referrer, no caching, no sniffing."""
    return {
        "Content-Security-Policy": content_security_policy(redirect_origins),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


class Pages:
    """The HTML pages of the OpenID provider: templates, catalogues, CSRF tokens (see the package docstring)."""

    def __init__(self, settings: Settings) -> None:
        """Load templates and catalogues from the package; derive the CSRF key from the key-encryption key."""
        self.settings = settings
        self.secure = settings.cookie_secure
        self.csrf_cookie = csrf_mod.cookie_name(self.secure)
        self._signer = CsrfSigner(settings.key_encryption_key, settings.old_key_encryption_keys)
        self._base_path = urlsplit(settings.issuer).path.rstrip("/")
        self.translators = {loc: i18n.Translator(loc, i18n.load_catalogue(loc)) for loc in i18n.LOCALES}
        self.env = Environment(
            loader=PackageLoader("tongban_auth.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters.update(group=group, safe_href=safe_href, iso=iso_datetime)
        self.env.globals["static_url"] = partial(static_path, base_path=self._base_path)

    # -- language ---------------------------------------------------------------------------------------------
    def _negotiate(self, request: Request) -> tuple[i18n.Locale, bool]:
        ui_locales = request.query_params.get(i18n.UI_LOCALES)
        form = getattr(request.state, _FORM, None)
        if not i18n.from_ui_locales(ui_locales) and form is not None:
            value = form.get(i18n.UI_LOCALES)
            ui_locales = value if isinstance(value, str) else None
        return i18n.negotiate(ui_locales, request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language"))

    def locale(self, request: Request) -> i18n.Locale:
        """The page language: `ui_locales` (query, then a form given to `check_csrf`), cookie, Accept-Language."""
        return self._negotiate(request)[0]

    def translator(self, request: Request) -> i18n.Translator:
        """The message lookup of the request's language, for text outside templates."""
        return self.translators[self.locale(request)]

    # -- CSRF -------------------------------------------------------------------------------------------------
    def csrf_token(self, request: Request) -> str:
        """The form token of this browser; mints the browser secret when missing (`render` then sets the cookie)."""
        value = getattr(request.state, _NEW_CSRF, None)
        if value is None:
            value = request.cookies.get(self.csrf_cookie)
            if not csrf_mod.valid_cookie_value(value):
                value = csrf_mod.new_cookie_value()
                setattr(request.state, _NEW_CSRF, value)
        assert value is not None
        return self._signer.token(value)

    def browser_key(self, request: Request) -> str:
        """A stable id of this browser derived from its CSRF secret (minted if missing), to bind sealed state to."""
        self.csrf_token(request)
        value = getattr(request.state, _NEW_CSRF, None) or request.cookies.get(self.csrf_cookie)
        assert value is not None
        return self._signer.browser_key(value)

    def check_csrf(self, request: Request, form: Mapping[str, Any] | str | None) -> bool:
        """Return True when the form (or its `csrf` value) belongs to this browser's cookie, else raise `CsrfError`."""
        if not isinstance(form, str) and form is not None:
            setattr(request.state, _FORM, form)
        self._signer.check(request.cookies.get(self.csrf_cookie), csrf_mod.form_token(form))
        return True

    async def checked_form(self, request: Request, *, max_fields: int = 50) -> FormData:
        """Read a posted form (no files, at most `max_fields` fields) and check its CSRF token."""
        form = await request.form(max_files=0, max_fields=max_fields)
        self.check_csrf(request, form)
        return form

    def apply_cookies(self, request: Request, response: Response, lang: str | None = None) -> None:
        """Set the CSRF cookie minted for this request (and a remembered language) on a response."""
        value = getattr(request.state, _NEW_CSRF, None)
        if value is not None:
            response.set_cookie(self.csrf_cookie, value, path="/", secure=self.secure, httponly=True, samesite="lax")
        if lang is not None and request.cookies.get(i18n.LANG_COOKIE) != lang:
            response.set_cookie(
                i18n.LANG_COOKIE, lang, max_age=365 * 86400, path="/", secure=self.secure, httponly=True, samesite="lax"
            )

    # -- rendering --------------------------------------------------------------------------------------------
    def _context(self, name: str, request: Request, ctx: dict[str, Any]) -> dict[str, Any]:
        try:
            required, optional = TEMPLATES[name]
        except KeyError:
            raise KeyError(f"no page template {name!r}") from None
        unknown = set(ctx) - required - set(optional)
        if unknown:
            raise TypeError(f"{name} takes no {', '.join(sorted(unknown))}")
        if "csrf" in required and ctx.get("csrf") is None:
            ctx["csrf"] = self.csrf_token(request)
        missing = required - set(ctx)
        if missing:
            raise TypeError(f"{name} needs {', '.join(sorted(missing))}")
        values = {**optional, **ctx}
        if name == "mfa.html":
            methods = list(values["methods"])
            if not methods or not set(methods) <= set(MFA_METHODS) or values["method"] not in methods:
                raise ValueError(f"mfa.html: methods must be a subset of {MFA_METHODS} holding the chosen method")
        if name == "account.html" and set(values["actions"]) != ACCOUNT_ACTIONS:
            raise ValueError(f"account.html: actions must name exactly {sorted(ACCOUNT_ACTIONS)}")
        if name == "error.html" and values["request_id"] is None:
            values["request_id"] = request_id_var.get()
        if name == "totp_setup.html" and not str(values["otpauth_uri"]).startswith("otpauth://"):
            raise ValueError("totp_setup.html: otpauth_uri must be an otpauth:// URI")
        if name == "totp_setup.html" and values["qr_svg"] is not None:
            markup = str(values["qr_svg"]).strip()
            if not markup.startswith("<svg"):
                raise ValueError("totp_setup.html: qr_svg must be SVG markup")
            values["qr_svg"] = Markup(markup)  # the one value trusted as markup: made by the service, never by users
        return values

    def render(
        self, request: Request, name: str, *, status: int = 200, redirect_origins: Iterable[str] = (), **ctx: Any
    ) -> HTMLResponse:
        """Render a page with its context; `redirect_origins` (origins or URLs) widen the CSP `form-action`."""
        values = self._context(name, request, dict(ctx))
        locale, explicit = self._negotiate(request)
        t = self.translators[locale]
        other: i18n.Locale = "en" if locale == "zh-CN" else "zh-CN"
        query = [(k, v) for k, v in request.query_params.multi_items() if k != i18n.UI_LOCALES]
        values.update(
            lang=locale,
            t=t,
            tk=t,
            retry_text=t.retry_after,
            dt=partial(format_datetime, locale=locale),
            switch_lang=other,
            switch_href="?" + urlencode([*query, (i18n.UI_LOCALES, other)]),
            page=name.removesuffix(".html"),
        )
        html = self.env.get_template(name).render(values)
        response = HTMLResponse(html, status_code=status, headers=security_headers(redirect_origins))
        response.headers["Content-Language"] = locale
        self.apply_cookies(request, response, locale if explicit else None)
        return response

    def error_page(
        self,
        request: Request,
        *,
        status: int,
        title_key: str,
        message_key: str,
        detail: str | None = None,
        error_code: str | None = None,
    ) -> HTMLResponse:
        """An error page (for OAuth errors that must not redirect, CSRF failures, expired interactions)."""
        return self.render(
            request,
            "error.html",
            status=status,
            title_key=title_key,
            message_key=message_key,
            detail=detail,
            error_code=error_code,
        )

    async def csrf_failed(self, request: Request, exc: Exception) -> Response:
        """Exception handler: a failed CSRF check becomes a 403 error page in the page's language."""
        assert isinstance(exc, CsrfError)
        return self.error_page(
            request, status=403, title_key="error.csrf.title", message_key=exc.message_key, error_code="csrf_failed"
        )

    def install(self, app: FastAPI) -> None:
        """Mount the static route, render `CsrfError` as a 403 page and keep this object as `app.state.pages`."""
        app.include_router(router)
        app.add_exception_handler(CsrfError, self.csrf_failed)
        app.state.pages = self
