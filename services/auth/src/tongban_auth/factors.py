"""What the sign-in pages need from credentials and the user directory, bound to the running app.

A thin layer over `credentials`: it supplies the runtime, its RPC client and the one-time-code deliverer, and
gives the pages one `verify` for every second factor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tongban_auth import credentials
from tongban_auth.config import Settings
from tongban_auth.credentials import CheckResult, LoginResult, OtpSent
from tongban_kit.app import Runtime
from tongban_kit.rpc import RpcClient, RpcError
from tongban_user.contract import RPC_GET_USERS, GetUsersRequest, UsersReply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bound:
    """The runtime resources the pages use."""

    rt: Runtime
    settings: Settings
    deliverer: Any

    @property
    def rpc(self) -> RpcClient:
        """The RPC client (NATS connects at start-up)."""
        assert self.rt.rpc is not None, "the service is not started"
        return self.rt.rpc


def bound(app_state: Any) -> Bound:
    """The resources of a running app (`request.app.state`)."""
    rt: Runtime = app_state.runtime
    settings: Settings = rt.settings  # type: ignore[assignment]
    return Bound(rt, settings, getattr(app_state, "otp_deliverer", None))


async def authenticate_password(
    b: Bound, *, login: str, password: str, ip: str | None, client_id: str | None, device_cookie: str | None = None
) -> LoginResult:
    """Check a login name and password (throttled; failures are recorded and published)."""
    return await credentials.authenticate_password(
        b.rt,
        b.rpc,
        b.settings,
        login=login,
        password=password,
        ip=ip,
        client_id=client_id,
        device_cookie=device_cookie,
        otp_channels=b.deliverer is not None,
    )


async def methods(b: Bound, user_id: str) -> list[str]:
    """Second factors the person can use now: TOTP and recovery codes if enrolled, SMS/email if reachable."""
    found = await credentials.available_methods(b.rt, b.rpc, user_id=user_id)
    if b.deliverer is None:  # no channel for one-time codes in this deployment
        found = [m for m in found if m not in ("sms", "email")]
    return found


async def send(b: Bound, user_id: str, channel: str, *, ip: str | None) -> OtpSent:
    """Send a one-time code by SMS or email."""
    if b.deliverer is None:
        return OtpSent(False, error_key="mfa.error.send_failed")
    return await credentials.send_otp(b.rt, b.rpc, b.settings, b.deliverer, user_id=user_id, channel=channel, ip=ip)


async def verify(
    b: Bound, user_id: str, method: str, code: str, *, ip: str | None, client_id: str | None
) -> CheckResult:
    """Check a second factor of any kind."""
    if method == "totp":
        return await credentials.verify_totp(b.rt, b.settings, user_id=user_id, code=code, ip=ip, client_id=client_id)
    if method == "recovery":
        return await credentials.use_recovery_code(
            b.rt, b.settings, user_id=user_id, code=code, ip=ip, client_id=client_id
        )
    if method in ("sms", "email"):
        return await credentials.verify_otp(
            b.rt, b.settings, user_id=user_id, channel=method, code=code, ip=ip, client_id=client_id
        )
    return CheckResult(False, error_key="mfa.error.invalid")


async def display_name(b: Bound, user_id: str) -> str | None:
    """The person's display name from the user directory (None when it does not answer)."""
    try:
        reply = await b.rpc.call(RPC_GET_USERS, GetUsersRequest(ids=[user_id]), UsersReply)
    except RpcError as exc:
        log.warning("user directory unavailable: %s", exc.description)
        return None
    return reply.users[0].name if reply.users else None
