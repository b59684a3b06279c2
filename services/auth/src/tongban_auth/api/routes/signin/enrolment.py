"""Setting up an authenticator app (TOTP) from the account page; recovery codes are shown once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tongban_auth import credentials, factors
from tongban_auth.api.deps import SettingsDep
from tongban_auth.api.docs import PAGE_ANSWERS
from tongban_auth.api.routes.signin.account import account_post
from tongban_auth.api.routes.signin.common import (
    Flow,
    client_ip,
    issuer_path,
    one_value,
    see_other,
)
from tongban_auth.web import qr_svg
from tongban_kit.app import SessionDep

router = APIRouter(tags=["oidc"], include_in_schema=True)


@router.post(
    "/oauth2/account/totp",
    summary="Set up an authenticator app (TOTP)",
    response_model=None,
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
)
async def totp_setup(request: Request, s: SessionDep, settings: SettingsDep) -> Response:
    """Without a code: start enrolment and show the secret; with a code: confirm it and show recovery codes once."""
    got = await account_post(request, s, settings)
    if isinstance(got, Response):
        return got
    f, form, current = got
    b = factors.bound(request.app.state)
    code = (one_value(form, "code") or "").strip()
    account_url = issuer_path(settings, "/oauth2/account")
    action = issuer_path(settings, "/oauth2/account/totp")
    if not code:
        if await credentials.totp_enabled(s, current.user_id):
            # replacing it takes a code from the current app (or a recovery code): proof of the factor, not only
            # of the session; the old one goes once that code checks out
            proof = (one_value(form, "current_code") or "").strip()
            if not proof or len(proof) > 64:
                error = "totp.error.required" if "current_code" in form else None
                return _replace_page(f, action, account_url, error=error, status=400 if error else 200)
            checked = await credentials.disable_totp(
                b.rt, settings, user_id=current.user_id, code=proof, ip=client_ip(request)
            )
            if not checked.ok:
                status = 429 if checked.retry_after else 401
                return _replace_page(f, action, account_url, error=checked.error_key, status=status)
        label = await factors.display_name(b, current.user_id) or current.user_id
        enrol = await credentials.begin_totp_enrolment(b.rt, settings, user_id=current.user_id, label=label)
        return _totp_page(f, enrol.secret, enrol.otpauth_uri, action, account_url)
    done = await credentials.confirm_totp_enrolment(
        b.rt, settings, user_id=current.user_id, code=code, ip=client_ip(request)
    )
    if done.ok:
        return f.finish(
            f.pages.render(
                request,
                "totp_setup.html",
                secret="",
                otpauth_uri="otpauth://totp/",
                action=action,
                recovery_codes=done.recovery_codes,
                back_url=account_url,
            )
        )
    pending = await credentials.pending_totp(b.rt, settings, user_id=current.user_id)
    if pending is None:
        return see_other(account_url)
    return _totp_page(f, pending.secret, pending.otpauth_uri, action, account_url, error=done.error_key, status=400)


def _replace_page(f: Flow, action: str, back: str, *, error: str | None = None, status: int = 200) -> Response:
    return f.finish(
        f.pages.render(
            f.request, "totp_setup.html", status=status, replace=True, action=action, error=error, back_url=back
        )
    )


def _totp_page(
    f: Flow, secret: str, uri: str, action: str, back: str, *, error: str | None = None, status: int = 200
) -> Response:
    return f.finish(
        f.pages.render(
            f.request,
            "totp_setup.html",
            status=status,
            secret=secret,
            otpauth_uri=uri,
            qr_svg=qr_svg(uri),
            action=action,
            error=error,
            back_url=back,
        )
    )
