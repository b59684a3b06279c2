"""The state of one sign-in interaction, carried between the login, MFA and consent pages.

It is sealed (AES-256-GCM, `SecretBox`) into a hidden form field rather than kept in a table, so any replica
can continue it; it is bound to the browser (a digest of the CSRF cookie) and expires after
`LIFETIME_SECONDS`, so a copied form cannot be replayed elsewhere or later.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tongban_auth.authorize import AuthRequest
from tongban_auth.config import Settings
from tongban_kit.secrets import SecretBox, SecretDecryptError

INFO = b"tongban-auth/interaction/aes-256-gcm/v1"
LIFETIME_SECONDS = 15 * 60


class InteractionExpired(ValueError):
    """The interaction is unreadable, expired or belongs to another browser."""


@dataclass
class Interaction:
    """Where a sign-in stands: the request (None when signing in to the account page), the person who passed
    the password but not yet the second factor, and which prompts were already satisfied."""

    request: AuthRequest | None
    pending_user: str | None = None
    pending_amr: list[str] = field(default_factory=list)
    mfa_methods: list[str] = field(default_factory=list)
    login_done: bool = False
    consent_done: bool = False
    started: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        """Serialised form."""
        data = asdict(self)
        data["request"] = self.request.to_dict() if self.request else None
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Interaction:
        """Back from `to_json`."""
        data: dict[str, Any] = json.loads(raw)
        req = data.pop("request")
        return cls(request=AuthRequest.from_dict(req) if req else None, **data)


def make_box(settings: Settings) -> SecretBox:
    """The cipher sealing interactions."""
    return SecretBox(settings.key_encryption_key, INFO, settings.old_key_encryption_keys)


def _bind(browser_key: str) -> bytes:
    return hashlib.sha256(b"interaction:" + browser_key.encode()).digest()


def seal(box: SecretBox, it: Interaction, browser_key: str) -> str:
    """The sealed interaction for a hidden field, bound to the browser's key (its CSRF cookie)."""
    return box.seal(it.to_json(), _bind(browser_key))


def open_sealed(box: SecretBox, token: str | None, browser_key: str | None) -> Interaction:
    """The interaction in a hidden field; `InteractionExpired` when it is not valid for this browser now."""
    if not token or not browser_key or len(token) > 16_384:
        raise InteractionExpired("no sign-in in progress")
    try:
        it = Interaction.from_json(box.open(token, _bind(browser_key)))
    except (SecretDecryptError, ValueError, TypeError, KeyError) as exc:
        raise InteractionExpired("the sign-in form is not valid for this browser") from exc
    if time.time() - it.started > LIFETIME_SECONDS:
        raise InteractionExpired("the sign-in took too long; start again")
    return it
