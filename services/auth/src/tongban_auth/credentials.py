"""What the sign-in pages call: password sign-in, password changes, TOTP and recovery codes, one-time codes.

Every check of a secret goes through the throttle (`tongban_auth.throttle`) and every failed check writes
`auth.login.failed.v1` to the outbox in the transaction that counts the failure. Accounts live in the user service
and are read over RPC (`users-lookup`, `contacts-list`). Message keys in results are those of the login and MFA
pages (`login.error.*`, `mfa.error.*`, `totp.error.*`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tongban_auth import devices as devices_mod
from tongban_auth import otp, passwords, throttle, totp
from tongban_auth.config import Settings
from tongban_auth.contract import LOGIN_FAILED, LoginFailed
from tongban_auth.models import Credential, OtpChallenge
from tongban_kit.app import Runtime
from tongban_kit.db import Database
from tongban_kit.outbox import emit, utcnow
from tongban_kit.problems import Problem
from tongban_kit.rpc import RpcBadRequest, RpcClient, RpcError, RpcNotFound
from tongban_user.contract import (
    RPC_CONTACTS,
    RPC_LOOKUP,
    Contact,
    ContactsReply,
    ContactsRequest,
    Kind,
    LookupReply,
    LookupRequest,
    Status,
    UserPublic,
)

log = logging.getLogger(__name__)

SOURCE = "/tongban/auth"
KINDS = (Kind.citizen, Kind.staff, Kind.legal_person)
MAX_LOGIN = 254
#: amr values (RFC 8176) of each second factor
AMR = {"totp": ["otp"], "recovery": ["otp"], "sms": ["sms"], "email": ["otp"]}


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a password sign-in; `mfa_methods` lists the second factors the person must use next."""

    ok: bool
    user_id: str | None = None
    name: str | None = None
    mfa_methods: list[str] = field(default_factory=list)
    #: the password works but no longer meets the policy: ask for a new one
    needs_password_change: bool = False
    error_key: str | None = None
    retry_after: int | None = None
    #: the password is right, but others have been failing on this account, address or app and this browser has
    #: no device cookie for the account: the account's second factor must confirm it is the owner
    step_up: bool = False


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking a second factor or a current password."""

    ok: bool
    amr: list[str] = field(default_factory=list)
    error_key: str | None = None
    retry_after: int | None = None
    #: new recovery codes, shown once (after confirming a TOTP enrolment)
    recovery_codes: list[str] | None = None


@dataclass(frozen=True)
class OtpSent:
    """The outcome of sending a one-time code; `sent_to` is the masked destination."""

    ok: bool
    sent_to: str | None = None
    error_key: str | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class TotpEnrolment:
    """A started TOTP enrolment: the secret to show (base32) and the URI for the QR code."""

    secret: str
    otpauth_uri: str


class PasswordRejected(Problem):
    """A new password breaks the policy; `violations` carry the message keys."""

    def __init__(self, violations: Sequence[passwords.Violation]) -> None:
        """A 422 problem listing the broken rules."""
        super().__init__(
            422,
            "the password does not meet the policy: " + ", ".join(v.key for v in violations),
            type="password-policy",
            violations=[{"key": v.key, **v.params} for v in violations],
        )
        self.violations = list(violations)


def _db(rt_or_db: Runtime | Database) -> Database:
    return rt_or_db.db if isinstance(rt_or_db, Runtime) else rt_or_db


async def lookup_accounts(rpc: RpcClient, login: str) -> list[UserPublic]:
    """Accounts a login name may mean: one, or one per kind when it is ambiguous across kinds."""
    if not 1 <= len(login) <= MAX_LOGIN:
        return []
    try:
        try:
            return [(await rpc.call(RPC_LOOKUP, LookupRequest(login=login), LookupReply)).user]
        except RpcNotFound:
            return []
        except RpcBadRequest:  # ambiguous (or malformed): ask kind by kind
            found = []
            for kind in KINDS:
                try:
                    found.append((await rpc.call(RPC_LOOKUP, LookupRequest(login=login, kind=kind), LookupReply)).user)
                except (RpcNotFound, RpcBadRequest):
                    continue
            return found
    except RpcError as exc:
        log.warning("user directory unavailable for sign-in: %s", exc.description)
        raise Problem(
            503,
            "the user directory did not answer; try again",
            type="dependency-unavailable",
            headers={"Retry-After": "5"},
        ) from exc


async def _contact(rpc: RpcClient, user_id: str) -> Contact | None:
    reply = await rpc.call(RPC_CONTACTS, ContactsRequest(ids=[user_id]), ContactsReply)
    return next((c for c in reply.contacts if c.id == user_id), None)


async def _credentials(db: Database, ids: Iterable[str]) -> dict[str, Credential]:
    wanted = list(ids)
    if not wanted:
        return {}
    async with db.read_session() as s:
        rows = (await s.exec(select(Credential).where(col(Credential.user_id).in_(wanted)))).all()
    return {c.user_id: c for c in rows}


async def _credential(db: Database, user_id: str) -> Credential | None:
    return (await _credentials(db, [user_id])).get(user_id)


async def _ensure_credential(s: AsyncSession, user_id: str) -> None:
    """Create an empty credential row unless there is one (concurrent callers do not collide)."""
    dialect = (await s.connection()).dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    table = Credential.__table__  # type: ignore[attr-defined]
    stmt = insert(table).values(user_id=user_id, recovery_codes=[], version=1, updated_at=utcnow())
    await s.exec(stmt.on_conflict_do_nothing(index_elements=[table.c.user_id]))


async def _blocked(db: Database, keys: list[str]) -> int:
    async with db.read_session() as s:
        return await throttle.retry_after(s, keys)


async def _failed(
    db: Database,
    settings: Settings,
    *,
    count: list[str] | None,
    user_id: str | None,
    method: str,
    reason: str,
    login: str | None = None,
    ip: str | None = None,
    client_id: str | None = None,
) -> None:
    """Count a failure on `count` keys (none: not counted) and write the failure event, in one transaction."""
    async with db.session() as s:
        if count:
            await throttle.record_failure(s, count, settings)
        payload = LoginFailed(
            user_id=user_id,
            login_hint=otp.mask_login(login) if login else None,
            method=method,
            reason=reason,
            client_id=client_id,
            ip=ip,
        )
        emit(s, LOGIN_FAILED, payload, source=SOURCE, subject=user_id)
        await s.commit()


async def _succeeded(db: Database, keys: list[str]) -> None:
    async with db.session() as s:
        await throttle.reset(s, keys)
        await s.commit()


async def _mfa_gate(
    db: Database, user_id: str, ip: str | None, client_id: str | None
) -> tuple[list[str], CheckResult | None]:
    """The throttle keys a second-factor failure counts on, and the refusal while the account's are delayed (the
    address and app are not asked: the second factor is how the owner gets past what others did there)."""
    keys = throttle.keys_for(ip=ip, client_id=client_id, own=[throttle.mfa_key(user_id)])
    wait = await _blocked(db, [throttle.mfa_key(user_id)])
    refused = CheckResult(False, error_key="mfa.error.throttled", retry_after=wait) if wait else None
    return keys, refused


def _has_second_factor(account: UserPublic, cred: Credential | None, *, otp_channels: bool) -> bool:
    """Whether an account has a second factor to pass now: a TOTP app, or a mobile or email for one-time codes."""
    if mfa_methods(cred):
        return True
    return otp_channels and account.status == Status.active and bool(account.mobile or account.email)


def mfa_methods(cred: Credential | None) -> list[str]:
    """Second factors an account has enrolled (a TOTP app, and recovery codes while any are left)."""
    if cred is None or cred.totp_confirmed_at is None:
        return []
    return ["totp", "recovery"] if cred.recovery_codes else ["totp"]


# --- passwords ---


async def authenticate_password(
    rt_or_db: Runtime | Database,
    rpc: RpcClient,
    settings: Settings,
    *,
    login: str,
    password: str,
    ip: str | None,
    client_id: str | None,
    device_cookie: str | None = None,
    otp_channels: bool = True,
) -> LoginResult:
    """Check a login name and password: throttled, constant-time for unknown accounts, failures recorded.

    A disabled account is reported only after its password was right, so the answer tells nothing about accounts
    to someone without the password. The success event is written by whoever starts the session. The browser's
    `device_cookie` decides which throttle keys apply (`throttle.password_gate`); `otp_channels` says whether
    one-time codes can be sent (else a mobile or email is no second factor).
    """
    db = _db(rt_or_db)
    name = login.strip()
    accounts = await lookup_accounts(rpc, name)
    creds = await _credentials(db, [a.id for a in accounts])
    with_password = [a for a in accounts if (c := creds.get(a.id)) is not None and c.password_hash]
    candidates = with_password or accounts[:1]
    own = [throttle.account_key(a.id) for a in candidates] or [throttle.login_key(name)]
    remembered = devices_mod.trusted_for(settings, device_cookie, [a.id for a in candidates])
    device_keys = [throttle.device_key(d) for d in remembered.values()]
    # a device past its free failures is trusted no more than any other browser
    devices = {} if device_keys and await _blocked(db, device_keys) else remembered
    gate = throttle.password_gate(own=own, ip=ip, client_id=client_id, devices=devices.values())
    first_id = candidates[0].id if candidates else None
    wait = await _blocked(db, gate.hard)
    if wait:
        await _failed(
            db,
            settings,
            count=None,
            user_id=first_id,
            method="pwd",
            reason="throttled",
            login=name,
            ip=ip,
            client_id=client_id,
        )
        return LoginResult(False, error_key="login.error.throttled", retry_after=wait)
    contested = bool(gate.soft) and await _blocked(db, gate.soft) > 0
    if contested:
        # past the account's, the address's or the app's limit a password alone signs nobody in: only accounts
        # with a second factor are checked, and every other answer is the same refusal (known account or not)
        with_password = [a for a in with_password if _has_second_factor(a, creds.get(a.id), otp_channels=otp_channels)]
    matched: UserPublic | None = None
    if not with_password:
        await passwords.verify_password(None, password)  # the same cost as a real check
    for account in with_password:
        if await passwords.verify_password(creds[account.id].password_hash, password):
            matched = account
            break
    if matched is None and contested:
        await _failed(
            db,
            settings,
            # a wrong password counts everywhere; an unchecked one on this address alone, so its refusals cannot
            # delay the account for others, and an attempt counts the same on this address whatever the account
            count=gate.count if with_password else gate.refused,
            user_id=first_id,
            method="pwd",
            reason="bad_credentials" if with_password else "throttled",
            login=name,
            ip=ip,
            client_id=client_id,
        )
        wait = await _blocked(db, gate.count)
        return LoginResult(False, error_key="login.error.throttled", retry_after=max(wait, 1))
    if matched is None:
        reason = "bad_credentials" if with_password else "no_password" if accounts else "unknown_account"
        await _failed(
            db,
            settings,
            count=gate.count + device_keys,
            user_id=first_id,
            method="pwd",
            reason=reason,
            login=name,
            ip=ip,
            client_id=client_id,
        )
        return LoginResult(False, error_key="login.error.invalid")
    if matched.status != Status.active:
        await _failed(
            db,
            settings,
            count=None,
            user_id=matched.id,
            method="pwd",
            reason="account_disabled",
            login=name,
            ip=ip,
            client_id=client_id,
        )
        return LoginResult(False, error_key="login.error.disabled")
    cred = creds[matched.id]
    own_key = throttle.account_key(matched.id)
    done = [throttle.pair_key(own_key, ip)]
    if matched.id in remembered:
        done.append(throttle.device_key(remembered[matched.id]))
    if not contested and not devices:  # what others did stays counted while contested, or when a device vouched
        done.append(own_key)
    await _after_password_success(db, cred, password, done)
    violations = passwords.check_policy(password, logins=[name, matched.username or ""])
    return LoginResult(
        True,
        user_id=matched.id,
        name=matched.name,
        mfa_methods=mfa_methods(cred),
        needs_password_change=bool(violations),
        step_up=contested,
    )


async def _after_password_success(db: Database, cred: Credential, password: str, keys: list[str]) -> None:
    """Reset the attempt's own counters; rehash when the hashing parameters changed (unless the password changed)."""
    old = cred.password_hash
    fresh = await passwords.hash_password(password) if old and passwords.needs_rehash(old) else None
    async with db.session() as s:
        await throttle.reset(s, keys)
        if fresh is not None:
            await s.exec(
                update(Credential)
                .where(and_(col(Credential.user_id) == cred.user_id, col(Credential.password_hash) == old))
                .values(password_hash=fresh, updated_at=utcnow())
            )
        await s.commit()


async def set_password(
    rt_or_db: Runtime | Database, settings: Settings, *, user_id: str, password: str, logins: Iterable[str] = ()
) -> None:
    """Set an account's password after checking the policy (raises PasswordRejected); `logins` are its login names."""
    violations = passwords.check_policy(password, logins=logins)
    if violations:
        raise PasswordRejected(violations)
    hashed = await passwords.hash_password(password)
    db = _db(rt_or_db)
    async with db.session() as s:
        await _ensure_credential(s, user_id)
        now = utcnow()
        await s.exec(
            update(Credential)
            .where(col(Credential.user_id) == user_id)
            .values(password_hash=hashed, password_changed_at=now, updated_at=now, version=col(Credential.version) + 1)
        )
        await s.commit()


async def change_password(
    rt_or_db: Runtime | Database,
    settings: Settings,
    *,
    user_id: str,
    old_password: str,
    new_password: str,
    logins: Iterable[str] = (),
    ip: str | None = None,
    client_id: str | None = None,
) -> CheckResult:
    """Replace a password given the current one (throttled like a sign-in); a new password breaking the policy
    raises PasswordRejected."""
    db = _db(rt_or_db)
    # the person is signed in: only what this address did to the account may delay it
    gate = throttle.password_gate(own=[throttle.account_key(user_id)], ip=ip, client_id=client_id)
    wait = await _blocked(db, gate.hard)
    if wait:
        return CheckResult(False, error_key="login.error.throttled", retry_after=wait)
    cred = await _credential(db, user_id)
    if not await passwords.verify_password(cred.password_hash if cred else None, old_password):
        await _failed(
            db,
            settings,
            count=gate.count,
            user_id=user_id,
            method="pwd",
            reason="bad_credentials",
            ip=ip,
            client_id=client_id,
        )
        return CheckResult(False, error_key="login.error.invalid")
    violations = passwords.check_policy(new_password, logins=logins)
    if passwords.normalise(new_password) == passwords.normalise(old_password):
        violations.append(passwords.Violation("password.unchanged"))
    if violations:
        raise PasswordRejected(violations)
    await set_password(db, settings, user_id=user_id, password=new_password, logins=logins)
    await _succeeded(db, gate.hard)
    return CheckResult(True, amr=["pwd"])


# --- TOTP and recovery codes ---


async def totp_enabled(s: AsyncSession, user_id: str) -> bool:
    """Whether an account has a confirmed TOTP authenticator."""
    cred = await s.get(Credential, user_id)
    return cred is not None and cred.totp_confirmed_at is not None


async def begin_totp_enrolment(
    rt_or_db: Runtime | Database, settings: Settings, *, user_id: str, label: str
) -> TotpEnrolment:
    """Start (or restart) enrolling an authenticator app; a confirmed one must be disabled first (409)."""
    db = _db(rt_or_db)
    secret = totp.generate_secret()
    sealed = totp.seal_secret(totp.make_box(settings), secret, user_id)
    async with db.session() as s:
        await _ensure_credential(s, user_id)
        done = await s.exec(
            update(Credential)
            .where(and_(col(Credential.user_id) == user_id, col(Credential.totp_confirmed_at).is_(None)))
            .values(totp_secret_enc=sealed, totp_last_step=None, updated_at=utcnow())
        )
        if done.rowcount != 1:
            raise Problem(409, "an authenticator is already set up; disable it first", type="totp-enrolled")
        await s.commit()
    return TotpEnrolment(secret=secret, otpauth_uri=totp.otpauth_uri(secret, label))


async def pending_totp(rt_or_db: Runtime | Database, settings: Settings, *, user_id: str) -> TotpEnrolment | None:
    """The enrolment waiting for its first code (to show the secret again after a wrong code), if any."""
    cred = await _credential(_db(rt_or_db), user_id)
    if cred is None or cred.totp_secret_enc is None or cred.totp_confirmed_at is not None:
        return None
    secret = totp.open_secret(totp.make_box(settings), cred.totp_secret_enc, user_id)
    label = user_id
    return TotpEnrolment(secret=secret, otpauth_uri=totp.otpauth_uri(secret, label))


async def confirm_totp_enrolment(
    rt_or_db: Runtime | Database,
    settings: Settings,
    *,
    user_id: str,
    code: str,
    ip: str | None = None,
    client_id: str | None = None,
) -> CheckResult:
    """Turn TOTP on with a first code from the app; the result carries 10 new recovery codes (shown once)."""
    db = _db(rt_or_db)
    keys, refused = await _mfa_gate(db, user_id, ip, client_id)
    if refused is not None:
        return refused
    cred = await _credential(db, user_id)
    if cred is None or cred.totp_secret_enc is None or cred.totp_confirmed_at is not None:
        return CheckResult(False, error_key="totp.error.expired")
    secret = totp.open_secret(totp.make_box(settings), cred.totp_secret_enc, user_id)
    step = totp.matching_step(secret, code)
    if step is None:
        await _failed(
            db,
            settings,
            count=keys,
            user_id=user_id,
            method="totp",
            reason="bad_credentials",
            ip=ip,
            client_id=client_id,
        )
        return CheckResult(False, error_key="totp.error.invalid")
    codes = totp.new_recovery_codes()
    async with db.session() as s:
        done = await s.exec(
            update(Credential)
            .where(
                and_(
                    col(Credential.user_id) == user_id,
                    col(Credential.totp_secret_enc) == cred.totp_secret_enc,
                    col(Credential.totp_confirmed_at).is_(None),
                )
            )
            .values(
                totp_confirmed_at=utcnow(),
                totp_last_step=step,
                recovery_codes=[totp.recovery_digest(c) for c in codes],
                version=col(Credential.version) + 1,
                updated_at=utcnow(),
            )
        )
        await throttle.reset(s, [throttle.mfa_key(user_id)])
        await s.commit()
    if done.rowcount != 1:
        return CheckResult(False, error_key="totp.error.expired")
    return CheckResult(True, amr=AMR["totp"], recovery_codes=codes)


async def verify_totp(
    rt_or_db: Runtime | Database,
    settings: Settings,
    *,
    user_id: str,
    code: str,
    ip: str | None = None,
    client_id: str | None = None,
) -> CheckResult:
    """Check a code from the authenticator app (± one step, each step once)."""
    db = _db(rt_or_db)
    keys, refused = await _mfa_gate(db, user_id, ip, client_id)
    if refused is not None:
        return refused
    cred = await _credential(db, user_id)
    step = None
    if cred is not None and cred.totp_secret_enc and cred.totp_confirmed_at is not None:
        step = totp.matching_step(totp.open_secret(totp.make_box(settings), cred.totp_secret_enc, user_id), code)
    if step is not None:
        async with db.session() as s:
            accepted = await totp.accept_step(s, user_id, step)
            if accepted:
                await throttle.reset(s, [throttle.mfa_key(user_id)])
            await s.commit()
        if accepted:
            return CheckResult(True, amr=AMR["totp"])
    await _failed(
        db, settings, count=keys, user_id=user_id, method="totp", reason="bad_credentials", ip=ip, client_id=client_id
    )
    return CheckResult(False, error_key="mfa.error.invalid")


async def disable_totp(
    rt_or_db: Runtime | Database,
    settings: Settings,
    *,
    user_id: str,
    code: str,
    ip: str | None = None,
    client_id: str | None = None,
) -> CheckResult:
    """Turn TOTP off given a current code from the app or a recovery code; the recovery codes go with it."""
    db = _db(rt_or_db)
    if totp.normalise_recovery_code(code) is not None:
        checked = await use_recovery_code(db, settings, user_id=user_id, code=code, ip=ip, client_id=client_id)
    else:
        checked = await verify_totp(db, settings, user_id=user_id, code=code, ip=ip, client_id=client_id)
    if not checked.ok:
        return checked
    async with db.session() as s:
        await s.exec(
            update(Credential)
            .where(col(Credential.user_id) == user_id)
            .values(
                totp_secret_enc=None,
                totp_confirmed_at=None,
                totp_last_step=None,
                recovery_codes=[],
                version=col(Credential.version) + 1,
                updated_at=utcnow(),
            )
        )
        await s.commit()
    return checked


async def regenerate_recovery_codes(rt_or_db: Runtime | Database, *, user_id: str) -> list[str]:
    """Replace every recovery code with 10 new ones (shown once); needs a confirmed TOTP (409 otherwise)."""
    codes = totp.new_recovery_codes()
    async with _db(rt_or_db).session() as s:
        done = await s.exec(
            update(Credential)
            .where(and_(col(Credential.user_id) == user_id, col(Credential.totp_confirmed_at).is_not(None)))
            .values(
                recovery_codes=[totp.recovery_digest(c) for c in codes],
                version=col(Credential.version) + 1,
                updated_at=utcnow(),
            )
        )
        if done.rowcount != 1:
            raise Problem(409, "recovery codes need an authenticator app set up first", type="totp-not-enrolled")
        await s.commit()
    return codes


async def _consume_recovery_code(db: Database, user_id: str, digest: str) -> bool:
    """Remove one stored digest; a compare-and-set on the row version, so each code works once under races."""
    for _ in range(8):
        cred = await _credential(db, user_id)
        if cred is None or cred.totp_confirmed_at is None or digest not in cred.recovery_codes:
            return False
        remaining = [d for d in cred.recovery_codes if d != digest]
        async with db.session() as s:
            done = await s.exec(
                update(Credential)
                .where(and_(col(Credential.user_id) == user_id, col(Credential.version) == cred.version))
                .values(recovery_codes=remaining, version=cred.version + 1, updated_at=utcnow())
            )
            await s.commit()
        if done.rowcount == 1:
            return True
    return False


async def use_recovery_code(
    rt_or_db: Runtime | Database,
    settings: Settings,
    *,
    user_id: str,
    code: str,
    ip: str | None = None,
    client_id: str | None = None,
) -> CheckResult:
    """Accept a recovery code instead of the app; each code works once."""
    db = _db(rt_or_db)
    keys, refused = await _mfa_gate(db, user_id, ip, client_id)
    if refused is not None:
        return refused
    canonical = totp.normalise_recovery_code(code)
    if canonical is not None and await _consume_recovery_code(db, user_id, totp.recovery_digest(canonical)):
        await _succeeded(db, [throttle.mfa_key(user_id)])
        return CheckResult(True, amr=AMR["recovery"])
    await _failed(
        db,
        settings,
        count=keys,
        user_id=user_id,
        method="recovery",
        reason="bad_credentials",
        ip=ip,
        client_id=client_id,
    )
    return CheckResult(False, error_key="mfa.error.invalid")


# --- one-time codes by SMS and email ---


async def available_methods(rt_or_db: Runtime | Database, rpc: RpcClient, *, user_id: str) -> list[str]:
    """Every second factor an account can use now: its TOTP app and recovery codes, then SMS and email when the
    user directory has a mobile or email (left out while the directory does not answer)."""
    methods = mfa_methods(await _credential(_db(rt_or_db), user_id))
    try:
        contact = await _contact(rpc, user_id)
    except RpcError as exc:
        log.warning("user directory unavailable for second factors: %s", exc.description)
        contact = None
    if contact is not None and contact.status == Status.active:
        methods += [m for m, dest in (("sms", contact.mobile), ("email", contact.email)) if dest]
    return methods


async def send_otp(
    rt_or_db: Runtime | Database,
    rpc: RpcClient,
    settings: Settings,
    deliverer: otp.Deliverer,
    *,
    user_id: str,
    channel: str,
    ip: str | None = None,
) -> OtpSent:
    """Send a one-time code to the account's mobile (`sms`) or email (`email`); one send per minute and channel."""
    if channel not in otp.CHANNELS:
        return OtpSent(False, error_key="mfa.error.invalid")
    db = _db(rt_or_db)
    wait = await _blocked(db, [throttle.mfa_key(user_id)])
    if wait:
        return OtpSent(False, error_key="mfa.error.throttled", retry_after=wait)
    try:
        contact = await _contact(rpc, user_id)
    except RpcError as exc:
        log.warning("user directory unavailable for a one-time code: %s", exc.description)
        return OtpSent(False, error_key="mfa.error.send_failed")
    destination = None
    if contact is not None and contact.status == Status.active:
        destination = contact.mobile if channel == "sms" else contact.email
    if not destination:
        return OtpSent(False, error_key="mfa.error.send_failed")
    async with db.session() as s:
        wait = await throttle.claim_cooldown(s, otp.cooldown_key(user_id, channel), otp.RESEND_COOLDOWN_SECONDS)
        if wait:
            await s.rollback()
            return OtpSent(False, error_key="mfa.error.throttled", retry_after=wait)
        row, code = await otp.create_challenge(s, settings, user_id=user_id, channel=channel, destination=destination)
        await s.commit()
    try:
        await deliverer.deliver(
            channel=channel,
            destination=destination,
            code=code,
            expires_in=int(otp.LIFETIME.total_seconds()),
            user_id=user_id,
            reference=f"otp-{row.id}",
        )
    except Exception:
        log.exception("one-time code delivery failed", extra={"channel": channel})
        async with db.session() as s:  # void the code and free the cool-down: nothing reached the person
            await throttle.reset(s, [otp.cooldown_key(user_id, channel)])
            await s.exec(update(OtpChallenge).where(col(OtpChallenge.id) == row.id).values(used_at=utcnow()))
            await s.commit()
        return OtpSent(False, error_key="mfa.error.send_failed")
    return OtpSent(True, sent_to=row.destination)


async def verify_otp(
    rt_or_db: Runtime | Database,
    settings: Settings,
    *,
    user_id: str,
    channel: str,
    code: str,
    ip: str | None = None,
    client_id: str | None = None,
) -> CheckResult:
    """Check a one-time code sent by `send_otp` (5 minutes, 5 attempts, once)."""
    db = _db(rt_or_db)
    keys, refused = await _mfa_gate(db, user_id, ip, client_id)
    if refused is not None:
        return refused
    async with db.session() as s:
        checked = await otp.check_code(s, settings, user_id=user_id, channel=channel, code=code)
        if checked.outcome == otp.CheckOutcome.ok:
            await throttle.reset(s, [throttle.mfa_key(user_id)])
        await s.commit()
    if checked.outcome == otp.CheckOutcome.ok:
        return CheckResult(True, amr=AMR.get(channel, ["otp"]))
    if checked.outcome == otp.CheckOutcome.none_open:
        return CheckResult(False, error_key="mfa.error.expired")
    await _failed(
        db, settings, count=keys, user_id=user_id, method="otp", reason="bad_credentials", ip=ip, client_id=client_id
    )
    error = "mfa.error.expired" if checked.outcome == otp.CheckOutcome.exhausted else "mfa.error.invalid"
    return CheckResult(False, error_key=error)


# --- housekeeping ---


async def purge_expired(rt_or_db: Runtime | Database) -> int:
    """Delete forgotten throttle counters and old one-time-code challenges; returns the rows deleted."""
    async with _db(rt_or_db).session() as s:
        n = await throttle.purge(s) + await otp.purge(s)
        await s.commit()
    return n
