"""The user service app."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from tongban_kit.app import Runtime, create_service_app
from tongban_kit.bearer import BearerAuth, bearer_from_settings
from tongban_kit.contracts import ServiceDescriptor
from tongban_user import rpc
from tongban_user.accounts import purge_deleted
from tongban_user.api.routes import scim, users
from tongban_user.config import Settings
from tongban_user.contract import CONTRACT
from tongban_user.crypto import PiiCipher

log = logging.getLogger(__name__)

TAGS = [
    {"name": "users", "description": "Citizens, staff and legal persons; personal data masked by default."},
    {"name": "scim", "description": "SCIM 2.0 provisioning (RFC 7643/7644)."},
    {"name": "ops", "description": "Health, readiness and metrics."},
]
PURGE_EVERY_SECONDS = 3600


def make_cipher(settings: Settings) -> PiiCipher:
    """The identity-number cipher from settings."""
    return PiiCipher(
        settings.pii_encryption_key, settings.pii_hash_key, old_encryption_keys=settings.pii_old_encryption_keys
    )


def create_app(settings: Settings | None = None, *, bearer: BearerAuth | None = None) -> FastAPI:
    """Build the user service app (resources start in the lifespan).

    Callers authenticate with access tokens of the issuer in `settings.oidc_issuer`; `bearer` replaces that
    verifier (tests hand in one that trusts their own token issuer).
    """
    settings = settings or Settings()
    bearer = bearer or bearer_from_settings(settings)
    cipher = make_cipher(settings)

    async def start(rt: Runtime) -> None:
        async def purge() -> None:
            async with rt.db.session() as s:
                n = await purge_deleted(s, retention_days=settings.deleted_retention_days)
            if n:
                log.info("purged deleted accounts", extra={"purged": n})

        rt.every(PURGE_EVERY_SECONDS, purge, name="purge-deleted")

    app = create_service_app(
        settings,
        CONTRACT,
        routers=[users.router, scim.router],
        title="Tongban user service",
        summary="用户体系: citizens, staff, legal persons; masking; SCIM 2.0",
        rpc_handlers=lambda rt: rpc.handlers(rt, cipher),
        openapi_tags=TAGS,
        on_startup=start,
        accepts_tokens=True,
        bearer=bearer,
        body_limits={"/api/v1/users/import": settings.import_max_bytes},
    )
    app.state.cipher = cipher
    return app


DESCRIPTOR = ServiceDescriptor(
    contract=CONTRACT, app_factory=lambda: create_app(Settings(log_json=False)), module="tongban_user", dev_port=8102
)
